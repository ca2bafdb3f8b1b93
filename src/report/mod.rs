//! Everything that turns results into something a person reads.
//!
//! [`model::Report`] computes the figures once; each output renders that model:
//! terminal text, `table.md`, `table.csv`, the charts (SVG + PNG) and `report.html`
//! ([`write_all`]), plus `compare` between two studies. Renderers return text, so every
//! rendering can be snapshot-tested; writing is atomic.

pub mod charts;
pub mod client;
pub mod compare;
pub mod html;
pub mod model;
pub mod runtimes;
pub mod summary;
pub mod table;
pub mod units;

use std::path::{Path, PathBuf};

use crate::results::write_atomic;
use model::Report;

/// Writes every report file into `dir/report/`; returns that directory.
pub fn write_all(r: &Report, dir: &Path) -> anyhow::Result<PathBuf> {
    let out = dir.join("report");
    std::fs::create_dir_all(&out)?;
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

/// The terminal rendering: both tables and the warnings.
pub fn terminal(r: &Report) -> String {
    let mut out = table::latency_text(r);
    out.push('\n');
    out.push_str(&table::bandwidth_text(r));
    if !r.warnings.is_empty() {
        out.push_str("\nWarnings:\n");
        for w in &r.warnings {
            out.push_str(&format!("  - {w}\n"));
        }
    }
    out
}
