//! iostudy: design, run and report I/O performance studies of isolation runtimes.
//!
//! The pipeline (see the project's DESIGN.md):
//!
//! ```text
//! study.toml ─► Study ─► Plan ─► Runner ─(per cell × repetition)─► Runtime ─► worker
//!                                   ▼
//!                              ResultStore ─► Aggregate ─► Reporters
//! ```
//!
//! The heart is [`engine`], a fio-like client that produces one [`results::ClientResult`];
//! `iostudy bench` runs it on the host, `iostudy worker` ([`worker`]) runs it from a job
//! file inside whatever isolation boundary a scenario uses. [`run`] dispatches the
//! command line; `main` only prints errors and maps exit codes.

pub mod cli;
pub mod engine;
pub mod report;
pub mod results;
pub mod worker;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{BenchArgs, Cli, Command};

/// Exit code: everything ran.
pub const EXIT_OK: u8 = 0;
/// Exit code: ran, but a check failed (a cell failed, a regression was found).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code: configuration or runtime error; nothing (more) could run.
pub const EXIT_ERROR: u8 = 2;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Bench(args) => bench(&args),
        Command::Worker(args) => {
            worker::run_job_file(&args.job)?;
            Ok(ExitCode::from(EXIT_OK))
        }
    }
}

fn bench(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let workload = args.workload();
    let result = engine::run(&workload, 0, Box::new(|| Ok(None)));
    if args.unlink {
        for t in 0..workload.numjobs {
            let _ = std::fs::remove_file(workload.file_path(t));
        }
    }
    let result = result?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &result).context("writing the result")?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", report::client::render(&result))?;
    }
    stdout.flush()?;
    Ok(ExitCode::from(EXIT_OK))
}
