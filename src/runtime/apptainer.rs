//! The `apptainer` runtime: each client runs with `apptainer exec` (or Singularity's
//! `singularity exec`) in a SIF image Apptainer builds from the worker's OCI archive, the
//! target bound at `/data` — the container runtime most HPC centres offer.
//!
//! Apptainer is not packaged for Debian 12, so this backend is used where a site has
//! installed it and is **not tested on iostudy's own machines**; where it is missing the
//! probe names the fix. Clients are processes of this host (no daemon), moved into the
//! cell's cgroup like bare ones.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::command::{Cmd, which};
use crate::runtime::binary::worker_image;
use crate::runtime::child::ChildClient;
use crate::runtime::{
    Backend, Client, Kind, Launch, Probe, RuntimeError, ScenarioContext, Section, SpannedError, Spec, TARGET_MOUNT,
};

pub static KIND: ApptainerKind = ApptainerKind;

pub struct ApptainerKind;

/// An Apptainer scenario: which command runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApptainerSpec {
    /// `apptainer`, or `singularity` where only the older name is installed.
    #[serde(default = "apptainer")]
    pub command: String,
}

fn apptainer() -> String {
    "apptainer".into()
}

impl Kind for ApptainerKind {
    fn name(&self) -> &'static str {
        "apptainer"
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError> {
        let spec: ApptainerSpec = section.deserialize()?;
        Ok(Arc::new(spec))
    }

    fn rebuild(&self, settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
        let spec: ApptainerSpec = serde_json::from_value(settings.clone())
            .map_err(|e| RuntimeError::Setup(format!("apptainer settings: {e}")))?;
        Ok(Arc::new(spec))
    }

    fn builtins(&self) -> Vec<(&'static str, Arc<dyn Spec>)> {
        vec![("apptainer", Arc::new(ApptainerSpec { command: apptainer() }))]
    }

    fn known(&self) -> Vec<Arc<dyn Spec>> {
        vec![Arc::new(ApptainerSpec { command: apptainer() })]
    }
}

impl Spec for ApptainerSpec {
    fn kind(&self) -> &'static dyn Kind {
        &KIND
    }

    fn name(&self) -> String {
        format!("apptainer/{}", self.command)
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serializes")
    }

    fn probe(&self) -> Probe {
        let mut p = Probe::of(self);
        let Some(bin) = which(&self.command) else {
            return p.fail(format!(
                "{} not found: Apptainer is not packaged for Debian 12; install it from apptainer.org (iostudy runs it, but it is not tested on iostudy's machines)",
                self.command
            ));
        };
        p.version = Cmd::new(bin).arg("--version").first_line();
        p.notes.push("not tested on iostudy's own machines (no Debian 12 package)".into());
        p.usable = true;
        p
    }

    fn startup_estimate(&self) -> Duration {
        Duration::from_millis(300)
    }

    fn prepare(&self, ctx: &ScenarioContext) -> Result<Box<dyn Backend>, RuntimeError> {
        if let Some(problem) = self.probe().problem {
            return Err(RuntimeError::Unavailable(problem));
        }
        let bin =
            which(&self.command).ok_or_else(|| RuntimeError::Unavailable(format!("{} not found", self.command)))?;
        fs::create_dir_all(&ctx.dir).map_err(RuntimeError::io(format!("create {}", ctx.dir.display())))?;
        let tar = ctx.dir.join("worker.tar");
        crate::safety::write_atomic(&tar, &worker_image()?.archive)?;
        let sif = ctx.dir.join("worker.sif");
        Cmd::new(&bin)
            .args(["build", "--force"])
            .arg(&sif)
            .arg(format!("oci-archive:{}", tar.display()))
            .run_checked()
            .map_err(|e| RuntimeError::Setup(format!("building the SIF image: {e}")))?;
        let _ = fs::remove_file(&tar);
        Ok(Box::new(Apptainer { bin, sif, target: ctx.run.target.clone() }))
    }
}

/// Apptainer prepared for a run: the SIF image.
#[derive(Debug)]
pub struct Apptainer {
    bin: PathBuf,
    sif: PathBuf,
    target: PathBuf,
}

impl Backend for Apptainer {
    fn client_path(&self, target: &Path, host_path: &Path) -> PathBuf {
        Path::new(TARGET_MOUNT).join(host_path.strip_prefix(target).unwrap_or(host_path))
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        let cmd = Cmd::new(&self.bin)
            .args(["exec", "--containall", "--no-home"])
            .arg(format!("--bind={}:{TARGET_MOUNT}", self.target.display()))
            .arg(&self.sif)
            .args(["/iostudy", "worker", "--job"])
            .arg(&l.job);
        Ok(Box::new(ChildClient::spawn(l, &cmd, Vec::new(), Vec::new())?))
    }

    fn cleanup(&self) {
        if let Some(dir) = self.sif.parent() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}
