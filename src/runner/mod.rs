//! Running a plan: cells × repetitions in plan order, each cell's clients launched in
//! parallel, started together through the barrier, collected, torn down ([`cell`]).
//!
//! Before the first cell: the plan's blockers (every check of
//! [`crate::runner::preflight`]), the target made ready and locked ([`lock`]: one run
//! per target and per results directory), what dead runs left ([`recovery`]), and
//! every scenario's backend prepared — only then is anything written into the results
//! directory. Directories under the target are created or verified as safe
//! ([`crate::safety`]) and, with `keep_files = false`, exactly what the run created is
//! removed at its end ([`data`]). Every finished cell is stored before the next
//! starts. Teardown is owned, not hoped for: clients kill and tear down on drop, the
//! run's state and control directories and backends' files are removed by a guard,
//! and SIGINT/SIGTERM only set a flag that every wait loop checks, so Ctrl-C unwinds
//! through the same paths.

pub mod agent;
pub mod cell;
pub mod data;
pub mod lock;
pub mod preflight;
pub mod recovery;
pub mod target;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::control::{CONTROL_DIR, cell_dir};
use crate::hosts::remote::RemoteBackend;
use crate::report::units::bandwidth;
use crate::results::aggregate::cell_figures;
use crate::results::cell::{CellResult, CellStatus, FailureKind, RuntimeRecord};
use crate::results::store::{Place, Store, StoreError};
use crate::runner::preflight::Preflight;
use crate::runtime::{Backend, RunContext, RuntimeError, ScenarioContext};
use crate::study::plan::Plan;
use cell::{CellFailure, CellRun, Placed};

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
    /// A test made this step fail (`FAILPOINTS`).
    #[error("failed on purpose at {0} (FAILPOINTS)")]
    Injected(String),
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

/// What a run takes before its first cell, given back on every exit path: the
/// backends' files, the run's state and control directories and cgroups, both locks,
/// and — when the run ends before its first cell — every directory it created, so a
/// run refused at any step leaves nothing of its own behind.
#[derive(Default)]
struct Taken {
    results_lock: Option<lock::Lock>,
    /// The target, when this host sees it.
    target: Option<target::TargetHold>,
    state_dir: Option<PathBuf>,
    control_dir: Option<PathBuf>,
    /// By scenario and node (`None`: this host).
    backends: BTreeMap<(String, Option<usize>), Box<dyn Backend>>,
    /// Directories this run created for its results, outermost first.
    created_results: Vec<PathBuf>,
    /// Set when the first cell starts: from then on the results directory holds the
    /// run's results, and the target its data, which outlive it.
    started: bool,
    keep_files: bool,
}

impl Drop for Taken {
    fn drop(&mut self) {
        for b in self.backends.values() {
            b.cleanup();
        }
        if let Some(state) = &self.state_dir {
            let _ = fs::remove_dir_all(state);
            if let Some(run) = state.file_name() {
                crate::runtime::cgroup::remove_run(&run.to_string_lossy());
            }
        }
        if let Some(control) = &self.control_dir {
            let _ = fs::remove_dir_all(control);
        }
        if let Some(t) = self.target.take() {
            t.release(!self.started || !self.keep_files);
        }
        drop(self.results_lock.take());
        if !self.started {
            for d in self.created_results.iter().rev() {
                let _ = fs::remove_dir(d); // only when empty
            }
        }
    }
}

/// Installs SIGINT/SIGTERM handlers that set `flag`.
pub fn cancel_on_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

/// Lets this process open as many files as the host allows (clients' logs, pipes).
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current < cur.maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: cur.maximum, maximum: cur.maximum });
    }
}

/// Runs every pending cell of `plan`. Nothing is taken before the plan's checks pass,
/// and each step before the first cell gives back what the earlier ones took if it
/// fails: the results directory first (cheapest to refuse), then the target, the run's
/// state, the nodes, every backend, and only then the results are written.
pub fn run(plan: &Plan, pre: &Preflight, opts: &RunOptions, cancel: Arc<AtomicBool>) -> Result<RunOutcome, RunError> {
    let blockers = pre.blockers();
    if !blockers.is_empty() {
        return Err(RunError::Blocked(blockers));
    }
    raise_open_files_limit();
    let mut taken = Taken::default();
    taken.keep_files = plan.study.keep_files;
    let mut setup = Setup { plan, pre, taken, notes: Vec::new(), run_id: crate::sys::run_id() };
    let me = lock::Holder::me(&opts.output);
    setup.take_results(opts, &me)?;
    setup.take_target(&me)?;
    setup.take_state()?;
    let ctx = setup.prepare_backends(&cancel)?;
    let store = setup.open_store(opts)?;
    let Setup { mut taken, mut notes, .. } = setup;
    taken.started = true;
    let (cells, mut outcome) = run_cells(plan, pre, opts, &cancel, &taken, &store, &ctx)?;
    drop(taken);
    notes.append(&mut outcome.notes);
    outcome.notes = notes;
    outcome.cells = cells;
    Ok(outcome)
}

