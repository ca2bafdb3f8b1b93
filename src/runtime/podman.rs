//! The `podman` runtime: each client a container Podman runs from the worker's OCI image
//! (`iostudy image`, loaded with `podman load`), as HPC sites and daemonless users run
//! containers; crun underneath by default, as Debian's Podman does, or runc or runsc.
//!
//! Every run keeps Podman's storage and state in its own scratch (`--root`,
//! `--runroot`; one for all its Podman scenarios, so the image is loaded once), so
//! nothing of a user's images or containers is touched and everything goes with the
//! run. Rootful runs use cgroupfs and put each container under the cell's
//! cgroup (`--cgroup-parent`), so its CPU is counted; a non-root user gets rootless
//! Podman (user namespaces), whose containers keep their own cgroups. What this host
//! needs and does: no network (`--network=none`); explicit `--ulimit`s (root here lacks
//! CAP_SYS_RESOURCE); crun on a cgroup v1/v2 hybrid host in a private mount namespace
//! with the v2 mount hidden, as the `oci` backend runs it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::command::{Cmd, which};
use crate::runtime::binary::worker_image;
use crate::runtime::child::ChildClient;
use crate::runtime::oci::cgroup_hybrid;
use crate::runtime::{
    Backend, Client, Kind, Launch, Probe, RuntimeError, ScenarioContext, Section, SpannedError, Spec, TARGET_MOUNT,
};

pub static KIND: PodmanKind = PodmanKind;

pub struct PodmanKind;

/// A Podman scenario: the OCI runtime under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodmanSpec {
    /// `crun` (Podman's default), `runc` or `runsc`.
    #[serde(default = "crun")]
    pub oci_runtime: String,
}

fn crun() -> String {
    "crun".into()
}

impl Kind for PodmanKind {
    fn name(&self) -> &'static str {
        "podman"
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError> {
        let spec: PodmanSpec = section.deserialize()?;
        if !["crun", "runc", "runsc"].contains(&spec.oci_runtime.as_str()) {
            return Err(section.error(
                format!("oci_runtime `{}` is not one Podman runs here", spec.oci_runtime),
                Some("crun, runc or runsc".into()),
            ));
        }
        Ok(Arc::new(spec))
    }

    fn rebuild(&self, settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
        let spec: PodmanSpec = serde_json::from_value(settings.clone())
            .map_err(|e| RuntimeError::Setup(format!("podman settings: {e}")))?;
        Ok(Arc::new(spec))
    }

    fn builtins(&self) -> Vec<(&'static str, Arc<dyn Spec>)> {
        let spec = |r: &str| -> Arc<dyn Spec> { Arc::new(PodmanSpec { oci_runtime: r.into() }) };
        vec![("podman", spec("crun")), ("podman-runc", spec("runc")), ("podman-gvisor", spec("runsc"))]
    }

    fn known(&self) -> Vec<Arc<dyn Spec>> {
        self.builtins().into_iter().map(|(_, s)| s).collect()
    }

    /// Podman with crun underneath, as Debian ships it.
    fn demo_scenarios(&self) -> Vec<crate::runtime::DemoScenario> {
        crate::runtime::DemoScenario::builtin(self, "podman").into_iter().collect()
    }

    /// A run killed outright leaves containers in its private storage: removed, their
    /// mounts detached.
    fn reap(&self, run_state: &Path) {
        if run_state.join(STORAGE).exists() {
            let p = Podman::at(run_state, PathBuf::from("podman"), None);
            let _ = p.cmd().args(["rm", "--all", "--force", "--time", "0"]).output();
            crate::safety::unmount_under(&run_state.join(STORAGE));
            crate::safety::unmount_under(&run_state.join(RUNROOT));
        }
    }
}

