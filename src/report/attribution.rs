//! Attribution in reports: where a client I/O's time and the host's CPU went, per
//! traced group — a table for the terminal, columns for `table.csv`, and two stacked-bar
//! charts (`attribution-latency`: the p50's parts by layer; `attribution-cpu`: CPU per
//! GiB by role).

use std::fmt::Write;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::attribution::{CLIENT, GUEST, GroupAttribution, HOST, LayerFigure, VMM, roles};
use crate::report::charts::{FONT, err, scenario_color};
use crate::report::model::{Concern, Group, Report, Warning};

/// The traced groups, with their attribution.
pub fn traced(r: &Report) -> Vec<(&Group, &GroupAttribution)> {
    r.groups.iter().filter_map(|g| g.attribution.as_ref().map(|a| (g, a))).collect()
}

fn us(ns: f64) -> String {
    if ns >= 100_000.0 { format!("{:.0}", ns / 1e3) } else { format!("{:.1}", ns / 1e3) }
}

/// A layer's p50/p99/mean in µs; why not, when `why` and it was not measured.
fn layer_cell(a: &GroupAttribution, layer: &str, why: bool) -> String {
    match a.layers.iter().find(|x| x.name == layer).map(|x| &x.figure) {
        Some(LayerFigure::Measured(s)) => format!("{}/{}/{}", us(s.p50 as f64), us(s.p99 as f64), us(s.mean)),
        Some(LayerFigure::NotMeasured(reason)) if why => format!("not measured: {reason}"),
        Some(LayerFigure::NotMeasured(_)) => "not measured".into(),
        None => "-".into(),
    }
}

/// The layers, with the column heading each gets.
const LAYERS: [(&str, &str); 4] =
    [(CLIENT, "client"), (GUEST, "guest transport"), (VMM, "VMM/server"), (HOST, "host syscall")];

/// CPU-seconds per GiB by role, and how their sum compares with the cell cgroup's.
fn cpu_text(a: &GroupAttribution) -> String {
    let mut text = a.cpu_s_per_gib.iter().map(|(role, s)| format!("{role} {s:.2}")).collect::<Vec<_>>().join(", ");
    if text.is_empty() {
        text.push('-');
    }
    if let Some(x) = a.cpu_roles_vs_cgroup {
        text.push_str(&format!(" (their sum {x:.2}× the cell cgroup's)"));
    }
    text
}

fn name_of(g: &Group) -> String {
    format!("{} {} c{}", g.label, g.key.mode().replace(" attribute=on", ""), g.key.clients)
}

/// The terminal's attribution: per traced group its layers (p50 / p99 / mean µs), host
/// syscalls per client I/O, what tracing cost, CPU per GiB by role, and the part of the
/// p50 that dominates.
pub fn text(r: &Report) -> String {
    let traced = traced(r);
    if traced.is_empty() {
        return String::new();
    }
    let mut rows = vec![{
        let mut h = vec!["Group".to_string()];
        h.extend(LAYERS.iter().map(|(_, heading)| format!("{heading} p50/p99/mean µs")));
        h.extend(["syscalls/IO".into(), "traced/untraced bw".into()]);
        h
    }];
    for (g, a) in &traced {
        let mut row = vec![name_of(g)];
        row.extend(LAYERS.iter().map(|(l, _)| layer_cell(a, l, false)));
        row.push(a.syscalls_per_io.map_or("-".into(), |x| format!("{x:.2}")));
        row.push(a.overhead.map_or("-".into(), |e| format!("{:.2}", e.mean)));
        rows.push(row);
    }
    let mut out = String::from("\nAttribution (per client I/O, from the client inward):\n");
    out.push_str(&crate::report::table::align(&rows, 1));
    out.push_str("\nWhere the p50 goes, and the CPU per GiB by role:\n");
    for (g, a) in &traced {
        let big = a
            .biggest()
            .map_or_else(|| "no layer measured".into(), |(n, share)| format!("{:.0} % of p50 in {n}", share * 100.0));
        let _ = writeln!(out, "  {}: {big}; CPU-s/GiB: {}", name_of(g), cpu_text(a));
        if !a.nesting.is_empty() {
            let _ = writeln!(out, "    flagged: layers do not nest: {}", a.nesting.join("; "));
        }
    }
    out
}