/// The steps before the first cell, each adding to what the run has taken.
struct Setup<'a> {
    plan: &'a Plan,
    pre: &'a Preflight,
    taken: Taken,
    notes: Vec<String>,
    run_id: String,
}

impl Setup<'_> {
    /// Whether this host sees the target (no nodes, or nodes sharing it).
    fn local_target(&self) -> bool {
        self.plan.study.placement.as_ref().is_none_or(|p| p.shared_target())
    }

    /// The results directory: created (each level checked) and locked for this run.
    fn take_results(&mut self, opts: &RunOptions, me: &lock::Holder) -> Result<(), RunError> {
        failpoint("run:take-results")?;
        match Place::of(&opts.output)? {
            Place::Other(entries) => return Err(StoreError::NotResults { path: opts.output.clone(), entries }.into()),
            Place::Results if !opts.resume => return Err(StoreError::NotEmpty(opts.output.clone()).into()),
            _ => {}
        }
        self.taken.created_results = crate::safety::ensure_path(&opts.output)?;
        let (lock, took_over) = lock::Lock::take(&opts.output.join(".lock"), "results directory", &opts.output, me)?;
        self.taken.results_lock = Some(lock);
        self.notes.extend(took_over);
        Ok(())
    }

    /// The target and its control area, locked for this run (here, when this host
    /// sees it); the clients' data directories under it. With nodes and an unshared
    /// target each node's agent takes its own, when the nodes are prepared.
    fn take_target(&mut self, me: &lock::Holder) -> Result<(), RunError> {
        if !self.local_target() {
            return Ok(());
        }
        failpoint("run:take-target")?;
        let mut hold = target::TargetHold::take(&self.plan.study.target, me)?;
        self.notes.append(&mut hold.notes);
        self.taken.target = Some(hold);
        Ok(())
    }

    /// The run's private state and control directories, after reaping what dead runs
    /// left (here, and on the nodes).
    fn take_state(&mut self) -> Result<(), RunError> {
        failpoint("run:take-state")?;
        let state_base = crate::sys::state_base();
        crate::safety::ensure_path(&state_base)?;
        let control_base = self.plan.study.target.join(CONTROL_DIR);
        let local = self.local_target();
        let reaped = recovery::reap_dead_runs(&state_base, local.then_some(control_base.as_path()));
        self.notes.extend(reaped.notes);
        if !reaped.markers.is_empty() {
            for node in &self.pre.nodes {
                let _ = node.reap(&reaped.markers);
            }
        }
        let state_dir = state_base.join(&self.run_id);
        crate::safety::ensure_dir(&state_dir)?;
        self.taken.state_dir = Some(state_dir);
        if local {
            let control_dir = control_base.join(&self.run_id);
            crate::safety::ensure_dir(&control_dir)?;
            self.taken.control_dir = Some(control_dir);
        }
        Ok(())
    }

    /// Every scenario's backend — here, or on each of its nodes (whose own targets are
    /// taken first when unshared).
    fn prepare_backends(&mut self, cancel: &Arc<AtomicBool>) -> Result<RunContext, RunError> {
        let plan = self.plan;
        let target = &plan.study.target;
        let placement = plan.study.placement.as_ref();
        let ctx = RunContext {
            run_id: self.run_id.clone(),
            study: plan.study.name.clone(),
            state_dir: self.taken.state_dir.clone().expect("state taken first"),
            target: target.clone(),
            cancel: cancel.clone(),
            fio: plan.cells.iter().any(|c| c.workload.engine == crate::workload::Engine::Fio),
        };
        failpoint("run:prepare")?;
        if placement.is_some_and(|p| !p.shared_target()) {
            for node in &self.pre.nodes {
                node.take_target(target, plan.study.keep_files)
                    .map_err(|e| RunError::Node(format!("{e} (taking the target {} there)", target.display())))?;
            }
        }
        for sc in &plan.scenarios {
            let runtime_error = |source| RunError::Runtime { scenario: sc.name.clone(), source };
            // Without [hosts], and for backends that place clients themselves: here.
            if placement.is_none() || plan.scenario_nodes(&sc.name).is_empty() {
                let sctx = ScenarioContext::new(&ctx, sc.runtime.kind().name(), &sc.name);
                self.taken.backends.insert((sc.name.clone(), None), sc.runtime.prepare(&sctx).map_err(runtime_error)?);
                continue;
            }
            for i in plan.scenario_nodes(&sc.name) {
                let remote =
                    RemoteBackend::prepare(self.pre.nodes[i].clone(), &sc.name, sc.runtime.as_ref(), target, ctx.fio)
                        .map_err(runtime_error)?;
                self.taken.backends.insert((sc.name.clone(), Some(i)), Box::new(remote));
            }
        }
        Ok(ctx)
    }

    /// The store, with the study and the run's record written: the first bytes the run
    /// puts in the results directory.
    fn open_store(&mut self, opts: &RunOptions) -> Result<Store, RunError> {
        failpoint("run:open-store")?;
        let plan = self.plan;
        let store = Store::create(&opts.output, &plan.study.source, opts.resume)?;
        let records = records(plan, self.pre);
        let unprobed = |s: &crate::study::Scenario| RuntimeRecord {
            kind: s.runtime.kind().name().into(),
            name: s.runtime.name(),
            settings: s.runtime.settings(),
            ..RuntimeRecord::default()
        };
        let mut info = plan.study.run_info(
            |s| records.get(s.name.as_str()).cloned().unwrap_or_else(|| unprobed(s)),
            plan.scale,
            self.pre.warnings.iter().map(crate::runner::preflight::Warning::record).collect(),
        );
        info.target = self.local_target().then(|| crate::runner::preflight::target_facts(&plan.study.target)).flatten();
        info.filters = plan.filters.clone();
        info.placement = plan.study.placement.as_ref().and_then(|p| p.record()).map(|mut r| {
            let steps: serde_json::Map<String, serde_json::Value> = self
                .pre
                .nodes
                .iter()
                .filter_map(|n| Some((n.dest.clone(), serde_json::Value::String(n.facts.step.clone()?))))
                .collect();
            if let Some(obj) = r.as_object_mut()
                && !steps.is_empty()
            {
                obj.insert("agent_steps".into(), serde_json::Value::Object(steps));
            }
            r
        });
        store.write_run_info(&info)?;
        Ok(store)
    }
}

