//! The command line: clap derive, one subcommand per job of the tool.
//!
//! Flags of `bench` are named like fio's (`--rw`, `--bs`, `--numjobs`…) and accept
//! fio's `--flag=value` spelling, so a fio command line translates one to one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::{Bytes, IoEngineKind, Pattern, Span, Workload};
use crate::workload::Engine;

#[derive(Debug, Parser)]
#[command(
    name = "iostudy",
    version,
    about = "Design, run and report I/O performance studies of isolation runtimes",
    long_about = "iostudy measures what isolation (runC, crun, gVisor, micro-VMs) costs I/O-heavy \
                  work: a fio-like engine, run as synchronized clients inside each runtime."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a study would run: cells, runtimes, disk footprint, duration, warnings.
    Plan(PlanArgs),
    /// Run a study: every cell's clients in their runtime, started together.
    Run(RunArgs),
    /// Turn a results directory into charts, tables and an HTML report.
    Report(ReportArgs),
    /// Compare two results directories cell by cell (exit 1 on a regression).
    Compare(CompareArgs),
    /// Hold a run to bounds (checkmetrics' meaning) or to its history (exit 1 on a violation).
    Check(CheckArgs),
    /// Write a bounds file from the history: each figure's recent mean ± its spread.
    Bounds(BoundsArgs),
    /// Keep runs in a history database (SQLite), list them, draw their trends.
    #[command(subcommand)]
    History(HistoryCommand),
    /// Write a run's figures for other dashboards: bencher's BMF JSON or OpenMetrics text.
    Export(ExportArgs),
    /// Run a small built-in study with every runtime this host can run.
    Demo(DemoArgs),
    /// List the runtimes iostudy knows, whether they are usable here, and the fix if not.
    Runtimes(RuntimesArgs),
    /// Run one fio-like client on this host and print its figures.
    Bench(BenchArgs),
    /// Write an OCI image (oci-archive tar) whose entrypoint is `iostudy worker`.
    Image(ImageArgs),
    /// Turn another tool's results into a results directory (`import fio …`).
    #[command(subcommand)]
    Import(ImportCommand),
    /// Run a job file as a study client (used inside containers and VMs).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Serve a controller on its ssh session (used on study nodes).
    #[command(hide = true)]
    Agent,
}

/// The history database a command reads or writes.
#[derive(Debug, Args)]
pub struct DbArg {
    /// The history: an SQLite file iostudy made (created by `history add` when missing).
    #[arg(long, value_name = "FILE", default_value = "iostudy-history.db")]
    pub db: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub enum HistoryCommand {
    /// Keep a results directory's run (a run already kept is left as it is).
    Add(HistoryAddArgs),
    /// List the runs kept.
    Ls(DbArg),
    /// Write trend.html (and a PNG per cell): each cell's figures over the runs, the
    /// runs marked where the environment changed.
    Report(HistoryReportArgs),
    /// List the figures a history keeps, bounds check and exports name.
    Metrics,
}

#[derive(Debug, Args)]
pub struct HistoryAddArgs {
    /// A directory written by `iostudy run`.
    pub results: PathBuf,
    #[command(flatten)]
    pub db: DbArg,
}

#[derive(Debug, Args)]
pub struct HistoryReportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Directory for trend.html and its PNGs (made if missing).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
}

/// What the history gate judges, and how strictly.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// Compare with the last N runs of the same study.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub last: usize,
    /// A figure to judge (repeatable) [default: bw, p50].
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// Smallest relative change that can fail (0.03 = 3 %).
    #[arg(long, default_value_t = 0.03)]
    pub min_change: f64,
    /// Chance that a run whose figures did not change is failed anyway.
    #[arg(long, default_value_t = 0.01)]
    pub alpha: f64,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A directory written by `iostudy run`.
    pub results: PathBuf,
    /// Hold it to this bounds file (TOML, checkmetrics' meaning).
    #[arg(long, value_name = "FILE", conflicts_with = "db", required_unless_present = "db")]
    pub bounds: Option<PathBuf>,
    /// Hold it to the runs kept in this history instead.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    #[command(flatten)]
    pub gate: GateArgs,
}

