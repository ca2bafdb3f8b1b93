//! The controller's side of a node: its transport, the copy of iostudy on the node, the
//! agent session, and the node's clock.
//!
//! [`Node::connect`] takes a connected [`Transport`] (OpenSSH, Slurm's srun), copies
//! this executable (static, so it runs on any Linux node) to a private directory named
//! after its content and the run, starts `iostudy agent` from it in a session of the
//! transport, checks the protocol version, reads the node's facts and measures its
//! clock. Every request has a typed method here, answered in turn; a session that
//! ends — the node rebooted, its daemon died, the network dropped — marks the node
//! lost, and every later request fails naming the node. The transport's processes die
//! with the thread that connected, so connect from the main thread.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::control::{Go, Job};
use crate::hosts::agent::BIN_DIR_PREFIX;
use crate::hosts::protocol::{AGENT_PROTOCOL, Facts, LaunchSpec, Prepared, Request, Response};
use crate::hosts::{Cached, NodeError, Transport};
use crate::results::ClientResult;
use crate::results::cpu::CpuSample;
use crate::runtime::{Probe, Spec};

/// A node's clock against the controller's: node time − controller time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClockOffset {
    pub offset_ns: i64,
    /// Half the round trip of the sample the offset came from: the offset is exact to
    /// within this.
    pub uncertainty_ns: u64,
}

struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    lost: Option<String>,
}

/// A node's exited clients: id, and `None` for success or why it failed.
pub type Exits = Arc<HashMap<String, Option<String>>>;

/// A connected node.
pub struct Node {
    pub index: usize,
    pub dest: String,
    pub facts: Facts,
    transport: Box<dyn Transport>,
    session: Mutex<Session>,
    clock: Mutex<ClockOffset>,
    /// Shared, not copied, with every client that asks: a thousand clients asking each
    /// tick must not copy a thousand exits each.
    exits: Mutex<Cached<Exits>>,
    /// The agent session's stderr.
    log: PathBuf,
}

/// How long any one answer may take (a micro-VM launch waits for virtiofsd).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// A node with this iostudy copied to it, its agent not started yet.
pub struct Staged {
    transport: Box<dyn Transport>,
    remote: PathBuf,
}

/// Connects to every node `transports` reach: the copies of iostudy made in parallel
/// (each a short-lived command), then the agents started one by one from this thread
/// (whose end their sessions die with).
pub fn connect_all(
    transports: Vec<Box<dyn Transport>>,
    dir: &Path,
    run: &str,
    target: &Path,
) -> Result<Vec<Node>, NodeError> {
    let staged: Vec<Result<Staged, NodeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = transports.into_iter().map(|t| s.spawn(move || Node::stage(t, run))).collect();
        handles.into_iter().map(|h| h.join().expect("staging thread")).collect()
    });
    staged.into_iter().enumerate().map(|(i, s)| s?.start(i, dir, run, target)).collect()
}

/// This executable and its content hash, computed once however many nodes ask.
fn executable() -> Result<(PathBuf, String), NodeError> {
    static EXE: std::sync::OnceLock<Result<(PathBuf, String), String>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the iostudy executable: {e}"))?;
        crate::runtime::binary::worker_binary()?;
        let hash = content_hash(&exe)?;
        Ok((exe, hash))
    })
    .clone()
    .map_err(NodeError::Local)
}

impl Node {
    /// Copies this iostudy to the node `transport` reaches, into a private directory
    /// named after its content and the run (an agent removes its copy when it ends, and
    /// nodes may share the directory: the same filesystem).
    pub fn stage(transport: Box<dyn Transport>, run: &str) -> Result<Staged, NodeError> {
        let (exe, hash) = executable()?;
        // A node that sees this very file at the same path (a shared filesystem) runs it
        // from there: nothing to copy.
        let path = exe.display().to_string();
        let seen = transport.run(&["sh", "-c", "sha256sum -- \"$1\" 2>/dev/null || true", "sh", &path])?;
        if seen.split_whitespace().next() == Some(hash.as_str()) {
            return Ok(Staged { transport, remote: exe });
        }
        let base = transport.run(&[
            "sh",
            "-c",
            "if [ \"$(id -u)\" = 0 ]; then echo /run/iostudy; else echo \"${TMPDIR:-/tmp}/iostudy-$(id -u)\"; fi",
        ])?;
        let remote = PathBuf::from(base.trim())
            .join(format!("{BIN_DIR_PREFIX}{run}-{}", crate::results::cell::escape(transport.dest())))
            .join(format!("iostudy-{}", &hash[..16]));
        transport.copy(&exe, &remote)?;
        Ok(Staged { transport, remote })
    }

