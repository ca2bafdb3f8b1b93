//! `iostudy plan`, `run`, `demo` and `runtimes`, end to end: real runtimes, real
//! faults (a client killed, a client stopped), Ctrl-C and `--resume`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use iostudy::results::cell::{CellResult, CellStatus};

use crate::util::*;

/// A study file in `dir`, targeting `dir/target`.
fn study(dir: &Path, scenarios: &str, extra_workload: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[study]
name = "it"
target = "{target}"
{extra}

[workload]
bs = "64K"
size = "4M"
numjobs = 2
{extra_workload}

[matrix]
scenarios = [{scenarios}]
clients = [2]
patterns = ["randread", "write"]
"#,
        target = dir.join("target").display()
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn cells(results: &Path) -> Vec<CellResult> {
    stored_cells(results)
}

fn plan_shows_the_seed_study() {
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/stackhpc-kata-2019.toml");
    let o = iostudy(&["plan", seed]);
    // Full size it needs 8 TiB: plan shows it all, and says it cannot run here as is.
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("not runnable here as is:"), "{out}");
    for needle in [
        "study: stackhpc-kata-2019",
        "cells: 36 (3 scenario(s) × 3 client count(s) × 4 pattern(s) × 1 repetition(s))",
        "bs=64KiB size=32GiB numjobs=4 ioengine=psync iodepth=1 direct=0 one pass",
        "disk footprint: 8TiB on the target",
        "estimated duration:",
        "    36  Kata  randwrite  clients=64  rep=1  on node1×32 node2×32",
        "hosts: node1, node2 (spread: client k on node k mod n; the target is one shared filesystem)",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    // Kata 1.x: usable where it is installed, otherwise named with where to get it.
    let kata = if have("kata-runtime") {
        "oci/kata-runtime   ok"
    } else {
        "kata-runtime not found: Kata Containers 1.x is not packaged for Debian"
    };
    assert!(out.contains(kata), "missing {kata:?} in\n{out}");
}

/// Clients that cannot all start within a small part of a cell's runtime on this
/// host's CPUs are named at `plan`, with the runtime that would do.
fn plan_warns_of_a_cell_too_short_for_its_clients() {
    let dir = scratch();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    // 200 ms of wake-up (0.5 ms a client, per CPU) in a 1 s cell.
    let clients = 400 * cpus;
    let s = dir.path().join("s.toml");
    std::fs::write(
        &s,
        format!(
            "[study]\nname = \"short\"\ntarget = {:?}\n[workload]\nbs = \"4K\"\nsize = \"64K\"\nruntime = \"1s\"\n\
             [matrix]\nscenarios = [\"bare\"]\nclients = [1, {clients}]\npatterns = [\"read\"]\n",
            dir.path().join("target")
        ),
    )
    .unwrap();
    let o = iostudy(&["plan", s.to_str().unwrap()]);
    let out = stdout(&o);
    let expected = format!(
        "cell bare.read.c{clients}.r1: {clients} clients on a machine of {cpus} CPU(s) take about 200 ms to all start (~0.5 ms of CPU each), more than 5 % of its 1.0 s: lengthen runtime to at least 4 s"
    );
    assert!(out.contains(&expected), "{expected}\n{out}\n{}", stderr(&o));
    assert!(!out.contains("bare.read.c1.r1:"), "the 1-client cell is not judged: {out}");
}

fn mock_study_runs_and_resumes() {
    let dir = scratch();
    let s = study(dir.path(), "\"bare\", \"runc\"", "runtime = \"1s\"", "");
    let out = dir.path().join("results");
    let o = iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap(), "--mock"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("4 cell(s) run, 0 skipped (already done), 0 failed"), "{text}");
    // Snapshot: mock figures are deterministic.
    let table = text.split("\n\n").next().unwrap();
    assert_eq!(
        table,
        "scenario  pattern   clients  rep  bw (window)  bw (fio sum)  p50 µs  p99 µs\n\
         bare      randread  2        1       400MiB/s      400MiB/s    5046    9912\n\
         runc      randread  2        1       400MiB/s      400MiB/s    5046    9912\n\
         bare      write     2        1       400MiB/s      400MiB/s    5046    9912\n\
         runc      write     2        1       400MiB/s      400MiB/s    5046    9912"
    );
    let all = cells(&out);
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|c| c.status == CellStatus::Ok && c.clients.len() == 2));
    assert_eq!(std::fs::read_to_string(out.join("study.toml")).unwrap(), std::fs::read_to_string(&s).unwrap());
    // The run ends with its report.
    for f in
        ["report.html", "table.md", "table.csv", "bandwidth.svg", "bandwidth.png", "latency-cdf.svg", "latency-cdf.png"]
    {
        assert!(out.join("report").join(f).exists(), "report/{f} written by run");
    }
    assert!(text.contains(&format!("report: {}", out.join("report/report.html").display())), "{text}");

    // The same directory again: refused without --resume, nothing to do with it.
    let again = iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap(), "--mock"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("already holds results of a run: add --resume"), "{}", stderr(&again));
    let resumed = iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap(), "--mock", "--resume"]);
    assert!(resumed.status.success());
    assert!(stdout(&resumed).contains("0 cell(s) run, 4 skipped (already done), 0 failed"));
    // A resume at another scale, or with other filters, would mix cells in one report.
    let out_s = out.to_str().unwrap();
    let scaled = iostudy(&["run", s.to_str().unwrap(), "-o", out_s, "--mock", "--resume", "--scale", "0.5"]);
    assert_eq!(scaled.status.code(), Some(2));
    assert!(
        stderr(&scaled).contains("was run with no --scale, and this resume asks --scale 0.5"),
        "{}",
        stderr(&scaled)
    );
    let filtered = iostudy(&["run", s.to_str().unwrap(), "-o", out_s, "--mock", "--resume", "--scenario", "bare"]);
    assert_eq!(filtered.status.code(), Some(2));
    assert!(
        stderr(&filtered).contains("was run with no filters, and this resume asks --scenario bare"),
        "{}",
        stderr(&filtered)
    );
    // A changed study cannot resume these results.
    std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("4M", "8M")).unwrap();
    let changed = iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap(), "--mock", "--resume"]);
    assert_eq!(changed.status.code(), Some(2));
    assert!(stderr(&changed).contains("was written by a different study file"));
}

