//! The history database: one SQLite file, versioned, migrated, never overwritten.
//!
//! The file is marked as iostudy's (`PRAGMA application_id`) and carries its schema
//! version (`PRAGMA user_version`). Opening a file that is not a database, is another
//! program's database, fails SQLite's integrity check, or was made by a newer iostudy
//! is refused with the reason, and the file is left as it was. An older schema is
//! migrated in one transaction, step by step ([`MIGRATIONS`]); a new file goes through
//! the same steps. The file and SQLite's journal beside it are checked as every file
//! iostudy writes is: never through a link, never another user's.
//!
//! Tables: `runs` (one per run, with its environment in `environment`), `cells`,
//! `figures` (one row per cell and metric, with its unit, which way is better and the
//! per-repetition samples as a JSON array) and `histograms` (the cell's merged
//! latency histogram, HdrHistogram V2 + DEFLATE, readable by any HdrHistogram port).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::history::{Better, CellRecord, Figure, RunRecord};
use crate::report::model::GroupKey;
use crate::safety::{self, SafetyError};

/// `ioST`: marks a SQLite file as an iostudy history.
pub const APPLICATION_ID: i32 = 0x696F_5354;

/// The schema, one step per version: version N is reached by applying the first N.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, their environment, cells and figures.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        started_ns INTEGER NOT NULL,
        added_at TEXT NOT NULL,
        source TEXT NOT NULL,
        study_name TEXT NOT NULL,
        study_hash TEXT NOT NULL,
        iostudy_version TEXT NOT NULL
    );
    CREATE TABLE environment (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    );
    CREATE TABLE cells (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        cell_key TEXT NOT NULL,
        scenario TEXT NOT NULL,
        pattern TEXT NOT NULL,
        clients INTEGER NOT NULL,
        options TEXT NOT NULL,
        label TEXT NOT NULL,
        workload TEXT NOT NULL,
        reps INTEGER NOT NULL,
        failed_reps INTEGER NOT NULL,
        UNIQUE (run_id, cell_key)
    );
    CREATE TABLE figures (
        cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
        metric TEXT NOT NULL,
        value REAL NOT NULL,
        lo REAL NOT NULL,
        hi REAL NOT NULL,
        n INTEGER NOT NULL,
        unit TEXT NOT NULL,
        better TEXT NOT NULL CHECK (better IN ('higher', 'lower')),
        samples TEXT NOT NULL,
        PRIMARY KEY (cell_id, metric)
    );
    CREATE INDEX runs_by_study ON runs (study_hash, started_ns);",
    // 2: each cell's merged latency histogram, for exact percentiles over runs.
    "CREATE TABLE histograms (
        cell_id INTEGER PRIMARY KEY REFERENCES cells(id) ON DELETE CASCADE,
        encoding TEXT NOT NULL,
        data BLOB NOT NULL
    );",
];

/// The schema version this iostudy writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Safety(#[from] SafetyError),
    #[error("{}: {why}; it was left as it was (name a new file to start a history)", path.display())]
    Foreign { path: PathBuf, why: String },
    #[error(
        "{}: schema version {found} was written by a newer iostudy (this one knows up to {known}); upgrade iostudy",
        path.display()
    )]
    Newer { path: PathBuf, found: i64, known: i64 },
    #[error("{}: {what}: {source}", path.display())]
    Sqlite { path: PathBuf, what: String, source: rusqlite::Error },
}

type Result<T> = std::result::Result<T, HistoryError>;

/// An open history.
pub struct History {
    conn: Connection,
    path: PathBuf,
}

/// What `add` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New(i64),
    /// The same run (same fingerprint) was already kept, as this run id.
    Already(i64),
}

/// A run as `history ls` lists it.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: i64,
    pub started_ns: u64,
    pub added_at: String,
    pub source: String,
    pub study_name: String,
    pub study_hash: String,
    pub iostudy_version: String,
    pub cells: usize,
}

fn sql_error(path: &Path, what: &str) -> impl FnOnce(rusqlite::Error) -> HistoryError + use<> {
    let path = path.to_path_buf();
    let what = what.to_string();
    move |source| HistoryError::Sqlite { path, what, source }
}

