//! `history report`: each cell's figures over the runs of its study, with their 95 %
//! intervals, and the runs marked where the environment changed (`runtime runc: 1.1.5
//! → 1.1.12`), so a step in a line can be read against what was upgraded. Latency
//! percentiles over all runs are exact merges of the kept histograms. One
//! self-contained HTML page (inline SVG), and a PNG per cell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use minijinja::{Environment, context};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use crate::history::{RunRecord, environment_changes};
use crate::report::charts::{FONT, err, png, register_font, scenario_color};
use crate::report::units::latency;
use crate::results::histogram::{LatencySummary, new_latency_histogram};

const TEMPLATE: &str = include_str!("../../templates/trend.html");
const MIB: f64 = 1024.0 * 1024.0;
const DIMS: (u32, u32) = (900, 300);

/// The runs of one study.
#[derive(Debug, Serialize)]
struct StudyTrend {
    name: String,
    hash: String,
    runs: Vec<RunLine>,
    cells: Vec<CellTrend>,
}

#[derive(Debug, Serialize)]
struct RunLine {
    index: usize,
    started: String,
    iostudy: String,
    source: String,
    /// What changed since the run before (empty for the first).
    changes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CellTrend {
    title: String,
    svg: String,
    png: String,
    /// Percentiles of every run's histogram merged.
    pooled: String,
}

/// One cell's series: per run index (1-based), its figures.
struct Series<'a> {
    title: String,
    points: Vec<(usize, &'a crate::history::CellRecord)>,
}

fn started(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Every run's study, in the order their first runs ran.
fn by_study(runs: &[RunRecord]) -> Vec<Vec<&RunRecord>> {
    let mut order: Vec<&str> = Vec::new();
    let mut map: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
    for r in runs {
        if !order.contains(&r.study_hash.as_str()) {
            order.push(&r.study_hash);
        }
        map.entry(&r.study_hash).or_default().push(r);
    }
    order.into_iter().map(|h| map.remove(h).unwrap_or_default()).collect()
}

/// Writes `trend.html` and a PNG per cell into `dir` (already checked); returns the
/// page's path.
pub fn write(runs: &[RunRecord], dir: &Path) -> Result<PathBuf, String> {
    register_font();
    let mut studies = Vec::new();
    let mut png_count = 0;
    for mut study in by_study(runs) {
        study.sort_by_key(|r| r.started_ns);
        let lines: Vec<RunLine> = study
            .iter()
            .enumerate()
            .map(|(i, r)| RunLine {
                index: i + 1,
                started: started(r.started_ns),
                iostudy: r.iostudy_version.clone(),
                source: r.source.clone(),
                changes: if i == 0 {
                    Vec::new()
                } else {
                    environment_changes(&study[i - 1].environment, &r.environment)
                },
            })
            .collect();
        let changed: Vec<usize> = lines.iter().filter(|l| !l.changes.is_empty()).map(|l| l.index).collect();
        let mut keys: Vec<&crate::report::model::GroupKey> = Vec::new();
        for r in &study {
            for c in &r.cells {
                if !keys.contains(&&c.key) {
                    keys.push(&c.key);
                }
            }
        }
        let mut cells = Vec::new();
        for key in keys {
            let points: Vec<_> = study.iter().enumerate().filter_map(|(i, r)| Some((i + 1, r.cell(key)?))).collect();
            let series = Series { title: points[0].1.title(), points };
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, DIMS).into_drawing_area();
                draw(&root, &series, study.len(), &changed)?;
                root.present().map_err(err)?;
            }
            png_count += 1;
            let png_name = format!("trend-{png_count}.png");
            let bytes = png(DIMS, |area| draw(area, &series, study.len(), &changed))?;
            let path = dir.join(&png_name);
            crate::safety::write_atomic(&path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            cells.push(CellTrend { title: series.title.clone(), svg, png: png_name, pooled: pooled(&series) });
        }
        studies.push(StudyTrend {
            name: study[0].study_name.clone(),
            hash: study[0].study_hash.chars().take(12).collect(),
            runs: lines,
            cells,
        });
    }
    let mut env = Environment::new();
    env.add_template("trend.html", TEMPLATE).map_err(|e| format!("trend template: {e}"))?;
    let page = env
        .get_template("trend.html")
        .and_then(|t| t.render(context! { studies => minijinja::Value::from(minijinja::value::Serde(&studies)), version => env!("CARGO_PKG_VERSION") }))
        .map_err(|e| format!("rendering the trend page: {e}"))?;
    let path = dir.join("trend.html");
    crate::safety::write_atomic(&path, page.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// p50 and p99 of every run's histogram merged, with the count of runs that had one.
fn pooled(s: &Series<'_>) -> String {
    let mut merged: Histogram<u64> = new_latency_histogram();
    let mut runs = 0;
    for (_, c) in &s.points {
        if c.histogram.is_empty() {
            continue;
        }
        let Ok(h) = Deserializer::new().deserialize::<u64, _>(&mut c.histogram.as_slice()) else { continue };
        if merged.add(&h).is_ok() {
            runs += 1;
        }
    }
    if runs == 0 {
        return "no histogram kept".into();
    }
    let l = LatencySummary::of(&merged);
    format!(
        "over {runs} run(s), every client merged: p50 {}, p99 {}, p99.9 {} ({} I/Os)",
        latency(l.p50 as f64),
        latency(l.p99 as f64),
        latency(l.p999 as f64),
        l.count
    )
}

/// Two panels: bandwidth with its interval; p50 and p99 latency. Runs where the
/// environment changed get a dashed line.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &Series<'_>,
    runs: usize,
    changed: &[usize],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let (top, rest) = root.split_vertically(30);
    top.draw(&Text::new(s.title.clone(), (10, 6), (FONT, 17).into_font())).map_err(err)?;
    let panels = rest.split_evenly((1, 2));
    let x_max = runs as f64 + 0.5;
    let fig = |c: &crate::history::CellRecord, m: &str| c.figure(m).map(|f| (f.value, f.lo, f.hi));

    // Bandwidth.
    let bw: Vec<(f64, (f64, f64, f64))> =
        s.points.iter().filter_map(|(i, c)| Some((*i as f64, fig(c, "bw")?))).collect();
    let y_max = bw.iter().map(|(_, (v, _, hi))| v.max(*hi)).fold(0.0f64, f64::max) / MIB * 1.15;
    let mut chart = panel(&panels[0], x_max, y_max, "bandwidth MiB/s", changed)?;
    let color = scenario_color(0);
    if bw.len() > 1 {
        let band: Vec<(f64, f64)> = bw
            .iter()
            .map(|(x, (_, lo, _))| (*x, lo / MIB))
            .chain(bw.iter().rev().map(|(x, (_, _, hi))| (*x, hi / MIB)))
            .collect();
        chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.2).filled()))).map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(bw.iter().map(|(x, (v, _, _))| (*x, v / MIB)), color.stroke_width(2)))
        .map_err(err)?;
    chart.draw_series(bw.iter().map(|(x, (v, _, _))| Circle::new((*x, v / MIB), 3, color.filled()))).map_err(err)?;

    // Latency.
    let lat = |m: &str| -> Vec<(f64, f64)> {
        s.points.iter().filter_map(|(i, c)| Some((*i as f64, fig(c, m)?.0 / 1e3))).collect()
    };
    let (p50, p99) = (lat("p50"), lat("p99"));
    let y_max = p50.iter().chain(&p99).map(|(_, v)| *v).fold(0.0f64, f64::max) * 1.15;
    let mut chart = panel(&panels[1], x_max, y_max, "latency µs (p50, p99)", changed)?;
    for (series, c, name) in [(&p50, scenario_color(1), "p50"), (&p99, scenario_color(3), "p99")] {
        chart
            .draw_series(LineSeries::new(series.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// One panel: runs on x (up to `x_max`), 0 to `y_max` on y, its mesh drawn and the
/// runs where the environment changed marked.
fn panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    x_max: f64,
    y_max: f64,
    y_desc: &str,
    changed: &[usize],
) -> Result<Chart<'a, DB>, String> {
    let y_max = y_max.max(1.0);
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("run")
        .y_desc(y_desc)
        .x_label_formatter(&run_label)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(err)?;
    mark_changes(&mut chart, changed, y_max)?;
    Ok(chart)
}

/// A run's number on the x axis; nothing between runs.
fn run_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-6 && *v >= 1.0 { format!("{v:.0}") } else { String::new() }
}

type Chart<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// A dashed line at each run whose environment differs from the one before.
fn mark_changes<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, changed: &[usize], y_max: f64) -> Result<(), String> {
    let grey = RGBColor(120, 120, 120);
    for &i in changed {
        let x = i as f64 - 0.5;
        let dashes = (0..20).map(|k| {
            let y0 = y_max * k as f64 / 20.0;
            PathElement::new(vec![(x, y0), (x, y0 + y_max / 40.0)], grey.stroke_width(1))
        });
        chart.draw_series(dashes).map_err(err)?;
        chart.draw_series(std::iter::once(Text::new(format!("#{i}"), (x, y_max * 0.98), (FONT, 11)))).map_err(err)?;
    }
    Ok(())
}
