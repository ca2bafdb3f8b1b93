//! The `containerd` runtime: clients as containers that containerd starts through a
//! shim, from an image — the path a Kubernetes kubelet takes to a runtime.
//!
//! The image is the worker's own ([`crate::image`]), imported into containerd's
//! `iostudy` namespace; each client is `ctr run --rm` with the chosen shim
//! (`io.containerd.runc.v2`, `io.containerd.kata.v2`, any `containerd-shim-*` on PATH),
//! for runc.v2 the chosen OCI binary (its `BinaryName`: crun, runsc…), and the target
//! bind-mounted at `/data`, so the control channel is the OCI scenarios' one. `ctr`
//! rather than containerd's gRPC API: a Rust client needs protobuf code generation at
//! build time, while `ctr` is in the same package as containerd, says what went wrong
//! in plain words, and each step (`kill`, `delete`) is one command a user can rerun.
//!
//! Without `address`, each scenario starts its own containerd for the run, with private
//! root, state and socket under the run's state directory (a private runc root too),
//! and stops it afterwards; with `address`, it uses that daemon and touches only the
//! containers it labelled with the run's id. After a run killed outright, the next run
//! restarts the private daemon on the same state — containerd then cleans up after the
//! dead shims itself — and deletes what is left.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::command::{Cmd, which};
use crate::runtime::binary::{worker_binary, worker_image};
use crate::runtime::child::{ChildClient, kill_group};
use crate::runtime::oci::{Flavor, install_hint};
use crate::runtime::{
    Backend, Client, ClientCost, Kind, Launch, Probe, RuntimeError, ScenarioContext, Section, SpannedError, Spec,
    TARGET_MOUNT,
};
use crate::workload::Workload;

pub static KIND: ContainerdKind = ContainerdKind;

pub struct ContainerdKind;

/// The namespace every iostudy container and image lives in.
pub const NAMESPACE: &str = "iostudy";
/// The label naming the run a container belongs to.
const RUN_LABEL: &str = "iostudy.run";
/// The shim Kubernetes uses for runc, and the default.
pub const RUNC_SHIM: &str = "io.containerd.runc.v2";
/// containerd's default spec limits open files to this; ctr cannot raise it.
const NOFILE_LIMIT: u64 = 1024;
const RECORD: &str = "runtime.json";

/// The keys of a `containerd` scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `io.containerd.runc.v2` (default), `io.containerd.kata.v2`, … or a shim's path.
    shim: Option<String>,
    /// The runc shim's `BinaryName`: `runc` (default), `crun`, `runsc`, or a path.
    oci_runtime: Option<String>,
    /// Extra global arguments of the OCI binary (through a wrapper), e.g.
    /// `["--platform=ptrace"]` for runsc.
    #[serde(default)]
    runtime_args: Vec<String>,
    /// An existing containerd's socket; default: a containerd started for the run.
    address: Option<PathBuf>,
    /// containerd's snapshotter for the containers' root filesystems (default overlayfs).
    snapshotter: Option<String>,
}

impl Kind for ContainerdKind {
    fn name(&self) -> &'static str {
        "containerd"
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError> {
        let s: Settings = section.deserialize()?;
        let shim = s.shim.unwrap_or_else(|| RUNC_SHIM.to_string());
        if (s.oci_runtime.is_some() || !s.runtime_args.is_empty()) && !is_runc_shim(&shim) {
            return Err(section.error(
                format!("oci_runtime and runtime_args choose the runc shim's binary, but shim is `{shim}`"),
                Some(format!("remove them (the {shim} shim picks its own runtime) or use shim = \"{RUNC_SHIM}\"")),
            ));
        }
        Ok(Arc::new(ContainerdSpec {
            shim,
            oci_runtime: s.oci_runtime,
            runtime_args: s.runtime_args,
            address: s.address,
            snapshotter: s.snapshotter,
        }))
    }

    fn rebuild(&self, settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
        let spec: ContainerdSpec = serde_json::from_value(settings.clone())
            .map_err(|e| RuntimeError::Setup(format!("containerd settings: {e}")))?;
        Ok(Arc::new(spec))
    }

