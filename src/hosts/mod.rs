//! Many hosts: on which node a client runs — the placement seam — and how the
//! controller reaches nodes.
//!
//! Where a client runs is two questions: *on which node* (placement, here) and *inside
//! what* (its runtime, [`crate::runtime`]). A [`Placement`] is a set of nodes a study's
//! table configures — `[hosts]`: ssh destinations ([`ssh`]); `[slurm]`: the nodes of
//! an allocation ([`slurm`]) — each one module registered in [`PLACEMENTS`]; each cell's clients are spread over its nodes
//! ([`place`]). The controller reaches each node through a [`Transport`] and runs the
//! same static iostudy there as an agent ([`agent`], speaking [`protocol`]): the agent
//! prepares the scenario's backend *on the node* and launches, polls, kills and tears
//! down its clients there, so process, OCI and micro-VM clients run on a node exactly
//! as they do locally. [`node`] is the controller's side of a node, with a typed method
//! per request, and [`remote`] its backend, client and control-channel proxies: the
//! runner never speaks the protocol. Each node's clock offset to the controller's is
//! measured over the agent session (Cristian's method), given to every client with its
//! job, and taken out of its result, so windows and timelines are in the controller's
//! clock.

pub mod agent;
pub mod node;
pub mod protocol;
pub mod remote;
pub mod slurm;
pub mod ssh;

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::command::quote;
use crate::runtime::{Section, SpannedError};
pub use node::Node;

/// Every placement iostudy knows — the registration point: a study table of the same
/// name configures it.
pub static PLACEMENTS: &[&dyn PlacementKind] = &[&ssh::KIND, &slurm::KIND];

/// A placement as a study file names it: its table.
pub trait PlacementKind: Sync {
    /// The study file's table (`hosts`).
    fn table(&self) -> &'static str;
    /// Parses and validates the table.
    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Placement>, SpannedError>;
}

/// Where a study's clients run besides this host: nodes reached through a transport,
/// each running an agent.
pub trait Placement: Send + Sync + fmt::Debug {
    /// The study table that configures it (`hosts`).
    fn table(&self) -> &'static str;
    /// The nodes, named as the study names them (scenarios' `nodes = […]` pick from
    /// them).
    fn node_names(&self) -> Vec<String>;
    /// How a cell's clients are spread over the nodes.
    fn distribution(&self) -> Distribution;
    /// Whether the target is one shared filesystem on every node and this host.
    fn shared_target(&self) -> bool;
    /// What `plan` says about it (`node1, node2 (spread …; the target is …)`).
    fn describe(&self) -> String;
    /// Connects to every node for a run: transports opened, agents started, facts and
    /// clocks read. `dir` is the run's private state on this host, `run` its id.
    fn connect(&self, dir: &Path, run: &str, target: &Path) -> Result<Connected, NodeError>;
    /// Whether `plan` connects too (and probes every node), or only checks what it can
    /// without taking anything (a scheduler's allocation is taken by `run` alone).
    fn plan_connects(&self) -> bool {
        true
    }
    /// What can be checked without connecting, each problem with its fix.
    fn check(&self) -> Vec<String> {
        Vec::new()
    }
    /// Nodes of the connected placement that its scheduler says are down or
    /// draining, with why: a cell that would use one fails before it launches.
    fn down_nodes(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// What results record of it (a Slurm job, partition, steps, version).
    fn record(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A placement connected for a run: its nodes, what connecting noted, and what it holds
/// until the run ends (an allocation), given back when dropped — after the nodes.
pub struct Connected {
    pub nodes: Vec<Node>,
    pub notes: Vec<String>,
    pub hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// How a controller reaches one node: a command run there, a file copied, a long-lived
/// session (the agent's).
pub trait Transport: Send + Sync {
    /// The node as the transport names it (an ssh destination).
    fn dest(&self) -> &str;
    /// Runs `argv` on the node; its stdout, or why not.
    fn run(&self, argv: &[&str]) -> Result<String, NodeError>;
    /// Copies the local file `from` to `to` on the node (mode 0755), atomically.
    fn copy(&self, from: &Path, to: &Path) -> Result<(), NodeError>;
    /// A long-lived session running `argv` on the node, stdin and stdout piped; it dies
    /// with the controller.
    fn session(&self, argv: &[&str]) -> Command;
}

/// Why a node could not do what was asked, naming the node.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    #[error("cannot reach node {node}: {why}")]
    Unreachable { node: String, why: String },
    #[error("node {node}: connection lost ({why})")]
    Lost { node: String, why: String },
    #[error("node {node}: {why}")]
    Refused { node: String, why: String },
    #[error("node {node}: {why}")]
    Protocol { node: String, why: String },
    /// Something on this host (the executable, a log file).
    #[error("{0}")]
    Local(String),
}

/// How a cell's clients are spread over nodes (`placement = "spread" | "pack"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Client k runs on node k mod n (the seed's layout).
    #[default]
    Spread,
    /// Node 1 is filled first, up to `slots` clients, then node 2, …
    Pack,
}

/// A layout and, with `pack`, the clients per node before the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Distribution {
    pub layout: Layout,
    pub slots: Option<u32>,
}

impl Distribution {
    /// `spread: client k on node k mod n`, as `plan` says it.
    pub fn describe(&self) -> String {
        match (self.layout, self.slots) {
            (Layout::Spread, _) => "spread: client k on node k mod n".to_string(),
            (Layout::Pack, Some(n)) => format!("pack: {n} client(s) per node, node 1 first"),
            (Layout::Pack, None) => "pack: an even share per node, node 1 first".to_string(),
        }
    }
}

/// Copies the local file `from` to `to` on node `dest` (mode 0755, atomically) through
/// a command the transport makes for an argv (its stdin is the file). Content-addressed:
/// a copy already there (another node of a shared filesystem) is the same file and may
/// be running; it is kept, not replaced.
pub(crate) fn copy_through(
    dest: &str,
    command: impl Fn(&[&str]) -> Command,
    from: &Path,
    to: &Path,
) -> Result<(), NodeError> {
    use std::io::Write;
    use std::process::Stdio;
    let failed = |why: String| NodeError::Unreachable { node: dest.to_string(), why };
    let tmp = format!("{}.tmp.{}.{}", to.display(), std::process::id(), crate::results::cell::escape(dest));
    let dir = to.parent().map_or("/".into(), |d| d.display().to_string());
    let to_text = quote(&to.display().to_string());
    let script = format!(
        "if [ -x {to_text} ]; then cat > /dev/null; exit 0; fi; umask 077 && mkdir -p {} && cat > {tmp} && chmod 755 {tmp} && mv -f {tmp} {to_text}",
        quote(&dir),
        tmp = quote(&tmp),
    );
    let bytes = std::fs::read(from).map_err(|e| NodeError::Local(format!("cannot read {}: {e}", from.display())))?;
    let mut child = command(&["sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NodeError::Local(format!("cannot start the copy to {dest}: {e}")))?;
    let written = child.stdin.take().expect("piped").write_all(&bytes);
    drop(child.stdin.take());
    let out = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if written.is_err() || !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(failed(format!("cannot copy iostudy to {}: {said}", to.display())));
    }
    Ok(())
}

/// The child gets SIGTERM when the thread that spawned it ends (the controller dies):
/// a node's connection must not outlive the run that opened it.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only makes one
    // async-signal-safe system call (prctl).
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
                .map_err(std::io::Error::from)
        });
    }
}