fn study_file_errors_are_located() {
    let dir = scratch();
    let s = study(dir.path(), "\"bare\", \"kata\"", "", "");
    let o = iostudy(&["plan", s.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "{}:13:22: scenario `kata` is not defined (hint: add a [scenarios.kata] table",
            s.display()
        )),
        "{e}"
    );
}

fn missing_runtime_fails_before_the_first_cell() {
    let dir = scratch();
    let s = study(
        dir.path(),
        "\"bare\", \"mine\"",
        "",
        "\n[scenarios.mine]\nruntime = \"oci\"\noci_runtime = \"/nonexistent/runc\"\n",
    )
    .to_path_buf();
    // The scenarios table must come after the matrix; rewrite in order.
    let text = std::fs::read_to_string(&s).unwrap();
    let (head, table) = text.split_once("\n[scenarios.mine]").unwrap();
    let (table, rest) = table.split_once("\n\n").unwrap();
    std::fs::write(&s, format!("{head}{rest}\n[scenarios.mine]{table}\n")).unwrap();
    let out = dir.path().join("results");
    let o = iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("scenario `mine` cannot run here: /nonexistent/runc not found: install /nonexistent/runc or give oci_runtime its full path"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "nothing written before the first cell");
}

fn real_study_through_bare_runc_crun_and_gvisor() -> Needs {
    need(is_root(), "root (containers)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")?;
    need(have("runc") && have("crun") && have("runsc"), "runc, crun and runsc (apt-get install runc crun runsc)")?;
    let dir = scratch();
    let s = study(dir.path(), "\"bare\", \"runc\", \"crun\", \"gvisor\"", "runtime = \"1s\"", "keep_files = false");
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &[]);
    assert_eq!(code, Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let all = cells(&out);
    assert_eq!(all.len(), 8);
    for c in &all {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.id, c.failure);
        assert_eq!(c.clients.len(), 2, "{}: every client's result", c.cell.id);
        let go = c.start_ns.unwrap();
        let starts: Vec<u64> = c.clients.iter().map(|r| r.start_ns).collect();
        assert!(starts.iter().all(|&s| s >= go), "{}: no client starts before go", c.cell.id);
        // The barrier held: every client had go before the instant it named.
        for r in &c.clients {
            assert_eq!(r.go_instant_ns, Some(go), "{} client {}", c.cell.id, r.client_id);
            assert!(r.go_seen_ns.unwrap() <= go, "{} client {}: go arrived late", c.cell.id, r.client_id);
        }
        // Native clients then start together; gVisor's sandboxes (ptrace) on 2 cores
        // may wake up to ~0.5 s late, which the common window takes out.
        if c.cell.scenario != "gvisor" {
            let spread = starts.iter().max().unwrap() - starts.iter().min().unwrap();
            assert!(spread < 250_000_000, "{}: clients started together (spread {spread} ns)", c.cell.id);
        }
        assert!(c.clients.iter().all(|r| r.read.bytes + r.write.bytes > 0));
    }
    // Every client checked its clock; every cell counted its host CPU.
    for c in &all {
        for r in &c.clients {
            assert!(r.host.clock_resolution_ns.is_some_and(|ns| ns <= 1_000), "{}: {:?}", c.cell.id, r.host);
        }
    }
    let csv = std::fs::read_to_string(out.join("report/table.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for row in csv.lines().skip(1) {
        let f: Vec<&str> = row.split(',').collect();
        let cpu: f64 = f[at("host_cpu_s_per_gib")].parse().unwrap_or_else(|_| panic!("host CPU of {row}"));
        assert!(cpu > 0.0, "{row}");
        assert!(f[at("bw_last_done_bytes_per_s")].parse::<f64>().unwrap() > 0.0, "{row}");
        assert!(!f[at("client_bw_cv")].is_empty(), "{row}");
    }
    assert!(out.join("report/bandwidth-timeline.svg").exists());
    // Inside gVisor the kernel is gVisor's: the result says so.
    let gv = all.iter().find(|c| c.cell.scenario == "gvisor").unwrap();
    assert_ne!(
        gv.clients[0].host.kernel,
        all.iter().find(|c| c.cell.scenario == "bare").unwrap().clients[0].host.kernel
    );
    assert_nothing_left(dir.path(), pid);
    assert!(!dir.path().join("target/iostudy-data").exists(), "keep_files = false removes the data files");
    let runc_list = Command::new("runc").arg("list").arg("-q").output().unwrap();
    assert!(!String::from_utf8_lossy(&runc_list.stdout).contains("iostudy-"), "runc list is clean");
    let runsc_list = Command::new("runsc").args(["--network=none", "list", "-quiet"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&runsc_list.stdout).contains("iostudy-"), "runsc list is clean");
    Ok(())
}

