//! The seed study's tables: latency p50/p99 in µs (rows mode × scenario, columns
//! clients × {50 %, 99 %}) and aggregate bandwidth with intervals and ratios — as
//! aligned terminal text, as Markdown (`table.md`), and every figure as CSV
//! (`table.csv`).

use std::fmt::Write;

use crate::report::model::{Group, Report};
use crate::report::units::bandwidth;
use crate::results::stats::Estimate;

/// Rows of the seed table: (mode, scenario label, group per client count).
pub(crate) fn rows(r: &Report) -> Vec<(String, String, Vec<Option<&Group>>)> {
    let mut out = Vec::new();
    for opts in r.option_sets() {
        for &p in &r.patterns {
            for (name, label) in &r.scenarios {
                let cells: Vec<Option<&Group>> = r.clients.iter().map(|&k| r.group(name, p, k, &opts)).collect();
                if let Some(g) = cells.iter().flatten().next() {
                    out.push((g.key.mode(), label.clone(), cells));
                }
            }
        }
    }
    out
}

fn us(ns: u64) -> String {
    format!("{:.0}", ns as f64 / 1e3)
}

/// A p50 or p99 cell in µs.
pub(crate) fn lat(g: Option<&Group>, p99: bool) -> String {
    match g {
        Some(g) if g.latency_ns.count > 0 => us(if p99 { g.latency_ns.p99 } else { g.latency_ns.p50 }),
        Some(_) => "failed".into(),
        None => "-".into(),
    }
}