#[derive(Debug, Args)]
pub struct BoundsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The study, by name [default: the latest run's].
    #[arg(long)]
    pub study: Option<String>,
    #[command(flatten)]
    pub gate: GateArgs,
    /// Where to write the bounds file.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// Bencher Metric Format (JSON), for `bencher run --adapter json`.
    Bmf,
    /// OpenMetrics text, for a Prometheus textfile collector or a Pushgateway.
    Openmetrics,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A directory written by `iostudy run`.
    pub results: PathBuf,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// fio `--output-format=json+` files: one per client (or a client/server output with
    /// a client per host), each job a thread; one cell per import.
    Fio(ImportFioArgs),
}

#[derive(Debug, Args)]
pub struct ImportFioArgs {
    /// fio json+ outputs.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The results directory (new, or one an earlier import made: cells are added).
    #[arg(short, long)]
    pub output: PathBuf,
    /// The scenario these runs measured (e.g. bare, runc, kata).
    #[arg(long, default_value = "fio")]
    pub scenario: String,
    /// The cell's client count (checked against the clients found).
    #[arg(long)]
    pub clients: Option<u32>,
    /// The cell's pattern (checked against the jobs' rw, taken when they name none).
    #[arg(long)]
    pub pattern: Option<Pattern>,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Where to write the image: an OCI image layout packed as one tar.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The image's full name [default: localhost/iostudy:VERSION-DIGEST, from the binary].
    #[arg(long)]
    pub name: Option<String>,
    /// The static iostudy to put in it [default: this one].
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

#[derive(Debug, Args, Default)]
pub struct RuntimesArgs {
    /// Also probe this ssh node (repeatable), as a study's [hosts] would.
    #[arg(long = "node", value_name = "DEST")]
    pub nodes: Vec<String>,
    /// Extra ssh argument for the nodes (repeatable), e.g. --ssh-option=-F --ssh-option=cfg.
    #[arg(long = "ssh-option", value_name = "ARG", allow_hyphen_values = true)]
    pub ssh_options: Vec<String>,
}

/// fio-style options of one client.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Directory holding the data files (one per thread).
    #[arg(long)]
    pub directory: PathBuf,
    /// Access pattern: read, write, randread, randwrite, readwrite, randrw.
    #[arg(long, default_value = "read")]
    pub rw: Pattern,
    /// Block size of each I/O (fio units: 4k, 64K = 65536, 1m).
    #[arg(long, default_value = "4k")]
    pub bs: Bytes,
    /// Size of each thread's file (fio units).
    #[arg(long)]
    pub size: Bytes,
    /// Threads, each on its own file.
    #[arg(long, default_value_t = 1)]
    pub numjobs: u32,
    /// I/O engine: psync, io_uring or libaio.
    #[arg(long, default_value = "psync")]
    pub ioengine: IoEngineKind,
    /// I/Os in flight per thread (io_uring, libaio).
    #[arg(long, default_value_t = 1)]
    pub iodepth: u32,
    /// What drives the I/O: iostudy's engine, or the real fio (its json+ converted).
    #[arg(long, default_value = "iostudy")]
    pub engine: Engine,
    /// O_DIRECT instead of buffered I/O (`--direct` or `--direct=1`).
    #[arg(long, num_args = 0..=1, default_missing_value = "1", default_value = "0", value_parser = parse_flag)]
    pub direct: bool,
    /// Run for this long, pass after pass (e.g. 10s); without it, one full pass.
    #[arg(long)]
    pub runtime: Option<Span>,
    /// Warm-up before measuring, excluded from every figure.
    #[arg(long, default_value = "0s")]
    pub ramp_time: Span,
    /// Read share of readwrite/randrw, in percent.
    #[arg(long, default_value_t = 50)]
    pub rwmixread: u32,
    /// Seed of random offsets and write data.
    #[arg(long)]
    pub randseed: Option<u64>,
    /// fsync each file at the end of the measured phase (counted).
    #[arg(long, num_args = 0..=1, default_missing_value = "1", default_value = "0", value_parser = parse_flag)]
    pub end_fsync: bool,
    /// fsync each file when closing it (not counted).
    #[arg(long, num_args = 0..=1, default_missing_value = "1", default_value = "0", value_parser = parse_flag)]
    pub fsync_on_close: bool,
    /// Drop the files' cached pages before measuring (`--invalidate=0` to keep them).
    #[arg(long, num_args = 0..=1, default_missing_value = "1", default_value = "1", value_parser = parse_flag)]
    pub invalidate: bool,
    /// Fall back to psync when the async engine is refused instead of failing.
    #[arg(long, alias = "uring-fallback")]
    pub engine_fallback: bool,
    /// Width of the bandwidth series intervals.
    #[arg(long, default_value = "1s")]
    pub log_interval: Span,
    /// Delete the data files afterwards (fio's unlink).
    #[arg(long)]
    pub unlink: bool,
    /// Print the full result document (JSON) instead of the summary.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    pub fn workload(&self) -> Workload {
        let mut w = Workload::new(self.rw, self.bs.get(), self.size.get(), &self.directory);
        w.numjobs = self.numjobs;
        w.ioengine = self.ioengine;
        w.engine = self.engine;
        w.iodepth = self.iodepth;
        w.direct = self.direct;
        w.runtime = self.runtime;
        w.ramp_time = self.ramp_time;
        w.rwmixread = self.rwmixread;
        if let Some(seed) = self.randseed {
            w.randseed = seed;
        }
        w.end_fsync = self.end_fsync;
        w.fsync_on_close = self.fsync_on_close;
        w.invalidate = self.invalidate;
        w.engine_fallback = self.engine_fallback;
        w.log_interval = self.log_interval;
        w
    }
}