/// Where io_uring is refused, libaio is the async engine left: it runs at depth in
/// runc and gVisor alike.
fn libaio_runs_at_depth_in_containers_and_gvisor() -> Needs {
    need(is_root(), "root (containers)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")?;
    need(have("runc"), "runc (apt-get install runc)")?;
    need(have("runsc"), "runsc (apt-get install runsc)")?;
    let dir = scratch();
    let s = study(
        dir.path(),
        "\"bare\", \"runc\", \"gvisor\"",
        "runtime = \"500ms\"\nioengine = \"libaio\"\niodepth = 8",
        "",
    );
    let out = dir.path().join("results");
    let (code, _, se, pid) = run_study(&s, &out, &["--pattern", "randread"]);
    assert_eq!(code, Some(0), "{se}");
    let all = cells(&out);
    assert_eq!(all.len(), 3);
    for c in &all {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.scenario, c.failure);
        for r in &c.clients {
            assert_eq!(r.ioengine_used.name(), "libaio", "{}", c.cell.scenario);
            assert!(r.ioengine_note.is_none(), "{}: {:?}", c.cell.scenario, r.ioengine_note);
            assert!(r.read.ops > 0);
        }
    }
    assert_nothing_left(dir.path(), pid);
    Ok(())
}

fn io_uring_refused_in_gvisor_fails_its_cell_or_falls_back() -> Needs {
    need(is_root(), "root (containers)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")?;
    need(have("runsc"), "runsc (apt-get install runsc)")?;
    let dir = scratch();
    // uring_fallback (engine_fallback's earlier name, still read) is a list: it joins
    // the matrix (one cell each way).
    let s = study(
        dir.path(),
        "\"bare\", \"gvisor\"",
        "runtime = \"500ms\"\nioengine = \"io_uring\"\niodepth = 4\nuring_fallback = [false, true]",
        "",
    );
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &["--pattern", "randread"]);
    assert_eq!(code, Some(1), "a failed cell: exit 1\n{se}");
    let all = cells(&out);
    assert_eq!(all.len(), 4);
    let find = |scenario: &str, fallback: &str| {
        all.iter()
            .find(|c| {
                c.cell.scenario == scenario && c.cell.options == [("uring_fallback".to_string(), fallback.to_string())]
            })
            .unwrap()
    };
    for fallback in ["false", "true"] {
        let bare = find("bare", fallback);
        assert_eq!(bare.status, CellStatus::Ok);
        assert!(bare.clients.iter().all(|c| c.ioengine_used.name() == "io_uring"), "the host has io_uring");
    }
    let refused = find("gvisor", "false");
    assert_eq!(refused.status, CellStatus::Failed);
    let why = refused.failure.as_deref().unwrap();
    assert!(why.contains("io_uring is unavailable here"), "{why}");
    let fell_back = find("gvisor", "true");
    assert_eq!(fell_back.status, CellStatus::Ok, "{:?}", fell_back.failure);
    for c in &fell_back.clients {
        assert_eq!(c.ioengine_used.name(), "psync");
        assert!(c.ioengine_note.as_deref().unwrap().contains("fell back to psync"));
    }
    assert!(so.contains("failed cells:"), "{so}");
    // The report carries the fallback as a warning.
    let md = std::fs::read_to_string(out.join("report/table.md")).unwrap();
    assert!(md.contains("fell back to psync"), "{md}");
    assert_nothing_left(dir.path(), pid);
    Ok(())
}