    /// Stages and starts the agent on the node `transport` reaches (node `index` of the
    /// run's); `dir` is the controller's private state directory for the run, `run` its
    /// id, `target` the study's target.
    pub fn connect(
        transport: Box<dyn Transport>,
        index: usize,
        dir: &Path,
        run: &str,
        target: &Path,
    ) -> Result<Node, NodeError> {
        Node::stage(transport, run)?.start(index, dir, run, target)
    }
}

impl Staged {
    /// Starts the agent: its session, the protocol's hello, the node's facts and clock.
    pub fn start(self, index: usize, dir: &Path, run: &str, target: &Path) -> Result<Node, NodeError> {
        let Staged { transport, remote } = self;
        let dest = transport.dest().to_string();
        let local = |why: String| NodeError::Local(why);
        let log = dir.join(format!("agent-{}.log", crate::results::cell::escape(&dest)));
        let errors = crate::safety::create_file(&log).map_err(|e| local(e.to_string()))?;
        let mut child =
            transport.session(&[&remote.display().to_string(), "agent"]).stderr(errors).spawn().map_err(|e| {
                NodeError::Unreachable { node: dest.clone(), why: format!("cannot start the agent: {e}") }
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut node = Node {
            index,
            dest: dest.clone(),
            facts: Facts {
                hostname: String::new(),
                kernel: String::new(),
                cpus: 0,
                clock_source: None,
                free_bytes: None,
                target_problem: None,
                pid: 0,
                boot_id: None,
                step: None,
            },
            transport,
            session: Mutex::new(Session { child, stdin, stdout, lost: None }),
            clock: Mutex::new(ClockOffset::default()),
            exits: Mutex::new(Cached::default()),
            log,
        };
        match node.request(&Request::Hello { protocol: AGENT_PROTOCOL, run: run.to_string() })? {
            Response::Hello { .. } => {}
            other => return Err(node.unexpected("hello", &other)),
        }
        node.facts = match node.request(&Request::Facts { target: target.to_path_buf() })? {
            Response::Facts(f) => f,
            other => return Err(node.unexpected("facts", &other)),
        };
        node.measure_clock()?;
        Ok(node)
    }
}

impl Node {
    fn unexpected(&self, what: &str, answer: &Response) -> NodeError {
        NodeError::Protocol { node: self.dest.clone(), why: format!("unexpected answer to {what}: {answer:?}") }
    }

    /// A request answered `ok`.
    fn ok(&self, what: &str, req: &Request) -> Result<(), NodeError> {
        match self.request(req)? {
            Response::Ok => Ok(()),
            other => Err(self.unexpected(what, &other)),
        }
    }

    /// One request, its answer; an agent's refusal or a lost session is an error
    /// naming the node.
    fn request(&self, req: &Request) -> Result<Response, NodeError> {
        let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &s.lost {
            return Err(NodeError::Lost { node: self.dest.clone(), why: why.clone() });
        }
        let mut line = serde_json::to_string(req).expect("requests serialize");
        line.push('\n');
        let sent = s.stdin.write_all(line.as_bytes()).and_then(|()| s.stdin.flush());
        let mut answer = String::new();
        let read = sent.and_then(|()| read_line_within(&mut s.stdout, &mut answer, ANSWER_TIMEOUT));
        match read {
            Ok(n) if n > 0 => {}
            other => {
                let _ = s.child.kill();
                let _ = s.child.wait();
                let said = crate::runtime::log_tail(&self.log, 3).replace('\n', " | ");
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "the session ended".into(),
                };
                let why = format!("{why}{}", if said.is_empty() { String::new() } else { format!(": {said}") });
                s.lost = Some(why.clone());
                return Err(NodeError::Lost { node: self.dest.clone(), why });
            }
        }
        match serde_json::from_str::<Response>(&answer) {
            Ok(Response::Error { message }) => Err(NodeError::Refused { node: self.dest.clone(), why: message }),
            Ok(r) => Ok(r),
            Err(e) => Err(NodeError::Protocol {
                node: self.dest.clone(),
                why: format!("garbled answer from the agent ({e}): {}", answer.trim()),
            }),
        }
    }

    /// Probes `spec` on the node.
    pub fn probe(&self, spec: &dyn Spec) -> Result<Probe, NodeError> {
        match self.request(&Request::Probe { kind: spec.kind().name().into(), settings: spec.settings() })? {
            Response::Probe(p) => Ok(p),
            other => Err(self.unexpected("probe", &other)),
        }
    }

    /// Writes `write` into `path` on the node, if given; what `path` holds there.
    pub fn marker(&self, path: &Path, write: Option<String>) -> Result<Option<String>, NodeError> {
        match self.request(&Request::Marker { path: path.to_path_buf(), write })? {
            Response::Marker { found } => Ok(found),
            other => Err(self.unexpected("marker", &other)),
        }
    }

    /// Kills the node's processes that mention one of `markers` (dead runs' dirs).
    pub fn reap(&self, markers: &[String]) -> Result<(), NodeError> {
        self.ok("reap", &Request::Reap { markers: markers.to_vec() })
    }

    /// Takes the node's own target for the run (an unshared target).
    pub fn take_target(&self, path: &Path, keep_files: bool) -> Result<(), NodeError> {
        self.ok("target", &Request::Target { path: path.to_path_buf(), keep_files })
    }

    /// Prepares `spec` of `scenario` on the node.
    pub fn prepare(&self, scenario: &str, spec: &dyn Spec, target: &Path, fio: bool) -> Result<Prepared, NodeError> {
        let req = Request::Prepare {
            scenario: scenario.to_string(),
            kind: spec.kind().name().to_string(),
            settings: spec.settings(),
            target: target.to_path_buf(),
            fio,
        };
        match self.request(&req)? {
            Response::Prepared(p) => Ok(p),
            other => Err(self.unexpected("prepare", &other)),
        }
    }

    /// Starts a client of a prepared scenario.
    pub fn launch(&self, scenario: &str, launch: LaunchSpec) -> Result<(), NodeError> {
        self.ok("launch", &Request::Launch { scenario: scenario.to_string(), launch })
    }

    /// Starts `launches` in one exchange; the index of the first that failed, and why.
    pub fn launch_many(&self, scenario: &str, launches: Vec<LaunchSpec>) -> Result<Option<(usize, String)>, NodeError> {
        match self.request(&Request::LaunchMany { scenario: scenario.to_string(), launches })? {
            Response::Launched { failed } => Ok(failed),
            other => Err(self.unexpected("launch", &other)),
        }
    }

    pub fn kill(&self, id: &str) -> Result<(), NodeError> {
        self.ok("kill", &Request::Kill { id: id.to_string() })
    }

    pub fn teardown(&self, id: &str) -> Result<(), NodeError> {
        self.ok("teardown", &Request::Teardown { id: id.to_string() })
    }

    /// The last `lines` of a client's log and its helpers'.
    pub fn log_tail(&self, id: &str, lines: usize) -> Result<String, NodeError> {
        self.text("log tail", &Request::LogTail { id: id.to_string(), lines })
    }

    /// A client's whole log.
    pub fn log(&self, id: &str) -> Result<String, NodeError> {
        self.text("log", &Request::Log { id: id.to_string() })
    }

    fn text(&self, what: &str, req: &Request) -> Result<String, NodeError> {
        match self.request(req)? {
            Response::Text { text } => Ok(text),
            other => Err(self.unexpected(what, &other)),
        }
    }

    /// A reading of a cell's CPU counters on the node, in the controller's clock, and
    /// whether they count its containers too.
    pub fn cpu_sample(&self, cell: &str) -> Result<Option<(CpuSample, bool)>, NodeError> {
        match self.request(&Request::CpuSample { cell: cell.to_string() })? {
            Response::Cpu { sample, covers_containers, .. } => Ok(sample.map(|mut s| {
                s.t_ns = s.t_ns.saturating_add_signed(-self.clock().offset_ns);
                (s, covers_containers)
            })),
            other => Err(self.unexpected("cpu sample", &other)),
        }
    }

    /// The cell is over on the node: its cgroup goes.
    pub fn end_cell(&self, cell: &str) -> Result<(), NodeError> {
        self.ok("end cell", &Request::EndCell { cell: cell.to_string() })
    }

    /// The control channel relayed on the node's own disk (an unshared target): posts a
    /// job, creating the client's data directory `data`.
    pub fn post(&self, dir: &Path, job: &Job, data: &Path) -> Result<(), NodeError> {
        let req = Request::Post { dir: dir.to_path_buf(), job: Box::new(job.clone()), data: data.to_path_buf() };
        self.ok("post", &req)
    }

    /// (ready, booted) clients of a relayed cell; also answers their clock pings.
    pub fn status(&self, dir: &Path) -> Result<(Vec<u32>, Vec<u32>), NodeError> {
        let req = Request::Status { dir: dir.to_path_buf(), offset_ns: self.clock().offset_ns };
        match self.request(&req)? {
            Response::Status { problem: Some(p), .. } => Err(NodeError::Refused { node: self.dest.clone(), why: p }),
            Response::Status { ready, booted, .. } => Ok((ready, booted)),
            other => Err(self.unexpected("status", &other)),
        }
    }

    pub fn go(&self, dir: &Path, go: &Go) -> Result<(), NodeError> {
        self.ok("go", &Request::Go { dir: dir.to_path_buf(), go: *go })
    }

    pub fn result(&self, dir: &Path, client: u32) -> Result<ClientResult, NodeError> {
        match self.request(&Request::Result { dir: dir.to_path_buf(), client })? {
            Response::Result(r) => Ok(*r),
            other => Err(self.unexpected("result", &other)),
        }
    }

    pub fn forget(&self, dir: &Path) -> Result<(), NodeError> {
        self.ok("forget", &Request::Forget { dir: dir.to_path_buf() })
    }

    /// Measures the clock offset (Cristian's method: the sample with the shortest
    /// round trip of a few, offset = node time − the round trip's midpoint).
    pub fn measure_clock(&self) -> Result<ClockOffset, NodeError> {
        let mut best: Option<(u64, i64)> = None;
        for _ in 0..16 {
            let t0 = crate::sys::wall_ns();
            let ns = match self.request(&Request::Clock)? {
                Response::Clock { ns } => ns,
                other => return Err(self.unexpected("clock", &other)),
            };
            let t1 = crate::sys::wall_ns();
            let rtt = t1.saturating_sub(t0);
            let offset = ns as i64 - (t0 + rtt / 2) as i64;
            if best.is_none_or(|(r, _)| rtt < r) {
                best = Some((rtt, offset));
            }
        }
        let (rtt, offset_ns) = best.expect("sampled");
        let c = ClockOffset { offset_ns, uncertainty_ns: rtt.div_ceil(2) };
        *self.clock.lock().unwrap_or_else(|e| e.into_inner()) = c;
        Ok(c)
    }

    pub fn clock(&self) -> ClockOffset {
        *self.clock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `kernel …, N CPU(s), clock … (offset … ± …)`, as plan and runtimes show a node.
    pub fn describe(&self) -> String {
        let f = &self.facts;
        let c = self.clock();
        format!(
            "kernel {}, {} CPU(s), clock {} (offset {:+.3} ms ± {:.3} ms)",
            f.kernel,
            f.cpus,
            f.clock_source.as_deref().unwrap_or("?"),
            c.offset_ns as f64 / 1e6,
            c.uncertainty_ns as f64 / 1e6
        )
    }

    /// Which of the node's clients have exited (`None`: successfully), at most one
    /// request per [`Cached::MAX_AGE`] however many clients ask.
    pub fn exits(&self) -> Result<Exits, NodeError> {
        self.exits.lock().unwrap_or_else(|e| e.into_inner()).get(|| match self.request(&Request::Poll)? {
            Response::Exits { exits } => Ok(Arc::new(exits.into_iter().collect())),
            other => Err(self.unexpected("poll", &other)),
        })
    }

    /// Why the node is unusable, if its session was lost.
    pub fn lost(&self) -> Option<String> {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).lost.clone()
    }

    /// Runs a command on the node (outside the agent).
    pub fn run(&self, argv: &[&str]) -> Result<String, NodeError> {
        self.transport.run(argv)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.request(&Request::Bye);
        let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
        // The agent cleans up on goodbye; give it the time to.
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(s.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        crate::runtime::child::kill_group(&mut s.child);
    }
}

/// Reads one line, or fails after `limit` (a node that stopped answering).
fn read_line_within(r: &mut BufReader<ChildStdout>, out: &mut String, limit: Duration) -> std::io::Result<usize> {
    if r.buffer().is_empty() {
        let mut fds = [rustix::event::PollFd::new(r.get_ref(), rustix::event::PollFlags::IN)];
        let ts = rustix::time::Timespec { tv_sec: limit.as_secs() as i64, tv_nsec: 0 };
        let n = rustix::event::poll(&mut fds, Some(&ts)).map_err(std::io::Error::from)?;
        if n == 0 {
            return Err(std::io::Error::other(format!("no answer within {} s", limit.as_secs())));
        }
    }
    r.read_line(out)
}

/// The sha256 of a file's content, in hex: names the copy on a node by what it is, and
/// tells whether a node already sees this very file (a shared filesystem).
fn content_hash(path: &Path) -> Result<String, String> {
    use sha2::{Digest as _, Sha256};
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}
