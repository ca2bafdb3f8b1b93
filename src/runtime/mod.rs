//! Where clients run: one seam, one module per backend, one registration line each.
//!
//! A backend owns everything about itself, behind three traits:
//!
//! * [`Kind`] — the backend as the study file names it (`runtime = "oci"`): it parses
//!   and validates its own keys of a `[scenarios.NAME]` table, offers built-in scenario
//!   names (`bare`, `runc`…), lists what `iostudy runtimes` probes, and reaps what a run
//!   killed outright left behind.
//! * [`Spec`] — a scenario's configured runtime: probe, start-up estimate, the settings
//!   it records with results, and [`Spec::prepare`] for a run.
//! * [`Backend`] — a runtime prepared for one run: where the target appears inside a
//!   client, the barrier's timing, and [`Backend::launch`], which returns a [`Client`]
//!   the runner polls, kills and tears down.
//!
//! [`KINDS`] is the only list of backends; nothing else matches on them, so a new
//! backend is one module plus one line there, and the compiler asks for every method
//! it must provide. Backends own what they create (bundles, container state, sockets)
//! and remove it in [`Backend::cleanup`] and [`Client::teardown`]; external tools go
//! through the [`crate::command::Cmd`] seam so exact command lines are unit-tested.

pub mod apptainer;
pub mod binary;
pub mod cgroup;
pub mod charliecloud;
pub mod child;
pub mod containerd;
pub mod enroot;
pub mod kubernetes;
pub mod microvm;
pub mod mock;
pub mod oci;
pub mod podman;
pub mod process;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::results::cell::{RuntimeRecord, escape};
use crate::workload::Workload;

/// Every backend iostudy knows — the registration point.
pub static KINDS: &[&dyn Kind] = &[
    &process::KIND,
    &oci::KIND,
    &containerd::KIND,
    &kubernetes::KIND,
    &microvm::KIND,
    &podman::KIND,
    &charliecloud::KIND,
    &apptainer::KIND,
    &enroot::KIND,
    &mock::KIND,
];

/// Where the study target is mounted inside containers and guests.
pub const TARGET_MOUNT: &str = "/data";

/// A backend as the study file names it.
pub trait Kind: Sync {
    /// The study file's `runtime = "…"` value.
    fn name(&self) -> &'static str;
    /// Not offered to users (the mock).
    fn hidden(&self) -> bool {
        false
    }
    /// Parses and validates this backend's keys of a scenario table.
    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError>;
    /// Rebuilds a spec from the settings it recorded ([`Spec::settings`]): how a node's
    /// agent receives the scenarios it runs.
    fn rebuild(&self, settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError>;
    /// Whether the backend's own scheduler puts clients on machines (Kubernetes):
    /// then `[hosts]` does not apply to its scenarios.
    fn places_clients(&self) -> bool {
        false
    }
    /// Scenario names usable without a table, e.g. `runc`.
    fn builtins(&self) -> Vec<(&'static str, Arc<dyn Spec>)> {
        Vec::new()
    }
    /// The configurations `iostudy runtimes` probes.
    fn known(&self) -> Vec<Arc<dyn Spec>> {
        Vec::new()
    }
    /// The scenarios `iostudy demo` runs of this backend, where they are usable.
    fn demo_scenarios(&self) -> Vec<DemoScenario> {
        Vec::new()
    }
    /// Removes what a run killed outright left of this backend in its state directory
    /// (its processes are already killed): containers in private roots, sockets…
    fn reap(&self, _run_state: &Path) {}
}

/// A scenario's runtime, as configured.
pub trait Spec: Send + Sync + fmt::Debug {
    /// The backend it belongs to ([`Kind::name`] is the one spelling of its name).
    fn kind(&self) -> &'static dyn Kind;
    /// Short display name, e.g. `oci/runc`.
    fn name(&self) -> String;
    /// Its settings as results record them.
    fn settings(&self) -> serde_json::Value;
    /// Whether it can run here, without starting anything long-lived.
    fn probe(&self) -> Probe;
    /// What starting one client costs, for the plan's duration estimate.
    fn startup_estimate(&self) -> Duration;
    /// What one client running `w` takes from the host (tasks, memory), for the checks
    /// before a run; a worker process by default.
    fn client_cost(&self, w: &Workload) -> ClientCost {
        ClientCost::worker(w)
    }
    /// Prepares what every client of this scenario shares in a run.
    fn prepare(&self, ctx: &ScenarioContext) -> Result<Box<dyn Backend>, RuntimeError>;
    /// What a cluster would be given to run `cell` (a Kubernetes Job as YAML), for
    /// `plan --manifests`; `None` for a backend that hands nothing to a cluster.
    fn manifest(&self, _cell: &ManifestCell<'_>) -> Option<Result<String, RuntimeError>> {
        None
    }
    /// Whether its clients are containers in cgroups of their runtime's making: then
    /// a cell's cgroup counts them only where containers are created inside it.
    fn own_cgroups(&self) -> bool {
        false
    }
}

/// A scenario of `iostudy demo`: its name, spec, and the `[scenarios.NAME]` table the
/// demo's study file needs for it ("" for a built-in name).
pub struct DemoScenario {
    pub name: &'static str,
    pub spec: Arc<dyn Spec>,
    pub table: String,
}

impl DemoScenario {
    /// A built-in scenario of `kind` by name.
    pub fn builtin(kind: &dyn Kind, name: &'static str) -> Option<DemoScenario> {
        let spec = kind.builtins().into_iter().find(|(n, _)| *n == name)?.1;
        Some(DemoScenario { name, spec, table: String::new() })
    }
}

/// A cell as `plan --manifests` asks a backend for its manifest.
#[derive(Debug, Clone, Copy)]
pub struct ManifestCell<'a> {
    /// The cell's place in the plan (names its objects).
    pub index: usize,
    pub cell: &'a crate::results::cell::Cell,
    pub study: &'a str,
    pub barrier_timeout: Duration,
    pub cell_timeout: Option<Duration>,
}

