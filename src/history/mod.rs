//! Every run kept: a history in SQLite, gates against it, trends across versions.
//!
//! `compare A B` judges one run against another. Teams that benchmark continuously
//! need every run kept, with what it ran on, so a gate can ask "is this run worse than
//! the last twenty?" and a trend can show *which* upgrade moved a figure. Kata's
//! checkmetrics has bounds but no history; benchmark dashboards keep a number per run
//! but no latency histogram, so they cannot give a percentile over many runs, and do
//! not know which runtime version changed between two runs.
//!
//! A history is one SQLite file (`sqlite3 history.db` opens it): a row per run with
//! its environment (kernel, CPU, each scenario's runtime version, iostudy's version
//! and build, the study's hash, the hosts), a row per cell, a row per figure (value,
//! 95 % interval, repetitions, unit, which way is better, the per-repetition samples)
//! and the cell's merged HDR histogram, so percentiles over runs are exact merges.
//! [`RunRecord`] is a results directory in that shape; [`db`] stores and reads it;
//! [`gate`] judges a run against bounds or against history; [`trend`] draws the
//! history; [`export`] writes a run for other dashboards (bencher's BMF, OpenMetrics).

pub mod bounds;
pub mod db;
pub mod export;
pub mod gate;
pub mod trend;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::model::{Group, GroupKey, Report};
use crate::results::aggregate::CellFigures;
use crate::results::stats::{Estimate, bootstrap_mean};

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

impl Better {
    pub fn name(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }

    pub fn parse(s: &str) -> Option<Better> {
        match s {
            "higher" => Some(Better::Higher),
            "lower" => Some(Better::Lower),
            _ => None,
        }
    }
}

/// A figure iostudy reports about a cell, as the history, bounds and exports name it.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub what: &'static str,
    /// Its value (with interval) and per-repetition samples in a group.
    of: fn(&Group) -> Option<Valued>,
}

/// A figure's value (with its interval) and its per-repetition samples.
type Valued = (Estimate, Vec<f64>);

fn from_reps(g: &Group, est: Option<Estimate>, f: fn(&CellFigures) -> f64) -> Option<Valued> {
    Some((est?, g.reps.iter().map(f).collect()))
}

/// A latency figure: the value is the merge of every client of every repetition; the
/// interval is over the repetitions' own values.
fn latency(g: &Group, merged: f64, f: fn(&CellFigures) -> f64) -> Option<Valued> {
    if g.latency_ns.count == 0 {
        return None;
    }
    let samples: Vec<f64> = g.reps.iter().map(f).collect();
    let spread = bootstrap_mean(&samples, 0x1A7E)?;
    Some((Estimate { mean: merged, lo: spread.lo.min(merged), hi: spread.hi.max(merged), n: samples.len() }, samples))
}

/// Every figure kept, in the order tables list them.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "bw",
        unit: "bytes/s",
        better: Better::Higher,
        what: "aggregate bandwidth over the window where all clients ran",
        of: |g| Some((g.bw?, CellFigures::windowed_bw(&g.reps))),
    },
    Metric {
        name: "bw_last_done",
        unit: "bytes/s",
        better: Better::Higher,
        what: "all bytes over first start to last end",
        of: |g| from_reps(g, g.bw_last_done, |f| f.bw_last_done_bytes_per_s),
    },
    Metric {
        name: "fio_sum_bw",
        unit: "bytes/s",
        better: Better::Higher,
        what: "sum of each client's own rate (what summed fio output says)",
        of: |g| from_reps(g, g.fio_sum_bw, |f| f.sum_bw_bytes_per_s),
    },
    Metric {
        name: "iops",
        unit: "ops/s",
        better: Better::Higher,
        what: "sum of each client's own I/O rate",
        of: |g| from_reps(g, g.iops, |f| f.sum_iops),
    },
    Metric {
        name: "p50",
        unit: "ns",
        better: Better::Lower,
        what: "median completion latency, every client merged",
        of: |g| latency(g, g.latency_ns.p50 as f64, |f| f.latency_ns.p50 as f64),
    },
    Metric {
        name: "p99",
        unit: "ns",
        better: Better::Lower,
        what: "99th percentile completion latency, every client merged",
        of: |g| latency(g, g.latency_ns.p99 as f64, |f| f.latency_ns.p99 as f64),
    },
    Metric {
        name: "mean_latency",
        unit: "ns",
        better: Better::Lower,
        what: "mean completion latency, every client merged",
        of: |g| latency(g, g.latency_ns.mean, |f| f.latency_ns.mean),
    },
    Metric {
        name: "cpu_s_per_gib",
        unit: "s/GiB",
        better: Better::Lower,
        what: "host CPU-seconds per GiB moved, inside the window",
        of: |g| Some((g.cpu_s_per_gib?, Vec::new())),
    },
    Metric {
        name: "client_bw_cv",
        unit: "ratio",
        better: Better::Lower,
        what: "coefficient of variation of the clients' own rates",
        of: |g| {
            let samples: Vec<f64> = g.reps.iter().map(|f| f.client_bw_cv).collect();
            let mean = g.client_bw_cv?;
            Some((Estimate { mean, lo: mean, hi: mean, n: samples.len() }, samples))
        },
    },
];

