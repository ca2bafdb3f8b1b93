//! One handler per subcommand: each turns parsed flags into calls on the library and
//! its outcome into output and an exit code. Nothing here is reused elsewhere.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{
    BenchArgs, BoundsArgs, CheckArgs, Cli, Command, CompareArgs, DemoArgs, ExportArgs, ExportFormat, GateArgs,
    HistoryCommand, ImageArgs, PlanArgs, ReportArgs, RunArgs, RuntimesArgs, Selection,
};
use crate::history::db::{Added, History};
use crate::history::{RunRecord, bounds as bounds_file, export as exports, gate};
use crate::report::model::Report;
use crate::results::cell::CellStatus;
use crate::results::store::Store;
use crate::runner::preflight::{Preflight, Results};
use crate::runner::{self, RunOptions};
use crate::study::Study;
use crate::study::plan::{Plan, PlanOptions};
use crate::{EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_OK, demo, report, runtime, safety, worker};

/// `print!` for results: the text is made safe for a terminal ([`crate::text::terminal`])
/// and a closed stdout (`| head`) is an error the caller returns, which `main` ends
/// quietly on, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        std::io::stdout().lock().write_all(crate::text::terminal(&text).as_bytes())?;
    }};
}

/// `println!` as [`out!`].
macro_rules! outln {
    () => { out!("\n") };
    ($($arg:tt)*) => {{ out!($($arg)*); out!("\n"); }};
}

/// `eprintln!` for notes and warnings, made safe for a terminal.
macro_rules! note {
    ($($arg:tt)*) => {{
        let text = format!($($arg)*);
        eprintln!("{}", crate::text::terminal(&text));
    }};
}

/// Runs the parsed command line.
pub fn dispatch(mut cli: Cli) -> anyhow::Result<ExitCode> {
    resolve_paths(&mut cli.command)?;
    match cli.command {
        Command::Plan(args) => plan(&args),
        Command::Run(args) => run_study(&args),
        Command::Demo(args) => demo(&args),
        Command::Report(args) => report(&args),
        Command::Compare(args) => compare(&args),
        Command::Check(args) => check(&args),
        Command::Bounds(args) => bounds(&args),
        Command::History(cmd) => history(&cmd),
        Command::Export(args) => export(&args),
        Command::Runtimes(args) => runtimes(&args),
        Command::Bench(args) => bench(&args),
        Command::Image(args) => image(&args),
        Command::Import(crate::cli::ImportCommand::Fio(args)) => import_fio(&args),
        Command::Worker(args) => {
            worker::run_job_file(&args.job)?;
            Ok(ExitCode::from(EXIT_OK))
        }
        Command::Agent => {
            runner::agent::serve()?;
            Ok(ExitCode::from(EXIT_OK))
        }
    }
}

/// Every path a user passed, made absolute once, here: relative paths are taken from
/// the working directory, and every later check walks the whole real path. Places
/// iostudy writes under are resolved through what exists ([`safety::resolve`]); files
/// it only reads are made absolute ([`safety::absolute`]).
fn resolve_paths(command: &mut Command) -> Result<(), safety::SafetyError> {
    let write = |p: &mut PathBuf| -> Result<(), safety::SafetyError> {
        *p = safety::resolve(p)?;
        Ok(())
    };
    let read = |p: &mut PathBuf| -> Result<(), safety::SafetyError> {
        *p = safety::absolute(p)?;
        Ok(())
    };
    match command {
        Command::Plan(a) => {
            a.study.iter_mut().try_for_each(read)?;
            a.from_fio.iter_mut().try_for_each(read)?;
            a.manifests.iter_mut().try_for_each(write)?;
        }
        Command::Run(a) => {
            read(&mut a.study)?;
            write(&mut a.output)?;
            a.history.iter_mut().try_for_each(write)?;
        }
        Command::Check(a) => {
            read(&mut a.results)?;
            a.bounds.iter_mut().try_for_each(read)?;
            a.db.iter_mut().try_for_each(write)?;
        }
        Command::Bounds(a) => {
            write(&mut a.db.db)?;
            write(&mut a.output)?;
        }
        Command::History(HistoryCommand::Add(a)) => {
            read(&mut a.results)?;
            write(&mut a.db.db)?;
        }
        Command::History(HistoryCommand::Ls(a)) => write(&mut a.db)?,
        Command::History(HistoryCommand::Report(a)) => {
            write(&mut a.db.db)?;
            write(&mut a.output)?;
        }
        Command::History(HistoryCommand::Metrics) => {}
        Command::Export(a) => {
            read(&mut a.results)?;
            a.output.iter_mut().try_for_each(write)?;
        }
        Command::Demo(a) => {
            let mut out = a.output.take().unwrap_or_else(demo::default_output);
            write(&mut out)?;
            a.output = Some(out);
        }
        Command::Report(a) => write(&mut a.results)?,
        Command::Compare(a) => {
            read(&mut a.a)?;
            read(&mut a.b)?;
            a.html.iter_mut().try_for_each(write)?;
        }
        Command::Bench(a) => read(&mut a.directory)?,
        Command::Image(a) => {
            write(&mut a.output)?;
            a.binary.iter_mut().try_for_each(read)?;
        }
        Command::Import(crate::cli::ImportCommand::Fio(a)) => {
            a.files.iter_mut().try_for_each(read)?;
            write(&mut a.output)?;
        }
        Command::Worker(a) => read(&mut a.job)?,
        Command::Runtimes(_) | Command::Agent => {}
    }
    Ok(())
}

