//! What the host says about a plan, before anything runs: every check `iostudy run`
//! must pass before its first cell, and which `iostudy plan` shows — so a study that
//! cannot run is refused by both, the same way, with the fix.
//!
//! Checked: each scenario's runtime (probed); the target (a directory the user may
//! write safely — see [`crate::safety`] — on a real filesystem, writable, proved by
//! creating and removing a probe file; O_DIRECT and its alignment when a cell asks for
//! it); what already lies where data files go (a link or another user's file is
//! refused, a file of the right size counts as laid out); free space with a margin for
//! metadata; the host's limits on tasks (pids cgroup, threads-max, pid_max), memory for
//! clients and guests, and open files; and the results directory. Separate from
//! planning, which is pure, because every check here does I/O.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::control::{CONTROL_DIR, DATA_DIR};
use crate::engine::layout::{MAX_DIRECT_ALIGN, SPARE_FDS, direct_alignment, space_margin};
use crate::hosts::Placement;
use crate::hosts::node::Node;
use crate::runtime::Probe;
use crate::safety::check_user_dir;
use crate::study::plan::Plan;
use crate::workload::human_bytes;

/// Things worth knowing before running, each with advice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// Buffered reads over a working set that fits in RAM measure the page cache.
    FitsInPageCache { working_set_bytes: u64, ram_bytes: u64 },
    /// Not root: the host page cache cannot be dropped between cells.
    CannotDropCaches,
    /// A node's clock offset is known less precisely than 1 % of a cell's runtime.
    ClockUncertain { node: String, uncertainty_ns: u64, runtime_ns: u64 },
    /// A cell's clients cannot all start within a small part of its runtime: the
    /// machine has too few CPUs to wake them at once (the most crowded cell).
    ShortForClients { cell: String, clients: u32, cpus: u32, spread_ns: u64, runtime_ns: u64 },
}

/// CPU time to wake one client at go, measured here: 1,024 clients over 8 nodes of
/// one 2-core machine started over ~240 ms (`scripts/bench-scale`).
const WAKE_NS_PER_CLIENT: u64 = 500_000;

/// The share of a cell's runtime its clients' start may take before `plan` warns.
const MAX_SPREAD_SHARE: f64 = 0.05;

impl Warning {
    /// As `run.json` keeps it: kind and text.
    pub fn record(&self) -> crate::results::store::PlanWarning {
        let kind = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
            .unwrap_or_default();
        crate::results::store::PlanWarning::Kinded { kind, text: self.to_string() }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::FitsInPageCache { working_set_bytes, ram_bytes } => write!(
                f,
                "working set {} fits in page cache ({} RAM): buffered reads measure memory, not storage; raise size or set direct = true",
                human_bytes(*working_set_bytes),
                human_bytes(*ram_bytes)
            ),
            Warning::CannotDropCaches => f.write_str(
                "not running as root: the host page cache is not dropped between cells, so earlier cells warm later ones; run as root",
            ),
            Warning::ClockUncertain { node, uncertainty_ns, runtime_ns } => write!(
                f,
                "node {node}'s clock is known to ±{:.2} ms, more than 1 % of a {:.1} s cell: clients may not start together; lengthen runtime or reach the node over a faster network",
                *uncertainty_ns as f64 / 1e6,
                *runtime_ns as f64 / 1e9
            ),
            Warning::ShortForClients { cell, clients, cpus, spread_ns, runtime_ns } => write!(
                f,
                "cell {cell}: {clients} clients on a machine of {cpus} CPU(s) take about {:.0} ms to all start (~{:.1} ms of CPU each), more than {:.0} % of its {:.1} s: lengthen runtime to at least {:.0} s, or spread the clients over more machines",
                *spread_ns as f64 / 1e6,
                WAKE_NS_PER_CLIENT as f64 / 1e6,
                MAX_SPREAD_SHARE * 100.0,
                *runtime_ns as f64 / 1e9,
                (*spread_ns as f64 / MAX_SPREAD_SHARE / 1e9).ceil()
            ),
        }
    }
}

