//! The `process` runtime: each client is a worker process on the host — bare metal, the
//! baseline every isolation runtime is compared with. The worker is the same binary as
//! the one containers and guests run, so no scenario differs from another by its build.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::command::Cmd;
use crate::runtime::child::ChildClient;
use crate::runtime::{
    Backend, Client, Kind, Launch, Probe, RuntimeError, ScenarioContext, Section, SpannedError, Spec, binary,
};

pub static KIND: ProcessKind = ProcessKind;

pub struct ProcessKind;

/// A process scenario has no settings of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {}

impl Kind for ProcessKind {
    fn name(&self) -> &'static str {
        "process"
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError> {
        let Settings {} = section.deserialize()?;
        Ok(Arc::new(ProcessSpec))
    }

    fn rebuild(&self, _settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
        Ok(Arc::new(ProcessSpec))
    }

    fn builtins(&self) -> Vec<(&'static str, Arc<dyn Spec>)> {
        vec![("bare", Arc::new(ProcessSpec))]
    }

    fn known(&self) -> Vec<Arc<dyn Spec>> {
        vec![Arc::new(ProcessSpec)]
    }

    fn demo_scenarios(&self) -> Vec<crate::runtime::DemoScenario> {
        crate::runtime::DemoScenario::builtin(self, "bare").into_iter().collect()
    }
}

/// Worker processes on the host.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSpec;

impl Spec for ProcessSpec {
    fn kind(&self) -> &'static dyn Kind {
        &KIND
    }

    fn name(&self) -> String {
        "process".into()
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({})
    }

    fn probe(&self) -> Probe {
        let mut p = Probe::of(self);
        p.version = Some(format!("iostudy {}", env!("CARGO_PKG_VERSION")));
        match binary::process_worker() {
            Ok(w) => {
                p.notes.push(format!("worker: {}", w.display()));
                p.usable = true;
                p
            }
            Err(e) => p.fail(format!("cannot find the iostudy executable: {e}")),
        }
    }

    fn startup_estimate(&self) -> Duration {
        Duration::from_millis(200)
    }

    fn prepare(&self, _ctx: &ScenarioContext) -> Result<Box<dyn Backend>, RuntimeError> {
        let exe = binary::process_worker().map_err(RuntimeError::io("find the iostudy executable"))?;
        Ok(Box::new(Processes { exe }))
    }
}

struct Processes {
    exe: PathBuf,
}

impl Backend for Processes {
    fn client_path(&self, _target: &Path, host_path: &Path) -> PathBuf {
        host_path.to_path_buf()
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        let cmd = Cmd::new(&self.exe).arg("worker").arg("--job").arg(&l.job);
        Ok(Box::new(ChildClient::spawn(l, &cmd, Vec::new(), Vec::new())?))
    }

    fn cleanup(&self) {}
}