/// Imports fio outputs as one cell, then rewrites the report.
fn import_fio(args: &crate::cli::ImportFioArgs) -> anyhow::Result<ExitCode> {
    let done = crate::fio::import::import(&crate::fio::import::Import {
        files: args.files.clone(),
        out: args.output.clone(),
        scenario: args.scenario.clone(),
        clients: args.clients,
        pattern: args.pattern,
    })
    .map_err(anyhow::Error::msg)?;
    outln!(
        "imported {} client(s), {} thread(s) as cell {} into {}",
        done.clients,
        done.threads,
        done.cell,
        args.output.display()
    );
    for n in &done.notes {
        outln!("  note: {n}");
    }
    report(&ReportArgs { results: args.output.clone() })
}

/// Writes the worker's OCI image and says how to load it.
fn image(args: &ImageArgs) -> anyhow::Result<ExitCode> {
    let binary = match &args.binary {
        Some(b) => {
            if !runtime::binary::is_static(b).with_context(|| format!("cannot read {}", b.display()))? {
                anyhow::bail!("{} is not statically linked: the image has no libraries for it", b.display());
            }
            b.clone()
        }
        None => runtime::binary::worker_binary().map_err(anyhow::Error::msg)?,
    };
    safety::check_output_file(&args.output)?;
    let image = crate::image::build(&binary, args.name.as_deref()).map_err(anyhow::Error::msg)?;
    safety::write_atomic(&args.output, &image.archive)?;
    let out = args.output.display();
    outln!("wrote {out}: {} ({}, {} bytes)", image.name, image.manifest_digest, image.archive.len());
    outln!("  containerd: ctr -n NAMESPACE images import {out}");
    outln!("  registry:   skopeo copy oci-archive:{out} docker://REGISTRY/iostudy:TAG");
    outln!("  podman:     podman load -i {out}");
    Ok(ExitCode::from(EXIT_OK))
}

/// This host's runtimes, then each `--node`'s, probed by its agent.
fn runtimes(args: &RuntimesArgs) -> anyhow::Result<ExitCode> {
    out!("{}", report::runtimes::render(&runtime::probe_all()));
    if args.nodes.is_empty() {
        return Ok(ExitCode::from(EXIT_OK));
    }
    let hosts = crate::hosts::ssh::SshNodes::probing(args.nodes.clone(), args.ssh_options.clone());
    let dir = crate::sys::state_base().join(format!("{}-nodes", std::process::id()));
    crate::safety::ensure_path(&dir)?;
    let mut code = EXIT_OK;
    for i in 0..args.nodes.len() {
        let node = match hosts.connect_one(i, &dir, &format!("{}-probe", std::process::id()), Path::new("/")) {
            Ok(n) => n,
            Err(e) => {
                outln!("\n{e}");
                code = EXIT_ERROR;
                continue;
            }
        };
        outln!("\nnode {} ({}): {}", node.dest, node.facts.hostname, node.describe());
        let mut probes = Vec::new();
        for kind in runtime::KINDS.iter().filter(|k| !k.hidden()) {
            for spec in kind.known() {
                match node.probe(spec.as_ref()) {
                    Ok(p) => probes.push(p),
                    Err(e) => probes.push(runtime::Probe::of(spec.as_ref()).fail(e.to_string())),
                }
            }
        }
        out!("{}", report::runtimes::render(&probes));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::from(code))
}

fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    if let Some(job) = &args.from_fio {
        return plan_from_fio(job, args.section.as_deref());
    }
    let study = Study::load(args.study.as_deref().expect("clap requires a study without --from-fio"))?;
    let plan = Plan::build(&study, &plan_options(&args.selection))?;
    let pre = Preflight::gather(&plan, None);
    out!("{}", report::plan::render(&plan, &pre.view()));
    if let Some(dir) = &args.manifests {
        write_manifests(&plan, dir)?;
    }
    Ok(ExitCode::from(if pre.blockers().is_empty() { EXIT_OK } else { EXIT_ERROR }))
}

/// `plan --manifests DIR`: what each cell hands a cluster (a Kubernetes Job), one
/// YAML file per cell, for review or `kubectl apply`.
fn write_manifests(plan: &Plan, dir: &Path) -> anyhow::Result<()> {
    let mut written = 0;
    for (index, cell) in plan.cells.iter().enumerate() {
        let m = runtime::ManifestCell {
            index,
            cell,
            study: &plan.study.name,
            barrier_timeout: plan.study.barrier_timeout,
            cell_timeout: plan.study.cell_timeout,
        };
        let Some(text) = plan.scenario(&cell.scenario).runtime.manifest(&m) else { continue };
        if written == 0 {
            safety::ensure_path(dir)?;
        }
        safety::write_atomic(&dir.join(format!("{}.yaml", cell.id)), text?.as_bytes())?;
        written += 1;
    }
    anyhow::ensure!(written > 0, "--manifests: no scenario of the study hands its cells to a cluster (a Job per cell)");
    outln!("\nmanifests: {written} Job(s) in {}", dir.display());
    Ok(())
}