/// The host's answers about a plan.
pub struct Preflight {
    /// The study's nodes, connected, in `[hosts]` order (empty without hosts, or when a
    /// node could not be reached: then `problems` says why). Dropped before `scratch`.
    pub nodes: Vec<Arc<Node>>,
    /// What the placement holds for the run (an allocation): given back after the nodes.
    hold: Option<Box<dyn std::any::Any + Send + Sync>>,
    scratch: Option<Scratch>,
    /// Each planned scenario's probe, in plan order.
    pub probes: Vec<(String, Probe)>,
    pub free_bytes: Option<u64>,
    /// Bytes still to lay out (what is already there in the right size is reused).
    pub needed_bytes: u64,
    pub warnings: Vec<Warning>,
    /// What stops the study, each with its fix (runtimes aside).
    pub problems: Vec<String>,
    /// What connecting to the nodes noted (a dead run's job cancelled).
    pub notes: Vec<String>,
}

/// Where the results go, for a run.
#[derive(Debug, Clone, Copy)]
pub struct Results<'a> {
    pub dir: &'a Path,
    pub resume: bool,
}

/// The private directory of the nodes' ssh sockets and logs, removed at the end.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Preflight {
    /// Probes every runtime of `plan` and checks the host (and `results`, for a run);
    /// with `[hosts]`, connects to every node and checks each. Call from the main
    /// thread: the nodes' ssh connections end with the thread that opened them.
    pub fn gather(plan: &Plan, results: Option<Results<'_>>) -> Preflight {
        let probes = plan.scenarios.iter().map(|s| (s.name.clone(), s.runtime.probe())).collect();
        let target = &plan.study.target;
        let mut pre = Preflight {
            nodes: Vec::new(),
            hold: None,
            scratch: None,
            probes,
            free_bytes: crate::sys::free_space(target),
            needed_bytes: 0,
            warnings: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
        };
        if let Some(placement) = &plan.study.placement {
            pre.problems.extend(placement.check());
            if pre.problems.is_empty() && (results.is_some() || placement.plan_connects()) {
                pre.check_nodes(plan, placement.as_ref());
            } else if results.is_none() {
                // The runtimes are probed where they run, when the run connects.
                for (_, p) in &mut pre.probes {
                    if let Some(problem) = p.problem.take() {
                        p.notes.push(format!(
                            "not usable on this host ({problem}); probed on the nodes when the run starts"
                        ));
                    }
                }
            }
        }
        let ram = crate::sys::meminfo("MemTotal:");
        let reads =
            plan.cells.iter().any(|c| !c.workload.direct && c.workload.rw.read_percent(c.workload.rwmixread) > 0);
        if reads && ram > 0 && plan.footprint_bytes <= ram {
            pre.warnings.push(Warning::FitsInPageCache { working_set_bytes: plan.footprint_bytes, ram_bytes: ram });
        }
        if plan.study.drop_caches && !rustix::process::geteuid().is_root() {
            pre.warnings.push(Warning::CannotDropCaches);
        }
        if plan.cells.iter().any(|c| c.attributed()) {
            if let Some(why) = crate::attribution::unavailable() {
                pre.problems.push(format!("attribution cannot run here: {why}"));
            }
            if plan.study.placement.is_some() {
                pre.problems.push(
                    "attribution traces this host's processes: it needs every client on this host (no [hosts], [slurm] or Kubernetes placement)"
                        .into(),
                );
            }
        }
        let local_target = plan.study.placement.as_ref().is_none_or(|p| p.shared_target());
        if local_target && pre.check_target(plan) {
            pre.check_data_files(plan);
        }
        pre.check_limits(plan);
        pre.check_start_spread(plan);
        if plan.cells.iter().any(|c| c.workload.engine == crate::workload::Engine::Fio)
            && plan.study.placement.is_none()
        {
            // Clients run this host's fio: it must be here and run.
            match crate::fio::deps::fio_binary() {
                None => pre.problems.push(
                    "engine = \"fio\" runs the host's fio in every client, and there is none: apt-get install fio"
                        .into(),
                ),
                Some(fio) => {
                    if let Err(e) = crate::fio::deps::version(&fio) {
                        pre.problems.push(format!("engine = \"fio\": {e}"));
                    }
                }
            }
        }
        if let Some(r) = results {
            pre.check_results(plan, r);
        }
        pre
    }

    /// Warns of the cell whose clients take the largest share of its runtime to start:
    /// each machine wakes its clients at go on its own CPUs (nodes sharing a boot id
    /// are one machine; without nodes, this host). Cells that run one pass, or whose
    /// clients a scheduler places (unknown machines), are not judged.
    fn check_start_spread(&mut self, plan: &Plan) {
        let machines: Vec<(u32, usize)> = if self.nodes.is_empty() {
            if plan.study.placement.is_some() {
                return;
            }
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            vec![(cpus, 1)]
        } else {
            // (CPUs, nodes) per machine.
            let mut by: Vec<(Option<String>, u32, usize)> = Vec::new();
            for n in &self.nodes {
                match by.iter_mut().find(|(id, _, _)| id.is_some() && *id == n.facts.boot_id) {
                    Some(m) => m.2 += 1,
                    None => by.push((n.facts.boot_id.clone(), n.facts.cpus.max(1), 1)),
                }
            }
            by.into_iter().map(|(_, cpus, nodes)| (cpus, nodes)).collect()
        };
        let nodes: usize = machines.iter().map(|m| m.1).sum();
        let mut worst: Option<(f64, Warning)> = None;
        for c in &plan.cells {
            let Some(runtime) = c.workload.runtime else { continue };
            let runtime_ns = (c.workload.ramp_time.0 + runtime.0).as_nanos() as u64;
            for &(cpus, share) in &machines {
                let clients = (u64::from(c.clients) * share as u64).div_ceil(nodes as u64) as u32;
                let spread_ns = u64::from(clients) * WAKE_NS_PER_CLIENT / u64::from(cpus);
                let part = spread_ns as f64 / runtime_ns.max(1) as f64;
                if part > MAX_SPREAD_SHARE && worst.as_ref().is_none_or(|(w, _)| part > *w) {
                    let cell = c.id.clone();
                    worst = Some((part, Warning::ShortForClients { cell, clients, cpus, spread_ns, runtime_ns }));
                }
            }
        }
        self.warnings.extend(worst.map(|(_, w)| w));
    }

    /// Connects to every node; probes each scenario's runtime where it runs; checks the
    /// target on each node (its own) or that every node sees this host's (shared).
    fn check_nodes(&mut self, plan: &Plan, placement: &dyn Placement) {
        let dir = crate::sys::state_base().join(format!("{}-nodes", std::process::id()));
        if let Err(e) = crate::safety::ensure_path(&dir) {
            self.problems.push(e.to_string());
            return;
        }
        self.scratch = Some(Scratch(dir.clone()));
        let run = crate::sys::run_id();
        let target = &plan.study.target;
        match placement.connect(&dir, &run, target) {
            Ok(c) => {
                self.nodes = c.nodes.into_iter().map(Arc::new).collect();
                self.notes.extend(c.notes);
                self.hold = c.hold;
            }
            Err(e) => {
                self.problems.push(format!("{e} (check the node and the placement's table)"));
                return;
            }
        }
        // Probes where each scenario runs; the first node's stands for the scenario.
        for (s, (name, probe)) in plan.scenarios.iter().zip(self.probes.iter_mut()) {
            let mut first = None;
            for &i in &plan.scenario_nodes(name) {
                let node = &self.nodes[i];
                let p = node
                    .probe(s.runtime.as_ref())
                    .unwrap_or_else(|e| Probe::of(s.runtime.as_ref()).fail(e.to_string()));
                if let Some(problem) = &p.problem {
                    self.problems.push(format!("scenario `{name}` cannot run on node {}: {problem}", node.dest));
                }
                first.get_or_insert(p);
            }
            if let Some(mut p) = first {
                // The node's problem is reported above, by node.
                p.problem = None;
                *probe = p;
            }
        }
        if placement.shared_target() {
            self.check_shared_target(target);
        } else {
            for n in &self.nodes {
                if let Some(p) = &n.facts.target_problem {
                    self.problems.push(format!("node {}: study.target: {p}", n.dest));
                }
            }
        }
        let shortest = plan.cells.iter().filter_map(|c| c.workload.runtime).map(|r| r.0).min();
        for n in &self.nodes {
            let c = n.clock();
            if let Some(r) = shortest
                && u128::from(c.uncertainty_ns) * 100 > r.as_nanos()
            {
                self.warnings.push(Warning::ClockUncertain {
                    node: n.dest.clone(),
                    uncertainty_ns: c.uncertainty_ns,
                    runtime_ns: r.as_nanos() as u64,
                });
            }
        }
    }

    /// Every node sees what this host writes where the target is.
    fn check_shared_target(&mut self, target: &Path) {
        let place = if target.exists() { target.to_path_buf() } else { crate::sys::nearest_existing(target) };
        let marker = place.join(format!(".iostudy-shared-{}", std::process::id()));
        let token = format!("{} {}", std::process::id(), crate::sys::wall_ns());
        if crate::safety::write_atomic(&marker, token.as_bytes()).is_err() {
            return; // the target's own checks say why
        }
        for n in &self.nodes {
            match n.marker(&marker, None) {
                Ok(Some(t)) if t == token => {}
                Ok(_) => self.problems.push(format!(
                    "node {} does not see {} as this host does, but the study says its target is shared: mount the shared filesystem there at the same path, or set shared_target = false",
                    n.dest,
                    place.display()
                )),
                Err(e) => self.problems.push(e.to_string()),
            }
        }
        let _ = fs::remove_file(&marker);
    }

    /// What the plan's text shows of these answers.
    pub fn view(&self) -> crate::report::plan::HostView {
        crate::report::plan::HostView {
            nodes: self
                .nodes
                .iter()
                .map(|n| crate::report::plan::NodeView {
                    dest: n.dest.clone(),
                    facts: n.facts.clone(),
                    description: n.describe(),
                })
                .collect(),
            probes: self.probes.clone(),
            free_bytes: self.free_bytes,
            needed_bytes: self.needed_bytes,
            warnings: self.warnings.iter().map(ToString::to_string).collect(),
            blockers: self.blockers(),
        }
    }

    /// The probe of a planned scenario.
    pub fn probe(&self, scenario: &str) -> &Probe {
        &self.probes.iter().find(|(n, _)| n == scenario).expect("every planned scenario is probed").1
    }

    /// Problems that stop the study before its first cell.
    pub fn blockers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .probes
            .iter()
            .filter_map(|(name, p)| {
                p.problem
                    .as_ref()
                    .map(|p| format!("scenario `{name}` cannot run here: {p} (or drop it with --scenario filters)"))
            })
            .collect();
        v.extend(self.problems.iter().cloned());
        v
    }

    /// The target: safe, a real filesystem, writable, O_DIRECT as the cells need it.
    /// Returns whether what lies below it may be inspected.
    fn check_target(&mut self, plan: &Plan) -> bool {
        let target = &plan.study.target;
        let exists = match check_user_dir(target) {
            Ok(e) => e,
            Err(e) => {
                self.problems.push(format!("study.target: {e}"));
                return false;
            }
        };
        // Where a probe can go: the target, or the nearest directory that exists.
        let place = if exists { target.clone() } else { crate::sys::nearest_existing(target) };
        if let Some(fs) = pseudo_filesystem(&place) {
            self.problems.push(format!(
                "study.target {} is on {fs}, a kernel pseudo-filesystem that holds no data: choose a directory on a real filesystem",
                target.display()
            ));
            return false;
        }
        let probe = place.join(format!(".iostudy-probe-{}", std::process::id()));
        match fs::OpenOptions::new().write(true).create_new(true).custom_flags_nofollow().open(&probe) {
            Ok(_) => {
                let _ = fs::remove_file(&probe);
            }
            Err(e) => {
                let why = if e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error()) {
                    "is on a read-only filesystem".to_string()
                } else {
                    format!("is not writable ({e})")
                };
                let what = if exists { target.clone() } else { place.clone() };
                self.problems.push(format!(
                    "study.target {}: {} {why} (a probe file could not be created there): choose a writable target",
                    target.display(),
                    what.display()
                ));
                return false;
            }
        }
        let direct_bs: Vec<u64> = {
            let mut v: Vec<u64> =
                plan.cells.iter().filter(|c| c.workload.direct).map(|c| c.workload.bs.get()).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        if !direct_bs.is_empty() {
            let probe = place.join(format!(".iostudy-direct-probe-{}", std::process::id()));
            match direct_alignment(&probe, target) {
                Ok(align) => {
                    for bs in direct_bs {
                        if bs % align != 0 || align > MAX_DIRECT_ALIGN {
                            self.problems.push(format!(
                                "direct = true: O_DIRECT on {} needs I/O aligned to {align} bytes, but bs is {bs}: use a multiple of {align} or direct = false",
                                target.display()
                            ));
                        }
                    }
                }
                Err(e) => self.problems.push(e.to_string()),
            }
        }
        true
    }

    /// What already lies where the data files go, and the space still needed.
    fn check_data_files(&mut self, plan: &Plan) {
        let clients = plan.cells.iter().map(|c| c.clients).max().unwrap_or(0);
        let jobs = plan.cells.iter().map(|c| c.workload.numjobs).max().unwrap_or(0);
        let size = plan.cells.iter().map(|c| c.workload.size.get()).max().unwrap_or(0);
        let prefix = plan.cells.first().map_or("iostudy".into(), |c| c.workload.filename_prefix.clone());
        let data = plan.study.target.join(DATA_DIR);
        let mut needed = 0u64;
        let mut dirs: Vec<PathBuf> = vec![plan.study.target.join(CONTROL_DIR), data.clone()];
        dirs.extend((0..clients).map(|k| data.join(format!("client-{k}"))));
        for d in &dirs {
            if d.symlink_metadata().is_ok()
                && let Err(e) = check_user_dir(d)
            {
                self.problems.push(e.to_string());
                return;
            }
        }
        for k in 0..clients {
            for t in 0..jobs {
                let path = data.join(format!("client-{k}")).join(format!("{prefix}.{t}.dat"));
                // A data file is a regular file of ours with one name, or it is refused.
                match crate::safety::check_replaceable(&path) {
                    Err(e) => {
                        self.problems.push(format!("data file: {e}"));
                        return;
                    }
                    Ok(true) => {
                        needed =
                            needed.saturating_add(size.saturating_sub(path.symlink_metadata().map_or(0, |m| m.len())));
                    }
                    Ok(false) => needed = needed.saturating_add(size),
                }
            }
        }
        self.needed_bytes = needed;
        if let Some(free) = self.free_bytes
            && needed > 0
            && needed.saturating_add(space_margin(needed)) > free
        {
            self.problems.push(format!(
                "the data files need {} more on {} and {} is free (iostudy keeps {} free for the filesystem's metadata): lower size, numjobs or clients, or free space",
                human_bytes(needed),
                plan.study.target.display(),
                human_bytes(free),
                human_bytes(space_margin(needed))
            ));
        }
    }

    /// Tasks, memory and open files the biggest cell needs, against the host's limits.
    fn check_limits(&mut self, plan: &Plan) {
        let tasks_free = tasks_headroom();
        let memory = crate::sys::meminfo("MemAvailable:");
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        let mut worst_tasks: Option<(u64, &str)> = None;
        let mut worst_memory: Option<(u64, &str)> = None;
        let mut jobs = 0u32;
        let mut clients = 0u32;
        for c in &plan.cells {
            let cost = plan.scenario(&c.scenario).runtime.client_cost(&c.workload);
            let tasks = cost.tasks.saturating_mul(u64::from(c.clients));
            let mem = cost.memory_bytes.saturating_mul(u64::from(c.clients));
            if worst_tasks.is_none_or(|(t, _)| tasks > t) {
                worst_tasks = Some((tasks, &c.id));
            }
            if worst_memory.is_none_or(|(m, _)| mem > m) {
                worst_memory = Some((mem, &c.id));
            }
            jobs = jobs.max(c.workload.numjobs);
            clients = clients.max(c.clients);
        }
        if let (Some((tasks, cell)), Some((free, limit))) = (worst_tasks, tasks_free.as_ref())
            && tasks > *free
        {
            self.problems.push(format!(
                "cell {cell} needs about {tasks} processes and threads, and {limit} leaves room for {free}: lower clients or numjobs, or raise the limit"
            ));
        }
        if let Some((mem, cell)) = worst_memory
            && memory > 0
            && mem > memory
        {
            self.problems.push(format!(
                "cell {cell} needs about {} of memory for its clients (and guests), and {} is available: lower clients, numjobs or guest memory",
                human_bytes(mem),
                human_bytes(memory)
            ));
        }
        if let Some(hard) = nofile {
            let per_client = u64::from(jobs) + SPARE_FDS;
            let controller = u64::from(clients) * 4 + SPARE_FDS;
            if per_client > hard {
                self.problems.push(format!(
                    "numjobs {jobs} needs {per_client} open files per client, and this host allows {hard} (hard RLIMIT_NOFILE): lower numjobs or raise the limit"
                ));
            } else if controller > hard {
                self.problems.push(format!(
                    "{clients} clients need {controller} open files in the controller, and this host allows {hard} (hard RLIMIT_NOFILE): lower clients or raise the limit"
                ));
            }
        }
    }

    /// The results directory: safe to write under, new, empty or iostudy's own (and
    /// then only with `--resume`), and not inside the target's control area, which
    /// runs clean up.
    fn check_results(&mut self, plan: &Plan, r: Results<'_>) {
        let control = plan.study.target.join(CONTROL_DIR);
        if r.dir.starts_with(&control) {
            self.problems.push(format!(
                "-o {}: inside the target's control area {}, which iostudy cleans up after every run: choose a directory outside it",
                r.dir.display(),
                control.display()
            ));
            return;
        }
        if let Err(e) = check_user_dir(r.dir) {
            self.problems.push(format!("-o {}: {e}", r.dir.display()));
            return;
        }
        use crate::results::store::{Place, StoreError};
        match Place::of(r.dir) {
            Err(e) => self.problems.push(e.to_string()),
            Ok(Place::Other(entries)) => {
                self.problems.push(StoreError::NotResults { path: r.dir.to_path_buf(), entries }.to_string())
            }
            Ok(Place::Results) if !r.resume => {
                self.problems.push(StoreError::NotEmpty(r.dir.to_path_buf()).to_string())
            }
            Ok(Place::Results) => self.check_resume(plan, r.dir),
            Ok(_) => {}
        }
    }

    /// A `--resume` continues the run it names: the same study file, scale and filters
    /// (cells of another scale would be mixed in one report).
    fn check_resume(&mut self, plan: &Plan, dir: &Path) {
        let store = crate::results::store::Store::open(dir);
        if let Err(e) = store.check_study(&plan.study.source) {
            self.problems.push(e.to_string());
            return;
        }
        let Ok(info) = store.run_info() else { return };
        let scale = |s: Option<f64>| s.map_or("no --scale".to_string(), |f| format!("--scale {f}"));
        if info.scale != plan.scale {
            self.problems.push(format!(
                "{} was run with {}, and this resume asks {}: resume with the same scale, or choose another -o",
                dir.display(),
                scale(info.scale),
                scale(plan.scale)
            ));
        }
        if info.filters != plan.filters {
            self.problems.push(format!(
                "{} was run with {}, and this resume asks {}: resume with the same filters, or choose another -o",
                dir.display(),
                info.filters.describe(),
                plan.filters.describe()
            ));
        }
    }
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
    }
}

