//! The runner through its one fake, the mock backend: scripted clients, recorded
//! launches, kills and teardowns.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::runtime::mock::{Behaviour, Event, MockSpec};
use crate::study::Study;
use crate::study::plan::PlanOptions;

fn plan(target: &Path, clients: u32, patterns: &str, mock: &MockSpec) -> Plan {
    let text = format!(
        r#"[study]
name = "runner"
target = "{}"
drop_caches = false
cell_timeout = "3s"
barrier_timeout = "3s"
[workload]
bs = "4k"
size = "64k"
runtime = "1s"
[matrix]
scenarios = ["m"]
clients = [{clients}]
patterns = [{patterns}]
[scenarios.m]
runtime = "mock"
"#,
        target.display()
    );
    let study = Study::parse(Path::new("runner.toml"), &text).unwrap();
    let mut plan = Plan::build(&study, &PlanOptions::default()).unwrap();
    plan.scenarios[0].runtime = Arc::new(mock.clone());
    plan
}

fn run_with(plan: &Plan, out: &Path, cancel: Arc<AtomicBool>) -> RunOutcome {
    let pre = Preflight::gather(plan, Some(crate::runner::preflight::Results { dir: out, resume: false }));
    let opts = RunOptions { output: out.to_path_buf(), resume: false, progress: false };
    run(plan, &pre, &opts, cancel).unwrap()
}

fn killed(events: &[Event]) -> Vec<u32> {
    let mut v: Vec<u32> =
        events.iter().filter_map(|e| if let Event::Killed { client } = e { Some(*client) } else { None }).collect();
    v.sort();
    v
}

#[test]
fn clients_are_launched_in_parallel() {
    let tmp = tempfile::tempdir().unwrap();
    let mock = MockSpec { launch_delay: Duration::from_millis(150), ..MockSpec::default() };
    let plan = plan(&tmp.path().join("t"), 8, "\"read\"", &mock);
    let started = Instant::now();
    let out = run_with(&plan, &tmp.path().join("o"), Arc::new(AtomicBool::new(false)));
    assert_eq!((out.ran, out.failed), (1, 0), "{:?}", out.cells[0].failure);
    assert_eq!(out.cells[0].clients.len(), 8);
    let launches: Vec<Instant> = mock
        .events()
        .iter()
        .filter_map(|e| if let Event::Launched { at, .. } = e { Some(*at) } else { None })
        .collect();
    assert_eq!(launches.len(), 8);
    let spread = *launches.iter().max().unwrap() - *launches.iter().min().unwrap();
    // One after another, 8 launches of 150 ms would take 1.05 s before the last began.
    assert!(spread < Duration::from_millis(500), "launches spread over {spread:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_client_that_fails_early_fails_the_cell_and_the_others_are_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mock = MockSpec::default();
    mock.behaviours.insert(1, Behaviour::FailEarly);
    let plan = plan(&tmp.path().join("t"), 3, "\"read\", \"write\"", &mock);
    let out = run_with(&plan, &tmp.path().join("o"), Arc::new(AtomicBool::new(false)));
    // The study goes on to its next cell; both fail the same way.
    assert_eq!((out.ran, out.failed), (2, 2));
    let c = &out.cells[0];
    assert_eq!(c.failure_phase.as_deref(), Some("ready"));
    assert_eq!(c.failure_kind, Some(crate::results::cell::FailureKind::ClientExit));
    let why = c.failure.as_deref().unwrap();
    assert!(why.starts_with("client 1 failed before it was ready (scripted): mock client: failed before"), "{why}");
    assert!(c.client_failures.iter().any(|f| f.client == 1));
    // Clients 0 and 2 were waiting for go: killed, in both cells; every client torn down.
    let events = mock.events();
    assert_eq!(killed(&events), vec![0, 0, 2, 2]);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::TornDown { .. })).count(), 6);
}

#[test]
fn a_hung_client_fails_its_cell_at_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mock = MockSpec::default();
    mock.behaviours.insert(0, Behaviour::Hang);
    let plan = plan(&tmp.path().join("t"), 2, "\"read\"", &mock);
    let started = Instant::now();
    let out = run_with(&plan, &tmp.path().join("o"), Arc::new(AtomicBool::new(false)));
    let c = &out.cells[0];
    assert_eq!(c.failure.as_deref(), Some("client(s) 0 not ready before the deadline (hung?)"));
    assert_eq!(c.failure_phase.as_deref(), Some("ready"));
    assert_eq!(c.failure_kind, Some(crate::results::cell::FailureKind::Timeout));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(6), "{waited:?}");
    assert_eq!(killed(&mock.events()), vec![0, 1]);
}

#[test]
fn a_client_that_fails_after_go_fails_the_run_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mock = MockSpec::default();
    mock.behaviours.insert(1, Behaviour::FailAfterGo);
    let plan = plan(&tmp.path().join("t"), 2, "\"read\"", &mock);
    let out = run_with(&plan, &tmp.path().join("o"), Arc::new(AtomicBool::new(false)));
    let c = &out.cells[0];
    assert_eq!(c.failure_phase.as_deref(), Some("run"));
    assert!(c.start_ns.is_some(), "go was sent");
    assert!(c.failure.as_deref().unwrap().starts_with("client 1 failed after go (scripted)"), "{:?}", c.failure);
}

#[test]
fn ctrl_c_stops_the_cell_stores_nothing_and_kills_every_client() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mock = MockSpec::default();
    mock.behaviours.insert(0, Behaviour::Hang);
    let plan = plan(&tmp.path().join("t"), 3, "\"read\", \"write\"", &mock);
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::SeqCst);
    });
    let results = tmp.path().join("o");
    let out = run_with(&plan, &results, cancel);
    assert!(out.interrupted);
    assert_eq!(out.ran, 0);
    assert!(Store::open(&results).cells().unwrap().cells.is_empty(), "the interrupted cell is not stored");
    assert_eq!(killed(&mock.events()), vec![0, 1, 2]);
    // The run's control directory under the target is gone.
    assert!(std::fs::read_dir(tmp.path().join("t").join(CONTROL_DIR)).is_err());
}
