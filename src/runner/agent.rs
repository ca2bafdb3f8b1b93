//! `iostudy agent`: the node side of a run — what the controller's requests do on a
//! node, served over its session by [`crate::hosts::agent::serve`].
//!
//! It runs the scenarios' backends on the node — the same code as on the controller's
//! host — and keeps their clients: launch, poll, kill, tear down, logs. For a target
//! that is each node's own disk it also takes that target ([`TargetHold`]: safe
//! directories, the lock) and relays the control channel through a shared directory on
//! it. Its state lives in `STATE/<run id>/` like a run's, so a later agent reaps it if
//! this one is killed outright. When its session ends it kills every client, tears
//! everything down and removes what it created: nothing of a run outlives it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::control::{Channel, Go, Job, SharedDir};
use crate::hosts::agent::{CpuReading, NodeSide, Refused, Status, is_bin_dir, own_bin_dir};
use crate::hosts::protocol::{Facts, LaunchSpec, Prepared};
use crate::results::{ClientResult, HostFacts};
use crate::runner::lock::Holder;
use crate::runner::recovery;
use crate::runner::target::TargetHold;
use crate::runtime::cgroup::CellCgroup;
use crate::runtime::{Backend, CellShape, Client, Exit, Launch, Probe, RunContext, ScenarioContext, spec_from};

/// A node's part of one run.
struct Agent {
    run: String,
    state: PathBuf,
    backends: HashMap<String, Box<dyn Backend>>,
    clients: HashMap<String, Box<dyn Client>>,
    /// Logs of clients already torn down.
    logs: HashMap<String, PathBuf>,
    /// The node's own target, and whether to keep the data files.
    target: Option<(TargetHold, bool)>,
    channels: HashMap<PathBuf, SharedDir>,
    /// The run's control directories its cells' channels were created in.
    run_dirs: Vec<PathBuf>,
    /// Each cell's cgroup on the node, by cell.
    cgroups: HashMap<String, Arc<CellCgroup>>,
    cancel: Arc<AtomicBool>,
}

/// Serves the controller on this session until it ends; then removes everything.
pub fn serve() -> anyhow::Result<()> {
    let state_base = crate::sys::state_base();
    crate::safety::ensure_path(&state_base)?;
    let state = state_base.join(crate::sys::run_id());
    crate::safety::ensure_dir(&state)?;
    let _ = recovery::reap_dead_runs(&state_base, None);
    reap_dead_binaries(&state_base);
    let mut agent = Agent {
        run: String::new(),
        state,
        backends: HashMap::new(),
        clients: HashMap::new(),
        logs: HashMap::new(),
        target: None,
        channels: HashMap::new(),
        run_dirs: Vec::new(),
        cgroups: HashMap::new(),
        cancel: Arc::new(AtomicBool::new(false)),
    };
    crate::hosts::agent::serve(&mut agent);
    Ok(())
}

impl Agent {
    fn channel(&self, dir: &Path) -> Result<&SharedDir, Refused> {
        self.channels.get(dir).ok_or_else(|| Refused(format!("no cell at {}", dir.display())))
    }
}

impl NodeSide for Agent {
    fn hello(&mut self, run: &str) {
        self.run = run.to_string();
    }

    fn facts(&mut self, target: &Path) -> Facts {
        let h = HostFacts::current();
        Facts {
            hostname: h.hostname,
            kernel: h.kernel,
            cpus: h.cpus,
            clock_source: h.clock_source,
            free_bytes: crate::sys::free_space(target),
            target_problem: crate::safety::check_user_dir(target).err().map(|e| e.to_string()),
            pid: std::process::id(),
            boot_id: crate::sys::boot_id(),
            step: match (std::env::var("SLURM_JOB_ID"), std::env::var("SLURM_STEP_ID")) {
                (Ok(job), Ok(step)) => Some(format!("{job}.{step}")),
                _ => None,
            },
        }
    }

