//! One cell's identity and its finished result, as the results directory records them.
//!
//! These types are the ground floor of everything after a run: the report, `compare`
//! and `--resume` read them, so they carry their own record of the runtime (kind,
//! settings as they were, version, notes, accelerator) rather than the study's or a
//! backend's configuration types — a new configuration field must not silently change
//! what every cell file means. [`CELL_SCHEMA_VERSION`] is bumped on any change.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::results::ClientResult;
use crate::workload::{Pattern, Workload};

/// Version of the cell result layout (2: the runtime is a [`RuntimeRecord`]).
pub const CELL_SCHEMA_VERSION: u32 = 2;

/// One cell of the matrix: a scenario, a client count, a pattern, option values and a
/// repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Stable identifier ([`cell_id`]): the result file name and `--resume`'s key.
    pub id: String,
    pub scenario: String,
    pub pattern: Pattern,
    pub clients: u32,
    /// Values of the study's list-valued workload options.
    pub options: Vec<(String, String)>,
    /// 1-based.
    pub repetition: u32,
    /// The workload each client runs (its directory is assigned per client).
    pub workload: Workload,
}

impl Cell {
    /// Whether the cell is traced (its `attribute = on` option).
    pub fn attributed(&self) -> bool {
        self.options.iter().any(|(k, v)| k == crate::results::attribution::OPTION && v == "on")
    }

    /// The longest the cell may take from launch to its last result: the barrier's
    /// wait, then `cell_timeout` or [`Self::run_allowance`] (what the runner enforces;
    /// a Kubernetes Job's `activeDeadlineSeconds`).
    pub fn deadline(&self, lead: Duration, barrier_timeout: Duration, cell_timeout: Option<Duration>) -> Duration {
        barrier_timeout + cell_timeout.unwrap_or_else(|| self.run_allowance(lead))
    }

    /// Without a `cell_timeout`, how long clients may run from all-ready: go's lead,
    /// the ramp and runtime (an hour for one pass), and half that again (30 s at least).
    pub fn run_allowance(&self, lead: Duration) -> Duration {
        let w = &self.workload;
        let active = w.ramp_time.0 + w.runtime.map_or(Duration::from_secs(3600), |r| r.0);
        lead + active + (active / 2).max(Duration::from_secs(30))
    }
}

/// The identifier of a cell, usable as a file name: `scenario.pattern.cN[.k=v…].rR`.
///
/// Every component is escaped, not replaced: characters outside `[A-Za-z0-9_+,-]`
/// become `%XX`, so scenarios `a/b` and `a_b` (or `a.b`) get distinct ids. An id longer
/// than a file name may be is cut and suffixed with a hash of the whole.
pub fn cell_id(scenario: &str, pattern: Pattern, clients: u32, options: &[(String, String)], rep: u32) -> String {
    let mut id = format!("{}.{pattern}.c{clients}", escape(scenario));
    for (k, v) in options {
        id.push_str(&format!(".{}={}", escape(k), escape(v)));
    }
    id.push_str(&format!(".r{rep}"));
    const MAX: usize = 200; // leaves room for ".json" and temp-file prefixes under 255
    if id.len() > MAX {
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let mut cut = MAX - 17;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        id = format!("{}~{hash:016x}", &id[..cut]);
    }
    id
}

/// Percent-escapes everything but `[A-Za-z0-9_+,-]`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b',' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The runtime a cell ran in, as recorded: what reports show and `compare` matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RuntimeRecord {
    /// The backend kind (its study-file name).
    pub kind: String,
    /// Short display name, e.g. `oci/runc`, `microvm/9p`.
    pub name: String,
    /// The scenario's runtime settings as they were (backend-specific keys).
    pub settings: serde_json::Value,
    /// The runtime's own version line.
    pub version: Option<String>,
    /// Facts worth recording (workarounds applied, platform, helper versions).
    pub notes: Vec<String>,
    /// `kvm` or `tcg` for virtual machines.
    #[serde(default)]
    pub accelerator: Option<String>,
    /// Its clients are containers in cgroups of their runtime's making.
    #[serde(default)]
    pub own_cgroups: bool,
}

/// Whether a cell produced a result for every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    Ok,
    Failed,
}

/// A client that did not deliver a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFailure {
    pub client: u32,
    pub message: String,
    /// The last lines of its log (and of its helpers' logs).
    pub stderr_tail: String,
    /// Where its full log is kept.
    pub stderr_log: PathBuf,
}

/// What made a cell fail, by kind: how a report counts failures and a runner decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The cell's control directory, logs or jobs could not be made.
    Setup,
    /// The runtime is not there (or not usable) where the client was to run.
    MissingRuntime,
    /// A client could not be started.
    Launch,
    /// A client ended with a failure.
    ClientExit,
    /// Clients not ready, or not finished, by the deadline.
    Timeout,
    /// The node a client ran on was lost (its connection ended).
    LostNode,
    /// A client broke the control protocol.
    Protocol,
    /// The user interrupted the run.
    Interrupted,
    /// Clients exited without a result.
    NoResult,
}

