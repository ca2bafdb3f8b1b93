//! Many hosts: clients spread over ssh nodes, every runtime on every node, one clock.
//!
//! Where a client runs is two questions: *on which node* (placement, here) and *inside
//! what* (its runtime, [`crate::runtime`]). A study's `[hosts]` names ssh destinations;
//! each cell's clients are placed on them ([`place`]). On each node the controller
//! keeps one OpenSSH ControlMaster connection ([`ssh`]) and, over it, one session that
//! runs the same static iostudy as an agent ([`agent`], speaking [`protocol`]): the
//! agent prepares the scenario's backend *on the node* and launches, polls, kills and
//! tears down its clients there, so process, OCI and micro-VM clients run on a node
//! exactly as they do locally. [`node`] is the controller's side of a node, and
//! [`remote`] its backend and client proxies. Each node's clock offset to the
//! controller's is measured over the agent session (Cristian's method), given to every
//! client with its job, and taken out of its result, so windows and timelines are in
//! the controller's clock.

pub mod agent;
pub mod node;
pub mod protocol;
pub mod remote;
pub mod ssh;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How a cell's clients are spread over nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Client k runs on node k mod n (the seed's layout).
    #[default]
    Spread,
    /// Node 1 is filled first, up to `slots` clients, then node 2, …
    Pack,
}

/// The study file's `[hosts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hosts {
    /// ssh destinations as ssh(1) takes them.
    pub nodes: Vec<String>,
    pub placement: Placement,
    /// With `pack`: clients per node before the next one is used (default: an even
    /// share of the cell's clients).
    pub slots: Option<u32>,
    /// Extra ssh arguments, e.g. `["-F", "cluster_ssh_config"]`.
    pub ssh_options: Vec<String>,
    /// The target is one shared filesystem on every node (and the controller);
    /// otherwise each node's own disk at that path.
    pub shared_target: bool,
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
pub fn place(usable: &[usize], placement: Placement, slots: Option<u32>, clients: u32) -> Vec<usize> {
    let n = usable.len().max(1) as u32;
    match placement {
        Placement::Spread => (0..clients).map(|k| usable[(k % n) as usize]).collect(),
        Placement::Pack => {
            let per = slots.unwrap_or(clients.div_ceil(n)).max(1);
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
        assert_eq!(place(&[0, 1], Placement::Spread, None, 5), [0, 1, 0, 1, 0]);
        assert_eq!(place(&[1], Placement::Spread, None, 3), [1, 1, 1]);
        assert_eq!(place(&[0, 1], Placement::Pack, None, 5), [0, 0, 0, 1, 1]);
        assert_eq!(place(&[0, 1], Placement::Pack, Some(4), 5), [0, 0, 0, 0, 1]);
        assert_eq!(place(&[0, 1], Placement::Pack, Some(1), 3), [0, 1, 1]);
        let names = ["node1".to_string(), "node2".to_string()];
        assert_eq!(describe_placement(&names, &[0, 1, 0]), "node1×2 node2×1");
    }
}
