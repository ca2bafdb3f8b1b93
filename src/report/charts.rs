//! The report's charts, drawn with plotters as SVG (inlined in the HTML) and PNG.
//!
//! 1. `bandwidth`: aggregate bandwidth — grouped bars, one panel per client count, one
//!    group per pattern, one bar per scenario — with 95 % error bars with repetitions.
//! 2. `host-cpu`: host CPU-seconds per GiB moved, laid out the same way, beside it.
//! 3. `client-bandwidth`: one dot per client per cell, to spot a slow client or node.
//! 4. `bandwidth-timeline`: aggregate bandwidth per interval over the run, a panel per
//!    pattern × client count, a line per scenario: warm-up, throttling, write-back.
//! 5. `latency-cdf`: commit-latency CDF on a log axis in µs, a panel per pattern ×
//!    client count, a line per scenario.
//!
//! Every chart gives each scenario the same colour, and keeps its legend above the
//! panels, out of the data. Text is laid out with a bundled font (DejaVu Sans, from the
//! `dejavu` crate) through plotters' `ab_glyph` backend, so a machine without any
//! system font renders the same PNG. PNGs are drawn in memory and written atomically.

use std::path::Path;
use std::sync::Once;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::model::{Group, GroupKey, Report};
use crate::results::stats::Estimate;
use crate::workload::Pattern;

pub(crate) const FONT: &str = "sans-serif";
const PANEL_W: u32 = 460;
const PANEL_H: u32 = 420;
const SMALL_W: u32 = 360;
const SMALL_H: u32 = 300;
const MIN_W: u32 = 820;
const MIB: f64 = 1024.0 * 1024.0;

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (style, bytes) in [(FontStyle::Normal, dejavu::sans::regular()), (FontStyle::Bold, dejavu::sans::bold())] {
            if plotters::style::register_font(FONT, style, bytes).is_err() {
                unreachable!("the bundled DejaVu font parses");
            }
        }
    });
}

/// The charts as SVG documents, by name (`bandwidth`, …), in display order.
pub struct Svgs {
    pub charts: Vec<(&'static str, String)>,
}

impl Svgs {
    pub fn get(&self, name: &str) -> &str {
        self.charts.iter().find(|(n, _)| *n == name).map_or("", |(_, s)| s.as_str())
    }
}

/// Every chart: its name and size.
fn charts(r: &Report) -> Vec<(&'static str, (u32, u32))> {
    let cols = r.clients.len().max(1) as u32;
    let rows = r.patterns.len().max(1) as u32;
    // Wide enough for the title and the legend even with one panel.
    let wide = ((PANEL_W * cols + 20).max(MIN_W), PANEL_H + 70);
    let grid = ((SMALL_W * cols + 20).max(MIN_W), SMALL_H * rows + 70);
    let mut all = vec![
        ("bandwidth", wide),
        ("host-cpu", wide),
        ("client-bandwidth", wide),
        ("bandwidth-timeline", grid),
        ("latency-cdf", grid),
    ];
    all.extend(crate::report::attribution::charts(r));
    all
}

fn draw<DB: DrawingBackend>(name: &str, root: &DrawingArea<DB, Shift>, r: &Report) -> Result<(), String> {
    match name {
        "bandwidth" => draw_bars(
            root,
            r,
            &format!("{}: aggregate bandwidth (window in which all clients ran)", r.study_name),
            "MiB/s",
            |g| g.bw.map(|e| scale(e, 1.0 / MIB)),
        ),
        "host-cpu" => draw_bars(
            root,
            r,
            &format!("{}: host CPU-seconds per GiB moved (clients and everything serving them)", r.study_name),
            "CPU-s / GiB",
            |g| g.cpu_s_per_gib,
        ),
        "client-bandwidth" => draw_clients(root, r),
        "bandwidth-timeline" => draw_timeline(root, r),
        n if n.starts_with("attribution-") => crate::report::attribution::draw(n, root, r),
        _ => draw_cdf(root, r),
    }
}

/// Renders every chart to SVG.
pub fn svgs(r: &Report) -> Result<Svgs, String> {
    register_font();
    let mut out = Vec::new();
    for (name, dims) in charts(r) {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, dims).into_drawing_area();
            draw(name, &root, r)?;
            root.present().map_err(err)?;
        }
        out.push((name, svg));
    }
    Ok(Svgs { charts: out })
}

