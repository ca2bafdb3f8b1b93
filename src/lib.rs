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
pub mod demo;
pub mod engine;
pub mod guest;
pub mod report;
pub mod results;
pub mod runner;
pub mod runtime;
pub mod study;
pub mod worker;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;

use std::io::IsTerminal;
use std::path::Path;

use crate::cli::{BenchArgs, Cli, Command, DemoArgs, RunArgs, Selection};
use crate::runner::RunOptions;
use crate::study::Study;
use crate::study::plan::{Plan, PlanOptions};

/// Exit code: everything ran.
pub const EXIT_OK: u8 = 0;
/// Exit code: ran, but a check failed (a cell failed, a regression was found).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code: configuration or runtime error; nothing (more) could run.
pub const EXIT_ERROR: u8 = 2;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plan(args) => {
            let study = Study::load(&args.study)?;
            let plan = Plan::build(&study, &plan_options(&args.selection))?;
            print!("{}", plan.render());
            Ok(ExitCode::from(EXIT_OK))
        }
        Command::Run(args) => run_study(&args),
        Command::Demo(args) => demo(&args),
        Command::Report(args) => {
            let model = report::model::Report::load(&args.results)?;
            anyhow::ensure!(
                !model.groups.is_empty(),
                "{} holds no cell results: run a study into it first (iostudy run STUDY -o {})",
                args.results.display(),
                args.results.display()
            );
            let dir = report::write_all(&model, &args.results)?;
            print!("{}", report::terminal(&model));
            println!("\nreport: {}", dir.join("report.html").display());
            Ok(ExitCode::from(EXIT_OK))
        }
        Command::Compare(args) => compare(&args),
        Command::Runtimes => {
            print!("{}", report::runtimes::render(&runtime::probe_all()));
            Ok(ExitCode::from(EXIT_OK))
        }
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

fn compare(args: &cli::CompareArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.threshold >= 0.0 && args.threshold < 1.0,
        "--threshold {} must be a fraction in [0, 1), e.g. 0.05 for 5 %",
        args.threshold
    );
    let a = report::model::Report::load(&args.a)?;
    let b = report::model::Report::load(&args.b)?;
    let c =
        report::compare::compare(&a, &b, &args.a.display().to_string(), &args.b.display().to_string(), args.threshold);
    anyhow::ensure!(
        !c.changes.is_empty(),
        "{} and {} have no cell in common (same scenario, pattern, clients and options)",
        args.a.display(),
        args.b.display()
    );
    print!("{}", report::compare::text(&c));
    if let Some(path) = &args.html {
        let page = report::compare::html(&c).map_err(anyhow::Error::msg)?;
        results::write_atomic(path, page.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::from(if c.regressions() > 0 { EXIT_CHECK_FAILED } else { EXIT_OK }))
}

fn plan_options(s: &Selection) -> PlanOptions {
    PlanOptions {
        scale: s.scale,
        scenarios: s.scenarios.clone(),
        patterns: s.patterns.clone(),
        clients: s.clients.clone(),
        mock: s.mock,
    }
}

fn run_study(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let study = Study::load(&args.study)?;
    let plan = Plan::build(&study, &plan_options(&args.selection))?;
    execute(&plan, &args.output, args.resume)
}

fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let target = demo::scratch_target().context("creating the demo's scratch directory")?;
    let (text, skipped) = demo::study_text(target.path(), args.mock);
    let output = args.output.clone().unwrap_or_else(demo::default_output);
    let study = Study::parse(Path::new("demo.toml"), &text)?;
    let plan = Plan::build(&study, &PlanOptions { mock: args.mock, ..PlanOptions::default() })?;
    eprintln!(
        "iostudy demo: {} cells ({}), results in {}",
        plan.cells.len(),
        plan.scenarios.iter().map(|s| s.scenario.name.as_str()).collect::<Vec<_>>().join(", "),
        output.display()
    );
    for s in &skipped {
        eprintln!("  left out {s}");
    }
    execute(&plan, &output, false)
}

/// Runs a plan, prints the summary, and maps the outcome to an exit code.
fn execute(plan: &Plan, output: &Path, resume: bool) -> anyhow::Result<ExitCode> {
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    let cancel = runner::cancel_on_signals();
    let opts = RunOptions { output: output.to_path_buf(), resume, progress: std::io::stderr().is_terminal() };
    let outcome = runner::run(plan, &opts, cancel)?;
    for n in &outcome.notes {
        eprintln!("note: {n}");
    }
    let ids: std::collections::HashSet<&str> = plan.cells.iter().map(|c| c.id.as_str()).collect();
    let order: std::collections::HashMap<&str, usize> =
        plan.cells.iter().enumerate().map(|(i, c)| (c.id.as_str(), i)).collect();
    let mut cells: Vec<_> = outcome.cells.iter().filter(|c| ids.contains(c.cell.id.as_str())).cloned().collect();
    cells.sort_by_key(|c| order[c.cell.id.as_str()]);
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{}", report::summary::render(&cells))?;
    writeln!(
        stdout,
        "\n{} cell(s) run, {} skipped (already done), {} failed; results in {}",
        outcome.ran,
        outcome.skipped,
        outcome.failed,
        output.display()
    )?;
    if !cells.is_empty() {
        let model = report::model::Report::load_with(output, &outcome.cells);
        match report::write_all(&model, output) {
            Ok(dir) => writeln!(stdout, "report: {}", dir.join("report.html").display())?,
            Err(e) => eprintln!("warning: the report could not be written: {e:#}"),
        }
    }
    stdout.flush()?;
    if outcome.interrupted {
        eprintln!("interrupted: finished cells are saved; continue with --resume -o {}", output.display());
        return Ok(ExitCode::from(130));
    }
    let failed = cells.iter().any(|c| c.status == results::store::CellStatus::Failed);
    Ok(ExitCode::from(if failed { EXIT_CHECK_FAILED } else { EXIT_OK }))
}
