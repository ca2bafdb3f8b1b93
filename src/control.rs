//! The control protocol between the controller and its clients: one owner, one version.
//!
//! A cell's rendezvous is five messages: the controller posts each client its [`Job`];
//! a guest that boots reports [`Booted`] once its share is mounted (the controller times
//! boot by it), then sets its clock by the controller's ([`Ping`]/[`Pong`], Cristian's
//! method — a guest under TCG starts with the RTC's whole seconds); each client lays
//! out its files and reports [`Ready`]; once all are
//! ready the controller sends one [`Go`] holding a start instant a moment ahead
//! (CLOCK_REALTIME); each client delivers its result document. Every message carries
//! [`PROTOCOL_VERSION`]: a worker refuses a job of another version, and the controller
//! refuses a ready of another, each naming the fix (the same binary on both ends).
//!
//! The messages travel over a channel. The first implementation is [`SharedDir`]: a
//! directory both ends see — under the study's target, so the barrier and the results
//! cross the same bind mount, 9p or virtio-fs share, or cluster filesystem as the I/O
//! does. Both ends poll (no inotify, which none of those propagate). This module is the
//! only place that knows the directory's layout.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::results::ClientResult;
use crate::safety::write_atomic;
use crate::workload::{Span, Workload};

/// Version of every message below; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 2;

/// What the controller asks one client to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub protocol: u32,
    pub client_id: u32,
    pub workload: Workload,
    /// The start barrier, when several clients must start together.
    #[serde(default)]
    pub barrier: Option<Barrier>,
    /// Drop this (guest) kernel's page cache once the files are laid out, before the
    /// barrier: inside a VM the host's drop does not reach the guest's cache.
    #[serde(default)]
    pub drop_caches: bool,
    /// The client's clock minus the controller's, ns: go's instant is in the
    /// controller's clock, and the client starts at it in its own.
    #[serde(default)]
    pub clock_offset_ns: i64,
    /// Attribution is on: a guest's own kernel times its share's requests
    /// ([`crate::attribution::guest`]).
    #[serde(default)]
    pub attribute: bool,
}

/// How long a client waits for [`Go`] after reporting ready, and how often it looks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Barrier {
    pub timeout: Span,
    pub poll: Span,
}

/// A client laid out its files and waits for [`Go`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub protocol: u32,
    pub client_id: u32,
}

/// A guest booted and mounted its share.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Booted {
    pub protocol: u32,
    pub client_id: u32,
}

/// A guest asks the controller's time (round `seq`, sent at its `guest_ns`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ping {
    pub protocol: u32,
    pub seq: u32,
}

/// The controller's time when it answered ping `seq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Pong {
    pub protocol: u32,
    pub seq: u32,
    pub host_ns: u64,
}

/// A client's clock against the controller's, measured through the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSync {
    /// Controller time − client time, ns (what was added to the client's clock).
    pub offset_ns: i64,
    /// Half the round trip of the sample used.
    pub uncertainty_ns: u64,
}

/// Every client starts its ramp/measured phase at `start_ns`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Go {
    pub protocol: u32,
    /// Wall-clock ns since the epoch.
    pub start_ns: u64,
}

impl Job {
    pub fn new(client_id: u32, workload: Workload, barrier: Option<Barrier>, drop_caches: bool) -> Job {
        Job {
            protocol: PROTOCOL_VERSION,
            client_id,
            workload,
            barrier,
            drop_caches,
            clock_offset_ns: 0,
            attribute: false,
        }
    }
}

/// Why a client cannot follow the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error("{} is not a {what}: {message}", path.display())]
    Invalid { what: &'static str, path: PathBuf, message: String },
    #[error(
        "{} speaks control protocol {found}, this iostudy {PROTOCOL_VERSION}: run the same iostudy binary as controller and worker",
        path.display()
    )]
    Version { path: PathBuf, found: u32 },
    #[error(
        "no go signal in {} after {}: the controller did not start this cell (another client failed or is slow)",
        path.display(), Span(*waited)
    )]
    NoGo { path: PathBuf, waited: Duration },
    #[error(transparent)]
    Unsafe(#[from] crate::safety::SafetyError),
    /// A relayed channel (a node's agent) failed.
    #[error("{0}")]
    Relay(String),
}

