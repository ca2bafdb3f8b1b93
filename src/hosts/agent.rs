//! The agent's end of the protocol: requests read from stdin, answers written to stdout,
//! in turn, until the session ends (goodbye, the controller gone, the connection
//! dropped). This module and [`super::node`] are the only ones that speak
//! [`super::protocol`]; what a node does for each request — take its target, prepare
//! backends, keep clients — is the runner's, behind [`NodeSide`].

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::control::{Go, Job};
use crate::hosts::protocol::{AGENT_PROTOCOL, Facts, LaunchSpec, Prepared, Request, Response};
use crate::results::ClientResult;
use crate::results::cpu::CpuSample;
use crate::runtime::Probe;

/// Why a node refused a request: said to the controller, which names the node.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Refused {
    pub fn new(e: impl std::fmt::Display) -> Refused {
        Refused(e.to_string())
    }
}

/// The cell's clients on the node that reported ready and booted.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub ready: Vec<u32>,
    pub booted: Vec<u32>,
    pub problem: Option<String>,
}

/// A CPU reading of a cell on the node.
#[derive(Debug, Clone, Copy)]
pub struct CpuReading {
    pub sample: Option<CpuSample>,
    pub cpus: u32,
    pub covers_containers: bool,
}

/// What a node does for the controller: one method per request.
pub trait NodeSide {
    /// The run this session serves.
    fn hello(&mut self, run: &str);
    fn facts(&mut self, target: &Path) -> Facts;
    fn probe(&mut self, kind: &str, settings: &serde_json::Value) -> Result<Probe, Refused>;
    /// Kills the node's processes that mention one of `markers` (dead runs' dirs).
    fn reap(&mut self, markers: &[String]);
    fn take_target(&mut self, path: &Path, keep_files: bool) -> Result<(), Refused>;
    fn prepare(
        &mut self,
        scenario: &str,
        kind: &str,
        settings: &serde_json::Value,
        target: &Path,
        fio: bool,
    ) -> Result<Prepared, Refused>;
    fn launch(&mut self, scenario: &str, spec: LaunchSpec) -> Result<(), Refused>;
    /// Clients that exited: id and `None` for success, or why they failed.
    fn exits(&mut self) -> Vec<(String, Option<String>)>;
    fn kill(&mut self, id: &str);
    fn teardown(&mut self, id: &str);
    fn log_tail(&mut self, id: &str, lines: usize) -> String;
    fn log(&mut self, id: &str) -> String;
    fn cpu_sample(&mut self, cell: &str) -> CpuReading;
    fn end_cell(&mut self, cell: &str);
    /// The control channel relayed on the node's own disk (unshared targets).
    fn post(&mut self, dir: &Path, job: &Job, data: &Path) -> Result<(), Refused>;
    fn status(&mut self, dir: &Path, offset_ns: i64) -> Result<Status, Refused>;
    fn go(&mut self, dir: &Path, go: &Go) -> Result<(), Refused>;
    fn result(&mut self, dir: &Path, client: u32) -> Result<ClientResult, Refused>;
    fn forget(&mut self, dir: &Path);
    /// The session ended: everything of the run on the node goes.
    fn shutdown(&mut self);
}

/// Serves requests on stdin until the session ends, then shuts `side` down.
pub fn serve(side: &mut dyn NodeSide) {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let (response, bye) = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Bye) => (Response::Ok, true),
            Ok(req) => (answer(side, req).unwrap_or_else(|e| Response::Error { message: e.0 }), false),
            Err(e) => (Response::Error { message: format!("not a request: {e}") }, false),
        };
        let mut text = serde_json::to_string(&response).expect("responses serialize");
        text.push('\n');
        if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() || bye {
            break;
        }
    }
    side.shutdown();
}

/// One request, answered by `side`.
fn answer(side: &mut dyn NodeSide, req: Request) -> Result<Response, Refused> {
    Ok(match req {
        Request::Hello { protocol, run } => {
            if protocol != AGENT_PROTOCOL {
                return Err(Refused(format!(
                    "the agent speaks protocol {AGENT_PROTOCOL}, the controller {protocol}: use the same iostudy binary"
                )));
            }
            side.hello(&run);
            Response::Hello { protocol: AGENT_PROTOCOL, version: env!("CARGO_PKG_VERSION").into() }
        }
        Request::Facts { target } => Response::Facts(side.facts(&target)),
        Request::Clock => Response::Clock { ns: crate::sys::wall_ns() },
        Request::Marker { path, write } => {
            if let Some(text) = write {
                crate::safety::write_atomic(&path, text.as_bytes()).map_err(Refused::new)?;
            }
            Response::Marker { found: std::fs::read_to_string(&path).ok() }
        }
        Request::Probe { kind, settings } => Response::Probe(side.probe(&kind, &settings)?),
        Request::Reap { markers } => {
            side.reap(&markers);
            Response::Ok
        }
        Request::Target { path, keep_files } => {
            side.take_target(&path, keep_files)?;
            Response::Ok
        }
        Request::Prepare { scenario, kind, settings, target, fio } => {
            Response::Prepared(side.prepare(&scenario, &kind, &settings, &target, fio)?)
        }
        Request::Launch { scenario, launch } => {
            side.launch(&scenario, launch)?;
            Response::Ok
        }
        Request::LaunchMany { scenario, launches } => {
            let mut failed = None;
            for (i, launch) in launches.into_iter().enumerate() {
                if let Err(e) = side.launch(&scenario, launch) {
                    failed = Some((i, e.0));
                    break;
                }
            }
            Response::Launched { failed }
        }
        Request::Poll => Response::Exits { exits: side.exits() },
        Request::Kill { id } => {
            side.kill(&id);
            Response::Ok
        }
        Request::Teardown { id } => {
            side.teardown(&id);
            Response::Ok
        }
        Request::LogTail { id, lines } => Response::Text { text: side.log_tail(&id, lines) },
        Request::Log { id } => Response::Text { text: side.log(&id) },
        Request::CpuSample { cell } => {
            let r = side.cpu_sample(&cell);
            Response::Cpu { sample: r.sample, cpus: r.cpus, covers_containers: r.covers_containers }
        }
        Request::EndCell { cell } => {
            side.end_cell(&cell);
            Response::Ok
        }
        Request::Post { dir, job, data } => {
            side.post(&dir, &job, &data)?;
            Response::Ok
        }
        Request::Status { dir, offset_ns } => {
            let s = side.status(&dir, offset_ns)?;
            Response::Status { ready: s.ready, booted: s.booted, problem: s.problem }
        }
        Request::Go { dir, go } => {
            side.go(&dir, &go)?;
            Response::Ok
        }
        Request::Result { dir, client } => Response::Result(Box::new(side.result(&dir, client)?)),
        Request::Forget { dir } => {
            side.forget(&dir);
            Response::Ok
        }
        Request::Bye => Response::Ok,
    })
}

/// A run's copy of iostudy on a node lives in `STATE_BASE/<BIN_DIR_PREFIX><run>/`.
pub const BIN_DIR_PREFIX: &str = "bin-";

/// Whether `dir` is a directory a run's copy of iostudy was put in.
pub fn is_bin_dir(dir: &Path) -> bool {
    dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with(BIN_DIR_PREFIX))
}

/// The directory this agent's executable was copied into for the run, if it was.
pub fn own_bin_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.parent().filter(|d| is_bin_dir(d)).map(Path::to_path_buf)
}
