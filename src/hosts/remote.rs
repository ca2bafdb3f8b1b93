//! A scenario's backend on a node, as the runner sees it: a [`Backend`] whose clients
//! are [`Client`]s on the node, both proxies of the node's agent; and the control
//! channel relayed by the agents when the target is each node's own disk
//! ([`relayed_channel`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::control::{Channel, Go, Job, ProtocolError, job_file};
use crate::hosts::Cached;
use crate::hosts::node::Node;
use crate::hosts::protocol::{LaunchSpec, Prepared};
use crate::results::ClientResult;
use crate::runtime::{Backend, Client, Exit, Launch, RuntimeError, Spec, Timing};

/// A node's failure as a backend's: a lost node is said so, a refusal is the runtime's.
fn runtime_error(e: crate::hosts::NodeError) -> RuntimeError {
    match e {
        crate::hosts::NodeError::Lost { .. } | crate::hosts::NodeError::Unreachable { .. } => {
            RuntimeError::Lost(e.to_string())
        }
        other => RuntimeError::Setup(other.to_string()),
    }
}

/// A scenario prepared on a node.
pub struct RemoteBackend {
    node: Arc<Node>,
    scenario: String,
    prepared: Prepared,
}

/// The extra lead a remote client needs to see go: the clock's uncertainty aside,
/// a shared filesystem may show a new file on another node a little later.
const REMOTE_LEAD: Duration = Duration::from_millis(250);

impl RemoteBackend {
    /// Prepares `spec` of `scenario` on `node`.
    /// With `fio`, the node's clients get the node's fio (`engine = "fio"`).
    pub fn prepare(
        node: Arc<Node>,
        scenario: &str,
        spec: &dyn Spec,
        target: &Path,
        fio: bool,
    ) -> Result<Self, RuntimeError> {
        let prepared = node.prepare(scenario, spec, target, fio).map_err(runtime_error)?;
        Ok(RemoteBackend { node, scenario: scenario.to_string(), prepared })
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The controller's proxy of a client launched on the node.
    fn client(&self, l: &Launch) -> Box<dyn Client> {
        Box::new(RemoteClient {
            node: self.node.clone(),
            id: l.id.clone(),
            client: l.client,
            log: l.log.clone(),
            fetched: false,
            exit: None,
        })
    }
}

/// A launch in the node's terms.
fn launch_spec(l: &Launch) -> LaunchSpec {
    LaunchSpec {
        id: l.id.clone(),
        client: l.client,
        job: l.job.clone(),
        cell: l.log_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        open_files: l.open_files,
        clients: l.cell.clients,
        deadline: crate::workload::Span(l.cell.deadline),
    }
}

impl Backend for RemoteBackend {
    fn client_path(&self, target: &Path, host_path: &Path) -> PathBuf {
        match &self.prepared.mount {
            Some(m) => m.join(host_path.strip_prefix(target).unwrap_or(host_path)),
            None => host_path.to_path_buf(),
        }
    }

    fn drops_guest_caches(&self) -> bool {
        self.prepared.drops_guest_caches
    }

    fn notes(&self) -> Vec<String> {
        self.prepared.notes.clone()
    }

    fn accelerator(&self) -> Option<String> {
        self.prepared.accelerator.clone()
    }

    fn timing(&self, clients: u32) -> Timing {
        let local = Timing::local(clients);
        let uncertainty = Duration::from_nanos(self.node.clock().uncertainty_ns);
        Timing {
            lead: local.lead.max(Duration::from_millis(self.prepared.lead_ms)) + REMOTE_LEAD + 2 * uncertainty,
            // The node's backend was prepared for one client; the cell has `clients`.
            poll: local.poll.max(Duration::from_millis(self.prepared.poll_ms.max(1))),
        }
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        self.node.launch(&self.scenario, launch_spec(l)).map_err(runtime_error)?;
        Ok(self.client(l))
    }

