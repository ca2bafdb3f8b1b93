//! `iostudy worker`: the client inside every isolation boundary.
//!
//! The controller writes a `job.json`, starts this same static binary wherever the
//! scenario says (host process, OCI container, micro-VM), and reads back
//! `client-<id>.json`. Between the two, the start barrier: once its files are laid out
//! the worker writes `ready/<client>` in the control directory and polls for `go`,
//! which holds the wall-clock instant at which every client starts. Polling (no
//! inotify) is deliberate: it works over bind mounts, 9p, virtio-fs and cluster
//! filesystems alike.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::engine::{self, EngineError, Span, Workload};
use crate::results::{ClientResult, write_atomic};

/// Version of the job file layout.
pub const JOB_SCHEMA_VERSION: u32 = 1;

/// What the controller asks one client to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub schema_version: u32,
    pub client_id: u32,
    pub workload: Workload,
    /// Where to write the result (atomically).
    pub output: PathBuf,
    /// The start barrier, when several clients must start together.
    #[serde(default)]
    pub barrier: Option<BarrierSpec>,
    /// Drop this (guest) kernel's page cache once the files are laid out, before the
    /// barrier: inside a VM the host's drop does not reach the guest's cache.
    #[serde(default)]
    pub drop_caches: bool,
}

/// Where and how long to wait for the start signal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarrierSpec {
    /// Holds `ready/<client>` (written by workers) and `go` (written by the controller).
    pub control_dir: PathBuf,
    /// How long to wait for `go` after writing `ready`.
    pub timeout: Span,
    /// Poll period.
    #[serde(default = "default_poll")]
    pub poll: Span,
}

fn default_poll() -> Span {
    Span(Duration::from_millis(5))
}

/// Contents of the `go` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoSignal {
    /// Wall-clock ns at which every client starts its ramp/measured phase.
    pub start_ns: u64,
}

/// Path of a client's ready marker.
pub fn ready_path(control_dir: &Path, client_id: u32) -> PathBuf {
    control_dir.join("ready").join(client_id.to_string())
}

/// Path of the go signal.
pub fn go_path(control_dir: &Path) -> PathBuf {
    control_dir.join("go")
}

/// Runs a job file and writes its result; returns the result too.
pub fn run_job_file(path: &Path) -> anyhow::Result<ClientResult> {
    let text = fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read job file {}: {e}", path.display()))?;
    let job: Job =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("job file {} is invalid: {e}", path.display()))?;
    if job.schema_version != JOB_SCHEMA_VERSION {
        anyhow::bail!(
            "job file {} has schema version {}, this worker reads {JOB_SCHEMA_VERSION}: use the same iostudy binary as the controller",
            path.display(),
            job.schema_version
        );
    }
    run_job(&job)
}

/// Runs a job and writes its result atomically to `job.output`.
pub fn run_job(job: &Job) -> anyhow::Result<ClientResult> {
    let barrier = job.barrier.clone();
    let id = job.client_id;
    let drop_caches = job.drop_caches;
    let gate = Box::new(move || {
        if drop_caches {
            rustix::fs::sync();
            std::fs::write("/proc/sys/vm/drop_caches", b"3\n")
                .map_err(|e| EngineError::Gate(format!("cannot drop the page cache: {e}")))?;
        }
        match barrier {
            Some(b) => wait_for_go(&b, id).map(Some),
            None => Ok(None),
        }
    });
    let result = engine::run(&job.workload, job.client_id, gate)?;
    let mut json = serde_json::to_vec_pretty(&result)?;
    json.push(b'\n');
    write_atomic(&job.output, &json)
        .map_err(|e| anyhow::anyhow!("cannot write result {}: {e}", job.output.display()))?;
    Ok(result)
}

fn wait_for_go(b: &BarrierSpec, client_id: u32) -> Result<u64, EngineError> {
    let gate_err =
        |what: &str, p: &Path, e: std::io::Error| EngineError::Gate(format!("cannot {what} {}: {e}", p.display()));
    let ready = ready_path(&b.control_dir, client_id);
    if let Some(dir) = ready.parent() {
        fs::create_dir_all(dir).map_err(|e| gate_err("create", dir, e))?;
    }
    write_atomic(&ready, b"ready\n").map_err(|e| gate_err("write", &ready, e))?;
    let go = go_path(&b.control_dir);
    let deadline = Instant::now() + b.timeout.0;
    loop {
        if let Some(start_ns) = read_go(&b.control_dir)? {
            return Ok(start_ns);
        }
        if Instant::now() >= deadline {
            return Err(EngineError::Gate(format!(
                "no go signal in {} after {}: the controller did not start this cell (another client failed or is slow)",
                go.display(),
                b.timeout
            )));
        }
        std::thread::sleep(b.poll.0);
    }
}

/// Reads the go signal: its start instant once the controller wrote it, else `None`.
pub fn read_go(control_dir: &Path) -> Result<Option<u64>, EngineError> {
    let go = go_path(control_dir);
    match fs::read_to_string(&go) {
        Ok(text) if !text.trim().is_empty() => {
            let signal: GoSignal = serde_json::from_str(&text)
                .map_err(|e| EngineError::Gate(format!("{} is not a go signal: {e}", go.display())))?;
            Ok(Some(signal.start_ns))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::Gate(format!("cannot read {}: {e}", go.display()))),
    }
}
