//! Studies placed by a real Slurm (scripts/test-slurm: slurmctld here, a slurmd in each
//! of two network namespaces): the seed's shape with the HPC container runtimes, pack
//! and spread, a run inside an allocation, and every failure — a crashing client, a
//! hung one, Ctrl-C, a killed controller, a node taken down — leaving no process,
//! container, VM or job behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iostudy::results::cell::{CellStatus, FailureKind};

use crate::util::*;

/// A study of `scenarios` placed by `[slurm]` (with `slurm` extra keys) on `clients`.
fn study(dir: &Path, scenarios: &str, clients: &str, slurm: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[study]
name = "slurm"
target = "{target}"
drop_caches = false
{extra}

[slurm]
{slurm}

[workload]
bs = "64K"
size = "4M"
numjobs = 2
runtime = "1s"

[matrix]
scenarios = [{scenarios}]
clients = [{clients}]
patterns = ["read", "write"]
{microvm}"#,
        target = dir.join("target").display(),
        microvm = if scenarios.contains("microvm-9p") {
            "\n[scenarios.microvm-9p]\nruntime = \"microvm\"\nshare = \"9p\"\n"
        } else {
            ""
        }
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Nothing of a run is left: no job, no process mentioning its directory or its state.
fn nothing_left(slurm: &TestSlurm, dir: &Path, run_pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = || {
        let mut v = processes_mentioning(dir.to_str().unwrap());
        v.extend(processes_mentioning(&format!("iostudy-{run_pid}-")));
        v
    };
    while (!left().is_empty() || !slurm.jobs().trim().is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(left(), Vec::<u32>::new(), "no client, container, VM or agent left");
    assert_eq!(slurm.jobs().trim(), "", "no Slurm job left");
    for runtime in ["runc .*run --bundle", "conmon", "qemu-system", "ch-run"] {
        let o = Command::new("pgrep").args(["-f", runtime]).output().unwrap();
        assert!(o.stdout.is_empty(), "no {runtime} left: {}", String::from_utf8_lossy(&o.stdout));
    }
}

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
    stdout(o)
}

fn the_seed_shape_runs_under_slurm_with_every_runtime() -> Needs {
    slurm_ready()?;
    for tool in ["runc", "runsc", "podman", "ch-run", "qemu-system-x86_64"] {
        need(have(tool), "runc, runsc, podman, charliecloud and QEMU (scripts/setup)")?;
    }
    crate::microvm::vm_ready()?;
    let slurm = TestSlurm::up(2);
    let dir = scratch();
    let scenarios = "\"bare\", \"runc\", \"gvisor\", \"podman\", \"charliecloud\", \"microvm-9p\"";
    let s = study(dir.path(), scenarios, "1, 2, 4", "nodes = 2", "");
    let plan = ok(&slurm.iostudy(&["plan", s.to_str().unwrap()]).output().unwrap());
    assert!(plan.contains("slurm: 2 whole node(s) of partition (default) allocated for the run"), "{plan}");
    assert!(plan.contains("on slurm node 1×2 slurm node 2×2"), "the plan places clients: {plan}");
    assert!(slurm.jobs().trim().is_empty(), "plan takes no allocation");
    let out = dir.path().join("results");
    let child = slurm
        .iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    ok(&o);
    let cells = stored_cells(&out);
    assert_eq!(cells.len(), 36, "6 scenarios × 3 client counts × 2 patterns");
    for c in &cells {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.id, c.failure);
        for r in &c.clients {
            let placed = c.placements.iter().find(|p| p.client == r.client_id).unwrap();
            // Spread: client k on node k mod 2 — and it says so itself.
            assert_eq!(placed.node, format!("node{}", r.client_id % 2 + 1), "{}", c.cell.id);
            if c.cell.scenario != "microvm-9p" {
                assert_eq!(
                    r.host.hostname, placed.node,
                    "{} client {} ran where it was placed",
                    c.cell.id, r.client_id
                );
            }
        }
    }
    let info = iostudy::results::store::Store::open(&out).run_info().unwrap();
    let placement = info.placement.expect("the Slurm job is recorded");
    assert_eq!(placement["scheduler"], "slurm");
    assert_eq!(placement["nodes"], serde_json::json!(["node1", "node2"]));
    assert!(placement["version"].as_str().unwrap().contains("22.05"), "{placement}");
    assert_eq!(placement["agent_steps"].as_object().unwrap().len(), 2, "{placement}");
    // One report, with each node's bandwidth.
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    assert!(html.contains("id=\"per-node\"") && html.contains("node1: ") && html.contains("node2: "));
    nothing_left(&slurm, dir.path(), pid);
    Ok(())
}

