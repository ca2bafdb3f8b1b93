//! One cell's life: jobs posted, clients launched in parallel, the barrier, the
//! measured run under a deadline, results collected, everything torn down.
//!
//! Each step is a [`Phase`]; whatever goes wrong is a typed [`CellFailure`] naming
//! the phase, the client and its own last words. A client that fails or hangs fails
//! the cell and every other client of the cell is killed at once; the study goes on.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::attribution::Tracing;
use crate::control::{Barrier, Channel, DATA_DIR, Go, Job, PROTOCOL_VERSION, SharedDir};
use crate::hosts::node::Node;
use crate::hosts::remote::relayed_channel;
use crate::results::cell::{
    CELL_SCHEMA_VERSION, Cell, CellResult, CellStatus, ClientFailure, ClientPlacement, FailureKind, RuntimeRecord,
};
use crate::results::cpu::CpuSeries;
use crate::runner::data::DataDirs;
use crate::runtime::cgroup::CellCgroup;
use crate::runtime::{Backend, CellShape, Client, Exit, Launch, RuntimeError, Timing};
use crate::workload::Span;

/// Where in its life a cell was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Control directory, logs, caches, jobs.
    Setup,
    /// Starting the clients.
    Launch,
    /// Waiting until every client has laid out its files.
    Ready,
    /// The measured run, until every client exited.
    Run,
    /// Reading the results.
    Collect,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Launch => "launch",
            Phase::Ready => "ready",
            Phase::Run => "run",
            Phase::Collect => "collect",
        }
    }
}

/// Why a cell failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CellFailure {
    /// The cell could not be set up (control directory, jobs, logs).
    Setup(String),
    /// A client could not be started (`kind`: a missing runtime, a lost node, or the
    /// launch itself).
    Launch { client: u32, kind: FailureKind, error: String },
    /// A client ended with a failure.
    Client { client: u32, why: String },
    /// The node a client ran on was lost.
    Lost { client: u32, why: String },
    /// A node of the cell is down in its scheduler: nothing was launched.
    NodeDown { node: String, why: String },
    /// A client exited successfully but never reported ready.
    ExitedBeforeReady { client: u32 },
    /// A client broke the control protocol (another version, a garbled message).
    Protocol(String),
    /// Clients still not ready, or not finished, at the deadline.
    Deadline { phase: Phase, clients: Vec<u32> },
    /// The user interrupted the run.
    Interrupted,
    /// Clients exited but left no result.
    NoResult { clients: Vec<u32>, first: String },
}

impl CellFailure {
    /// What kind of failure it is, for the report's counts.
    pub fn kind(&self) -> FailureKind {
        match self {
            CellFailure::Setup(_) => FailureKind::Setup,
            CellFailure::Launch { kind, .. } => *kind,
            CellFailure::Client { .. } | CellFailure::ExitedBeforeReady { .. } => FailureKind::ClientExit,
            CellFailure::Lost { .. } | CellFailure::NodeDown { .. } => FailureKind::LostNode,
            CellFailure::Protocol(_) => FailureKind::Protocol,
            CellFailure::Deadline { .. } => FailureKind::Timeout,
            CellFailure::Interrupted => FailureKind::Interrupted,
            CellFailure::NoResult { .. } => FailureKind::NoResult,
        }
    }

    pub fn phase(&self, during: Phase) -> Phase {
        match self {
            CellFailure::Setup(_) => Phase::Setup,
            CellFailure::Launch { .. } => Phase::Launch,
            CellFailure::Deadline { phase, .. } => *phase,
            CellFailure::NoResult { .. } => Phase::Collect,
            _ => during,
        }
    }
}

impl fmt::Display for CellFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        match self {
            CellFailure::Setup(e) => f.write_str(e),
            CellFailure::Launch { client, error, .. } => write!(f, "cannot launch client {client}: {error}"),
            CellFailure::Client { client, why } => write!(f, "client {client} {why}"),
            CellFailure::Lost { client, why } => write!(f, "client {client}: {why}"),
            CellFailure::NodeDown { node, why } => {
                write!(f, "node {node} is {why}: nothing was launched")
            }
            CellFailure::ExitedBeforeReady { client } => write!(f, "client {client} exited before it was ready"),
            CellFailure::Protocol(e) => f.write_str(e),
            CellFailure::Deadline { phase, clients } => {
                let what = if *phase == Phase::Ready { "ready" } else { "finished" };
                write!(f, "client(s) {} not {what} before the deadline (hung?)", list(clients))
            }
            CellFailure::Interrupted => f.write_str("interrupted"),
            CellFailure::NoResult { clients, first } => {
                write!(f, "{} client(s) left no result; client {}", clients.len(), first)
            }
        }
    }
}