/// The placement whose table is `table`.
pub fn kind(table: &str) -> Option<&'static dyn PlacementKind> {
    PLACEMENTS.iter().copied().find(|k| k.table() == table)
}

/// A value fetched from a node at most once per [`Cached::MAX_AGE`], however many ask:
/// a cell's clients poll every few milliseconds, a node answers over the network.
#[derive(Debug, Default)]
pub struct Cached<T> {
    at: Option<Instant>,
    value: T,
}

impl<T: Clone> Cached<T> {
    pub const MAX_AGE: Duration = Duration::from_millis(20);

    /// Nothing fetched yet; `value` stands in until the first fetch.
    pub fn new(value: T) -> Cached<T> {
        Cached { at: None, value }
    }

    /// The value, fetched again with `fetch` when it is older than [`Self::MAX_AGE`].
    pub fn get<E>(&mut self, fetch: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        if self.at.is_none_or(|t| t.elapsed() > Self::MAX_AGE) {
            self.value = fetch()?;
            self.at = Some(Instant::now());
        }
        Ok(self.value.clone())
    }
}

/// The node (an index into `nodes`) of each of a cell's `clients`, placed over the
/// scenario's nodes `usable` (indexes, in order).
pub fn place(usable: &[usize], d: Distribution, clients: u32) -> Vec<usize> {
    let n = usable.len().max(1) as u32;
    match d.layout {
        Layout::Spread => (0..clients).map(|k| usable[(k % n) as usize]).collect(),
        Layout::Pack => {
            let per = d.slots.unwrap_or(clients.div_ceil(n)).max(1);
            // Beyond every node's slots the last node takes the rest.
            (0..clients).map(|k| usable[((k / per).min(n - 1)) as usize]).collect()
        }
    }
}

/// `node1×4 node2×4`: how many clients each node got.
pub fn describe_placement(nodes: &[String], placed: &[usize]) -> String {
    let mut counts: Vec<(usize, u32)> = Vec::new();
    for &i in placed {
        match counts.iter_mut().find(|(n, _)| *n == i) {
            Some((_, c)) => *c += 1,
            None => counts.push((i, 1)),
        }
    }
    counts.sort();
    counts.iter().map(|(i, c)| format!("{}×{c}", nodes[*i])).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_pack() {
        let d = |layout, slots| Distribution { layout, slots };
        assert_eq!(place(&[0, 1], d(Layout::Spread, None), 5), [0, 1, 0, 1, 0]);
        assert_eq!(place(&[1], d(Layout::Spread, None), 3), [1, 1, 1]);
        assert_eq!(place(&[0, 1], d(Layout::Pack, None), 5), [0, 0, 0, 1, 1]);
        assert_eq!(place(&[0, 1], d(Layout::Pack, Some(4)), 5), [0, 0, 0, 0, 1]);
        assert_eq!(place(&[0, 1], d(Layout::Pack, Some(1)), 3), [0, 1, 1]);
        let names = ["node1".to_string(), "node2".to_string()];
        assert_eq!(describe_placement(&names, &[0, 1, 0]), "node1×2 node2×1");
    }
}
