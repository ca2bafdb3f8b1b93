//! The plan: a study expanded into cells, with the disk footprint and an estimated
//! duration. Planning is pure — no probe, no file system — so it is unit-tested as
//! such; what the host says about a plan (runtimes, space, limits) is
//! [`super::preflight`]'s, and `iostudy plan` shows both.
//!
//! Cells run in an order that interleaves scenarios (repetition → clients → pattern →
//! options → scenario), so slow drift of the machine (page cache, thermal, neighbours)
//! spreads over all scenarios instead of biasing the last one.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

pub use crate::results::cell::Cell;
use crate::results::cell::cell_id;
use crate::runtime::mock::MockSpec;
use crate::study::preflight::Preflight;
use crate::study::{Scenario, Study, describe, value_text};
use crate::workload::{Pattern, Workload, human_bytes};

/// What to run of a study, and how.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Shrink sizes, runtimes and ramps by this factor (a rehearsal).
    pub scale: Option<f64>,
    /// Only these scenarios / patterns / client counts (empty = all).
    pub scenarios: Vec<String>,
    pub patterns: Vec<Pattern>,
    pub clients: Vec<u32>,
    /// Replace every runtime with synthetic clients (tests).
    pub mock: bool,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--scenario {0}: not a scenario of this study (it has: {1})")]
    UnknownScenario(String, String),
    #[error("--pattern {0}: not a pattern of this study (it has: {1})")]
    UnknownPattern(String, String),
    #[error("--clients {0}: not a client count of this study (it has: {1})")]
    UnknownClients(u32, String),
    #[error("--scale {0} must be greater than 0 and at most 1")]
    BadScale(f64),
    #[error("the filters leave no cell to run")]
    Empty,
}

/// A study expanded, ready to check and run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub study: Study,
    /// The scenarios that run (after filters), in study order.
    pub scenarios: Vec<Scenario>,
    pub cells: Vec<Cell>,
    pub scale: Option<f64>,
    /// The filters the plan was made with (sorted), as a run records them.
    pub filters: crate::results::store::Filters,
    /// Bytes of data files the study lays out on the target.
    pub footprint_bytes: u64,
    pub estimate: Duration,
}

/// Bandwidth assumed per thread to estimate one-pass cells and layout.
const ASSUMED_THREAD_BW: f64 = 200.0 * 1024.0 * 1024.0;

impl Plan {
    pub fn build(study: &Study, opts: &PlanOptions) -> Result<Plan, PlanError> {
        let list = |v: Vec<String>| v.join(", ");
        for s in &opts.scenarios {
            if !study.scenarios.iter().any(|x| &x.name == s) {
                return Err(PlanError::UnknownScenario(
                    s.clone(),
                    list(study.scenarios.iter().map(|x| x.name.clone()).collect()),
                ));
            }
        }
        for p in &opts.patterns {
            if !study.patterns.contains(p) {
                return Err(PlanError::UnknownPattern(
                    p.to_string(),
                    list(study.patterns.iter().map(|x| x.to_string()).collect()),
                ));
            }
        }
        for c in &opts.clients {
            if !study.clients.contains(c) {
                return Err(PlanError::UnknownClients(*c, list(study.clients.iter().map(|x| x.to_string()).collect())));
            }
        }
        if let Some(s) = opts.scale
            && !(s > 0.0 && s <= 1.0)
        {
            return Err(PlanError::BadScale(s));
        }

        let mut scenarios: Vec<Scenario> = Vec::new();
        for s in &study.scenarios {
            if !opts.scenarios.is_empty() && !opts.scenarios.contains(&s.name) {
                continue;
            }
            let mut scenario = s.clone();
            if opts.mock {
                scenario.runtime = Arc::new(MockSpec::default());
            }
            scenarios.push(scenario);
        }

        let keep = |v: &[u32], x: u32| v.is_empty() || v.contains(&x);
        let mut cells = Vec::new();
        for rep in 1..=study.repetitions {
            for &clients in study.clients.iter().filter(|&&c| keep(&opts.clients, c)) {
                for &pattern in study.patterns.iter().filter(|p| opts.patterns.is_empty() || opts.patterns.contains(p))
                {
                    for combo in study.combinations() {
                        for sc in &scenarios {
                            let mut workload =
                                study.workload(pattern, &combo).expect("validated when the study was loaded");
                            if let Some(f) = opts.scale {
                                scale_workload(&mut workload, f);
                            }
                            let options: Vec<(String, String)> =
                                combo.iter().map(|(k, v)| (k.clone(), value_text(v))).collect();
                            cells.push(Cell {
                                id: cell_id(&sc.name, pattern, clients, &options, rep),
                                scenario: sc.name.clone(),
                                pattern,
                                clients,
                                options,
                                repetition: rep,
                                workload,
                            });
                        }
                    }
                }
            }
        }
        if cells.is_empty() {
            return Err(PlanError::Empty);
        }

        let max_clients = cells.iter().map(|c| c.clients).max().unwrap_or(1);
        let per_client = cells
            .iter()
            .map(|c| c.workload.size.get().saturating_mul(u64::from(c.workload.numjobs)))
            .max()
            .unwrap_or(0);
        let footprint_bytes = per_client.saturating_mul(u64::from(max_clients));

        let mut estimate = Duration::from_secs_f64(footprint_bytes as f64 / (ASSUMED_THREAD_BW * 4.0));
        for c in &cells {
            let runtime = &scenarios.iter().find(|s| s.name == c.scenario).expect("cell of a planned scenario").runtime;
            estimate += runtime.startup_estimate() + c.workload.ramp_time.0;
            estimate += match c.workload.runtime {
                Some(r) => r.0,
                None => Duration::from_secs_f64(c.workload.size.get() as f64 / ASSUMED_THREAD_BW),
            };
        }

        let mut filters = crate::results::store::Filters {
            scenarios: opts.scenarios.clone(),
            patterns: opts.patterns.clone(),
            clients: opts.clients.clone(),
        };
        filters.scenarios.sort();
        filters.scenarios.dedup();
        filters.patterns.sort();
        filters.patterns.dedup();
        filters.clients.sort_unstable();
        filters.clients.dedup();
        Ok(Plan { study: study.clone(), scenarios, cells, scale: opts.scale, filters, footprint_bytes, estimate })
    }