fn pack_inside_an_existing_allocation() -> Needs {
    slurm_ready()?;
    let slurm = TestSlurm::up(2);
    let dir = scratch();
    let s = study(dir.path(), "\"bare\"", "4", "placement = \"pack\"\ntasks_per_node = 3", "");
    let out = dir.path().join("results");
    // iostudy inside `salloc -N2`: it uses that allocation and asks for no other.
    let o = slurm
        .cmd("salloc")
        .args(["-N2", "--job-name=users-own", "--"])
        .arg(bin())
        .args(["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    ok(&o);
    let info = iostudy::results::store::Store::open(&out).run_info().unwrap();
    let p = info.placement.unwrap();
    assert_eq!(p["allocated_by_iostudy"], false, "{p}");
    let granted = stderr(&o);
    let job = granted.split("Granted job allocation ").nth(1).unwrap().split_whitespace().next().unwrap();
    assert_eq!(p["job"], job, "the salloc's own job: {granted}");
    for c in stored_cells(&out) {
        let nodes: Vec<&str> =
            (0..4).map(|k| c.placements.iter().find(|p| p.client == k).unwrap().node.as_str()).collect();
        assert_eq!(nodes, ["node1", "node1", "node1", "node2"], "pack: 3 tasks per node");
    }
    assert!(slurm.jobs().trim().is_empty(), "salloc's job ended with its command");
    Ok(())
}

fn crash_hang_interrupt_and_kill_leave_nothing() -> Needs {
    slurm_ready()?;
    let slurm = TestSlurm::up(2);
    // A crashing client: its cell fails, the study goes on.
    let dir = scratch();
    let s = study(dir.path(), "\"bare\"", "2", "nodes = 2", "");
    std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("runtime = \"1s\"", "runtime = \"3s\"")).unwrap();
    let out = dir.path().join("results");
    let mut run = slurm.iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]).spawn().unwrap();
    let run_pid = run.id();
    let pid = worker_pid(dir.path(), "cell-0/job-1.json");
    std::thread::sleep(Duration::from_millis(500));
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), rustix::process::Signal::KILL)
        .unwrap();
    assert_eq!(wait_for(&mut run, Duration::from_secs(90)).code(), Some(1));
    let cells = stored_cells(&out);
    assert_eq!(cells.len(), 2, "the study went on");
    let first = cells.iter().find(|c| c.cell.pattern.name() == "read").unwrap();
    assert_eq!(first.failure_kind, Some(FailureKind::ClientExit), "{:?}", first.failure);
    nothing_left(&slurm, dir.path(), run_pid);

    // A hung client: killed at the cell's deadline.
    let dir = scratch();
    let s = study(dir.path(), "\"bare\"", "2", "nodes = 2", "cell_timeout = \"6s\"");
    let out = dir.path().join("results");
    let mut run =
        slurm.iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap(), "--pattern", "read"]).spawn().unwrap();
    let run_pid = run.id();
    let pid = worker_pid(dir.path(), "cell-0/job-0.json");
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), rustix::process::Signal::STOP)
        .unwrap();
    assert_eq!(wait_for(&mut run, Duration::from_secs(90)).code(), Some(1));
    assert_eq!(stored_cells(&out)[0].failure_kind, Some(FailureKind::Timeout));
    nothing_left(&slurm, dir.path(), run_pid);

    // Ctrl-C, then a controller killed outright: its job is cancelled by the next run.
    for signal in [rustix::process::Signal::INT, rustix::process::Signal::KILL] {
        let dir = scratch();
        let s = study(dir.path(), "\"runc\"", "2", "nodes = 2", "");
        std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("runtime = \"1s\"", "runtime = \"30s\""))
            .unwrap();
        let out = dir.path().join("results");
        let mut run = slurm.iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]).spawn().unwrap();
        let run_pid = run.id();
        wait_first_cell_go(dir.path(), Duration::from_secs(60));
        rustix::process::kill_process(rustix::process::Pid::from_raw(run_pid as i32).unwrap(), signal).unwrap();
        let st = wait_for(&mut run, Duration::from_secs(60));
        if signal == rustix::process::Signal::INT {
            assert_eq!(st.code(), Some(130));
            nothing_left(&slurm, dir.path(), run_pid);
            continue;
        }
        // Killed outright: its agents end with their steps; its allocation stays until
        // the next run, which cancels it.
        assert!(slurm.jobs().contains(&format!("iostudy-{run_pid}-")), "the dead run's job: {}", slurm.jobs());
        let next = scratch();
        let s2 = study(next.path(), "\"bare\"", "1", "nodes = 1", "");
        let o = slurm
            .iostudy(&["run", s2.to_str().unwrap(), "-o", next.path().join("r").to_str().unwrap(), "--pattern", "read"])
            .output()
            .unwrap();
        ok(&o);
        assert!(
            stderr(&o).contains("cancelled Slurm job") && stderr(&o).contains(&format!("(pid {run_pid})")),
            "{}",
            stderr(&o)
        );
        nothing_left(&slurm, dir.path(), run_pid);
    }
    Ok(())
}

