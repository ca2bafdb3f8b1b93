//! The report model: a results directory turned into the figures every output shows.
//!
//! Cells are grouped by (scenario, pattern, clients, options) across repetitions. Per
//! repetition: bandwidth over the common window and the fio-style sum; per group: the
//! mean with a bootstrap 95 % interval, latency percentiles of the merge of *every*
//! client histogram of every repetition, the latency CDF, and the bandwidth ratio to
//! the baseline scenario with its interval. Warnings are computed once here so every
//! format carries the same ones. All renderers (terminal, Markdown, CSV, charts, HTML,
//! compare) read this model and nothing else; the model reads the results directory
//! only through its [`Store`] — the scenarios, labels, baseline and axis order come
//! from `run.json`, never from re-parsing the study file.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::results::aggregate::{CellFigures, bytes_between, cell_figures_and_histogram};
use crate::results::cell::{CellResult, CellStatus, FailureKind};
use crate::results::cpu::cpu_between;
use crate::results::histogram::{EncodedHistogram, LatencySummary, new_latency_histogram};
use crate::results::stats::{Estimate, bootstrap_mean, bootstrap_ratio};
use crate::results::store::{RunInfo, Store, StoreError};
use crate::workload::{Pattern, Workload, human_bytes};

/// Overlap of clients below which a cell is flagged (window / longest client run).
const MIN_WINDOW_FRACTION: f64 = 0.9;
/// Relative CI half-width above which repetitions are flagged as noisy.
const MAX_REP_SPREAD: f64 = 0.10;

/// What a warning is about. The order is the order a reader must see them in: first
/// the instruments (a figure taken with a broken one is no figure: emulated CPUs,
/// clocks), then missing data, then the host the figures were taken on, what was
/// really measured (memory, not the device), and last how the clients ran together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Concern {
    Emulated,
    ClockChanged,
    ClockUncertain,
    ClockCost,
    Failed,
    IoErrors,
    EngineNote,
    HostBusy,
    CpuUntrusted,
    CpuPartial,
    Memory,
    Plan,
    Noisy,
    Window,
    LateStart,
    NodeShare,
    Attribution,
}

impl Concern {
    /// The concern of a plan warning of `kind` (as preflight names it).
    pub fn of_plan(kind: Option<&str>) -> Concern {
        match kind {
            Some("fits_in_page_cache" | "cannot_drop_caches") => Concern::Memory,
            Some("clock_uncertain") => Concern::ClockUncertain,
            _ => Concern::Plan,
        }
    }

    /// One line for the whole group of warnings of this kind.
    pub fn title(self) -> &'static str {
        match self {
            Concern::Emulated => "guests ran under TCG (software CPU emulation): their figures measure emulation",
            Concern::ClockChanged => "a client's clock source changed while it measured",
            Concern::ClockUncertain => "clocks set from a distance were known too loosely for the window",
            Concern::ClockCost => "reading the clock is slow inside some clients",
            Concern::Failed => "cells failed: their figures are missing",
            Concern::IoErrors => "clients reported I/O errors",
            Concern::EngineNote => "the I/O engine did not run as asked",
            Concern::HostBusy => "the host was busy on nearly all its CPUs",
            Concern::CpuUntrusted => "CPU counters disagree",
            Concern::CpuPartial => "CPU counters miss the containers",
            Concern::Memory => "memory was measured, not storage",
            Concern::Plan => "from the plan",
            Concern::Noisy => "repetitions vary",
            Concern::Window => "clients ran together for only part of their run",
            Concern::LateStart => "clients started late",
            Concern::NodeShare => "a node moved an unequal share",
            Concern::Attribution => {
                "attribution: a layer not measured, layers that do not nest, or tracing that slowed the cell"
            }
        }
    }
}

/// Clients per CPU started together beyond which a late start is the CPU's doing.
const CROWDED_PER_CPU: u32 = 8;

/// The host whose CPUs had the most clients to wake at go, if more than
/// [`CROWDED_PER_CPU`] each: its name, its clients, its CPUs.
fn crowded_host(clients: &[crate::results::ClientResult]) -> Option<(String, u32, u32)> {
    let mut hosts: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for r in clients {
        let e = hosts.entry(r.host.hostname.as_str()).or_insert((0, r.host.cpus.max(1)));
        e.0 += 1;
    }
    hosts
        .into_iter()
        .filter(|(_, (n, cpus))| *n > CROWDED_PER_CPU * cpus)
        .max_by_key(|(_, (n, cpus))| n / cpus)
        .map(|(h, (n, cpus))| (h.to_string(), n, cpus))
}

/// One warning: what it is about and the advice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub concern: Concern,
    pub text: String,
}