/// The controller's end of one cell's rendezvous.
pub trait Channel {
    /// Hands client `k` its job; returns what the client is started with to find it.
    fn post_job(&self, job: &Job) -> Result<PathBuf, ProtocolError>;
    /// Whether client `k` reported ready (an error: it did, but in another protocol).
    fn is_ready(&self, k: u32) -> Result<bool, ProtocolError>;
    /// Whether client `k`'s guest reported it booted.
    fn is_booted(&self, k: u32) -> bool;
    /// Tells every client to start.
    fn go(&self, go: &Go) -> Result<(), ProtocolError>;
    /// Client `k`'s result document.
    fn result(&self, k: u32) -> Result<ClientResult, ProtocolError>;
    /// Answers clients' clock pings (call often while clients get ready).
    fn serve_clock(&self) {}
}

/// A client's end: the worker and the guest speak only through this.
pub trait Link {
    fn job(&self) -> &Job;
    fn booted(&self) -> Result<(), ProtocolError>;
    fn ready(&self) -> Result<(), ProtocolError>;
    /// Waits for [`Go`] as the job's barrier says; returns its start instant.
    fn wait_go(&self) -> Result<u64, ProtocolError>;
    fn deliver(&self, result: &ClientResult) -> Result<(), ProtocolError>;
    /// Measures this client's clock against the controller's over `rounds` pings.
    fn sync_clock(&self, rounds: u32) -> Result<ClockSync, ProtocolError>;
}

/// The shared-directory channel. Its layout:
///
/// ```text
/// CELL_CONTROL/
///   job-<k>.json      Job        controller → client k
///   booted/<k>        Booted     guest k → controller
///   ready/<k>         Ready      client k → controller
///   clock/<k>         Ping       guest k → controller
///   clock/<k>.pong    Pong       controller → guest k
///   go                Go         controller → every client
///   client-<k>.json   result     client k → controller
/// ```
///
/// `host` is the directory as the controller sees it, `client` as clients see it (e.g.
/// under `/data` inside a container).
#[derive(Debug, Clone)]
pub struct SharedDir {
    host: PathBuf,
    client: PathBuf,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
}

/// What the controller has seen of the clients' markers: each tick asks of every
/// client, and answers from one directory listing per tick, reading a client's ready
/// message once — O(clients) a tick, not O(clients) file reads.
#[derive(Debug, Default)]
struct Seen {
    ready: std::collections::HashSet<u32>,
    ready_listed: Listing,
    booted_listed: Listing,
}

/// The numbered entries of a directory, listed again once older than [`RESCAN`].
#[derive(Debug, Default)]
struct Listing {
    names: std::collections::HashSet<u32>,
    at: Option<Instant>,
}

const RESCAN: Duration = Duration::from_millis(2);

impl Listing {
    fn contains(&mut self, dir: &Path, k: u32) -> bool {
        if !self.names.contains(&k) && self.at.is_none_or(|t| t.elapsed() >= RESCAN) {
            self.names = numbered(dir).into_iter().collect();
            self.at = Some(Instant::now());
        }
        self.names.contains(&k)
    }
}

const JOB_PREFIX: &str = "job-";

fn job_name(k: impl std::fmt::Display) -> String {
    format!("{JOB_PREFIX}{k}.json")
}

/// Where client `k`'s job is in the cell control directory `dir`.
pub fn job_file(dir: &Path, k: u32) -> PathBuf {
    dir.join(job_name(k))
}

/// Client `index`'s job in `dir`, where `index` stands for the client id (a variable a
/// scheduler expands, e.g. `$(IOSTUDY_CLIENT)` in a Kubernetes Job's arguments).
pub fn job_file_pattern(dir: &Path, index: &str) -> PathBuf {
    dir.join(job_name(index))
}

fn result_name(k: u32) -> String {
    format!("client-{k}.json")
}

impl SharedDir {
    /// A fresh cell control directory at `host` (created), seen by clients at `client`.
    pub fn create(host: &Path, client: &Path) -> Result<SharedDir, ProtocolError> {
        let _ = fs::remove_dir_all(host);
        for d in [host.join("ready"), host.join("booted"), host.join("clock")] {
            fs::create_dir_all(&d).map_err(|source| ProtocolError::Io { what: "create", path: d.clone(), source })?;
        }
        Ok(SharedDir { host: host.to_path_buf(), client: client.to_path_buf(), seen: Default::default() })
    }

    pub fn host_dir(&self) -> &Path {
        &self.host
    }
}

impl Channel for SharedDir {
    fn post_job(&self, job: &Job) -> Result<PathBuf, ProtocolError> {
        let path = self.host.join(job_name(job.client_id));
        write_json(&path, job)?;
        Ok(job_file(&self.client, job.client_id))
    }

