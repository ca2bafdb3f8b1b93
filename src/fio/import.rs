//! `iostudy import fio`: fio json+ outputs become a results directory that `report` and
//! `compare` read like any other.
//!
//! One import makes one cell: each file is a client (a client/server output holds one
//! client per host in `client_stats`), each job in it a thread. Importing again into the
//! same directory adds cells — another scenario (`--scenario kata`), another client
//! count, or the next repetition of a cell already there — so a study run by hand with
//! fio becomes one results directory.

use std::path::{Path, PathBuf};

use crate::fio::output::{self, Context, FioClient, LatencyKind};
use crate::results::ClientResult;
use crate::results::HostFacts;
use crate::results::store::{
    CELL_SCHEMA_VERSION, Cell, CellResult, CellStatus, Place, RUN_SCHEMA_VERSION, RunInfo, RuntimeRecord,
    ScenarioRecord, Store, cell_id,
};
use crate::workload::Pattern;

/// What `study.toml` of an imported results directory says (and how a later import
/// recognizes one).
const MARKER: &str = "# Results imported from fio json+ outputs by `iostudy import fio`: no study file ran.\n";

/// What to import and as what.
pub struct Import {
    pub files: Vec<PathBuf>,
    pub out: PathBuf,
    pub scenario: String,
    /// The cell's client count, checked against the clients found.
    pub clients: Option<u32>,
    /// The cell's pattern, checked against the jobs' `rw` (or taken when they name none).
    pub pattern: Option<Pattern>,
}

/// What was imported.
#[derive(Debug)]
pub struct Imported {
    pub cell: String,
    pub clients: usize,
    pub threads: usize,
    pub notes: Vec<String>,
}

/// A client found in a file, with the output it came from.
struct Found {
    file: PathBuf,
    version: String,
    end_ns: u64,
    client: FioClient,
}

/// The largest fio output read (a json+ of thousands of jobs is a few MiB).
const MAX_OUTPUT_BYTES: u64 = 256 << 20;

/// A fio output's text: a regular file, at most [`MAX_OUTPUT_BYTES`].
fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let cannot = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
    let f = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    if !f.metadata().map_err(|e| cannot(&e))?.is_file() {
        return Err(format!("{} is not a regular file: give the file fio wrote with --output", path.display()));
    }
    let mut bytes = Vec::new();
    f.take(MAX_OUTPUT_BYTES + 1).read_to_end(&mut bytes).map_err(|e| cannot(&e))?;
    if bytes.len() as u64 > MAX_OUTPUT_BYTES {
        return Err(format!("{} is larger than {} MiB: not one fio output", path.display(), MAX_OUTPUT_BYTES >> 20));
    }
    String::from_utf8(bytes).map_err(|_| format!("{} is not text: not a fio output", path.display()))
}

fn read(path: &Path) -> Result<Vec<Found>, String> {
    let text = read_text(path)?;
    let out = output::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let end_ns = match out.timestamp_ms {
        Some(ms) => ms.saturating_mul(1_000_000),
        // Without fio's timestamp, the file's modification time: when fio finished.
        None => std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64),
    };
    Ok(out
        .clients
        .into_iter()
        .map(|client| Found { file: path.to_path_buf(), version: out.version.clone(), end_ns, client })
        .collect())
}

/// Imports `i.files` as one cell of `i.out`.
pub fn import(i: &Import) -> Result<Imported, String> {
    if i.files.is_empty() {
        return Err("no fio output given".into());
    }
    let mut found = Vec::new();
    for f in &i.files {
        found.extend(read(f)?);
    }
    if let Some(n) = i.clients
        && n as usize != found.len()
    {
        return Err(format!(
            "--clients {n}, but the outputs hold {} client(s) (one per file, one per host of a client/server run)",
            found.len()
        ));
    }
    let (workload, mut notes) = found[0].client.workload()?;
    for f in &found[1..] {
        let (w, _) = f.client.workload()?;
        if (w.rw, w.bs, w.ioengine, w.iodepth, w.direct)
            != (workload.rw, workload.bs, workload.ioengine, workload.iodepth, workload.direct)
        {
            return Err(format!(
                "{} and {} ran different jobs ({} {} vs {} {}): import them as different cells",
                found[0].file.display(),
                f.file.display(),
                workload.rw,
                workload.bs,
                w.rw,
                w.bs
            ));
        }
    }
    let pattern = match i.pattern {
        Some(p) if p != workload.rw && found[0].client.jobs[0].options.iter().any(|o| o.key == "rw") => {
            return Err(format!("--pattern {p}, but the jobs ran rw={}", workload.rw));
        }
        Some(p) => p,
        None => workload.rw,
    };
    let mut workload = workload;
    workload.rw = pattern;
    // One latency kind for the whole cell: lat when every client has its bins.
    let latency = if found.iter().all(|f| f.client.latency_kind() == LatencyKind::Total) {
        LatencyKind::Total
    } else {
        notes.push("some outputs lack lat bins (fio --lat_percentiles=1): every client's clat is used".into());
        LatencyKind::Completion
    };

    notes.extend(implausible(&found)?);
    let store = open_store(&i.out)?;
    let clients = found.len() as u32;
    let existing = store.cells().map_err(|e| e.to_string())?.cells;
    let repetition = (1..)
        .find(|r| {
            let id = cell_id(&i.scenario, pattern, clients, &[], *r);
            !existing.iter().any(|c| c.cell.id == id)
        })
        .expect("a free repetition");
    let id = cell_id(&i.scenario, pattern, clients, &[], repetition);

    let results: Vec<ClientResult> = found
        .iter()
        .enumerate()
        .map(|(k, f)| {
            let host = HostFacts::unknown(f.client.hostname.as_deref().unwrap_or("unknown"));
            let origin = format!("imported from {}", f.file.display());
            output::client_result(
                &f.client,
                Context {
                    client_id: k as u32,
                    host,
                    workload: workload.clone(),
                    latency,
                    end_ns: f.end_ns,
                    version: &f.version,
                    origin: &origin,
                    notes: notes.clone(),
                },
            )
        })
        .collect();
    let threads = results.iter().map(|r| r.threads.len()).sum();
    let version = found[0].version.clone();
    let runtime = RuntimeRecord {
        kind: "fio-import".into(),
        name: "fio (imported)".into(),
        settings: serde_json::json!({ "files": i.files }),
        version: Some(version),
        notes: notes.clone(),
        accelerator: None,
        own_cgroups: false,
    };
    let launched = results.iter().map(|r| r.start_ns).min().unwrap_or(0);
    let finished = results.iter().map(|r| r.end_ns).max().unwrap_or(0);
    let cell = CellResult {
        schema_version: CELL_SCHEMA_VERSION,
        cell: Cell {
            id: id.clone(),
            scenario: i.scenario.clone(),
            pattern,
            clients,
            options: Vec::new(),
            repetition,
            workload: workload.clone(),
        },
        scenario_label: i.scenario.clone(),
        runtime: runtime.clone(),
        status: CellStatus::Ok,
        failure: None,
        failure_phase: None,
        failure_kind: None,
        launched_ns: launched,
        finished_ns: finished,
        ready_s: 0.0,
        launch_s: 0.0,
        exited_s: None,
        torn_down_s: None,
        start_ns: None,
        caches_dropped: false,
        clients: results,
        client_failures: Vec::new(),
        boot_s: Vec::new(),
        placements: Vec::new(),
        cpu: Vec::new(),
        attribution: None,
    };
    store.write_cell(&cell).map_err(|e| e.to_string())?;
    update_run_info(&store, &i.scenario, runtime, pattern, clients)?;
    Ok(Imported { cell: id, clients: found.len(), threads, notes })
}

