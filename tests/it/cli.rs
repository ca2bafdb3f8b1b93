//! The command line itself: help text (snapshot) and exit codes of misuse.

use crate::util::*;

fn help_lists_the_commands_and_hides_internals() {
    let o = iostudy(&["-h"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        "\
Design, run and report I/O performance studies of isolation runtimes

Usage: iostudy <COMMAND>

Commands:
  plan      Show what a study would run: cells, runtimes, disk footprint, duration, warnings
  run       Run a study: every cell's clients in their runtime, started together
  report    Turn a results directory into charts, tables and an HTML report
  compare   Compare two results directories cell by cell (exit 1 on a regression)
  check     Hold a run to bounds (checkmetrics' meaning) or to its history (exit 1 on a violation)
  bounds    Write a bounds file from the history: each figure's recent mean ± its spread
  history   Keep runs in a history database (SQLite), list them, draw their trends
  export    Write a run's figures for other dashboards: bencher's BMF JSON or OpenMetrics text
  demo      Run a small built-in study with every runtime this host can run
  runtimes  List the runtimes iostudy knows, whether they are usable here, and the fix if not
  bench     Run one fio-like client on this host and print its figures
  image     Write an OCI image (oci-archive tar) whose entrypoint is `iostudy worker`
  import    Turn another tool's results into a results directory (`import fio …`)
  help      Print this message or the help of the given subcommand(s)

Options:
  -h, --help     Print help (see more with '--help')
  -V, --version  Print version
"
    );
    let run = stdout(&iostudy(&["run", "--help"]));
    for flag in
        ["--output <RESULTS_DIR>", "--resume", "--scenario <NAME>", "--pattern <RW>", "--clients <N>", "--scale <F>"]
    {
        assert!(run.contains(flag), "run --help lacks {flag}:\n{run}");
    }
    assert!(!run.contains("--mock"), "test-only flags stay hidden");
}

fn misuse_exits_2_with_a_message() {
    let o = iostudy(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("required"), "{}", stderr(&o));
    let o = iostudy(&["plan", "/nonexistent/study.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim(),
        "Error: cannot read study file /nonexistent/study.toml: No such file or directory (os error 2)"
    );
}

crate::trials![help_lists_the_commands_and_hides_internals, misuse_exits_2_with_a_message,];
