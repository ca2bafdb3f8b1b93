//! `iostudy compare A B`: what changed between two studies (a runtime upgrade, 9p vs
//! virtio-fs, a kernel), cell by cell, with intervals and a verdict.
//!
//! Cells are matched by scenario, pattern, clients and options, and compared only when
//! their whole workloads are equal (block size, file size, threads, engine…): cells of
//! different workloads are listed with what differs, never judged. For bandwidth and for
//! p50/p99 latency the change is the ratio B / A over repetitions (bootstrap 95 %
//! interval when both sides have two or more). A change is *significant* when it
//! exceeds the threshold and, with repetitions, its interval excludes 1; without
//! repetitions the threshold alone decides, and the output says so. Any significant
//! regression makes the command exit 1, so it can gate CI — and so does a cell that
//! failed, is missing on one side, or could not be read: a gate never passes a run
//! whose figures are not all there.

use std::fmt::Write;

use minijinja::{Environment, Value, context};
use serde::Serialize;

use crate::report::model::{Group, GroupKey, Report};
use crate::report::units::bandwidth;
use crate::results::stats::{Estimate, bootstrap_ratio};
use crate::workload::Workload;

/// The outcome for one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Improved,
    Regressed,
    NoSignificantChange,
}

impl Verdict {
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Regressed => "regressed",
            Verdict::NoSignificantChange => "no significant change",
        }
    }
}

/// One matched cell.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub key: GroupKey,
    pub label: String,
    pub bw_a: Option<f64>,
    pub bw_b: Option<f64>,
    /// B / A.
    pub bw: Option<Estimate>,
    pub p50: Option<Estimate>,
    pub p99: Option<Estimate>,
    pub verdict: Verdict,
    /// What made the verdict.
    pub reasons: Vec<String>,
}

/// Two studies side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub threshold: f64,
    pub changes: Vec<Change>,
    pub only_in_a: Vec<GroupKey>,
    pub only_in_b: Vec<GroupKey>,
    /// Cells in both whose workloads differ, with what differs (not compared).
    pub different_workloads: Vec<(GroupKey, String)>,
    /// Whether any compared cell had repetitions on both sides.
    pub with_intervals: bool,
    /// What measured each side (distinct values): iostudy, fio run in the clients, or
    /// imported fio outputs.
    pub measured_by: (Vec<String>, Vec<String>),
    /// Cells whose repetitions failed, on either side (`B: bare seq read c=2: 1 of 3
    /// repetition(s) failed`).
    pub failed: Vec<String>,
    /// Cell files of either side that could not be read.
    pub unreadable: Vec<String>,
}

impl Comparison {
    pub fn regressions(&self) -> usize {
        self.changes.iter().filter(|c| c.verdict == Verdict::Regressed).count()
    }

    /// What makes the comparison incomplete: failed, missing and unreadable cells.
    pub fn gaps(&self) -> usize {
        self.failed.len() + self.only_in_a.len() + self.only_in_b.len() + self.unreadable.len()
    }
}

fn samples(g: &Group, f: impl Fn(&crate::results::aggregate::CellFigures) -> f64) -> Vec<f64> {
    g.reps.iter().map(f).collect()
}

fn measured(r: &Report) -> Vec<String> {
    let mut v: Vec<String> = r.groups.iter().flat_map(|g| g.measured_by.clone()).collect();
    v.sort();
    v.dedup();
    v
}