/// A fio job file as iostudy workload options, and what was not taken.
fn plan_from_fio(job: &Path, section: Option<&str>) -> anyhow::Result<ExitCode> {
    let file = crate::fio::job::JobFile::load(job).map_err(anyhow::Error::msg)?;
    let (name, options) = file.options(section).map_err(|e| anyhow::anyhow!("{}: {e}", job.display()))?;
    let t = crate::fio::job::translate(&name, &options);
    let mut workload = t.workload.clone();
    let rw = workload.remove("rw");
    outln!("# fio job [{name}] of {} as a study's workload", job.display());
    outln!("# (or keep the job file: [workload] fio_job = \"{}:{name}\")", job.display());
    outln!("[workload]\n{}", toml::to_string(&workload).unwrap_or_default().trim_end());
    if let Some(rw) = rw {
        outln!("\n[matrix]\npatterns = [{rw}]   # fio's rw: a matrix axis in a study");
    }
    for d in &t.set_aside {
        outln!("# set aside: {d}");
    }
    for d in &t.unsupported {
        outln!("# NOT IMPLEMENTED: {d}");
    }
    if !t.unsupported.is_empty() {
        note!(
            "{} option(s) of the job are not implemented by iostudy (listed above): the study would not run what fio runs; remove them, or accept the difference with fio_ignore = [...]",
            t.unsupported.len()
        );
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    Ok(ExitCode::from(EXIT_OK))
}

fn report(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let model = Report::load(&args.results)?;
    for w in &model.unreadable {
        note!("warning: skipped {w}");
    }
    anyhow::ensure!(
        !model.groups.is_empty(),
        "{} holds no cell results: run a study into it first (iostudy run STUDY -o {})",
        args.results.display(),
        args.results.display()
    );
    let dir = report::write_all(&model, &args.results)?;
    out!("{}", report::terminal(&model));
    outln!("\nreport: {}", dir.join("report.html").display());
    Ok(ExitCode::from(EXIT_OK))
}

fn bench(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let workload = args.workload();
    let result = worker::run_workload(&workload, 0, Box::new(|| Ok(None)));
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

fn compare(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.threshold >= 0.0 && args.threshold < 1.0,
        "--threshold {} must be a fraction in [0, 1), e.g. 0.05 for 5 %",
        args.threshold
    );
    let a = Report::load(&args.a)?;
    let b = Report::load(&args.b)?;
    for w in a.unreadable.iter().chain(&b.unreadable) {
        note!("warning: skipped {w}");
    }
    let c =
        report::compare::compare(&a, &b, &args.a.display().to_string(), &args.b.display().to_string(), args.threshold);
    if c.changes.is_empty() && c.failed.is_empty() && c.unreadable.is_empty() {
        let why = match c.different_workloads.first() {
            Some((key, diff)) => format!(
                "; {} cell(s) match by scenario, pattern and clients but ran other workloads (e.g. {} {} c={}: {diff})",
                c.different_workloads.len(),
                key.scenario,
                key.mode(),
                key.clients
            ),
            None => String::new(),
        };
        anyhow::bail!(
            "{} and {} have no comparable cell (same scenario, pattern, clients, options and workload){why}",
            args.a.display(),
            args.b.display()
        );
    }
    if let Some(path) = &args.html {
        safety::check_output_file(path)?;
        let page = report::compare::html(&c).map_err(anyhow::Error::msg)?;
        safety::write_atomic(path, page.as_bytes())?;
    }
    out!("{}", report::compare::text(&c));
    Ok(ExitCode::from(if c.regressions() > 0 || c.gaps() > 0 { EXIT_CHECK_FAILED } else { EXIT_OK }))
}

fn plan_options(s: &Selection) -> PlanOptions {
    PlanOptions {
        scale: s.scale,
        scenarios: s.scenarios.clone(),
        patterns: s.patterns.clone(),
        clients: s.clients.clone(),
        mock: s.mock,
        attribute: s.attribute,
    }
}

fn run_study(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let study = Study::load(&args.study)?;
    let plan = Plan::build(&study, &plan_options(&args.selection))?;
    // Opened (made, migrated, or refused) before the first cell runs.
    let mut history = args.history.as_deref().map(History::open).transpose()?;
    let code = execute(&plan, &args.output, args.resume)?;
    if let Some(h) = history.as_mut()
        && code != ExitCode::from(130)
    {
        keep(h, &args.output)?;
    }
    Ok(code)
}

/// Adds a results directory's run to a history and says what it did.
fn keep(h: &mut History, results: &Path) -> anyhow::Result<()> {
    let run = run_record(results)?;
    match h.add(&run)? {
        Added::New(id) => {
            note!("history: kept as run {id} ({} cell(s)) in {}", run.cells.len(), h.path().display())
        }
        Added::Already(id) => note!("history: already kept as run {id} in {}; left as it was", h.path().display()),
    }
    Ok(())
}

/// A results directory as the history keeps it.
fn run_record(results: &Path) -> anyhow::Result<RunRecord> {
    let report = Report::load(results)?;
    for w in &report.unreadable {
        note!("warning: skipped {w}");
    }
    RunRecord::of(&report, &results.display().to_string()).map_err(anyhow::Error::msg)
}

fn rule(g: &GateArgs) -> anyhow::Result<gate::Rule> {
    anyhow::ensure!(g.last >= 1, "--last {} must be 1 or more", g.last);
    anyhow::ensure!(
        g.alpha > 0.0 && g.alpha < 1.0,
        "--alpha {} must be a fraction in (0, 1), e.g. 0.01 for 1 %",
        g.alpha
    );
    anyhow::ensure!(
        g.min_change >= 0.0 && g.min_change < 1.0,
        "--min-change {} must be a fraction in [0, 1), e.g. 0.03 for 3 %",
        g.min_change
    );
    let metrics = if g.metrics.is_empty() { vec!["bw".to_string(), "p50".to_string()] } else { g.metrics.clone() };
    for m in &metrics {
        anyhow::ensure!(
            crate::history::metric(m).is_some(),
            "--metric {m} is not a figure iostudy keeps; one of: {}",
            crate::history::metric_names()
        );
    }
    Ok(gate::Rule { metrics, alpha: g.alpha, min_change: g.min_change })
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let bounds = args.bounds.as_deref().map(bounds_file::load).transpose()?;
    let run = run_record(&args.results)?;
    let failed = if let Some(bounds) = bounds {
        let checks = bounds_file::check(&run, &bounds);
        out!("{}", bounds_file::text(&checks));
        checks.iter().filter(|c| !c.pass).count()
    } else {
        let db = args.db.as_deref().expect("clap requires --bounds or --db");
        anyhow::ensure!(db.exists(), "{} does not exist: keep runs in it first (iostudy history add)", db.display());
        let rule = rule(&args.gate)?;
        let h = History::open(db)?;
        let history = h.study_runs(&run.study_hash, &run.fingerprint, args.gate.last)?;
        let j = gate::judge(&run, &history, &rule);
        out!("{}", gate::text(&j, &rule));
        j.regressions()
    };
    Ok(ExitCode::from(if failed > 0 { EXIT_CHECK_FAILED } else { EXIT_OK }))
}

fn bounds(args: &BoundsArgs) -> anyhow::Result<ExitCode> {
    let db = &args.db.db;
    anyhow::ensure!(db.exists(), "{} does not exist: keep runs in it first (iostudy history add)", db.display());
    let rule = rule(&args.gate)?;
    let h = History::open(db)?;
    let rows = h.runs()?;
    let latest = rows.iter().rev().find(|r| args.study.as_ref().is_none_or(|s| *s == r.study_name)).ok_or_else(
        || match &args.study {
            Some(s) => anyhow::anyhow!("{} keeps no run of a study named {s}", db.display()),
            None => anyhow::anyhow!("{} keeps no run yet", db.display()),
        },
    )?;
    let runs = h.study_runs(&latest.study_hash, "", args.gate.last)?;
    let (entries, thin) = bounds_file::from_history(&runs, &rule);
    anyhow::ensure!(
        !entries.is_empty(),
        "no figure has {} or more runs of study {} in {}: keep more runs first",
        gate::MIN_RUNS,
        latest.study_name,
        db.display()
    );
    let text = bounds_file::write(&latest.study_name, runs.len(), &rule.describe(), &entries);
    safety::check_output_file(&args.output)?;
    safety::write_atomic(&args.output, text.as_bytes())?;
    outln!(
        "wrote {} bound(s) from the last {} run(s) of {} to {}",
        entries.len(),
        runs.len(),
        latest.study_name,
        args.output.display()
    );
    if thin > 0 {
        note!("note: {thin} figure(s) left out: fewer than {} runs", gate::MIN_RUNS);
    }
    Ok(ExitCode::from(EXIT_OK))
}

fn history(cmd: &HistoryCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HistoryCommand::Add(a) => {
            let mut h = History::open(&a.db.db)?;
            keep(&mut h, &a.results)?;
        }
        HistoryCommand::Ls(a) => {
            anyhow::ensure!(a.db.exists(), "{} does not exist: keep a run first (iostudy history add)", a.db.display());
            let h = History::open(&a.db)?;
            let mut rows = vec![vec![
                "run".to_string(),
                "started".into(),
                "study".into(),
                "cells".into(),
                "iostudy".into(),
                "results".into(),
            ]];
            for r in h.runs()? {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(r.started_ns);
                rows.push(vec![
                    r.id.to_string(),
                    humantime::format_rfc3339_seconds(t).to_string(),
                    format!("{} ({})", r.study_name, r.study_hash.chars().take(8).collect::<String>()),
                    r.cells.to_string(),
                    r.iostudy_version,
                    r.source,
                ]);
            }
            out!("{}", report::table::align(&rows, 3));
        }
        HistoryCommand::Report(a) => {
            anyhow::ensure!(a.db.db.exists(), "{} does not exist: keep a run first", a.db.db.display());
            let h = History::open(&a.db.db)?;
            let runs = h.all_runs()?;
            anyhow::ensure!(!runs.is_empty(), "{} keeps no run yet", a.db.db.display());
            safety::check_user_dir(&a.output)?;
            safety::ensure_dir(&a.output)?;
            let page = crate::history::trend::write(&runs, &a.output).map_err(anyhow::Error::msg)?;
            outln!("trend: {}", page.display());
        }
        HistoryCommand::Metrics => {
            let mut rows = vec![vec!["metric".to_string(), "unit".into(), "better".into(), "what".into()]];
            for m in crate::history::METRICS {
                rows.push(vec![m.name.into(), m.unit.into(), m.better.name().into(), m.what.into()]);
            }
            out!("{}", report::table::align(&rows, 4));
        }
    }
    Ok(ExitCode::from(EXIT_OK))
}

fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let run = run_record(&args.results)?;
    let text = match args.format {
        ExportFormat::Bmf => exports::bmf(&run) + "\n",
        ExportFormat::Openmetrics => exports::openmetrics(&run),
    };
    match &args.output {
        Some(path) => {
            safety::check_output_file(path)?;
            safety::write_atomic(path, text.as_bytes())?;
        }
        None => out!("{text}"),
    }
    Ok(ExitCode::from(EXIT_OK))
}

fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let target = demo::scratch_target().context("creating the demo's scratch directory")?;
    let (text, skipped) = demo::study_text(target.path(), args.mock);
    let output = args.output.clone().expect("resolved with a default in resolve_paths");
    let study = Study::parse(Path::new("demo.toml"), &text)?;
    let plan = Plan::build(&study, &PlanOptions { mock: args.mock, ..PlanOptions::default() })?;
    note!(
        "iostudy demo: {} cells ({}), results in {}",
        plan.cells.len(),
        plan.scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
        output.display()
    );
    for s in &skipped {
        note!("  left out {s}");
    }
    execute(&plan, &output, false)
}

/// Runs a plan, prints the summary, writes the report, maps the outcome to an exit code.
fn execute(plan: &Plan, output: &Path, resume: bool) -> anyhow::Result<ExitCode> {
    let pre = Preflight::gather(plan, Some(Results { dir: output, resume }));
    for w in &pre.warnings {
        note!("warning: {w}");
    }
    for n in &pre.notes {
        note!("note: {n}");
    }
    let cancel = runner::cancel_on_signals();
    let opts = RunOptions { output: output.to_path_buf(), resume, progress: std::io::stderr().is_terminal() };
    let outcome = runner::run(plan, &pre, &opts, cancel)?;
    for n in &outcome.notes {
        note!("note: {n}");
    }
    for w in &outcome.unreadable {
        note!("warning: skipped {w}");
    }
    // The report first: a closed stdout must not stop it from being written.
    let written = (!outcome.cells.is_empty()).then(|| {
        let mut all = outcome.cells.clone();
        let ids: HashSet<&str> = outcome.cells.iter().map(|c| c.cell.id.as_str()).collect();
        all.extend(outcome.others.iter().filter(|c| !ids.contains(c.cell.id.as_str())).cloned());
        let model = Report::from_store(&Store::open(output), &all, outcome.unreadable.clone());
        (report::write_all(&model, output), report::attribution::text(&model))
    });
    out!("{}", report::summary::render(&outcome.cells));
    let written = written.map(|(dir, attribution)| {
        out!("{attribution}");
        dir
    });
    outln!(
        "\n{} cell(s) run, {} skipped (already done), {} failed; results in {}",
        outcome.ran,
        outcome.skipped,
        outcome.failed,
        output.display()
    );
    match written {
        Some(Ok(dir)) => outln!("report: {}", dir.join("report.html").display()),
        Some(Err(e)) => {
            note!(
                "error: the report could not be written completely: {e:#}\n  every cell is saved: once that is fixed, write it with iostudy report {}",
                output.display()
            );
            return Ok(ExitCode::from(EXIT_ERROR));
        }
        None => {}
    }
    if outcome.interrupted {
        note!("interrupted: finished cells are saved; continue with --resume -o {}", output.display());
        return Ok(ExitCode::from(130));
    }
    let failed = outcome.cells.iter().any(|c| c.status == CellStatus::Failed);
    Ok(ExitCode::from(if failed { EXIT_CHECK_FAILED } else { EXIT_OK }))
}
