//! The fio-like engine: one client's workload, from file layout to a [`ClientResult`].
//!
//! [`run`] is the whole life of a client: validate, probe the I/O engine, lay out the
//! files ([`layout`]), drop their cached pages, start every thread at one instant —
//! after an optional *gate*, which is how the worker waits on the study's start
//! barrier — then measure ([`io`], [`measure`]) and merge the threads into one result.
//! Nothing here knows about containers or VMs: the same code runs on the host
//! (`iostudy bench`) and inside every isolation boundary (`iostudy worker`).

pub mod aio;
pub mod buffer;
pub mod clock;
mod inflight;
pub mod io;
pub mod layout;
pub mod measure;
pub mod pattern;
mod uring;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::Duration;

pub use crate::workload::{Bytes, IoEngineKind, Pattern, Span, Workload, human_bytes, parse_bytes};

use crate::engine::io::{Schedule, ThreadIo};
use crate::engine::measure::{Histograms, Recorder, WallClock, mono_ns};
use crate::engine::pattern::SplitMix64;
use crate::results::histogram::new_latency_histogram;
use crate::results::{ClientResult, HostFacts, IntervalSeries, ResultParts, ThreadStats};

/// Why a client could not run. Each message names the value and the fix.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid workload: {0}")]
    Invalid(String),
    #[error("directory {} does not exist: create it (mkdir -p {}) or choose another directory", .0.display(), .0.display())]
    DirectoryMissing(PathBuf),
    #[error("{} is not a directory: point directory at a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("directory {} is on a read-only filesystem: choose a writable directory", .0.display())]
    ReadOnly(PathBuf),
    #[error("directory {} is not writable ({source}): fix its permissions or choose another directory", dir.display())]
    NotWritable { dir: PathBuf, source: std::io::Error },
    #[error(
        "not enough space in {}: the files need {} more, {} is free: lower size or numjobs, or free space",
        dir.display(), human_bytes(*needed), human_bytes(*available)
    )]
    NoSpace { dir: PathBuf, needed: u64, available: u64 },
    #[error("the filesystem of {} does not support O_DIRECT: set direct = false or choose another directory", .0.display())]
    DirectUnsupported(PathBuf),
    #[error(
        "O_DIRECT on {} needs I/O aligned to {align} bytes, but bs is {bs}: use a multiple of {align} or direct = false",
        dir.display()
    )]
    DirectMisaligned { bs: u64, align: u64, dir: PathBuf },
    #[error("{}", unavailable(*engine, source))]
    EngineUnavailable { engine: IoEngineKind, source: std::io::Error },
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: String, path: PathBuf, source: std::io::Error },
    #[error("start barrier: {0}")]
    Gate(String),
    #[error("{0}")]
    Clock(String),
    #[error("fio: {0}")]
    Fio(String),
}

impl EngineError {
    /// The async engine was refused: by the kernel, a seccomp filter or a limit.
    pub fn unavailable(engine: IoEngineKind) -> impl Fn(std::io::Error) -> Self {
        move |source| EngineError::EngineUnavailable { engine, source }
    }
}

fn unavailable(engine: IoEngineKind, e: &std::io::Error) -> String {
    let (what, who) = match engine {
        IoEngineKind::IoUring => (
            "io_uring",
            "an old kernel, a seccomp filter (container runtimes' default profiles, Kubernetes RuntimeDefault), \
             sysctl kernel.io_uring_disabled or gVisor refuses it; use ioengine libaio or psync",
        ),
        IoEngineKind::Libaio if e.raw_os_error() == Some(rustix::io::Errno::AGAIN.raw_os_error()) => (
            "Linux AIO",
            "the system-wide limit of AIO events is reached (compare sysctl fs.aio-nr with fs.aio-max-nr); \
             raise it (sysctl -w fs.aio-max-nr=1048576) or lower iodepth × numjobs × clients",
        ),
        IoEngineKind::Libaio => {
            ("Linux AIO", "a kernel without CONFIG_AIO or a seccomp filter refuses io_setup; use ioengine psync")
        }
        IoEngineKind::Psync => ("psync", "this cannot happen"),
    };
    format!(
        "{what} is unavailable here ({e}): {who}, or allow the fallback to psync \
         (engine_fallback = true / --engine-fallback)"
    )
}

