//! The client result document — the contract between the engine and everything after it.
//!
//! `iostudy bench --json` prints it, `iostudy worker` writes it as
//! `client-<id>.json`, and the runner, aggregation and reports read it. Every field
//! carries its unit in its name (`_ns`, `_bytes`, `_per_s`). Wall-clock times are
//! CLOCK_REALTIME nanoseconds since the Unix epoch, so clients on different hosts can
//! be lined up; the interval series is aligned to wall-clock multiples of its width
//! for the same reason. The version is bumped on any incompatible change.

use serde::{Deserialize, Serialize};

use crate::results::histogram::{EncodedHistogram, LatencySummary};
use crate::workload::{IoEngineKind, Workload};

/// Version of this document's layout.
pub const SCHEMA_VERSION: u32 = 1;

/// One client's whole result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientResult {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// Version of the iostudy binary that measured.
    pub iostudy_version: String,
    /// Client index within its cell (0 for `bench`).
    pub client_id: u32,
    /// Where it ran.
    pub host: HostFacts,
    /// The workload, as run.
    pub workload: Workload,
    /// The I/O engine that actually ran (differs from the workload's after a fallback).
    pub ioengine_used: IoEngineKind,
    /// Why the engine differs from the one asked for, if it does.
    pub ioengine_note: Option<String>,
    /// Start of the measured phase (after layout and ramp), wall-clock ns: the first
    /// measured submission of any thread (not the agreed start, so a client that woke
    /// late shows it and the common window excludes its late start).
    pub start_ns: u64,
    /// End of the measured phase (last completion of any thread), wall-clock ns.
    pub end_ns: u64,
    /// When the client had the start signal, wall-clock ns, and the instant it named:
    /// go in time means the barrier held; a start well after it is the runtime waking
    /// the client late.
    #[serde(default)]
    pub go_seen_ns: Option<u64>,
    #[serde(default)]
    pub go_instant_ns: Option<u64>,
    /// Per-thread counters.
    pub threads: Vec<ThreadStats>,
    /// Reads of all threads in the measured phase.
    pub read: DirectionStats,
    /// Writes of all threads in the measured phase.
    pub write: DirectionStats,
    /// The headline figures.
    pub summary: Summary,
    /// Completion-latency histograms of the measured phase.
    pub histograms: Histograms,
    /// Bytes and operations per wall-clock-aligned interval.
    pub intervals: IntervalSeries,
    /// What preparing the files cost (not part of any figure).
    pub layout: LayoutStats,
    /// What measured: `iostudy 0.2.0`, or fio (run inside the boundary, or imported)
    /// with its version. Absent in documents older than this field: iostudy.
    #[serde(default = "measured_by_iostudy")]
    pub measured_by: String,
    /// A micro-VM's share requests as its own kernel timed them (attribution on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_trace: Option<crate::results::attribution::GuestTrace>,
}

fn measured_by_iostudy() -> String {
    "iostudy".to_string()
}

/// What a client result is made of, before its summary is computed.
pub struct ResultParts {
    pub client_id: u32,
    pub host: HostFacts,
    pub workload: Workload,
    pub ioengine_used: IoEngineKind,
    pub ioengine_note: Option<String>,
    pub measured_by: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub threads: Vec<ThreadStats>,
    pub read_hist: hdrhistogram::Histogram<u64>,
    pub write_hist: hdrhistogram::Histogram<u64>,
    pub intervals: IntervalSeries,
    pub layout: LayoutStats,
}

impl ClientResult {
    /// A result from its parts: totals from the threads, rates over the measured phase,
    /// percentiles from the merged histograms (per direction kept for mixed patterns).
    pub fn from_parts(p: ResultParts) -> ClientResult {
        let mut read = DirectionStats::default();
        let mut write = DirectionStats::default();
        for t in &p.threads {
            read.add(t.read);
            write.add(t.write);
        }
        let mut all_hist = p.read_hist.clone();
        all_hist.add(&p.write_hist).expect("same bounds");
        let runtime_s = (p.end_ns.saturating_sub(p.start_ns)) as f64 / 1e9;
        let rate = |x: u64| if runtime_s > 0.0 { x as f64 / runtime_s } else { 0.0 };
        let direction = |d: DirectionStats, h: &hdrhistogram::Histogram<u64>| {
            (d.ops > 0).then(|| DirectionSummary {
                bw_bytes_per_s: rate(d.bytes),
                iops: rate(d.ops),
                latency_ns: LatencySummary::of(h),
            })
        };
        let summary = Summary {
            runtime_s,
            bw_bytes_per_s: rate(read.bytes + write.bytes),
            iops: rate(read.ops + write.ops),
            latency_ns: LatencySummary::of(&all_hist),
            read: direction(read, &p.read_hist),
            write: direction(write, &p.write_hist),
        };
        let w = &p.workload;
        let mixed = !matches!(w.rw.read_percent(w.rwmixread), 0 | 100);
        ClientResult {
            schema_version: SCHEMA_VERSION,
            iostudy_version: env!("CARGO_PKG_VERSION").to_string(),
            client_id: p.client_id,
            host: p.host,
            ioengine_used: p.ioengine_used,
            ioengine_note: p.ioengine_note,
            start_ns: p.start_ns,
            end_ns: p.end_ns,
            go_seen_ns: None,
            go_instant_ns: None,
            threads: p.threads,
            read,
            write,
            summary,
            histograms: Histograms {
                all: EncodedHistogram::encode(&all_hist),
                read: mixed.then(|| EncodedHistogram::encode(&p.read_hist)),
                write: mixed.then(|| EncodedHistogram::encode(&p.write_hist)),
            },
            intervals: p.intervals,
            layout: p.layout,
            measured_by: p.measured_by,
            guest_trace: None,
            workload: p.workload,
        }
    }
}