impl Warning {
    pub fn new(concern: Concern, text: String) -> Warning {
        Warning { concern, text }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a report says first.
#[derive(Debug, Clone, Serialize)]
pub struct Findings {
    pub baseline: String,
    /// Whether ratios are geometric means over several client counts or options.
    pub averaged: bool,
    pub rows: Vec<FindingRow>,
    pub costliest: Option<CpuFinding>,
}

/// A scenario against the baseline, pattern by pattern.
#[derive(Debug, Clone, Serialize)]
pub struct FindingRow {
    pub scenario: String,
    pub label: String,
    pub cells: Vec<FindingCell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingCell {
    pub pattern: Pattern,
    /// Bandwidth over the baseline's.
    pub bw_ratio: Option<f64>,
    /// p50 latency over the baseline's.
    pub p50_ratio: Option<f64>,
}

impl FindingCell {
    /// `0.45× bw, 3.1× p50`.
    pub fn text(&self) -> String {
        match (self.bw_ratio, self.p50_ratio) {
            (None, None) => "-".into(),
            (bw, p50) => {
                let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}×"));
                format!("{} bw, {} p50", f(bw), f(p50))
            }
        }
    }
}

/// The cell that cost the host most CPU per GiB.
#[derive(Debug, Clone, Serialize)]
pub struct CpuFinding {
    pub label: String,
    pub mode: String,
    pub clients: u32,
    pub cpu_s_per_gib: f64,
    pub baseline_cpu_s_per_gib: Option<f64>,
}

impl CpuFinding {
    pub fn text(&self, baseline: &str) -> String {
        let base = self.baseline_cpu_s_per_gib.map_or(String::new(), |b| format!(" ({baseline}: {b:.2})"));
        format!(
            "{} {} with {} client(s): {:.2} CPU-s per GiB{base}",
            self.label, self.mode, self.clients, self.cpu_s_per_gib
        )
    }
}

/// Warnings of one kind, for a report's first page.
#[derive(Debug, Clone, Serialize)]
pub struct WarningGroup {
    pub concern: Concern,
    pub title: String,
    pub warnings: Vec<Warning>,
}

/// The identity of a group of repetitions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    pub scenario: String,
    pub pattern: Pattern,
    pub clients: u32,
    pub options: Vec<(String, String)>,
}

impl GroupKey {
    /// Whether the group's cells were traced (`Some(true)`) or are untraced twins
    /// (`Some(false)`); `None` without attribution.
    pub fn traced(&self) -> Option<bool> {
        self.options.iter().find(|(k, _)| k == crate::attribution::OPTION).map(|(_, v)| v == "on")
    }

    /// The key of this group's untraced twin.
    pub fn untraced(&self) -> GroupKey {
        let mut twin = self.clone();
        twin.options.iter_mut().filter(|(k, _)| k == crate::attribution::OPTION).for_each(|(_, v)| *v = "off".into());
        twin
    }

    /// `read` → `seq read`, as the seed study's table says, with any options.
    pub fn mode(&self) -> String {
        let base = match self.pattern {
            Pattern::Read => "seq read",
            Pattern::Write => "seq write",
            Pattern::Randread => "rand read",
            Pattern::Randwrite => "rand write",
            Pattern::Readwrite => "seq rw",
            Pattern::Randrw => "rand rw",
        };
        let opts: Vec<String> = self.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if opts.is_empty() { base.to_string() } else { format!("{base} {}", opts.join(" ")) }
    }
}

/// One scenario × pattern × clients × options, over its repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub key: GroupKey,
    pub label: String,
    /// The workload every client ran (its directory left out): `compare` only pairs
    /// groups whose workloads are equal.
    pub workload: Option<Workload>,
    /// Figures of each successful repetition.
    pub reps: Vec<CellFigures>,
    pub failed_reps: usize,
    /// Aggregate bandwidth over the common window, bytes/s, of the repetitions that
    /// had one.
    pub bw: Option<Estimate>,
    /// Repetitions whose clients never all ran at once (no common window: one
    /// finished before another started); their bandwidth is not a figure.
    pub no_window: usize,
    /// fio-style sum of per-client rates, bytes/s.
    pub fio_sum_bw: Option<Estimate>,
    pub iops: Option<Estimate>,
    /// Merged over every client of every repetition.
    pub latency_ns: LatencySummary,
    /// That merge itself, encoded (the history keeps it, to merge across runs).
    #[serde(skip)]
    pub latency_histogram: EncodedHistogram,
    /// Bandwidth / the baseline scenario's (same pattern, clients, options).
    pub vs_baseline: Option<Estimate>,
    /// Latency CDF: (latency µs, cumulative fraction), thinned for plotting.
    pub cdf: Vec<(f64, f64)>,
    pub runtime_version: Option<String>,
    /// What measured its clients (`iostudy 0.2.0`, `fio-3.33 (…)`), distinct values.
    pub measured_by: Vec<String>,
    /// Mean guest boot time (launch to share mounted), s — micro-VMs only.
    pub boot_s: Option<f64>,
    /// Multi-host studies: each node's share, over the repetitions.
    pub per_node: Vec<NodeShare>,
    /// All bytes over first start to last end (a straggler shows against `bw`).
    pub bw_last_done: Option<Estimate>,
    /// Every client's own rate, bytes/s, of every repetition (the per-client chart).
    pub client_bws: Vec<f64>,
    /// Coefficient of variation of the clients' rates (mean over repetitions).
    pub client_bw_cv: Option<f64>,
    /// Host CPU-seconds the cell's clients and what served them spent per GiB moved,
    /// inside the common window.
    pub cpu_s_per_gib: Option<Estimate>,
    /// CPUs those kept busy, and the hosts' whole busy CPUs, over the window.
    pub cores_busy: Option<f64>,
    pub host_busy_cores: Option<f64>,
    /// Aggregate bandwidth per interval of the first repetition: (s since the window
    /// started, bytes/s).
    pub timeline: Vec<(f64, f64)>,
    /// This group's own warnings (also in the report's list).
    pub warnings: Vec<Warning>,
    /// Where its time and CPU went, layer by layer (traced cells only).
    pub attribution: Option<crate::attribution::GroupAttribution>,
}

