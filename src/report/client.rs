//! The human summary of one client's result, laid out like fio's so its readers feel
//! at home: a job line, then per direction IOPS / bandwidth and the latency figures.

use std::fmt::Write;

use crate::report::units::{bandwidth, count, latency};
use crate::results::{ClientResult, DirectionSummary};

/// Renders `r` as the text `iostudy bench` prints.
pub fn render(r: &ClientResult) -> String {
    let w = &r.workload;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: bs={}, size={}, numjobs={}, ioengine={}, iodepth={}, direct={}, {}",
        w.rw,
        w.bs,
        w.size,
        w.numjobs,
        r.ioengine_used,
        if r.ioengine_used == crate::engine::IoEngineKind::Psync { 1 } else { w.iodepth },
        u8::from(w.direct),
        match w.runtime {
            Some(t) => format!("runtime={t}"),
            None => "one pass".to_string(),
        },
    );
    if let Some(note) = &r.ioengine_note {
        let _ = writeln!(out, "  note: {note}");
    }
    let s = &r.summary;
    for (name, d, bytes) in [("read", &s.read, r.read.bytes), ("write", &s.write, r.write.bytes)] {
        if let Some(d) = d {
            direction(&mut out, name, d, bytes, s.runtime_s);
        }
    }
    if s.read.is_some() && s.write.is_some() {
        let _ = writeln!(out, "  total: IOPS={}, BW={}", count(s.iops), bandwidth(s.bw_bytes_per_s));
    }
    let l = &r.layout;
    let _ = writeln!(
        out,
        "  layout: {} file(s) reused, {} written in {:.2}s (not measured)",
        l.files_reused,
        crate::engine::human_bytes(l.bytes_written),
        l.seconds
    );
    out
}

fn direction(out: &mut String, name: &str, d: &DirectionSummary, bytes: u64, runtime_s: f64) {
    let l = &d.latency_ns;
    let _ = writeln!(
        out,
        "  {name}: IOPS={}, BW={} ({} in {:.2}s)",
        count(d.iops),
        bandwidth(d.bw_bytes_per_s),
        crate::engine::human_bytes(bytes),
        runtime_s
    );
    let _ = writeln!(
        out,
        "    lat: min={}, mean={}, max={}",
        latency(l.min as f64),
        latency(l.mean),
        latency(l.max as f64)
    );
    let _ = writeln!(
        out,
        "    lat percentiles: p50={}, p90={}, p99={}, p99.9={}",
        latency(l.p50 as f64),
        latency(l.p90 as f64),
        latency(l.p99 as f64),
        latency(l.p999 as f64)
    );
}