    fn probe(&mut self, kind: &str, settings: &serde_json::Value) -> Result<Probe, Refused> {
        Ok(spec_from(kind, settings).map_err(Refused::new)?.probe())
    }

    fn reap(&mut self, markers: &[String]) {
        crate::sys::kill_processes_mentioning(markers);
    }

    fn take_target(&mut self, path: &Path, keep_files: bool) -> Result<(), Refused> {
        if self.target.is_some() {
            return Ok(());
        }
        let me = Holder::me(Path::new(&format!("the run {} of another host", self.run)));
        let hold = TargetHold::take(path, &me).map_err(Refused::new)?;
        recovery::reap_dead_runs(&crate::sys::state_base(), Some(&hold.control()));
        self.target = Some((hold, keep_files));
        Ok(())
    }

    fn prepare(
        &mut self,
        scenario: &str,
        kind: &str,
        settings: &serde_json::Value,
        target: &Path,
        fio: bool,
    ) -> Result<Prepared, Refused> {
        let spec = spec_from(kind, settings).map_err(Refused::new)?;
        let run = RunContext {
            run_id: self.run.clone(),
            // Only Kubernetes labels use it, and those scenarios have no nodes.
            study: String::new(),
            state_dir: self.state.clone(),
            target: target.to_path_buf(),
            cancel: self.cancel.clone(),
            fio,
        };
        let backend = spec.prepare(&ScenarioContext::new(&run, kind, scenario)).map_err(Refused::new)?;
        let probe = target.join("x");
        let seen = backend.client_path(target, &probe);
        let timing = backend.timing(1);
        let prepared = Prepared {
            notes: backend.notes(),
            accelerator: backend.accelerator(),
            mount: (seen != probe).then(|| seen.parent().map(Path::to_path_buf).unwrap_or_default()),
            drops_guest_caches: backend.drops_guest_caches(),
            lead_ms: timing.lead.as_millis() as u64,
            poll_ms: timing.poll.as_millis() as u64,
        };
        self.backends.insert(scenario.to_string(), backend);
        Ok(prepared)
    }

    fn launch(&mut self, scenario: &str, spec: LaunchSpec) -> Result<(), Refused> {
        let backend =
            self.backends.get(scenario).ok_or_else(|| Refused(format!("scenario `{scenario}` is not prepared")))?;
        let logs = self.state.join("logs");
        crate::safety::ensure_dir(&logs).map_err(Refused::new)?;
        let log_dir = logs.join(crate::results::cell::escape(&spec.cell));
        crate::safety::ensure_dir(&log_dir).map_err(Refused::new)?;
        let state = self.state.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let cgroup = match self.cgroups.get(&spec.cell) {
            Some(c) => Some(c.clone()),
            None => CellCgroup::create(&format!("iostudy-{state}/{}", spec.cell)).map(Arc::new).inspect(|c| {
                self.cgroups.insert(spec.cell.clone(), c.clone());
            }),
        };
        let launch = Launch {
            id: spec.id.clone(),
            client: spec.client,
            job: spec.job,
            log: log_dir.join(format!("client-{}.log", spec.client)),
            log_dir,
            open_files: spec.open_files,
            cgroup,
            cell: CellShape {
                id: spec.cell.clone(),
                clients: spec.clients,
                deadline: spec.deadline.0,
                attribute: false,
            },
        };
        let client = backend.launch(&launch).map_err(Refused::new)?;
        self.clients.insert(spec.id, client);
        Ok(())
    }

    fn exits(&mut self) -> Vec<(String, Option<String>)> {
        let exited = self.clients.iter_mut().filter_map(|(id, c)| c.poll().map(|e| (id.clone(), e)));
        exited
            .map(|(id, e)| match e {
                Exit::Success => (id, None),
                Exit::Failed(why) | Exit::Lost(why) => (id, Some(why)),
            })
            .collect()
    }

    fn kill(&mut self, id: &str) {
        if let Some(c) = self.clients.get_mut(id) {
            c.kill();
        }
    }

