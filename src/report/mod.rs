//! Everything that turns results into something a person reads.
//!
//! [`model::Report`] computes the figures once; each output renders that model:
//! terminal text, `table.md`, `table.csv`, the charts (SVG + PNG) and `report.html`
//! ([`write_all`]), plus `compare` between two studies. Renderers return text, so every
//! rendering can be snapshot-tested; writing is atomic.

pub mod attribution;
pub mod charts;
pub mod client;
pub mod compare;
pub mod html;
pub mod model;
pub mod plan;
pub mod runtimes;
pub mod summary;
pub mod table;
pub mod units;

use std::path::{Path, PathBuf};

use crate::safety::write_atomic;
use model::Report;

/// Writes every report file into `dir/report/`; returns that directory.
pub fn write_all(r: &Report, dir: &Path) -> anyhow::Result<PathBuf> {
    let out = dir.join("report");
    crate::safety::ensure_dir(&out)?;
    let svgs = charts::svgs(r).map_err(anyhow::Error::msg)?;
    let write = |name: &str, text: &str| -> anyhow::Result<()> {
        write_atomic(&out.join(name), text.as_bytes()).map_err(|e| anyhow::anyhow!("cannot write {name}: {e}"))
    };
    for (name, svg) in &svgs.charts {
        write(&format!("{name}.svg"), svg)?;
    }
    charts::write_pngs(r, &out).map_err(anyhow::Error::msg)?;
    write("table.md", &table::markdown(r))?;
    write("table.csv", &table::csv(r))?;
    write("report.html", &html::render(r, &svgs).map_err(anyhow::Error::msg)?)?;
    Ok(out)
}

/// The warnings by kind, most telling first: a line per kind with its count, then its
/// first warning (the rest are in the report).
pub fn warnings_text(r: &Report) -> String {
    let mut out = String::new();
    let groups = r.warning_groups();
    if groups.is_empty() {
        return out;
    }
    out.push_str("\nWarnings:\n");
    for g in &groups {
        let n = g.warnings.len();
        out.push_str(&format!("  - {} ({n}): {}\n", g.title, g.warnings[0]));
        if n > 1 {
            out.push_str(&format!("    … and {} more like it (report.html lists them)\n", n - 1));
        }
    }
    out
}

/// The findings a report opens with, as text: each scenario against the baseline per
/// pattern, and the largest host CPU cost.
pub fn findings_text(r: &Report) -> String {
    let f = r.findings();
    let mut out = String::new();
    if f.rows.is_empty() && f.costliest.is_none() {
        return out;
    }
    let avg = if f.averaged { ", geometric mean over client counts" } else { "" };
    out.push_str(&format!("Findings (against {}{avg}):\n", f.baseline));
    for row in &f.rows {
        let cells: Vec<String> = row.cells.iter().map(|c| format!("{} {}", c.pattern, c.text())).collect();
        out.push_str(&format!("  {}: {}\n", row.label, cells.join("; ")));
    }
    if let Some(c) = &f.costliest {
        out.push_str(&format!("  largest host CPU cost: {}\n", c.text(&f.baseline)));
    }
    out.push('\n');
    out
}

/// The terminal rendering: the findings, both tables and the warnings.
pub fn terminal(r: &Report) -> String {
    let mut out = findings_text(r);
    out.push_str(&table::latency_text(r));
    out.push('\n');
    out.push_str(&table::bandwidth_text(r));
    out.push_str(&attribution::text(r));
    out.push_str(&warnings_text(r));
    out
}