/// Facts about the host (or guest) the client ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// `/sys/devices/system/clocksource/clocksource0/current_clocksource`, if readable
    /// (for a client: when it started measuring).
    pub clock_source: Option<String>,
    /// CPUs available to the client.
    pub cpus: u32,
    /// `model name` of /proc/cpuinfo (a history shows when it changed).
    #[serde(default)]
    pub cpu_model: Option<String>,
    /// A client's CLOCK_MONOTONIC as measured before measuring: the smallest step it
    /// advances by, ns (a jiffies clock steps by 1–10 ms and makes every latency 0).
    #[serde(default)]
    pub clock_resolution_ns: Option<u64>,
    /// `clock_getres(CLOCK_MONOTONIC)`, ns: what the kernel claims.
    #[serde(default)]
    pub clock_getres_ns: Option<u64>,
    /// What one clock reading costs, ns: every latency includes about one.
    #[serde(default)]
    pub clock_read_ns: Option<u64>,
    /// A client's clock source when it finished: differs from `clock_source` when the
    /// kernel switched clocks mid-run (its latencies then mix two clocks).
    #[serde(default)]
    pub clock_source_end: Option<String>,
    /// A guest that set its wall clock by the controller's before measuring: the
    /// correction applied (controller − guest, ns) and its uncertainty. Its times are
    /// then in the controller's clock already.
    #[serde(default)]
    pub clock_synced_offset_ns: Option<i64>,
    #[serde(default)]
    pub clock_sync_uncertainty_ns: Option<u64>,
    /// What the engine timed I/O with when not CLOCK_MONOTONIC itself (the TSC, where
    /// reading that clock is slow), and why.
    #[serde(default)]
    pub timer: Option<String>,
}

impl HostFacts {
    /// Whether the clock source changed while the client measured.
    pub fn clock_changed(&self) -> bool {
        self.clock_source_end.is_some() && self.clock_source_end != self.clock_source
    }
}

/// Bytes and operations in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DirectionStats {
    pub bytes: u64,
    pub ops: u64,
}

impl DirectionStats {
    pub fn add(&mut self, other: DirectionStats) {
        self.bytes += other.bytes;
        self.ops += other.ops;
    }
}

/// One thread's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadStats {
    pub thread: u32,
    pub file: String,
    pub read: DirectionStats,
    pub write: DirectionStats,
    /// Failed I/Os (the run stops at the first one, so this is 0 in a finished result
    /// unless a later engine continues on errors).
    pub errors: u64,
    /// Wall-clock ns of this thread's first measured submission.
    #[serde(default)]
    pub start_ns: u64,
    /// Wall-clock ns of this thread's last completion.
    pub end_ns: u64,
}

/// Headline figures of the measured phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Length of the measured phase, s.
    pub runtime_s: f64,
    /// All bytes moved / runtime.
    pub bw_bytes_per_s: f64,
    /// All operations / runtime.
    pub iops: f64,
    /// Completion latency of all operations.
    pub latency_ns: LatencySummary,
    /// Reads alone (absent when the pattern does not read).
    pub read: Option<DirectionSummary>,
    /// Writes alone (absent when the pattern does not write).
    pub write: Option<DirectionSummary>,
}

/// Figures of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DirectionSummary {
    pub bw_bytes_per_s: f64,
    pub iops: f64,
    pub latency_ns: LatencySummary,
}

/// Serialized completion-latency histograms (ns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    /// Every operation.
    pub all: EncodedHistogram,
    /// Reads only, for mixed patterns.
    pub read: Option<EncodedHistogram>,
    /// Writes only, for mixed patterns.
    pub write: Option<EncodedHistogram>,
}

/// Bytes and operations per interval; interval `i` covers wall-clock
/// `[(first_index + i) * interval_ns - shift_ns, (first_index + i + 1) * interval_ns - shift_ns)`.
/// The first and last intervals are usually partial. Boundaries are multiples of the
/// interval in the clock of the host that measured; `shift_ns` (that clock minus the
/// controller's, 0 on the controller's host) places them in the controller's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalSeries {
    pub interval_ns: u64,
    pub first_index: u64,
    pub bytes: Vec<u64>,
    pub ops: Vec<u64>,
    #[serde(default)]
    pub shift_ns: i64,
}

impl IntervalSeries {
    /// The start of interval `i`, wall-clock ns in the controller's clock.
    pub fn start_of(&self, i: usize) -> u64 {
        self.first_index.saturating_add(i as u64).saturating_mul(self.interval_ns).saturating_add_signed(-self.shift_ns)
    }
}

impl ClientResult {
    /// Moves every time of this result from the clock of the host that measured into
    /// the controller's: `offset_ns` is that clock minus the controller's.
    pub fn to_controller_clock(&mut self, offset_ns: i64) {
        let shift = |t: &mut u64| *t = t.saturating_add_signed(-offset_ns);
        shift(&mut self.start_ns);
        shift(&mut self.end_ns);
        if let Some(t) = &mut self.go_seen_ns {
            shift(t);
        }
        if let Some(t) = &mut self.go_instant_ns {
            shift(t);
        }
        for t in &mut self.threads {
            shift(&mut t.start_ns);
            shift(&mut t.end_ns);
        }
        self.intervals.shift_ns += offset_ns;
    }
}

/// Cost of preparing the files.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LayoutStats {
    /// Files reused as they were (already the right size).
    pub files_reused: u32,
    /// Bytes written to create or extend files.
    pub bytes_written: u64,
    pub seconds: f64,
}