/// Waits for the moment to start; returns the agreed start instant (wall-clock ns),
/// if there is one. Called once the files are ready and the threads are waiting.
pub type Gate<'a> = dyn FnOnce() -> Result<Option<u64>, EngineError> + 'a;

struct ThreadOutcome {
    rec: Recorder,
    end: u64,
}

/// What every client checks before it touches a file: the workload, its clock, and
/// that its I/O engine can run here (else psync, when allowed, with the reason).
pub struct Checked {
    pub host: HostFacts,
    pub ioengine: IoEngineKind,
    pub note: Option<String>,
}

/// Checks the workload, the clock and the I/O engine (see [`Checked`]).
pub fn check(w: &Workload) -> Result<Checked, EngineError> {
    w.validate().map_err(EngineError::Invalid)?;
    let mut host = HostFacts::current();
    let resolution = clock::check(host.clock_source.as_deref())?;
    host.clock_resolution_ns = Some(resolution.resolution_ns());
    host.clock_getres_ns = Some(resolution.getres_ns);
    host.clock_read_ns = Some(resolution.read_ns);
    host.timer = resolution.timer.clone();
    let mut ioengine = w.ioengine;
    let mut note = None;
    if let Err(e) = ioengine.probe() {
        if !w.engine_fallback {
            return Err(EngineError::unavailable(ioengine)(e));
        }
        note = Some(format!("{ioengine} unavailable ({e}); fell back to psync"));
        ioengine = IoEngineKind::Psync;
    }
    Ok(Checked { host, ioengine, note })
}

/// Runs the workload as client `client_id` and returns its result.
pub fn run(w: &Workload, client_id: u32, gate: Box<Gate<'_>>) -> Result<ClientResult, EngineError> {
    run_checked(w, client_id, gate, check(w)?)
}