/// Writes every chart as `<name>.png` into `dir`.
pub fn write_pngs(r: &Report, dir: &Path) -> Result<(), String> {
    register_font();
    for (name, dims) in charts(r) {
        let png = png(dims, |area| draw(name, area, r))?;
        let path = dir.join(format!("{name}.png"));
        crate::safety::write_atomic(&path, &png).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// A chart drawn into memory and encoded as PNG.
pub(crate) fn png(
    dims: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    let mut pixels = vec![0u8; dims.0 as usize * dims.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, dims).into_drawing_area();
        draw(&root)?;
        root.present().map_err(err)?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, dims.0, dims.1, image::ColorType::Rgb8)
        .map_err(|e| format!("encoding a PNG chart: {e}"))?;
    Ok(png)
}

pub(crate) fn err<E: std::fmt::Display>(e: E) -> String {
    format!("drawing a chart: {e}")
}

fn scale(e: Estimate, f: f64) -> Estimate {
    Estimate { mean: e.mean * f, lo: e.lo * f, hi: e.hi * f, n: e.n }
}

/// A scenario's colour, the same in every chart.
pub fn scenario_color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    COLORS[i % COLORS.len()]
}

fn scenario_index(r: &Report, name: &str) -> usize {
    r.scenarios.iter().position(|(n, _)| n == name).unwrap_or(0)
}

/// The title, then the scenarios' legend in one strip above the panels; returns the
/// area left for them.
fn frame<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
    text: &str,
) -> Result<DrawingArea<DB, Shift>, String> {
    area.fill(&WHITE).map_err(err)?;
    let (top, rest) = area.split_vertically(36);
    top.draw(&Text::new(text.to_string(), (12, 8), (FONT, 20).into_font().style(FontStyle::Bold))).map_err(err)?;
    let (legend, rest) = rest.split_vertically(28);
    let mut x = 12;
    for (i, (_, label)) in r.scenarios.iter().enumerate() {
        legend.draw(&Rectangle::new([(x, 6), (x + 14, 20)], scenario_color(i).filled())).map_err(err)?;
        legend.draw(&Text::new(label.clone(), (x + 20, 6), (FONT, 15))).map_err(err)?;
        x += 30 + 9 * label.chars().count() as i32;
    }
    Ok(rest)
}

/// Bar groups: one panel per client count, one group per pattern × options, one bar
/// per scenario, `value` (with its interval) in `unit`.
fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    text: &str,
    unit: &str,
    value: impl Fn(&Group) -> Option<Estimate>,
) -> Result<(), String> {
    let area = frame(root, r, text)?;
    let panels = area.split_evenly((1, r.clients.len().max(1)));
    let columns = columns(r);
    let n = columns.len().max(1) as f64;
    let s = r.scenarios.len().max(1) as f64;
    let y_max = r.groups.iter().filter_map(&value).map(|e| e.hi.max(e.mean)).fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    for (panel, &k) in panels.iter().zip(&r.clients) {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{k} client(s)"), (FONT, 16))
            .margin(8)
            .x_label_area_size(46)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(unit)
            .y_label_formatter(&|v| if y_max < 10.0 { format!("{v:.2}") } else { format!("{v:.0}") })
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(err)?;
        let w = 0.8 / s;
        for (ci, (pattern, opts)) in columns.iter().enumerate() {
            for (si, (name, _)) in r.scenarios.iter().enumerate() {
                let Some(e) = r.group(name, *pattern, k, opts).and_then(&value) else { continue };
                let x0 = ci as f64 + 0.1 + si as f64 * w;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x0 + w * 0.92, e.mean)],
                        scenario_color(si).filled(),
                    )))
                    .map_err(err)?;
                if e.has_interval() {
                    chart
                        .draw_series(std::iter::once(ErrorBar::new_vertical(
                            x0 + w * 0.46,
                            e.lo,
                            e.mean,
                            e.hi,
                            BLACK.stroke_width(1),
                            6,
                        )))
                        .map_err(err)?;
                }
            }
            column_label(panel, &chart, ci, *pattern, k, opts)?;
        }
    }
    Ok(())
}

/// One dot per client per cell, over the same columns as the bars.
fn draw_clients<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> Result<(), String> {
    let area = frame(root, r, &format!("{}: each client's own bandwidth (one dot per client)", r.study_name))?;
    let panels = area.split_evenly((1, r.clients.len().max(1)));
    let columns = columns(r);
    let n = columns.len().max(1) as f64;
    let s = r.scenarios.len().max(1) as f64;
    let y_max = r.groups.iter().flat_map(|g| g.client_bws.iter()).fold(0.0f64, |a, b| a.max(*b)) / MIB;
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    for (panel, &k) in panels.iter().zip(&r.clients) {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{k} client(s)"), (FONT, 16))
            .margin(8)
            .x_label_area_size(46)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("MiB/s per client")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(err)?;
        let w = 0.8 / s;
        for (ci, (pattern, opts)) in columns.iter().enumerate() {
            for (si, (name, _)) in r.scenarios.iter().enumerate() {
                let Some(g) = r.group(name, *pattern, k, opts) else { continue };
                let x = ci as f64 + 0.1 + (si as f64 + 0.46) * w;
                let color = scenario_color(si);
                chart
                    .draw_series(g.client_bws.iter().map(|b| Circle::new((x, b / MIB), 3, color.filled())))
                    .map_err(err)?;
            }
            column_label(panel, &chart, ci, *pattern, k, opts)?;
        }
    }
    Ok(())
}