fn a_crashing_client_fails_its_cell_and_the_study_goes_on() {
    let dir = scratch();
    let s = study(dir.path(), "\"bare\"", "runtime = \"3s\"", "");
    let out = dir.path().join("results");
    let mut run = spawn_run(&s, &out, &[]);
    let run_pid = run.id();
    let pid = worker_pid(dir.path(), "cell-0/job-1.json");
    std::thread::sleep(Duration::from_millis(500));
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), rustix::process::Signal::KILL)
        .unwrap();
    let st = wait_for(&mut run, Duration::from_secs(60));
    assert_eq!(st.code(), Some(1));
    let all = cells(&out);
    assert_eq!(all.len(), 2, "the study went on to its next cell");
    let first = all.iter().find(|c| c.cell.pattern.name() == "randread").unwrap();
    assert_eq!(first.status, CellStatus::Failed);
    assert_eq!(first.failure.as_deref().unwrap(), "client 1 killed by signal 9");
    assert!(first.client_failures.iter().any(|f| f.client == 1));
    assert_eq!(all.iter().find(|c| c.cell.pattern.name() == "write").unwrap().status, CellStatus::Ok);
    assert_nothing_left(dir.path(), run_pid);
}

fn a_hanging_client_is_killed_at_the_deadline() {
    let dir = scratch();
    let s = study(dir.path(), "\"bare\"", "runtime = \"1s\"", "cell_timeout = \"5s\"");
    let out = dir.path().join("results");
    let mut run = spawn_run(&s, &out, &["--pattern", "randread"]);
    let run_pid = run.id();
    let pid = worker_pid(dir.path(), "cell-0/job-0.json");
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), rustix::process::Signal::STOP)
        .unwrap();
    let st = wait_for(&mut run, Duration::from_secs(60));
    assert_eq!(st.code(), Some(1));
    let all = cells(&out);
    assert_eq!(all[0].status, CellStatus::Failed);
    assert_eq!(all[0].failure.as_deref().unwrap(), "client(s) 0 not finished before the deadline (hung?)");
    assert_nothing_left(dir.path(), run_pid);
}