impl Spec for PodmanSpec {
    fn kind(&self) -> &'static dyn Kind {
        &KIND
    }

    fn name(&self) -> String {
        format!("podman/{}", self.oci_runtime)
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serializes")
    }

    fn probe(&self) -> Probe {
        let mut p = Probe::of(self);
        let Some(bin) = which("podman") else {
            return p.fail("podman not found: apt-get install podman");
        };
        if which(&self.oci_runtime).is_none() {
            return p.fail(format!("{} not found: apt-get install {}", self.oci_runtime, self.oci_runtime));
        }
        p.version = Cmd::new(bin).arg("--version").first_line();
        if !rustix::process::geteuid().is_root() {
            p.notes.push("rootless Podman: containers keep their own cgroups (their CPU is not counted)".into());
        }
        if self.oci_runtime == "runsc" && !rustix::process::geteuid().is_root() {
            return p.fail("rootless Podman cannot start gVisor's sandbox here (runsc needs root): run as root");
        }
        if self.oci_runtime == "crun" && cgroup_hybrid() {
            if !rustix::process::geteuid().is_root() {
                return p.fail(
                    "rootless crun refuses a cgroup v1/v2 hybrid host (and the v2 mount cannot be hidden without root): use podman-runc (oci_runtime = \"runc\"), or run as root",
                );
            }
            p.notes.push("cgroup v1/v2 hybrid host: crun runs with /sys/fs/cgroup/unified hidden".into());
        }
        if let Err(e) = crate::runtime::binary::worker_binary() {
            return p.fail(e);
        }
        p.usable = true;
        p
    }

    fn startup_estimate(&self) -> Duration {
        Duration::from_millis(400)
    }

    fn own_cgroups(&self) -> bool {
        true
    }

    fn prepare(&self, ctx: &ScenarioContext) -> Result<Box<dyn Backend>, RuntimeError> {
        if let Some(problem) = self.probe().problem {
            return Err(RuntimeError::Unavailable(problem));
        }
        let bin = which("podman").ok_or_else(|| RuntimeError::Unavailable("podman not found".into()))?;
        fs::create_dir_all(&ctx.dir).map_err(RuntimeError::io(format!("create {}", ctx.dir.display())))?;
        let shared = &ctx.run.state_dir;
        // Rootless Podman runs crun in a user namespace, where the inherited v2 mount is
        // locked (cannot be unmounted) and crun leaves cgroups alone anyway.
        let rootful = rustix::process::geteuid().is_root();
        let wrapper = (rootful && self.oci_runtime == "crun" && cgroup_hybrid()).then(|| ctx.dir.join("crun-hybrid"));
        if let Some(w) = &wrapper {
            let crun = which("crun").ok_or_else(|| RuntimeError::Unavailable("crun not found".into()))?;
            crate::runtime::oci::write_wrapper(w, &crun, &[], true)?;
        }
        let mut podman = Podman::at(shared, bin, wrapper.or_else(|| which(&self.oci_runtime)));
        podman.gvisor = self.oci_runtime == "runsc";
        podman.target = ctx.run.target.clone();
        let image = worker_image()?;
        podman.image = image.name.clone();
        let present =
            podman.cmd().args(["image", "exists"]).arg(&image.name).output().is_ok_and(|o| o.status.success());
        if !present {
            let tar = ctx.dir.join("worker.tar");
            crate::safety::write_atomic(&tar, &image.archive)?;
            let loaded = podman.cmd().args(["load", "--quiet", "--input"]).arg(&tar).run_checked();
            let _ = fs::remove_file(&tar);
            loaded.map_err(|e| RuntimeError::Setup(format!("podman load: {e}")))?;
        }
        Ok(Box::new(podman))
    }
}

/// Podman prepared for a run: its private storage, the OCI runtime, the loaded image.
#[derive(Debug)]
pub struct Podman {
    bin: PathBuf,
    root: PathBuf,
    runroot: PathBuf,
    /// The OCI runtime Podman is given (a path: the binary, or crun's hybrid wrapper).
    runtime: Option<PathBuf>,
    gvisor: bool,
    image: String,
    target: PathBuf,
}

/// The run's Podman storage and state (`--runroot` must be shorter than 50 characters).
const STORAGE: &str = "podman";
const RUNROOT: &str = "pr";

impl Podman {
    /// Podman with the storage and state in the run's state directory `run_state`.
    fn at(run_state: &Path, bin: PathBuf, runtime: Option<PathBuf>) -> Podman {
        Podman {
            bin,
            root: run_state.join(STORAGE),
            runroot: run_state.join(RUNROOT),
            runtime,
            gvisor: false,
            image: String::new(),
            target: PathBuf::new(),
        }
    }

    /// `podman` with this run's private storage and state.
    fn cmd(&self) -> Cmd {
        let mut c = Cmd::new(&self.bin)
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--events-backend=file", "--log-level=error"]);
        if rustix::process::geteuid().is_root() {
            c = c.arg("--cgroup-manager=cgroupfs");
        }
        c
    }

    /// `podman run` of one client.
    fn run_cmd(&self, l: &Launch) -> Cmd {
        let nofile = l.open_files.max(1024);
        let mut c = self
            .cmd()
            .arg("run")
            .args(["--rm", "--network=none", "--pull=never"])
            .arg(format!("--name={}", l.id))
            .arg(format!("--hostname={}", rustix::system::uname().nodename().to_string_lossy()))
            .arg(format!("--ulimit=nofile={nofile}:{nofile}"))
            .arg("--ulimit=nproc=4096:4096")
            .arg(format!("--volume={}:{TARGET_MOUNT}", self.target.display()));
        if let Some(r) = &self.runtime {
            c = c.arg(format!("--runtime={}", r.display()));
        }
        if self.gvisor {
            c = c.arg("--runtime-flag=network=none");
        }
        if !rustix::process::geteuid().is_root() {
            // Rootless: containers keep cgroups of their own (or none), never the cell's.
        } else if let Some(parent) = l.cgroup.as_ref().and_then(|cg| cg.container_path("")) {
            c = c.arg(format!("--cgroup-parent={}", parent.trim_end_matches('/')));
        }
        c.arg(&self.image).arg("--job").arg(&l.job)
    }
}

impl Backend for Podman {
    fn client_path(&self, target: &Path, host_path: &Path) -> PathBuf {
        Path::new(TARGET_MOUNT).join(host_path.strip_prefix(target).unwrap_or(host_path))
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        let stop = self.cmd().args(["kill", "--signal", "KILL"]).arg(&l.id);
        let remove = self.cmd().args(["rm", "--force", "--time", "0"]).arg(&l.id);
        Ok(Box::new(ChildClient::spawn(l, &self.run_cmd(l), vec![stop], vec![remove])?))
    }

    /// Every container and image of the run's storage, its mounts, then the storage
    /// (shared by the run's Podman scenarios: the first to clean up takes it all).
    fn cleanup(&self) {
        if !self.root.exists() {
            return;
        }
        let _ = self.cmd().args(["rm", "--all", "--force", "--time", "0"]).output();
        let _ = self.cmd().args(["rmi", "--all", "--force"]).output();
        for d in [&self.root, &self.runroot] {
            crate::safety::unmount_under(d);
            let _ = fs::remove_dir_all(d);
        }
    }
}
