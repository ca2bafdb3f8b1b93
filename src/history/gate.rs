//! The history gate: is this run worse than the runs before it?
//!
//! The rule, for each cell and each gated metric with at least [`MIN_RUNS`] earlier
//! runs of the same study: take the last N runs' values (mean m, standard deviation
//! s); a new run drawn from the same distribution falls beyond the one-sided
//! prediction bound m ∓ t · s · √(1 + 1/N) (Student's t with N − 1 degrees of
//! freedom) with probability α/k, where k is the number of figures judged in the run,
//! so the whole run is wrongly failed with probability at most α (Bonferroni). A
//! figure fails when it is beyond that bound on its worse side *and* has moved by more
//! than `min_change` (a change too small to matter fails nothing, however steady the
//! history). Beyond the bound on the better side it is reported as improved.
//!
//! The same rule is applied, per metric, to the whole run: the geometric mean of its
//! cells' values over their history means ([`run_level`]), counted among the k tests.

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::history::{Better, RunRecord, environment_changes, show};
use crate::report::table::align;

/// Runs needed before a figure is judged (two give a standard deviation of one
/// difference, too loose to mean anything).
pub const MIN_RUNS: usize = 3;

/// How a run is judged against its history.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The metrics judged.
    pub metrics: Vec<String>,
    /// Family-wise false-alarm rate for a whole run.
    pub alpha: f64,
    /// Smallest relative change that can fail (0.03 = 3 %).
    pub min_change: f64,
}

impl Rule {
    pub fn describe(&self) -> String {
        format!(
            "a figure fails when it is worse than the one-sided prediction bound of the last runs (Student's t, \
             {:.1} % false alarms per run, Bonferroni over the figures judged) and by more than {:.1} %",
            self.alpha * 100.0,
            self.min_change * 100.0
        )
    }

    /// Student's t for one of `k` tests with `n` values, and the bound's half-width
    /// factor t · √(1 + 1/n).
    pub fn factor(&self, n: usize, k: usize) -> f64 {
        let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
            .map_or(f64::INFINITY, |d| d.inverse_cdf(1.0 - self.alpha / k.max(1) as f64));
        t * (1.0 + 1.0 / n as f64).sqrt()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Regressed,
    Improved,
    Steady,
    /// Too few earlier runs to judge.
    NoVerdict,
}

impl Verdict {
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Regressed => "REGRESSED",
            Verdict::Improved => "improved",
            Verdict::Steady => "ok",
            Verdict::NoVerdict => "no verdict",
        }
    }
}

/// One figure of the run against its history.
#[derive(Debug, Clone)]
pub struct Judged {
    pub cell: String,
    pub metric: String,
    pub unit: String,
    pub value: f64,
    /// Earlier runs' values: their count, mean and standard deviation.
    pub runs: usize,
    pub mean: f64,
    pub sd: f64,
    /// The bound on the worse side.
    pub bound: Option<f64>,
    /// value / mean − 1.
    pub change: f64,
    pub verdict: Verdict,
}

impl Judged {
    /// A figure not judged yet: [`decide`] fills in its history and verdict.
    fn new(cell: String, metric: &str, unit: &str, value: f64, runs: usize) -> Judged {
        Judged {
            cell,
            metric: metric.to_string(),
            unit: unit.to_string(),
            value,
            runs,
            mean: f64::NAN,
            sd: f64::NAN,
            bound: None,
            change: f64::NAN,
            verdict: Verdict::NoVerdict,
        }
    }
}

/// A run judged against its history.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub figures: Vec<Judged>,
    /// What differs between the run's environment and the latest earlier run's.
    pub environment: Vec<String>,
    pub history_runs: usize,
}

impl Judgement {
    pub fn regressions(&self) -> usize {
        self.figures.iter().filter(|j| j.verdict == Verdict::Regressed).count()
    }
}

/// Mean and sample standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0);
    (m, var.sqrt())
}

/// One test: its row, the run's value, the earlier values, which way is better.
struct Test {
    row: Judged,
    past: Vec<f64>,
    better: Better,
}

/// Judges `run` against `history` (earlier runs of its study, any order): each figure
/// on its own, and, per metric, the whole run at once (see [`run_level`]).
pub fn judge(run: &RunRecord, history: &[RunRecord], rule: &Rule) -> Judgement {
    let mut tests = Vec::new();
    for metric in &rule.metrics {
        let mut cells = Vec::new();
        for c in &run.cells {
            let Some(f) = c.figure(metric) else { continue };
            let past: Vec<(usize, f64)> = history
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((i, r.cell(&c.key)?.figure(metric)?.value)))
                .collect();
            let row = Judged::new(c.title(), &f.metric, &f.unit, f.value, past.len());
            cells.push((f.value, past.clone()));
            tests.push(Test { row, past: past.into_iter().map(|(_, v)| v).collect(), better: f.better });
        }
        if let Some(t) = run_level(metric, &cells, history.len()) {
            tests.push(t);
        }
    }
    let k = tests.iter().filter(|t| t.past.len() >= MIN_RUNS).count();
    let figures = tests.into_iter().map(|t| decide(t, rule, k)).collect();
    let environment = history
        .iter()
        .max_by_key(|r| r.started_ns)
        .map(|last| environment_changes(&last.environment, &run.environment))
        .unwrap_or_default();
    Judgement { figures, environment, history_runs: history.len() }
}

