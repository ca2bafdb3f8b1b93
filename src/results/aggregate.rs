//! From client results to cell figures, more honestly than summing fio's output.
//!
//! * **Window bandwidth**: the window is `[latest client start, earliest client end]`,
//!   the span in which *all* clients ran. Bytes moved inside it, by all clients, over
//!   its length: a client that started late or finished early cannot inflate the sum.
//!   Each client's wall-clock-aligned interval series is clipped to its own measured
//!   phase and prorated at the window's edges (uniform rate inside an interval).
//! * **Last-done bandwidth**: all bytes over `[earliest start, latest end]`: a straggler
//!   shows as the gap between it and the window bandwidth.
//! * **fio-style sum**: the sum of each client's own bytes / own runtime, shown beside
//!   it and labelled, because that is what summed fio output reports. The spread of
//!   those per-client rates (min, median, max, coefficient of variation) points at a
//!   slow client or node.
//! * **Latency**: percentiles of the merge of every client's histogram.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::results::ClientResult;
use crate::results::histogram::{LatencySummary, new_latency_histogram};

/// Figures of one cell (one repetition).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellFigures {
    pub clients: u32,
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// Length of the window in which all clients ran, s (0 if they never overlapped).
    pub window_s: f64,
    /// All clients' bytes inside the window / window length.
    pub window_bw_bytes_per_s: f64,
    /// Σ over clients of their own bytes / own runtime (what summed fio output says).
    pub sum_bw_bytes_per_s: f64,
    /// Σ over clients of their own ops / own runtime.
    pub sum_iops: f64,
    /// All clients' bytes / (latest end − earliest start).
    pub bw_last_done_bytes_per_s: f64,
    /// Each client's own rate: the slowest, the median, the fastest.
    pub client_bw_min: f64,
    pub client_bw_median: f64,
    pub client_bw_max: f64,
    /// Standard deviation / mean of the clients' own rates (0 for one client).
    pub client_bw_cv: f64,
    /// Spread of the clients' measured-phase starts, ns (the barrier's accuracy).
    pub start_spread_ns: u64,
    /// Longest client run / window: 1 when all clients ran together.
    pub window_fraction: f64,
    /// Merged completion latency.
    pub latency_ns: LatencySummary,
}

impl CellFigures {
    /// Whether all clients ran at once for a while: without, the window's bandwidth is
    /// not a figure (only the fio-style sum is).
    pub fn has_window(&self) -> bool {
        self.window_s > 0.0
    }

    /// The window bandwidths of those of `reps` that had a common window.
    pub fn windowed_bw(reps: &[CellFigures]) -> Vec<f64> {
        reps.iter().filter(|f| f.has_window()).map(|f| f.window_bw_bytes_per_s).collect()
    }
}

/// Computes a cell's figures; `None` without clients.
pub fn cell_figures(clients: &[ClientResult]) -> Option<CellFigures> {
    cell_figures_and_histogram(clients).map(|(f, _)| f)
}

/// A cell's figures and the merge of its clients' latency histograms.
pub fn cell_figures_and_histogram(clients: &[ClientResult]) -> Option<(CellFigures, Histogram<u64>)> {
    let first = clients.first()?;
    let ws = clients.iter().map(|c| c.start_ns).max().unwrap_or(first.start_ns);
    let we = clients.iter().map(|c| c.end_ns).min().unwrap_or(first.end_ns);
    let min_start = clients.iter().map(|c| c.start_ns).min().unwrap_or(ws);
    let window_ns = we.saturating_sub(ws);
    let window_bytes: f64 = clients.iter().map(|c| bytes_between(c, ws, we)).sum();
    let mut merged = new_latency_histogram();
    let mut sum_bw = 0.0;
    let mut sum_iops = 0.0;
    let mut longest = 0u64;
    for c in clients {
        if let Ok(h) = c.histograms.all.decode() {
            merged.add(&h).expect("same bounds");
        }
        sum_bw += c.summary.bw_bytes_per_s;
        sum_iops += c.summary.iops;
        longest = longest.max(c.end_ns.saturating_sub(c.start_ns));
    }
    let window_s = window_ns as f64 / 1e9;
    let max_end = clients.iter().map(|c| c.end_ns).max().unwrap_or(we);
    let all_bytes: f64 = clients.iter().map(|c| (c.read.bytes + c.write.bytes) as f64).sum();
    let span_s = max_end.saturating_sub(min_start) as f64 / 1e9;
    let mut rates: Vec<f64> = clients.iter().map(|c| c.summary.bw_bytes_per_s).collect();
    rates.sort_by(f64::total_cmp);
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let var = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rates.len() as f64;
    let figures = CellFigures {
        clients: clients.len() as u32,
        window_start_ns: ws,
        window_end_ns: we.max(ws),
        window_s,
        window_bw_bytes_per_s: if window_ns > 0 { window_bytes / window_s } else { 0.0 },
        sum_bw_bytes_per_s: sum_bw,
        sum_iops,
        bw_last_done_bytes_per_s: if span_s > 0.0 { all_bytes / span_s } else { 0.0 },
        client_bw_min: rates[0],
        client_bw_median: rates[rates.len() / 2],
        client_bw_max: rates[rates.len() - 1],
        client_bw_cv: if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
        start_spread_ns: ws - min_start,
        window_fraction: if longest > 0 { window_ns as f64 / longest as f64 } else { 0.0 },
        latency_ns: LatencySummary::of(&merged),
    };
    Some((figures, merged))
}

