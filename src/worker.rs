//! `iostudy worker`: the client inside every isolation boundary.
//!
//! The controller posts a [`Job`](crate::control::Job), starts this same static binary
//! wherever the scenario says (host process, container, micro-VM) and reads back its
//! result. Everything between the two goes through the client's end of the control
//! channel ([`crate::control::Link`]): once its files are laid out the worker reports
//! ready and waits for go, whose wall-clock instant every client of the cell starts at.

use std::path::Path;

use crate::control::{Link, SharedDirLink};
use crate::engine::{self, EngineError, Gate};
use crate::results::ClientResult;
use crate::workload::{Engine, Workload};

/// Runs the job file at `path` (a shared control directory's) and delivers its result.
pub fn run_job_file(path: &Path) -> anyhow::Result<ClientResult> {
    let link = SharedDirLink::open(path)?;
    run(&link)
}

/// Runs a job received over `link` and delivers its result there.
pub fn run(link: &dyn Link) -> anyhow::Result<ClientResult> {
    run_over(link, None)
}

/// [`run`] in a guest whose files are on a share of file system type `share` (`9p`,
/// `virtiofs`): with attribution on, the guest's kernel times the share's requests.
pub fn run_over(link: &dyn Link, share: Option<&str>) -> anyhow::Result<ClientResult> {
    let job = link.job();
    let drop_caches = job.drop_caches;
    let barrier = job.barrier.is_some();
    // A guest that set its clock by the controller's is in the controller's clock.
    let offset = if crate::results::host::CLOCK_SYNC.get().is_some() { 0 } else { job.clock_offset_ns };
    // A guest's own kernel times its share's requests from go to the end of the run.
    let guest = if job.attribute { share } else { None };
    let armed = std::sync::Mutex::new(None);
    let armed_ref = &armed;
    let gate = Box::new(move || {
        if drop_caches {
            rustix::fs::sync();
            std::fs::write("/proc/sys/vm/drop_caches", b"3\n")
                .map_err(|e| EngineError::Gate(format!("cannot drop the page cache: {e}")))?;
        }
        if !barrier {
            return Ok(None);
        }
        link.ready().map_err(|e| EngineError::Gate(e.to_string()))?;
        // Go is in the controller's clock; start at the same instant in this one.
        let go = link.wait_go().map_err(|e| EngineError::Gate(e.to_string()))?;
        if let Some(fstype) = guest {
            *armed_ref.lock().expect("not poisoned") = Some(crate::attribution::guest::arm(fstype));
        }
        Ok(Some(go.saturating_add_signed(offset)))
    });
    let mut result = run_workload(&job.workload, job.client_id, gate)?;
    result.guest_trace = armed.into_inner().expect("not poisoned").map(|a| match a {
        Ok(armed) => armed.collect(),
        Err(not) => not,
    });
    link.deliver(&result)?;
    Ok(result)
}

/// One client's workload, driven by what it names: iostudy's engine, or the real fio
/// (its json+ converted). The choice is made here, where the client starts, so the
/// engine knows nothing of fio.
pub fn run_workload(w: &Workload, client_id: u32, gate: Box<Gate<'_>>) -> Result<ClientResult, EngineError> {
    let checked = engine::check(w)?;
    match w.engine {
        Engine::Fio => crate::fio::run::run(w, client_id, gate, checked),
        Engine::Iostudy => engine::run_checked(w, client_id, gate, checked),
    }
}
