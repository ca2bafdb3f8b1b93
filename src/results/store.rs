//! The result store: one directory per study run, one file per finished cell. The only
//! reader and writer of a results directory.
//!
//! ```text
//! RESULTS_DIR/
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

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::results::cell::{
    CELL_SCHEMA_VERSION, Cell, CellResult, CellStatus, ClientFailure, RuntimeRecord, cell_id,
};
use crate::results::{HostFacts, write_atomic};
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
    pub study_name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub host: HostFacts,
    pub scale: Option<f64>,
    /// Scenarios in study order.
    pub scenarios: Vec<ScenarioRecord>,
    /// The scenario others are compared with.
    pub baseline: String,
    /// Axis order as the study gives it.
    pub patterns: Vec<Pattern>,
    pub clients: Vec<u32>,
    /// The plan's warnings, carried into every report.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// What the target is (where the controller sees it).
    #[serde(default)]
    pub target: Option<TargetFacts>,
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
        "{} was written by a different study file: resume only with the same study, or choose another -o directory",
        .0.display()
    )]
    StudyChanged(PathBuf),
    #[error("cannot {what} {}: {source}{}", path.display(), hint(source))]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
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

/// A results directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens `root` for a run of `study_source`; refuses to mix runs.
    pub fn create(root: &Path, study_source: &str, resume: bool) -> Result<Store, StoreError> {
        let store = Store { root: root.to_path_buf() };
        let study_copy = root.join("study.toml");
        if study_copy.exists() {
            if !resume {
                return Err(StoreError::NotEmpty(root.to_path_buf()));
            }
            let previous = fs::read_to_string(&study_copy).map_err(io("read", &study_copy))?;
            if previous != study_source {
                return Err(StoreError::StudyChanged(root.to_path_buf()));
            }
        }
        for d in [root.to_path_buf(), store.cells_dir(), root.join("logs")] {
            fs::create_dir_all(&d).map_err(io("create", &d))?;
        }
        write_atomic(&study_copy, study_source.as_bytes()).map_err(io("write", &study_copy))?;
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

    /// The study file as run ("" when absent).
    pub fn study_source(&self) -> String {
        fs::read_to_string(self.root.join("study.toml")).unwrap_or_default()
    }

    pub fn write_run_info(&self, info: &RunInfo) -> Result<(), StoreError> {
        let path = self.root.join("run.json");
        let json = serde_json::to_vec_pretty(info).expect("run info serializes");
        write_atomic(&path, &json).map_err(io("write", &path))
    }

    /// `run.json`, or why it cannot be used (absent, another layout version).
    pub fn run_info(&self) -> Result<RunInfo, String> {
        let path = self.root.join("run.json");
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
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
        write_atomic(&path, &json).map_err(io("write", &path))
    }

    /// Reads one cell file; the error says which file and why.
    pub fn read_cell(&self, path: &Path) -> Result<CellResult, String> {
        let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
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
        for p in paths {
            match self.read_cell(&p) {
                Ok(c) => set.cells.push(c),
                Err(e) => set.unreadable.push(e),
            }
        }
        Ok(set)
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}
