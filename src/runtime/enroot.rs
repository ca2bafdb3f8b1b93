//! The `enroot` runtime: each client runs with `enroot start` in a container Enroot
//! creates from a squashfs of the worker's rootfs, the target mounted at `/data` —
//! NVIDIA's unprivileged runtime, common on GPU clusters with Pyxis.
//!
//! Enroot is not packaged for Debian 12, so this backend is used where a site has
//! installed it (with `mksquashfs`) and is **not tested on iostudy's own machines**;
//! where it is missing the probe names the fix.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::command::{Cmd, which};
use crate::runtime::binary::worker_binary;
use crate::runtime::child::ChildClient;
use crate::runtime::{
    Backend, Client, Kind, Launch, Probe, RuntimeError, ScenarioContext, Section, SpannedError, Spec, TARGET_MOUNT,
};

pub static KIND: EnrootKind = EnrootKind;

pub struct EnrootKind;

/// An Enroot scenario (no settings of its own yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrootSpec {}

impl Kind for EnrootKind {
    fn name(&self) -> &'static str {
        "enroot"
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError> {
        let spec: EnrootSpec = section.deserialize()?;
        Ok(Arc::new(spec))
    }

    fn rebuild(&self, _settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
        Ok(Arc::new(EnrootSpec {}))
    }

    fn builtins(&self) -> Vec<(&'static str, Arc<dyn Spec>)> {
        vec![("enroot", Arc::new(EnrootSpec {}))]
    }

    fn known(&self) -> Vec<Arc<dyn Spec>> {
        vec![Arc::new(EnrootSpec {})]
    }

    /// A run killed outright leaves its container in Enroot's data directory.
    fn reap(&self, run_state: &Path) {
        for e in fs::read_dir(run_state).into_iter().flatten().flatten() {
            if let Ok(name) = fs::read_to_string(e.path().join(NAME_FILE)) {
                let _ = Cmd::new("enroot").args(["remove", "--force", name.trim()]).output();
            }
        }
    }
}

/// Where a prepared scenario records its container's name, for reaping.
const NAME_FILE: &str = "enroot-container";

impl Spec for EnrootSpec {
    fn kind(&self) -> &'static dyn Kind {
        &KIND
    }

    fn name(&self) -> String {
        "enroot".into()
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serializes")
    }

    fn probe(&self) -> Probe {
        let mut p = Probe::of(self);
        let Some(bin) = which("enroot") else {
            return p.fail(
                "enroot not found: Enroot is not packaged for Debian 12; install it from github.com/NVIDIA/enroot (iostudy runs it, but it is not tested on iostudy's machines)",
            );
        };
        if which("mksquashfs").is_none() {
            return p.fail("mksquashfs not found: apt-get install squashfs-tools");
        }
        p.version = Cmd::new(bin).arg("version").first_line();
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
        let bin = which("enroot").ok_or_else(|| RuntimeError::Unavailable("enroot not found".into()))?;
        let rootfs = ctx.dir.join("rootfs");
        for d in ["dev", "proc", "sys", "tmp", "etc", TARGET_MOUNT.trim_start_matches('/')] {
            let p = rootfs.join(d);
            fs::create_dir_all(&p).map_err(RuntimeError::io(format!("create {}", p.display())))?;
        }
        let worker = worker_binary().map_err(RuntimeError::Unavailable)?;
        fs::copy(&worker, rootfs.join("iostudy")).map_err(RuntimeError::io("copy the worker into the rootfs"))?;
        let image = ctx.dir.join("worker.sqsh");
        Cmd::new("mksquashfs")
            .arg(&rootfs)
            .arg(&image)
            .args(["-noappend", "-quiet"])
            .run_checked()
            .map_err(|e| RuntimeError::Setup(format!("mksquashfs: {e}")))?;
        let name = format!("iostudy-{}", ctx.run.run_id);
        crate::safety::write_atomic(&ctx.dir.join(NAME_FILE), name.as_bytes())?;
        Cmd::new(&bin)
            .args(["create", "--force", "--name", &name])
            .arg(&image)
            .run_checked()
            .map_err(|e| RuntimeError::Setup(format!("enroot create: {e}")))?;
        Ok(Box::new(Enroot { bin, name, dir: ctx.dir.clone(), target: ctx.run.target.clone() }))
    }
}

/// Enroot prepared for a run: its container.
#[derive(Debug)]
pub struct Enroot {
    bin: PathBuf,
    name: String,
    dir: PathBuf,
    target: PathBuf,
}

impl Backend for Enroot {
    fn client_path(&self, target: &Path, host_path: &Path) -> PathBuf {
        Path::new(TARGET_MOUNT).join(host_path.strip_prefix(target).unwrap_or(host_path))
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        let cmd = Cmd::new(&self.bin)
            .args(["start", "--root", "--rw", "--mount"])
            .arg(format!("{}:{TARGET_MOUNT}", self.target.display()))
            .arg(&self.name)
            .args(["/iostudy", "worker", "--job"])
            .arg(&l.job);
        Ok(Box::new(ChildClient::spawn(l, &cmd, Vec::new(), Vec::new())?))
    }

    fn cleanup(&self) {
        let _ = Cmd::new(&self.bin).args(["remove", "--force", &self.name]).output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
