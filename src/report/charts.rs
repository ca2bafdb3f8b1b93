//! The seed study's two charts, drawn with plotters as SVG (inlined in the HTML) and PNG.
//!
//! 1. Aggregate bandwidth: grouped bars — one panel per client count, one group per
//!    pattern, one bar per scenario — with 95 % error bars when there are repetitions.
//! 2. Commit-latency CDF: log x axis in µs, one panel per client count, one line per
//!    scenario × pattern.
//!
//! Text is laid out with a bundled font (DejaVu Sans, from the `dejavu` crate) through
//! plotters' `ab_glyph` backend, so a machine without any system font renders the same
//! PNG.

use std::path::Path;
use std::sync::Once;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::model::Report;

const FONT: &str = "sans-serif";
const PANEL_W: u32 = 460;
const PANEL_H: u32 = 460;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (style, bytes) in [(FontStyle::Normal, dejavu::sans::regular()), (FontStyle::Bold, dejavu::sans::bold())] {
            if plotters::style::register_font(FONT, style, bytes).is_err() {
                unreachable!("the bundled DejaVu font parses");
            }
        }
    });
}

/// The charts as SVG documents.
pub struct Svgs {
    pub bandwidth: String,
    pub latency_cdf: String,
}

fn size(r: &Report) -> (u32, u32) {
    (PANEL_W * r.clients.len().max(1) as u32 + 20, PANEL_H + 70)
}

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("drawing a chart: {e}")
}

/// Renders both charts to SVG strings.
pub fn svgs(r: &Report) -> Result<Svgs, String> {
    register_font();
    let dims = size(r);
    let mut bandwidth = String::new();
    {
        let root = SVGBackend::with_string(&mut bandwidth, dims).into_drawing_area();
        draw_bandwidth(&root, r)?;
        root.present().map_err(err)?;
    }
    let mut latency_cdf = String::new();
    {
        let root = SVGBackend::with_string(&mut latency_cdf, dims).into_drawing_area();
        draw_cdf(&root, r)?;
        root.present().map_err(err)?;
    }
    Ok(Svgs { bandwidth, latency_cdf })
}

/// Writes `bandwidth.png` and `latency-cdf.png` into `dir`, each drawn in memory and
/// written atomically.
pub fn write_pngs(r: &Report, dir: &Path) -> Result<(), String> {
    register_font();
    let dims = size(r);
    for (name, png) in [
        ("bandwidth.png", png(dims, |area| draw_bandwidth(area, r))?),
        ("latency-cdf.png", png(dims, |area| draw_cdf(area, r))?),
    ] {
        let path = dir.join(name);
        crate::results::write_atomic(&path, &png).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// A chart drawn into memory and encoded as PNG.
fn png(
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

fn scenario_color(i: usize) -> RGBColor {
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

fn title<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str) -> Result<DrawingArea<DB, Shift>, String> {
    area.fill(&WHITE).map_err(err)?;
    let (top, rest) = area.split_vertically(36);
    top.draw(&Text::new(text.to_string(), (12, 8), (FONT, 20).into_font().style(FontStyle::Bold))).map_err(err)?;
    Ok(rest)
}

fn draw_bandwidth<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> Result<(), String> {
    let area = title(root, &format!("{}: aggregate bandwidth (window in which all clients ran)", r.study_name))?;
    let (legend, area) = area.split_vertically(28);
    let mut x = 12;
    for (i, (_, label)) in r.scenarios.iter().enumerate() {
        legend.draw(&Rectangle::new([(x, 6), (x + 14, 20)], scenario_color(i).filled())).map_err(err)?;
        legend.draw(&Text::new(label.clone(), (x + 20, 6), (FONT, 15))).map_err(err)?;
        x += 30 + 9 * label.chars().count() as i32;
    }
    let panels = area.split_evenly((1, r.clients.len().max(1)));
    let option_sets = r.option_sets();
    // One bar group per pattern × option set.
    let columns: Vec<(crate::engine::Pattern, Vec<(String, String)>)> =
        option_sets.iter().flat_map(|o| r.patterns.iter().map(move |p| (*p, o.clone()))).collect();
    let n = columns.len().max(1) as f64;
    let s = r.scenarios.len().max(1) as f64;
    let mib = 1024.0 * 1024.0;
    let y_max =
        r.groups.iter().filter_map(|g| g.bw.map(|e| e.hi.max(e.mean))).fold(0.0f64, f64::max).max(1.0) / mib * 1.15;
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
            .y_desc("MiB/s")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(err)?;
        let w = 0.8 / s;
        for (ci, (pattern, opts)) in columns.iter().enumerate() {
            for (si, (name, _)) in r.scenarios.iter().enumerate() {
                let Some(g) = r.group(name, *pattern, k, opts) else { continue };
                let Some(e) = g.bw else { continue };
                let x0 = ci as f64 + 0.1 + si as f64 * w;
                let color = scenario_color(si);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x0 + w * 0.92, e.mean / mib)],
                        color.filled(),
                    )))
                    .map_err(err)?;
                if e.has_interval() {
                    chart
                        .draw_series(std::iter::once(ErrorBar::new_vertical(
                            x0 + w * 0.46,
                            e.lo / mib,
                            e.mean / mib,
                            e.hi / mib,
                            BLACK.stroke_width(1),
                            6,
                        )))
                        .map_err(err)?;
                }
            }
            let (px, py) = chart.backend_coord(&(ci as f64 + 0.5, 0.0));
            let mut label = crate::report::model::GroupKey {
                scenario: String::new(),
                pattern: *pattern,
                clients: k,
                options: opts.clone(),
            }
            .mode();
            if label.len() > 22 {
                label.truncate(22);
            }
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
        }
    }
    Ok(())
}

fn draw_cdf<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> Result<(), String> {
    let area = title(root, &format!("{}: commit latency CDF (all clients merged)", r.study_name))?;
    let panels = area.split_evenly((1, r.clients.len().max(1)));
    let points = r.groups.iter().flat_map(|g| g.cdf.iter().map(|p| p.0));
    let (lo, hi) = points.fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = if hi > 0.0 { ((lo / 1.5).max(0.01), hi * 1.5) } else { (1.0, 1000.0) };
    let patterns = r.patterns.len().max(1);
    for (panel, &k) in panels.iter().zip(&r.clients) {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{k} client(s)"), (FONT, 16))
            .margin(8)
            .x_label_area_size(46)
            .y_label_area_size(54)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("latency (µs, log)")
            .y_desc("fraction of I/Os")
            .x_label_formatter(&|v| format_us(*v))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(err)?;
        for g in r.groups.iter().filter(|g| g.key.clients == k && !g.cdf.is_empty()) {
            let si = r.scenarios.iter().position(|(n, _)| n == &g.key.scenario).unwrap_or(0);
            let pi = r.patterns.iter().position(|p| *p == g.key.pattern).unwrap_or(0);
            // Scenario sets the hue; patterns step its lightness.
            let base = scenario_color(si);
            let mix = pi as f64 / patterns as f64 * 0.6;
            let color = RGBColor(
                (base.0 as f64 * (1.0 - mix)) as u8,
                (base.1 as f64 * (1.0 - mix)) as u8,
                (base.2 as f64 * (1.0 - mix)) as u8,
            );
            let style = ShapeStyle::from(&color).stroke_width(2);
            chart
                .draw_series(LineSeries::new(g.cdf.iter().copied(), style))
                .map_err(err)?
                .label(format!("{} {}", g.label, g.key.mode()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(err)?;
    }
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
