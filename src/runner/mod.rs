//! Running a plan: cells × repetitions in plan order, each cell's clients launched in
//! parallel, started together through the barrier, collected, torn down ([`cell`]).
//!
//! Before the first cell: the plan's blockers (every check of
//! [`crate::study::preflight`]), the target made ready and locked ([`lock`]: one run
//! per target and per results directory), what dead runs left ([`recovery`]), and
//! every scenario's backend prepared — only then is anything written into the results
//! directory. Directories under the target are created or verified as safe
//! ([`crate::safety`]) and, with `keep_files = false`, exactly what the run created is
//! removed at its end ([`data`]). Every finished cell is stored before the next
//! starts. Teardown is owned, not hoped for: clients kill and tear down on drop, the
//! run's state and control directories and backends' files are removed by a guard,
//! and SIGINT/SIGTERM only set a flag that every wait loop checks, so Ctrl-C unwinds
//! through the same paths.

pub mod cell;
pub mod data;
pub mod lock;
pub mod recovery;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::control::{CONTROL_DIR, DATA_DIR, cell_dir};
use crate::hosts::protocol::Request;
use crate::hosts::remote::RemoteBackend;
use crate::report::units::bandwidth;
use crate::results::aggregate::cell_figures;
use crate::results::cell::{CellResult, CellStatus, RuntimeRecord};
use crate::results::store::{Store, StoreError};
use crate::runtime::{Backend, RunContext, RuntimeError, ScenarioContext};
use crate::study::plan::Plan;
use crate::study::preflight::Preflight;
use cell::{CellRun, Placed};

/// Why a run could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the study cannot run here:\n  - {}", .0.join("\n  - "))]
    Blocked(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("scenario `{scenario}`: {source}")]
    Runtime { scenario: String, source: RuntimeError },
    #[error(transparent)]
    Unsafe(#[from] crate::safety::SafetyError),
    #[error(transparent)]
    Locked(#[from] lock::LockError),
    #[error("{0}")]
    Node(String),
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
    /// The plan's cells that have a result, in plan order: this run's, and those an
    /// earlier run finished (with `--resume`).
    pub cells: Vec<CellResult>,
    /// Cells in the results directory that are not in this plan (an earlier run with
    /// other filters): the report shows them too.
    pub others: Vec<CellResult>,
    /// Cell files that could not be read.
    pub unreadable: Vec<String>,
    pub notes: Vec<String>,
}

/// Removes the run's scratch directories and backends' files on every exit path, then
/// releases the target.
struct Scratch {
    state_dir: PathBuf,
    control_dir: PathBuf,
    /// By scenario and node (`None`: this host).
    backends: BTreeMap<(String, Option<usize>), Box<dyn Backend>>,
    target_lock: Option<lock::Lock>,
    /// The target's control area, when this run created it.
    created_control_base: Option<PathBuf>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for b in self.backends.values() {
            b.cleanup();
        }
        let _ = fs::remove_dir_all(&self.state_dir);
        let _ = fs::remove_dir_all(&self.control_dir);
        if let (Some(base), Some(run)) = (crate::runtime::cgroup::base_dir(), self.state_dir.file_name()) {
            crate::runtime::cgroup::remove_tree(&base.join(format!("iostudy-{}", run.to_string_lossy())));
        }
        drop(self.target_lock.take());
        if let Some(base) = &self.created_control_base {
            let _ = fs::remove_dir(base); // only when no other run uses it
        }
    }
}

pub fn now_ns() -> u64 {
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

/// Where runs keep their private state: `/run/iostudy` as root, else a directory of
/// the user's own in the temp dir.
pub fn state_base() -> PathBuf {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        PathBuf::from("/run/iostudy")
    } else {
        std::env::temp_dir().join(format!("iostudy-{}", uid.as_raw()))
    }
}

/// Creates `path` and any missing parents, each checked as safe; returns what it created.
pub fn ensure_path(path: &Path) -> Result<Vec<PathBuf>, crate::safety::SafetyError> {
    let existing = path.ancestors().find(|p| p.symlink_metadata().is_ok()).unwrap_or(Path::new("/"));
    if existing == path {
        crate::safety::ensure_dir(path)?;
        return Ok(Vec::new());
    }
    crate::safety::ensure_dirs_below(existing, path)
}