/// One node's part of a cell.
#[derive(Debug, Clone, Serialize)]
pub struct NodeShare {
    pub node: String,
    pub clients: u32,
    /// Its clients' bytes inside the common window / the window (mean of repetitions).
    pub bw_bytes_per_s: f64,
    /// Its share of the cell's bytes and of its clients.
    pub bytes_share: f64,
    pub clients_share: f64,
}

/// A client starting this long after the go instant it had in time woke up late.
const LATE_WAKEUP_NS: u64 = 100_000_000;

/// A node's share of bytes that far from its share of clients is worth a look.
const NODE_SHARE_TOLERANCE: f64 = 0.25;

/// Everything a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub study_name: String,
    pub description: Option<String>,
    pub study_source: String,
    pub baseline: String,
    /// Scenario names and labels, in study order.
    pub scenarios: Vec<(String, String)>,
    pub patterns: Vec<Pattern>,
    pub clients: Vec<u32>,
    pub groups: Vec<Group>,
    pub warnings: Vec<Warning>,
    pub run: Option<RunInfo>,
    /// Runtime notes recorded with the cells, per scenario.
    pub runtime_notes: BTreeMap<String, Vec<String>>,
    /// Cell files that could not be read, each with why (skipped).
    pub unreadable: Vec<String>,
    /// Failed cells by what made them fail.
    pub failures: Vec<(FailureKind, usize)>,
}

impl Report {
    /// Loads a results directory.
    pub fn load(dir: &Path) -> Result<Report, StoreError> {
        let store = Store::open(dir);
        let set = store.cells()?;
        Ok(Report::from_store(&store, &set.cells, set.unreadable))
    }

    /// The model of `cells` (already read, e.g. by a run that just ended) with the
    /// run's record and study text from `store`.
    pub fn from_store(store: &Store, cells: &[CellResult], unreadable: Vec<String>) -> Report {
        let mut report = Report::build(cells, &store.study_source(), store.run_info().ok());
        report.unreadable = unreadable;
        report
    }