    /// The scenario of a cell.
    pub fn scenario(&self, name: &str) -> &Scenario {
        self.scenarios.iter().find(|s| s.name == name).expect("cells name planned scenarios")
    }

    /// The node (index into `[hosts]`) of each of a cell's clients; `None` without
    /// `[hosts]` (every client on this host).
    pub fn placement(&self, cell: &Cell) -> Option<Vec<usize>> {
        let hosts = self.study.hosts.as_ref()?;
        if self.places_itself(&cell.scenario) {
            return None;
        }
        let all: Vec<usize> = (0..hosts.nodes.len()).collect();
        let usable = self.scenario(&cell.scenario).nodes.clone().unwrap_or(all);
        Some(crate::hosts::place(&usable, hosts.placement, hosts.slots, cell.clients))
    }

    /// Whether a scenario's backend places its clients itself (a cluster's scheduler).
    fn places_itself(&self, scenario: &str) -> bool {
        crate::runtime::kind(self.scenario(scenario).runtime.kind()).is_some_and(|k| k.places_clients())
    }

    /// The nodes a scenario's clients may use (indexes), if there are hosts.
    pub fn scenario_nodes(&self, name: &str) -> Vec<usize> {
        match &self.study.hosts {
            None => Vec::new(),
            Some(_) if self.places_itself(name) => Vec::new(),
            Some(h) => self.scenario(name).nodes.clone().unwrap_or_else(|| (0..h.nodes.len()).collect()),
        }
    }