    fn is_ready(&self, k: u32) -> Result<bool, ProtocolError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.ready.contains(&k) {
            return Ok(true);
        }
        let dir = self.host.join("ready");
        if !seen.ready_listed.contains(&dir, k) {
            return Ok(false);
        }
        let path = dir.join(k.to_string());
        match read_json::<Ready>(&path, "ready message") {
            Ok(None) => Ok(false),
            Ok(Some(r)) if r.protocol == PROTOCOL_VERSION => {
                seen.ready.insert(k);
                Ok(true)
            }
            Ok(Some(r)) => Err(ProtocolError::Version { path, found: r.protocol }),
            Err(e) => Err(e),
        }
    }

    fn is_booted(&self, k: u32) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.booted_listed.contains(&self.host.join("booted"), k)
    }

    fn go(&self, go: &Go) -> Result<(), ProtocolError> {
        write_json(&self.host.join("go"), go)
    }

    fn serve_clock(&self) {
        self.serve_clock_shifted(0);
    }

    fn result(&self, k: u32) -> Result<ClientResult, ProtocolError> {
        let path = self.host.join(result_name(k));
        read_json(&path, "client result")?.ok_or(ProtocolError::Io {
            what: "read",
            path,
            source: io::Error::from(io::ErrorKind::NotFound),
        })
    }
}

impl SharedDir {
    /// The clients that reported ready, from one scan of the directory, and the first
    /// ready message of another protocol version, if any.
    pub fn ready_clients(&self) -> (Vec<u32>, Option<ProtocolError>) {
        let (mut ready, mut problem) = (Vec::new(), None);
        for k in numbered(&self.host.join("ready")) {
            match self.is_ready(k) {
                Ok(true) => ready.push(k),
                Ok(false) => {}
                Err(e) => problem = problem.or(Some(e)),
            }
        }
        (ready, problem)
    }

    /// The clients whose guests reported they booted, from one scan of the directory.
    pub fn booted_clients(&self) -> Vec<u32> {
        numbered(&self.host.join("booted"))
    }

    /// Answers clock pings with this host's time minus `shift_ns`: a node's agent
    /// answers in the controller's clock by taking out its own offset.
    pub fn serve_clock_shifted(&self, shift_ns: i64) {
        for e in fs::read_dir(self.host.join("clock")).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".pong") || name.starts_with('.') {
                continue;
            }
            let pong = self.host.join("clock").join(format!("{name}.pong"));
            if let Ok(Some(ping)) = read_json::<Ping>(&e.path(), "clock ping") {
                let answered = read_json::<Pong>(&pong, "clock pong").ok().flatten().is_some_and(|p| p.seq == ping.seq);
                if !answered {
                    let host_ns = crate::sys::wall_ns().saturating_add_signed(-shift_ns);
                    let _ = write_json(&pong, &Pong { protocol: PROTOCOL_VERSION, seq: ping.seq, host_ns });
                }
            }
        }
    }
}

/// A client's end of a [`SharedDir`], found from the job file it was started with.
#[derive(Debug)]
pub struct SharedDirLink {
    dir: PathBuf,
    job: Job,
}

