//! The `charliecloud` runtime: each client runs with `ch-run` in a directory image that
//! holds the static worker — Charliecloud's unprivileged containers (user namespaces,
//! no daemon, no setuid), as many HPC centres run user containers — the target bound
//! at `/data`.
//!
//! The image is a directory made for the run in its scratch: the worker, the empty
//! mount points `ch-run` binds (`/dev`, `/proc`, `/sys`, `/tmp`, `/data`, and the
//! `/etc` files it binds from the host). `ch-run` needs `$USER`, which a root shell may
//! lack; it is set. Containers have no cgroups of their own: the client process is
//! moved into the cell's cgroup like a bare one.

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

pub static KIND: CharliecloudKind = CharliecloudKind;

pub struct CharliecloudKind;

/// A Charliecloud scenario (no settings of its own yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharliecloudSpec {}

impl Kind for CharliecloudKind {
    fn name(&self) -> &'static str {
        "charliecloud"
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError> {
        let spec: CharliecloudSpec = section.deserialize()?;
        Ok(Arc::new(spec))
    }

    fn rebuild(&self, _settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
        Ok(Arc::new(CharliecloudSpec {}))
    }

    fn builtins(&self) -> Vec<(&'static str, Arc<dyn Spec>)> {
        vec![("charliecloud", Arc::new(CharliecloudSpec {}))]
    }

    fn known(&self) -> Vec<Arc<dyn Spec>> {
        vec![Arc::new(CharliecloudSpec {})]
    }

    fn demo_scenarios(&self) -> Vec<crate::runtime::DemoScenario> {
        crate::runtime::DemoScenario::builtin(self, "charliecloud").into_iter().collect()
    }
}

impl Spec for CharliecloudSpec {
    fn kind(&self) -> &'static dyn Kind {
        &KIND
    }

    fn name(&self) -> String {
        "charliecloud/ch-run".into()
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serializes")
    }

    fn probe(&self) -> Probe {
        let mut p = Probe::of(self);
        let Some(bin) = which("ch-run") else {
            return p.fail("ch-run not found: apt-get install charliecloud");
        };
        p.version = Cmd::new(bin).arg("--version").env("USER", user()).first_line().map(|v| format!("ch-run {v}"));
        if let Err(e) = worker_binary() {
            return p.fail(e);
        }
        p.usable = true;
        p
    }

    fn startup_estimate(&self) -> Duration {
        Duration::from_millis(50)
    }

    fn prepare(&self, ctx: &ScenarioContext) -> Result<Box<dyn Backend>, RuntimeError> {
        if let Some(problem) = self.probe().problem {
            return Err(RuntimeError::Unavailable(problem));
        }
        let bin = which("ch-run").ok_or_else(|| RuntimeError::Unavailable("ch-run not found".into()))?;
        let worker = worker_binary().map_err(RuntimeError::Unavailable)?;
        let image = ctx.dir.join("image");
        for d in ["dev", "proc", "sys", "tmp", "etc", "home", TARGET_MOUNT.trim_start_matches('/')] {
            let p = image.join(d);
            fs::create_dir_all(&p).map_err(RuntimeError::io(format!("create {}", p.display())))?;
        }
        // The files ch-run binds from the host must exist in the image.
        for f in ["passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "machine-id"] {
            crate::safety::write_atomic(&image.join("etc").join(f), b"")?;
        }
        fs::copy(&worker, image.join("iostudy"))
            .map_err(RuntimeError::io(format!("copy the worker {} into the image", worker.display())))?;
        Ok(Box::new(Charliecloud { bin, image, target: ctx.run.target.clone() }))
    }
}

/// `$USER` for ch-run: the caller's, or root's name when a shell left it unset.
fn user() -> String {
    std::env::var("USER")
        .unwrap_or_else(|_| if rustix::process::geteuid().is_root() { "root".into() } else { "iostudy".into() })
}

/// Charliecloud prepared for a run: `ch-run` and the directory image.
#[derive(Debug)]
pub struct Charliecloud {
    bin: PathBuf,
    image: PathBuf,
    target: PathBuf,
}

impl Backend for Charliecloud {
    fn client_path(&self, target: &Path, host_path: &Path) -> PathBuf {
        Path::new(TARGET_MOUNT).join(host_path.strip_prefix(target).unwrap_or(host_path))
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        let cmd = Cmd::new(&self.bin)
            .env("USER", user())
            .arg(format!("--bind={}:{TARGET_MOUNT}", self.target.display()))
            .arg(&self.image)
            .args(["--", "/iostudy", "worker", "--job"])
            .arg(&l.job);
        Ok(Box::new(ChildClient::spawn(l, &cmd, Vec::new(), Vec::new())?))
    }

    fn cleanup(&self) {
        if let Some(dir) = self.image.parent() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}
