//! Where clients run: one seam, a fixed set of backends.
//!
//! A scenario names a [`RuntimeSpec`] (`process`, `oci`, `mock`); for a run it becomes a
//! [`Backend`], which launches one client at a time and hands back a [`ClientHandle`]
//! the runner polls, kills and tears down. Backends own everything they create
//! (bundles, container state, rootfs) and remove it in [`Backend::cleanup`], so no
//! exit path — error, hang, Ctrl-C — leaves a container or directory behind. External
//! tools go through the [`command::Cmd`] seam so exact command lines are unit-tested.

pub mod binary;
pub mod command;
pub mod microvm;
pub mod mock;
pub mod oci;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use command::Cmd;

/// How a scenario's clients run, as the study file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuntimeSpec {
    /// Worker processes on the host (bare metal).
    Process,
    /// Containers from a generated OCI bundle, run by an OCI CLI.
    Oci { runtime: String, args: Vec<String> },
    /// One QEMU guest per client, the target shared over virtio-9p or virtio-fs.
    Microvm(microvm::MicrovmConfig),
    /// Synthetic deterministic clients (tests only).
    Mock,
}

impl fmt::Display for RuntimeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeSpec::Process => f.write_str("process"),
            RuntimeSpec::Oci { runtime, .. } => write!(f, "oci/{runtime}"),
            RuntimeSpec::Microvm(c) => write!(f, "microvm/{}", c.share_name()),
            RuntimeSpec::Mock => f.write_str("mock"),
        }
    }
}

/// Whether a runtime can run here, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub runtime: String,
    pub usable: bool,
    /// Version line reported by the tool.
    pub version: Option<String>,
    /// Why it cannot run, with the fix.
    pub problem: Option<String>,
    /// Facts worth recording (workarounds applied, platform).
    pub notes: Vec<String>,
}

impl RuntimeSpec {
    /// Checks availability without starting anything long-lived.
    pub fn probe(&self) -> Probe {
        match self {
            RuntimeSpec::Process => Probe {
                runtime: self.to_string(),
                usable: true,
                version: Some(format!("iostudy {}", env!("CARGO_PKG_VERSION"))),
                problem: None,
                notes: match binary::process_worker() {
                    Ok(p) => vec![format!("worker: {}", p.display())],
                    Err(_) => Vec::new(),
                },
            },
            RuntimeSpec::Oci { runtime, args } => oci::probe(runtime, args),
            RuntimeSpec::Microvm(c) => microvm::probe(c),
            RuntimeSpec::Mock => Probe {
                runtime: self.to_string(),
                usable: true,
                version: Some("synthetic".into()),
                problem: None,
                notes: vec!["synthetic results, for tests only".into()],
            },
        }
    }
}

/// Why a runtime could not start a client.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Setup(String),
}

impl RuntimeError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let what = what.into();
        move |source| RuntimeError::Io { what, source }
    }
}

/// What the runner shares with a backend for one study run.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Unique per run: names containers and state directories.
    pub run_id: String,
    /// Private scratch for bundles and runtime state; removed at the end.
    pub state_dir: PathBuf,
    /// The study's target directory on the host.
    pub target: PathBuf,
    /// Set when the user interrupts: long waits give up.
    pub cancel: Arc<AtomicBool>,
}

/// One client to start.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Unique name (container id).
    pub id: String,
    pub client: u32,
    /// The job file, as the host sees it and as the client sees it.
    pub job_host: PathBuf,
    pub job_client: PathBuf,
    /// Where the client's stdout/stderr go.
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// The cell's log directory (`RESULTS_DIR/logs/<cell>/`): helpers' logs go here too.
    pub log_dir: PathBuf,
}

/// A prepared runtime for one study run.
pub enum Backend {
    Process { exe: PathBuf },
    Oci(oci::Oci),
    Microvm(microvm::Microvm),
    Mock(mock::Mock),
}