    /// Builds the model from cell results (any order) and the run's record. Without a
    /// record (an older or imported directory) the cells give scenarios and axes.
    pub fn build(cells: &[CellResult], study_source: &str, run: Option<RunInfo>) -> Report {
        let mut scenarios: Vec<(String, String)> = match &run {
            Some(r) => r.scenarios.iter().map(|x| (x.name.clone(), x.label.clone())).collect(),
            None => Vec::new(),
        };
        let mut patterns: Vec<Pattern> = run.as_ref().map(|r| r.patterns.clone()).unwrap_or_default();
        let mut clients: Vec<u32> = run.as_ref().map(|r| r.clients.clone()).unwrap_or_default();
        for c in cells {
            if !scenarios.iter().any(|(n, _)| n == &c.cell.scenario) {
                scenarios.push((c.cell.scenario.clone(), c.scenario_label.clone()));
            }
            if !patterns.contains(&c.cell.pattern) {
                patterns.push(c.cell.pattern);
            }
            if !clients.contains(&c.cell.clients) {
                clients.push(c.cell.clients);
            }
        }
        if run.is_none() {
            patterns.sort();
            clients.sort();
        }
        // Only what was run.
        scenarios.retain(|(n, _)| cells.iter().any(|c| &c.cell.scenario == n));
        patterns.retain(|p| cells.iter().any(|c| c.cell.pattern == *p));
        clients.retain(|k| cells.iter().any(|c| c.cell.clients == *k));
        let baseline = run
            .as_ref()
            .map(|r| r.baseline.clone())
            .filter(|b| scenarios.iter().any(|(n, _)| n == b))
            .or_else(|| scenarios.first().map(|(n, _)| n.clone()))
            .unwrap_or_default();

        let mut by_key: BTreeMap<GroupKey, Vec<&CellResult>> = BTreeMap::new();
        for c in cells {
            let key = GroupKey {
                scenario: c.cell.scenario.clone(),
                pattern: c.cell.pattern,
                clients: c.cell.clients,
                options: c.cell.options.clone(),
            };
            by_key.entry(key).or_default().push(c);
        }

        let mut warnings: Vec<Warning> = run
            .as_ref()
            .map(|r| {
                r.warnings.iter().map(|w| Warning::new(Concern::of_plan(w.kind()), w.text().to_string())).collect()
            })
            .unwrap_or_default();
        let keyed: Vec<(GroupKey, Vec<&CellResult>)> = by_key.into_iter().collect();
        let mut groups: Vec<Group> = crate::sys::parallel_map(&keyed, |(key, reps)| build_group(key, reps));
        warnings.extend(groups.iter().flat_map(|g| g.warnings.iter().cloned()));

        // Ratios to the baseline.
        let bw_samples = |g: &Group| CellFigures::windowed_bw(&g.reps);
        let baselines: BTreeMap<GroupKey, Vec<f64>> =
            groups.iter().filter(|g| g.key.scenario == baseline).map(|g| (g.key.clone(), bw_samples(g))).collect();
        for g in &mut groups {
            if g.key.scenario == baseline {
                continue;
            }
            let base_key = GroupKey { scenario: baseline.clone(), ..g.key.clone() };
            if let Some(base) = baselines.get(&base_key) {
                g.vs_baseline = bootstrap_ratio(&bw_samples(g), base, seed_of(&g.key) ^ 0xBA5E);
            }
        }

        // What tracing cost (each traced group against its untraced twin), and what its
        // instruments could not vouch for.
        let untraced: BTreeMap<GroupKey, Vec<f64>> =
            groups.iter().filter(|g| g.key.traced() == Some(false)).map(|g| (g.key.clone(), bw_samples(g))).collect();
        for g in &mut groups {
            let traced = bw_samples(g);
            if let (Some(a), Some(off)) = (g.attribution.as_mut(), untraced.get(&g.key.untraced())) {
                a.overhead = bootstrap_ratio(&traced, off, seed_of(&g.key) ^ 0x7ACE);
            }
        }
        warnings.extend(groups.iter().flat_map(crate::report::attribution::warnings));

        let mut runtime_notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut tcg: Vec<&str> = Vec::new();
        for c in cells {
            let notes = runtime_notes.entry(c.cell.scenario.clone()).or_default();
            let accel = c.runtime.accelerator.iter().map(|a| format!("accelerator: {a}"));
            for n in c.runtime.notes.iter().cloned().chain(accel) {
                if !notes.contains(&n) {
                    notes.push(n);
                }
            }
            if c.runtime.accelerator.as_deref() == Some("tcg") && !tcg.contains(&c.cell.scenario.as_str()) {
                tcg.push(&c.cell.scenario);
            }
        }
        if let Some(t) = run.as_ref().and_then(|r| r.target.as_ref()) {
            if t.in_memory() {
                warnings.push(Warning::new(Concern::Memory, format!(
                    "the target is on {}: every figure measures memory and the kernel's page-cache paths, not storage",
                    t.fs
                )));
            } else if let Some(limit) = t.device_limit() {
                for g in &groups {
                    if g.key.pattern.read_percent(50) == 100 && g.bw.is_some_and(|e| e.mean > limit) {
                        warnings.push(Warning::new(Concern::Memory, format!(
                            "{} {} {} clients: reads at {}/s, faster than the {} device under the target delivers: a cache was measured, not the device; set direct = true or a working set larger than RAM",
                            g.key.scenario,
                            g.key.mode(),
                            g.key.clients,
                            human_bytes(g.bw.map_or(0.0, |e| e.mean) as u64),
                            if t.rotational == Some(true) { "spinning" } else { "solid-state" }
                        )));
                    }
                }
            }
        }
        for scenario in tcg {
            warnings.push(Warning::new(Concern::Emulated, format!(
                "scenario {scenario} ran its guests under TCG (software CPU emulation, no working KVM here): its figures measure emulation as much as the storage path; compare transports on a host with KVM"
            )));
        }

        // Order groups as the study reads: pattern, scenario, clients, options.
        let pos = |v: &[String], x: &String| v.iter().position(|y| y == x).unwrap_or(usize::MAX);
        let names: Vec<String> = scenarios.iter().map(|(n, _)| n.clone()).collect();
        groups.sort_by_key(|g| {
            (
                patterns.iter().position(|p| *p == g.key.pattern),
                pos(&names, &g.key.scenario),
                clients.iter().position(|k| *k == g.key.clients),
                g.key.options.clone(),
            )
        });

        let mut report = Report {
            study_name: run.as_ref().map_or_else(|| "study".to_string(), |r| r.study_name.clone()),
            description: run.as_ref().and_then(|r| r.description.clone()),
            study_source: study_source.to_string(),
            baseline,
            scenarios,
            patterns,
            clients,
            groups,
            warnings,
            run,
            runtime_notes,
            unreadable: Vec::new(),
            failures: failure_counts(cells),
        };
        report.make_printable();
        report
    }

    /// Every text a results directory (which may come from anywhere) or a tool's
    /// output brought into the model, as plain text without control characters: no
    /// label, name or note can carry a terminal escape, break a table's line or make
    /// an SVG invalid. Each renderer then escapes for its own syntax ([`crate::text`]).
    fn make_printable(&mut self) {
        fn fix(s: &mut String) {
            if let std::borrow::Cow::Owned(p) = crate::text::printable(s) {
                *s = p;
            }
        }
        fix(&mut self.study_name);
        fix(&mut self.baseline);
        if let Some(d) = &mut self.description {
            *d = crate::text::terminal(d).into_owned();
        }
        for (name, label) in &mut self.scenarios {
            fix(name);
            fix(label);
        }
        for g in &mut self.groups {
            fix(&mut g.label);
            fix(&mut g.key.scenario);
            g.key.options.iter_mut().for_each(|(k, v)| {
                fix(k);
                fix(v);
            });
            g.warnings.iter_mut().for_each(|w| fix(&mut w.text));
            g.runtime_version.iter_mut().for_each(fix);
            g.measured_by.iter_mut().for_each(fix);
            g.per_node.iter_mut().for_each(|n| fix(&mut n.node));
        }
        self.warnings.iter_mut().for_each(|w| fix(&mut w.text));
        let notes = std::mem::take(&mut self.runtime_notes);
        self.runtime_notes = notes
            .into_iter()
            .map(|(mut k, mut v)| {
                fix(&mut k);
                v.iter_mut().for_each(fix);
                (k, v)
            })
            .collect();
    }

