//! The result store: one directory per study run, one file per finished cell. The only
//! reader and writer of a results directory.
//!
//! ```text
//! RESULTS_DIR/
//!   .iostudy-results      the marker: this directory is iostudy's (see [`Place`])
//!   study.toml            the study file as run (a resume must match it)
//!   run.json              host facts, the resolved scenarios (labels, runtimes, order),
//!                         baseline, axis order, plan warnings
//!   cells/<cell-id>.json  one CellResult per finished cell, written atomically
//!   logs/<cell-id>/       each client's log, and its helpers' (virtiofsd…)
//! ```
//!
//! A cell is on disk, complete, before the next one starts, so a crash or Ctrl-C loses
//! at most the cell in flight and `--resume` continues from there. Reading is
//! forgiving: one unreadable cell file is reported and skipped, never fatal to the
//! whole report.
//!
//! Every file is written through [`crate::safety::write_atomic`] and every directory made
//! or checked with [`crate::safety::ensure_dir`], so nothing planted in a results
//! directory (a link, a hard link, a FIFO, another user's file) is ever written through;
//! and iostudy writes only into a directory that is new, empty, or marked as its own.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::results::HostFacts;
pub use crate::results::cell::{
    CELL_SCHEMA_VERSION, Cell, CellResult, CellStatus, ClientFailure, RuntimeRecord, cell_id,
};
use crate::safety::write_atomic;
use crate::workload::Pattern;

/// Version of `run.json`'s layout.
pub const RUN_SCHEMA_VERSION: u32 = 2;

/// A scenario as the run resolved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRecord {
    pub name: String,
    pub label: String,
    /// The runtime as probed before the run (version, notes).
    pub runtime: RuntimeRecord,
}

/// Facts about a run, written once before its first cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub schema_version: u32,
    pub iostudy_version: String,
    /// Which build of that version ran (the first 12 hex digits of its binary's
    /// sha256): two builds of one version differ in a history.
    #[serde(default)]
    pub iostudy_build: Option<String>,
    pub study_name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub host: HostFacts,
    pub scale: Option<f64>,
    /// The filters the run was started with (`--scenario`, `--pattern`, `--clients`):
    /// a `--resume` must give the same, and the same scale.
    #[serde(default)]
    pub filters: Filters,
    /// Scenarios in study order.
    pub scenarios: Vec<ScenarioRecord>,
    /// The scenario others are compared with.
    pub baseline: String,
    /// Axis order as the study gives it.
    pub patterns: Vec<Pattern>,
    pub clients: Vec<u32>,
    /// The plan's warnings, carried into every report.
    #[serde(default)]
    pub warnings: Vec<PlanWarning>,
    /// What the target is (where the controller sees it).
    #[serde(default)]
    pub target: Option<TargetFacts>,
    /// Where the clients ran beyond this host, as the placement records it (a Slurm
    /// job: its id, partition, nodes, version, and each node's agent step).
    #[serde(default)]
    pub placement: Option<serde_json::Value>,
}

/// Which part of a study a run ran (empty: all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    pub scenarios: Vec<String>,
    pub patterns: Vec<Pattern>,
    pub clients: Vec<u32>,
}

impl Filters {
    /// The filters as flags (`--scenario bare --clients 2`), or `no filters`.
    pub fn describe(&self) -> String {
        let mut v: Vec<String> = self.scenarios.iter().map(|s| format!("--scenario {s}")).collect();
        v.extend(self.patterns.iter().map(|p| format!("--pattern {p}")));
        v.extend(self.clients.iter().map(|c| format!("--clients {c}")));
        if v.is_empty() { "no filters".into() } else { v.join(" ") }
    }
}

/// A warning of the plan, as `run.json` keeps it: its kind (`fits_in_page_cache`,
/// `clock_uncertain`…) and its text; older files hold the text alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlanWarning {
    Kinded { kind: String, text: String },
    Text(String),
}

impl PlanWarning {
    pub fn kind(&self) -> Option<&str> {
        match self {
            PlanWarning::Kinded { kind, .. } => Some(kind),
            PlanWarning::Text(_) => None,
        }
    }

    pub fn text(&self) -> &str {
        match self {
            PlanWarning::Kinded { text, .. } | PlanWarning::Text(text) => text,
        }
    }
}

/// The filesystem and device under a study's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFacts {
    /// `tmpfs`, `ext4`, `nfs`, `beegfs`, … (from statfs).
    pub fs: String,
    /// Whether the block device behind it spins (`None`: no block device, or unknown).
    pub rotational: Option<bool>,
}

