//! The table `iostudy run` prints when it finishes: one row per cell, aggregate
//! bandwidth over the common window beside the fio-style sum, merged p50/p99 in µs
//! (the seed study's unit), and the cell's status.

use std::fmt::Write;

use crate::report::units::bandwidth;
use crate::results::aggregate::cell_figures;
use crate::results::store::{CellResult, CellStatus};

/// Renders the summary of `cells` (in the order given).
pub fn render(cells: &[CellResult]) -> String {
    let mut rows: Vec<[String; 9]> = vec![
        ["scenario", "pattern", "clients", "options", "rep", "bw (window)", "bw (fio sum)", "p50 µs", "p99 µs"]
            .map(String::from),
    ];
    let mut failures = Vec::new();
    for c in cells {
        let cell = &c.cell;
        let opts = cell.options.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        let base = [
            crate::text::printable(&c.scenario_label).into_owned(),
            cell.pattern.to_string(),
            cell.clients.to_string(),
            opts,
            cell.repetition.to_string(),
        ];
        let figures = match (c.status, cell_figures(&c.clients)) {
            (CellStatus::Ok, Some(f)) => [
                // Clients that never all ran at once have no window to measure over: the
                // fio-style sum beside it is all there is.
                if f.has_window() { bandwidth(f.window_bw_bytes_per_s) } else { "no common window".into() },
                bandwidth(f.sum_bw_bytes_per_s),
                format!("{:.0}", f.latency_ns.p50 as f64 / 1e3),
                format!("{:.0}", f.latency_ns.p99 as f64 / 1e3),
            ],
            _ => {
                let why = crate::text::printable(c.failure.as_deref().unwrap_or("no result")).into_owned();
                failures.push(format!("{}: {why}", cell.id));
                ["FAILED".into(), "-".into(), "-".into(), "-".into()]
            }
        };
        let [a, b, c2, d, e] = base;
        let [f, g, h, i] = figures;
        rows.push([a, b, c2, d, e, f, g, h, i]);
    }
    let widths: Vec<usize> = (0..9).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let show_opts = rows.iter().skip(1).any(|r| !r[3].is_empty());
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i == 3 && !show_opts {
                continue;
            }
            let w = widths[i];
            if i >= 5 {
                let _ = write!(line, "  {cell:>w$}");
            } else {
                let _ = write!(line, "{}{cell:<w$}", if i == 0 { "" } else { "  " });
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if !failures.is_empty() {
        let _ = writeln!(out, "\nfailed cells:");
        for f in failures {
            let _ = writeln!(out, "  {f}");
        }
    }
    out
}
