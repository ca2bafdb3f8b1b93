//! Bounds files: fixed limits a run's figures must stay within, with the meaning Kata's
//! `checkmetrics` gives them, so teams that keep such files can keep their habits.
//!
//! ```toml
//! [[metric]]
//! name = "bare seq read, 4 clients"  # optional: what the table calls it
//! scenario = "bare"                  # selectors, each optional: every cell
//! pattern = "read"                   #   that matches them all is checked
//! clients = 4
//! # options = { iodepth = "16" }   # a cell's option-axis values, all of them
//! checkvar = "bw"                    # which figure (`iostudy history metrics`)
//! checktype = "mean"                 # mean, min, max, sd or cov over repetitions
//! midval = 1.2e9                     # floor = midval × (1 − minpercent / 100),
//! minpercent = 10.0                  # ceiling = midval × (1 + maxpercent / 100)
//! maxpercent = 20.0
//! # or minval = … and maxval = …
//! ```
//!
//! An entry that matches no cell of the run fails: a gate never passes a figure that
//! is not there. Errors carry file:line:col and a hint.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::history::{CellRecord, RunRecord, gate, metric, metric_names, show};
use crate::report::table::align;
use crate::study::{StudyError, line_col};
use crate::workload::Pattern;

/// What is computed over a figure's repetitions before it is held to its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    Mean,
    Min,
    Max,
    Sd,
    Cov,
}

