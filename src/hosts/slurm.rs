//! The `[slurm]` placement: clients on the nodes of a Slurm allocation, as HPC sites run
//! their I/O benchmarks (IOR, IO500 launch through `srun`).
//!
//! The allocation is the one iostudy runs inside (`SLURM_JOB_ID` set: a `salloc` shell
//! or an `sbatch` script — never a second one), or one it asks for itself with `salloc
//! --no-shell`, named `iostudy-<run>` with a comment naming this host and process, and
//! cancelled when the run ends (and by the next run if this one is killed outright).
//! On each node of it, one job step — `srun --overlap -N1 -w NODE` — runs iostudy's
//! agent for the whole run, its stdin and stdout the agent's session ([`Srun`] is the
//! [`Transport`]): every client of every cell is started by its node's agent inside
//! that step, under any scenario runtime, exactly as on ssh nodes, so Slurm's process
//! tracking holds all of them and `scancel` ends them all. Barrier and results cross
//! the shared target as they do for every placement.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::command::which;
use crate::hosts::{
    Connected, Distribution, Layout, NodeError, Placement, PlacementKind, Transport, copy_through, die_with_parent,
};
use crate::runtime::{Section, SpannedError};
use crate::workload::Span;

/// The `[slurm]` placement.
pub static KIND: SlurmKind = SlurmKind;

pub struct SlurmKind;

/// `[slurm]` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    /// The partition to allocate from (default: Slurm's default partition).
    #[serde(default)]
    partition: Option<String>,
    /// Nodes to allocate (default: the allocation iostudy runs in).
    #[serde(default)]
    nodes: Option<toml::Spanned<u32>>,
    /// `spread` (client k on node k mod n) or `pack` (fill node 1 first).
    #[serde(default)]
    placement: Layout,
    /// With `pack`: clients per node before the next (Slurm's tasks per node).
    #[serde(default)]
    tasks_per_node: Option<toml::Spanned<u32>>,
    /// The allocation's time limit (default: one day).
    #[serde(default)]
    time_limit: Option<Span>,
    #[serde(default)]
    account: Option<String>,
    /// Extra arguments for every `srun` (e.g. `["--mpi=none"]`) and for `salloc`.
    #[serde(default)]
    srun_args: Vec<String>,
    #[serde(default)]
    salloc_args: Vec<String>,
    /// How long an allocation may stay pending before the run gives up (default 5 min).
    #[serde(default)]
    allocation_timeout: Option<Span>,
    /// The target is one shared filesystem on every node and this host (default).
    #[serde(default = "yes")]
    shared_target: bool,
    /// Whole nodes for the run (`salloc --exclusive`, default): no other job's I/O or
    /// CPU beside the clients'.
    #[serde(default = "yes")]
    exclusive: bool,
}

fn yes() -> bool {
    true
}

/// Clients on the nodes of a Slurm allocation.
#[derive(Debug)]
pub struct Slurm {
    partition: Option<String>,
    /// Nodes asked for; `None`: the allocation iostudy runs in.
    nodes: Option<u32>,
    distribution: Distribution,
    time_limit: Duration,
    account: Option<String>,
    srun_args: Vec<String>,
    salloc_args: Vec<String>,
    allocation_timeout: Duration,
    shared_target: bool,
    exclusive: bool,
    /// The allocation, once connected.
    job: Mutex<Option<Job>>,
}

/// An allocation a run uses.
#[derive(Debug, Clone)]
struct Job {
    id: String,
    nodes: Vec<String>,
    partition: String,
    /// Whether this run asked for it (and cancels it at its end).
    ours: bool,
    version: String,
}