    fn launch_batch(&self, launches: &[&Launch]) -> Option<Vec<Result<Box<dyn Client>, RuntimeError>>> {
        let specs = launches.iter().map(|l| launch_spec(l)).collect();
        let failed = match self.node.launch_many(&self.scenario, specs) {
            Ok(failed) => failed,
            // Some may have started before the session failed: each is a client, to be
            // killed and torn down when dropped.
            Err(e) => {
                let mut results: Vec<_> = launches.iter().map(|l| Ok(self.client(l))).collect();
                results[0] = Err(runtime_error(e));
                return Some(results);
            }
        };
        Some(
            launches
                .iter()
                .enumerate()
                .map(|(i, l)| match &failed {
                    Some((f, why)) if i == *f => Err(runtime_error(crate::hosts::NodeError::Refused {
                        node: self.node.dest.clone(),
                        why: why.clone(),
                    })),
                    Some((f, _)) if i > *f => {
                        Err(RuntimeError::Setup(format!("not started: client {} failed first", launches[*f].client)))
                    }
                    _ => Ok(self.client(l)),
                })
                .collect(),
        )
    }

    fn cleanup(&self) {}
}

/// A client on a node.
struct RemoteClient {
    node: Arc<Node>,
    id: String,
    client: u32,
    /// Where its log is copied on the controller.
    log: PathBuf,
    fetched: bool,
    exit: Option<Exit>,
}

impl Client for RemoteClient {
    fn client(&self) -> u32 {
        self.client
    }

    fn poll(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            self.exit = match self.node.exits() {
                Ok(exits) => exits.get(&self.id).map(|e| match e {
                    None => Exit::Success,
                    Some(why) => Exit::Failed(why.clone()),
                }),
                Err(lost) => Some(Exit::Lost(lost.to_string())),
            };
        }
        self.exit.clone()
    }

    fn kill(&mut self) {
        if self.poll().is_some() {
            return;
        }
        let _ = self.node.kill(&self.id);
        self.exit = Some(Exit::Failed("killed".into()));
    }

    fn teardown(&mut self) {
        if self.fetched {
            return;
        }
        let _ = self.node.teardown(&self.id);
        let text = match self.node.log(&self.id) {
            Ok(text) => text,
            // The failure already says how the node was lost.
            Err(crate::hosts::NodeError::Lost { .. }) => format!("(the log stayed on node {})\n", self.node.dest),
            Err(e) => format!("(the log stayed on node {}: {e})\n", self.node.dest),
        };
        let _ = crate::safety::write_atomic(&self.log, text.as_bytes());
        self.fetched = true;
    }

    fn log(&self) -> &Path {
        &self.log
    }

    fn log_tail(&self, lines: usize) -> String {
        if self.fetched {
            return crate::runtime::log_tail(&self.log, lines);
        }
        self.node.log_tail(&self.id, lines).unwrap_or_else(|e| e.to_string())
    }
}

impl Drop for RemoteClient {
    fn drop(&mut self) {
        self.kill();
        self.teardown();
    }
}

/// The control channel of a cell's clients on one node whose target is its own disk:
/// the agent keeps a shared directory there and relays.
struct AgentChannel {
    node: Arc<Node>,
    /// The cell's control directory on the node, and as its clients see it.
    dir: PathBuf,
    client_dir: PathBuf,
    /// The node's data root (`TARGET/iostudy-data`).
    data_root: PathBuf,
    status: Mutex<Cached<Status>>,
}

/// Ready and booted clients of a relayed cell, or what went wrong there; shared, not
/// copied, with each client's question.
type Status = Result<Arc<ReadyBooted>, String>;

/// The ready clients and the booted ones.
type ReadyBooted = (HashSet<u32>, HashSet<u32>);

impl AgentChannel {
    fn new(node: Arc<Node>, dir: PathBuf, client_dir: PathBuf, data_root: PathBuf) -> AgentChannel {
        AgentChannel { node, dir, client_dir, data_root, status: Mutex::new(Cached::new(Ok(Arc::default()))) }
    }

    fn relay(&self, e: String) -> ProtocolError {
        ProtocolError::Relay(e)
    }