/// [`run`] of a workload [`check`] passed.
pub fn run_checked(
    w: &Workload,
    client_id: u32,
    gate: Box<Gate<'_>>,
    checked: Checked,
) -> Result<ClientResult, EngineError> {
    let Checked { mut host, ioengine: engine, note } = checked;

    let layout_stats = layout::prepare(w)?;
    let paths: Vec<PathBuf> = (0..w.numjobs).map(|t| w.file_path(t)).collect();
    let files = paths.iter().map(|p| layout::open_for_run(w, p)).collect::<Result<Vec<_>, _>>()?;
    for (f, p) in files.iter().zip(&paths) {
        if w.invalidate {
            layout::invalidate(f, p)?;
        }
        layout::advise(f, w.rw);
    }

    let clock = WallClock::now();
    let n = files.len();
    let barrier = Barrier::new(n + 1);
    let start: OnceLock<u64> = OnceLock::new();
    let go_seen: OnceLock<u64> = OnceLock::new();
    let abort = AtomicBool::new(false);

    let outcomes = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .zip(&paths)
            .enumerate()
            .map(|(t, (file, path))| {
                let (barrier, start, abort) = (&barrier, &start, &abort);
                s.spawn(move || -> Result<Option<ThreadOutcome>, EngineError> {
                    let histograms = Histograms::new();
                    barrier.wait();
                    barrier.wait();
                    if abort.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    let ramp_start = *start.get().expect("start is set before the second wait");
                    let now = mono_ns();
                    if ramp_start > now {
                        std::thread::sleep(Duration::from_nanos(ramp_start - now));
                    }
                    let mut schedule = Schedule::new(w, t as u32, ramp_start);
                    let mut rec =
                        Recorder::with_histograms(clock, w.log_interval.0, schedule.measure_start(), histograms);
                    let io = ThreadIo {
                        file,
                        path,
                        bs: w.bs.get() as usize,
                        iodepth: w.iodepth,
                        rng: SplitMix64::new(w.randseed.wrapping_add(t as u64 + 1)),
                    };
                    engine.run_thread(io, &mut schedule, &mut rec)?;
                    let sync_err = |source| EngineError::Io { what: "fsync".into(), path: path.clone(), source };
                    let mut end = rec.last_completion.unwrap_or_else(|| schedule.measure_start());
                    if w.end_fsync {
                        file.sync_all().map_err(sync_err)?;
                        end = mono_ns();
                    }
                    if w.fsync_on_close {
                        file.sync_all().map_err(sync_err)?;
                    }
                    Ok(Some(ThreadOutcome { rec, end }))
                })
            })
            .collect();

        barrier.wait();
        let gate_result = gate();
        let _ = go_seen.set(clock.wall_ns(mono_ns()));
        match &gate_result {
            Ok(at) => {
                let instant = match at {
                    Some(wall_ns) => clock.mono_at(*wall_ns),
                    None => mono_ns() + 1_000_000,
                };
                start.set(instant).expect("start is set once");
            }
            Err(_) => abort.store(true, Ordering::SeqCst),
        }
        barrier.wait();
        let joined: Vec<_> =
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect();
        gate_result.map(|at| (joined, at))
    })?;
    let (outcomes, go_instant) = outcomes;

    let measure_start = *start.get().expect("set") + w.ramp_time.0.as_nanos() as u64;
    let mut threads = Vec::with_capacity(n);
    let mut recs = Vec::with_capacity(n);
    for (t, outcome) in outcomes.into_iter().enumerate() {
        let Some(o) = outcome? else {
            unreachable!("threads only abort when the gate failed");
        };
        threads.push(ThreadStats {
            thread: t as u32,
            file: paths[t].display().to_string(),
            read: o.rec.read,
            write: o.rec.write,
            errors: 0,
            start_ns: clock.wall_ns(o.rec.first_submit.unwrap_or(measure_start)),
            end_ns: clock.wall_ns(o.end),
        });
        recs.push(o);
    }

    let start_ns = threads.iter().map(|t| t.start_ns).min().unwrap_or_else(|| clock.wall_ns(measure_start));
    let end_ns = threads.iter().map(|t| t.end_ns).max().unwrap_or(start_ns).max(start_ns);
    host.clock_source_end = crate::results::host::clock_source();
    // The measured phase is over: assembling the result (encoding its histograms)
    // yields the CPU to clients still starting — where more clients than cores start
    // together, the first to finish would otherwise delay the last. On a thread of
    // its own (Linux's nice is per thread), so the caller keeps its priority.
    let mut result = std::thread::scope(|s| {
        s.spawn(move || {
            let _ = rustix::process::nice(19);
            assemble(w, client_id, host, engine, note, layout_stats, start_ns, end_ns, threads, recs)
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    result.go_seen_ns = go_instant.and(go_seen.get().copied());
    result.go_instant_ns = go_instant;
    Ok(result)
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    w: &Workload,
    client_id: u32,
    host: HostFacts,
    engine: IoEngineKind,
    note: Option<String>,
    layout: crate::results::LayoutStats,
    start_ns: u64,
    end_ns: u64,
    threads: Vec<ThreadStats>,
    outcomes: Vec<ThreadOutcome>,
) -> ClientResult {
    let mut read_hist = new_latency_histogram();
    let mut write_hist = new_latency_histogram();
    let first_index = outcomes.first().map_or(0, |o| o.rec.first_index());
    let slots = outcomes.iter().map(|o| o.rec.bytes.len()).max().unwrap_or(0);
    let mut bytes = vec![0u64; slots];
    let mut ops = vec![0u64; slots];
    for o in &outcomes {
        let r = &o.rec;
        debug_assert_eq!(r.first_index(), first_index, "threads share the measured start");
        read_hist.add(&r.read_hist).expect("same bounds");
        write_hist.add(&r.write_hist).expect("same bounds");
        for (i, (b, o)) in r.bytes.iter().zip(&r.ops).enumerate() {
            bytes[i] += b;
            ops[i] += o;
        }
    }
    ClientResult::from_parts(ResultParts {
        client_id,
        host,
        workload: w.clone(),
        ioengine_used: engine,
        ioengine_note: note,
        measured_by: format!("iostudy {}", env!("CARGO_PKG_VERSION")),
        start_ns,
        end_ns,
        threads,
        read_hist,
        write_hist,
        intervals: IntervalSeries {
            interval_ns: w.log_interval.0.as_nanos() as u64,
            first_index,
            bytes,
            ops,
            shift_ns: 0,
        },
        layout,
    })
}