/// Compares every cell present in both.
pub fn compare(a: &Report, b: &Report, a_name: &str, b_name: &str, threshold: f64) -> Comparison {
    let mut changes = Vec::new();
    let mut only_in_a = Vec::new();
    let mut different_workloads = Vec::new();
    let mut with_intervals = false;
    for ga in &a.groups {
        let Some(gb) = b.groups.iter().find(|g| g.key == ga.key) else {
            only_in_a.push(ga.key.clone());
            continue;
        };
        if let Some(diff) = workload_difference(ga.workload.as_ref(), gb.workload.as_ref()) {
            different_workloads.push((ga.key.clone(), diff));
            continue;
        }
        if ga.reps.is_empty() || gb.reps.is_empty() {
            continue; // every repetition failed on a side: listed in `failed`
        }
        let seed = 0xC0_FFEE;
        let bw =
            bootstrap_ratio(&samples(gb, |f| f.window_bw_bytes_per_s), &samples(ga, |f| f.window_bw_bytes_per_s), seed);
        let p50 = bootstrap_ratio(
            &samples(gb, |f| f.latency_ns.p50 as f64),
            &samples(ga, |f| f.latency_ns.p50 as f64),
            seed + 1,
        );
        let p99 = bootstrap_ratio(
            &samples(gb, |f| f.latency_ns.p99 as f64),
            &samples(ga, |f| f.latency_ns.p99 as f64),
            seed + 2,
        );
        with_intervals |= bw.is_some_and(|e| e.has_interval());
        let mut better = Vec::new();
        let mut worse = Vec::new();
        let mut judge = |name: &str, e: Option<Estimate>, higher_is_better: bool| {
            let Some(e) = e else { return };
            let up = e.mean > 1.0 + threshold && (!e.has_interval() || e.lo > 1.0);
            let down = e.mean < 1.0 - threshold && (!e.has_interval() || e.hi < 1.0);
            let pct = format!("{name} {:+.1} %", (e.mean - 1.0) * 100.0);
            match (up, down, higher_is_better) {
                (true, _, true) | (_, true, false) => better.push(pct),
                (true, _, false) | (_, true, true) => worse.push(pct),
                _ => {}
            }
        };
        judge("bandwidth", bw, true);
        judge("p50", p50, false);
        judge("p99", p99, false);
        let (verdict, reasons) = if !worse.is_empty() {
            (Verdict::Regressed, worse)
        } else if !better.is_empty() {
            (Verdict::Improved, better)
        } else {
            (Verdict::NoSignificantChange, Vec::new())
        };
        changes.push(Change {
            key: ga.key.clone(),
            label: ga.label.clone(),
            bw_a: ga.bw.map(|e| e.mean),
            bw_b: gb.bw.map(|e| e.mean),
            bw,
            p50,
            p99,
            verdict,
            reasons,
        });
    }
    let only_in_b =
        b.groups.iter().filter(|g| !a.groups.iter().any(|x| x.key == g.key)).map(|g| g.key.clone()).collect();
    let mut failed = Vec::new();
    for (side, r) in [("A", a), ("B", b)] {
        for g in r.groups.iter().filter(|g| g.failed_reps > 0) {
            failed.push(format!(
                "{side}: {} {} c={}: {} of {} repetition(s) failed",
                g.key.scenario,
                g.key.mode(),
                g.key.clients,
                g.failed_reps,
                g.failed_reps + g.reps.len()
            ));
        }
    }
    let unreadable =
        a.unreadable.iter().map(|u| format!("A: {u}")).chain(b.unreadable.iter().map(|u| format!("B: {u}"))).collect();
    Comparison {
        a: a_name.to_string(),
        b: b_name.to_string(),
        threshold,
        changes,
        only_in_a,
        only_in_b,
        different_workloads,
        with_intervals,
        measured_by: (measured(a), measured(b)),
        failed,
        unreadable,
    }
}

/// Workload fields that do not change what is measured, only who measured or how it is
/// recorded: comparing iostudy's engine with fio (`engine`), a fallback allowed or not,
/// another random seed (the same blocks in another order), file names and places, the
/// width of the bandwidth series.
const NOT_COMPARED: &[&str] =
    &["engine", "engine_fallback", "randseed", "directory", "filename_prefix", "log_interval"];

/// What differs between two workloads (`bs 65536 vs 4096, numjobs 4 vs 1`), or `None`.
fn workload_difference(a: Option<&Workload>, b: Option<&Workload>) -> Option<String> {
    let (Some(a), Some(b)) = (a, b) else { return None };
    let (serde_json::Value::Object(ma), serde_json::Value::Object(mb)) =
        (serde_json::to_value(a).ok()?, serde_json::to_value(b).ok()?)
    else {
        return None;
    };
    let text = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "-".into(),
    };
    let diffs: Vec<String> = ma
        .keys()
        .chain(mb.keys().filter(|k| !ma.contains_key(*k)))
        .filter(|k| !NOT_COMPARED.contains(&k.as_str()) && ma.get(*k) != mb.get(*k))
        .map(|k| format!("{k} {} vs {}", text(ma.get(k)), text(mb.get(k))))
        .collect();
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

fn pct(e: &Option<Estimate>) -> String {
    match e {
        Some(e) if e.has_interval() => {
            format!("{:+.1} % ({:+.1}…{:+.1})", (e.mean - 1.0) * 100.0, (e.lo - 1.0) * 100.0, (e.hi - 1.0) * 100.0)
        }
        Some(e) => format!("{:+.1} %", (e.mean - 1.0) * 100.0),
        None => "-".into(),
    }
}

