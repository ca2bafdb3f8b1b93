//! Running a plan: cells × repetitions, each cell's clients launched in parallel,
//! started together through the barrier, collected, torn down.
//!
//! Per cell: drop the host page cache (root), write one job per client under a
//! control directory *inside the target* (so the barrier and results cross the same
//! mount, share or filesystem as the I/O), launch every client, wait until all wrote
//! `ready/<client>`, write `go` with a start instant a moment ahead, wait for every
//! client to exit before a deadline, read back `client-<id>.json`. A client that fails
//! or hangs fails its cell — the others are killed, its stderr is kept — and the study
//! goes on. Every finished cell is stored before the next starts.
//!
//! Teardown is owned, not hoped for: client handles kill and delete on drop, the run's
//! state and control directories are removed by a guard, and SIGINT/SIGTERM only set a
//! flag that every wait loop checks, so Ctrl-C unwinds through the same paths.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::Span;
use crate::report::units::bandwidth;
use crate::results::aggregate::cell_figures;
use crate::results::store::{CELL_SCHEMA_VERSION, CellResult, CellStatus, ClientFailure, RunInfo, Store, StoreError};
use crate::results::{ClientResult, HostFacts, write_atomic};
use crate::runtime::{Backend, ClientHandle, Exit, Launch, RunContext, RuntimeError, log_tail};
use crate::study::plan::{Cell, Plan};
use crate::worker::{BarrierSpec, GoSignal, JOB_SCHEMA_VERSION, Job, go_path, ready_path};

/// Why a run could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the study cannot run here:\n  - {}", .0.join("\n  - "))]
    Blocked(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("scenario `{scenario}`: {source}")]
    Runtime { scenario: String, source: RuntimeError },
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

/// Where each run keeps its cells' control directories under the target.
pub const CONTROL_DIR: &str = ".iostudy-control";

/// Where clients' files live under the target: `iostudy-data/client-<k>/`, shared by
/// every cell so files are laid out once and reused.
pub const DATA_DIR: &str = "iostudy-data";

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io { what, path, source }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub output: PathBuf,
    pub resume: bool,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// What happened.
#[derive(Debug)]
pub struct RunOutcome {
    pub ran: usize,
    pub skipped: usize,
    pub failed: usize,
    pub interrupted: bool,
    /// Every cell result in the store after the run (earlier runs' included).
    pub cells: Vec<CellResult>,
    pub notes: Vec<String>,
}