impl PlacementKind for SlurmKind {
    fn table(&self) -> &'static str {
        "slurm"
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Placement>, SpannedError> {
        let t: Table = section.deserialize()?;
        if let Some(n) = &t.nodes
            && *n.get_ref() == 0
        {
            return Err((n.span(), "slurm.nodes must be at least 1".into(), None));
        }
        if t.nodes.is_none() && std::env::var_os("SLURM_JOB_ID").is_none() {
            return Err(section.error(
                "how many nodes to allocate is not said, and iostudy does not run inside an allocation",
                Some("add nodes = 2 to [slurm], or run iostudy inside salloc -N2 / an sbatch script".into()),
            ));
        }
        if let Some(tpn) = &t.tasks_per_node {
            if t.placement != Layout::Pack {
                return Err((tpn.span(), "slurm.tasks_per_node is for placement = \"pack\"".into(), None));
            }
            if *tpn.get_ref() == 0 {
                return Err((tpn.span(), "slurm.tasks_per_node must be at least 1".into(), None));
            }
        }
        let slots = t.tasks_per_node.map(|s| *s.get_ref());
        Ok(Arc::new(Slurm {
            partition: t.partition,
            nodes: t.nodes.map(|n| *n.get_ref()),
            distribution: Distribution { layout: t.placement, slots },
            time_limit: t.time_limit.map_or(Duration::from_secs(24 * 3600), |s| s.0),
            account: t.account,
            srun_args: t.srun_args,
            salloc_args: t.salloc_args,
            allocation_timeout: t.allocation_timeout.map_or(Duration::from_secs(300), |s| s.0),
            shared_target: t.shared_target,
            exclusive: t.exclusive,
            job: Mutex::new(None),
        }))
    }
}