impl SharedDirLink {
    /// Reads the job at `job_path`; the control directory is the job's own.
    pub fn open(job_path: &Path) -> Result<SharedDirLink, ProtocolError> {
        let text = fs::read_to_string(job_path).map_err(|source| ProtocolError::Io {
            what: "read job file",
            path: job_path.to_path_buf(),
            source,
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| ProtocolError::Invalid {
            what: "job file",
            path: job_path.to_path_buf(),
            message: e.to_string(),
        })?;
        let found = value.get("protocol").and_then(serde_json::Value::as_u64).unwrap_or(0) as u32;
        if found != PROTOCOL_VERSION {
            return Err(ProtocolError::Version { path: job_path.to_path_buf(), found });
        }
        let job: Job = serde_json::from_value(value).map_err(|e| ProtocolError::Invalid {
            what: "job file",
            path: job_path.to_path_buf(),
            message: e.to_string(),
        })?;
        let dir = job_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(SharedDirLink { dir, job })
    }

    fn marker(&self, sub: &str, message: &impl Serialize) -> Result<(), ProtocolError> {
        let path = self.dir.join(sub).join(self.job.client_id.to_string());
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| ProtocolError::Io {
                what: "create",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        write_json(&path, message)
    }

    /// The go signal if the controller wrote it.
    pub fn read_go(&self) -> Result<Option<Go>, ProtocolError> {
        let path = self.dir.join("go");
        match read_json::<Go>(&path, "go signal")? {
            Some(go) if go.protocol != PROTOCOL_VERSION => Err(ProtocolError::Version { path, found: go.protocol }),
            other => Ok(other),
        }
    }
}

impl Link for SharedDirLink {
    fn job(&self) -> &Job {
        &self.job
    }

    fn booted(&self) -> Result<(), ProtocolError> {
        self.marker("booted", &Booted { protocol: PROTOCOL_VERSION, client_id: self.job.client_id })
    }

    fn ready(&self) -> Result<(), ProtocolError> {
        self.marker("ready", &Ready { protocol: PROTOCOL_VERSION, client_id: self.job.client_id })
    }

    fn wait_go(&self) -> Result<u64, ProtocolError> {
        let b = self
            .job
            .barrier
            .unwrap_or(Barrier { timeout: Span(Duration::from_secs(600)), poll: Span(Duration::from_millis(5)) });
        let deadline = Instant::now() + b.timeout.0;
        let watch = GoWatch::new(&self.dir);
        loop {
            if let Some(go) = self.read_go()? {
                return Ok(go.start_ns);
            }
            if Instant::now() >= deadline {
                return Err(ProtocolError::NoGo { path: self.dir.join("go"), waited: b.timeout.0 });
            }
            match &watch {
                Some(w) => w.wait(b.poll.0),
                None => std::thread::sleep(b.poll.0),
            }
        }
    }

    fn deliver(&self, result: &ClientResult) -> Result<(), ProtocolError> {
        write_json(&self.dir.join(result_name(self.job.client_id)), result)
    }

    fn sync_clock(&self, rounds: u32) -> Result<ClockSync, ProtocolError> {
        let k = self.job.client_id;
        let ping = self.dir.join("clock").join(k.to_string());
        let pong = self.dir.join("clock").join(format!("{k}.pong"));
        if let Some(d) = ping.parent() {
            fs::create_dir_all(d).map_err(|source| ProtocolError::Io {
                what: "create",
                path: d.to_path_buf(),
                source,
            })?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut best: Option<(u64, i64)> = None;
        for seq in 1..=rounds {
            let t0 = crate::sys::wall_ns();
            write_json(&ping, &Ping { protocol: PROTOCOL_VERSION, seq })?;
            let host_ns = loop {
                if let Some(p) = read_json::<Pong>(&pong, "clock pong")?
                    && p.seq == seq
                {
                    break p.host_ns;
                }
                if Instant::now() > deadline {
                    return Err(ProtocolError::Relay(format!(
                        "the controller did not answer clock pings in {} within 30 s",
                        ping.display()
                    )));
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            let t1 = crate::sys::wall_ns();
            let rtt = t1.saturating_sub(t0);
            let offset = host_ns as i64 - (t0 + rtt / 2) as i64;
            if best.is_none_or(|(r, _)| rtt < r) {
                best = Some((rtt, offset));
            }
        }
        let _ = fs::remove_file(&ping);
        let (rtt, offset_ns) = best.unwrap_or((0, 0));
        Ok(ClockSync { offset_ns, uncertainty_ns: rtt.div_ceil(2) })
    }
}

/// Wakes a client waiting for go as soon as a file is renamed into the control
/// directory — where the kernel that writes go is the client's own (a local
/// filesystem the controller or the node's agent writes, a container's bind mount).
/// Across machines and into guests (a cluster filesystem, 9p, virtio-fs) no event
/// comes: the barrier's `poll` stays the bound on how late go is seen, so waiting
/// clients cost nothing between events and at most one read per `poll` otherwise.
struct GoWatch(std::os::fd::OwnedFd);

impl GoWatch {
    fn new(dir: &Path) -> Option<GoWatch> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
        inotify::add_watch(&fd, dir, inotify::WatchFlags::MOVED_TO | inotify::WatchFlags::CLOSE_WRITE).ok()?;
        Some(GoWatch(fd))
    }

    /// Returns at the next event, or after `limit`.
    fn wait(&self, limit: Duration) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let timeout = Timespec::try_from(limit).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
        let mut fds = [PollFd::new(&self.0, PollFlags::IN)];
        if matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0) {
            // Drain the events: what changed is read from the directory itself.
            let mut buf = [0u8; 4096];
            while matches!(rustix::io::read(&self.0, &mut buf), Ok(n) if n > 0) {}
        }
    }
}

fn write_json(path: &Path, message: &impl Serialize) -> Result<(), ProtocolError> {
    let mut bytes = serde_json::to_vec_pretty(message).expect("protocol messages serialize");
    bytes.push(b'\n');
    Ok(write_atomic(path, &bytes)?)
}

/// Reads a message; `None` while it is not there (or not yet written whole).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<Option<T>, ProtocolError> {
    match fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(None),
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| ProtocolError::Invalid {
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ProtocolError::Io { what: "read", path: path.to_path_buf(), source }),
    }
}