/// Each scenario's runtime as probed before the run.
fn records<'p>(plan: &'p Plan, pre: &Preflight) -> BTreeMap<&'p str, RuntimeRecord> {
    plan.scenarios.iter().map(|s| (s.name.as_str(), pre.probe(&s.name).record(s.runtime.as_ref()))).collect()
}

/// A place a test can make a step fail (`FAILPOINTS=run:prepare=return`, in builds with
/// the `failpoints` feature); nothing in other builds.
fn failpoint(name: &str) -> Result<(), RunError> {
    let _ = name;
    fail::fail_point!(name, |_| Err(RunError::Injected(name.to_string())));
    Ok(())
}

/// What a run's cells share: the plan, what was taken for it, and where they store.
struct Cells<'a> {
    plan: &'a Plan,
    pre: &'a Preflight,
    taken: &'a Taken,
    store: &'a Store,
    run_id: &'a str,
    cancel: &'a Arc<AtomicBool>,
    records: BTreeMap<&'a str, RuntimeRecord>,
    control_dir: PathBuf,
    drop_caches: bool,
}

/// The cells still to run, in plan order: each stored before the next starts.
fn run_cells(
    plan: &Plan,
    pre: &Preflight,
    opts: &RunOptions,
    cancel: &Arc<AtomicBool>,
    taken: &Taken,
    store: &Store,
    ctx: &RunContext,
) -> Result<(Vec<CellResult>, RunOutcome), RunError> {
    let stored = store.cells()?;
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
    let root = rustix::process::geteuid().is_root();
    let cells = Cells {
        plan,
        pre,
        taken,
        store,
        run_id: &ctx.run_id,
        cancel,
        records: records(plan, pre),
        control_dir: taken.control_dir.clone().unwrap_or_else(|| plan.study.target.join(CONTROL_DIR).join(&ctx.run_id)),
        drop_caches: plan.study.drop_caches && root,
    };
    let mut outcome = RunOutcome {
        ran: 0,
        skipped: results.len(),
        failed: 0,
        interrupted: false,
        cells: Vec::new(),
        others: Vec::new(),
        unreadable: stored.unreadable,
        notes: Vec::new(),
    };
    if plan.study.drop_caches && !root {
        outcome.notes.push("not root: the host page cache was not dropped between cells".to_string());
    }
    let bar = progress_bar(pending.len() as u64, opts.progress);
    for (index, cell) in pending {
        if cancel.load(Ordering::SeqCst) {
            outcome.interrupted = true;
            break;
        }
        bar.set_message(format!("{} {} c={}", cell.scenario, cell.pattern, cell.clients));
        let result = cells.run(index, cell)?;
        if cancel.load(Ordering::SeqCst) && result.status == CellStatus::Failed {
            // Interrupted mid-cell: nothing of it is stored, `--resume` runs it again.
            outcome.interrupted = true;
            break;
        }
        store.write_cell(&result)?;
        outcome.ran += 1;
        show_progress(&bar, &result, &mut outcome.failed);
        results.insert(index, result);
    }
    bar.finish_and_clear();
    outcome.others = previous.into_values().collect();
    Ok((results.into_values().collect(), outcome))
}