    fn builtins(&self) -> Vec<(&'static str, Arc<dyn Spec>)> {
        let spec = |oci: Option<&str>| -> Arc<dyn Spec> {
            Arc::new(ContainerdSpec {
                shim: RUNC_SHIM.into(),
                oci_runtime: oci.map(str::to_string),
                runtime_args: Vec::new(),
                address: None,
                snapshotter: None,
            })
        };
        vec![("ctr-runc", spec(None)), ("ctr-crun", spec(Some("crun"))), ("ctr-gvisor", spec(Some("runsc")))]
    }

    /// runc again, the way a kubelet reaches it: containerd and its runc shim.
    fn demo_scenarios(&self) -> Vec<crate::runtime::DemoScenario> {
        crate::runtime::DemoScenario::builtin(self, "ctr-runc").into_iter().collect()
    }

    fn known(&self) -> Vec<Arc<dyn Spec>> {
        let mut v: Vec<Arc<dyn Spec>> = self.builtins().into_iter().map(|(_, s)| s).collect();
        v.push(Arc::new(ContainerdSpec {
            shim: "io.containerd.kata.v2".into(),
            oci_runtime: None,
            runtime_args: Vec::new(),
            address: None,
            snapshotter: None,
        }));
        v
    }

    fn reap(&self, run_state: &Path) {
        for e in fs::read_dir(run_state).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("containerd-") {
                reap_dir(&e.path());
            }
        }
    }
}

/// Whether `shim` is the runc shim (which takes a `BinaryName`).
fn is_runc_shim(shim: &str) -> bool {
    shim == RUNC_SHIM || shim == "io.containerd.runc.v1" || shim.ends_with("containerd-shim-runc-v2")
}

/// The binary containerd runs for the shim `io.containerd.NAME.vN`: `containerd-shim-NAME-vN`.
pub fn shim_binary(shim: &str) -> String {
    if shim.contains('/') {
        return shim.to_string();
    }
    let rest = shim.strip_prefix("io.containerd.").unwrap_or(shim);
    format!("containerd-shim-{}", rest.replace('.', "-"))
}

/// The shims on PATH, by the names a study gives them.
pub fn shims_found() -> Vec<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut found: Vec<String> = std::env::split_paths(&path)
        .flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix("containerd-shim-")?;
            let (kind, version) = rest.rsplit_once('-')?;
            Some(format!("io.containerd.{kind}.{version}"))
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Containers containerd runs through a shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerdSpec {
    pub shim: String,
    pub oci_runtime: Option<String>,
    pub runtime_args: Vec<String>,
    pub address: Option<PathBuf>,
    pub snapshotter: Option<String>,
}

impl ContainerdSpec {
    /// The OCI binary behind the runc shim: the one chosen, else runc.
    fn oci_binary(&self) -> Option<&str> {
        is_runc_shim(&self.shim).then(|| self.oci_runtime.as_deref().unwrap_or("runc"))
    }

    fn flavor(&self) -> Flavor {
        self.oci_binary().map_or(Flavor::Other, Flavor::of)
    }
}

impl Spec for ContainerdSpec {
    fn kind(&self) -> &'static dyn Kind {
        &KIND
    }

    fn name(&self) -> String {
        let shim = self.shim.strip_prefix("io.containerd.").unwrap_or(&self.shim);
        match &self.oci_runtime {
            Some(oci) => format!("containerd/{shim}/{oci}"),
            None => format!("containerd/{shim}"),
        }
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serializes")
    }

    fn probe(&self) -> Probe {
        probe(self)
    }

    fn startup_estimate(&self) -> Duration {
        Duration::from_millis(if self.flavor() == Flavor::Runsc { 1500 } else { 800 })
    }

    fn client_cost(&self, w: &Workload) -> ClientCost {
        // `ctr run` and the shim beside the container; gVisor adds its sentry and gofer.
        let base = ClientCost::worker(w).plus(30, 48 << 20);
        if self.flavor() == Flavor::Runsc { base.plus(40, 160 << 20) } else { base }
    }

    fn prepare(&self, ctx: &ScenarioContext) -> Result<Box<dyn Backend>, RuntimeError> {
        Ok(Box::new(Containerd::prepare(self, ctx)?))
    }
}

