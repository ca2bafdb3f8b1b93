//! The text `iostudy plan` prints: a plan, and what the host (and each node) said about
//! it. The host's answers come as plain data ([`HostView`], which the runner's
//! preflight fills), so this renderer, like every other, does no I/O.

use std::fmt::Write as _;
use std::time::Duration;

use crate::hosts::protocol::Facts;
use crate::runtime::Probe;
use crate::study::plan::{ASSUMED_THREAD_BW, Plan};
use crate::study::{describe, value_text};
use crate::workload::human_bytes;

/// A node as the plan shows it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub dest: String,
    pub facts: Facts,
    /// `kernel …, N CPU(s), clock … (offset … ± …)`.
    pub description: String,
}

/// What the host said about a plan.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    pub nodes: Vec<NodeView>,
    /// Each planned scenario's probe, in plan order.
    pub probes: Vec<(String, Probe)>,
    pub free_bytes: Option<u64>,
    pub needed_bytes: u64,
    pub warnings: Vec<String>,
    /// What stops the study, each with its fix.
    pub blockers: Vec<String>,
}

impl HostView {
    fn probe(&self, scenario: &str) -> Option<&Probe> {
        self.probes.iter().find(|(n, _)| n == scenario).map(|(_, p)| p)
    }
}

/// The text `iostudy plan` prints: the plan and what the host said about it.
pub fn render(plan: &Plan, pre: &HostView) -> String {
    let s = &plan.study;
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
    if let Some(p) = &s.placement {
        let _ = writeln!(out, "{}: {}", p.table(), p.describe());
        for (i, n) in pre.nodes.iter().enumerate() {
            let free = n.facts.free_bytes.map(|b| format!(", {} free on the target", human_bytes(b)));
            let _ = writeln!(
                out,
                "  node {}  {} ({}), {}{}",
                i + 1,
                n.dest,
                n.facts.hostname,
                n.description,
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
            pre.nodes.iter().find(|n| n.facts.boot_id.as_deref() == Some(machine.as_str())).map_or(0, |n| n.facts.cpus)
        );
    }
    if let Some(f) = plan.scale {
        let _ = writeln!(out, "scale: {f} (sizes, runtimes and ramps shrunk for a rehearsal)");
    }
    let options: usize = s.combinations().len();
    let _ = writeln!(
        out,
        "cells: {} ({} scenario(s) × {} client count(s) × {} pattern(s){} × {} repetition(s))",
        plan.cells.len(),
        plan.scenarios.len(),
        plan.cells.iter().map(|c| c.clients).collect::<std::collections::BTreeSet<_>>().len(),
        plan.cells.iter().map(|c| c.pattern).collect::<std::collections::BTreeSet<_>>().len(),
        if options > 1 { format!(" × {options} option combination(s)") } else { String::new() },
        s.repetitions
    );
    let _ = writeln!(out, "\nscenarios:");
    let width = plan.scenarios.iter().map(|x| x.name.len()).max().unwrap_or(0);
    for sc in &plan.scenarios {
        let Some(probe) = pre.probe(&sc.name) else { continue };
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
    let w = &plan.cells[0].workload;
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
        human_bytes(plan.footprint_bytes),
        human_bytes(pre.needed_bytes),
        free
    );
    let _ = writeln!(
        out,
        "estimated duration: {} (one-pass cells and layout assume {}/s per thread)",
        humantime::format_duration(Duration::from_secs(plan.estimate.as_secs())),
        human_bytes(ASSUMED_THREAD_BW as u64)
    );
    let _ = writeln!(out, "\ncells (run order):");
    for (i, c) in plan.cells.iter().enumerate() {
        let mut opts = if c.options.is_empty() { String::new() } else { format!("  {}", describe_options(&c.options)) };
        if let (Some(placed), Some(p)) = (plan.placement(c), &s.placement) {
            opts.push_str(&format!("  on {}", crate::hosts::describe_placement(&p.node_names(), &placed)));
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
    let blockers = pre.blockers.clone();
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

/// Boot ids shared by several nodes (or a node and this host), with their names.
fn shared_machines(pre: &HostView) -> Vec<(String, Vec<String>)> {
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