fn interrupt_then_resume_completes_the_study() {
    let dir = scratch();
    let s = study(dir.path(), "\"bare\"", "runtime = \"1s\"", "");
    std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("clients = [2]", "clients = [1, 2]")).unwrap();
    let out = dir.path().join("results");
    let mut run = spawn_run(&s, &out, &[]);
    let run_pid = run.id();
    let cells_dir = out.join("cells");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cells_dir.exists() || entries(&cells_dir).iter().filter(|e| e.ends_with(".json")).count() < 1 {
        assert!(Instant::now() < deadline, "no cell finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300)); // into the next cell
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(run.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let st = wait_for(&mut run, Duration::from_secs(30));
    assert_eq!(st.code(), Some(130));
    let mut err = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("interrupted: finished cells are saved; continue with --resume"), "{err}");
    assert_nothing_left(dir.path(), run_pid);
    let done: Vec<(String, Vec<u8>)> = entries(&cells_dir)
        .into_iter()
        .filter(|e| e.ends_with(".json"))
        .map(|e| (e.clone(), std::fs::read(cells_dir.join(&e)).unwrap()))
        .collect();
    assert!(!done.is_empty() && done.len() < 4, "interrupted part-way: {}", done.len());

    let (code, so, se, pid) = run_study(&s, &out, &["--resume"]);
    assert_eq!(code, Some(0), "{se}");
    assert!(
        so.contains(&format!("{} cell(s) run, {} skipped (already done), 0 failed", 4 - done.len(), done.len())),
        "{so}"
    );
    for (name, bytes) in done {
        assert_eq!(std::fs::read(cells_dir.join(&name)).unwrap(), bytes, "{name} untouched by the resume");
    }
    let all = cells(&out);
    assert_eq!(all.len(), 4);
    // Files are laid out once per study: the last cell found every client's files.
    let last = all.iter().find(|c| c.cell.id == "bare.write.c2.r1").unwrap();
    assert!(last.clients.iter().all(|r| r.layout.files_reused == 2 && r.layout.bytes_written == 0));
    assert!(dir.path().join("target/iostudy-data/client-1/iostudy.1.dat").exists(), "kept for the next run");
    assert_nothing_left(dir.path(), pid);
}

fn runtimes_lists_what_is_usable() {
    let o = iostudy(&["runtimes"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.starts_with("process "), "{out}");
    for rt in ["oci/runc", "oci/crun", "oci/runsc", "oci/youki", "oci/kata-runtime", "microvm/9p", "microvm/virtiofs"] {
        assert!(out.contains(rt), "{rt} in\n{out}");
    }
    // Each runtime is either usable (with its version) or says what is missing.
    for line in out.lines().filter(|l| l.starts_with("oci/youki") || l.starts_with("oci/kata-runtime")) {
        let name = line.split_whitespace().next().unwrap().trim_start_matches("oci/");
        assert!(line.contains(if have(name) { "ok" } else { "not found" }), "{line}");
    }
}

fn demo_runs_with_mock_clients() {
    let dir = scratch();
    let out = dir.path().join("demo");
    let o = iostudy(&["demo", "--mock", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Every backend's demo scenarios, 8 cells each (2 client counts × 4 patterns).
    assert!(stdout(&o).contains("72 cell(s) run"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(
            "iostudy demo: 72 cells (bare, runc, crun, gvisor, ctr-runc, microvm-9p, microvm-virtiofs, podman, charliecloud)"
        ),
        "{}",
        stderr(&o)
    );
    assert!(out.join("report/report.html").exists());
}

fn a_run_killed_outright_is_cleaned_up_by_the_next() -> Needs {
    need(is_root(), "root (containers)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")?;
    need(have("runc"), "runc (apt-get install runc)")?;
    let dir = scratch();
    // The runtime given by its path: reaping must not depend on the runtime's name.
    let runc = iostudy::command::which("runc").unwrap();
    let s = study(dir.path(), "\"bare\", \"bypath\"", "runtime = \"20s\"", "");
    let text = std::fs::read_to_string(&s).unwrap();
    std::fs::write(
        &s,
        format!("{text}\n[scenarios.bypath]\nruntime = \"oci\"\noci_runtime = \"{}\"\n", runc.display()),
    )
    .unwrap();
    let mut first = spawn_run(&s, &dir.path().join("first"), &["--scenario", "bypath", "--pattern", "randread"]);
    let first_pid = first.id();
    wait_first_cell_go(dir.path(), Duration::from_secs(30));
    // SIGKILL: no handler runs, the containers keep going.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(first_pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    first.wait().unwrap();
    let state: Vec<String> =
        entries(Path::new("/run/iostudy")).into_iter().filter(|e| e.starts_with(&format!("{first_pid}-"))).collect();
    assert_eq!(state.len(), 1, "the killed run left its state behind");
    let run_state = Path::new("/run/iostudy").join(&state[0]);
    let oci: Vec<String> = entries(&run_state).into_iter().filter(|e| e.starts_with("oci-")).collect();
    assert_eq!(oci.len(), 1, "{oci:?}");
    let runc_root = run_state.join(&oci[0]).join("state");
    let list = || {
        let o = Command::new(&runc).arg("--root").arg(&runc_root).args(["list", "--quiet"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    assert_eq!(list(), 2, "its two containers still run");

    let (code, _, se, pid) =
        run_study(&s, &dir.path().join("second"), &["--scenario", "bare", "--pattern", "write", "--scale", "0.05"]);
    assert_eq!(code, Some(0), "{se}");
    assert!(se.contains(&format!("note: cleaned up after run {}", state[0])), "{se}");
    assert!(!runc_root.exists(), "the dead run's state is gone");
    assert_nothing_left(dir.path(), first_pid);
    assert_nothing_left(dir.path(), pid);
    Ok(())
}

crate::trials![
    plan_warns_of_a_cell_too_short_for_its_clients,
    plan_shows_the_seed_study,
    mock_study_runs_and_resumes,
    study_file_errors_are_located,
    missing_runtime_fails_before_the_first_cell,
    real_study_through_bare_runc_crun_and_gvisor,
    io_uring_refused_in_gvisor_fails_its_cell_or_falls_back,
    libaio_runs_at_depth_in_containers_and_gvisor,
    a_crashing_client_fails_its_cell_and_the_study_goes_on,
    a_hanging_client_is_killed_at_the_deadline,
    interrupt_then_resume_completes_the_study,
    runtimes_lists_what_is_usable,
    demo_runs_with_mock_clients,
    a_run_killed_outright_is_cleaned_up_by_the_next,
];