/// A runtime prepared for one run.
pub trait Backend: Send + Sync {
    /// Where `host_path`, a path under the study's target, appears inside a client.
    fn client_path(&self, target: &Path, host_path: &Path) -> PathBuf;
    /// Whether clients have a page cache of their own to drop (a guest kernel's).
    fn drops_guest_caches(&self) -> bool {
        false
    }
    /// Facts learnt while preparing.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// `kvm` or `tcg` for virtual machines.
    fn accelerator(&self) -> Option<String> {
        None
    }
    /// The go signal's lead time and the clients' poll period for a cell of `clients`.
    fn timing(&self, clients: u32) -> Timing {
        Timing::local(clients)
    }
    /// Starts one client.
    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError>;
    /// Where the VMM of client `client` logged its share's requests, when attribution
    /// was on and it logs them ([`crate::attribution::vmm`]).
    fn vmm_trace(&self, _log_dir: &Path, _client: u32) -> Option<PathBuf> {
        None
    }
    /// Starts several clients at once, where that is cheaper than one by one (a node's
    /// agent: one exchange for all): one result per launch. `None`: one by one.
    fn launch_batch(&self, _launches: &[&Launch]) -> Option<Vec<Result<Box<dyn Client>, RuntimeError>>> {
        None
    }
    /// Removes what preparing created.
    fn cleanup(&self);
}

/// A launched client.
pub trait Client: Send {
    fn client(&self) -> u32;
    /// How it ended, or `None` while it runs.
    fn poll(&mut self) -> Option<Exit>;
    /// Stops it if it still runs, and waits for it.
    fn kill(&mut self);
    /// Removes what it left behind. Call after it ended or was killed.
    fn teardown(&mut self);
    /// Its own log.
    fn log(&self) -> &Path;
    /// The machine it ran on, when a scheduler chose it (a pod's node).
    fn node(&self) -> Option<String> {
        None
    }
    /// The last lines of its helpers' logs and then of its own.
    fn log_tail(&self, lines: usize) -> String;
}

/// What one client takes from the host running it: tasks (processes and threads) and
/// resident memory, estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCost {
    pub tasks: u64,
    pub memory_bytes: u64,
}