/// Where one client runs: its backend, and its node (`None`: this host).
#[derive(Clone, Copy)]
pub struct Placed<'a> {
    pub backend: &'a dyn Backend,
    pub node: Option<&'a Arc<Node>>,
}

/// Everything one cell needs from its run.
pub struct CellRun<'a> {
    pub cell: &'a Cell,
    pub label: &'a str,
    pub runtime: RuntimeRecord,
    /// Each client's backend and node.
    pub placed: Vec<Placed<'a>>,
    /// The study's target on the host.
    pub target: &'a Path,
    /// The clients' data directories under it, when the controller sees the target;
    /// `None`: each node's own disk, where its agent makes them.
    pub data: Option<&'a DataDirs>,
    /// This cell's control directory on the host (under the target).
    pub control: PathBuf,
    /// This cell's log directory.
    pub logs: PathBuf,
    /// Container ids and sockets are named `<name_prefix>-<client>`.
    pub name_prefix: String,
    /// The cell's cgroup, below this process's (`iostudy-<run>/cell-<i>`).
    pub cgroup_name: String,
    pub drop_caches: bool,
    /// The scenario's backend places its clients itself (a cluster's scheduler).
    pub places_itself: bool,
    pub barrier_timeout: Duration,
    pub cell_timeout: Option<Duration>,
    pub cancel: &'a AtomicBool,
}

/// How many clients are started at once.
const LAUNCH_PARALLELISM: usize = 32;