/// `table.csv`'s attribution columns, empty for an untraced group.
pub const CSV_HEADER: &str = "attr_client_p50_ns,attr_client_p99_ns,attr_client_mean_ns,attr_guest_p50_ns,attr_guest_p99_ns,attr_guest_mean_ns,attr_vmm_p50_ns,attr_vmm_p99_ns,attr_vmm_mean_ns,attr_host_p50_ns,attr_host_p99_ns,attr_host_mean_ns,attr_host_syscalls_per_io,attr_host_bytes_per_io,attr_cpu_client_s_per_gib,attr_cpu_vcpu_s_per_gib,attr_cpu_vmm_s_per_gib,attr_cpu_file_server_s_per_gib,attr_cpu_sandbox_s_per_gib,attr_cpu_runtime_s_per_gib,attr_cpu_other_s_per_gib,attr_cpu_roles_vs_cgroup,attr_traced_vs_untraced_bw,attr_nesting";

pub fn csv_fields(g: &Group) -> Vec<String> {
    let n = CSV_HEADER.split(',').count();
    let Some(a) = &g.attribution else { return vec![String::new(); n] };
    let num = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.3}"));
    let mut out = Vec::with_capacity(n);
    for l in [CLIENT, GUEST, VMM, HOST] {
        let s = a.layers.iter().find(|x| x.name == l).and_then(|x| x.figure.summary());
        out.push(s.map_or(String::new(), |s| s.p50.to_string()));
        out.push(s.map_or(String::new(), |s| s.p99.to_string()));
        out.push(num(s.map(|s| s.mean)));
    }
    out.push(num(a.syscalls_per_io));
    out.push(num(a.bytes_per_io));
    for role in roles::ALL {
        out.push(num(a.cpu_s_per_gib.iter().find(|(r, _)| r == role).map(|(_, s)| *s)));
    }
    out.push(num(a.cpu_roles_vs_cgroup));
    out.push(num(a.overhead.map(|e| e.mean)));
    out.push(crate::text::csv_field(&a.nesting.join("; ")));
    out
}

/// The attribution charts (when some group was traced): name and size.
pub fn charts(r: &Report) -> Vec<(&'static str, (u32, u32))> {
    let n = traced(r).len() as u32;
    if n == 0 {
        return Vec::new();
    }
    let dims = (1000, (110 + 34 * n).max(200));
    vec![("attribution-latency", dims), ("attribution-cpu", dims)]
}

