//! The result store: one directory per study run, one file per finished cell.
//!
//! ```text
//! RESULTS_DIR/
//!   study.toml            the study file as run (a resume must match it)
//!   run.json              host facts, runtime probes, plan options
//!   cells/<cell-id>.json  one CellResult per finished cell, written atomically
//!   logs/<cell-id>/       each client's stdout/stderr
//! ```
//!
//! A cell is on disk, complete, before the next one starts, so a crash or Ctrl-C loses
//! at most the cell in flight and `--resume` continues from there.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::results::{ClientResult, HostFacts, write_atomic};
use crate::runtime::{Probe, RuntimeSpec};
use crate::study::plan::Cell;

/// Version of the cell result layout.
pub const CELL_SCHEMA_VERSION: u32 = 1;

/// Whether a cell produced a result for every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    Ok,
    Failed,
}

/// A client that did not deliver a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFailure {
    pub client: u32,
    pub message: String,
    /// The last lines of its stderr.
    pub stderr_tail: String,
    /// Where its full stderr is kept.
    pub stderr_log: PathBuf,
}

/// One finished cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    pub schema_version: u32,
    pub cell: Cell,
    pub scenario_label: String,
    pub runtime: RuntimeSpec,
    pub runtime_version: Option<String>,
    pub runtime_notes: Vec<String>,
    pub status: CellStatus,
    /// Why the cell failed.
    pub failure: Option<String>,
    /// Wall-clock ns when the cell's clients were launched / the cell ended.
    pub launched_ns: u64,
    pub finished_ns: u64,
    /// Launch to all clients ready (container start, layout), s.
    pub setup_s: f64,
    /// The go signal's start instant, wall-clock ns.
    pub start_ns: Option<u64>,
    /// Whether the host page cache was dropped before the cell.
    pub caches_dropped: bool,
    pub clients: Vec<ClientResult>,
    pub client_failures: Vec<ClientFailure>,
    /// Per client, seconds from launch until its guest had booted and mounted the
    /// share (micro-VMs only), measured by the controller; not part of any I/O figure.
    #[serde(default)]
    pub boot_s: Vec<Option<f64>>,
}

/// Facts about a run, written once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub iostudy_version: String,
    pub study_name: String,
    pub host: HostFacts,
    pub scale: Option<f64>,
    pub probes: Vec<(String, Probe)>,
    /// The plan's warnings, carried into every report.
    #[serde(default)]
    pub warnings: Vec<String>,
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
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{} is not a cell result: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
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
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { what, path, source }
        };
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

    /// True when the cell finished successfully in an earlier run.
    pub fn finished(&self, id: &str) -> bool {
        self.read_cell(&self.cell_path(id)).is_ok_and(|c| c.status == CellStatus::Ok)
    }

    pub fn write_run_info(&self, info: &RunInfo) -> Result<(), StoreError> {
        let path = self.root.join("run.json");
        let json = serde_json::to_vec_pretty(info).expect("run info serializes");
        write_atomic(&path, &json).map_err(|source| StoreError::Io { what: "write", path, source })
    }

    pub fn write_cell(&self, cell: &CellResult) -> Result<(), StoreError> {
        let path = self.cell_path(&cell.cell.id);
        let json = serde_json::to_vec(cell).expect("cell result serializes");
        write_atomic(&path, &json).map_err(|source| StoreError::Io { what: "write", path, source })
    }

    pub fn read_cell(&self, path: &Path) -> Result<CellResult, StoreError> {
        let bytes =
            fs::read(path).map_err(|source| StoreError::Io { what: "read", path: path.to_path_buf(), source })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Every cell result in the store, sorted by id.
    pub fn cells(&self) -> Result<Vec<CellResult>, StoreError> {
        let dir = self.cells_dir();
        let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|source| StoreError::Io { what: "list", path: dir.clone(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths.iter().map(|p| self.read_cell(p)).collect()
    }
}