/// Bytes a client moved in `[from, to)`, from its interval series.
pub fn bytes_between(c: &ClientResult, from: u64, to: u64) -> f64 {
    let s = &c.intervals;
    let mut total = 0.0;
    for (i, &bytes) in s.bytes.iter().enumerate() {
        let a = s.start_of(i).max(c.start_ns);
        let b = s.start_of(i + 1).min(c.end_ns.max(c.start_ns + 1));
        if b <= a || bytes == 0 {
            continue;
        }
        let lo = a.max(from);
        let hi = b.min(to);
        if hi > lo {
            total += bytes as f64 * (hi - lo) as f64 / (b - a) as f64;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::synthetic;
    use crate::workload::{Pattern, Span, Workload};

    fn client(id: u32, start_ns: u64, runtime_s: u64) -> ClientResult {
        let mut w = Workload::new(Pattern::Read, 65536, 1 << 30, "/x");
        w.runtime = Some(Span(std::time::Duration::from_secs(runtime_s)));
        w.log_interval = Span(std::time::Duration::from_millis(100));
        synthetic::client(&w, id, start_ns)
    }

    #[test]
    fn window_excludes_a_late_client() {
        let s0 = 1_000_000_000_000u64;
        // Two clients run 10 s together; a third starts 5 s late.
        let a = client(0, s0, 10);
        let b = client(1, s0, 10);
        let c = client(2, s0 + 5_000_000_000, 10);
        let f = cell_figures(&[a.clone(), b.clone(), c.clone()]).unwrap();
        assert_eq!(f.window_start_ns, s0 + 5_000_000_000);
        assert_eq!(f.window_end_ns, s0 + 10_000_000_000);
        assert!((f.window_s - 5.0).abs() < 1e-9);
        assert_eq!(f.start_spread_ns, 5_000_000_000);
        assert!((f.window_fraction - 0.5).abs() < 1e-9);
        // Each client moves ~100 MiB/s per thread; in the window all three run.
        let per_client = a.summary.bw_bytes_per_s;
        assert!((f.window_bw_bytes_per_s / (3.0 * per_client) - 1.0).abs() < 0.02, "{f:?}");
        assert!((f.sum_bw_bytes_per_s / (3.0 * per_client) - 1.0).abs() < 1e-9);
        // Last done: 3 clients' bytes over the 15 s from the first start to the last end.
        assert!((f.bw_last_done_bytes_per_s / (3.0 * per_client * 10.0 / 15.0) - 1.0).abs() < 0.01, "{f:?}");
        assert!(f.client_bw_cv < 1e-9 && f.client_bw_min == f.client_bw_max);
        let h = f.latency_ns;
        assert_eq!(h.count, 3 * a.histograms.all.decode().unwrap().len());
    }

    #[test]
    fn a_node_clock_is_taken_out() {
        let s0 = 1_000_000_000_000u64;
        let mut late = client(1, s0 + 2_000_000_000, 10); // a node 2 s ahead
        let local = client(0, s0, 10);
        late.to_controller_clock(2_000_000_000);
        assert_eq!(late.start_ns, s0);
        let f = cell_figures(&[local.clone(), late.clone()]).unwrap();
        assert!((f.window_s - 10.0).abs() < 1e-9, "{f:?}");
        let all = bytes_between(&late, 0, u64::MAX);
        assert!((all - late.read.bytes as f64).abs() < 1.0);
        assert!((bytes_between(&late, s0, s0 + 5_000_000_000) / all - 0.5).abs() < 0.02);
    }

    #[test]
    fn bytes_between_covers_the_whole_run() {
        let c = client(0, 1_000_000_000_050, 3);
        let all = bytes_between(&c, 0, u64::MAX);
        assert!((all - (c.read.bytes as f64)).abs() < 1.0, "{all} vs {}", c.read.bytes);
    }
}