impl ClientCost {
    /// An `iostudy worker` process: a thread per job, its buffers and two latency
    /// histograms (256 KiB each), its own footprint. Measured here: a worker of one
    /// thread holds 0.85 MiB of its own (private, dirty) beside the binary's pages,
    /// which every worker shares; 2 MiB leaves room for the allocator and the stack.
    pub fn worker(w: &Workload) -> ClientCost {
        let per_thread = w.bs.get() * u64::from(w.iodepth) + (512 << 10);
        ClientCost { tasks: u64::from(w.numjobs) + 2, memory_bytes: (2 << 20) + u64::from(w.numjobs) * per_thread }
    }

    /// This cost plus `tasks` more tasks and `memory_bytes` more memory.
    pub fn plus(self, tasks: u64, memory_bytes: u64) -> ClientCost {
        ClientCost { tasks: self.tasks + tasks, memory_bytes: self.memory_bytes + memory_bytes }
    }
}

/// The barrier's timing for one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// From the moment all clients are ready to the go instant.
    pub lead: Duration,
    /// How often clients look for go.
    pub poll: Duration,
}

impl Timing {
    /// Clients on this host: woken by go where their kernel writes it, else within a
    /// poll period. The poll lengthens with the clients (5 ms, +0.1 ms each, at most
    /// 100 ms) so that a thousand waiting clients read the directory ten thousand
    /// times a second, not two hundred thousand; the lead covers two polls and the
    /// clients' wake-up (0.25 ms of CPU each: a thousand clients on two cores need a
    /// quarter of a second to all run).
    pub fn local(clients: u32) -> Timing {
        let poll = (Duration::from_millis(5) + Duration::from_micros(100) * clients).min(Duration::from_millis(100));
        Timing { lead: Duration::from_millis(100) + 2 * poll + Duration::from_micros(250) * clients, poll }
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

impl Probe {
    /// A probe of `spec` that found nothing wrong yet.
    pub fn of(spec: &dyn Spec) -> Probe {
        Probe { runtime: spec.name(), usable: false, version: None, problem: None, notes: Vec::new() }
    }

    /// Marks the probe as failed with `problem`.
    pub fn fail(mut self, problem: impl Into<String>) -> Probe {
        self.problem = Some(problem.into());
        self.usable = false;
        self
    }

    /// What results record about the runtime before a run.
    pub fn record(&self, spec: &dyn Spec) -> RuntimeRecord {
        RuntimeRecord {
            kind: spec.kind().name().to_string(),
            name: spec.name(),
            settings: spec.settings(),
            version: self.version.clone(),
            notes: self.notes.clone(),
            accelerator: None,
            own_cgroups: spec.own_cgroups(),
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
    #[error(transparent)]
    Unsafe(#[from] crate::safety::SafetyError),
    /// What would run the client is gone (a node's connection ended).
    #[error("{0}")]
    Lost(String),
}

impl RuntimeError {
    /// The kind of cell failure this launch error makes.
    pub fn failure_kind(&self) -> crate::results::cell::FailureKind {
        use crate::results::cell::FailureKind;
        match self {
            RuntimeError::Unavailable(_) => FailureKind::MissingRuntime,
            RuntimeError::Lost(_) => FailureKind::LostNode,
            RuntimeError::Io { .. } | RuntimeError::Setup(_) | RuntimeError::Unsafe(_) => FailureKind::Launch,
        }
    }

    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let what = what.into();
        move |source| RuntimeError::Io { what, source }
    }
}

/// What the runner shares with every backend of a run.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Unique per run: names containers and state directories.
    pub run_id: String,
    /// The study's name (labels Kubernetes objects).
    pub study: String,
    /// The run's private scratch; removed at the end.
    pub state_dir: PathBuf,
    /// The study's target directory on the host.
    pub target: PathBuf,
    /// Set when the user interrupts: long waits give up.
    pub cancel: Arc<AtomicBool>,
    /// Some cell runs the real fio (`engine = "fio"`): clients get this host's fio and
    /// its libraries at the same paths (bind mounts, or the guest's initramfs).
    pub fio: bool,
}

impl RunContext {
    /// The files clients need besides the worker: fio and its libraries, when asked.
    pub fn extra_files(&self) -> Result<Vec<PathBuf>, RuntimeError> {
        if self.fio { crate::fio::deps::files().map_err(RuntimeError::Unavailable) } else { Ok(Vec::new()) }
    }
}

/// One scenario's share of a run.
#[derive(Debug, Clone)]
pub struct ScenarioContext {
    pub run: RunContext,
    pub scenario: String,
    /// This scenario's own scratch directory (`<kind>-<scenario>` in the run's state
    /// dir), where [`Kind::reap`] looks after a crash.
    pub dir: PathBuf,
}

impl ScenarioContext {
    pub fn new(run: &RunContext, kind: &str, scenario: &str) -> ScenarioContext {
        ScenarioContext {
            run: run.clone(),
            scenario: scenario.to_string(),
            dir: run.state_dir.join(format!("{kind}-{}", escape(scenario))),
        }
    }
}

/// One client to start.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Unique name (container id).
    pub id: String,
    pub client: u32,
    /// Where the client finds its job, as the client sees it (`worker --job PATH`).
    pub job: PathBuf,
    /// Where the client's output goes (stdout and stderr, or a guest's console).
    pub log: PathBuf,
    /// The cell's log directory (`RESULTS_DIR/logs/<cell>/`): helpers' logs go here too.
    pub log_dir: PathBuf,
    /// Files the client must be able to open (its data files and some to spare).
    pub open_files: u64,
    /// The cell's cgroup: the client, its helpers and its container are put in it.
    pub cgroup: Option<Arc<cgroup::CellCgroup>>,
    /// The cell the client belongs to.
    pub cell: CellShape,
}

/// What a backend that starts a whole cell at once (a Kubernetes Job) needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellShape {
    /// The cell's id (`scenario.pattern.cN.rN`).
    pub id: String,
    /// How many clients the cell has.
    pub clients: u32,
    /// The longest the cell may take from launch to its last result.
    pub deadline: Duration,
    /// Attribution is on: a VMM logs its share's requests ([`crate::attribution`]).
    pub attribute: bool,
}

/// How a client ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Success,
    Failed(String),
    /// What ran it is gone (a node's connection ended): how it ended is not known.
    Lost(String),
}