    /// The group of a scenario × pattern × clients × options.
    pub fn group(
        &self,
        scenario: &str,
        pattern: Pattern,
        clients: u32,
        options: &[(String, String)],
    ) -> Option<&Group> {
        self.groups.iter().find(|g| {
            g.key.scenario == scenario
                && g.key.pattern == pattern
                && g.key.clients == clients
                && g.key.options == options
        })
    }

    /// Distinct option combinations, in first-seen order.
    pub fn option_sets(&self) -> Vec<Vec<(String, String)>> {
        let mut v: Vec<Vec<(String, String)>> = Vec::new();
        for g in &self.groups {
            if !v.contains(&g.key.options) {
                v.push(g.key.options.clone());
            }
        }
        v
    }

    /// The short summary a report opens with: each scenario against the baseline per
    /// pattern — bandwidth and p50 latency as ratios, the geometric mean over client
    /// counts and options where there are several — and the largest host CPU cost.
    pub fn findings(&self) -> Findings {
        let geomean = |v: &[f64]| {
            let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite() && *x > 0.0).collect();
            (!v.is_empty()).then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
        };
        let mut rows = Vec::new();
        for (name, label) in self.scenarios.iter().filter(|(n, _)| *n != self.baseline) {
            let mut cells = Vec::new();
            for &pattern in &self.patterns {
                let (mut bw, mut p50) = (Vec::new(), Vec::new());
                for g in self.groups.iter().filter(|g| &g.key.scenario == name && g.key.pattern == pattern) {
                    if let Some(r) = g.vs_baseline {
                        bw.push(r.mean);
                    }
                    let base = self.group(&self.baseline, pattern, g.key.clients, &g.key.options);
                    if let Some(b) = base.filter(|b| b.latency_ns.p50 > 0 && g.latency_ns.p50 > 0) {
                        p50.push(g.latency_ns.p50 as f64 / b.latency_ns.p50 as f64);
                    }
                }
                cells.push(FindingCell { pattern, bw_ratio: geomean(&bw), p50_ratio: geomean(&p50) });
            }
            rows.push(FindingRow { scenario: name.clone(), label: label.clone(), cells });
        }
        let costliest =
            self.groups.iter().filter_map(|g| Some((g, g.cpu_s_per_gib?.mean))).max_by(|a, b| a.1.total_cmp(&b.1)).map(
                |(g, cost)| {
                    let base = self
                        .group(&self.baseline, g.key.pattern, g.key.clients, &g.key.options)
                        .and_then(|b| b.cpu_s_per_gib)
                        .map(|e| e.mean);
                    CpuFinding {
                        label: g.label.clone(),
                        mode: g.key.mode(),
                        clients: g.key.clients,
                        cpu_s_per_gib: cost,
                        baseline_cpu_s_per_gib: base,
                    }
                },
            );
        let several = self.clients.len() > 1 || self.option_sets().len() > 1;
        Findings { baseline: self.label(&self.baseline), averaged: several, rows, costliest }
    }

    /// The warnings grouped by kind, most telling first; within a group in the order
    /// they were found.
    pub fn warning_groups(&self) -> Vec<WarningGroup> {
        let mut groups: BTreeMap<Concern, Vec<Warning>> = BTreeMap::new();
        for w in &self.warnings {
            groups.entry(w.concern).or_default().push(w.clone());
        }
        groups
            .into_iter()
            .map(|(concern, warnings)| {
                let mut title = concern.title().to_string();
                if concern == Concern::Failed && !self.failures.is_empty() {
                    let kinds: Vec<String> = self.failures.iter().map(|(k, n)| format!("{n} {}", k.text())).collect();
                    title.push_str(&format!(" — {}", kinds.join(", ")));
                }
                WarningGroup { concern, title, warnings }
            })
            .collect()
    }

    /// The display label of a scenario.
    pub fn label(&self, scenario: &str) -> String {
        self.scenarios.iter().find(|(n, _)| n == scenario).map_or_else(|| scenario.to_string(), |(_, l)| l.clone())
    }
}

/// Failed cells counted by kind (cells from before kinds were recorded count as
/// client exits only if they say so; otherwise they are not counted by kind).
fn failure_counts(cells: &[CellResult]) -> Vec<(FailureKind, usize)> {
    let mut by: BTreeMap<FailureKind, usize> = BTreeMap::new();
    for c in cells.iter().filter(|c| c.status == CellStatus::Failed) {
        if let Some(k) = c.failure_kind {
            *by.entry(k).or_default() += 1;
        }
    }
    by.into_iter().collect()
}