/// The metric named `name`.
pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// The names of every metric, for error hints.
pub fn metric_names() -> String {
    METRICS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// A figure's value in its unit, as tables print it (`1.20GiB/s`, `85.31µs`).
pub fn show(value: f64, unit: &str) -> String {
    use crate::report::units;
    if !value.is_finite() {
        return "-".into();
    }
    match unit {
        "bytes/s" => units::bandwidth(value),
        "ns" => units::latency(value),
        "ops/s" => units::count(value),
        "s/GiB" => format!("{value:.3}s/GiB"),
        _ => format!("{value:.3}"),
    }
}

/// One figure of one cell of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub metric: String,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    /// Repetitions it is over.
    pub n: usize,
    pub unit: String,
    pub better: Better,
    /// Each repetition's own value (empty where the report keeps none).
    pub samples: Vec<f64>,
}

/// One cell (its repetitions grouped) of a run.
#[derive(Debug, Clone, Serialize)]
pub struct CellRecord {
    pub key: GroupKey,
    pub label: String,
    /// The workload as JSON (directory left out).
    pub workload: String,
    pub reps: usize,
    pub failed_reps: usize,
    pub figures: Vec<Figure>,
    /// The merged latency histogram: HdrHistogram V2 + DEFLATE.
    #[serde(skip)]
    pub histogram: Vec<u8>,
}

impl CellRecord {
    /// `scenario|pattern|clients|k=v,…`: how cells of two runs of a study are matched.
    pub fn key_text(&self) -> String {
        key_text(&self.key)
    }

    pub fn figure(&self, metric: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.metric == metric)
    }

    /// `bare seq read c=4`.
    pub fn title(&self) -> String {
        format!("{} {} c={}", self.key.scenario, self.key.mode(), self.key.clients)
    }
}

/// A cell's key as text (see [`CellRecord::key_text`]).
pub fn key_text(k: &GroupKey) -> String {
    let opts: Vec<String> = k.options.iter().map(|(a, b)| format!("{a}={b}")).collect();
    format!("{}|{}|{}|{}", k.scenario, k.pattern, k.clients, opts.join(","))
}

/// A results directory as the history keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// sha256 of the run's record and every cell's figures: the same run added twice
    /// has the same fingerprint.
    pub fingerprint: String,
    /// When its first client started (wall clock, ns since the epoch): runs are
    /// ordered by when they ran, not when they were added.
    pub started_ns: u64,
    /// Where it was added from.
    pub source: String,
    pub study_name: String,
    /// sha256 of the study file as run and the scale: only runs of the same study are
    /// compared.
    pub study_hash: String,
    pub iostudy_version: String,
    /// What it ran on: `kernel`, `cpu`, `cpus`, `iostudy`, `iostudy build`, one
    /// `runtime <scenario>` per scenario, `hosts`, `placement`.
    pub environment: BTreeMap<String, String>,
    pub cells: Vec<CellRecord>,
}