/// Removes the run's scratch directories and backends' files on every exit path.
struct Scratch {
    state_dir: PathBuf,
    control_dir: PathBuf,
    backends: BTreeMap<String, Backend>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for b in self.backends.values() {
            b.cleanup();
        }
        let _ = fs::remove_dir_all(&self.state_dir);
        let _ = fs::remove_dir_all(&self.control_dir);
        if let Some(parent) = self.control_dir.parent() {
            let _ = fs::remove_dir(parent); // only when no other run uses it
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Installs SIGINT/SIGTERM handlers that set `flag`.
pub fn cancel_on_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

/// Runs every pending cell of `plan`.
pub fn run(plan: &Plan, opts: &RunOptions, cancel: Arc<AtomicBool>) -> Result<RunOutcome, RunError> {
    let blockers = plan.blockers();
    if !blockers.is_empty() {
        return Err(RunError::Blocked(blockers));
    }
    let store = Store::create(&opts.output, &plan.study.source, opts.resume)?;
    let mut notes = Vec::new();
    let root = rustix::process::geteuid().is_root();
    let drop_caches = plan.study.drop_caches && root;
    if plan.study.drop_caches && !root {
        notes.push("not root: the host page cache was not dropped between cells".to_string());
    }

    let target = plan.study.target.clone();
    fs::create_dir_all(&target).map_err(io_err("create the target", &target))?;
    let run_id = format!("{}-{}", std::process::id(), now_ns() / 1_000_000 % 100_000_000);
    let state_base = if root { PathBuf::from("/run/iostudy") } else { std::env::temp_dir().join("iostudy") };
    notes.extend(reap_dead_runs(&state_base, &target.join(CONTROL_DIR)));
    let mut scratch = Scratch {
        state_dir: state_base.join(&run_id),
        control_dir: target.join(CONTROL_DIR).join(&run_id),
        backends: BTreeMap::new(),
    };
    fs::create_dir_all(&scratch.state_dir).map_err(io_err("create", &scratch.state_dir))?;
    fs::create_dir_all(&scratch.control_dir).map_err(io_err("create", &scratch.control_dir))?;

    let pending: Vec<(usize, &Cell)> =
        plan.cells.iter().enumerate().filter(|(_, c)| !(opts.resume && store.finished(&c.id))).collect();
    let skipped = plan.cells.len() - pending.len();

    let ctx = RunContext {
        run_id: run_id.clone(),
        state_dir: scratch.state_dir.clone(),
        target: target.clone(),
        cancel: cancel.clone(),
    };
    for (_, cell) in &pending {
        if !scratch.backends.contains_key(&cell.scenario) {
            let sp = plan.scenario(&cell.scenario);
            let backend = Backend::prepare(&sp.scenario.runtime, &ctx)
                .map_err(|source| RunError::Runtime { scenario: cell.scenario.clone(), source })?;
            scratch.backends.insert(cell.scenario.clone(), backend);
        }
    }
    store.write_run_info(&RunInfo {
        iostudy_version: env!("CARGO_PKG_VERSION").to_string(),
        study_name: plan.study.name.clone(),
        host: HostFacts::current(),
        scale: plan.scale,
        probes: plan.scenarios.iter().map(|s| (s.scenario.name.clone(), s.probe.clone())).collect(),
        warnings: plan.warnings.iter().map(ToString::to_string).collect(),
    })?;

    let bar = progress_bar(pending.len() as u64, opts.progress);
    let (mut ran, mut failed, mut interrupted) = (0, 0, false);
    for (index, cell) in pending {
        if cancel.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        bar.set_message(format!("{} {} c={}", cell.scenario, cell.pattern, cell.clients));
        let backend = &scratch.backends[&cell.scenario];
        let cx = CellRun {
            plan,
            cell,
            index,
            backend,
            store: &store,
            control: scratch.control_dir.join(format!("cell-{index}")),
            ctx: &ctx,
            drop_caches,
        };
        let result = cx.run();
        if cancel.load(Ordering::SeqCst) && result.status == CellStatus::Failed {
            // Interrupted mid-cell: nothing of it is stored, `--resume` runs it again.
            interrupted = true;
            break;
        }
        store.write_cell(&result)?;
        ran += 1;
        if result.status == CellStatus::Failed {
            failed += 1;
            let line = format!("cell {} failed: {}", cell.id, result.failure.as_deref().unwrap_or("?"));
            // Without a bar (not a terminal) failures still show as they happen.
            if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
        } else if let Some(f) = cell_figures(&result.clients) {
            bar.set_message(format!(
                "last: {} {} c={} {}",
                cell.scenario,
                cell.pattern,
                cell.clients,
                bandwidth(f.window_bw_bytes_per_s)
            ));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !plan.study.keep_files {
        let _ = fs::remove_dir_all(target.join(DATA_DIR));
    }
    drop(scratch);
    Ok(RunOutcome { ran, skipped, failed, interrupted, cells: store.cells()?, notes })
}

fn progress_bar(len: u64, enabled: bool) -> ProgressBar {
    let target = if enabled && std::env::var_os("NO_COLOR").is_none() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template("cell {pos}/{len} [{elapsed_precise}, ETA {eta}] {msg}").expect("static template"),
    );
    bar
}

/// One cell's run.
struct CellRun<'a> {
    plan: &'a Plan,
    cell: &'a Cell,
    index: usize,
    backend: &'a Backend,
    store: &'a Store,
    control: PathBuf,
    ctx: &'a RunContext,
    drop_caches: bool,
}

/// How waiting ended.
enum Wait {
    Done,
    Failed(String),
}

impl CellRun<'_> {
    fn run(&self) -> CellResult {
        let sp = self.plan.scenario(&self.cell.scenario);
        let launched_ns = now_ns();
        let mut result = CellResult {
            schema_version: CELL_SCHEMA_VERSION,
            cell: self.cell.clone(),
            scenario_label: sp.scenario.label.clone(),
            runtime: sp.scenario.runtime.clone(),
            runtime_version: sp.probe.version.clone(),
            runtime_notes: sp.probe.notes.iter().chain(self.backend.notes()).cloned().collect(),
            status: CellStatus::Failed,
            failure: None,
            launched_ns,
            finished_ns: 0,
            setup_s: 0.0,
            start_ns: None,
            caches_dropped: false,
            clients: Vec::new(),
            client_failures: Vec::new(),
            boot_s: Vec::new(),
        };
        match self.execute(&mut result) {
            Ok(()) => result.status = CellStatus::Ok,
            Err(msg) => result.failure = Some(msg),
        }
        let _ = fs::remove_dir_all(&self.control);
        result.finished_ns = now_ns();
        result
    }

    fn execute(&self, result: &mut CellResult) -> Result<(), String> {
        let cell = self.cell;
        let n = cell.clients;
        let _ = fs::remove_dir_all(&self.control);
        fs::create_dir_all(self.control.join("ready"))
            .map_err(|e| format!("cannot create {}: {e}", self.control.display()))?;
        let logs = self.store.log_dir(&cell.id);
        fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;

        if self.drop_caches {
            result.caches_dropped = drop_host_caches().is_ok();
        }

        // Jobs, with paths as the clients see them.
        let host_target = &self.ctx.target;
        let client_target = self.backend.target_in_client(host_target);
        let rel_control = self.control.strip_prefix(host_target).expect("control lives under the target");
        let client_control = client_target.join(rel_control);
        let barrier_timeout = self.plan.study.barrier_timeout;
        let mut launches = Vec::new();
        for k in 0..n {
            let data_rel = Path::new(DATA_DIR).join(format!("client-{k}"));
            let host_data = host_target.join(&data_rel);
            fs::create_dir_all(&host_data).map_err(|e| format!("cannot create {}: {e}", host_data.display()))?;
            let mut workload = cell.workload.clone();
            workload.directory = client_target.join(&data_rel);
            let job = Job {
                schema_version: JOB_SCHEMA_VERSION,
                client_id: k,
                workload,
                output: client_control.join(format!("client-{k}.json")),
                drop_caches: self.backend.drops_guest_caches(),
                barrier: Some(BarrierSpec {
                    control_dir: client_control.clone(),
                    timeout: Span(barrier_timeout),
                    poll: Span(Duration::from_millis(5)),
                }),
            };
            let job_host = self.control.join(format!("job-{k}.json"));
            write_atomic(&job_host, &serde_json::to_vec_pretty(&job).expect("job serializes"))
                .map_err(|e| format!("cannot write {}: {e}", job_host.display()))?;
            launches.push(Launch {
                id: format!("iostudy-{}-{}-{k}", self.ctx.run_id, self.index),
                client: k,
                job_host,
                job_client: client_control.join(format!("job-{k}.json")),
                stdout: logs.join(format!("client-{k}.stdout")),
                stderr: logs.join(format!("client-{k}.stderr")),
                log_dir: logs.clone(),
            });
        }

        let started = Instant::now();
        let mut handles: Vec<ClientHandle> = Vec::with_capacity(n as usize);
        for l in &launches {
            let h = self.backend.launch(l).map_err(|e| format!("cannot launch client {}: {e}", l.client))?;
            handles.push(h);
        }

        // Barrier: all ready, then go. Guests that boot leave a marker when their share
        // is mounted; its first sighting times the boot.
        let ready_deadline = started + self.plan.study.cell_timeout.map_or(barrier_timeout, |t| t.min(barrier_timeout));
        let mut boot: Vec<Option<f64>> = vec![None; n as usize];
        let outcome = self.wait(
            &mut handles,
            ready_deadline,
            |_| {
                for (k, b) in boot.iter_mut().enumerate() {
                    if b.is_none() && self.control.join("booted").join(k.to_string()).exists() {
                        *b = Some(started.elapsed().as_secs_f64());
                    }
                }
                (0..n).all(|k| ready_path(&self.control, k).exists())
            },
            "ready",
        );
        if boot.iter().any(Option::is_some) {
            result.boot_s = boot;
        }
        if let Wait::Failed(msg) = outcome {
            return Err(self.fail(&mut handles, result, msg));
        }
        result.setup_s = started.elapsed().as_secs_f64();
        let lead = Duration::from_millis(100 + 5 * u64::from(n));
        let start_ns = now_ns() + lead.as_nanos() as u64;
        let go = serde_json::to_vec(&GoSignal { start_ns }).expect("go serializes");
        write_atomic(&go_path(&self.control), &go).map_err(|e| format!("cannot write the go signal: {e}"))?;
        result.start_ns = Some(start_ns);

        // Run: every client exits successfully before the deadline.
        let w = &cell.workload;
        let deadline = match self.plan.study.cell_timeout {
            Some(t) => started + t,
            None => {
                let active = w.ramp_time.0 + w.runtime.map_or(Duration::from_secs(3600), |r| r.0);
                Instant::now() + lead + active + (active / 2).max(Duration::from_secs(30))
            }
        };
        let outcome = self.wait(&mut handles, deadline, |hs| hs.iter_mut().all(|h| h.poll().is_some()), "finished");
        if let Wait::Failed(msg) = outcome {
            return Err(self.fail(&mut handles, result, msg));
        }
        for h in &mut handles {
            h.teardown();
        }

        for k in 0..n {
            let path = self.control.join(format!("client-{k}.json"));
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<ClientResult>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(r) => result.clients.push(r),
                Err(e) => {
                    let stderr = launches[k as usize].stderr.clone();
                    result.client_failures.push(ClientFailure {
                        client: k,
                        message: format!("no result: {e}"),
                        stderr_tail: tail(&stderr),
                        stderr_log: stderr,
                    });
                }
            }
        }
        if let Some(first) = result.client_failures.first() {
            let last = first.stderr_tail.lines().last().unwrap_or("no output");
            return Err(format!(
                "{} client(s) left no result; client {}: {last} (log: {})",
                result.client_failures.len(),
                first.client,
                first.stderr_log.display()
            ));
        }
        Ok(())
    }

