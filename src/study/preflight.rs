//! What the host says about a plan, before anything runs: each scenario's runtime
//! probed, free space on the target, RAM, privileges — the checks `iostudy plan` shows
//! and `iostudy run` must pass before its first cell. Separate from planning, which is
//! pure, because every check here does I/O.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::runtime::Probe;
use crate::study::plan::Plan;
use crate::workload::human_bytes;

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

/// The host's answers about a plan.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// Each planned scenario's probe, in plan order.
    pub probes: Vec<(String, Probe)>,
    pub free_bytes: Option<u64>,
    pub warnings: Vec<Warning>,
}

impl Preflight {
    /// Probes every runtime of `plan` and checks the host.
    pub fn gather(plan: &Plan) -> Preflight {
        let probes = plan.scenarios.iter().map(|s| (s.name.clone(), s.runtime.probe())).collect();
        let free_bytes = free_space(&plan.study.target);
        let mut warnings = Vec::new();
        let ram = ram_bytes();
        let reads =
            plan.cells.iter().any(|c| !c.workload.direct && c.workload.rw.read_percent(c.workload.rwmixread) > 0);
        if reads && ram > 0 && plan.footprint_bytes <= ram {
            warnings.push(Warning::FitsInPageCache { working_set_bytes: plan.footprint_bytes, ram_bytes: ram });
        }
        if plan.study.drop_caches && !rustix::process::geteuid().is_root() {
            warnings.push(Warning::CannotDropCaches);
        }
        if let Some(free) = free_bytes
            && plan.footprint_bytes > free
        {
            warnings.push(Warning::NotEnoughSpace { needed_bytes: plan.footprint_bytes, free_bytes: free });
        }
        Preflight { probes, free_bytes, warnings }
    }

    /// The probe of a planned scenario.
    pub fn probe(&self, scenario: &str) -> &Probe {
        &self.probes.iter().find(|(n, _)| n == scenario).expect("every planned scenario is probed").1
    }

    /// Problems that stop the study before its first cell.
    pub fn blockers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .probes
            .iter()
            .filter_map(|(name, p)| {
                p.problem
                    .as_ref()
                    .map(|p| format!("scenario `{name}` cannot run here: {p} (or drop it with --scenario filters)"))
            })
            .collect();
        for w in &self.warnings {
            if let Warning::NotEnoughSpace { .. } = w {
                v.push(w.to_string());
            }
        }
        v
    }
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
