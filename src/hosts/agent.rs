//! `iostudy agent`: the controller's hands on a node, started over the node's ssh
//! session and spoken to on stdin/stdout ([`super::protocol`]).
//!
//! It runs the scenarios' backends on the node — the same code as on the controller's
//! host — and keeps their clients: launch, poll, kill, tear down, logs. For a target
//! that is each node's own disk it also takes that target (safe directories, the lock,
//! reaping dead runs) and relays the control channel through a shared directory on it.
//! Its state lives in `STATE/<pid>-<stamp>/` like a run's, so a later agent reaps it if
//! this one is killed outright. When its session ends — the controller said goodbye,
//! died, or the connection dropped — it kills every client, tears everything down and
//! removes what it created, then exits: nothing of a run outlives it on the node.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::control::{CONTROL_DIR, Channel, DATA_DIR, SharedDir};
use crate::hosts::protocol::{AGENT_PROTOCOL, Facts, LaunchSpec, Prepared, Request, Response};
use crate::results::HostFacts;
use crate::runner::data::DataDirs;
use crate::runner::lock::{Holder, Lock};
use crate::runner::recovery;
use crate::runtime::cgroup::CellCgroup;
use crate::runtime::{Backend, CellShape, Client, Exit, Launch, RunContext, ScenarioContext, spec_from};

/// A node's own target, held for the run.
struct TargetHold {
    _lock: Lock,
    data: DataDirs,
    keep_files: bool,
    created_control: Option<PathBuf>,
}

struct Agent {
    run: String,
    state: PathBuf,
    backends: HashMap<String, Box<dyn Backend>>,
    clients: HashMap<String, Box<dyn Client>>,
    /// Logs of clients already torn down.
    logs: HashMap<String, PathBuf>,
    target: Option<TargetHold>,
    channels: HashMap<PathBuf, SharedDir>,
    /// The run's control directories its cells' channels were created in.
    run_dirs: Vec<PathBuf>,
    /// Each cell's cgroup on the node, by cell.
    cgroups: HashMap<String, Arc<CellCgroup>>,
    cancel: Arc<AtomicBool>,
}

/// Serves requests on stdin until the session ends; then removes everything.
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
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let (response, bye) = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Bye) => (Response::Ok, true),
            Ok(req) => (agent.handle(req), false),
            Err(e) => (Response::Error { message: format!("not a request: {e}") }, false),
        };
        let mut text = serde_json::to_string(&response).expect("responses serialize");
        text.push('\n');
        if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() || bye {
            break;
        }
    }
    agent.shutdown();
    Ok(())
}

impl Agent {
    fn handle(&mut self, req: Request) -> Response {
        match self.try_handle(req) {
            Ok(r) => r,
            Err(message) => Response::Error { message },
        }
    }