impl CheckType {
    pub fn name(self) -> &'static str {
        match self {
            CheckType::Mean => "mean",
            CheckType::Min => "min",
            CheckType::Max => "max",
            CheckType::Sd => "sd",
            CheckType::Cov => "cov",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    metric: Vec<Spanned<Entry>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Option<String>,
    description: Option<String>,
    scenario: Option<String>,
    pattern: Option<Spanned<String>>,
    clients: Option<u32>,
    options: Option<std::collections::BTreeMap<String, String>>,
    checkvar: Spanned<String>,
    #[serde(default = "mean")]
    checktype: CheckType,
    midval: Option<f64>,
    minpercent: Option<f64>,
    maxpercent: Option<f64>,
    minval: Option<f64>,
    maxval: Option<f64>,
}

fn mean() -> CheckType {
    CheckType::Mean
}

/// One checked entry of a bounds file.
#[derive(Debug, Clone)]
pub struct Bound {
    pub name: String,
    pub scenario: Option<String>,
    pub pattern: Option<Pattern>,
    pub clients: Option<u32>,
    /// The cell's option-axis values, all of them (`{ iodepth = "16" }`).
    pub options: Option<Vec<(String, String)>>,
    pub metric: String,
    pub checktype: CheckType,
    pub floor: f64,
    pub ceiling: f64,
}

impl Bound {
    fn matches(&self, c: &CellRecord) -> bool {
        self.scenario.as_ref().is_none_or(|s| *s == c.key.scenario)
            && self.pattern.is_none_or(|p| p == c.key.pattern)
            && self.clients.is_none_or(|n| n == c.key.clients)
            && self.options.as_ref().is_none_or(|o| {
                let mut have = c.key.options.clone();
                have.sort();
                *o == have
            })
    }
}

/// Reads a bounds file.
pub fn load(path: &Path) -> Result<Vec<Bound>, StudyError> {
    let source = std::fs::read_to_string(path).map_err(|source| StudyError::Read { path: path.into(), source })?;
    parse(&source, path)
}

/// Parses a bounds file's text (`path` names it in errors).
pub fn parse(source: &str, path: &Path) -> Result<Vec<Bound>, StudyError> {
    let at = |span: Option<Range<usize>>, message: String, hint: Option<String>| {
        let (line, col) = line_col(source, span.map_or(0, |s| s.start));
        StudyError::At { path: path.into(), line, col, message, hint }
    };
    let file: File = toml::from_str(source).map_err(|e| {
        let hint = e.message().contains("unknown field").then(|| {
            "an entry's keys: name, description, scenario, pattern, clients, options, checkvar, checktype, midval, minpercent, maxpercent, minval, maxval".to_string()
        });
        at(e.span(), e.message().trim().to_string(), hint)
    })?;
    if file.metric.is_empty() {
        return Err(at(
            None,
            "the bounds file has no [[metric]] entry".into(),
            Some("see `iostudy bounds --help`".into()),
        ));
    }
    let mut out = Vec::new();
    for (i, spanned) in file.metric.iter().enumerate() {
        let span = spanned.span();
        let e = spanned.get_ref();
        let var = e.checkvar.get_ref();
        let Some(m) = metric(var) else {
            return Err(at(
                Some(e.checkvar.span()),
                format!("metric[{i}].checkvar `{var}` is not a figure iostudy keeps"),
                Some(format!("one of: {}", metric_names())),
            ));
        };
        let pattern = match &e.pattern {
            Some(p) => Some(p.get_ref().parse::<Pattern>().map_err(|why| at(Some(p.span()), why, None))?),
            None => None,
        };
        let (floor, ceiling) = match (e.midval, e.minval, e.maxval) {
            (Some(mid), None, None) => {
                let (Some(lo), Some(hi)) = (e.minpercent, e.maxpercent) else {
                    return Err(at(
                        Some(span),
                        format!("metric[{i}] has midval but not both minpercent and maxpercent"),
                        Some("e.g. minpercent = 10.0, maxpercent = 10.0 for ±10 %".into()),
                    ));
                };
                if lo < 0.0 || hi < 0.0 {
                    return Err(at(Some(span), format!("metric[{i}]: percentages must be 0 or more"), None));
                }
                (mid * (1.0 - lo / 100.0), mid * (1.0 + hi / 100.0))
            }
            (None, lo, hi) if lo.is_some() || hi.is_some() => {
                if e.minpercent.is_some() || e.maxpercent.is_some() {
                    return Err(at(
                        Some(span),
                        format!("metric[{i}] mixes minval/maxval with minpercent/maxpercent"),
                        Some("percentages go with midval".into()),
                    ));
                }
                (lo.unwrap_or(f64::NEG_INFINITY), hi.unwrap_or(f64::INFINITY))
            }
            (Some(_), _, _) => {
                return Err(at(
                    Some(span),
                    format!("metric[{i}] has both midval and minval/maxval"),
                    Some("give midval with minpercent/maxpercent, or minval/maxval".into()),
                ));
            }
            _ => {
                return Err(at(
                    Some(span),
                    format!("metric[{i}] has no bounds"),
                    Some("add midval with minpercent and maxpercent, or minval and/or maxval".into()),
                ));
            }
        };
        if floor > ceiling {
            return Err(at(Some(span), format!("metric[{i}]: its floor {floor} is above its ceiling {ceiling}"), None));
        }
        let name = e.name.clone().unwrap_or_else(|| {
            let mut n: Vec<String> = Vec::new();
            n.extend(e.scenario.clone());
            n.extend(e.pattern.as_ref().map(|p| p.get_ref().clone()));
            n.extend(e.clients.map(|c| format!("c={c}")));
            n.push(format!("{} {}", e.checktype.name(), m.name));
            n.join(" ")
        });
        let _ = &e.description;
        out.push(Bound {
            name,
            scenario: e.scenario.clone(),
            pattern,
            clients: e.clients,
            options: e.options.as_ref().map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            metric: m.name.to_string(),
            checktype: e.checktype,
            floor,
            ceiling,
        });
    }
    Ok(out)
}

/// One bound held against one cell.
#[derive(Debug, Clone)]
pub struct BoundCheck {
    pub bound: String,
    /// The cell (`bare seq read c=4`), or none when no cell matched.
    pub cell: Option<String>,
    pub metric: String,
    pub checktype: CheckType,
    pub floor: f64,
    pub ceiling: f64,
    /// The value held to them; `None` when it could not be computed.
    pub value: Option<f64>,
    pub pass: bool,
    /// Why it failed, or how far inside it is.
    pub note: String,
}

/// `checktype` of a figure.
fn value_of(c: &CellRecord, metric: &str, t: CheckType) -> Result<f64, String> {
    let f = c.figure(metric).ok_or_else(|| format!("the cell has no {metric} figure"))?;
    let s = &f.samples;
    let need = |n: usize| {
        if s.len() < n {
            Err(format!("{} needs {n} or more repetitions' samples; the cell has {}", t.name(), s.len()))
        } else {
            Ok(())
        }
    };
    let mean = || s.iter().sum::<f64>() / s.len() as f64;
    let sd = || {
        let m = mean();
        (s.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (s.len() - 1) as f64).sqrt()
    };
    Ok(match t {
        CheckType::Mean => f.value,
        CheckType::Min => {
            need(1)?;
            s.iter().copied().fold(f64::INFINITY, f64::min)
        }
        CheckType::Max => {
            need(1)?;
            s.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        }
        CheckType::Sd => {
            need(2)?;
            sd()
        }
        CheckType::Cov => {
            need(2)?;
            let m = mean();
            if m == 0.0 { 0.0 } else { sd() / m }
        }
    })
}

/// Holds every cell a bound selects to it.
pub fn check(run: &RunRecord, bounds: &[Bound]) -> Vec<BoundCheck> {
    let mut out = Vec::new();
    for b in bounds {
        let base = BoundCheck {
            bound: b.name.clone(),
            cell: None,
            metric: b.metric.clone(),
            checktype: b.checktype,
            floor: b.floor,
            ceiling: b.ceiling,
            value: None,
            pass: false,
            note: String::new(),
        };
        let cells: Vec<&CellRecord> = run.cells.iter().filter(|c| b.matches(c)).collect();
        if cells.is_empty() {
            out.push(BoundCheck { note: "no cell of the run matches its selectors".into(), ..base });
            continue;
        }
        for c in cells {
            let mut r = BoundCheck { cell: Some(c.title()), ..base.clone() };
            match value_of(c, &b.metric, b.checktype) {
                Ok(v) => {
                    r.value = Some(v);
                    r.pass = v >= b.floor && v <= b.ceiling;
                    r.note = if v < b.floor {
                        format!("{:.1} % below the floor", (1.0 - v / b.floor) * 100.0)
                    } else if v > b.ceiling {
                        format!("{:.1} % above the ceiling", (v / b.ceiling - 1.0) * 100.0)
                    } else {
                        "within".into()
                    };
                }
                Err(why) => r.note = why,
            }
            out.push(r);
        }
    }
    out
}

/// Bounds from a study's runs (oldest first): for each cell of the newest and each of
/// `rule`'s metrics with [`gate::MIN_RUNS`] or more values, (cell, metric, mean,
/// half-width in percent) — the half-width being the gate's prediction bound, at least
/// its smallest change; and how many figures had too few runs.
pub fn from_history<'a>(
    runs: &'a [RunRecord],
    rule: &'a gate::Rule,
) -> (Vec<(&'a CellRecord, &'a str, f64, f64)>, usize) {
    let Some(newest) = runs.last() else { return (Vec::new(), 0) };
    let judged: usize =
        newest.cells.iter().map(|c| rule.metrics.iter().filter(|m| c.figure(m).is_some()).count()).sum();
    let mut entries = Vec::new();
    let mut thin = 0;
    for c in &newest.cells {
        for m in &rule.metrics {
            let v: Vec<f64> = runs.iter().filter_map(|r| r.cell(&c.key)?.figure(m).map(|f| f.value)).collect();
            if v.len() < gate::MIN_RUNS {
                thin += 1;
                continue;
            }
            let (mean, sd) = gate::mean_sd(&v);
            let half = (rule.factor(v.len(), judged) * sd / mean).max(rule.min_change);
            entries.push((c, m.as_str(), mean, (half * 1000.0).ceil() / 10.0));
        }
    }
    (entries, thin)
}