impl TargetFacts {
    /// Whether the target lives in memory: then every figure measures memory.
    pub fn in_memory(&self) -> bool {
        matches!(self.fs.as_str(), "tmpfs" | "ramfs")
    }

    /// The most a device of this kind delivers, bytes/s, if one is known: reads faster
    /// than this came from a cache.
    pub fn device_limit(&self) -> Option<f64> {
        match self.rotational {
            Some(true) => Some(2.0 * 1024.0 * 1024.0 * 1024.0),
            Some(false) => Some(16.0 * 1024.0 * 1024.0 * 1024.0),
            None => None,
        }
    }
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{} already holds results of a run: add --resume to continue it, or choose another -o directory",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error(
        "{} was written by a different study file ({} {why}): resume only with the same study, or choose another -o directory",
        dir.display(), dir.join("study.toml").display()
    )]
    StudyChanged { dir: PathBuf, why: String },
    #[error(
        "{} is not empty and not an iostudy results directory (it holds {}): iostudy writes only into a new or empty directory, or one of its own; choose another -o",
        path.display(), entries.join(", ")
    )]
    NotResults { path: PathBuf, entries: Vec<String> },
    #[error("cannot {what} {}: {source}{}", path.display(), hint(source))]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Unsafe(crate::safety::SafetyError),
}

impl From<crate::safety::SafetyError> for StoreError {
    /// An I/O failure keeps its place and its hint (a full filesystem: how to go on).
    fn from(e: crate::safety::SafetyError) -> StoreError {
        match e {
            crate::safety::SafetyError::Io { what, path, source } => StoreError::Io { what, path, source },
            other => StoreError::Unsafe(other),
        }
    }
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            " (the results filesystem is full: free space there, then continue with --resume and the same -o)"
        }
        _ => "",
    }
}

/// Cells read from a store, and the files that could not be read (each with why).
#[derive(Debug, Default)]
pub struct CellSet {
    pub cells: Vec<CellResult>,
    pub unreadable: Vec<String>,
}

/// The file that marks a directory as iostudy's results directory.
pub const MARKER: &str = ".iostudy-results";

/// What the marker holds.
const MARKER_TEXT: &str = "iostudy results directory\n";

/// What a directory named with `-o` is to iostudy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Nothing there yet.
    Missing,
    /// An empty directory (or one holding only a dead run's lock).
    Empty,
    /// A results directory: marked, or written by an iostudy before the marker
    /// (`run.json` and `cells/`).
    Results,
    /// Something else, which iostudy does not write into.
    Other(Vec<String>),
}

impl Place {
    /// What `root` is. A link there is the caller's to refuse ([`crate::safety`]).
    pub fn of(root: &Path) -> Result<Place, StoreError> {
        let entries = match fs::read_dir(root) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Place::Missing),
            Err(e) => return Err(io("list", root)(e)),
        };
        let mut names: Vec<String> =
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names.retain(|n| n != ".lock");
        if names.is_empty() {
            return Ok(Place::Empty);
        }
        let marked = fs::symlink_metadata(root.join(MARKER)).is_ok_and(|m| m.is_file());
        let legacy = names.iter().any(|n| n == "run.json")
            && fs::symlink_metadata(root.join("cells")).is_ok_and(|m| m.is_dir())
            && Store::open(root).run_info().is_ok();
        if marked || legacy {
            return Ok(Place::Results);
        }
        names.truncate(5);
        Ok(Place::Other(names))
    }
}