/// The first non-empty line `BIN --version` prints.
fn version_line(bin: &Path) -> Option<String> {
    Cmd::new(bin).arg("--version").first_line()
}

/// `containerd --version` reads `containerd github.com/containerd/containerd 1.6.20~ds1 …`.
fn containerd_version(line: &str) -> String {
    line.split_whitespace().nth(2).unwrap_or(line).to_string()
}

/// What this scenario needs, checked without starting anything long-lived.
fn probe(spec: &ContainerdSpec) -> Probe {
    let mut p = Probe::of(spec);
    let Some(ctr) = which("ctr") else {
        return p.fail("ctr not found: apt-get install containerd");
    };
    let version = match &spec.address {
        None => {
            let Some(bin) = which("containerd") else {
                return p.fail("containerd not found: apt-get install containerd");
            };
            version_line(&bin).map(|l| containerd_version(&l))
        }
        Some(address) => {
            let out = Cmd::new(&ctr).arg("-a").arg(address).arg("version").output();
            match out {
                Ok(o) if o.status.success() => {
                    let text = String::from_utf8_lossy(&o.stdout).into_owned();
                    // The server's version follows the "Server:" heading.
                    text.split("Server:")
                        .nth(1)
                        .and_then(|s| s.lines().find_map(|l| l.trim().strip_prefix("Version:")))
                        .map(|v| v.trim().to_string())
                }
                Ok(o) => {
                    return p.fail(format!(
                        "cannot reach containerd at {}: {} (is it running? or drop address to let iostudy start its own)",
                        address.display(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ));
                }
                Err(e) => return p.fail(format!("cannot run ctr: {e}")),
            }
        }
    };
    let shim_bin = shim_binary(&spec.shim);
    if which(&shim_bin).is_none() {
        let found = shims_found();
        let found = if found.is_empty() { "none".to_string() } else { found.join(", ") };
        let hint = if spec.shim.contains("kata") {
            "install Kata Containers (it is not packaged for Debian)".to_string()
        } else {
            "install the shim or choose one found".to_string()
        };
        return p
            .fail(format!("shim {} not found ({shim_bin} is not on PATH; shims found: {found}): {hint}", spec.shim));
    }
    let mut what = vec![format!("containerd {}", version.unwrap_or_else(|| "(unknown version)".into()))];
    what.push(format!("shim {}", spec.shim));
    if let Some(oci) = spec.oci_binary() {
        let Some(bin) = which(oci) else {
            return p.fail(format!("{oci} (the runc shim's binary) not found: {}", install_hint(oci)));
        };
        what.push(version_line(&bin).unwrap_or_else(|| oci.to_string()));
        if Flavor::of(oci) == Flavor::Runsc {
            let platform = spec.runtime_args.iter().find_map(|a| a.strip_prefix("--platform=")).unwrap_or("default");
            p.notes.push(format!("gVisor through the runc shim's BinaryName; platform {platform}; network none"));
        }
    }
    p.version = Some(what.join("; "));
    if !rustix::process::geteuid().is_root() {
        return p.fail("containerd scenarios need root here (iostudy does not run rootless containerd): run as root");
    }
    if let Err(e) = worker_binary() {
        return p.fail(e);
    }
    p.usable = true;
    p
}

/// Written beside a scenario's containerd state: how to reach its containers again.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    address: PathBuf,
    /// Whether the daemon is the run's own (then its config is in the same directory).
    own: bool,
    run_id: String,
}

