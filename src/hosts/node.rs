//! The controller's side of a node: the ssh connection, the copy of iostudy on the
//! node, the agent session, and the node's clock.
//!
//! [`Node::connect`] opens the master connection, copies this executable (static, so
//! it runs on any Linux node) to a private directory named after its content and the
//! run, starts `iostudy agent` from it over the master, checks the protocol version,
//! reads the node's facts and measures its clock. Requests are answered in turn
//! ([`Node::request`]); a session that ends — the node rebooted, sshd died, the network
//! dropped — marks the node lost, and every later request fails naming the node. The
//! ssh processes die with the thread that connected, so connect from the main thread.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::hosts::agent::BIN_DIR_PREFIX;
use crate::hosts::protocol::{AGENT_PROTOCOL, Facts, Request, Response};
use crate::hosts::ssh::Ssh;
use crate::hosts::{Cached, Hosts};

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

/// A connected node.
pub struct Node {
    pub index: usize,
    pub dest: String,
    pub facts: Facts,
    ssh: Ssh,
    session: Mutex<Session>,
    clock: Mutex<ClockOffset>,
    exits: Mutex<Cached<HashMap<String, Option<String>>>>,
    /// The agent session's stderr.
    log: PathBuf,
}

/// How long any one answer may take (a micro-VM launch waits for virtiofsd).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

impl Node {
    /// Connects to node `index` of `hosts`; `dir` is the controller's private state
    /// directory for the run, `run` its id, `target` the study's target.
    pub fn connect(hosts: &Hosts, index: usize, dir: &Path, run: &str, target: &Path) -> Result<Node, String> {
        let dest = &hosts.nodes[index];
        let ssh = Ssh::connect(dest, &hosts.ssh_options, dir)?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the iostudy executable: {e}"))?;
        crate::runtime::binary::worker_binary()?;
        let base = ssh.run(&[
            "sh",
            "-c",
            "if [ \"$(id -u)\" = 0 ]; then echo /run/iostudy; else echo \"${TMPDIR:-/tmp}/iostudy-$(id -u)\"; fi",
        ])?;
        // Per run and node: an agent removes its copy when it ends, and nodes may share
        // the directory (the same filesystem).
        let remote = PathBuf::from(base.trim())
            .join(format!("{BIN_DIR_PREFIX}{run}-{}", crate::results::cell::escape(dest)))
            .join(format!("iostudy-{}", content_hash(&exe)?));
        ssh.copy(&exe, &remote)?;
        let log = dir.join(format!("agent-{}.log", crate::results::cell::escape(dest)));
        let errors = crate::safety::create_file(&log).map_err(|e| e.to_string())?;
        let mut child = ssh
            .session(&[&remote.display().to_string(), "agent"])
            .stderr(errors)
            .spawn()
            .map_err(|e| format!("cannot start the agent on {dest}: {e}"))?;
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
            },
            ssh,
            session: Mutex::new(Session { child, stdin, stdout, lost: None }),
            clock: Mutex::new(ClockOffset::default()),
            exits: Mutex::new(Cached::default()),
            log,
        };
        match node.request(&Request::Hello { protocol: AGENT_PROTOCOL, run: run.to_string() })? {
            Response::Hello { .. } => {}
            other => return Err(format!("node {dest}: unexpected answer to hello: {other:?}")),
        }
        node.facts = match node.request(&Request::Facts { target: target.to_path_buf() })? {
            Response::Facts(f) => f,
            other => return Err(format!("node {dest}: unexpected answer to facts: {other:?}")),
        };
        node.measure_clock()?;
        Ok(node)
    }

    /// One request, its answer; an agent error or a lost session is an `Err` naming
    /// the node.
    pub fn request(&self, req: &Request) -> Result<Response, String> {
        let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &s.lost {
            return Err(why.clone());
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
                let lost = format!(
                    "node {}: ssh connection lost ({why}){}",
                    self.dest,
                    if said.is_empty() { String::new() } else { format!(": {said}") }
                );
                s.lost = Some(lost.clone());
                return Err(lost);
            }
        }
        match serde_json::from_str::<Response>(&answer) {
            Ok(Response::Error { message }) => Err(format!("node {}: {message}", self.dest)),
            Ok(r) => Ok(r),
            Err(e) => Err(format!("node {}: garbled answer from the agent ({e}): {}", self.dest, answer.trim())),
        }
    }

    /// Measures the clock offset (Cristian's method: the sample with the shortest
    /// round trip of a few, offset = node time − the round trip's midpoint).
    pub fn measure_clock(&self) -> Result<ClockOffset, String> {
        let mut best: Option<(u64, i64)> = None;
        for _ in 0..16 {
            let t0 = crate::sys::wall_ns();
            let Response::Clock { ns } = self.request(&Request::Clock)? else {
                return Err(format!("node {}: unexpected answer to clock", self.dest));
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
    pub fn exits(&self) -> Result<HashMap<String, Option<String>>, String> {
        self.exits.lock().unwrap_or_else(|e| e.into_inner()).get(|| match self.request(&Request::Poll)? {
            Response::Exits { exits } => Ok(exits.into_iter().collect()),
            _ => Err(format!("node {}: unexpected answer to poll", self.dest)),
        })
    }

    /// Why the node is unusable, if its session was lost.
    pub fn lost(&self) -> Option<String> {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).lost.clone()
    }

    /// Runs a command on the node (outside the agent).
    pub fn run(&self, argv: &[&str]) -> Result<String, String> {
        self.ssh.run(argv)
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

/// FNV-1a of a file's content, in hex: names the copy on a node by what it is.
fn content_hash(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    Ok(format!("{h:016x}"))
}