/// What cannot be taken as measured: a job that ran 0 ms (no rate), one faster than
/// any storage (1 PiB/s); and more I/Os in all than a histogram can count (refused).
fn implausible(found: &[Found]) -> Result<Vec<String>, String> {
    const FASTEST: f64 = (1u64 << 50) as f64;
    let mut notes = Vec::new();
    let mut ios = 0u64;
    for f in found {
        for j in &f.client.jobs {
            ios = ios.saturating_add(j.read.total_ios).saturating_add(j.write.total_ios);
            let bytes = j.read.io_bytes.saturating_add(j.write.io_bytes);
            if j.runtime_ms == 0 && bytes > 0 {
                notes.push(format!(
                    "job `{}` of {} moved {} in 0 ms: its rate is not a measurement",
                    j.name,
                    f.file.display(),
                    crate::workload::human_bytes(bytes)
                ));
            } else if j.runtime_ms > 0 && bytes as f64 / (j.runtime_ms as f64 / 1e3) > FASTEST {
                notes.push(format!(
                    "job `{}` of {} claims more than 1 PiB/s: the output is damaged or was edited",
                    j.name,
                    f.file.display()
                ));
            }
        }
    }
    if ios > 1 << 60 {
        return Err("the outputs claim more than 2^60 I/Os in all: they are damaged".into());
    }
    Ok(notes)
}

/// Creates the results directory, or opens one an earlier import made.
fn open_store(out: &Path) -> Result<Store, String> {
    let out = &crate::safety::resolve(out).map_err(|e| format!("-o {}: {e}", out.display()))?;
    let resume = match Place::of(out).map_err(|e| e.to_string())? {
        Place::Results if Store::open(out).study_source() == MARKER => true,
        Place::Results => {
            return Err(format!(
                "{} holds the results of a study run: import fio outputs into another directory",
                out.display()
            ));
        }
        Place::Other(_) => {
            return Err(format!("{} is not empty: import into a new directory, or one an import made", out.display()));
        }
        Place::Missing | Place::Empty => false,
    };
    crate::safety::ensure_path(out).map_err(|e| format!("-o {}: {e}", out.display()))?;
    Store::create(out, MARKER, resume).map_err(|e| e.to_string())
}

/// `run.json`: the scenario, pattern and client count added to what earlier imports
/// recorded.
fn update_run_info(
    store: &Store,
    scenario: &str,
    runtime: RuntimeRecord,
    pattern: Pattern,
    clients: u32,
) -> Result<(), String> {
    let mut info = store.run_info().unwrap_or_else(|_| RunInfo {
        schema_version: RUN_SCHEMA_VERSION,
        iostudy_version: env!("CARGO_PKG_VERSION").to_string(),
        iostudy_build: None,
        study_name: "fio-import".into(),
        description: Some("fio json+ outputs imported with `iostudy import fio`".into()),
        host: HostFacts::unknown("unknown"),
        scale: None,
        filters: Default::default(),
        scenarios: Vec::new(),
        baseline: scenario.to_string(),
        patterns: Vec::new(),
        clients: Vec::new(),
        warnings: Vec::new(),
        target: None,
        placement: None,
    });
    if !info.scenarios.iter().any(|s| s.name == scenario) {
        info.scenarios.push(ScenarioRecord { name: scenario.to_string(), label: scenario.to_string(), runtime });
    }
    if !info.patterns.contains(&pattern) {
        info.patterns.push(pattern);
    }
    if !info.clients.contains(&clients) {
        info.clients.push(clients);
        info.clients.sort_unstable();
    }
    store.write_run_info(&info).map_err(|e| e.to_string())
}