/// What the filesystem and device under `path` (or its nearest existing ancestor) are.
pub fn target_facts(path: &Path) -> Option<crate::results::store::TargetFacts> {
    const KNOWN: &[(i64, &str)] = &[
        (0x0102_1994, "tmpfs"),
        (0x8584_58f6, "ramfs"),
        (0xef53, "ext4"),
        (0x5846_5342, "xfs"),
        (0x9123_683e, "btrfs"),
        (0x2fc1_2fc1, "zfs"),
        (0x6969, "nfs"),
        (0x6573_5546, "fuse"),
        (0x794c_7630, "overlay"),
        (0x0102_1997, "9p"),
        (0x00c3_6400, "ceph"),
        (0x1983_0326, "beegfs"),
        (0x0bd0_0bd0, "lustre"),
        (0x4750_4653, "gpfs"),
        (0xff53_4d42, "cifs"),
    ];
    let place = crate::sys::nearest_existing(path);
    let t = rustix::fs::statfs(&place).ok()?.f_type;
    let fs = KNOWN.iter().find(|(m, _)| *m == t).map_or_else(|| format!("0x{t:x}"), |(_, n)| n.to_string());
    let dev = fs::metadata(&place).ok()?.dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let rotational = [sys.join("queue/rotational"), sys.join("../queue/rotational")]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|v| v.trim() == "1");
    Some(crate::results::store::TargetFacts { fs, rotational })
}