impl Cells<'_> {
    /// Runs the plan's cell `index`.
    fn run(&self, index: usize, cell: &crate::results::cell::Cell) -> Result<CellResult, RunError> {
        let scenario = self.plan.scenario(&cell.scenario);
        let placed = self.placed(cell);
        let mut runtime = self.records[cell.scenario.as_str()].clone();
        runtime.notes.extend(placed[0].backend.notes());
        runtime.accelerator = placed[0].backend.accelerator();
        let cx = CellRun {
            cell,
            label: &scenario.label,
            runtime,
            placed,
            target: &self.plan.study.target,
            data: self.taken.target.as_ref().map(|t| &t.data),
            control: cell_dir(&self.control_dir, index),
            logs: self.store.make_log_dir(&cell.id)?,
            name_prefix: format!("iostudy-{}-{index}", self.run_id),
            cgroup_name: format!("iostudy-{}/cell-{index}", self.run_id),
            drop_caches: self.drop_caches,
            places_itself: self.plan.places_itself(&cell.scenario),
            barrier_timeout: self.plan.study.barrier_timeout,
            cell_timeout: self.plan.study.cell_timeout,
            cancel: self.cancel,
        };
        // A node its scheduler took down fails the cell before anything is launched,
        // and names the cause of a node lost while it ran.
        let down = || {
            let placement = self.plan.study.placement.as_ref()?;
            let used: Vec<&str> = cx.placed.iter().filter_map(|c| Some(c.node?.dest.as_str())).collect();
            placement.down_nodes().into_iter().find(|(n, _)| used.contains(&n.as_str()))
        };
        if let Some((node, why)) = down() {
            return Ok(cx.refused(CellFailure::NodeDown { node, why }));
        }
        let mut result = cx.run();
        if result.failure_kind == Some(FailureKind::LostNode)
            && let Some((node, why)) = down()
            && let Some(failure) = result.failure.as_mut()
        {
            *failure = format!("node {node} is {why}; {failure}");
        }
        Ok(result)
    }

    /// Each client's backend and node; the nodes' clocks measured again, since they
    /// drift, just before their clients start.
    fn placed(&self, cell: &crate::results::cell::Cell) -> Vec<Placed<'_>> {
        let backend = |node: Option<usize>| self.taken.backends[&(cell.scenario.clone(), node)].as_ref();
        let placed: Vec<Placed> = match self.plan.placement(cell) {
            None => vec![Placed { backend: backend(None), node: None }; cell.clients as usize],
            Some(nodes) => {
                nodes.iter().map(|&i| Placed { backend: backend(Some(i)), node: Some(&self.pre.nodes[i]) }).collect()
            }
        };
        let mut measured: Vec<usize> = Vec::new();
        for n in placed.iter().filter_map(|p| p.node) {
            if !measured.contains(&n.index) {
                measured.push(n.index);
                let _ = n.measure_clock();
            }
        }
        placed
    }
}

/// A finished cell on the progress bar: a failure said as it happens (on stderr without
/// a bar), else the cell's bandwidth.
fn show_progress(bar: &ProgressBar, result: &CellResult, failed: &mut usize) {
    let cell = &result.cell;
    if result.status == CellStatus::Failed {
        *failed += 1;
        let why = crate::text::printable(result.failure.as_deref().unwrap_or("?")).into_owned();
        let line = format!("cell {} failed: {why}", cell.id);
        if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
    } else if let Some(f) = cell_figures(&result.clients) {
        let bw = bandwidth(f.window_bw_bytes_per_s);
        bar.set_message(format!("last: {} {} c={} {bw}", cell.scenario, cell.pattern, cell.clients));
    }
    bar.inc(1);
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