impl Backend {
    /// Prepares what every client of this runtime shares (e.g. the container rootfs).
    pub fn prepare(spec: &RuntimeSpec, ctx: &RunContext) -> Result<Backend, RuntimeError> {
        match spec {
            RuntimeSpec::Process => {
                let exe = binary::process_worker().map_err(RuntimeError::io("find the iostudy executable"))?;
                Ok(Backend::Process { exe })
            }
            RuntimeSpec::Oci { runtime, args } => Ok(Backend::Oci(oci::Oci::prepare(runtime, args, ctx)?)),
            RuntimeSpec::Microvm(c) => Ok(Backend::Microvm(microvm::Microvm::prepare(c, ctx)?)),
            RuntimeSpec::Mock => Ok(Backend::Mock(mock::Mock::new(ctx.cancel.clone()))),
        }
    }

    /// Where the study target appears inside a client.
    pub fn target_in_client(&self, host_target: &Path) -> PathBuf {
        match self {
            Backend::Process { .. } | Backend::Mock(_) => host_target.to_path_buf(),
            Backend::Oci(_) | Backend::Microvm(_) => PathBuf::from(oci::TARGET_IN_CONTAINER),
        }
    }

    /// Whether clients have a page cache of their own to drop (a guest kernel's).
    pub fn drops_guest_caches(&self) -> bool {
        matches!(self, Backend::Microvm(_))
    }

    /// Facts learnt while preparing (e.g. the accelerator a probe chose).
    pub fn notes(&self) -> &[String] {
        match self {
            Backend::Microvm(vm) => &vm.notes,
            _ => &[],
        }
    }

    /// Starts one client.
    pub fn launch(&self, l: &Launch) -> Result<ClientHandle, RuntimeError> {
        match self {
            Backend::Process { exe } => {
                let cmd = Cmd::new(exe).arg("worker").arg("--job").arg(&l.job_client);
                ClientHandle::spawn(l, &cmd, Vec::new(), Vec::new())
            }
            Backend::Oci(oci) => oci.launch(l),
            Backend::Microvm(vm) => vm.launch(l),
            Backend::Mock(m) => Ok(m.launch(l)),
        }
    }

    /// Removes what [`Backend::prepare`] created.
    pub fn cleanup(&self) {
        match self {
            Backend::Oci(oci) => oci.cleanup(),
            Backend::Microvm(vm) => vm.cleanup(),
            _ => {}
        }
    }
}

enum Proc {
    Child(Child),
    Thread(Option<JoinHandle<Result<(), String>>>),
}

/// How a client ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Success,
    Failed(String),
}

/// A running (or finished) client.
pub struct ClientHandle {
    pub client: u32,
    pub id: String,
    pub stderr: PathBuf,
    proc: Proc,
    exit: Option<Exit>,
    /// Stops a hung client (e.g. `runc kill ID KILL`), before its process is killed.
    kill: Vec<Cmd>,
    /// Removes what the client left (e.g. `runc delete --force ID`).
    teardown: Vec<Cmd>,
    /// Helper processes that live and die with the client (e.g. virtiofsd).
    pub companions: Vec<Child>,
    /// The helpers' logs, quoted when the client fails.
    pub helper_logs: Vec<PathBuf>,
}

impl ClientHandle {
    /// Spawns `cmd` with output to the launch's log files.
    pub fn spawn(l: &Launch, cmd: &Cmd, kill: Vec<Cmd>, teardown: Vec<Cmd>) -> Result<ClientHandle, RuntimeError> {
        let out = File::create(&l.stdout).map_err(RuntimeError::io(format!("create {}", l.stdout.display())))?;
        let err = File::create(&l.stderr).map_err(RuntimeError::io(format!("create {}", l.stderr.display())))?;
        Self::start(l, cmd, out, err, kill, teardown)
    }

    /// Spawns `cmd` with stdout and stderr into one log (a VM's serial console).
    pub fn spawn_console(l: &Launch, cmd: &Cmd, teardown: Vec<Cmd>) -> Result<ClientHandle, RuntimeError> {
        let log = File::create(&l.stderr).map_err(RuntimeError::io(format!("create {}", l.stderr.display())))?;
        let out = log.try_clone().map_err(RuntimeError::io("clone a log fd"))?;
        Self::start(l, cmd, out, log, Vec::new(), teardown)
    }