/// Which part of a study to run, and at what scale.
#[derive(Debug, Args, Clone, Default)]
pub struct Selection {
    /// Only this scenario (repeatable).
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Only this pattern (repeatable).
    #[arg(long = "pattern", value_name = "RW")]
    pub patterns: Vec<Pattern>,
    /// Only this client count (repeatable).
    #[arg(long = "clients", value_name = "N")]
    pub clients: Vec<u32>,
    /// Shrink sizes, runtimes and ramps by this factor (0 < F <= 1) for a rehearsal.
    #[arg(long, value_name = "F")]
    pub scale: Option<f64>,
    /// Replace every runtime with synthetic clients (tests only).
    #[arg(long, hide = true)]
    pub mock: bool,
    /// Attribute each cell's time and CPU to the layers it crosses (every cell runs
    /// traced and untraced; root, tracefs and bpftrace), as `[study] attribute = true`.
    #[arg(long)]
    pub attribute: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The study file (TOML).
    #[arg(required_unless_present = "from_fio")]
    pub study: Option<PathBuf>,
    /// Instead of a study: show a fio job file as iostudy workload options, with every
    /// option set aside or not implemented (exit 2 when some are not implemented).
    #[arg(long, value_name = "JOB_FILE", conflicts_with = "study")]
    pub from_fio: Option<PathBuf>,
    /// The job section to take from --from-fio (needed when it has several).
    #[arg(long, requires = "from_fio")]
    pub section: Option<String>,
    /// Also write each Kubernetes cell's Job as YAML into DIR, one file per cell, for
    /// review or `kubectl apply`.
    #[arg(long, value_name = "DIR", conflicts_with = "from_fio")]
    pub manifests: Option<PathBuf>,
    #[command(flatten)]
    pub selection: Selection,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The study file (TOML).
    pub study: PathBuf,
    /// Directory for the results (one file per cell).
    #[arg(short, long, value_name = "RESULTS_DIR")]
    pub output: PathBuf,
    /// Continue an interrupted run in RESULTS_DIR: finished cells are kept, the rest run.
    #[arg(long)]
    pub resume: bool,
    /// Keep the run in this history database when it finishes (`history add`).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    #[command(flatten)]
    pub selection: Selection,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A directory written by `iostudy run`.
    pub results: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The reference results directory.
    pub a: PathBuf,
    /// The results directory compared to it.
    pub b: PathBuf,
    /// Smallest relative change that counts (0.05 = 5 %).
    #[arg(long, default_value_t = 0.05)]
    pub threshold: f64,
    /// Also write the comparison as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the results (default: ./iostudy-demo-<time>).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Replace every runtime with synthetic clients (tests only).
    #[arg(long, hide = true)]
    pub mock: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The job file written by the controller.
    #[arg(long)]
    pub job: PathBuf,
}

fn parse_flag(s: &str) -> Result<bool, String> {
    match s {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected 1 or 0 (true/false), got `{s}`")),
    }
}
