//! The `[hosts]` placement and its transport: the system's OpenSSH client, so users'
//! keys, agents, jump hosts and ssh_config work as they do for them.
//!
//! One ControlMaster connection per node per run ([`Ssh::connect`]): every later
//! command and session is a channel of it, so launching 64 clients does not open 64
//! handshakes. The master is a child of the controller that dies with it (parent-death
//! signal), and is told to exit when the run ends. Remote commands are given to ssh as
//! one shell-quoted string, since the remote side hands it to a shell.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::command::{Cmd, quote};
use crate::hosts::{
    Connected, Distribution, Layout, Node, NodeError, Placement, PlacementKind, Transport, die_with_parent,
};
use crate::runtime::{Section, SpannedError};

/// A connection to one node.
#[derive(Debug)]
pub struct Ssh {
    pub dest: String,
    options: Vec<String>,
    control: PathBuf,
    master: Child,
}

/// How long a node may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

impl Ssh {
    /// Opens the master connection to `dest`; its socket lives in `dir` (private).
    pub fn connect(dest: &str, options: &[String], dir: &Path) -> Result<Ssh, NodeError> {
        let unreachable = |why: String| NodeError::Unreachable { node: dest.to_string(), why };
        let control = dir.join(format!("ssh-{}.sock", crate::results::cell::escape(dest)));
        let _ = std::fs::remove_file(&control);
        let log = dir.join(format!("ssh-{}.log", crate::results::cell::escape(dest)));
        let errors = crate::safety::create_file(&log).map_err(|e| NodeError::Local(e.to_string()))?;
        let mut cmd = Command::new("ssh");
        cmd.args(["-M", "-N", "-o", "ControlPersist=no", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
            .args(["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3", "-S"])
            .arg(&control)
            .args(options)
            .arg("--")
            .arg(dest)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(errors);
        die_with_parent(&mut cmd);
        let master = cmd
            .spawn()
            .map_err(|e| NodeError::Local(format!("cannot run ssh: {e} (apt-get install openssh-client)")))?;
        let mut ssh = Ssh { dest: dest.to_string(), options: options.to_vec(), control, master };
        let started = Instant::now();
        loop {
            if let Ok(Some(st)) = ssh.master.try_wait() {
                let said = crate::runtime::log_tail(&log, 3).replace('\n', " | ");
                return Err(unreachable(format!("ssh exited ({st}): {said}")));
            }
            if ssh.control.exists() && ssh.check() {
                return Ok(ssh);
            }
            if started.elapsed() > CONNECT_TIMEOUT {
                return Err(unreachable(format!("no ssh connection within {} s", CONNECT_TIMEOUT.as_secs())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check(&self) -> bool {
        self.master_command("check").status().is_ok_and(|s| s.success())
    }

    /// `ssh -O OP` to the master connection (`check`, `exit`), output discarded.
    fn master_command(&self, op: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-O", op, "-S"])
            .arg(&self.control)
            .args(&self.options)
            .arg("--")
            .arg(&self.dest)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// `argv` run on the node, through the master.
    pub fn cmd(&self, argv: &[&str]) -> Cmd {
        Cmd::new("ssh")
            .args(["-o", "ControlMaster=no", "-o", "BatchMode=yes", "-S"])
            .arg(&self.control)
            .args(&self.options)
            .arg("--")
            .arg(&self.dest)
            .arg(argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "))
    }
}

impl Transport for Ssh {
    fn dest(&self) -> &str {
        &self.dest
    }

    /// Runs `argv` on the node; its stdout, or an error with its stderr.
    fn run(&self, argv: &[&str]) -> Result<String, NodeError> {
        let out = self
            .cmd(argv)
            .run_checked()
            .map_err(|e| NodeError::Unreachable { node: self.dest.clone(), why: e.to_string() })?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Copies the local file `from` to `to` on the node (mode 0755), atomically.
    fn copy(&self, from: &Path, to: &Path) -> Result<(), NodeError> {
        crate::hosts::copy_through(&self.dest, |argv| self.cmd(argv).command(), from, to)
    }

    /// A `Command` for a long-lived session running `argv` on the node, with piped
    /// stdin and stdout; it dies with the controller.
    fn session(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-o", "ControlMaster=no", "-o", "BatchMode=yes", "-S"])
            .arg(&self.control)
            .args(&self.options)
            .arg("--")
            .arg(&self.dest)
            .arg(argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0);
        die_with_parent(&mut c);
        c
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        let _ = self.master_command("exit").status();
        crate::runtime::child::kill_group(&mut self.master);
        let _ = std::fs::remove_file(&self.control);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_for_the_remote_shell() {
        assert_eq!(quote("/run/iostudy/1-2/iostudy"), "/run/iostudy/1-2/iostudy");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
    }
}

/// The `[hosts]` placement: ssh destinations.
pub static KIND: SshKind = SshKind;

pub struct SshKind;

/// `[hosts]` as written, with the place of each value.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    /// ssh destinations as ssh(1) takes them: ssh_config aliases, user@host.
    nodes: toml::Spanned<Vec<toml::Spanned<String>>>,
    /// `spread` (client k on node k mod n) or `pack` (fill node 1 first).
    #[serde(default)]
    placement: Layout,
    /// With `pack`: clients per node before the next.
    #[serde(default)]
    slots: Option<toml::Spanned<u32>>,
    /// Extra ssh arguments.
    #[serde(default)]
    ssh_options: Vec<String>,
    /// The target is the same shared filesystem on every node (default).
    #[serde(default = "yes")]
    shared_target: bool,
}

fn yes() -> bool {
    true
}

/// Clients on ssh nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct SshNodes {
    /// ssh destinations as ssh(1) takes them.
    pub nodes: Vec<String>,
    pub distribution: Distribution,
    /// Extra ssh arguments, e.g. `["-F", "cluster_ssh_config"]`.
    pub ssh_options: Vec<String>,
    /// The target is one shared filesystem on every node (and the controller);
    /// otherwise each node's own disk at that path.
    pub shared_target: bool,
}

impl PlacementKind for SshKind {
    fn table(&self) -> &'static str {
        "hosts"
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Placement>, SpannedError> {
        let t: Table = section.deserialize()?;
        if t.nodes.get_ref().is_empty() {
            return Err((
                t.nodes.span(),
                "hosts.nodes is empty".into(),
                Some(
                    "name ssh destinations, e.g. nodes = [\"node1\", \"node2\"], or remove [hosts] to run on this host"
                        .into(),
                ),
            ));
        }
        let mut nodes: Vec<String> = Vec::new();
        for (i, n) in t.nodes.get_ref().iter().enumerate() {
            let name = n.get_ref();
            if name.is_empty()
                || name.starts_with('-')
                || name.contains(char::is_whitespace)
                || name.contains(char::is_control)
            {
                return Err((
                    n.span(),
                    format!("hosts.nodes[{i}]: `{}` is not an ssh destination", crate::text::printable(name)),
                    Some("an ssh_config alias or user@host".into()),
                ));
            }
            if nodes.contains(name) {
                return Err((n.span(), format!("hosts.nodes[{i}]: `{name}` is listed twice"), None));
            }
            nodes.push(name.clone());
        }
        if let Some(slots) = &t.slots {
            if t.placement != Layout::Pack {
                return Err((slots.span(), "hosts.slots is for placement = \"pack\"".into(), None));
            }
            if *slots.get_ref() == 0 {
                return Err((slots.span(), "hosts.slots must be at least 1".into(), None));
            }
        }
        Ok(Arc::new(SshNodes {
            nodes,
            distribution: Distribution { layout: t.placement, slots: t.slots.map(|s| *s.get_ref()) },
            ssh_options: t.ssh_options,
            shared_target: t.shared_target,
        }))
    }
}

impl Placement for SshNodes {
    fn table(&self) -> &'static str {
        KIND.table()
    }

    fn node_names(&self) -> Vec<String> {
        self.nodes.clone()
    }

    fn distribution(&self) -> Distribution {
        self.distribution
    }

    fn shared_target(&self) -> bool {
        self.shared_target
    }

    fn describe(&self) -> String {
        let shared = if self.shared_target { "one shared filesystem" } else { "each node's own disk" };
        format!("{} ({}; the target is {shared})", self.nodes.join(", "), self.distribution.describe())
    }

    fn connect(&self, dir: &Path, run: &str, target: &Path) -> Result<Connected, NodeError> {
        // The masters from this thread (their lifetime is its), the rest in parallel.
        let mut transports: Vec<Box<dyn Transport>> = Vec::new();
        for dest in &self.nodes {
            transports.push(Box::new(Ssh::connect(dest, &self.ssh_options, dir)?));
        }
        let nodes = crate::hosts::node::connect_all(transports, dir, run, target)?;
        Ok(Connected { nodes, notes: Vec::new(), hold: None })
    }
}

impl SshNodes {
    /// Ssh destinations with these options, for probing (`iostudy runtimes --node`).
    pub fn probing(nodes: Vec<String>, ssh_options: Vec<String>) -> SshNodes {
        SshNodes { nodes, distribution: Distribution::default(), ssh_options, shared_target: false }
    }

    /// Connects to node `i` alone.
    pub fn connect_one(&self, i: usize, dir: &Path, run: &str, target: &Path) -> Result<Node, NodeError> {
        let ssh = Ssh::connect(&self.nodes[i], &self.ssh_options, dir)?;
        Node::connect(Box::new(ssh), i, dir, run, target)
    }
}
