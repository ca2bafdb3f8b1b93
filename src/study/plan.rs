//! The plan: a study expanded into cells, with the disk footprint and an estimated
//! duration. Planning is pure — no probe, no file system — so it is unit-tested as
//! such; what the host says about a plan (runtimes, space, limits) is
//! [`super::preflight`]'s, and `iostudy plan` shows both.
//!
//! Cells run in an order that interleaves scenarios (repetition → clients → pattern →
//! options → scenario), so slow drift of the machine (page cache, thermal, neighbours)
//! spreads over all scenarios instead of biasing the last one.

use std::time::Duration;

pub use crate::results::cell::Cell;
use crate::results::cell::cell_id;
use crate::study::{Scenario, Study, value_text};
use crate::workload::{Pattern, Workload};

/// What to run of a study, and how.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Shrink sizes, runtimes and ramps by this factor (a rehearsal).
    pub scale: Option<f64>,
    /// Only these scenarios / patterns / client counts (empty = all).
    pub scenarios: Vec<String>,
    pub patterns: Vec<Pattern>,
    pub clients: Vec<u32>,
    /// Replace every runtime with synthetic clients (tests).
    pub mock: bool,
    /// Run every cell traced and untraced (as `[study] attribute = true`).
    pub attribute: bool,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--scenario {0}: not a scenario of this study (it has: {1})")]
    UnknownScenario(String, String),
    #[error("--pattern {0}: not a pattern of this study (it has: {1})")]
    UnknownPattern(String, String),
    #[error("--clients {0}: not a client count of this study (it has: {1})")]
    UnknownClients(u32, String),
    #[error("--scale {0} must be greater than 0 and at most 1")]
    BadScale(f64),
    #[error("the filters leave no cell to run")]
    Empty,
}

/// A study expanded, ready to check and run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub study: Study,
    /// The scenarios that run (after filters), in study order.
    pub scenarios: Vec<Scenario>,
    pub cells: Vec<Cell>,
    pub scale: Option<f64>,
    /// The filters the plan was made with (sorted), as a run records them.
    pub filters: crate::results::store::Filters,
    /// Bytes of data files the study lays out on the target.
    pub footprint_bytes: u64,
    pub estimate: Duration,
}

/// Bandwidth assumed per thread to estimate one-pass cells and layout.
pub const ASSUMED_THREAD_BW: f64 = 200.0 * 1024.0 * 1024.0;

impl Plan {
    pub fn build(study: &Study, opts: &PlanOptions) -> Result<Plan, PlanError> {
        opts.check(study)?;
        let scenarios: Vec<Scenario> = study
            .scenarios
            .iter()
            .filter(|s| opts.scenarios.is_empty() || opts.scenarios.contains(&s.name))
            .map(|s| {
                let mut scenario = s.clone();
                if opts.mock {
                    scenario.runtime = crate::runtime::stand_in();
                }
                scenario
            })
            .collect();
        let cells = cells(study, opts, &scenarios);
        if cells.is_empty() {
            return Err(PlanError::Empty);
        }
        let max_clients = cells.iter().map(|c| c.clients).max().unwrap_or(1);
        let per_client = cells
            .iter()
            .map(|c| c.workload.size.get().saturating_mul(u64::from(c.workload.numjobs)))
            .max()
            .unwrap_or(0);
        let footprint_bytes = per_client.saturating_mul(u64::from(max_clients));
        let mut estimate = Duration::from_secs_f64(footprint_bytes as f64 / (ASSUMED_THREAD_BW * 4.0));
        for c in &cells {
            let runtime = &scenarios.iter().find(|s| s.name == c.scenario).expect("cell of a planned scenario").runtime;
            estimate += runtime.startup_estimate() + c.workload.ramp_time.0;
            estimate += match c.workload.runtime {
                Some(r) => r.0,
                None => Duration::from_secs_f64(c.workload.size.get() as f64 / ASSUMED_THREAD_BW),
            };
        }
        let filters = opts.filters();
        Ok(Plan { study: study.clone(), scenarios, cells, scale: opts.scale, filters, footprint_bytes, estimate })
    }

    /// The scenario of a cell.
    pub fn scenario(&self, name: &str) -> &Scenario {
        self.scenarios.iter().find(|s| s.name == name).expect("cells name planned scenarios")
    }

    /// The node (index into the placement's nodes) of each of a cell's clients; `None`
    /// without a placement (every client on this host) or for a backend that places its
    /// clients itself.
    pub fn placement(&self, cell: &Cell) -> Option<Vec<usize>> {
        let placement = self.study.placement.as_ref()?;
        if self.places_itself(&cell.scenario) {
            return None;
        }
        let usable = self.scenario_nodes(&cell.scenario);
        Some(crate::hosts::place(&usable, placement.distribution(), cell.clients))
    }