    fn try_handle(&mut self, req: Request) -> Result<Response, String> {
        Ok(match req {
            Request::Hello { protocol, run } => {
                if protocol != AGENT_PROTOCOL {
                    return Err(format!(
                        "the agent speaks protocol {AGENT_PROTOCOL}, the controller {protocol}: use the same iostudy binary"
                    ));
                }
                self.run = run;
                Response::Hello { protocol: AGENT_PROTOCOL, version: env!("CARGO_PKG_VERSION").into() }
            }
            Request::Facts { target } => {
                let h = HostFacts::current();
                Response::Facts(Facts {
                    hostname: h.hostname,
                    kernel: h.kernel,
                    cpus: h.cpus,
                    clock_source: h.clock_source,
                    free_bytes: crate::sys::free_space(&target),
                    target_problem: crate::safety::check_user_dir(&target).err().map(|e| e.to_string()),
                    pid: std::process::id(),
                    boot_id: crate::sys::boot_id(),
                })
            }
            Request::Clock => Response::Clock { ns: crate::sys::wall_ns() },
            Request::Marker { path, write } => {
                if let Some(text) = write {
                    crate::safety::write_atomic(&path, text.as_bytes())
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                Response::Marker { found: std::fs::read_to_string(&path).ok() }
            }
            Request::Probe { kind, settings } => Response::Probe(spec_from(&kind, &settings)?.probe()),
            Request::Reap { markers } => {
                crate::sys::kill_processes_mentioning(&markers);
                Response::Ok
            }
            Request::Target { path, keep_files } => {
                self.take_target(&path, keep_files)?;
                Response::Ok
            }
            Request::Prepare { scenario, kind, settings, target, fio } => {
                let spec = spec_from(&kind, &settings)?;
                let run = RunContext {
                    run_id: self.run.clone(),
                    // Only Kubernetes labels use it, and those scenarios have no nodes.
                    study: String::new(),
                    state_dir: self.state.clone(),
                    target: target.clone(),
                    cancel: self.cancel.clone(),
                    fio,
                };
                let backend = spec.prepare(&ScenarioContext::new(&run, &kind, &scenario)).map_err(|e| e.to_string())?;
                let probe = target.join("x");
                let seen = backend.client_path(&target, &probe);
                let timing = backend.timing(1);
                let prepared = Prepared {
                    notes: backend.notes(),
                    accelerator: backend.accelerator(),
                    mount: (seen != probe).then(|| seen.parent().map(Path::to_path_buf).unwrap_or_default()),
                    drops_guest_caches: backend.drops_guest_caches(),
                    lead_ms: timing.lead.as_millis() as u64,
                    poll_ms: timing.poll.as_millis() as u64,
                };
                self.backends.insert(scenario, backend);
                Response::Prepared(prepared)
            }
            Request::Launch { scenario, launch } => {
                self.launch(&scenario, launch)?;
                Response::Ok
            }
            Request::Poll => {
                let exits = self
                    .clients
                    .iter_mut()
                    .filter_map(|(id, c)| {
                        c.poll().map(|e| {
                            (
                                id.clone(),
                                match e {
                                    Exit::Success => None,
                                    Exit::Failed(why) => Some(why),
                                },
                            )
                        })
                    })
                    .collect();
                Response::Exits { exits }
            }
            Request::Kill { id } => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.kill();
                }
                Response::Ok
            }
            Request::Teardown { id } => {
                if let Some(mut c) = self.clients.remove(&id) {
                    c.teardown();
                    self.logs.insert(id, c.log().to_path_buf());
                }
                Response::Ok
            }
            Request::LogTail { id, lines } => Response::Text {
                text: match self.clients.get(&id) {
                    Some(c) => c.log_tail(lines),
                    None => self.logs.get(&id).map(|p| crate::runtime::log_tail(p, lines)).unwrap_or_default(),
                },
            },
            Request::Log { id } => {
                let path = self.clients.get(&id).map(|c| c.log().to_path_buf()).or_else(|| self.logs.get(&id).cloned());
                Response::Text { text: path.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default() }
            }
            Request::CpuSample { cell } => {
                let cg = self.cgroups.get(&cell);
                Response::Cpu {
                    sample: cg.and_then(|c| c.sample()),
                    cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
                    covers_containers: cg.is_some_and(|c| c.covers_containers()),
                }
            }
            Request::EndCell { cell } => {
                self.cgroups.remove(&cell);
                Response::Ok
            }
            Request::Post { dir, job, data } => {
                let hold = self.target.as_ref().ok_or("no target taken on this node")?;
                let made = hold.data.client(job.client_id).map_err(|e| e.to_string())?;
                if made != data {
                    return Err(format!("client data directory {} is not {}", made.display(), data.display()));
                }
                if !self.channels.contains_key(&dir) {
                    let ch = SharedDir::create(&dir, &dir).map_err(|e| e.to_string())?;
                    if let Some(run) = dir.parent().filter(|p| !self.run_dirs.iter().any(|r| r == p)) {
                        self.run_dirs.push(run.to_path_buf());
                    }
                    self.channels.insert(dir.clone(), ch);
                }
                self.channels[&dir].post_job(&job).map_err(|e| e.to_string())?;
                Response::Ok
            }
            Request::Status { dir, offset_ns } => {
                let ch = self.channels.get(&dir).ok_or("no such cell")?;
                ch.serve_clock_shifted(offset_ns);
                let (mut ready, mut booted, mut problem) = (Vec::new(), Vec::new(), None);
                for e in std::fs::read_dir(dir.join("ready")).into_iter().flatten().flatten() {
                    if let Ok(k) = e.file_name().to_string_lossy().parse::<u32>() {
                        match ch.is_ready(k) {
                            Ok(true) => ready.push(k),
                            Ok(false) => {}
                            Err(e) => problem = Some(format!("client {k}: {e}")),
                        }
                    }
                }
                for e in std::fs::read_dir(dir.join("booted")).into_iter().flatten().flatten() {
                    if let Ok(k) = e.file_name().to_string_lossy().parse::<u32>() {
                        booted.push(k);
                    }
                }
                Response::Status { ready, booted, problem }
            }
            Request::Go { dir, go } => {
                self.channels.get(&dir).ok_or("no such cell")?.go(&go).map_err(|e| e.to_string())?;
                Response::Ok
            }
            Request::Result { dir, client } => {
                let ch = self.channels.get(&dir).ok_or("no such cell")?;
                Response::Result(Box::new(ch.result(client).map_err(|e| e.to_string())?))
            }
            Request::Forget { dir } => {
                if self.channels.remove(&dir).is_some() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Response::Ok
            }
            Request::Bye => Response::Ok,
        })
    }

    fn launch(&mut self, scenario: &str, spec: LaunchSpec) -> Result<(), String> {
        let backend = self.backends.get(scenario).ok_or_else(|| format!("scenario `{scenario}` is not prepared"))?;
        let log_dir = self.state.join("logs").join(&spec.cell);
        std::fs::create_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
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
            cell: CellShape { id: spec.cell.clone(), clients: spec.clients, deadline: spec.deadline.0 },
        };
        let client = backend.launch(&launch).map_err(|e| e.to_string())?;
        self.clients.insert(spec.id, client);
        Ok(())
    }

    /// The node's own target: safe directories, the lock, dead runs reaped.
    fn take_target(&mut self, path: &Path, keep_files: bool) -> Result<(), String> {
        if self.target.is_some() {
            return Ok(());
        }
        let created = crate::safety::ensure_path(path).map_err(|e| e.to_string())?;
        let control = path.join(CONTROL_DIR);
        let created_control = crate::safety::ensure_dir(&control).map_err(|e| e.to_string())?.then(|| control.clone());
        let me = Holder::me(Path::new(&format!("the run {} of another host", self.run)));
        let (lock, _) = Lock::take(&control.join("lock"), "target", path, &me).map_err(|e| e.to_string())?;
        recovery::reap_dead_runs(&crate::sys::state_base(), Some(&control));
        self.target = Some(TargetHold {
            _lock: lock,
            data: DataDirs::new(path.join(DATA_DIR), created),
            keep_files,
            created_control,
        });
        Ok(())
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
        if let Some(TargetHold { _lock, data, keep_files, created_control }) = self.target.take() {
            // The lock and the control area go first, so that an empty target we created
            // can go too.
            drop(_lock);
            if let Some(c) = created_control {
                let _ = std::fs::remove_dir(c);
            }
            if !keep_files {
                data.remove_created();
            }
        }
        // The binary this agent runs from was copied for the run: remove its directory.
        if let Ok(exe) = std::env::current_exe()
            && let Some(dir) = exe.parent()
            && dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with(BIN_DIR_PREFIX))
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A run's copy of iostudy on a node lives in `STATE_BASE/<BIN_DIR_PREFIX><run>/`.
pub const BIN_DIR_PREFIX: &str = "bin-";

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
        if e.file_name().to_string_lossy().starts_with(BIN_DIR_PREFIX)
            && !young
            && !running.iter().any(|x| x.starts_with(&dir))
        {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