/// The name of the kernel pseudo-filesystem `path` is on, if it is on one.
fn pseudo_filesystem(path: &Path) -> Option<&'static str> {
    const PSEUDO: &[(i64, &str)] = &[
        (0x9fa0, "procfs"),
        (0x6265_6572, "sysfs"),
        (0x1cd1, "devpts"),
        (0x0027_e0eb, "cgroup"),
        (0x6367_7270, "cgroup2"),
        (0x6462_6720, "debugfs"),
        (0x7472_6163, "tracefs"),
        (0x7365_6373, "securityfs"),
        (0xcafe_4a11, "bpffs"),
        (0x6265_6570, "configfs"),
        (0x6165_676c, "pstore"),
        (0xde5e_81e4, "efivarfs"),
        (0x1980_0202, "mqueue"),
        (0x6e73_6673, "nsfs"),
        (0xf97c_ff8c, "selinuxfs"),
    ];
    let t = rustix::fs::statfs(path).ok()?.f_type;
    PSEUDO.iter().find(|(magic, _)| *magic == t).map(|(_, name)| *name)
}

/// How many more tasks this process may start, and the tightest limit, if one is known:
/// the pids cgroup (each level up to the root), `kernel.threads-max`, `kernel.pid_max`,
/// and RLIMIT_NPROC for a user without privileges.
fn tasks_headroom() -> Option<(u64, String)> {
    let mut best: Option<(u64, String)> = None;
    let mut consider = |free: u64, what: String| {
        if best.as_ref().is_none_or(|(b, _)| free < *b) {
            best = Some((free, what));
        }
    };
    let read_u64 = |p: &Path| fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    for (file, name) in
        [("/proc/sys/kernel/threads-max", "kernel.threads-max"), ("/proc/sys/kernel/pid_max", "kernel.pid_max")]
    {
        if let Some(max) = read_u64(Path::new(file)) {
            let used = fs::read_dir("/proc").map(|d| d.count() as u64).unwrap_or(0);
            consider(max.saturating_sub(used), format!("{name} = {max}"));
        }
    }
    for dir in pids_cgroups() {
        if let (Some(max), Some(cur)) = (read_u64(&dir.join("pids.max")), read_u64(&dir.join("pids.current"))) {
            consider(max.saturating_sub(cur), format!("the pids cgroup {} (pids.max = {max})", dir.display()));
        }
    }
    if !rustix::process::geteuid().is_root()
        && let Some(max) = rustix::process::getrlimit(rustix::process::Resource::Nproc).current
    {
        consider(max, format!("RLIMIT_NPROC = {max} (ulimit -u)"));
    }
    best
}

/// This process's pids cgroup and its ancestors (cgroup v2 or the v1 `pids` hierarchy).
fn pids_cgroups() -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/cgroup") else { return Vec::new() };
    let mut v = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let base = if controllers.split(',').any(|c| c == "pids") {
            PathBuf::from("/sys/fs/cgroup/pids")
        } else if controllers.is_empty() && Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            continue;
        };
        let mut dir = base.join(path.trim_start_matches('/'));
        loop {
            if dir.join("pids.max").exists() {
                v.push(dir.clone());
            }
            if dir == base || !dir.pop() {
                break;
            }
        }
    }
    v
}