impl RunRecord {
    /// The record of a loaded results directory. Fails when the directory has no
    /// successful cell (nothing to keep) or no study record.
    pub fn of(report: &Report, source: &str) -> Result<RunRecord, String> {
        use sha2::{Digest as _, Sha256};
        let run = report.run.as_ref().ok_or_else(|| {
            format!("{source} has no run.json: only a directory written by `iostudy run` (or `import`) can be kept")
        })?;
        let mut cells = Vec::new();
        for g in &report.groups {
            if g.reps.is_empty() {
                continue;
            }
            let figures = METRICS
                .iter()
                .filter_map(|m| {
                    let (e, samples) = (m.of)(g)?;
                    e.mean.is_finite().then(|| Figure {
                        metric: m.name.to_string(),
                        value: e.mean,
                        lo: e.lo,
                        hi: e.hi,
                        n: e.n,
                        unit: m.unit.to_string(),
                        better: m.better,
                        samples,
                    })
                })
                .collect();
            let histogram = base64_decode(&g.latency_histogram.0);
            cells.push(CellRecord {
                key: g.key.clone(),
                label: g.label.clone(),
                workload: serde_json::to_string(&g.workload).unwrap_or_default(),
                reps: g.reps.len(),
                failed_reps: g.failed_reps,
                figures,
                histogram,
            });
        }
        if cells.is_empty() {
            return Err(format!("{source} holds no successful cell: nothing to keep"));
        }
        let started_ns = report.groups.iter().flat_map(|g| g.reps.iter().map(|f| f.window_start_ns)).min().unwrap_or(0);
        let mut study = Sha256::new();
        study.update(report.study_source.as_bytes());
        study.update(format!("\nscale={:?}", run.scale).as_bytes());
        let study_hash: String = study.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let mut print = Sha256::new();
        print.update(serde_json::to_vec(run).unwrap_or_default());
        for g in &report.groups {
            print.update(serde_json::to_vec(&(&g.key, &g.reps)).unwrap_or_default());
        }
        let fingerprint: String = print.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(RunRecord {
            fingerprint,
            started_ns,
            source: source.to_string(),
            study_name: run.study_name.clone(),
            study_hash,
            iostudy_version: run.iostudy_version.clone(),
            environment: environment(run),
            cells,
        })
    }

    pub fn cell(&self, key: &GroupKey) -> Option<&CellRecord> {
        self.cells.iter().find(|c| c.key == *key)
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()
}

/// What a run ran on, as comparable strings.
fn environment(run: &crate::results::store::RunInfo) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("kernel".to_string(), run.host.kernel.clone());
    if let Some(cpu) = &run.host.cpu_model {
        env.insert("cpu".to_string(), cpu.clone());
    }
    env.insert("cpus".to_string(), run.host.cpus.to_string());
    env.insert("host".to_string(), run.host.hostname.clone());
    env.insert("iostudy".to_string(), run.iostudy_version.clone());
    if let Some(b) = &run.iostudy_build {
        env.insert("iostudy build".to_string(), b.clone());
    }
    for s in &run.scenarios {
        let v = s.runtime.version.clone().unwrap_or_else(|| s.runtime.name.clone());
        env.insert(format!("runtime {}", s.name), v);
    }
    if let Some(p) = &run.placement {
        env.insert("placement".to_string(), p.to_string());
    }
    if let Some(t) = &run.target {
        env.insert("target fs".to_string(), t.fs.clone());
    }
    env
}

/// What changed from `a` to `b`: `runtime runc: 1.1.5 → 1.1.12`, one line per key.
pub fn environment_changes(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, vb) in b {
        match a.get(k) {
            Some(va) if va == vb => {}
            Some(va) => out.push(format!("{k}: {va} → {vb}")),
            None => out.push(format!("{k}: (none) → {vb}")),
        }
    }
    for (k, va) in a {
        if !b.contains_key(k) {
            out.push(format!("{k}: {va} → (none)"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