/// Panels of a pattern × client-count grid; `draw` fills one.
fn grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    text: &str,
    mut panel: impl FnMut(&DrawingArea<DB, Shift>, Pattern, u32) -> Result<(), String>,
) -> Result<(), String> {
    let area = frame(root, r, text)?;
    let panels = area.split_evenly((r.patterns.len().max(1), r.clients.len().max(1)));
    let cells = r.patterns.iter().flat_map(|&p| r.clients.iter().map(move |&k| (p, k)));
    for (area, (p, k)) in panels.iter().zip(cells) {
        panel(area, p, k)?;
    }
    Ok(())
}

fn draw_timeline<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> Result<(), String> {
    let t_max = r.groups.iter().flat_map(|g| g.timeline.iter().map(|p| p.0)).fold(0.0f64, f64::max).max(0.1);
    let t_min = r.groups.iter().flat_map(|g| g.timeline.iter().map(|p| p.0)).fold(0.0f64, f64::min);
    let text = format!("{}: aggregate bandwidth over time (first repetition, all clients)", r.study_name);
    grid(root, r, &text, |area, p, k| {
        let groups: Vec<&Group> = r.groups.iter().filter(|g| g.key.pattern == p && g.key.clients == k).collect();
        let y_max = groups.iter().flat_map(|g| g.timeline.iter().map(|x| x.1)).fold(0.0f64, f64::max) / MIB * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} · {k} client(s)", mode(p)), (FONT, 14))
            .margin(6)
            .x_label_area_size(36)
            .y_label_area_size(58)
            .build_cartesian_2d(t_min..t_max, 0f64..y_max.max(1.0))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("s since the window opened")
            .y_desc("MiB/s")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .draw()
            .map_err(err)?;
        for g in groups {
            let style = ShapeStyle::from(&scenario_color(scenario_index(r, &g.key.scenario))).stroke_width(2);
            chart.draw_series(LineSeries::new(g.timeline.iter().map(|(t, b)| (*t, b / MIB)), style)).map_err(err)?;
        }
        Ok(())
    })
}

fn draw_cdf<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> Result<(), String> {
    let points = r.groups.iter().flat_map(|g| g.cdf.iter().map(|p| p.0));
    let (lo, hi) = points.fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = if hi > 0.0 { ((lo / 1.5).max(0.01), hi * 1.5) } else { (1.0, 1000.0) };
    let text = format!("{}: commit latency CDF (all clients merged)", r.study_name);
    grid(root, r, &text, |area, p, k| {
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} · {k} client(s)", mode(p)), (FONT, 14))
            .margin(6)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("latency (µs, log)")
            .y_desc("fraction of I/Os")
            .x_label_formatter(&|v| format_us(*v))
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .draw()
            .map_err(err)?;
        for g in r.groups.iter().filter(|g| g.key.pattern == p && g.key.clients == k && !g.cdf.is_empty()) {
            let style = ShapeStyle::from(&scenario_color(scenario_index(r, &g.key.scenario))).stroke_width(2);
            chart.draw_series(LineSeries::new(g.cdf.iter().copied(), style)).map_err(err)?;
        }
        Ok(())
    })
}

/// Bar/dot columns: one per pattern × option set.
fn columns(r: &Report) -> Vec<(Pattern, Vec<(String, String)>)> {
    r.option_sets().iter().flat_map(|o| r.patterns.iter().map(move |p| (*p, o.clone()))).collect()
}

fn mode(p: Pattern) -> String {
    GroupKey { scenario: String::new(), pattern: p, clients: 0, options: Vec::new() }.mode()
}

/// A column's label under the panel's x axis.
fn column_label<DB: DrawingBackend, X, Y>(
    panel: &DrawingArea<DB, Shift>,
    chart: &ChartContext<'_, DB, Cartesian2d<X, Y>>,
    ci: usize,
    pattern: Pattern,
    k: u32,
    opts: &[(String, String)],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let (px, py) = chart.backend_coord(&(ci as f64 + 0.5, 0.0));
    let mode = GroupKey { scenario: String::new(), pattern, clients: k, options: opts.to_vec() }.mode();
    let label: String = mode.chars().take(22).collect();
    let (ox, oy) = panel.get_base_pixel();
    panel
        .draw(&Text::new(
            label,
            (px - ox, py - oy + 8),
            TextStyle::from((FONT, 13).into_font()).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            )),
        ))
        .map_err(err)?;
    Ok(())
}

fn format_us(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.0}s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}ms", v / 1e3)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
