//! The plan: a study expanded into cells, with runtimes probed, the disk footprint,
//! an estimated duration and warnings — everything `iostudy plan` shows and
//! `iostudy run` checks before its first cell.
//!
//! Cells run in an order that interleaves scenarios (repetition → clients → pattern →
//! options → scenario), so slow drift of the machine (page cache, thermal, neighbours)
//! spreads over all scenarios instead of biasing the last one.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{Pattern, Workload, human_bytes};
use crate::runtime::{Probe, RuntimeSpec};
use crate::study::{Scenario, Study, describe, value_text};

/// One cell of the matrix: a scenario, a client count, a pattern, option values and a
/// repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Stable identifier, used as the result file name and by `--resume`.
    pub id: String,
    pub scenario: String,
    pub pattern: Pattern,
    pub clients: u32,
    /// Values of the study's list-valued workload options.
    pub options: Vec<(String, String)>,
    /// 1-based.
    pub repetition: u32,
    /// The workload each client runs (its directory is assigned per client).
    pub workload: Workload,
}

/// A scenario with its runtime's probe.
#[derive(Debug, Clone)]
pub struct ScenarioPlan {
    pub scenario: Scenario,
    pub probe: Probe,
}

/// Things worth knowing before running, each with advice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// Buffered reads over a working set that fits in RAM measure the page cache.
    FitsInPageCache { working_set_bytes: u64, ram_bytes: u64 },
    /// Not root: the host page cache cannot be dropped between cells.
    CannotDropCaches,
    /// The files do not fit on the target.
    NotEnoughSpace { needed_bytes: u64, free_bytes: u64 },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::FitsInPageCache { working_set_bytes, ram_bytes } => write!(
                f,
                "working set {} fits in page cache ({} RAM): buffered reads measure memory, not storage; raise size or set direct = true",
                human_bytes(*working_set_bytes),
                human_bytes(*ram_bytes)
            ),
            Warning::CannotDropCaches => f.write_str(
                "not running as root: the host page cache is not dropped between cells, so earlier cells warm later ones; run as root",
            ),
            Warning::NotEnoughSpace { needed_bytes, free_bytes } => write!(
                f,
                "the files need {} but the target has {} free: lower size, numjobs or clients, or free space",
                human_bytes(*needed_bytes),
                human_bytes(*free_bytes)
            ),
        }
    }
}

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