    fn teardown(&mut self, id: &str) {
        if let Some(mut c) = self.clients.remove(id) {
            c.teardown();
            self.logs.insert(id.to_string(), c.log().to_path_buf());
        }
    }

    fn log_tail(&mut self, id: &str, lines: usize) -> String {
        match self.clients.get(id) {
            Some(c) => c.log_tail(lines),
            None => self.logs.get(id).map(|p| crate::runtime::log_tail(p, lines)).unwrap_or_default(),
        }
    }

    fn log(&mut self, id: &str) -> String {
        let path = self.clients.get(id).map(|c| c.log().to_path_buf()).or_else(|| self.logs.get(id).cloned());
        path.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default()
    }

    fn cpu_sample(&mut self, cell: &str) -> CpuReading {
        let cg = self.cgroups.get(cell);
        CpuReading {
            sample: cg.and_then(|c| c.sample()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            covers_containers: cg.is_some_and(|c| c.covers_containers()),
        }
    }

    fn end_cell(&mut self, cell: &str) {
        self.cgroups.remove(cell);
    }

    fn post(&mut self, dir: &Path, job: &Job, data: &Path) -> Result<(), Refused> {
        let (hold, _) = self.target.as_ref().ok_or_else(|| Refused("no target taken on this node".into()))?;
        let made = hold.data.client(job.client_id).map_err(Refused::new)?;
        if made != data {
            return Err(Refused(format!("client data directory {} is not {}", made.display(), data.display())));
        }
        if !self.channels.contains_key(dir) {
            let ch = SharedDir::create(dir, dir).map_err(Refused::new)?;
            if let Some(run) = dir.parent().filter(|p| !self.run_dirs.iter().any(|r| r == p)) {
                self.run_dirs.push(run.to_path_buf());
            }
            self.channels.insert(dir.to_path_buf(), ch);
        }
        self.channel(dir)?.post_job(job).map_err(Refused::new)?;
        Ok(())
    }

    fn status(&mut self, dir: &Path, offset_ns: i64) -> Result<Status, Refused> {
        let ch = self.channel(dir)?;
        ch.serve_clock_shifted(offset_ns);
        let (ready, problem) = ch.ready_clients();
        Ok(Status { ready, booted: ch.booted_clients(), problem: problem.map(|e| e.to_string()) })
    }

    fn go(&mut self, dir: &Path, go: &Go) -> Result<(), Refused> {
        self.channel(dir)?.go(go).map_err(Refused::new)
    }

    fn result(&mut self, dir: &Path, client: u32) -> Result<ClientResult, Refused> {
        self.channel(dir)?.result(client).map_err(Refused::new)
    }

    fn forget(&mut self, dir: &Path) {
        if self.channels.remove(dir).is_some() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn shutdown(&mut self) {
        for c in self.clients.values_mut() {
            c.kill();
            c.teardown();
        }
        self.clients.clear();
        self.cgroups.clear();
        if let Some(state) = self.state.file_name() {
            crate::runtime::cgroup::remove_run(&state.to_string_lossy());
        }
        for b in self.backends.values() {
            b.cleanup();
        }
        for dir in self.channels.keys().chain(&self.run_dirs) {
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = std::fs::remove_dir_all(&self.state);
        if let Some((hold, keep_files)) = self.target.take() {
            hold.release(!keep_files);
        }
        // The binary this agent runs from was copied for the run: remove its directory.
        if let Some(dir) = own_bin_dir() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Removes copies of iostudy that no process runs any more (left by agents killed
/// outright).
fn reap_dead_binaries(state_base: &Path) {
    let running: Vec<PathBuf> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path().join("exe")).ok())
        .collect();
    for e in std::fs::read_dir(state_base).into_iter().flatten().flatten() {
        let dir = e.path();
        // A copy younger than a minute may be about to start (another run connecting).
        let young = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < std::time::Duration::from_secs(60));
        if is_bin_dir(&dir) && !young && !running.iter().any(|x| x.starts_with(&dir)) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