    /// Polls until `done`, a client fails, the deadline passes or the user interrupts.
    fn wait(
        &self,
        handles: &mut [ClientHandle],
        deadline: Instant,
        mut done: impl FnMut(&mut [ClientHandle]) -> bool,
        what: &str,
    ) -> Wait {
        loop {
            for h in handles.iter_mut() {
                let client = h.client;
                match h.poll() {
                    Some(Exit::Failed(why)) => {
                        return Wait::Failed(format!("client {client} {why}"));
                    }
                    Some(Exit::Success) if what == "ready" && !ready_path(&self.control, client).exists() => {
                        return Wait::Failed(format!("client {client} exited before it was ready"));
                    }
                    _ => {}
                }
            }
            if done(handles) {
                return Wait::Done;
            }
            if self.ctx.cancel.load(Ordering::SeqCst) {
                return Wait::Failed("interrupted".into());
            }
            if Instant::now() >= deadline {
                let late: Vec<String> = handles
                    .iter_mut()
                    .filter_map(|h| h.poll().is_none().then_some(h))
                    .map(|h| h.client.to_string())
                    .collect();
                return Wait::Failed(format!("client(s) {} not {what} before the deadline (hung?)", late.join(", ")));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills every client, records their stderr, and returns the cell's failure.
    fn fail(&self, handles: &mut [ClientHandle], result: &mut CellResult, msg: String) -> String {
        for h in handles.iter_mut() {
            h.kill();
            h.teardown();
        }
        for h in handles.iter_mut() {
            let exit = h.poll().cloned();
            let failed = !matches!(exit, Some(Exit::Success));
            // Helpers' last words first, so the client's own last line stays last.
            let mut text = String::new();
            for log in &h.helper_logs {
                let said = log_tail(log, 5);
                if !said.is_empty() {
                    text.push_str(&format!("{}:\n{said}\n", log.display()));
                }
            }
            text.push_str(&tail(&h.stderr));
            if failed && (!text.is_empty() || msg.starts_with(&format!("client {} ", h.client))) {
                result.client_failures.push(ClientFailure {
                    client: h.client,
                    message: match exit {
                        Some(Exit::Failed(w)) => w,
                        _ => "did not finish".into(),
                    },
                    stderr_tail: text,
                    stderr_log: h.stderr.clone(),
                });
            }
        }
        let detail = result
            .client_failures
            .iter()
            .find(|f| !f.stderr_tail.is_empty())
            .map(|f| {
                format!(": {} (log: {})", f.stderr_tail.lines().last().unwrap_or_default(), f.stderr_log.display())
            })
            .unwrap_or_default();
        format!("{msg}{detail}")
    }
}

/// The last lines of a client's log.
fn tail(path: &Path) -> String {
    log_tail(path, 10)
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`.
pub fn drop_host_caches() -> std::io::Result<()> {
    rustix::fs::sync();
    fs::write("/proc/sys/vm/drop_caches", b"3\n")
}

/// Cleans up after runs that were killed outright (SIGKILL, a crash, power loss) and
/// so could not tear down: kills processes that still mention their state or control
/// directories (workers, QEMU, virtiofsd), deletes the containers left in their
/// private OCI roots, and removes both directories. Runs are named `<pid>-<stamp>`;
/// one whose pid is alive is left alone.
fn reap_dead_runs(state_base: &Path, control_base: &Path) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for base in [state_base, control_base] {
        for e in fs::read_dir(base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut notes = Vec::new();
    for name in names {
        let state = state_base.join(&name);
        let control = control_base.join(&name);
        let markers = [format!("{}/", state.display()), format!("{}/", control.display())];
        for pid in processes_mentioning(&markers) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        for e in fs::read_dir(&state).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("oci-") {
                crate::runtime::oci::delete_all(&e.path());
            }
        }
        let _ = fs::remove_dir_all(&state);
        let _ = fs::remove_dir_all(&control);
        notes.push(format!("cleaned up after run {name}, which was killed before it could tear down"));
    }
    notes
}

/// Pids of processes whose command line contains any of `markers`.
fn processes_mentioning(markers: &[String]) -> Vec<u32> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let text = String::from_utf8_lossy(&c).replace('\0', " ");
                markers.iter().any(|m| text.contains(m.as_str()))
            })
        })
        .collect()
}
