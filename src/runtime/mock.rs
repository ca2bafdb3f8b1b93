//! The `mock` runtime: the one fake backend — synthetic clients that speak the real
//! control protocol, and a record of what the runner asked of them.
//!
//! A mock client is a thread that opens its job, reports ready, waits for go and
//! delivers a synthetic result ([`crate::results::synthetic`]), so the runner, the
//! store and the reports run end to end in milliseconds. Each client can be scripted
//! ([`Behaviour`]) to fail before it is ready, hang, or fail after go, and launches
//! can be slowed, so the runner's handling of each is unit-tested; every launch, kill
//! and teardown is recorded ([`Event`]). Users reach it only through a hidden flag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::control::{Link, SharedDirLink};
use crate::results::synthetic;
use crate::runtime::{
    Backend, Client, Exit, Kind, Launch, Probe, RuntimeError, ScenarioContext, Section, SpannedError, Spec,
};

pub static KIND: MockKind = MockKind;

pub struct MockKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {}

impl Kind for MockKind {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn hidden(&self) -> bool {
        true
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError> {
        let Settings {} = section.deserialize()?;
        Ok(Arc::new(MockSpec::default()))
    }

    fn rebuild(&self, _settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
        Ok(Arc::new(MockSpec::default()))
    }
}

/// How one mock client behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Ready, go, a synthetic result.
    Normal,
    /// Exits with an error before it is ready.
    FailEarly,
    /// Never reports ready (until killed).
    Hang,
    /// Exits with an error after go, without a result.
    FailAfterGo,
}

/// What the runner did to a mock client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Launched { client: u32, at: Instant },
    Killed { client: u32 },
    TornDown { client: u32 },
}

/// Synthetic clients, scripted per client; records every launch, kill and teardown.
#[derive(Debug, Clone, Default)]
pub struct MockSpec {
    /// Behaviours by client index (default: normal).
    pub behaviours: BTreeMap<u32, Behaviour>,
    /// How long each launch takes (a container runtime's start-up).
    pub launch_delay: Duration,
    pub events: Arc<Mutex<Vec<Event>>>,
}

impl MockSpec {
    /// The record of what happened so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("not poisoned").clone()
    }
}

impl Spec for MockSpec {
    fn kind(&self) -> &'static dyn Kind {
        &KIND
    }

    fn name(&self) -> String {
        "mock".into()
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({})
    }

    fn probe(&self) -> Probe {
        let mut p = Probe::of(self);
        p.usable = true;
        p.version = Some("synthetic".into());
        p.notes.push("synthetic results, for tests only".into());
        p
    }

    fn startup_estimate(&self) -> Duration {
        Duration::from_millis(20)
    }

    fn prepare(&self, _ctx: &ScenarioContext) -> Result<Box<dyn Backend>, RuntimeError> {
        Ok(Box::new(Mock { spec: self.clone() }))
    }
}

struct Mock {
    spec: MockSpec,
}

impl Mock {
    fn record(&self, e: Event) {
        self.spec.events.lock().expect("not poisoned").push(e);
    }
}

impl Backend for Mock {
    fn client_path(&self, _target: &Path, host_path: &Path) -> PathBuf {
        host_path.to_path_buf()
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        self.record(Event::Launched { client: l.client, at: Instant::now() });
        std::thread::sleep(self.spec.launch_delay);
        let behaviour = self.spec.behaviours.get(&l.client).copied().unwrap_or(Behaviour::Normal);
        let stop = Arc::new(AtomicBool::new(false));
        let (job, stopped) = (l.job.clone(), stop.clone());
        drop(crate::safety::create_file(&l.log)?);
        let log = l.log.clone();
        // Like a real client, it ignores the controller's Ctrl-C: only a kill stops it.
        let thread = std::thread::spawn(move || -> Result<(), String> {
            let result = run(&job, behaviour, &|| stopped.load(Ordering::SeqCst));
            if let Err(e) = &result
                && !stopped.load(Ordering::SeqCst)
            {
                let _ = crate::safety::write_atomic(&log, format!("mock client: {e}\n").as_bytes());
            }
            result
        });
        Ok(Box::new(MockClient {
            client: l.client,
            log: l.log.clone(),
            thread: Some(thread),
            stop,
            exit: None,
            events: self.spec.events.clone(),
        }))
    }

    fn cleanup(&self) {}
}

/// A mock client's life, until `stopped()`.
fn run(job: &Path, behaviour: Behaviour, stopped: &dyn Fn() -> bool) -> Result<(), String> {
    let link = SharedDirLink::open(job).map_err(|e| e.to_string())?;
    let wait_until_stopped = || {
        while !stopped() {
            std::thread::sleep(Duration::from_millis(2));
        }
        Err("stopped".to_string())
    };
    match behaviour {
        Behaviour::FailEarly => return Err("failed before it was ready (scripted)".into()),
        Behaviour::Hang => return wait_until_stopped(),
        _ => {}
    }
    link.ready().map_err(|e| e.to_string())?;
    let start_ns = loop {
        if let Some(go) = link.read_go().map_err(|e| e.to_string())? {
            break go.start_ns;
        }
        if stopped() {
            return Err("no go signal".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if behaviour == Behaviour::FailAfterGo {
        return Err("failed after go (scripted)".into());
    }
    let result = synthetic::client(&link.job().workload, link.job().client_id, start_ns);
    link.deliver(&result).map_err(|e| e.to_string())
}

struct MockClient {
    client: u32,
    log: PathBuf,
    thread: Option<JoinHandle<Result<(), String>>>,
    stop: Arc<AtomicBool>,
    exit: Option<Exit>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Client for MockClient {
    fn client(&self) -> u32 {
        self.client
    }

    fn poll(&mut self) -> Option<Exit> {
        if self.exit.is_none() && self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            self.exit = Some(match self.thread.take().expect("present").join() {
                Ok(Ok(())) => Exit::Success,
                Ok(Err(e)) => Exit::Failed(e),
                Err(_) => Exit::Failed("panicked".into()),
            });
        }
        self.exit.clone()
    }

    fn kill(&mut self) {
        if self.poll().is_some() {
            return;
        }
        self.events.lock().expect("not poisoned").push(Event::Killed { client: self.client });
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.exit = Some(Exit::Failed("killed".into()));
    }

    fn teardown(&mut self) {
        self.events.lock().expect("not poisoned").push(Event::TornDown { client: self.client });
    }

    fn log(&self) -> &Path {
        &self.log
    }

    fn log_tail(&self, lines: usize) -> String {
        crate::runtime::log_tail(&self.log, lines)
    }
}

impl Drop for MockClient {
    fn drop(&mut self) {
        self.kill();
    }
}