impl Placement for Slurm {
    fn table(&self) -> &'static str {
        KIND.table()
    }

    fn node_names(&self) -> Vec<String> {
        if let Some(job) = self.job.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return job.nodes.clone();
        }
        let n = self.nodes.or_else(|| std::env::var("SLURM_JOB_NUM_NODES").ok()?.parse().ok()).unwrap_or(1);
        (1..=n).map(|i| format!("slurm node {i}")).collect()
    }

    fn distribution(&self) -> Distribution {
        self.distribution
    }

    fn shared_target(&self) -> bool {
        self.shared_target
    }

    fn describe(&self) -> String {
        let nodes = match (self.nodes, std::env::var("SLURM_JOB_ID")) {
            (Some(n), Ok(job)) => format!("{n} node(s) of the allocation {job} iostudy runs in"),
            (None, Ok(job)) => format!("the nodes of the allocation {job} iostudy runs in"),
            (Some(n), Err(_)) => format!(
                "{n} {}node(s) of partition {} allocated for the run (salloc, at most {} pending)",
                if self.exclusive { "whole " } else { "" },
                self.partition.as_deref().unwrap_or("(default)"),
                Span(self.allocation_timeout)
            ),
            (None, Err(_)) => "an allocation (none given)".into(),
        };
        let how = match self.distribution.layout {
            Layout::Spread => "spread: client k on node k mod n".to_string(),
            Layout::Pack => match self.distribution.slots {
                Some(t) => format!("pack: {t} task(s) per node"),
                None => "pack: an even share per node".into(),
            },
        };
        let shared = if self.shared_target { "one shared filesystem" } else { "each node's own disk" };
        format!("{nodes} ({how}; an agent step per node; the target is {shared})")
    }

    fn connect(&self, dir: &Path, run: &str, target: &Path) -> Result<Connected, NodeError> {
        let local = |why: String| NodeError::Local(why);
        if which("srun").is_none() || which("squeue").is_none() {
            return Err(local(
                "no srun or squeue on PATH: apt-get install slurm-client, or run on a login node".into(),
            ));
        }
        let mut notes = cancel_dead_runs_jobs();
        let job = self.allocate(run).map_err(local)?;
        let down = down(&job.nodes);
        let hold = AllocationHold(job.clone());
        if !down.is_empty() {
            let names: Vec<String> = down.iter().map(|(n, why)| format!("{n} ({why})")).collect();
            return Err(local(format!(
                "Slurm node(s) {} of job {}: resume them (scontrol update nodename=NODE state=resume) or ask for others",
                names.join(", "),
                job.id
            )));
        }
        if job.ours {
            notes.push(format!("Slurm job {} allocated for the run on {}", job.id, job.nodes.join(", ")));
        }
        *self.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job.clone());
        let transports: Vec<Box<dyn Transport>> = job
            .nodes
            .iter()
            .map(|name| {
                Box::new(Srun { node: name.clone(), job: job.id.clone(), args: self.srun_args.clone() })
                    as Box<dyn Transport>
            })
            .collect();
        let nodes = crate::hosts::node::connect_all(transports, dir, run, target)?;
        Ok(Connected { nodes, notes, hold: Some(Box::new(hold)) })
    }

    /// Inside an allocation `plan` connects (steps are cheap); else it checks and says
    /// what `run` will ask for, without waiting in a queue.
    fn plan_connects(&self) -> bool {
        std::env::var_os("SLURM_JOB_ID").is_some()
    }

    fn check(&self) -> Vec<String> {
        for tool in ["srun", "salloc", "squeue", "sinfo", "scontrol", "scancel"] {
            if which(tool).is_none() {
                return vec![format!(
                    "[slurm]: no {tool} on PATH: apt-get install slurm-client, or run on a login node"
                )];
            }
        }
        let mut problems = Vec::new();
        if let Some(p) = &self.partition {
            match output(Command::new("sinfo").args(["-h", "-o", "%R"])) {
                Ok(known) if !known.lines().any(|l| l.trim() == p) => {
                    let list: Vec<&str> = known.lines().map(str::trim).collect();
                    problems.push(format!(
                        "[slurm]: partition `{p}` is unknown to Slurm (sinfo lists: {})",
                        list.join(", ")
                    ));
                    return problems;
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("[slurm]: {e}")),
            }
        }
        if let (Some(n), Err(_)) = (self.nodes, std::env::var("SLURM_JOB_ID")) {
            let mut args = vec!["-h".to_string(), "-N".into(), "-o".into(), "%N|%T".into()];
            if let Some(p) = &self.partition {
                args.extend(["-p".into(), p.clone()]);
            }
            if let Ok(text) = output(Command::new("sinfo").args(&args)) {
                let mut up: Vec<&str> = Vec::new();
                let mut down: Vec<String> = Vec::new();
                for line in text.lines() {
                    let (name, state) = line.split_once('|').unwrap_or((line, ""));
                    let bad = ["down", "drain", "fail", "maint"].iter().any(|b| state.to_lowercase().starts_with(b));
                    match bad {
                        true => down.push(format!("{name} {}", state.to_uppercase())),
                        false if !up.contains(&name) => up.push(name),
                        false => {}
                    }
                }
                if (up.len() as u32) < n {
                    problems.push(format!(
                        "[slurm]: nodes = {n}, and the partition has {} node(s) up{}: lower nodes, or resume them (scontrol update nodename=NODE state=resume)",
                        up.len(),
                        if down.is_empty() { String::new() } else { format!(" ({} not)", down.join(", ")) }
                    ));
                }
            }
        }
        problems
    }

    fn down_nodes(&self) -> Vec<(String, String)> {
        let Some(job) = self.job.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Vec::new();
        };
        // A node failure ends the whole job (Slurm cancels its every step), and a node
        // returned to service is up again but no longer the job's.
        let state = output(Command::new("squeue").args(["-h", "--states=all", "-j", &job.id, "-o", "%T"]));
        match state.as_deref().map(str::trim) {
            Ok("RUNNING") | Err(_) => down(&job.nodes),
            Ok(state) => {
                let state = if state.is_empty() { "gone" } else { state };
                let why = format!("no longer allocated: Slurm job {} is {state}", job.id);
                down(&job.nodes).into_iter().chain(job.nodes.iter().map(|n| (n.clone(), why.clone()))).collect()
            }
        }
    }

    fn record(&self) -> Option<serde_json::Value> {
        let job = self.job.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some(serde_json::json!({
            "scheduler": "slurm",
            "job": job.id,
            "partition": job.partition,
            "nodes": job.nodes,
            "allocated_by_iostudy": job.ours,
            "version": job.version,
        }))
    }
}