fn rows(c: &Comparison) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["mode", "scenario", "clients", "bw A", "bw B", "bw change", "p50 change", "p99 change", "verdict"]
            .map(String::from)
            .to_vec(),
    ];
    for ch in &c.changes {
        rows.push(vec![
            ch.key.mode(),
            ch.label.clone(),
            ch.key.clients.to_string(),
            ch.bw_a.map_or("-".into(), bandwidth),
            ch.bw_b.map_or("-".into(), bandwidth),
            pct(&ch.bw),
            pct(&ch.p50),
            pct(&ch.p99),
            ch.verdict.text().to_string(),
        ]);
    }
    rows
}

/// The terminal table.
pub fn text(c: &Comparison) -> String {
    let rows = rows(c);
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let by = |v: &[String]| if v.is_empty() { String::new() } else { format!(" (measured by {})", v.join("; ")) };
    let mut out = format!(
        "A: {}{}\nB: {}{}\nchange = B / A − 1; threshold ±{:.1} %",
        c.a,
        by(&c.measured_by.0),
        c.b,
        by(&c.measured_by.1),
        c.threshold * 100.0
    );
    if !c.with_intervals {
        out.push_str(" (no repetitions on both sides: the threshold alone decides)");
    }
    out.push_str("\n\n");
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if (3..8).contains(&i) {
                    format!("{cell:>w$}", w = widths[i])
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for (key, diff) in &c.different_workloads {
        let _ = writeln!(
            out,
            "not compared, the workloads differ: {} {} c={} ({diff})",
            key.scenario,
            key.mode(),
            key.clients
        );
    }
    for (what, keys) in [("only in A", &c.only_in_a), ("only in B", &c.only_in_b)] {
        if !keys.is_empty() {
            let names: Vec<String> =
                keys.iter().map(|k| format!("{} {} c={}", k.scenario, k.mode(), k.clients)).collect();
            let _ = writeln!(out, "{what}: {}", names.join(", "));
        }
    }
    for f in c.failed.iter().chain(&c.unreadable) {
        let _ = writeln!(out, "not compared, {f}");
    }
    let regressed = c.regressions();
    let improved = c.changes.iter().filter(|x| x.verdict == Verdict::Improved).count();
    let _ = write!(
        out,
        "\n{} cell(s) compared: {improved} improved, {regressed} regressed, {} no significant change",
        c.changes.len(),
        c.changes.len() - improved - regressed
    );
    match c.gaps() {
        0 => out.push('\n'),
        n => {
            let _ = writeln!(out, "; {n} cell(s) failed, missing or unreadable (the gate fails)");
        }
    }
    out
}

const TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>iostudy compare</title>
<style>
body { font-family: "DejaVu Sans", system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-size: .92rem; } th, td { border: 1px solid #ccc; padding: .25rem .55rem; }
th { background: #f1f3f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.regressed { background: #fde8e8; } .improved { background: #e6f6ea; }
</style></head><body>
<h1>iostudy compare</h1>
<p>A: {{ a }}<br>B: {{ b }}<br>change = B / A − 1; threshold ±{{ threshold }} %{% if not with_intervals %} (no repetitions on both sides: the threshold alone decides){% endif %}</p>
<table id="compare">
<tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in rows %}<tr class="{{ r.class }}">{% for c in r.cells %}<td{% if loop.index > 3 and loop.index < 9 %} class="num"{% endif %}>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p>{{ summary }}</p>
</body></html>
"#;

/// A self-contained HTML page of the comparison.
pub fn html(c: &Comparison) -> Result<String, String> {
    let all = rows(c);
    let body: Vec<_> = all[1..]
        .iter()
        .zip(&c.changes)
        .map(|(r, ch)| context! { cells => Value::from(minijinja::value::Serde(r)), class => format!("{:?}", ch.verdict).to_lowercase() })
        .collect();
    let summary = text(c).lines().last().unwrap_or_default().to_string();
    let mut env = Environment::new();
    env.add_template("compare.html", TEMPLATE).map_err(|e| e.to_string())?;
    env.get_template("compare.html")
        .map_err(|e| e.to_string())?
        .render(context! {
            a => &c.a, b => &c.b, threshold => format!("{:.1}", c.threshold * 100.0),
            with_intervals => c.with_intervals, header => Value::from(minijinja::value::Serde(&all[0])), rows => body, summary => summary,
        })
        .map_err(|e| format!("rendering compare.html: {e}"))
}