fn seed_of(key: &GroupKey) -> u64 {
    let text = format!("{key:?}");
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn build_group(key: &GroupKey, reps: &[&CellResult]) -> Group {
    let mut warnings = Vec::new();
    let mut figures = Vec::new();
    let mut merged: Histogram<u64> = new_latency_histogram();
    let mut failed = 0;
    let mut runtime_version = None;
    let mut node_sums: Vec<(String, u32, f64, f64)> = Vec::new();
    let mut client_bws = Vec::new();
    let mut cpu_per_gib = Vec::new();
    let mut cores = Vec::new();
    let mut host_cores = Vec::new();
    let mut timeline = Vec::new();
    let boots: Vec<f64> = reps.iter().flat_map(|c| c.boot_s.iter().flatten().copied()).collect();
    let mut sorted: Vec<&&CellResult> = reps.iter().collect();
    sorted.sort_by_key(|c| c.cell.repetition);
    let mut measured_by: Vec<String> =
        reps.iter().flat_map(|c| c.clients.iter().map(|r| r.measured_by.clone())).collect();
    measured_by.sort();
    measured_by.dedup();
    for c in sorted {
        runtime_version = runtime_version.or_else(|| c.runtime.version.clone());
        if c.status != CellStatus::Ok {
            failed += 1;
            warnings.push(Warning::new(
                Concern::Failed,
                format!("cell {} failed: {}", c.cell.id, c.failure.as_deref().unwrap_or("no result")),
            ));
            continue;
        }
        let Some((f, h)) = cell_figures_and_histogram(&c.clients) else { continue };
        merged.add(&h).expect("same bounds");
        if !f.has_window() {
            warnings.push(Warning::new(Concern::Window, format!(
                "cell {}: no common window — one client finished before the last started (start spread {:.1} ms): its bandwidth is not a figure; only the fio-style sum is shown; lengthen runtime",
                c.cell.id,
                f.start_spread_ns as f64 / 1e6
            )));
        } else if f.window_fraction < MIN_WINDOW_FRACTION {
            warnings.push(Warning::new(Concern::Window, format!(
                "cell {}: clients ran together for only {:.0} % of the longest client's run (one started late or stopped early; start spread {:.1} ms): bandwidth is over the common window of {:.2} s",
                c.cell.id,
                f.window_fraction * 100.0,
                f.start_spread_ns as f64 / 1e6,
                f.window_s
            )));
        }
        // Clocks set from a distance (a node's offset, a guest's sync) are only as good
        // as the measurement.
        let uncertain = c
            .placements
            .iter()
            .filter_map(|p| Some((p.clock_uncertainty_ns?, format!("node {}'s clock", p.node))))
            .chain(c.clients.iter().filter_map(|r| {
                r.host.clock_sync_uncertainty_ns.map(|u| (u, format!("client {}'s guest clock", r.client_id)))
            }))
            .max_by_key(|(u, _)| *u);
        if let Some((u, what)) = uncertain
            && f.has_window()
            && u as f64 / 1e9 > 0.01 * f.window_s
        {
            warnings.push(Warning::new(Concern::ClockUncertain, format!(
                "cell {}: {what} was known to ±{:.2} ms, more than 1 % of the {:.2} s window: its clients' start and the window are that uncertain",
                c.cell.id,
                u as f64 / 1e6,
                f.window_s
            )));
        }
        let errors: u64 = c.clients.iter().flat_map(|r| r.threads.iter()).map(|t| t.errors).sum();
        if errors > 0 {
            warnings.push(Warning::new(
                Concern::IoErrors,
                format!("cell {}: {errors} I/O error(s) reported by clients", c.cell.id),
            ));
        }
        for r in &c.clients {
            if let Some(note) = &r.ioengine_note {
                warnings.push(Warning::new(
                    Concern::EngineNote,
                    format!("cell {} client {}: {note}", c.cell.id, r.client_id),
                ));
            }
        }
        node_bytes(c, &f, &mut node_sums);
        client_bws.extend(c.clients.iter().map(|r| r.summary.bw_bytes_per_s));
        if timeline.is_empty() {
            timeline = bandwidth_timeline(&c.clients, f.window_start_ns);
        }
        let late: Vec<(u32, u64)> = c
            .clients
            .iter()
            .filter_map(|r| {
                let (seen, at) = (r.go_seen_ns?, r.go_instant_ns?);
                (seen <= at && r.start_ns > at + LATE_WAKEUP_NS).then(|| (r.client_id, r.start_ns - at))
            })
            .collect();
        if !late.is_empty() {
            const SHOWN: usize = 8;
            let mut named: Vec<String> =
                late.iter().take(SHOWN).map(|(k, by)| format!("{k} ({:.0} ms)", *by as f64 / 1e6)).collect();
            if late.len() > SHOWN {
                named.push(format!("{} more", late.len() - SHOWN));
            }
            let last = late.iter().map(|l| l.1).max().unwrap_or(0) as f64 / 1e6;
            let why = match crowded_host(&c.clients) {
                Some((host, clients, cpus)) => format!(
                    "a CPU-bound wake-up: {clients} clients started at once on {host}'s {cpus} CPU(s), and waking them took {last:.0} ms"
                ),
                None => "the runtime or a busy host woke them late".to_string(),
            };
            warnings.push(Warning::new(
                Concern::LateStart,
                format!(
                    "cell {}: {} client(s) had go in time but started late — {}: {why} (the window excludes it)",
                    c.cell.id,
                    late.len(),
                    named.join(", ")
                ),
            ));
        }
        for r in &c.clients {
            if r.host.clock_changed() {
                warnings.push(Warning::new(Concern::ClockChanged, format!(
                    "cell {} client {}: its clock source changed from {} to {} while it measured: its latencies mix two clocks; pin the clock source (tsc=reliable in guests)",
                    c.cell.id,
                    r.client_id,
                    r.host.clock_source.as_deref().unwrap_or("?"),
                    r.host.clock_source_end.as_deref().unwrap_or("?")
                )));
            }
        }
        if let Some(read) = c.clients.iter().filter_map(|r| r.host.clock_read_ns).max()
            && read > 1_000
            && !warnings.iter().any(|w| w.concern == Concern::ClockCost)
        {
            warnings.push(Warning::new(Concern::ClockCost, format!(
                "{} {} {} clients: a clock reading costs {:.1} µs inside these clients (a trapped system call): every latency includes about that much",
                key.scenario,
                key.mode(),
                key.clients,
                read as f64 / 1e3
            )));
        }
        if let Some(cpu) = cpu_between(&c.cpu, f.window_start_ns, f.window_end_ns)
            && f.has_window()
        {
            let gib = f.window_bw_bytes_per_s * f.window_s / (1u64 << 30) as f64;
            if gib > 0.0 {
                cpu_per_gib.push(cpu.cgroup_s / gib);
            }
            cores.push(cpu.cgroup_s / f.window_s);
            host_cores.push(cpu.host_busy_s / f.window_s);
            if cpu.cpus > 0 && cpu.host_busy_s / f.window_s > 0.9 * f64::from(cpu.cpus) {
                warnings.push(Warning::new(Concern::HostBusy, format!(
                    "cell {}: the host was busy on {:.2} of its {} CPUs during the window: clients may have waited for CPU, not for storage",
                    c.cell.id,
                    cpu.host_busy_s / f.window_s,
                    cpu.cpus
                )));
            }
            if cpu.cgroup_s > cpu.host_busy_s * 1.05 + 0.01 {
                warnings.push(Warning::new(Concern::CpuUntrusted, format!(
                    "cell {}: its cgroup counted {:.2} CPU-s but the host was busy only {:.2} CPU-s: the CPU figures of this cell are not trustworthy",
                    c.cell.id, cpu.cgroup_s, cpu.host_busy_s
                )));
            }
            if c.cpu.iter().any(|s| !s.covers_containers) && c.runtime.own_cgroups {
                warnings.push(Warning::new(Concern::CpuPartial, format!(
                    "cell {}: containers kept their runtime's own cgroups (cgroup v2 or a node), so its host CPU counts the runtime's processes but not the containers'",
                    c.cell.id
                )));
            }
        }
        figures.push(f);
    }
    let per_node = node_shares(&node_sums, figures.len());
    for n in &per_node {
        if n.clients_share > 0.0 && (n.bytes_share / n.clients_share - 1.0).abs() > NODE_SHARE_TOLERANCE {
            warnings.push(Warning::new(Concern::NodeShare, format!(
                "{} {} {} clients: node {} moved {:.0} % of the bytes with {:.0} % of the clients: a slow node, disk or link",
                key.scenario,
                key.mode(),
                key.clients,
                n.node,
                n.bytes_share * 100.0,
                n.clients_share * 100.0
            )));
        }
    }
    let seed = seed_of(key);
    let windowed = CellFigures::windowed_bw(&figures);
    let no_window = figures.len() - windowed.len();
    let bw = bootstrap_mean(&windowed, seed);
    let fio_sum_bw = bootstrap_mean(&figures.iter().map(|f| f.sum_bw_bytes_per_s).collect::<Vec<_>>(), seed ^ 1);
    let iops = bootstrap_mean(&figures.iter().map(|f| f.sum_iops).collect::<Vec<_>>(), seed ^ 2);
    let bw_last_done =
        bootstrap_mean(&figures.iter().map(|f| f.bw_last_done_bytes_per_s).collect::<Vec<_>>(), seed ^ 3);
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let cvs: Vec<f64> = figures.iter().map(|f| f.client_bw_cv).collect();
    if let Some(e) = &bw
        && e.has_interval()
        && e.relative_spread() > MAX_REP_SPREAD
    {
        warnings.push(Warning::new(
            Concern::Noisy,
            format!(
                "{} {} {} clients: repetitions vary by ±{:.0} % ({}/s – {}/s): add repetitions or quiet the host",
                key.scenario,
                key.mode(),
                key.clients,
                e.relative_spread() * 100.0,
                human_bytes(e.lo as u64),
                human_bytes(e.hi as u64)
            ),
        ));
    }
    Group {
        label: reps.first().map_or_else(|| key.scenario.clone(), |c| c.scenario_label.clone()),
        workload: reps.first().map(|c| {
            let mut w = c.cell.workload.clone();
            w.directory = "/".into();
            w
        }),
        key: key.clone(),
        reps: figures,
        failed_reps: failed,
        bw,
        no_window,
        fio_sum_bw,
        iops,
        latency_ns: LatencySummary::of(&merged),
        latency_histogram: EncodedHistogram::encode(&merged),
        vs_baseline: None,
        cdf: cdf_points(&merged),
        runtime_version,
        measured_by,
        boot_s: (!boots.is_empty()).then(|| boots.iter().sum::<f64>() / boots.len() as f64),
        per_node,
        bw_last_done,
        client_bws,
        client_bw_cv: mean(&cvs),
        cpu_s_per_gib: bootstrap_mean(&cpu_per_gib, seed ^ 4),
        cores_busy: mean(&cores),
        host_busy_cores: mean(&host_cores),
        timeline,
        attribution: crate::attribution::GroupAttribution::of(reps),
        warnings,
    }
}

/// Aggregate bandwidth per interval, all clients summed: (s since `from`, bytes/s).
/// Clients' intervals are placed by their start in the controller's clock.
fn bandwidth_timeline(clients: &[crate::results::ClientResult], from: u64) -> Vec<(f64, f64)> {
    let Some(width) = clients.first().map(|c| c.intervals.interval_ns).filter(|w| *w > 0) else { return Vec::new() };
    let origin = clients.iter().map(|c| c.intervals.start_of(0)).min().unwrap_or(from);
    // A timeline a chart can show; results whose intervals would make more are
    // damaged (or span days) and get none.
    const MAX_BINS: u64 = 100_000;
    let last =
        clients.iter().filter_map(|c| c.intervals.bytes.len().checked_sub(1).map(|i| c.intervals.start_of(i))).max();
    if last.is_some_and(|l| l.saturating_sub(origin) / width > MAX_BINS) {
        return Vec::new();
    }
    let mut bins: Vec<f64> = Vec::new();
    for c in clients {
        for (i, b) in c.intervals.bytes.iter().enumerate() {
            let bin = ((c.intervals.start_of(i).saturating_sub(origin) + width / 2) / width) as usize;
            if bins.len() <= bin {
                bins.resize(bin + 1, 0.0);
            }
            bins[bin] += *b as f64;
        }
    }
    let secs = width as f64 / 1e9;
    // An interval's middle, relative to the window's start.
    bins.iter()
        .enumerate()
        .map(|(i, b)| ((origin as f64 - from as f64) / 1e9 + (i as f64 + 0.5) * secs, b / secs))
        .collect()
}

/// Adds a repetition's bytes and bandwidth per node to `sums` (node, clients, bytes,
/// bandwidth summed over repetitions).
fn node_bytes(c: &CellResult, f: &CellFigures, sums: &mut Vec<(String, u32, f64, f64)>) {
    if c.placements.is_empty() || !f.has_window() {
        return;
    }
    let mut this: Vec<(String, u32, f64)> = Vec::new();
    for r in &c.clients {
        let Some(p) = c.placements.iter().find(|p| p.client == r.client_id) else { continue };
        let bytes = bytes_between(r, f.window_start_ns, f.window_end_ns);
        match this.iter_mut().find(|(n, _, _)| *n == p.node) {
            Some((_, k, b)) => {
                *k += 1;
                *b += bytes;
            }
            None => this.push((p.node.clone(), 1, bytes)),
        }
    }
    for (node, k, bytes) in this {
        match sums.iter_mut().find(|(n, ..)| *n == node) {
            Some((_, kk, b, bw)) => {
                *kk = k;
                *b += bytes;
                *bw += bytes / f.window_s;
            }
            None => sums.push((node, k, bytes, bytes / f.window_s)),
        }
    }
}

fn node_shares(sums: &[(String, u32, f64, f64)], reps: usize) -> Vec<NodeShare> {
    let bytes: f64 = sums.iter().map(|s| s.2).sum();
    let clients: u32 = sums.iter().map(|s| s.1).sum();
    let mut v: Vec<NodeShare> = sums
        .iter()
        .map(|(node, k, b, bw)| NodeShare {
            node: node.clone(),
            clients: *k,
            bw_bytes_per_s: bw / reps.max(1) as f64,
            bytes_share: if bytes > 0.0 { b / bytes } else { 0.0 },
            clients_share: if clients > 0 { f64::from(*k) / f64::from(clients) } else { 0.0 },
        })
        .collect();
    v.sort_by(|a, b| a.node.cmp(&b.node));
    v
}

/// CDF points of a histogram in µs, thinned to what a chart can show.
pub fn cdf_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = h.len();
    if total == 0 {
        return Vec::new();
    }
    let mut points = Vec::new();
    let mut cumulative = 0u64;
    let (mut last_x, mut last_y) = (0.0f64, -1.0f64);
    for v in h.iter_recorded() {
        cumulative += v.count_since_last_iteration();
        let x = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e3;
        let y = cumulative as f64 / total as f64;
        if y - last_y >= 0.002 || x >= last_x * 1.02 || cumulative == total {
            points.push((x.max(0.001), y));
            last_x = x;
            last_y = y;
        }
    }
    points
}