    /// The text `iostudy plan` prints: the plan and what the host said about it.
    pub fn render(&self, pre: &Preflight) -> String {
        let s = &self.study;
        let mut out = String::new();
        let _ = writeln!(out, "study: {}", s.name);
        if let Some(d) = &s.description {
            let _ = writeln!(out, "  {}", d.trim());
        }
        let _ = writeln!(out, "file: {}", s.path.display());
        for n in &s.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let _ = writeln!(out, "target: {}", s.target.display());
        if let Some(h) = &s.hosts {
            let how = match h.placement {
                crate::hosts::Placement::Spread => "spread: client k on node k mod n".to_string(),
                crate::hosts::Placement::Pack => match h.slots {
                    Some(n) => format!("pack: {n} client(s) per node, node 1 first"),
                    None => "pack: an even share per node, node 1 first".to_string(),
                },
            };
            let shared = if h.shared_target { "one shared filesystem" } else { "each node's own disk" };
            let _ = writeln!(out, "hosts: {} ({how}; the target is {shared})", h.nodes.join(", "));
            for (i, n) in pre.nodes.iter().enumerate() {
                let free = n.facts.free_bytes.map(|b| format!(", {} free on the target", human_bytes(b)));
                let _ = writeln!(
                    out,
                    "  node {}  {} ({}), {}{}",
                    i + 1,
                    n.dest,
                    n.facts.hostname,
                    n.describe(),
                    free.unwrap_or_default()
                );
            }
        }
        for (machine, names) in shared_machines(pre) {
            let _ = writeln!(
                out,
                "  nodes {} are one machine (boot id {}): they share its {} CPU(s), counted once",
                names.join(", "),
                &machine[..machine.len().min(8)],
                pre.nodes
                    .iter()
                    .find(|n| n.facts.boot_id.as_deref() == Some(machine.as_str()))
                    .map_or(0, |n| n.facts.cpus)
            );
        }
        if let Some(f) = self.scale {
            let _ = writeln!(out, "scale: {f} (sizes, runtimes and ramps shrunk for a rehearsal)");
        }
        let options: usize = s.combinations().len();
        let _ = writeln!(
            out,
            "cells: {} ({} scenario(s) × {} client count(s) × {} pattern(s){} × {} repetition(s))",
            self.cells.len(),
            self.scenarios.len(),
            self.cells.iter().map(|c| c.clients).collect::<std::collections::BTreeSet<_>>().len(),
            self.cells.iter().map(|c| c.pattern).collect::<std::collections::BTreeSet<_>>().len(),
            if options > 1 { format!(" × {options} option combination(s)") } else { String::new() },
            s.repetitions
        );
        let _ = writeln!(out, "\nscenarios:");
        let width = self.scenarios.iter().map(|x| x.name.len()).max().unwrap_or(0);
        for sc in &self.scenarios {
            let probe = pre.probe(&sc.name);
            let status = match (&probe.problem, &probe.version) {
                (Some(p), _) => format!("UNAVAILABLE: {p}"),
                (None, Some(v)) => format!("ok ({v})"),
                (None, None) => "ok".into(),
            };
            let _ = writeln!(out, "  {:width$}  {:<18} {status}", sc.name, sc.runtime.name());
            for n in &probe.notes {
                let _ = writeln!(out, "  {:width$}  note: {n}", "");
            }
        }
        let _ = writeln!(out, "\nworkload (per client):");
        let w = &self.cells[0].workload;
        let _ = writeln!(
            out,
            "  bs={} size={} numjobs={} ioengine={} iodepth={} direct={} {}{}",
            w.bs,
            w.size,
            w.numjobs,
            w.ioengine,
            w.iodepth,
            u8::from(w.direct),
            w.runtime.map_or("one pass".to_string(), |r| format!("runtime={r}")),
            if w.ramp_time.0.is_zero() { String::new() } else { format!(" ramp_time={}", w.ramp_time) }
        );
        for axis in &s.axes {
            let _ = writeln!(
                out,
                "  {} varies: {}",
                axis.key,
                axis.values.iter().map(value_text).collect::<Vec<_>>().join(", ")
            );
        }
        let free = pre.free_bytes.map_or("unknown".to_string(), human_bytes);
        let _ = writeln!(
            out,
            "\ndisk footprint: {} on the target ({} still to lay out, {} free)",
            human_bytes(self.footprint_bytes),
            human_bytes(pre.needed_bytes),
            free
        );
        let _ = writeln!(
            out,
            "estimated duration: {} (one-pass cells and layout assume {}/s per thread)",
            humantime::format_duration(Duration::from_secs(self.estimate.as_secs())),
            human_bytes(ASSUMED_THREAD_BW as u64)
        );
        let _ = writeln!(out, "\ncells (run order):");
        for (i, c) in self.cells.iter().enumerate() {
            let mut opts =
                if c.options.is_empty() { String::new() } else { format!("  {}", describe_options(&c.options)) };
            if let (Some(placed), Some(h)) = (self.placement(c), &s.hosts) {
                opts.push_str(&format!("  on {}", crate::hosts::describe_placement(&h.nodes, &placed)));
            }
            let _ = writeln!(
                out,
                "  {:>4}  {:width$}  {:<9}  clients={:<3} rep={}{opts}",
                i + 1,
                c.scenario,
                c.pattern.name(),
                c.clients,
                c.repetition
            );
        }
        if !pre.warnings.is_empty() {
            let _ = writeln!(out, "\nwarnings:");
            for w in &pre.warnings {
                let _ = writeln!(out, "  - {w}");
            }
        }
        let blockers = pre.blockers();
        if blockers.is_empty() {
            let _ = writeln!(out, "\nready to run: iostudy run {} -o RESULTS_DIR", s.path.display());
        } else {
            let _ = writeln!(out, "\nnot runnable here as is:");
            for b in blockers {
                let _ = writeln!(out, "  - {b}");
            }
        }
        out
    }
}

/// Boot ids shared by several nodes (or a node and this host), with their names.
fn shared_machines(pre: &Preflight) -> Vec<(String, Vec<String>)> {
    let mut by: Vec<(String, Vec<String>)> = Vec::new();
    let this = crate::sys::boot_id();
    for n in &pre.nodes {
        let Some(id) = n.facts.boot_id.clone() else { continue };
        match by.iter_mut().find(|(m, _)| *m == id) {
            Some((_, names)) => names.push(n.dest.clone()),
            None => by.push((id, vec![n.dest.clone()])),
        }
    }
    for (id, names) in &mut by {
        if this.as_ref() == Some(id) {
            names.push("this host".into());
        }
    }
    by.retain(|(_, names)| names.len() > 1);
    by
}

fn describe_options(options: &[(String, String)]) -> String {
    describe(&options.iter().map(|(k, v)| (k.clone(), toml::Value::String(v.clone()))).collect::<Vec<_>>())
}

fn scale_workload(w: &mut Workload, f: f64) {
    let bs = w.bs.get();
    let size = ((w.size.get() as f64 * f) as u64 / bs * bs).max(bs);
    w.size.0 = size;
    if let Some(r) = &mut w.runtime {
        r.0 = r.0.mul_f64(f).max(Duration::from_millis(500));
    }
    w.ramp_time.0 = w.ramp_time.0.mul_f64(f);
}