/// A results directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens `root` — which exists and was checked as safe to write under — for a run
    /// of `study_source`: refuses a directory that is not its own and mixing runs, then
    /// marks it and writes the study.
    pub fn create(root: &Path, study_source: &str, resume: bool) -> Result<Store, StoreError> {
        let store = Store { root: root.to_path_buf() };
        match Place::of(root)? {
            Place::Other(entries) => return Err(StoreError::NotResults { path: root.to_path_buf(), entries }),
            Place::Results if !resume => return Err(StoreError::NotEmpty(root.to_path_buf())),
            Place::Results => {
                store.check_study(study_source)?;
            }
            Place::Missing | Place::Empty => {}
        }
        crate::safety::ensure_dir(&store.cells_dir())?;
        crate::safety::ensure_dir(&root.join("logs"))?;
        if crate::safety::check_replaceable(&root.join(MARKER))? {
            // Ours already: leave it.
        } else {
            write_atomic(&root.join(MARKER), MARKER_TEXT.as_bytes())?;
        }
        write_atomic(&root.join("study.toml"), study_source.as_bytes())?;
        Ok(store)
    }

    /// Opens an existing results directory for reading.
    pub fn open(root: &Path) -> Store {
        Store { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn cells_dir(&self) -> PathBuf {
        self.root.join("cells")
    }

    pub fn cell_path(&self, id: &str) -> PathBuf {
        self.cells_dir().join(format!("{id}.json"))
    }

    pub fn log_dir(&self, id: &str) -> PathBuf {
        self.root.join("logs").join(id)
    }

    /// A cell's log directory, made (or checked) as the run's own.
    pub fn make_log_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.log_dir(id);
        crate::safety::ensure_dir(&self.root.join("logs"))?;
        crate::safety::ensure_dir(&dir)?;
        Ok(dir)
    }

    /// Refuses unless `study.toml` holds `study_source`.
    pub fn check_study(&self, study_source: &str) -> Result<(), StoreError> {
        let why = match read_own(&self.root.join("study.toml")) {
            Ok(bytes) if bytes == study_source.as_bytes() => return Ok(()),
            Ok(_) => "holds another".to_string(),
            Err(e) => format!("cannot be read: {e}"),
        };
        Err(StoreError::StudyChanged { dir: self.root.clone(), why })
    }

    /// The study file as run ("" when absent or not a plain file).
    pub fn study_source(&self) -> String {
        read_own(&self.root.join("study.toml")).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default()
    }

    pub fn write_run_info(&self, info: &RunInfo) -> Result<(), StoreError> {
        let path = self.root.join("run.json");
        let json = serde_json::to_vec_pretty(info).expect("run info serializes");
        Ok(write_atomic(&path, &json)?)
    }

    /// `run.json`, or why it cannot be used (absent, another layout version).
    pub fn run_info(&self) -> Result<RunInfo, String> {
        let path = self.root.join("run.json");
        let bytes = read_own(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
        let version = value.get("schema_version").and_then(serde_json::Value::as_u64).unwrap_or(1);
        if version != u64::from(RUN_SCHEMA_VERSION) {
            return Err(format!(
                "{} has layout version {version}; this iostudy reads {RUN_SCHEMA_VERSION}",
                path.display()
            ));
        }
        serde_json::from_value(value).map_err(|e| format!("{} is not a run record: {e}", path.display()))
    }

    pub fn write_cell(&self, cell: &CellResult) -> Result<(), StoreError> {
        let path = self.cell_path(&cell.cell.id);
        let json = serde_json::to_vec(cell).expect("cell result serializes");
        Ok(write_atomic(&path, &json)?)
    }

    /// Reads one cell file; the error says which file and why.
    pub fn read_cell(&self, path: &Path) -> Result<CellResult, String> {
        let bytes = read_own(path).map_err(|e| format!("{}: {e}", path.display()))?;
        parse_cell(&bytes, path)
    }

    /// Every readable cell result, sorted by id, and the files that were not.
    pub fn cells(&self) -> Result<CellSet, StoreError> {
        let dir = self.cells_dir();
        let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io("list", &dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let mut set = CellSet::default();
        for read in crate::sys::parallel_map(&paths, |p| self.read_cell(p)) {
            match read {
                Ok(c) => set.cells.push(c),
                Err(e) => set.unreadable.push(e),
            }
        }
        Ok(set)
    }
}

/// A cell file's bytes as a cell result (`path` names it in errors): its layout version
/// checked, then every field. What a results directory holds may come from anywhere,
/// so this never panics (it is fuzzed).
pub fn parse_cell(bytes: &[u8], path: &Path) -> Result<CellResult, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("{} is not valid JSON (truncated or damaged?): {e}", path.display()))?;
    let version = value.get("schema_version").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if version != u64::from(CELL_SCHEMA_VERSION) {
        return Err(format!(
            "{} has cell layout version {version}; this iostudy {} reads {CELL_SCHEMA_VERSION}: report it with the iostudy that wrote it",
            path.display(),
            env!("CARGO_PKG_VERSION")
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("{} is not a cell result: {e}", path.display()))
}

/// The largest file the store reads (a cell of thousands of clients is a few MiB).
const MAX_READ: u64 = 256 << 20;

/// Reads a regular file without following a link, at most [`MAX_READ`] bytes: a link
/// planted where a cell should be is not a cell of this run.
fn read_own(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(n) if n == rustix::io::Errno::LOOP.raw_os_error() => {
                std::io::Error::other("a symbolic link, not a file iostudy wrote")
            }
            _ => e,
        })?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    f.take(MAX_READ + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_READ {
        return Err(std::io::Error::other(format!("larger than {} MiB: not a file iostudy wrote", MAX_READ >> 20)));
    }
    Ok(bytes)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}