    /// Whether a scenario's backend places its clients itself (a cluster's scheduler).
    pub fn places_itself(&self, scenario: &str) -> bool {
        self.scenario(scenario).runtime.kind().places_clients()
    }

    /// The nodes a scenario's clients may use (indexes), if there are hosts.
    pub fn scenario_nodes(&self, name: &str) -> Vec<usize> {
        match &self.study.placement {
            None => Vec::new(),
            Some(_) if self.places_itself(name) => Vec::new(),
            Some(p) => self.scenario(name).nodes.clone().unwrap_or_else(|| (0..p.node_names().len()).collect()),
        }
    }
}

impl PlanOptions {
    /// Filters name what the study has; a scale is a fraction.
    fn check(&self, study: &Study) -> Result<(), PlanError> {
        let list = |v: Vec<String>| v.join(", ");
        if let Some(s) = self.scenarios.iter().find(|s| !study.scenarios.iter().any(|x| &x.name == *s)) {
            return Err(PlanError::UnknownScenario(
                s.clone(),
                list(study.scenarios.iter().map(|x| x.name.clone()).collect()),
            ));
        }
        if let Some(p) = self.patterns.iter().find(|p| !study.patterns.contains(p)) {
            return Err(PlanError::UnknownPattern(
                p.to_string(),
                list(study.patterns.iter().map(|x| x.to_string()).collect()),
            ));
        }
        if let Some(c) = self.clients.iter().find(|c| !study.clients.contains(c)) {
            return Err(PlanError::UnknownClients(*c, list(study.clients.iter().map(|x| x.to_string()).collect())));
        }
        match self.scale {
            Some(s) if !(s > 0.0 && s <= 1.0) => Err(PlanError::BadScale(s)),
            _ => Ok(()),
        }
    }

    /// The filters, sorted, as a run records them.
    fn filters(&self) -> crate::results::store::Filters {
        let mut f = crate::results::store::Filters {
            scenarios: self.scenarios.clone(),
            patterns: self.patterns.clone(),
            clients: self.clients.clone(),
        };
        f.scenarios.sort();
        f.scenarios.dedup();
        f.patterns.sort();
        f.patterns.dedup();
        f.clients.sort_unstable();
        f.clients.dedup();
        f
    }
}

/// The cells of `scenarios` in run order: repetition → clients → pattern → options →
/// scenario (see the module doc), each with its workload (scaled for a rehearsal).
fn cells(study: &Study, opts: &PlanOptions, scenarios: &[Scenario]) -> Vec<Cell> {
    let keep_clients = |x: u32| opts.clients.is_empty() || opts.clients.contains(&x);
    let keep_pattern = |p: &Pattern| opts.patterns.is_empty() || opts.patterns.contains(p);
    // With attribution, each cell runs untraced then traced, side by side: the pair
    // measures what tracing costs.
    let traced: &[Option<&str>] = if study.attribute || opts.attribute { &[Some("off"), Some("on")] } else { &[None] };
    let mut cells = Vec::new();
    for rep in 1..=study.repetitions {
        for &clients in study.clients.iter().filter(|&&c| keep_clients(c)) {
            for &pattern in study.patterns.iter().filter(|p| keep_pattern(p)) {
                for (combo, trace) in
                    study.combinations().into_iter().flat_map(|c| traced.iter().map(move |t| (c.clone(), t)))
                {
                    let mut options: Vec<(String, String)> =
                        combo.iter().map(|(k, v)| (k.clone(), value_text(v))).collect();
                    if let Some(t) = trace {
                        options.push((crate::attribution::OPTION.to_string(), t.to_string()));
                    }
                    for sc in scenarios {
                        let mut workload =
                            study.workload(pattern, &combo).expect("validated when the study was loaded");
                        if let Some(f) = opts.scale {
                            scale_workload(&mut workload, f);
                        }
                        cells.push(Cell {
                            id: cell_id(&sc.name, pattern, clients, &options, rep),
                            scenario: sc.name.clone(),
                            pattern,
                            clients,
                            options: options.clone(),
                            repetition: rep,
                            workload,
                        });
                    }
                }
            }
        }
    }
    cells
}

fn scale_workload(w: &mut Workload, f: f64) {
    let bs = w.bs.get();
    let size = ((w.size.get() as f64 * f) as u64 / bs * bs).max(bs);
    w.size.0 = size;
    if let Some(r) = &mut w.runtime {
        r.0 = r.0.mul_f64(f).max(Duration::from_millis(500));
    }
    w.ramp_time.0 = w.ramp_time.0.mul_f64(f);
}