/// Aligns rows of text cells: first `left` columns left-aligned, the rest right.
pub(crate) fn align(rows: &[Vec<String>], left: usize) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..n).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            let w = widths[i];
            if i > 0 {
                line.push_str("  ");
            }
            if i < left {
                let _ = write!(line, "{c:<w$}");
            } else {
                let _ = write!(line, "{c:>w$}");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The latency table as the seed printed it, for the terminal.
pub fn latency_text(r: &Report) -> String {
    let mut header1 = vec!["Number of clients >".to_string(), String::new()];
    let mut header2 = vec!["Mode".to_string(), "Scenario".to_string()];
    for k in &r.clients {
        header1.extend([k.to_string(), String::new()]);
        header2.extend(["50%".to_string(), "99%".to_string()]);
    }
    let mut table = vec![header1, header2];
    let mut last_mode = String::new();
    for (mode, label, groups) in rows(r) {
        let shown = if mode == last_mode { String::new() } else { mode.clone() };
        last_mode = mode;
        let mut row = vec![shown, label];
        for g in groups {
            row.push(lat(g, false));
            row.push(lat(g, true));
        }
        table.push(row);
    }
    format!("Commit latency percentiles (µs, merged over all clients)\n{}", align(&table, 2))
}

/// A Markdown table; columns from `right` on are right-aligned.
fn markdown_table(header: &[String], body: &[Vec<String>], right: usize) -> String {
    let cells = |row: &[String]| row.iter().map(|c| crate::text::markdown_cell(c)).collect::<Vec<_>>().join(" | ");
    let mut out = format!("| {} |\n|", cells(header));
    for i in 0..header.len() {
        out.push_str(if i < right { "---|" } else { "---:|" });
    }
    out.push('\n');
    for row in body {
        let _ = writeln!(out, "| {} |", cells(row));
    }
    out
}

/// The latency table in Markdown.
pub fn latency_markdown(r: &Report) -> String {
    let mut header = vec!["Mode".to_string(), "Scenario".to_string()];
    for k in &r.clients {
        header.extend([format!("{k} clients 50%"), format!("{k} clients 99%")]);
    }
    let body: Vec<Vec<String>> = rows(r)
        .into_iter()
        .map(|(mode, label, groups)| {
            [mode, label].into_iter().chain(groups.into_iter().flat_map(|g| [lat(g, false), lat(g, true)])).collect()
        })
        .collect();
    markdown_table(&header, &body, 2)
}

fn estimate_text(e: &Estimate) -> String {
    if e.has_interval() {
        format!("{} ({}–{})", bandwidth(e.mean), bandwidth(e.lo), bandwidth(e.hi))
    } else {
        bandwidth(e.mean)
    }
}

/// "0.97× bare (0.95–0.99)".
pub fn ratio_text(e: &Estimate, baseline: &str) -> String {
    if e.has_interval() {
        format!("{:.2}× {baseline} ({:.2}–{:.2})", e.mean, e.lo, e.hi)
    } else {
        format!("{:.2}× {baseline}", e.mean)
    }
}

/// A bandwidth cell: mean (interval), ratio to the baseline.
pub(crate) fn bw_cell(g: Option<&Group>, baseline: &str) -> String {
    match g {
        Some(g) => match &g.bw {
            Some(e) => match &g.vs_baseline {
                Some(r) => format!("{}, {}", estimate_text(e), ratio_text(r, baseline)),
                None => estimate_text(e),
            },
            None if g.no_window > 0 => match &g.fio_sum_bw {
                Some(sum) => format!("no common window (fio sum {})", estimate_text(sum)),
                None => "no common window".into(),
            },
            None => "failed".into(),
        },
        None => "-".into(),
    }
}

/// A host-CPU cell: CPU-seconds per GiB (interval), and the CPUs kept busy.
pub(crate) fn cpu_cell(g: Option<&Group>) -> String {
    match g.and_then(|g| g.cpu_s_per_gib.map(|e| (e, g.cores_busy))) {
        Some((e, cores)) => {
            let v = if e.has_interval() {
                format!("{:.2} ({:.2}–{:.2})", e.mean, e.lo, e.hi)
            } else {
                format!("{:.2}", e.mean)
            };
            match cores {
                Some(c) => format!("{v} s/GiB, {c:.2} CPUs"),
                None => format!("{v} s/GiB"),
            }
        }
        None => "-".into(),
    }
}

/// Aggregate bandwidth (common window) per mode × scenario × clients.
pub fn bandwidth_text(r: &Report) -> String {
    let base = r.label(&r.baseline);
    let mut header = vec!["Mode".to_string(), "Scenario".to_string()];
    header.extend(r.clients.iter().map(|k| format!("{k} client(s)")));
    let mut table = vec![header];
    let mut last_mode = String::new();
    for (mode, label, groups) in rows(r) {
        let shown = if mode == last_mode { String::new() } else { mode.clone() };
        last_mode = mode;
        let mut row = vec![shown, label];
        row.extend(groups.into_iter().map(|g| bw_cell(g, &base)));
        table.push(row);
    }
    format!(
        "Aggregate bandwidth over the window all clients ran (mean, 95 % CI with repetitions)\n{}",
        align(&table, 2)
    )
}

/// The bandwidth table in Markdown.
pub fn bandwidth_markdown(r: &Report) -> String {
    let base = r.label(&r.baseline);
    let mut header = vec!["Mode".to_string(), "Scenario".to_string()];
    header.extend(r.clients.iter().map(|k| format!("{k} client(s)")));
    let body: Vec<Vec<String>> = rows(r)
        .into_iter()
        .map(|(mode, label, groups)| {
            [mode, label].into_iter().chain(groups.into_iter().map(|g| bw_cell(g, &base))).collect()
        })
        .collect();
    markdown_table(&header, &body, 2)
}

/// Host CPU per GiB in Markdown.
pub fn cpu_markdown(r: &Report) -> String {
    let mut header = vec!["Mode".to_string(), "Scenario".to_string()];
    header.extend(r.clients.iter().map(|k| format!("{k} client(s)")));
    let body: Vec<Vec<String>> = rows(r)
        .into_iter()
        .map(|(mode, label, groups)| [mode, label].into_iter().chain(groups.into_iter().map(cpu_cell)).collect())
        .collect();
    markdown_table(&header, &body, 2)
}

/// `table.md`: both tables with a title and the warnings.
pub fn markdown(r: &Report) -> String {
    use crate::text::markdown_cell as md;
    let mut out = format!("# {}\n\n", md(&r.study_name));
    if let Some(d) = &r.description {
        let lines: Vec<String> = d.trim().lines().map(md).collect();
        let _ = writeln!(out, "{}\n", lines.join("\n"));
    }
    let _ = writeln!(out, "## Commit latency (µs, p50 / p99 of all clients' merged histograms)\n");
    out.push_str(&latency_markdown(r));
    let _ = writeln!(out, "\n## Aggregate bandwidth (window in which all clients ran)\n");
    out.push_str(&bandwidth_markdown(r));
    let _ = writeln!(out, "\n## Host CPU per GiB moved (clients and everything serving them; CPUs busy)\n");
    out.push_str(&cpu_markdown(r));
    let provenance = provenance(r);
    if provenance.len() > 1 || provenance.keys().any(|m| !m.starts_with("iostudy")) {
        let _ = writeln!(out, "\n## Measured by\n");
        for (by, groups) in &provenance {
            let _ = writeln!(out, "- {}: {}", md(by), md(&groups.join(", ")));
        }
    }
    let groups = r.warning_groups();
    if !groups.is_empty() {
        let _ = writeln!(out, "\n## Warnings\n");
        for g in &groups {
            let _ = writeln!(out, "- **{}** ({})", g.title, g.warnings.len());
            for w in &g.warnings {
                let _ = writeln!(out, "  - {}", md(&w.text));
            }
        }
    }
    out
}

/// Which groups each engine measured (`fio-3.33 (…)` → `bare seq read c2`, …).
pub fn provenance(r: &Report) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for g in &r.groups {
        for m in &g.measured_by {
            by.entry(m.clone()).or_default().push(format!("{} {} c{}", g.key.scenario, g.key.mode(), g.key.clients));
        }
    }
    by
}