/// Draws chart `name` of [`charts`].
pub fn draw<DB: DrawingBackend>(name: &str, root: &DrawingArea<DB, Shift>, r: &Report) -> Result<(), String> {
    let traced = traced(r);
    type Bar = (String, Vec<(String, f64)>);
    let (title, unit, bars): (&str, &str, Vec<Bar>) = if name == "attribution-latency" {
        let bars = traced
            .iter()
            .map(|(g, a)| (name_of(g), a.p50_parts().into_iter().map(|(n, v)| (n.to_string(), v / 1e3)).collect()))
            .collect();
        ("where a request's p50 goes, layer by layer (each layer less the one inside it)", "µs", bars)
    } else {
        let bars = traced.iter().map(|(g, a)| (name_of(g), a.cpu_s_per_gib.clone())).collect();
        ("where the host's CPU goes, by role", "CPU-s per GiB moved", bars)
    };
    let mut keys: Vec<String> = Vec::new();
    for (_, parts) in &bars {
        for (k, _) in parts {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    root.fill(&WHITE).map_err(err)?;
    let x_max = bars.iter().map(|(_, p)| p.iter().map(|x| x.1).sum::<f64>()).fold(0.0, f64::max).max(1e-9) * 1.05;
    let n = bars.len();
    // The legend in a column of its own, right of the chart, out of the bars.
    let (area, legend) = root.split_horizontally(root.dim_in_pixel().0 as i32 - 230);
    let mut chart = ChartBuilder::on(&area)
        .caption(format!("{}: {title}", r.study_name), (FONT, 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(260)
        .build_cartesian_2d(0f64..x_max, 0f64..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(unit)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(err)?;
    let label_style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, (label, parts)) in bars.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        // The group's name, left of its bar, in the label area.
        let (px, py) = chart.backend_coord(&(0.0, y + 0.5));
        area.draw(&Text::new(label.clone(), (px - 8, py), label_style.clone())).map_err(err)?;
        let mut x = 0.0;
        for (k, v) in parts {
            let c = scenario_color(keys.iter().position(|x| x == k).unwrap_or(0));
            chart
                .draw_series(std::iter::once(Rectangle::new([(x, y + 0.15), (x + v, y + 0.85)], c.filled())))
                .map_err(err)?;
            x += v;
        }
    }
    let key_style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (ki, k) in keys.iter().enumerate() {
        let y = 40 + 20 * ki as i32;
        legend.draw(&Rectangle::new([(4, y - 6), (16, y + 6)], scenario_color(ki).filled())).map_err(err)?;
        legend.draw(&Text::new(k.clone(), (22, y), key_style.clone())).map_err(err)?;
    }
    Ok(())
}

/// The HTML table: a header row, then one row per traced group.
pub fn rows(r: &Report) -> Vec<Vec<String>> {
    let traced = traced(r);
    if traced.is_empty() {
        return Vec::new();
    }
    let mut header = vec!["Group".to_string()];
    header.extend(LAYERS.iter().map(|(_, heading)| format!("{heading} p50/p99/mean µs")));
    header.extend(
        ["syscalls, bytes per I/O", "traced / untraced bw", "p50 dominated by", "CPU-s per GiB by role"]
            .map(String::from),
    );
    let mut out = vec![header];
    for (g, a) in traced {
        let mut row = vec![name_of(g)];
        row.extend(LAYERS.iter().map(|(l, _)| layer_cell(a, l, true)));
        row.push(match (a.syscalls_per_io, a.bytes_per_io) {
            (Some(s), Some(b)) => format!("{s:.2}, {}", crate::workload::human_bytes(b as u64)),
            _ => "-".into(),
        });
        row.push(a.overhead.map_or("-".into(), |e| {
            if e.has_interval() {
                format!("{:.2} [{:.2}, {:.2}]", e.mean, e.lo, e.hi)
            } else {
                format!("{:.2}", e.mean)
            }
        }));
        let mut big = a.biggest().map_or("-".into(), |(n, s)| format!("{n} ({:.0} %)", s * 100.0));
        if !a.nesting.is_empty() {
            big.push_str(&format!("; flagged: {}", a.nesting.join("; ")));
        }
        row.push(big);
        row.push(cpu_text(a));
        out.push(row);
    }
    out
}

/// What a traced group's instruments cannot vouch for: layers that do not nest, tracing
/// that slowed the cell, layers not measured, and what the instruments noted.
pub fn warnings(g: &Group) -> Vec<Warning> {
    let Some(a) = &g.attribution else { return Vec::new() };
    let what = format!("{} {} with {} client(s)", g.label, g.key.mode(), g.key.clients);
    let mut out = Vec::new();
    if !a.nesting.is_empty() {
        out.push(format!(
            "{what}: the layers do not nest ({}): an instrument is off, or a request was timed at one layer and not another",
            a.nesting.join("; ")
        ));
    }
    if let Some(o) = a.overhead.filter(|o| o.mean < 1.0 - crate::attribution::OVERHEAD_TOLERANCE) {
        out.push(format!(
            "{what}: tracing cost {:.0} % of the bandwidth (traced / untraced {:.2}): its layers are timed on a slowed path",
            (1.0 - o.mean) * 100.0,
            o.mean
        ));
    }
    for l in &a.layers {
        if let LayerFigure::NotMeasured(why) = &l.figure {
            out.push(format!("{what}: layer `{}` not measured: {why}", l.name));
        }
    }
    out.extend(a.notes.iter().map(|n| format!("{what}: {n}")));
    out.into_iter().map(|text| Warning::new(Concern::Attribution, text)).collect()
}