/// A containerd iostudy started, with private root, state and socket under `dir`.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn config_path(dir: &Path) -> PathBuf {
        dir.join("containerd.toml")
    }

    /// The socket: under `dir` unless that path is too long for a unix socket.
    fn address(dir: &Path, run_state: &Path) -> PathBuf {
        let p = dir.join("c.sock");
        if p.as_os_str().len() < 100 {
            return p;
        }
        let hash = crate::image::sha256_hex(dir.as_os_str().as_encoded_bytes());
        run_state.join(format!("ctr-{}.sock", &hash[..8]))
    }

    /// Writes the config (once) and starts containerd on it; waits for its socket.
    fn start(dir: &Path, address: &Path, cancel: Option<&std::sync::atomic::AtomicBool>) -> Result<Daemon, String> {
        let config = Self::config_path(dir);
        if !config.exists() {
            let text = format!(
                "version = 2\nroot = {root:?}\nstate = {state:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {sock:?}\n[ttrpc]\n  address = {ttrpc:?}\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt:?}\n",
                root = dir.join("root").display().to_string(),
                state = dir.join("state").display().to_string(),
                sock = address.display().to_string(),
                ttrpc = format!("{}.ttrpc", address.display()),
                opt = dir.join("opt").display().to_string(),
            );
            crate::safety::write_atomic(&config, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        }
        let log_path = dir.join("containerd.log");
        let log = crate::safety::create_file(&log_path).map_err(|e| e.to_string())?;
        let bin = which("containerd").ok_or("containerd not found: apt-get install containerd")?;
        let mut child = Cmd::new(bin)
            .arg("--config")
            .arg(&config)
            .command()
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start containerd: {e}"))?;
        let started = Instant::now();
        loop {
            let up = Cmd::new("ctr").arg("-a").arg(address).arg("version").output().is_ok_and(|o| o.status.success());
            if up {
                return Ok(Daemon { child });
            }
            let why = match child.try_wait() {
                Ok(Some(st)) => Some(format!("exited ({st})")),
                _ if started.elapsed() > Duration::from_secs(20) => Some("did not answer within 20 s".to_string()),
                _ if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst)) => {
                    Some("was interrupted".to_string())
                }
                _ => None,
            };
            if let Some(why) = why {
                kill_group(&mut child);
                let said = crate::runtime::log_tail(&log_path, 5).replace('\n', " | ");
                return Err(format!(
                    "containerd started for the run {why} on {}; it said: {said} (log: {})",
                    address.display(),
                    log_path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops containerd (SIGTERM, then SIGKILL after 10 s).
    fn stop(mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_group(&mut self.child);
    }
}

/// `ctr` against one daemon, in iostudy's namespace.
#[derive(Debug, Clone)]
struct Ctr {
    address: PathBuf,
}

impl Ctr {
    fn cmd(&self) -> Cmd {
        Cmd::new("ctr").arg("-a").arg(&self.address).args(["-n", NAMESPACE])
    }

    fn kill_cmd(&self, id: &str) -> Cmd {
        self.cmd().args(["tasks", "kill", "--signal", "SIGKILL", id])
    }

    fn delete_task_cmd(&self, id: &str) -> Cmd {
        self.cmd().args(["tasks", "delete", "--force", id])
    }

    /// Deletes the container and its snapshot.
    fn delete_cmd(&self, id: &str) -> Cmd {
        self.cmd().args(["containers", "delete", id])
    }

    /// The ids of the containers labelled with `run_id`.
    fn containers_of(&self, run_id: &str) -> Vec<String> {
        let filter = format!("labels.\"{RUN_LABEL}\"=={run_id}");
        let Ok(out) = self.cmd().args(["containers", "list", "--quiet"]).arg(filter).output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// Kills and deletes every container of `run_id`, task and snapshot included; then
    /// stops any shim of the run still up (a shim exits once its container is deleted,
    /// but one whose `ctr run` was killed mid-way was seen to stay).
    fn remove_run(&self, run_id: &str) {
        for id in self.containers_of(run_id) {
            let _ = self.kill_cmd(&id).output();
            let _ = self.delete_task_cmd(&id).output();
            let _ = self.delete_cmd(&id).output();
        }
        // Container ids are `iostudy-<run id>-<cell>-<client>` (runner).
        let marker = format!("-id iostudy-{run_id}-");
        let deadline = Instant::now() + Duration::from_secs(2);
        while !crate::sys::processes_mentioning(std::slice::from_ref(&marker)).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        crate::sys::kill_processes_mentioning(&[marker]);
    }
}

/// A containerd scenario prepared for one run.
pub struct Containerd {
    spec: ContainerdSpec,
    ctr: Ctr,
    dir: PathBuf,
    run_id: String,
    image: String,
    target: PathBuf,
    /// The OCI binary the runc shim runs (a wrapper when it needs flags).
    runc_binary: Option<PathBuf>,
    /// A private runc root, with a private daemon.
    runc_root: Option<PathBuf>,
    daemon: Mutex<Option<Daemon>>,
    notes: Vec<String>,
    /// Host files bind-mounted read-only at their own paths (fio and its libraries).
    extra: Vec<PathBuf>,
}

impl Containerd {
    fn prepare(spec: &ContainerdSpec, ctx: &ScenarioContext) -> Result<Containerd, RuntimeError> {
        let probe = probe(spec);
        if let Some(problem) = probe.problem {
            return Err(RuntimeError::Unavailable(problem));
        }
        let dir = ctx.dir.clone();
        fs::create_dir_all(&dir).map_err(RuntimeError::io(format!("create {}", dir.display())))?;
        let own = spec.address.is_none();
        let address = spec.address.clone().unwrap_or_else(|| Daemon::address(&dir, &ctx.run.state_dir));
        let record = Record { address: address.clone(), own, run_id: ctx.run.run_id.clone() };
        crate::safety::write_atomic(&dir.join(RECORD), &serde_json::to_vec(&record).expect("serializes"))?;
        let mut notes = Vec::new();
        let daemon = if own {
            let d = Daemon::start(&dir, &address, Some(&ctx.run.cancel)).map_err(RuntimeError::Setup)?;
            notes.push(format!("containerd started for the run at {}", address.display()));
            Some(d)
        } else {
            notes.push(format!("containerd at {} (namespace {NAMESPACE})", address.display()));
            None
        };
        let mut c = Containerd {
            spec: spec.clone(),
            ctr: Ctr { address },
            run_id: ctx.run.run_id.clone(),
            image: String::new(),
            target: ctx.run.target.clone(),
            runc_binary: None,
            runc_root: own.then(|| dir.join("runc")),
            daemon: Mutex::new(daemon),
            notes,
            dir,
            extra: Vec::new(),
        };
        // From here on, dropping `c` on an error would leave the daemon: clean up first.
        if let Err(e) = c.setup(ctx) {
            c.cleanup();
            return Err(e);
        }
        Ok(c)
    }

    /// The OCI binary's wrapper, the image, the extra files.
    fn setup(&mut self, ctx: &ScenarioContext) -> Result<(), RuntimeError> {
        self.extra = ctx.run.extra_files()?;
        if let Some(oci) = self.spec.oci_binary() {
            let bin = which(oci).ok_or_else(|| RuntimeError::Unavailable(format!("{oci} not found")))?;
            let mut flags: Vec<String> = Vec::new();
            if Flavor::of(oci) == Flavor::Runsc && !self.spec.runtime_args.iter().any(|a| a.starts_with("--network")) {
                flags.push("--network=none".into());
            }
            flags.extend(self.spec.runtime_args.iter().cloned());
            // crun refuses cgroup v1/v2 hybrid hosts: as for the oci runtime, it runs in a
            // private mount namespace with the cgroup2 mount hidden.
            let hybrid = Flavor::of(oci) == Flavor::Crun && crate::runtime::oci::cgroup_hybrid();
            self.runc_binary = Some(if flags.is_empty() && !hybrid {
                bin
            } else {
                // The shim passes only its own flags: a wrapper adds ours.
                let wrapper = self.dir.join(format!("{oci}-wrapper"));
                crate::runtime::oci::write_wrapper(&wrapper, &bin, &flags, hybrid)?;
                wrapper
            });
        }
        let image = worker_image()?;
        let tar = self.dir.join("image.tar");
        crate::safety::write_atomic(&tar, &image.archive)?;
        let mut import = self.ctr.cmd().args(["images", "import"]);
        if let Some(s) = &self.spec.snapshotter {
            import = import.arg("--snapshotter").arg(s);
        }
        import
            .arg(&tar)
            .run_checked()
            .map_err(|e| RuntimeError::Setup(format!("containerd refused the worker's image: {e}")))?;
        let _ = fs::remove_file(&tar);
        self.notes.push(format!("image {} ({})", image.name, image.manifest_digest));
        self.image = image.name.clone();
        Ok(())
    }

    /// `ctr run --rm` of one client.
    fn run_cmd(&self, id: &str, job: &Path, cgroup: Option<&str>) -> Cmd {
        let mut cmd = self.ctr.cmd().args(["run", "--rm", "--runtime", &self.spec.shim]);
        if let Some(b) = &self.runc_binary {
            cmd = cmd.arg("--runc-binary").arg(b);
        }
        if let Some(r) = &self.runc_root {
            cmd = cmd.arg("--runc-root").arg(r);
        }
        if let Some(s) = &self.spec.snapshotter {
            cmd = cmd.arg("--snapshotter").arg(s);
        }
        if let Some(path) = cgroup {
            cmd = cmd.arg("--cgroup").arg(path);
        }
        for f in &self.extra {
            cmd = cmd.arg("--mount").arg(format!("type=bind,src={0},dst={0},options=rbind:ro", f.display()));
        }
        cmd.arg("--label")
            .arg(format!("{RUN_LABEL}={}", self.run_id))
            .arg("--mount")
            .arg(format!("type=bind,src={},dst={TARGET_MOUNT},options=rbind:rw", self.target.display()))
            .arg(&self.image)
            .arg(id)
            .args(["/iostudy", "worker", "--job"])
            .arg(job)
    }
}

impl Backend for Containerd {
    fn client_path(&self, target: &Path, host_path: &Path) -> PathBuf {
        Path::new(TARGET_MOUNT).join(host_path.strip_prefix(target).unwrap_or(host_path))
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        if l.open_files > NOFILE_LIMIT {
            return Err(RuntimeError::Setup(format!(
                "a client needs {} open files, and containers started through containerd get {NOFILE_LIMIT}: lower numjobs",
                l.open_files
            )));
        }
        let cgroup = l.cgroup.as_ref().and_then(|c| c.container_path(&l.id));
        let kill = vec![self.ctr.kill_cmd(&l.id)];
        let teardown = vec![self.ctr.delete_task_cmd(&l.id), self.ctr.delete_cmd(&l.id)];
        Ok(Box::new(ChildClient::spawn(l, &self.run_cmd(&l.id, &l.job, cgroup.as_deref()), kill, teardown)?))
    }

    /// Deletes the run's containers, stops a private daemon and any shim it left, and
    /// removes the private state.
    fn cleanup(&self) {
        self.ctr.remove_run(&self.run_id);
        if let Some(d) = self.daemon.lock().unwrap_or_else(|p| p.into_inner()).take() {
            d.stop();
            finish_private(&self.dir, &self.ctr.address);
        }
    }
}

/// After a private daemon stopped: kills shims still serving its socket, unmounts what
/// they left mounted, and removes its state.
fn finish_private(dir: &Path, address: &Path) {
    crate::sys::kill_processes_mentioning(&[address.display().to_string()]);
    crate::safety::unmount_under(dir);
    let _ = fs::remove_dir_all(dir);
    let _ = fs::remove_file(address);
    let _ = fs::remove_file(format!("{}.ttrpc", address.display()));
}

/// Removes what a run killed outright left of one containerd scenario in `dir`.
fn reap_dir(dir: &Path) {
    let Ok(bytes) = fs::read(dir.join(RECORD)) else { return };
    let Ok(record) = serde_json::from_slice::<Record>(&bytes) else { return };
    let ctr = Ctr { address: record.address.clone() };
    if !record.own {
        ctr.remove_run(&record.run_id);
        return;
    }
    // Restarted on its own state, containerd cleans up after its dead shims; then the
    // containers' records go the usual way.
    let _ = fs::remove_file(&record.address);
    if let Ok(d) = Daemon::start(dir, &record.address, None) {
        ctr.remove_run(&record.run_id);
        d.stop();
    }
    finish_private(dir, &record.address);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(spec: ContainerdSpec, runc_binary: Option<&str>) -> Containerd {
        Containerd {
            spec,
            ctr: Ctr { address: "/run/x/c.sock".into() },
            dir: "/run/x".into(),
            run_id: "123-456".into(),
            image: "localhost/iostudy:0.1.0-abc".into(),
            target: "/srv/target".into(),
            runc_binary: runc_binary.map(PathBuf::from),
            runc_root: Some("/run/x/runc".into()),
            daemon: Mutex::new(None),
            notes: Vec::new(),
            extra: Vec::new(),
        }
    }

    fn spec(shim: &str, oci: Option<&str>) -> ContainerdSpec {
        ContainerdSpec {
            shim: shim.into(),
            oci_runtime: oci.map(String::from),
            runtime_args: Vec::new(),
            address: None,
            snapshotter: None,
        }
    }

    #[test]
    fn command_lines() {
        let b = backend(spec(RUNC_SHIM, Some("runsc")), Some("/run/x/runsc-wrapper"));
        assert_eq!(
            b.run_cmd("c0", Path::new("/data/ctl/job-0.json"), Some("iostudy-1/cell/c0")).argv(),
            [
                "ctr",
                "-a",
                "/run/x/c.sock",
                "-n",
                "iostudy",
                "run",
                "--rm",
                "--runtime",
                "io.containerd.runc.v2",
                "--runc-binary",
                "/run/x/runsc-wrapper",
                "--runc-root",
                "/run/x/runc",
                "--cgroup",
                "iostudy-1/cell/c0",
                "--label",
                "iostudy.run=123-456",
                "--mount",
                "type=bind,src=/srv/target,dst=/data,options=rbind:rw",
                "localhost/iostudy:0.1.0-abc",
                "c0",
                "/iostudy",
                "worker",
                "--job",
                "/data/ctl/job-0.json"
            ]
        );
        assert_eq!(
            b.ctr.kill_cmd("c0").argv(),
            ["ctr", "-a", "/run/x/c.sock", "-n", "iostudy", "tasks", "kill", "--signal", "SIGKILL", "c0"]
        );
        assert_eq!(
            b.ctr.delete_cmd("c0").argv(),
            ["ctr", "-a", "/run/x/c.sock", "-n", "iostudy", "containers", "delete", "c0"]
        );
    }

    #[test]
    fn shim_names_map_to_binaries_and_back() {
        assert_eq!(shim_binary("io.containerd.runc.v2"), "containerd-shim-runc-v2");
        assert_eq!(shim_binary("io.containerd.kata.v2"), "containerd-shim-kata-v2");
        assert_eq!(shim_binary("/opt/kata/bin/containerd-shim-kata-v2"), "/opt/kata/bin/containerd-shim-kata-v2");
        assert_eq!(spec("io.containerd.kata.v2", None).name(), "containerd/kata.v2");
        assert_eq!(spec(RUNC_SHIM, Some("crun")).name(), "containerd/runc.v2/crun");
        assert_eq!(spec(RUNC_SHIM, None).oci_binary(), Some("runc"));
        assert_eq!(spec("io.containerd.kata.v2", None).oci_binary(), None);
    }

    #[test]
    fn a_missing_shim_lists_the_shims_found() {
        let p = probe(&spec("io.containerd.nosuch.v9", None));
        assert!(!p.usable);
        if which("ctr").is_some() && which("containerd").is_some() {
            let problem = p.problem.unwrap();
            assert!(problem.contains("shim io.containerd.nosuch.v9 not found"), "{problem}");
            assert!(problem.contains("shims found:"), "{problem}");
        }
    }

    #[test]
    fn the_server_version_is_read_from_containerd_version() {
        assert_eq!(
            containerd_version("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"),
            "1.6.20~ds1"
        );
    }
}