impl Slurm {
    /// The allocation to run in: the one iostudy runs inside, else a new one.
    fn allocate(&self, run: &str) -> Result<Job, String> {
        let version = output(Command::new("srun").arg("--version"))?.trim().to_string();
        if let Ok(id) = std::env::var("SLURM_JOB_ID") {
            let nodes = job_nodes(&id)?;
            if let Some(n) = self.nodes
                && (n as usize) > nodes.len()
            {
                return Err(format!(
                    "[slurm] asks for {n} node(s), and the allocation {id} iostudy runs in has {}: lower nodes or allocate more",
                    nodes.len()
                ));
            }
            let nodes: Vec<String> = nodes.into_iter().take(self.nodes.map_or(usize::MAX, |n| n as usize)).collect();
            let partition = std::env::var("SLURM_JOB_PARTITION").unwrap_or_default();
            return Ok(Job { id, nodes, partition, ours: false, version });
        }
        if let Some(p) = &self.partition {
            let known = output(Command::new("sinfo").args(["-h", "-o", "%R"]))?;
            if !known.lines().any(|l| l.trim() == p) {
                let list: Vec<&str> = known.lines().map(str::trim).collect();
                return Err(format!("partition `{p}` is unknown to Slurm (sinfo lists: {})", list.join(", ")));
            }
        }
        let mut cmd = Command::new("salloc");
        cmd.arg("--no-shell")
            .arg(format!("--nodes={}", self.nodes.unwrap_or(1)))
            .arg(format!("--job-name=iostudy-{run}"))
            .arg(format!("--comment={}", comment()))
            .arg(format!("--time={}", self.time_limit.as_secs().div_ceil(60).max(1)));
        if let Some(p) = &self.partition {
            cmd.arg(format!("--partition={p}"));
        }
        if let Some(a) = &self.account {
            cmd.arg(format!("--account={a}"));
        }
        if self.exclusive {
            cmd.arg("--exclusive");
        }
        cmd.args(&self.salloc_args);
        let id = self.wait_granted(cmd)?;
        let nodes = job_nodes(&id)?;
        let partition = output(Command::new("squeue").args(["-h", "-j", &id, "-o", "%P"]))?.trim().to_string();
        Ok(Job { id, nodes, partition, ours: true, version })
    }