/// A study ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub study: Study,
    pub scenarios: Vec<ScenarioPlan>,
    pub cells: Vec<Cell>,
    pub scale: Option<f64>,
    /// Bytes of data files the study lays out on the target.
    pub footprint_bytes: u64,
    pub free_bytes: Option<u64>,
    pub estimate: Duration,
    pub warnings: Vec<Warning>,
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

        let mut scenarios: Vec<ScenarioPlan> = Vec::new();
        for s in &study.scenarios {
            if !opts.scenarios.is_empty() && !opts.scenarios.contains(&s.name) {
                continue;
            }
            let mut scenario = s.clone();
            if opts.mock {
                scenario.runtime = RuntimeSpec::Mock;
            }
            let probe = scenario.runtime.probe();
            scenarios.push(ScenarioPlan { scenario, probe });
        }

        let keep = |v: &[u32], x: u32| v.is_empty() || v.contains(&x);
        let mut cells = Vec::new();
        for rep in 1..=study.repetitions {
            for &clients in study.clients.iter().filter(|&&c| keep(&opts.clients, c)) {
                for &pattern in study.patterns.iter().filter(|p| opts.patterns.is_empty() || opts.patterns.contains(p))
                {
                    for combo in study.combinations() {
                        for sp in &scenarios {
                            let mut workload =
                                study.workload(pattern, &combo).expect("validated when the study was loaded");
                            if let Some(f) = opts.scale {
                                scale_workload(&mut workload, f);
                            }
                            let options: Vec<(String, String)> =
                                combo.iter().map(|(k, v)| (k.clone(), value_text(v))).collect();
                            let mut id = format!("{}.{}.c{}", sp.scenario.name, pattern, clients);
                            for (k, v) in &options {
                                id.push_str(&format!(".{k}={v}"));
                            }
                            id.push_str(&format!(".r{rep}"));
                            let id = id.replace(['/', ' '], "_");
                            cells.push(Cell {
                                id,
                                scenario: sp.scenario.name.clone(),
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
        let per_client = cells.iter().map(|c| c.workload.size.get() * u64::from(c.workload.numjobs)).max().unwrap_or(0);
        let footprint_bytes = per_client * u64::from(max_clients);
        let free_bytes = free_space(&study.target);

        let mut estimate = Duration::from_secs_f64(footprint_bytes as f64 / (ASSUMED_THREAD_BW * 4.0));
        for c in &cells {
            let probe = &scenarios
                .iter()
                .find(|s| s.scenario.name == c.scenario)
                .expect("cell of a planned scenario")
                .scenario
                .runtime;
            estimate += startup_estimate(probe) + c.workload.ramp_time.0;
            estimate += match c.workload.runtime {
                Some(r) => r.0,
                None => Duration::from_secs_f64(c.workload.size.get() as f64 / ASSUMED_THREAD_BW),
            };
        }

        let mut warnings = Vec::new();
        let ram = ram_bytes();
        let reads = cells.iter().any(|c| !c.workload.direct && c.workload.rw.read_percent(c.workload.rwmixread) > 0);
        if reads && ram > 0 && footprint_bytes <= ram {
            warnings.push(Warning::FitsInPageCache { working_set_bytes: footprint_bytes, ram_bytes: ram });
        }
        if study.drop_caches && !rustix::process::geteuid().is_root() {
            warnings.push(Warning::CannotDropCaches);
        }
        if let Some(free) = free_bytes
            && footprint_bytes > free
        {
            warnings.push(Warning::NotEnoughSpace { needed_bytes: footprint_bytes, free_bytes: free });
        }

        Ok(Plan {
            study: study.clone(),
            scenarios,
            cells,
            scale: opts.scale,
            footprint_bytes,
            free_bytes,
            estimate,
            warnings,
        })
    }

    /// The scenario plan of a cell.
    pub fn scenario(&self, name: &str) -> &ScenarioPlan {
        self.scenarios.iter().find(|s| s.scenario.name == name).expect("cells name planned scenarios")
    }

    /// Problems that stop the study before its first cell.
    pub fn blockers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .scenarios
            .iter()
            .filter_map(|s| {
                s.probe.problem.as_ref().map(|p| {
                    format!("scenario `{}` cannot run here: {p} (or drop it with --scenario filters)", s.scenario.name)
                })
            })
            .collect();
        for w in &self.warnings {
            if let Warning::NotEnoughSpace { .. } = w {
                v.push(w.to_string());
            }
        }
        v
    }

    /// The text `iostudy plan` prints.
    pub fn render(&self) -> String {
        let s = &self.study;
        let mut out = String::new();
        let _ = writeln!(out, "study: {}", s.name);
        if let Some(d) = &s.description {
            let _ = writeln!(out, "  {}", d.trim());
        }
        let _ = writeln!(out, "file: {}", s.path.display());
        let _ = writeln!(out, "target: {}", s.target.display());
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
        let width = self.scenarios.iter().map(|x| x.scenario.name.len()).max().unwrap_or(0);
        for sp in &self.scenarios {
            let status = match (&sp.probe.problem, &sp.probe.version) {
                (Some(p), _) => format!("UNAVAILABLE: {p}"),
                (None, Some(v)) => format!("ok ({v})"),
                (None, None) => "ok".into(),
            };
            let _ = writeln!(out, "  {:width$}  {:<18} {status}", sp.scenario.name, sp.scenario.runtime.to_string());
            for n in &sp.probe.notes {
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
        let free = self.free_bytes.map_or("unknown".to_string(), human_bytes);
        let _ = writeln!(out, "\ndisk footprint: {} on the target ({} free)", human_bytes(self.footprint_bytes), free);
        let _ = writeln!(
            out,
            "estimated duration: {} (one-pass cells and layout assume {}/s per thread)",
            humantime::format_duration(Duration::from_secs(self.estimate.as_secs())),
            human_bytes(ASSUMED_THREAD_BW as u64)
        );
        let _ = writeln!(out, "\ncells (run order):");
        for (i, c) in self.cells.iter().enumerate() {
            let opts = if c.options.is_empty() { String::new() } else { format!("  {}", describe_options(&c.options)) };
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
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "\nwarnings:");
            for w in &self.warnings {
                let _ = writeln!(out, "  - {w}");
            }
        }
        let blockers = self.blockers();
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

fn startup_estimate(runtime: &RuntimeSpec) -> Duration {
    Duration::from_millis(match runtime {
        RuntimeSpec::Process => 200,
        RuntimeSpec::Oci { runtime, .. } if runtime.contains("runsc") => 1500,
        RuntimeSpec::Oci { .. } => 500,
        // A guest boots in ~4–7 s under TCG, well under 1 s with KVM.
        RuntimeSpec::Microvm(_) => 7000,
        RuntimeSpec::Mock => 20,
    })
}

/// Free bytes on the filesystem holding `path` (or its nearest existing ancestor).
pub fn free_space(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    rustix::fs::statvfs(existing).ok().map(|v| v.f_bavail.saturating_mul(v.f_frsize))
}

fn ram_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