/// `table.csv`: one row per group with every figure.
pub fn csv(r: &Report) -> String {
    let mut out = String::from(
        "scenario,label,pattern,clients,options,repetitions,failed_repetitions,bw_window_bytes_per_s,bw_window_ci_lo,bw_window_ci_hi,bw_fio_sum_bytes_per_s,iops_fio_sum,ratio_to_baseline,ratio_ci_lo,ratio_ci_hi,lat_mean_ns,lat_min_ns,lat_p50_ns,lat_p90_ns,lat_p99_ns,lat_p999_ns,lat_max_ns,lat_count,window_s_mean,boot_s_mean,bw_last_done_bytes_per_s,client_bw_min,client_bw_median,client_bw_max,client_bw_cv,host_cpu_s_per_gib,host_cpu_ci_lo,host_cpu_ci_hi,cores_busy,host_busy_cores,bw_per_node,measured_by,warnings",
    );
    // Attribution's columns only where some group was traced.
    let traced = r.groups.iter().any(|g| g.attribution.is_some());
    if traced {
        out.push(',');
        out.push_str(crate::report::attribution::CSV_HEADER);
    }
    out.push('\n');
    let num = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.3}"));
    for g in &r.groups {
        let opts = g.key.options.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        let l = &g.latency_ns;
        let mut sorted = g.client_bws.clone();
        sorted.sort_by(f64::total_cmp);
        let window = if g.reps.is_empty() {
            None
        } else {
            Some(g.reps.iter().map(|f| f.window_s).sum::<f64>() / g.reps.len() as f64)
        };
        let fields = [
            csv_field(&g.key.scenario),
            csv_field(&g.label),
            g.key.pattern.to_string(),
            g.key.clients.to_string(),
            csv_field(&opts),
            g.reps.len().to_string(),
            g.failed_reps.to_string(),
            num(g.bw.map(|e| e.mean)),
            num(g.bw.map(|e| e.lo)),
            num(g.bw.map(|e| e.hi)),
            num(g.fio_sum_bw.map(|e| e.mean)),
            num(g.iops.map(|e| e.mean)),
            num(g.vs_baseline.map(|e| e.mean)),
            num(g.vs_baseline.map(|e| e.lo)),
            num(g.vs_baseline.map(|e| e.hi)),
            format!("{:.1}", l.mean),
            l.min.to_string(),
            l.p50.to_string(),
            l.p90.to_string(),
            l.p99.to_string(),
            l.p999.to_string(),
            l.max.to_string(),
            l.count.to_string(),
            num(window),
            num(g.boot_s),
            num(g.bw_last_done.map(|e| e.mean)),
            num(sorted.first().copied()),
            num(sorted.get(sorted.len() / 2).copied()),
            num(sorted.last().copied()),
            num(g.client_bw_cv),
            num(g.cpu_s_per_gib.map(|e| e.mean)),
            num(g.cpu_s_per_gib.map(|e| e.lo)),
            num(g.cpu_s_per_gib.map(|e| e.hi)),
            num(g.cores_busy),
            num(g.host_busy_cores),
            csv_field(
                &g.per_node.iter().map(|n| format!("{}={:.3}", n.node, n.bw_bytes_per_s)).collect::<Vec<_>>().join(";"),
            ),
            csv_field(&g.measured_by.join("; ")),
            csv_field(&g.warnings.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join("; ")),
        ];
        out.push_str(&fields.join(","));
        if traced {
            out.push(',');
            out.push_str(&crate::report::attribution::csv_fields(g).join(","));
        }
        out.push('\n');
    }
    out
}

fn csv_field(s: &str) -> String {
    crate::text::csv_field(s)
}