/// The whole run at once, for one metric: the geometric mean over its cells of each
/// cell's value against that cell's history mean, held to the same statistic of each
/// earlier run. A change that moves every cell (a kernel, a runtime, a throttled
/// disk) shows here above the noise of any one cell, whose run-to-run variation is
/// partly independent from cell to cell. Needs two or more cells with history.
fn run_level(metric: &str, cells: &[(f64, Vec<(usize, f64)>)], runs: usize) -> Option<Test> {
    let judged: Vec<&(f64, Vec<(usize, f64)>)> = cells.iter().filter(|(_, p)| p.len() >= MIN_RUNS).collect();
    if judged.len() < 2 {
        return None;
    }
    let mean_of = |p: &[(usize, f64)]| p.iter().map(|(_, v)| v).sum::<f64>() / p.len() as f64;
    let score = |pairs: &mut dyn Iterator<Item = (f64, f64)>| {
        let (sum, n) = pairs.fold((0.0, 0), |(s, n), (v, m)| (s + (v / m).ln(), n + 1));
        (n > 0).then(|| sum / n as f64)
    };
    let now = score(&mut judged.iter().map(|(v, p)| (*v, mean_of(p))))?;
    let past: Vec<f64> = (0..runs)
        .filter_map(|r| {
            score(&mut judged.iter().filter_map(|(_, p)| Some((p.iter().find(|(i, _)| *i == r)?.1, mean_of(p)))))
        })
        .collect();
    // Each earlier run's score is against means it took part in: its spread is
    // √((n−1)/n) of a new run's; widened back.
    let n = past.len() as f64;
    let widen = if n > 1.0 { (n / (n - 1.0)).sqrt() } else { 1.0 };
    let better = crate::history::metric(metric).map_or(Better::Higher, |m| m.better);
    let row =
        Judged::new(format!("all {} cells (geometric mean)", judged.len()), metric, "ratio", now.exp(), past.len());
    Some(Test { row, past: past.iter().map(|s| (s * widen).exp()).collect(), better })
}

fn decide(t: Test, rule: &Rule, k: usize) -> Judged {
    let Test { mut row, past, better } = t;
    if past.is_empty() {
        return row;
    }
    let (mean, sd) = mean_sd(&past);
    row.mean = mean;
    row.sd = sd;
    row.change = row.value / mean - 1.0;
    if past.len() < MIN_RUNS {
        return row;
    }
    let half = rule.factor(past.len(), k) * sd;
    let sign = if better == Better::Higher { -1.0 } else { 1.0 };
    let worse_bound = mean + sign * half;
    let better_bound = mean - sign * half;
    row.bound = Some(worse_bound);
    let big = row.change.abs() > rule.min_change;
    row.verdict = if sign * (row.value - worse_bound) > 0.0 && big {
        Verdict::Regressed
    } else if sign * (better_bound - row.value) > 0.0 && big {
        Verdict::Improved
    } else {
        Verdict::Steady
    };
    row
}

/// The judgement as a table: cell, metric, history, bound, value, change, verdict.
pub fn text(j: &Judgement, rule: &Rule) -> String {
    let mut rows = vec![vec![
        "cell".to_string(),
        "metric".into(),
        "runs".into(),
        "history mean ± sd".into(),
        "bound".into(),
        "value".into(),
        "change".into(),
        "verdict".into(),
    ]];
    for f in &j.figures {
        rows.push(vec![
            f.cell.clone(),
            f.metric.clone(),
            f.runs.to_string(),
            if f.runs == 0 { "-".into() } else { format!("{} ± {}", show(f.mean, &f.unit), show(f.sd, &f.unit)) },
            f.bound.map_or("-".into(), |b| show(b, &f.unit)),
            show(f.value, &f.unit),
            if f.change.is_finite() { format!("{:+.1} %", f.change * 100.0) } else { "-".into() },
            f.verdict.text().to_string(),
        ]);
    }
    let mut s = align(&rows, 2);
    s.push_str(&format!("\nrule: {}\n", rule.describe()));
    let unjudged = j.figures.iter().filter(|f| f.verdict == Verdict::NoVerdict).count();
    if unjudged > 0 {
        s.push_str(&format!(
            "{unjudged} figure(s) have fewer than {MIN_RUNS} earlier runs of this study: not judged\n"
        ));
    }
    if !j.environment.is_empty() {
        s.push_str("environment since the latest earlier run:\n");
        for c in &j.environment {
            s.push_str(&format!("  {c}\n"));
        }
    }
    s.push_str(&format!("{} regression(s) against {} earlier run(s)\n", j.regressions(), j.history_runs));
    s
}