    fn start(
        l: &Launch,
        cmd: &Cmd,
        stdout: File,
        stderr: File,
        kill: Vec<Cmd>,
        teardown: Vec<Cmd>,
    ) -> Result<ClientHandle, RuntimeError> {
        let child = cmd
            .command()
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(RuntimeError::io(format!("start `{}`", cmd.argv().join(" "))))?;
        Ok(ClientHandle {
            client: l.client,
            id: l.id.clone(),
            stderr: l.stderr.clone(),
            proc: Proc::Child(child),
            exit: None,
            kill,
            teardown,
            companions: Vec::new(),
            helper_logs: Vec::new(),
        })
    }

    fn thread(l: &Launch, handle: JoinHandle<Result<(), String>>) -> ClientHandle {
        ClientHandle {
            client: l.client,
            id: l.id.clone(),
            stderr: l.stderr.clone(),
            proc: Proc::Thread(Some(handle)),
            exit: None,
            kill: Vec::new(),
            teardown: Vec::new(),
            companions: Vec::new(),
            helper_logs: Vec::new(),
        }
    }

    /// How the client ended, or `None` while it runs.
    pub fn poll(&mut self) -> Option<&Exit> {
        if self.exit.is_none() {
            self.exit = match &mut self.proc {
                Proc::Child(c) => match c.try_wait() {
                    Ok(Some(st)) if st.success() => Some(Exit::Success),
                    Ok(Some(st)) => Some(Exit::Failed(describe_status(st))),
                    Ok(None) => None,
                    Err(e) => Some(Exit::Failed(format!("cannot wait for it: {e}"))),
                },
                Proc::Thread(h) => {
                    if h.as_ref().is_some_and(|h| h.is_finished()) {
                        let r = h.take().expect("present").join();
                        Some(match r {
                            Ok(Ok(())) => Exit::Success,
                            Ok(Err(e)) => Exit::Failed(e),
                            Err(_) => Exit::Failed("panicked".into()),
                        })
                    } else {
                        None
                    }
                }
            };
        }
        self.exit.as_ref()
    }

    /// Stops the client if it still runs (its whole process group), and waits for it.
    pub fn kill(&mut self) {
        if self.poll().is_some() {
            return;
        }
        for cmd in &self.kill {
            let _ = cmd.output();
        }
        if let Proc::Child(c) = &mut self.proc {
            kill_group(c);
        }
        for c in &mut self.companions {
            kill_group(c);
        }
        if let Proc::Thread(h) = &mut self.proc
            && let Some(h) = h.take()
        {
            let _ = h.join();
        }
        self.exit = Some(Exit::Failed("killed".into()));
    }

    /// Removes what the client left behind. Call after it ended or was killed.
    pub fn teardown(&mut self) {
        for c in &mut self.companions {
            // virtiofsd exits with its VM; give it a moment, then make sure.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while matches!(c.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            kill_group(c);
        }
        self.companions.clear();
        for cmd in self.teardown.drain(..) {
            let _ = cmd.output();
        }
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.kill();
        self.teardown();
    }
}

/// The last `lines` non-empty lines of a log file ("" when it is missing or empty).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Kills a child that leads its own process group, with its group, and reaps it.
pub fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait()
        && let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn describe_status(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => st.to_string(),
    }
}

/// Probes of every runtime iostudy knows, for `iostudy runtimes`.
pub fn probe_all() -> Vec<Probe> {
    let mut v = vec![RuntimeSpec::Process.probe()];
    for name in oci::KNOWN {
        v.push(RuntimeSpec::Oci { runtime: name.to_string(), args: Vec::new() }.probe());
    }
    for share in [microvm::Share::NineP, microvm::Share::Virtiofs] {
        v.push(RuntimeSpec::Microvm(microvm::MicrovmConfig::new(share)).probe());
    }
    v
}