/// A bounds file for `cells`: each metric's mean ± its half-width (percent) per cell.
pub fn write(study: &str, runs: usize, rule: &str, entries: &[(&CellRecord, &str, f64, f64)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# iostudy bounds (checkmetrics' meaning), written by `iostudy bounds`");
    let _ = writeln!(s, "# from the last {runs} run(s) of study {}", toml_str(study));
    let _ = writeln!(s, "# rule: {rule}");
    for (cell, metric, mid, pct) in entries {
        let _ = writeln!(s, "\n[[metric]]");
        let _ = writeln!(s, "name = {}", toml_str(&format!("{} {metric}", cell.title())));
        let _ = writeln!(s, "scenario = {}", toml_str(&cell.key.scenario));
        let _ = writeln!(s, "pattern = {}", toml_str(cell.key.pattern.name()));
        let _ = writeln!(s, "clients = {}", cell.key.clients);
        if !cell.key.options.is_empty() {
            let o: Vec<String> =
                cell.key.options.iter().map(|(k, v)| format!("{} = {}", toml_str(k), toml_str(v))).collect();
            let _ = writeln!(s, "options = {{ {} }}", o.join(", "));
        }
        let _ = writeln!(s, "checkvar = {}", toml_str(metric));
        let _ = writeln!(s, "checktype = \"mean\"");
        let _ = writeln!(s, "midval = {mid:e}");
        let _ = writeln!(s, "minpercent = {pct:.1}");
        let _ = writeln!(s, "maxpercent = {pct:.1}");
    }
    s
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The checks as a table: floor, value, ceiling and how far outside.
pub fn text(checks: &[BoundCheck]) -> String {
    let mut rows = vec![vec![
        "pass".to_string(),
        "bound".into(),
        "cell".into(),
        "check".into(),
        "floor".into(),
        "value".into(),
        "ceiling".into(),
        "gap".into(),
    ]];
    for c in checks {
        let unit = metric(&c.metric).map_or("", |m| m.unit);
        let unit = if matches!(c.checktype, CheckType::Cov) { "ratio" } else { unit };
        rows.push(vec![
            if c.pass { "ok" } else { "FAIL" }.to_string(),
            c.bound.clone(),
            c.cell.clone().unwrap_or_else(|| "-".into()),
            format!("{} {}", c.checktype.name(), c.metric),
            show(c.floor, unit),
            c.value.map_or("-".into(), |v| show(v, unit)),
            show(c.ceiling, unit),
            c.note.clone(),
        ]);
    }
    let failed = checks.iter().filter(|c| !c.pass).count();
    format!("{}\n{failed} of {} check(s) failed\n", align(&rows, 4), checks.len())
}