impl CellRun<'_> {
    /// Runs the cell; its result, failed or not, is ready to store.
    pub fn run(&self) -> CellResult {
        let mut result = self.blank();
        let mut phase = Phase::Setup;
        match self.execute(&mut result, &mut phase) {
            Ok(()) => result.status = CellStatus::Ok,
            Err((failure, detail)) => {
                result.failure_phase = Some(failure.phase(phase).name().to_string());
                result.failure_kind = Some(failure.kind());
                result.failure = Some(format!("{failure}{detail}"));
            }
        }
        let _ = fs::remove_dir_all(&self.control);
        result.finished_ns = crate::sys::wall_ns();
        result
    }

    /// The cell failed before anything was launched, for `failure`.
    pub fn refused(&self, failure: CellFailure) -> CellResult {
        let mut result = self.blank();
        result.failure_phase = Some(failure.phase(Phase::Setup).name().to_string());
        result.failure_kind = Some(failure.kind());
        result.failure = Some(failure.to_string());
        result.finished_ns = crate::sys::wall_ns();
        result
    }

    /// The cell's result before it ran: failed until it succeeds.
    fn blank(&self) -> CellResult {
        CellResult {
            schema_version: CELL_SCHEMA_VERSION,
            cell: self.cell.clone(),
            scenario_label: self.label.to_string(),
            runtime: self.runtime.clone(),
            status: CellStatus::Failed,
            failure: None,
            failure_phase: None,
            failure_kind: None,
            launched_ns: crate::sys::wall_ns(),
            finished_ns: 0,
            ready_s: 0.0,
            launch_s: 0.0,
            exited_s: None,
            torn_down_s: None,
            start_ns: None,
            caches_dropped: false,
            clients: Vec::new(),
            client_failures: Vec::new(),
            boot_s: Vec::new(),
            placements: Vec::new(),
            cpu: Vec::new(),
            attribution: None,
        }
    }

    fn execute(&self, result: &mut CellResult, phase: &mut Phase) -> Result<(), (CellFailure, String)> {
        let setup = |e: String| (CellFailure::Setup(e), String::new());
        let channel = self.channel().map_err(|e| setup(e.to_string()))?;
        if self.drop_caches {
            result.caches_dropped = drop_host_caches().is_ok();
        }
        let timing = self.timing();
        // Clients a cluster's scheduler places are not on this host to be counted.
        // Declared before the clients, so it goes after them.
        let local = !self.places_itself && self.placed.iter().any(|p| p.node.is_none());
        let cgroup = if local { CellCgroup::create(&self.cgroup_name).map(Arc::new) } else { None };
        let mut sampler = Sampler::new(cgroup.clone(), &self.placed, &self.cell.id);
        let launches = self.post_jobs(channel.as_ref(), timing, cgroup.as_ref(), result).map_err(setup)?;

        *phase = Phase::Launch;
        let started = Instant::now();
        let backends: Vec<&dyn Backend> = self.placed.iter().map(|p| p.backend).collect();
        let mut clients = launch_all(&backends, &launches).map_err(|f| (f, String::new()))?;
        result.launch_s = started.elapsed().as_secs_f64();

        *phase = Phase::Ready;
        let ready = self.barrier(channel.as_ref(), &mut clients, started, result);
        ready.map_err(|f| self.fail(&mut clients, result, f))?;
        result.ready_s = started.elapsed().as_secs_f64();
        sampler.sample();
        // Traced from all-ready (the files laid out) to the last exit.
        let mut tracing = self.cell.attributed().then(|| Tracing::start(cgroup.as_ref().map(|c| c.dir())));
        let start_ns = crate::sys::wall_ns() + timing.lead.as_nanos() as u64;
        channel
            .go(&Go { protocol: PROTOCOL_VERSION, start_ns })
            .map_err(|e| self.fail(&mut clients, result, CellFailure::Protocol(e.to_string())))?;
        result.start_ns = Some(start_ns);

        *phase = Phase::Run;
        let deadline = match self.cell_timeout {
            Some(t) => started + t,
            None => Instant::now() + self.cell.run_allowance(timing.lead),
        };
        let running = |clients: &mut [Box<dyn Client>]| -> Vec<u32> {
            clients.iter_mut().filter_map(|c| c.poll().is_none().then(|| c.client())).collect()
        };
        let ran = self.wait(&mut clients, deadline, Phase::Run, running, |clients| {
            sampler.tick();
            Ok(clients.iter_mut().all(|c| c.poll().is_some()))
        });
        result.cpu = sampler.finish();
        ran.map_err(|f| self.fail(&mut clients, result, f))?;
        result.exited_s = Some(started.elapsed().as_secs_f64());
        if let Some(t) = &mut tracing {
            t.stop();
        }
        teardown_all(&mut clients);
        result.torn_down_s = Some(started.elapsed().as_secs_f64());
        let placed: std::collections::HashSet<u32> = result.placements.iter().map(|p| p.client).collect();
        for c in &clients {
            // Where a scheduler placed the client (a pod's node), record it.
            if let Some(node) = c.node()
                && !placed.contains(&c.client())
            {
                let p = ClientPlacement { client: c.client(), node, clock_offset_ns: None, clock_uncertainty_ns: None };
                result.placements.push(p);
            }
        }

        *phase = Phase::Collect;
        self.collect(channel.as_ref(), &clients, result).map_err(|f| (f, String::new()))?;
        if let Some(t) = tracing {
            // A 9p guest's QEMU logged its requests beside the client's log.
            let logs = self.placed.iter().enumerate().map(|(k, p)| p.backend.vmm_trace(&self.logs, k as u32)).collect();
            result.attribution = Some(t.finish(result, logs));
        }
        Ok(())
    }

    /// The slowest backend's lead, the quickest poll.
    fn timing(&self) -> Timing {
        let n = self.cell.clients;
        self.placed
            .iter()
            .map(|p| p.backend.timing(n))
            .fold(Timing::local(n), |a, b| Timing { lead: a.lead.max(b.lead), poll: a.poll.min(b.poll) })
    }

    /// Posts each client's job (its data directory made, its clock given when it is on
    /// a node); returns what each client is launched with.
    fn post_jobs(
        &self,
        channel: &dyn Channel,
        timing: Timing,
        cgroup: Option<&Arc<CellCgroup>>,
        result: &mut CellResult,
    ) -> Result<Vec<Launch>, String> {
        let cell = self.cell;
        let barrier = Barrier { timeout: Span(self.barrier_timeout), poll: Span(timing.poll) };
        let mut launches = Vec::with_capacity(cell.clients as usize);
        for k in 0..cell.clients {
            let placed = self.placed[k as usize];
            let host_data = match self.data {
                Some(d) => d.client(k).map_err(|e| e.to_string())?,
                None => self.target.join(DATA_DIR).join(format!("client-{k}")),
            };
            let mut workload = cell.workload.clone();
            workload.directory = placed.backend.client_path(self.target, &host_data);
            let mut job = Job::new(k, workload, Some(barrier), placed.backend.drops_guest_caches());
            job.attribute = cell.attributed();
            if let Some(node) = placed.node {
                let c = node.clock();
                job.clock_offset_ns = c.offset_ns;
                result.placements.push(ClientPlacement {
                    client: k,
                    node: node.dest.clone(),
                    clock_offset_ns: Some(c.offset_ns),
                    clock_uncertainty_ns: Some(c.uncertainty_ns),
                });
            }
            let at = channel.post_job(&job).map_err(|e| e.to_string())?;
            launches.push(Launch {
                id: format!("{}-{k}", self.name_prefix),
                client: k,
                job: at,
                log: self.logs.join(format!("client-{k}.log")),
                log_dir: self.logs.clone(),
                open_files: u64::from(cell.workload.numjobs) + crate::engine::layout::SPARE_FDS,
                cgroup: if placed.node.is_none() { cgroup.cloned() } else { None },
                cell: CellShape {
                    id: cell.id.clone(),
                    clients: cell.clients,
                    deadline: cell.deadline(timing.lead, self.barrier_timeout, self.cell_timeout),
                    attribute: cell.attributed(),
                },
            });
        }
        Ok(launches)
    }

    /// Waits until every client reported ready. Guests report when their share is
    /// mounted; the first sighting times the boot.
    fn barrier(
        &self,
        channel: &dyn Channel,
        clients: &mut [Box<dyn Client>],
        started: Instant,
        result: &mut CellResult,
    ) -> Result<(), CellFailure> {
        let ready_deadline = started + self.cell_timeout.map_or(self.barrier_timeout, |t| t.min(self.barrier_timeout));
        let mut boot: Vec<Option<f64>> = vec![None; self.cell.clients as usize];
        let pending = |clients: &mut [Box<dyn Client>]| -> Vec<u32> {
            clients.iter().map(|c| c.client()).filter(|&k| !matches!(channel.is_ready(k), Ok(true))).collect()
        };
        let outcome = self.wait(clients, ready_deadline, Phase::Ready, pending, |clients| {
            channel.serve_clock();
            for (k, b) in boot.iter_mut().enumerate() {
                if b.is_none() && channel.is_booted(k as u32) {
                    *b = Some(started.elapsed().as_secs_f64());
                }
            }
            let mut all = true;
            for c in clients.iter_mut() {
                let k = c.client();
                match channel.is_ready(k) {
                    Ok(true) => {}
                    Ok(false) if matches!(c.poll(), Some(Exit::Success)) => {
                        return Err(CellFailure::ExitedBeforeReady { client: k });
                    }
                    Ok(false) => all = false,
                    Err(e) => return Err(CellFailure::Protocol(format!("client {k}: {e}"))),
                }
            }
            Ok(all)
        });
        if boot.iter().any(Option::is_some) {
            result.boot_s = boot;
        }
        outcome
    }

    /// Reads every client's result into the controller's clock; a client without one
    /// fails the cell.
    fn collect(
        &self,
        channel: &dyn Channel,
        clients: &[Box<dyn Client>],
        result: &mut CellResult,
    ) -> Result<(), CellFailure> {
        for c in clients {
            let k = c.client();
            match channel.result(k) {
                Ok(mut r) => {
                    if let Some(node) = self.placed[k as usize].node
                        && r.host.clock_synced_offset_ns.is_none()
                    {
                        r.to_controller_clock(node.clock().offset_ns);
                    }
                    result.clients.push(r)
                }
                Err(e) => result.client_failures.push(ClientFailure {
                    client: k,
                    message: format!("no result: {e}"),
                    stderr_tail: c.log_tail(10),
                    stderr_log: c.log().to_path_buf(),
                }),
            }
        }
        match result.client_failures.first() {
            None => Ok(()),
            Some(first) => {
                let last = first.stderr_tail.lines().last().unwrap_or("no output");
                Err(CellFailure::NoResult {
                    clients: result.client_failures.iter().map(|f| f.client).collect(),
                    first: format!("{}: {last} (log: {})", first.client, first.stderr_log.display()),
                })
            }
        }
    }

    /// Polls until `done`, a client fails, the deadline passes (the failure names the
    /// clients `late` lists) or the user interrupts.
    fn wait(
        &self,
        clients: &mut [Box<dyn Client>],
        deadline: Instant,
        phase: Phase,
        late: impl Fn(&mut [Box<dyn Client>]) -> Vec<u32>,
        mut done: impl FnMut(&mut [Box<dyn Client>]) -> Result<bool, CellFailure>,
    ) -> Result<(), CellFailure> {
        loop {
            for c in clients.iter_mut() {
                match c.poll() {
                    Some(Exit::Failed(why)) => return Err(CellFailure::Client { client: c.client(), why }),
                    Some(Exit::Lost(why)) => return Err(CellFailure::Lost { client: c.client(), why }),
                    _ => {}
                }
            }
            if done(clients)? {
                return Ok(());
            }
            if self.cancel.load(Ordering::SeqCst) {
                return Err(CellFailure::Interrupted);
            }
            if Instant::now() >= deadline {
                return Err(CellFailure::Deadline { phase, clients: late(clients) });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills every client, records their logs, and returns the failure with the most
    /// telling log line appended.
    fn fail(&self, clients: &mut [Box<dyn Client>], result: &mut CellResult, f: CellFailure) -> (CellFailure, String) {
        for c in clients.iter_mut() {
            c.kill();
            c.teardown();
        }
        let culprit = match &f {
            CellFailure::Client { client, .. }
            | CellFailure::Lost { client, .. }
            | CellFailure::ExitedBeforeReady { client } => Some(*client),
            _ => None,
        };
        for c in clients.iter_mut() {
            let exit = c.poll();
            let text = c.log_tail(10);
            if !matches!(exit, Some(Exit::Success)) && (!text.is_empty() || culprit == Some(c.client())) {
                result.client_failures.push(ClientFailure {
                    client: c.client(),
                    message: match exit {
                        Some(Exit::Failed(w) | Exit::Lost(w)) => w,
                        _ => "did not finish".into(),
                    },
                    stderr_tail: text,
                    stderr_log: c.log().to_path_buf(),
                });
            }
        }
        let detail = result
            .client_failures
            .iter()
            .find(|c| !c.stderr_tail.is_empty())
            .map(|c| {
                format!(": {} (log: {})", c.stderr_tail.lines().last().unwrap_or_default(), c.stderr_log.display())
            })
            .unwrap_or_default();
        (f, detail)
    }
}

/// Reads a cell's CPU counters through its run, on this host and on every node of it.
struct Sampler<'a> {
    local: Option<Arc<CellCgroup>>,
    nodes: Vec<&'a Arc<Node>>,
    cell: String,
    series: Vec<CpuSeries>,
    last: Option<Instant>,
}

/// How often the counters are read during the run.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

impl<'a> Sampler<'a> {
    fn new(local: Option<Arc<CellCgroup>>, placed: &[Placed<'a>], cell: &str) -> Sampler<'a> {
        let mut nodes: Vec<&Arc<Node>> = Vec::new();
        for n in placed.iter().filter_map(|p| p.node) {
            if !nodes.iter().any(|x| x.index == n.index) {
                nodes.push(n);
            }
        }
        let mut series: Vec<CpuSeries> = Vec::new();
        if let Some(cg) = &local {
            series.push(CpuSeries {
                node: None,
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
                machine: crate::sys::boot_id(),
                covers_containers: cg.covers_containers(),
                samples: Vec::new(),
            });
        }
        for n in &nodes {
            series.push(CpuSeries {
                node: Some(n.dest.clone()),
                cpus: n.facts.cpus,
                machine: n.facts.boot_id.clone(),
                covers_containers: false,
                samples: Vec::new(),
            });
        }
        Sampler { local, nodes, cell: cell.to_string(), series, last: None }
    }

    /// Reads every counter now.
    fn sample(&mut self) {
        self.last = Some(Instant::now());
        let mut i = 0;
        if let Some(cg) = &self.local {
            if let Some(s) = cg.sample() {
                self.series[0].samples.push(s);
            }
            i = 1;
        }
        for (n, series) in self.nodes.iter().zip(&mut self.series[i..]) {
            if let Ok(Some((s, covers_containers))) = n.cpu_sample(&self.cell) {
                series.covers_containers = covers_containers;
                series.samples.push(s);
            }
        }
    }

    /// Reads the counters if the last reading is older than [`SAMPLE_EVERY`].
    fn tick(&mut self) {
        if self.last.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            self.sample();
        }
    }

    /// A last reading; the series, and the nodes' cgroups released.
    fn finish(&mut self) -> Vec<CpuSeries> {
        self.sample();
        for n in &self.nodes {
            let _ = n.end_cell(&self.cell);
        }
        std::mem::take(&mut self.series)
    }
}

impl CellRun<'_> {
    /// The cell's control channel: a directory under the target where the controller
    /// sees it, else each node's agent relaying one on its own disk.
    fn channel(&self) -> Result<Box<dyn Channel>, crate::control::ProtocolError> {
        let client_view = self.placed[0].backend.client_path(self.target, &self.control);
        if self.data.is_some() {
            return Ok(Box::new(SharedDir::create(&self.control, &client_view)?));
        }
        let nodes: Vec<Arc<Node>> =
            self.placed.iter().map(|p| p.node.expect("clients of an unshared target are on nodes").clone()).collect();
        let data_root = self.target.join(DATA_DIR);
        Ok(Box::new(relayed_channel(&nodes, &self.control, &client_view, &data_root)))
    }
}

/// Starts every client: each backend that starts many at once ([`Backend::launch_batch`],
/// a node's agent) gets all of its clients in one call, the nodes in parallel; the
/// others' clients are started several at a time (a container or a guest takes a
/// while to start; clients must not wait for each other). A failed launch stops the
/// others.
fn launch_all(backends: &[&dyn Backend], launches: &[Launch]) -> Result<Vec<Box<dyn Client>>, CellFailure> {
    let mut slots: Vec<Option<Result<Box<dyn Client>, RuntimeError>>> = (0..launches.len()).map(|_| None).collect();
    // Clients by backend (the same prepared backend: the same object).
    let mut groups: Vec<(&dyn Backend, Vec<usize>)> = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| std::ptr::addr_eq(*g as *const dyn Backend, *b as *const dyn Backend)) {
            Some((_, members)) => members.push(i),
            None => groups.push((*b, vec![i])),
        }
    }
    let results = std::sync::Mutex::new(&mut slots);
    let singles = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (backend, members) in &groups {
            let (results, singles) = (&results, &singles);
            s.spawn(move || {
                let batch: Vec<&Launch> = members.iter().map(|&i| &launches[i]).collect();
                match backend.launch_batch(&batch) {
                    Some(started) => {
                        let mut slots = results.lock().expect("not poisoned");
                        for (&i, r) in members.iter().zip(started) {
                            slots[i] = Some(r);
                        }
                    }
                    None => singles.lock().expect("not poisoned").extend(members.iter().copied()),
                }
            });
        }
    });
    let mut singles = singles.into_inner().expect("not poisoned");
    singles.sort_unstable();
    let batch_failed = results.lock().expect("not poisoned").iter().any(|r| matches!(r, Some(Err(_))));
    let next = AtomicUsize::new(0);
    let failed = Arc::new(AtomicBool::new(batch_failed));
    std::thread::scope(|s| {
        for _ in 0..singles.len().min(LAUNCH_PARALLELISM) {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= singles.len() || failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = singles[n];
                    let r = backends[i].launch(&launches[i]);
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    results.lock().expect("not poisoned")[i] = Some(r);
                }
            });
        }
    });
    let mut clients = Vec::with_capacity(launches.len());
    let mut first_error = None;
    for (i, slot) in slots.into_iter().enumerate() {
        match slot {
            Some(Ok(c)) => clients.push(c),
            Some(Err(error)) if first_error.is_none() => {
                first_error = Some(CellFailure::Launch {
                    client: launches[i].client,
                    kind: error.failure_kind(),
                    error: error.to_string(),
                })
            }
            _ => {}
        }
    }
    match first_error {
        // Dropping the clients started so far kills and tears them down.
        Some(f) => Err(f),
        None => Ok(clients),
    }
}

/// Tears every client down (its log copied here), several at a time: a node's clients
/// come back over its one session, so the nodes work in parallel instead of in turn.
fn teardown_all(clients: &mut [Box<dyn Client>]) {
    let chunk = clients.len().div_ceil(LAUNCH_PARALLELISM).max(1);
    std::thread::scope(|s| {
        for part in clients.chunks_mut(chunk) {
            s.spawn(move || part.iter_mut().for_each(|c| c.teardown()));
        }
    });
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`.
pub fn drop_host_caches() -> std::io::Result<()> {
    rustix::fs::sync();
    fs::write("/proc/sys/vm/drop_caches", b"3\n")
}
