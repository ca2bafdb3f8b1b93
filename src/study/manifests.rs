//! `iostudy plan --manifests DIR`: every Kubernetes cell's Job as YAML, one file per
//! cell, exactly as `iostudy run` would create it (but for the run id, `plan`).

use std::path::{Path, PathBuf};

use crate::control::{CONTROL_DIR, cell_dir};
use crate::runtime::kubernetes::manifest::{CellJob, job, to_yaml};
use crate::runtime::kubernetes::{KubeSpec, timing};
use crate::study::plan::Plan;

/// The run id the manifests carry in place of a run's.
pub const PLAN_RUN_ID: &str = "plan";

/// Writes one YAML file per Kubernetes cell into `dir` (created if missing); returns
/// them. Files are written atomically; `dir` must not be a link.
pub fn write(plan: &Plan, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (index, cell) in plan.cells.iter().enumerate() {
        let scenario = plan.scenario(&cell.scenario);
        if scenario.runtime.kind() != "kubernetes" {
            continue;
        }
        let spec: KubeSpec = serde_json::from_value(scenario.runtime.settings())?;
        if written.is_empty() {
            crate::safety::ensure_path(dir)?;
        }
        let name = format!("iostudy-{PLAN_RUN_ID}-{index}");
        let control = cell_dir(&spec.mount_path.join(CONTROL_DIR).join(PLAN_RUN_ID), index);
        let deadline = cell.deadline(timing(cell.clients).lead, plan.study.barrier_timeout, plan.study.cell_timeout);
        let cell_job = CellJob {
            name: &name,
            study: &plan.study.name,
            run_id: PLAN_RUN_ID,
            cell_id: &cell.id,
            clients: cell.clients,
            deadline,
            control: &control,
        };
        let header = format!(
            "iostudy {} — study {:?}, cell {}\n\
             `iostudy run` creates this Job (with its own run id) after posting each client's job file\n\
             under {} on the shared volume, and sends go once every pod reported ready: applied by\n\
             hand, its pods wait for job files that only a run writes.",
            env!("CARGO_PKG_VERSION"),
            plan.study.name,
            cell.id,
            control.display()
        );
        let text = to_yaml(&job(&spec, &cell_job), &header).map_err(anyhow::Error::msg)?;
        let path = dir.join(format!("{}.yaml", cell.id));
        crate::safety::write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}
