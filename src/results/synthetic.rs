//! Synthetic, deterministic results: what the mock runtime's clients report, and the
//! fixtures of tests and benchmarks of the reports. Figures are made up (about
//! 100 MiB/s per thread, latencies spread over 0.1–10 ms) but every field is filled
//! the way a real client fills it, so aggregation and reports run on them unchanged.

use crate::results::cell::{CELL_SCHEMA_VERSION, Cell, CellResult, CellStatus, RuntimeRecord};
use crate::results::cpu::{CpuSample, CpuSeries};
use crate::results::histogram::{EncodedHistogram, LatencySummary, new_latency_histogram};
use crate::results::{
    ClientResult, DirectionStats, DirectionSummary, Histograms, HostFacts, IntervalSeries, LayoutStats, SCHEMA_VERSION,
    Summary, ThreadStats,
};
use crate::rng::SplitMix64;
use crate::workload::Workload;

/// A deterministic result: ~100 MiB/s per thread, latencies spread over 0.1–10 ms.
pub fn client(w: &Workload, client_id: u32, start_ns: u64) -> ClientResult {
    let runtime_ns = w.runtime.map_or(1_000_000_000, |r| r.0.as_nanos() as u64);
    let bs = w.bs.get();
    let per_thread_bytes = (100u64 << 20) * runtime_ns / 1_000_000_000 / bs * bs;
    let mut rng = SplitMix64::new(w.randseed ^ u64::from(client_id));
    let mut hist = new_latency_histogram();
    let ops = per_thread_bytes / bs * u64::from(w.numjobs);
    for _ in 0..ops.min(10_000) {
        hist.saturating_record(100_000 + rng.next_u64() % 9_900_000);
    }
    let reads = w.rw.read_percent(w.rwmixread) > 0;
    let total = DirectionStats { bytes: per_thread_bytes * u64::from(w.numjobs), ops };
    let (read, write) = if reads { (total, DirectionStats::default()) } else { (DirectionStats::default(), total) };
    let secs = runtime_ns as f64 / 1e9;
    let dir = DirectionSummary {
        bw_bytes_per_s: total.bytes as f64 / secs,
        iops: ops as f64 / secs,
        latency_ns: LatencySummary::of(&hist),
    };
    let interval_ns = w.log_interval.0.as_nanos() as u64;
    let first_index = start_ns / interval_ns;
    let last_index = (start_ns + runtime_ns - 1) / interval_ns;
    let n = (last_index - first_index + 1) as usize;
    let mut bytes = vec![total.bytes / n as u64; n];
    bytes[0] += total.bytes % n as u64;
    let mut op_series = vec![ops / n as u64; n];
    op_series[0] += ops % n as u64;
    ClientResult {
        schema_version: SCHEMA_VERSION,
        iostudy_version: env!("CARGO_PKG_VERSION").to_string(),
        client_id,
        host: HostFacts::current(),
        workload: w.clone(),
        ioengine_used: w.ioengine,
        ioengine_note: None,
        start_ns,
        end_ns: start_ns + runtime_ns,
        go_seen_ns: None,
        go_instant_ns: None,
        threads: (0..w.numjobs)
            .map(|t| ThreadStats {
                thread: t,
                file: w.file_path(t).display().to_string(),
                read: if reads {
                    DirectionStats { bytes: per_thread_bytes, ops: per_thread_bytes / bs }
                } else {
                    DirectionStats::default()
                },
                write: if reads {
                    DirectionStats::default()
                } else {
                    DirectionStats { bytes: per_thread_bytes, ops: per_thread_bytes / bs }
                },
                errors: 0,
                start_ns,
                end_ns: start_ns + runtime_ns,
            })
            .collect(),
        read,
        write,
        summary: Summary {
            runtime_s: secs,
            bw_bytes_per_s: dir.bw_bytes_per_s,
            iops: dir.iops,
            latency_ns: dir.latency_ns,
            read: reads.then_some(dir),
            write: (!reads).then_some(dir),
        },
        histograms: Histograms { all: EncodedHistogram::encode(&hist), read: None, write: None },
        intervals: IntervalSeries { interval_ns, first_index, bytes, ops: op_series, shift_ns: 0 },
        layout: LayoutStats::default(),
        measured_by: "synthetic figures (no I/O)".into(),
        guest_trace: None,
    }
}

/// Host CPU a synthetic cell costs: a quarter CPU-second per GiB moved.
pub const CPU_S_PER_GIB: f64 = 0.25;

/// A finished cell of synthetic clients, for fixtures and benchmarks of the reports;
/// its host CPU is [`CPU_S_PER_GIB`], spent evenly, on a host busy 20 % more.
pub fn cell(cell: Cell, clients: Vec<ClientResult>) -> CellResult {
    let start = clients.iter().map(|c| c.start_ns).min().unwrap_or(0);
    let end = clients.iter().map(|c| c.end_ns).max().unwrap_or(start);
    let gib = clients.iter().map(|c| (c.read.bytes + c.write.bytes) as f64).sum::<f64>() / (1u64 << 30) as f64;
    let cpu_ns = (gib * CPU_S_PER_GIB * 1e9) as u64;
    let at = |t: u64, used: u64| CpuSample { t_ns: t, cgroup_ns: used, host_busy_ns: used * 6 / 5 };
    let cpu = vec![CpuSeries {
        node: None,
        cpus: 2,
        machine: None,
        covers_containers: true,
        samples: vec![at(start, 0), at(end.max(start + 1), cpu_ns)],
    }];
    CellResult {
        schema_version: CELL_SCHEMA_VERSION,
        scenario_label: cell.scenario.clone(),
        runtime: RuntimeRecord {
            kind: "synthetic".into(),
            name: "synthetic".into(),
            settings: serde_json::Value::Null,
            version: Some(format!("{} (synthetic)", cell.scenario)),
            notes: Vec::new(),
            accelerator: None,
            own_cgroups: false,
        },
        cell,
        status: CellStatus::Ok,
        failure: None,
        failure_phase: None,
        failure_kind: None,
        launched_ns: start,
        finished_ns: end,
        ready_s: 0.1,
        launch_s: 0.05,
        exited_s: None,
        torn_down_s: None,
        start_ns: Some(start),
        caches_dropped: true,
        clients,
        client_failures: Vec::new(),
        boot_s: Vec::new(),
        placements: Vec::new(),
        cpu,
        attribution: None,
    }
}
