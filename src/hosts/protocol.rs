//! The protocol between the controller and a node's agent: one JSON request per line on
//! the agent's stdin, one JSON response per line on its stdout, strictly in turn, over
//! the node's ssh session. [`AGENT_PROTOCOL`] is checked by the first exchange
//! ([`Request::Hello`]), so an agent of another iostudy version is refused with the fix.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::control::{Go, Job};
use crate::results::ClientResult;
use crate::results::cpu::CpuSample;
use crate::runtime::Probe;

/// Version of every message below.
pub const AGENT_PROTOCOL: u32 = 2;

/// What the controller asks of an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The first request: versions must match.
    Hello {
        protocol: u32,
        run: String,
    },
    /// The node's facts, and what it says of `target`.
    Facts {
        target: PathBuf,
    },
    /// The node's CLOCK_REALTIME, for the clock offset.
    Clock,
    /// Writes `write` into `path` if given; returns what `path` holds.
    Marker {
        path: PathBuf,
        write: Option<String>,
    },
    /// Probes a runtime on the node.
    Probe {
        kind: String,
        settings: serde_json::Value,
    },
    /// Kills the node's processes that mention one of `markers` (the directories of
    /// dead runs the controller reaped on a shared target).
    Reap {
        markers: Vec<String>,
    },
    /// Takes the node's own target (when it is not shared): created or checked as safe,
    /// locked for this run, dead runs reaped.
    Target {
        path: PathBuf,
        keep_files: bool,
    },
    /// Prepares a scenario's backend on the node.
    Prepare {
        scenario: String,
        kind: String,
        settings: serde_json::Value,
        target: PathBuf,
        /// Clients run the real fio: give them the node's.
        #[serde(default)]
        fio: bool,
    },
    /// Starts a client of a prepared scenario.
    Launch {
        scenario: String,
        launch: LaunchSpec,
    },
    /// Starts every client of a cell the node runs, in order, in one exchange: a
    /// thousand clients over eight nodes are eight requests, not a thousand round
    /// trips. Stops at the first that cannot start ([`Response::Launched`]).
    LaunchMany {
        scenario: String,
        launches: Vec<LaunchSpec>,
    },
    /// Which clients have exited, and how.
    Poll,
    Kill {
        id: String,
    },
    Teardown {
        id: String,
    },
    /// The last lines of a client's log and its helpers'.
    LogTail {
        id: String,
        lines: usize,
    },
    /// A client's whole log.
    Log {
        id: String,
    },
    /// A reading of a cell's CPU counters on the node (its cgroup, the node's busy time).
    CpuSample {
        cell: String,
    },
    /// The cell is over on the node: its cgroup goes.
    EndCell {
        cell: String,
    },
    /// The shared-directory channel on the node's own disk (unshared targets): posts a
    /// job (creating the client's data directory `data`), reports who is ready and
    /// booted, sends go, returns a result, forgets the cell.
    Post {
        dir: PathBuf,
        job: Box<Job>,
        data: PathBuf,
    },
    /// Also answers the cell's clock pings, in the controller's clock (`offset_ns`:
    /// the node's clock minus the controller's).
    Status {
        dir: PathBuf,
        offset_ns: i64,
    },
    Go {
        dir: PathBuf,
        go: Go,
    },
    Result {
        dir: PathBuf,
        client: u32,
    },
    Forget {
        dir: PathBuf,
    },
    /// Ends the session: everything of the run on the node is removed.
    Bye,
}

/// A client to start, in the node's terms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub id: String,
    pub client: u32,
    pub job: PathBuf,
    /// The cell's name, for the log directory on the node.
    pub cell: String,
    pub open_files: u64,
    /// The cell's client count and deadline ([`crate::runtime::CellShape`]).
    pub clients: u32,
    pub deadline: crate::workload::Span,
}

/// What a node is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    pub kernel: String,
    pub cpus: u32,
    pub clock_source: Option<String>,
    /// Free bytes where the target is (or would be).
    pub free_bytes: Option<u64>,
    /// Why the target is not safe to write under on this node, if it is not.
    pub target_problem: Option<String>,
    /// The agent's pid (its state directory on the node is named after it).
    pub pid: u32,
    /// The node's boot id: nodes (and the controller) that share one are one machine.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The scheduler's step the agent runs in (`JOB.STEP` under Slurm).
    #[serde(default)]
    pub step: Option<String>,
}

/// A prepared backend, as the controller needs to know it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prepared {
    pub notes: Vec<String>,
    pub accelerator: Option<String>,
    /// Where the target appears inside clients (`/data`), or `None`: at its own path.
    pub mount: Option<PathBuf>,
    pub drops_guest_caches: bool,
    pub lead_ms: u64,
    pub poll_ms: u64,
}

/// An agent's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Error {
        message: String,
    },
    Hello {
        protocol: u32,
        version: String,
    },
    Facts(Facts),
    Clock {
        ns: u64,
    },
    Marker {
        found: Option<String>,
    },
    Probe(Probe),
    Prepared(Prepared),
    /// To [`Request::LaunchMany`]: the index of the first launch that failed, and why
    /// (those before it run; those after it were not tried).
    Launched {
        failed: Option<(usize, String)>,
    },
    /// Clients that have exited: id and `None` for success, or why they failed.
    Exits {
        exits: Vec<(String, Option<String>)>,
    },
    Text {
        text: String,
    },
    Status {
        ready: Vec<u32>,
        booted: Vec<u32>,
        problem: Option<String>,
    },
    Result(Box<ClientResult>),
    Cpu {
        sample: Option<CpuSample>,
        cpus: u32,
        covers_containers: bool,
    },
}