/// Lets this process open as many files as the host allows (clients' logs, pipes).
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current < cur.maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: cur.maximum, maximum: cur.maximum });
    }
}

/// Runs every pending cell of `plan`.
pub fn run(plan: &Plan, pre: &Preflight, opts: &RunOptions, cancel: Arc<AtomicBool>) -> Result<RunOutcome, RunError> {
    let blockers = pre.blockers();
    if !blockers.is_empty() {
        return Err(RunError::Blocked(blockers));
    }
    let mut notes = Vec::new();
    let root = rustix::process::geteuid().is_root();
    let drop_caches = plan.study.drop_caches && root;
    if plan.study.drop_caches && !root {
        notes.push("not root: the host page cache was not dropped between cells".to_string());
    }

    raise_open_files_limit();
    let me = lock::Holder::me(&opts.output);

    // The target, its control area (locked for this run) and the run's private state.
    // With nodes and an unshared target, each node's agent takes its own target.
    let target = plan.study.target.clone();
    let hosts = plan.study.hosts.as_ref();
    let local_target = hosts.is_none_or(|h| h.shared_target);
    let control_base = target.join(CONTROL_DIR);
    let (created_target, created_control_base, target_lock) = if local_target {
        let created_target = ensure_path(&target)?;
        let created_control = crate::safety::ensure_dir(&control_base)?.then(|| control_base.clone());
        let (lock, took_over) = lock::Lock::take(&control_base.join("lock"), "target", &target, &me)?;
        notes.extend(took_over);
        (created_target, created_control, Some(lock))
    } else {
        (Vec::new(), None, None)
    };
    let run_id = format!("{}-{}", std::process::id(), now_ns() / 1_000_000 % 100_000_000);
    let state_base = state_base();
    ensure_path(&state_base)?;
    let reaped = recovery::reap_dead_runs(&state_base, local_target.then_some(control_base.as_path()));
    notes.extend(reaped.notes);
    if !reaped.markers.is_empty() {
        for node in &pre.nodes {
            let _ = node.request(&Request::Reap { markers: reaped.markers.clone() });
        }
    }
    let mut scratch = Scratch {
        state_dir: state_base.join(&run_id),
        control_dir: control_base.join(&run_id),
        backends: BTreeMap::new(),
        target_lock,
        created_control_base,
    };
    crate::safety::ensure_dir(&scratch.state_dir)?;
    if local_target {
        crate::safety::ensure_dir(&scratch.control_dir)?;
    }
    let data = data::DataDirs::new(target.join(DATA_DIR), created_target);

    // Every scenario's backend — here, or on each of its nodes — before anything is
    // written into the results directory.
    let ctx = RunContext {
        run_id: run_id.clone(),
        study: plan.study.name.clone(),
        state_dir: scratch.state_dir.clone(),
        target: target.clone(),
        cancel: cancel.clone(),
        fio: plan.cells.iter().any(|c| c.workload.engine == crate::workload::Engine::Fio),
    };
    if let Some(h) = hosts
        && !h.shared_target
    {
        for node in &pre.nodes {
            node.request(&Request::Target { path: target.clone(), keep_files: plan.study.keep_files })
                .map_err(|e| RunError::Node(format!("{e} (taking the target {} there)", target.display())))?;
        }
    }
    for sc in &plan.scenarios {
        let runtime_error = |source| RunError::Runtime { scenario: sc.name.clone(), source };
        // Without [hosts], and for backends that place clients themselves: here.
        if hosts.is_none() || plan.scenario_nodes(&sc.name).is_empty() {
            let sctx = ScenarioContext::new(&ctx, sc.runtime.kind(), &sc.name);
            scratch.backends.insert((sc.name.clone(), None), sc.runtime.prepare(&sctx).map_err(runtime_error)?);
            continue;
        }
        for i in plan.scenario_nodes(&sc.name) {
            let remote = RemoteBackend::prepare(pre.nodes[i].clone(), &sc.name, sc.runtime.as_ref(), &target, ctx.fio)
                .map_err(runtime_error)?;
            scratch.backends.insert((sc.name.clone(), Some(i)), Box::new(remote));
        }
    }

    // The results directory: ours, locked, and only then written.
    ensure_path(&opts.output)?;
    let (_results_lock, took_over) =
        lock::Lock::take(&opts.output.join(".lock"), "results directory", &opts.output, &me)?;
    notes.extend(took_over);
    let store = Store::create(&opts.output, &plan.study.source, opts.resume)?;
    let stored = store.cells()?;
    let records: BTreeMap<&str, RuntimeRecord> =
        plan.scenarios.iter().map(|s| (s.name.as_str(), pre.probe(&s.name).record(s.runtime.as_ref()))).collect();
    let unprobed = |s: &crate::study::Scenario| RuntimeRecord {
        kind: s.runtime.kind().into(),
        name: s.runtime.name(),
        settings: s.runtime.settings(),
        ..RuntimeRecord::default()
    };
    let mut info = plan.study.run_info(
        |s| records.get(s.name.as_str()).cloned().unwrap_or_else(|| unprobed(s)),
        plan.scale,
        pre.warnings.iter().map(ToString::to_string).collect(),
    );
    info.target = local_target.then(|| crate::study::preflight::target_facts(&target)).flatten();
    store.write_run_info(&info)?;

    let mut previous: BTreeMap<String, CellResult> = stored.cells.into_iter().map(|c| (c.cell.id.clone(), c)).collect();
    let mut results: BTreeMap<usize, CellResult> = BTreeMap::new();
    let mut pending = Vec::new();
    for (i, c) in plan.cells.iter().enumerate() {
        match previous.remove(&c.id) {
            Some(done) if opts.resume && done.status == CellStatus::Ok => {
                results.insert(i, done);
            }
            _ => pending.push((i, c)),
        }
    }
    let skipped = results.len();

    let bar = progress_bar(pending.len() as u64, opts.progress);
    let (mut ran, mut failed, mut interrupted) = (0, 0, false);
    for (index, cell) in pending {
        if cancel.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        bar.set_message(format!("{} {} c={}", cell.scenario, cell.pattern, cell.clients));
        let scenario = plan.scenario(&cell.scenario);
        let placed: Vec<Placed> = match plan.placement(cell) {
            None => vec![
                Placed { backend: scratch.backends[&(cell.scenario.clone(), None)].as_ref(), node: None };
                cell.clients as usize
            ],
            Some(nodes) => nodes
                .iter()
                .map(|&i| Placed {
                    backend: scratch.backends[&(cell.scenario.clone(), Some(i))].as_ref(),
                    node: Some(&pre.nodes[i]),
                })
                .collect(),
        };
        // Clocks drift: measure each node's again just before its clients start.
        let mut measured: Vec<usize> = Vec::new();
        for p in &placed {
            if let Some(n) = p.node
                && !measured.contains(&n.index)
            {
                measured.push(n.index);
                let _ = n.measure_clock();
            }
        }
        let mut runtime = records[cell.scenario.as_str()].clone();
        runtime.notes.extend(placed[0].backend.notes());
        runtime.accelerator = placed[0].backend.accelerator();
        let cx = CellRun {
            cell,
            label: &scenario.label,
            runtime,
            placed,
            target: &target,
            data: local_target.then_some(&data),
            control: cell_dir(&scratch.control_dir, index),
            logs: store.log_dir(&cell.id),
            name_prefix: format!("iostudy-{run_id}-{index}"),
            cgroup_name: format!("iostudy-{run_id}/cell-{index}"),
            drop_caches,
            barrier_timeout: plan.study.barrier_timeout,
            cell_timeout: plan.study.cell_timeout,
            cancel: &cancel,
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
        results.insert(index, result);
    }
    bar.finish_and_clear();
    drop(scratch);
    if !plan.study.keep_files {
        data.remove_created();
    }
    Ok(RunOutcome {
        ran,
        skipped,
        failed,
        interrupted,
        cells: results.into_values().collect(),
        others: previous.into_values().collect(),
        unreadable: stored.unreadable,
        notes,
    })
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

#[cfg(test)]
mod tests;