/// A location in the study file and a message, with a hint.
pub type SpannedError = (Range<usize>, String, Option<String>);

/// A `[scenarios.NAME]` table's backend keys (all but `runtime` and `label`), with
/// their places in the study file.
pub struct Section<'a> {
    /// What the table is, for messages: ``scenario `kata` ``, `[hosts]`.
    pub what: String,
    /// The whole table's place.
    pub span: Range<usize>,
    pub table: toml::Spanned<toml::de::DeValue<'a>>,
}

impl Section<'_> {
    /// Deserializes the keys into a backend's own settings (`deny_unknown_fields`),
    /// located errors included.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, SpannedError> {
        let de = toml::de::ValueDeserializer::from(self.table.clone());
        T::deserialize(de).map_err(|e| {
            let message = e.message().trim().to_string();
            let hint = crate::hints::unknown_field_hint(&message);
            (e.span().unwrap_or(self.span.clone()), format!("{}: {message}", self.what), hint)
        })
    }

    /// An error about the whole table.
    pub fn error(&self, message: impl Into<String>, hint: Option<String>) -> SpannedError {
        (self.span.clone(), format!("{}: {}", self.what, message.into()), hint)
    }
}

/// The last `lines` non-empty lines of a log file ("" when it is missing or empty).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// What `--mock` puts in every scenario's place: synthetic clients that speak the
/// real protocol (tests and rehearsals of the runner and reports).
pub fn stand_in() -> Arc<dyn Spec> {
    Arc::new(mock::MockSpec::default())
}

/// The kind registered under `name`.
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The spec of `kind` with `settings`, as a node's agent receives it.
pub fn spec_from(kind: &str, settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
    let k = self::kind(kind)
        .ok_or_else(|| RuntimeError::Setup(format!("unknown runtime kind `{kind}` (another iostudy version?)")))?;
    k.rebuild(settings)
}

/// Probes of every runtime iostudy knows, for `iostudy runtimes`.
pub fn probe_all() -> Vec<Probe> {
    KINDS.iter().filter(|k| !k.hidden()).flat_map(|k| k.known()).map(|s| s.probe()).collect()
}

/// Reaps what a dead run left in `run_state`, backend by backend.
pub fn reap_all(run_state: &Path) {
    for k in KINDS {
        k.reap(run_state);
    }
}