fn a_down_node_is_named_before_anything_launches() -> Needs {
    slurm_ready()?;
    let slurm = TestSlurm::up(2);
    let dir = scratch();
    let s = study(dir.path(), "\"bare\"", "2", "nodes = 2", "");
    let down =
        slurm.cmd("scontrol").args(["update", "nodename=node2", "state=down", "reason=iostudy-test"]).status().unwrap();
    assert!(down.success());
    for cmd in ["plan", "run"] {
        let out = dir.path().join("results");
        let mut args = vec![cmd, s.to_str().unwrap()];
        if cmd == "run" {
            args.extend(["-o", out.to_str().unwrap()]);
        }
        let o = slurm.iostudy(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        let said = stdout(&o) + &stderr(&o);
        assert!(said.contains("partition has 1 node(s) up (node2 DOWN"), "{cmd}: {said}");
        assert!(!out.exists(), "nothing written");
    }
    assert!(slurm.jobs().trim().is_empty());
    // Taken down in the middle of a run: the cells after it fail naming the node.
    let resume = slurm.cmd("scontrol").args(["update", "nodename=node2", "state=resume"]).status().unwrap();
    assert!(resume.success());
    std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("runtime = \"1s\"", "runtime = \"3s\"")).unwrap();
    let out = dir.path().join("results");
    let mut run = slurm.iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]).spawn().unwrap();
    let run_pid = run.id();
    wait_first_cell_go(dir.path(), Duration::from_secs(60));
    let down =
        slurm.cmd("scontrol").args(["update", "nodename=node2", "state=down", "reason=iostudy-test"]).status().unwrap();
    assert!(down.success());
    assert_eq!(wait_for(&mut run, Duration::from_secs(120)).code(), Some(1));
    let cells = stored_cells(&out);
    let failed: Vec<_> = cells.iter().filter(|c| c.status == CellStatus::Failed).collect();
    assert!(!failed.is_empty(), "a cell after the node went down failed");
    for c in failed {
        assert_eq!(c.failure_kind, Some(FailureKind::LostNode), "{:?}", c.failure);
        assert!(
            c.failure.as_deref().unwrap().contains("node2") || c.failure.as_deref().unwrap().contains("node1"),
            "{:?}",
            c.failure
        );
    }
    let _ = slurm.cmd("scontrol").args(["update", "nodename=node2", "state=resume"]).status();
    nothing_left(&slurm, dir.path(), run_pid);
    Ok(())
}

fn impossible_requests_are_refused_before_the_first_cell() -> Needs {
    slurm_ready()?;
    let slurm = TestSlurm::up(2);
    let dir = scratch();
    let out = dir.path().join("results");
    let refused = |slurm_keys: &str, path: Option<&str>, words: &str| {
        let s = study(dir.path(), "\"bare\"", "2", slurm_keys, "");
        for cmd in ["plan", "run"] {
            let mut c = slurm.iostudy(&[cmd, s.to_str().unwrap(), "-o", out.to_str().unwrap()]);
            if cmd == "plan" {
                c = slurm.iostudy(&[cmd, s.to_str().unwrap()]);
            }
            if let Some(p) = path {
                c.env("PATH", p);
            }
            let o = c.output().unwrap();
            let said = stdout(&o) + &stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd} with {slurm_keys}: {said}");
            assert!(said.contains(words), "{cmd} with {slurm_keys}: {said}");
            assert!(!out.exists(), "{cmd}: nothing written");
            assert!(slurm.jobs().trim().is_empty(), "{cmd}: no job left: {}", slurm.jobs());
        }
    };
    refused("nodes = 2\npartition = \"gpu\"", None, "partition `gpu` is unknown to Slurm (sinfo lists: debug)");
    refused("nodes = 3", None, "nodes = 3, and the partition has 2 node(s) up");
    refused(
        "",
        None,
        "study.toml:7:1: [slurm]: how many nodes to allocate is not said, and iostudy does not run inside an allocation",
    );
    let empty = scratch();
    refused("nodes = 2", empty.path().to_str(), "no srun on PATH: apt-get install slurm-client");
    // Every node taken by another job: the run's allocation pends, and is given up.
    let o = slurm.cmd("salloc").args(["-N2", "--exclusive", "--no-shell", "--job-name=someone-else"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = study(dir.path(), "\"bare\"", "2", "nodes = 2\nallocation_timeout = \"2s\"", "");
    let started = Instant::now();
    let o = slurm.iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the allocation was still pending after 2s (squeue says: PENDING Resources)"),
        "{}",
        stderr(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!out.exists(), "nothing written");
    let jobs = slurm.jobs();
    assert!(jobs.contains("someone-else") && !jobs.contains("iostudy-"), "only the other job stays: {jobs}");
    Ok(())
}

crate::trials![
    the_seed_shape_runs_under_slurm_with_every_runtime,
    pack_inside_an_existing_allocation,
    crash_hang_interrupt_and_kill_leave_nothing,
    a_down_node_is_named_before_anything_launches,
    impossible_requests_are_refused_before_the_first_cell,
];