/// The client numbers named by the entries of `dir` (temp files and others skipped).
fn numbered(dir: &Path) -> Vec<u32> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Where runs keep their control directories under a study's target:
/// `TARGET/.iostudy-control/<run>/cell-<index>/`.
pub const CONTROL_DIR: &str = ".iostudy-control";

/// Where clients' files live under the target: `iostudy-data/client-<k>/`, shared by
/// every cell so files are laid out once and reused.
pub const DATA_DIR: &str = "iostudy-data";

/// The control directory of cell `index` of a run whose control directory is `run`.
pub fn cell_dir(run: &Path, index: usize) -> PathBuf {
    run.join(format!("cell-{index}"))
}

/// Whether the controller has sent go in the cell control directory `cell` (for tests
/// and tools that watch a run from outside).
pub fn go_sent(cell: &Path) -> bool {
    cell.join("go").exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Pattern;

    #[test]
    fn a_rendezvous_through_a_shared_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("cell-0");
        let dir = SharedDir::create(&host, &host).unwrap();
        let barrier = Barrier { timeout: Span(Duration::from_secs(5)), poll: Span(Duration::from_millis(1)) };
        let job = Job::new(3, Workload::new(Pattern::Read, 4096, 8192, "/x"), Some(barrier), false);
        let at = dir.post_job(&job).unwrap();
        assert_eq!(at, host.join("job-3.json"));
        let link = SharedDirLink::open(&at).unwrap();
        assert_eq!(link.job().client_id, 3);
        assert!(!dir.is_ready(3).unwrap() && !dir.is_booted(3));
        link.booted().unwrap();
        link.ready().unwrap();
        // The controller lists the directory at most once per RESCAN.
        std::thread::sleep(RESCAN);
        assert!(dir.is_ready(3).unwrap() && dir.is_booted(3));
        assert!(link.read_go().unwrap().is_none());
        dir.go(&Go { protocol: PROTOCOL_VERSION, start_ns: 42 }).unwrap();
        assert_eq!(link.wait_go().unwrap(), 42);
    }

    #[test]
    fn other_protocol_versions_are_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let job = tmp.path().join("job-0.json");
        fs::write(&job, r#"{"schema_version": 1, "client_id": 0}"#).unwrap();
        let e = SharedDirLink::open(&job).unwrap_err().to_string();
        assert!(e.contains("speaks control protocol 0, this iostudy 2: run the same iostudy binary"), "{e}");
        let dir = SharedDir::create(tmp.path(), tmp.path()).unwrap();
        fs::write(tmp.path().join("ready/0"), r#"{"protocol": 1, "client_id": 0}"#).unwrap();
        assert!(matches!(dir.is_ready(0), Err(ProtocolError::Version { found: 1, .. })));
    }

    #[test]
    fn a_waiting_client_is_woken_by_go_not_by_its_poll() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SharedDir::create(tmp.path(), tmp.path()).unwrap();
        // A poll of a minute: only inotify's wake can return within it.
        let barrier = Barrier { timeout: Span(Duration::from_secs(120)), poll: Span(Duration::from_secs(60)) };
        let at = dir.post_job(&Job::new(0, Workload::new(Pattern::Read, 4096, 8192, "/x"), Some(barrier), false));
        let link = SharedDirLink::open(&at.unwrap()).unwrap();
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                dir.go(&Go { protocol: PROTOCOL_VERSION, start_ns: 7 }).unwrap();
            });
            assert_eq!(link.wait_go().unwrap(), 7);
        });
        assert!(started.elapsed() < Duration::from_secs(30), "woken by the poll, not by go: {:?}", started.elapsed());
    }

    #[test]
    fn no_go_times_out_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SharedDir::create(tmp.path(), tmp.path()).unwrap();
        let barrier = Barrier { timeout: Span(Duration::from_millis(30)), poll: Span(Duration::from_millis(5)) };
        let at = dir.post_job(&Job::new(0, Workload::new(Pattern::Read, 4096, 8192, "/x"), Some(barrier), false));
        let e = SharedDirLink::open(&at.unwrap()).unwrap().wait_go().unwrap_err().to_string();
        assert!(e.starts_with("no go signal in") && e.contains("after 30ms"), "{e}");
    }
}