impl History {
    /// Opens the history at `path`, creating it when missing and migrating an older
    /// schema. Refuses anything that is not an iostudy history, unchanged.
    pub fn open(path: &Path) -> Result<History> {
        let path = safety::resolve(path)?;
        safety::check_output_file(&path)?;
        let exists = safety::check_replaceable(&path)?;
        for suffix in ["-journal", "-wal", "-shm"] {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            safety::check_replaceable(Path::new(&side))?;
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        if !exists {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(&path, flags).map_err(sql_error(&path, "cannot open"))?;
        let foreign = |why: String| HistoryError::Foreign { path: path.clone(), why };
        if exists {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if size == 0 {
                return Err(foreign("is an empty file, not an iostudy history".into()));
            }
            let app: i32 = conn
                .query_row("PRAGMA application_id", [], |r| r.get(0))
                .map_err(|e| foreign(format!("is not a SQLite database ({e})")))?;
            if app != APPLICATION_ID {
                return Err(foreign(format!(
                    "is a SQLite database of another program (application_id {app:#x}, an iostudy history has {APPLICATION_ID:#x})"
                )));
            }
            let check: String = conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| foreign(format!("is damaged ({e})")))?;
            if check != "ok" {
                return Err(foreign(format!("is damaged (SQLite's check: {check})")));
            }
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
            .map_err(sql_error(&path, "cannot set up"))?;
        let mut history = History { conn, path: path.clone() };
        history.migrate()?;
        Ok(history)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, what: &str) -> impl FnOnce(rusqlite::Error) -> HistoryError + use<> {
        sql_error(&self.path, what)
    }

    /// The schema version of the open file.
    pub fn version(&self) -> Result<i64> {
        self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(self.sql("cannot read the schema version"))
    }

    fn migrate(&mut self) -> Result<()> {
        self.migrate_to(current_version())
    }

    /// Brings the schema to `target` (tests use it to make an older file).
    pub fn migrate_to(&mut self, target: i64) -> Result<()> {
        let found = self.version()?;
        if found > current_version() {
            return Err(HistoryError::Newer { path: self.path.clone(), found, known: current_version() });
        }
        if found >= target {
            return Ok(());
        }
        let err = self.sql("cannot migrate the schema");
        let tx = self.conn.transaction().map_err(sql_error(&self.path, "cannot migrate the schema"))?;
        let run = || -> rusqlite::Result<()> {
            tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
            for (i, step) in MIGRATIONS.iter().enumerate().take(target as usize).skip(found as usize) {
                tx.execute_batch(step)?;
                tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
            }
            Ok(())
        };
        run().map_err(err)?;
        tx.commit().map_err(sql_error(&self.path, "cannot migrate the schema"))
    }

    /// Keeps a run; a run already kept (same fingerprint) is left as it is.
    pub fn add(&mut self, run: &RunRecord) -> Result<Added> {
        let err = self.sql("cannot add the run");
        let tx = self.conn.transaction().map_err(sql_error(&self.path, "cannot add the run"))?;
        let added = (|| -> rusqlite::Result<Added> {
            if let Some(id) = tx
                .query_row("SELECT id FROM runs WHERE fingerprint = ?1", [&run.fingerprint], |r| r.get(0))
                .optional()?
            {
                return Ok(Added::Already(id));
            }
            let added_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            tx.execute(
                "INSERT INTO runs (fingerprint, started_ns, added_at, source, study_name, study_hash, iostudy_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run.fingerprint,
                    run.started_ns as i64,
                    added_at,
                    run.source,
                    run.study_name,
                    run.study_hash,
                    run.iostudy_version
                ],
            )?;
            let id = tx.last_insert_rowid();
            for (k, v) in &run.environment {
                tx.execute("INSERT INTO environment (run_id, key, value) VALUES (?1, ?2, ?3)", params![id, k, v])?;
            }
            for c in &run.cells {
                tx.execute(
                    "INSERT INTO cells (run_id, cell_key, scenario, pattern, clients, options, label, workload, reps, failed_reps)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        id,
                        c.key_text(),
                        c.key.scenario,
                        c.key.pattern.to_string(),
                        c.key.clients,
                        serde_json::to_string(&c.key.options).unwrap_or_default(),
                        c.label,
                        c.workload,
                        c.reps as i64,
                        c.failed_reps as i64
                    ],
                )?;
                let cell_id = tx.last_insert_rowid();
                for f in &c.figures {
                    tx.execute(
                        "INSERT INTO figures (cell_id, metric, value, lo, hi, n, unit, better, samples)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        params![
                            cell_id,
                            f.metric,
                            f.value,
                            f.lo,
                            f.hi,
                            f.n as i64,
                            f.unit,
                            f.better.name(),
                            serde_json::to_string(&f.samples).unwrap_or_default()
                        ],
                    )?;
                }
                if !c.histogram.is_empty() {
                    tx.execute(
                        "INSERT INTO histograms (cell_id, encoding, data) VALUES (?1, 'hdr-v2-deflate', ?2)",
                        params![cell_id, c.histogram],
                    )?;
                }
            }
            Ok(Added::New(id))
        })()
        .map_err(err)?;
        tx.commit().map_err(sql_error(&self.path, "cannot add the run"))?;
        Ok(added)
    }

    /// Every run, oldest first (by when it ran).
    pub fn runs(&self) -> Result<Vec<RunRow>> {
        let q = || -> rusqlite::Result<Vec<RunRow>> {
            let mut st = self.conn.prepare(
                "SELECT r.id, r.started_ns, r.added_at, r.source, r.study_name, r.study_hash, r.iostudy_version,
                        (SELECT count(*) FROM cells c WHERE c.run_id = r.id)
                 FROM runs r ORDER BY r.started_ns, r.id",
            )?;
            let rows = st.query_map([], |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    started_ns: r.get::<_, i64>(1)? as u64,
                    added_at: r.get(2)?,
                    source: r.get(3)?,
                    study_name: r.get(4)?,
                    study_hash: r.get(5)?,
                    iostudy_version: r.get(6)?,
                    cells: r.get::<_, i64>(7)? as usize,
                })
            })?;
            rows.collect()
        };
        q().map_err(self.sql("cannot list runs"))
    }

    /// The last `last` runs of the study `study_hash` (oldest first), leaving out the
    /// run with fingerprint `except` (the run being judged, if it was kept already).
    pub fn study_runs(&self, study_hash: &str, except: &str, last: usize) -> Result<Vec<RunRecord>> {
        let ids = (|| -> rusqlite::Result<Vec<i64>> {
            let mut st = self.conn.prepare(
                "SELECT id FROM runs WHERE study_hash = ?1 AND fingerprint != ?2
                 ORDER BY started_ns DESC, id DESC LIMIT ?3",
            )?;
            let rows = st.query_map(params![study_hash, except, last as i64], |r| r.get(0))?;
            rows.collect()
        })()
        .map_err(self.sql("cannot read the history"))?;
        // Newest first from the query: reversed, oldest first.
        ids.into_iter().rev().map(|id| self.run(id)).collect()
    }

    /// Every run, whole, oldest first.
    pub fn all_runs(&self) -> Result<Vec<RunRecord>> {
        self.runs()?.into_iter().map(|r| self.run(r.id)).collect()
    }

    /// One run, whole.
    pub fn run(&self, id: i64) -> Result<RunRecord> {
        let q = || -> rusqlite::Result<RunRecord> {
            let mut run = self.conn.query_row(
                "SELECT fingerprint, started_ns, source, study_name, study_hash, iostudy_version FROM runs WHERE id = ?1",
                [id],
                |r| {
                    Ok(RunRecord {
                        fingerprint: r.get(0)?,
                        started_ns: r.get::<_, i64>(1)? as u64,
                        source: r.get(2)?,
                        study_name: r.get(3)?,
                        study_hash: r.get(4)?,
                        iostudy_version: r.get(5)?,
                        environment: BTreeMap::new(),
                        cells: Vec::new(),
                    })
                },
            )?;
            let mut st = self.conn.prepare_cached("SELECT key, value FROM environment WHERE run_id = ?1")?;
            run.environment = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            let mut st = self.conn.prepare_cached(
                "SELECT c.id, c.scenario, c.pattern, c.clients, c.options, c.label, c.workload, c.reps, c.failed_reps,
                        h.data
                 FROM cells c LEFT JOIN histograms h ON h.cell_id = c.id WHERE c.run_id = ?1 ORDER BY c.id",
            )?;
            let cells: Vec<(i64, CellRecord)> = st
                .query_map([id], |r| {
                    let pattern: String = r.get(2)?;
                    let options: String = r.get(4)?;
                    Ok((
                        r.get(0)?,
                        CellRecord {
                            key: GroupKey {
                                scenario: r.get(1)?,
                                pattern: pattern.parse().map_err(|e: String| {
                                    rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
                                })?,
                                clients: r.get(3)?,
                                options: serde_json::from_str(&options).unwrap_or_default(),
                            },
                            label: r.get(5)?,
                            workload: r.get(6)?,
                            reps: r.get::<_, i64>(7)? as usize,
                            failed_reps: r.get::<_, i64>(8)? as usize,
                            figures: Vec::new(),
                            histogram: r.get::<_, Option<Vec<u8>>>(9)?.unwrap_or_default(),
                        },
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut st = self.conn.prepare_cached(
                "SELECT metric, value, lo, hi, n, unit, better, samples FROM figures WHERE cell_id = ?1 ORDER BY rowid",
            )?;
            for (cell_id, mut cell) in cells {
                cell.figures = st
                    .query_map([cell_id], |r| {
                        let better: String = r.get(6)?;
                        let samples: String = r.get(7)?;
                        Ok(Figure {
                            metric: r.get(0)?,
                            value: r.get(1)?,
                            lo: r.get(2)?,
                            hi: r.get(3)?,
                            n: r.get::<_, i64>(4)? as usize,
                            unit: r.get(5)?,
                            better: Better::parse(&better).unwrap_or(Better::Higher),
                            samples: serde_json::from_str(&samples).unwrap_or_default(),
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                run.cells.push(cell);
            }
            Ok(run)
        };
        q().map_err(self.sql(&format!("cannot read run {id}")))
    }
}