impl FailureKind {
    pub fn text(self) -> &'static str {
        match self {
            FailureKind::Setup => "setup",
            FailureKind::MissingRuntime => "runtime missing",
            FailureKind::Launch => "launch",
            FailureKind::ClientExit => "client exited",
            FailureKind::Timeout => "timeout",
            FailureKind::LostNode => "node lost",
            FailureKind::Protocol => "protocol",
            FailureKind::Interrupted => "interrupted",
            FailureKind::NoResult => "no result",
        }
    }
}

/// One finished cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    pub schema_version: u32,
    pub cell: Cell,
    pub scenario_label: String,
    pub runtime: RuntimeRecord,
    pub status: CellStatus,
    /// Why the cell failed.
    pub failure: Option<String>,
    /// The phase it failed in: `setup`, `launch`, `ready`, `run`, `collect`.
    #[serde(default)]
    pub failure_phase: Option<String>,
    /// What made it fail.
    #[serde(default)]
    pub failure_kind: Option<FailureKind>,
    /// Wall-clock ns when the cell's clients were launched / the cell ended.
    pub launched_ns: u64,
    pub finished_ns: u64,
    /// Launch to all clients ready (container start, boot, layout), s. Named
    /// `setup_s` before it said what it measures; read under either name.
    #[serde(alias = "setup_s")]
    pub ready_s: f64,
    /// Launch of the first client to the return of the last launch, s: what starting
    /// the cell's clients cost the controller.
    #[serde(default)]
    pub launch_s: f64,
    /// Launch to every client exited, s (after its run and the writing of its result).
    #[serde(default)]
    pub exited_s: Option<f64>,
    /// Launch to every client torn down (containers deleted, VMs stopped), s; results
    /// are read after it.
    #[serde(default)]
    pub torn_down_s: Option<f64>,
    /// The go signal's start instant, wall-clock ns.
    pub start_ns: Option<u64>,
    /// Whether the host page cache was dropped before the cell.
    pub caches_dropped: bool,
    pub clients: Vec<ClientResult>,
    pub client_failures: Vec<ClientFailure>,
    /// Per client, seconds from launch until its guest had booted and mounted the
    /// share (micro-VMs only), measured by the controller; not part of any I/O figure.
    #[serde(default)]
    pub boot_s: Vec<Option<f64>>,
    /// Where each client ran, in multi-host studies (empty: all on the controller's
    /// host). Client results are already in the controller's clock.
    #[serde(default)]
    pub placements: Vec<ClientPlacement>,
    /// Host CPU of the cell's clients and what served them, sampled through the run,
    /// one series per host.
    #[serde(default)]
    pub cpu: Vec<crate::results::cpu::CpuSeries>,
    /// Where the cell's time and CPU went, layer by layer (attribution on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<crate::results::attribution::Attribution>,
}

/// A client's node and that node's clock against the controller's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientPlacement {
    pub client: u32,
    /// The ssh destination, or the Kubernetes node the pod was scheduled on.
    pub node: String,
    /// Node clock − controller clock, ns, as measured before the cell; `None` where
    /// iostudy cannot measure it (a pod's node keeps the cluster's NTP time).
    pub clock_offset_ns: Option<i64>,
    /// The measurement's uncertainty (half its round trip), ns.
    pub clock_uncertainty_ns: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_escape_instead_of_replacing() {
        let a = cell_id("a/b", Pattern::Read, 1, &[], 1);
        let b = cell_id("a_b", Pattern::Read, 1, &[], 1);
        let c = cell_id("a.b", Pattern::Read, 1, &[], 1);
        assert_eq!(a, "a%2Fb.read.c1.r1");
        assert_eq!(b, "a_b.read.c1.r1");
        assert_eq!(c, "a%2Eb.read.c1.r1");
        assert_eq!(
            cell_id("bare", Pattern::Randwrite, 8, &[("bs".into(), "4k".into()), ("iodepth".into(), "8".into())], 2),
            "bare.randwrite.c8.bs=4k.iodepth=8.r2"
        );
        assert_eq!(cell_id("Kata 9p", Pattern::Read, 1, &[], 1), "Kata%209p.read.c1.r1");
    }

    #[test]
    fn long_ids_stay_file_names_and_distinct() {
        let long = "x".repeat(300);
        let a = cell_id(&long, Pattern::Read, 1, &[], 1);
        let b = cell_id(&long, Pattern::Read, 1, &[], 2);
        assert!(a.len() <= 200 && b.len() <= 200);
        assert_ne!(a, b);
    }
}