    /// Runs `salloc --no-shell`, which returns once the allocation is granted; past
    /// the allocation timeout the pending job is cancelled, with what squeue said.
    fn wait_granted(&self, mut cmd: Command) -> Result<String, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run salloc: {e}"))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let started = Instant::now();
        let (mut id, mut said) = (None::<String>, Vec::new());
        loop {
            while let Ok(line) = rx.try_recv() {
                if let Some(j) = line.split("job allocation ").nth(1) {
                    id = Some(j.trim().to_string());
                }
                said.push(line);
            }
            match child.try_wait() {
                Ok(Some(st)) if st.success() => {
                    std::thread::sleep(Duration::from_millis(20));
                    while let Ok(line) = rx.try_recv() {
                        if let Some(j) = line.split("job allocation ").nth(1) {
                            id = Some(j.trim().to_string());
                        }
                    }
                    return id.ok_or_else(|| format!("salloc said no job id: {}", said.join(" | ")));
                }
                Ok(Some(_)) => return Err(format!("salloc refused the allocation: {}", said.join(" | "))),
                _ => {}
            }
            if started.elapsed() > self.allocation_timeout {
                let reason = id
                    .as_ref()
                    .and_then(|j| output(Command::new("squeue").args(["-h", "-j", j, "-o", "%T %r"])).ok())
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                let _ = child.kill();
                let _ = child.wait();
                if let Some(j) = &id {
                    let _ = Command::new("scancel").arg(j).status();
                }
                return Err(format!(
                    "the allocation was still pending after {} (squeue says: {}): ask for fewer nodes, another partition, or raise allocation_timeout",
                    Span(self.allocation_timeout),
                    if reason.is_empty() { "nothing" } else { &reason }
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a run holds in Slurm: its allocation, cancelled when dropped if the run made it.
struct AllocationHold(Job);

impl Drop for AllocationHold {
    fn drop(&mut self) {
        if self.0.ours {
            let _ = Command::new("scancel").arg(&self.0.id).status();
        }
    }
}

/// The comment iostudy's jobs carry: this host and process, so that the next run can
/// tell a dead run's job and cancel it.
fn comment() -> String {
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    format!("iostudy:{host}:{}", std::process::id())
}

/// Cancels the jobs of runs of this host that died without cancelling them.
fn cancel_dead_runs_jobs() -> Vec<String> {
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    let Ok(jobs) = output(Command::new("squeue").args(["-h", "-o", "%i|%k"])) else { return Vec::new() };
    let mut notes = Vec::new();
    for line in jobs.lines() {
        let Some((id, comment)) = line.split_once('|') else { continue };
        let mut parts = comment.trim().split(':');
        if parts.next() != Some("iostudy") || parts.next() != Some(host.as_str()) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !crate::sys::alive(pid) {
            let _ = Command::new("scancel").arg(id.trim()).status();
            notes.push(format!("cancelled Slurm job {} of a run (pid {pid}) killed before it could", id.trim()));
        }
    }
    notes
}

/// The nodes of job `id`, by name.
fn job_nodes(id: &str) -> Result<Vec<String>, String> {
    let list = output(Command::new("squeue").args(["-h", "-j", id, "-o", "%N"]))?;
    let list = list.trim();
    if list.is_empty() {
        return Err(format!("Slurm job {id} has no nodes (ended, or still pending)"));
    }
    let names = output(Command::new("scontrol").args(["show", "hostnames", list]))?;
    Ok(names.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
}

/// Which of `nodes` Slurm says are down, draining or failing, with its reason.
fn down(nodes: &[String]) -> Vec<(String, String)> {
    let Ok(text) = output(Command::new("sinfo").args(["-h", "-N", "-n", &nodes.join(","), "-o", "%N|%T|%E"])) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        let (name, state, reason) = (f[0], f.get(1).copied().unwrap_or(""), f.get(2).copied().unwrap_or(""));
        let bad = ["down", "drain", "fail", "maint"].iter().any(|b| state.to_lowercase().starts_with(b));
        if bad && !out.iter().any(|(n, _)| n == name) {
            let state = state.to_uppercase();
            let why = match reason {
                "" | "none" => format!("{state} in Slurm"),
                reason => format!("{state} in Slurm (reason: {reason})"),
            };
            out.push((name.to_string(), why));
        }
    }
    out
}

/// A command's stdout, or its stderr as the error.
fn output(cmd: &mut Command) -> Result<String, String> {
    let o = cmd.output().map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !o.status.success() {
        return Err(format!("{:?} failed: {}", cmd.get_program(), String::from_utf8_lossy(&o.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// How the controller reaches a node of an allocation: job steps on it.
pub struct Srun {
    node: String,
    job: String,
    args: Vec<String>,
}

impl Srun {
    /// `srun` running `argv` as a one-task step on the node, beside the run's others.
    fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("srun");
        c.arg(format!("--jobid={}", self.job))
            .args(["--overlap", "--nodes=1", "--ntasks=1", "--quiet", "--kill-on-bad-exit=0"])
            .arg(format!("--nodelist={}", self.node))
            .args(&self.args)
            .arg("--")
            .args(argv);
        c
    }
}

impl Transport for Srun {
    fn dest(&self) -> &str {
        &self.node
    }

    fn run(&self, argv: &[&str]) -> Result<String, NodeError> {
        output(self.command(argv).stdin(Stdio::null()))
            .map_err(|why| NodeError::Unreachable { node: self.node.clone(), why })
    }

    fn copy(&self, from: &Path, to: &Path) -> Result<(), NodeError> {
        copy_through(&self.node, |argv| self.command(argv), from, to)
    }

    fn session(&self, argv: &[&str]) -> Command {
        let mut c = self.command(argv);
        c.stdin(Stdio::piped()).stdout(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        die_with_parent(&mut c);
        c
    }
}