    /// (ready, booted) as last reported.
    fn status(&self) -> Result<Arc<ReadyBooted>, ProtocolError> {
        let mut cache = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let status = cache.get(|| -> Result<Status, crate::hosts::NodeError> {
            Ok(self
                .node
                .status(&self.dir)
                .map(|(ready, booted)| Arc::new((ready.into_iter().collect(), booted.into_iter().collect())))
                .map_err(|e| e.to_string()))
        });
        status.map_err(|e| e.to_string()).and_then(|s| s).map_err(|e| self.relay(e))
    }
}

impl Channel for AgentChannel {
    fn post_job(&self, job: &Job) -> Result<PathBuf, ProtocolError> {
        let data = self.data_root.join(format!("client-{}", job.client_id));
        self.node.post(&self.dir, job, &data).map_err(|e| self.relay(e.to_string()))?;
        Ok(job_file(&self.client_dir, job.client_id))
    }

    fn is_ready(&self, k: u32) -> Result<bool, ProtocolError> {
        Ok(self.status()?.0.contains(&k))
    }

    fn is_booted(&self, k: u32) -> bool {
        self.status().is_ok_and(|s| s.1.contains(&k))
    }

    fn serve_clock(&self) {
        // The agent answers pings with every status request.
        let _ = self.status();
    }

    fn go(&self, go: &Go) -> Result<(), ProtocolError> {
        self.node.go(&self.dir, go).map_err(|e| self.relay(e.to_string()))
    }

    fn result(&self, k: u32) -> Result<ClientResult, ProtocolError> {
        self.node.result(&self.dir, k).map_err(|e| self.relay(e.to_string()))
    }
}

impl Drop for AgentChannel {
    fn drop(&mut self) {
        let _ = self.node.forget(&self.dir);
    }
}

/// A cell's channel when its clients use several channels (one per node): each
/// client's messages go through its own.
pub struct Routed {
    channels: Vec<Box<dyn Channel>>,
    /// Channel index of each client.
    route: HashMap<u32, usize>,
}

/// The control channel of a cell whose target is each node's own disk: one relayed by
/// each node's agent, routed by client. `clients` are each client's node; `dir` the
/// cell's control directory (the same path on every node), `client_dir` it as clients
/// see it, `data_root` the nodes' data root (`TARGET/iostudy-data`).
pub fn relayed_channel(clients: &[Arc<Node>], dir: &Path, client_dir: &Path, data_root: &Path) -> Routed {
    let mut channels: Vec<Box<dyn Channel>> = Vec::new();
    let mut nodes: Vec<usize> = Vec::new();
    let mut route = HashMap::new();
    for (k, node) in clients.iter().enumerate() {
        let i = match nodes.iter().position(|&x| x == node.index) {
            Some(i) => i,
            None => {
                nodes.push(node.index);
                channels.push(Box::new(AgentChannel::new(
                    node.clone(),
                    dir.to_path_buf(),
                    client_dir.to_path_buf(),
                    data_root.to_path_buf(),
                )));
                nodes.len() - 1
            }
        };
        route.insert(k as u32, i);
    }
    Routed { channels, route }
}

impl Routed {
    fn of(&self, k: u32) -> &dyn Channel {
        self.channels[self.route[&k]].as_ref()
    }
}

impl Channel for Routed {
    fn post_job(&self, job: &Job) -> Result<PathBuf, ProtocolError> {
        self.of(job.client_id).post_job(job)
    }

    fn is_ready(&self, k: u32) -> Result<bool, ProtocolError> {
        self.of(k).is_ready(k)
    }

    fn is_booted(&self, k: u32) -> bool {
        self.of(k).is_booted(k)
    }

    fn go(&self, go: &Go) -> Result<(), ProtocolError> {
        self.channels.iter().try_for_each(|c| c.go(go))
    }

    fn serve_clock(&self) {
        self.channels.iter().for_each(|c| c.serve_clock());
    }

    fn result(&self, k: u32) -> Result<ClientResult, ProtocolError> {
        self.of(k).result(k)
    }
}
