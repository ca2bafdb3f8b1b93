//! Studies over ssh nodes: test hosts are network namespaces with their own sshd,
//! hostname and address (scripts/test-hosts), sharing this machine's filesystem the
//! way cluster nodes share a parallel filesystem. Real ssh, real runtimes on the nodes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use iostudy::results::cell::{CellResult, CellStatus};

use crate::util::*;

fn study(dir: &Path, hosts: &TestHosts, host_extra: &str, scenarios: &str, clients: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[study]
name = "nodes"
target = "{target}"
{extra}

{hosts}
[workload]
bs = "64K"
size = "4M"
numjobs = 2
runtime = "1s"

[matrix]
scenarios = [{scenarios}]
clients = [{clients}]
patterns = ["randread"]
"#,
        target = dir.join("target").display(),
        hosts = hosts.table(host_extra),
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Nothing of the run is left on this machine — which is every node's too here.
fn nothing_left(dir: &Path, run_pid: u32) {
    assert_nothing_left(dir, run_pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    let agents = || processes_mentioning(&format!("bin-{run_pid}-"));
    while !agents().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(agents(), Vec::<u32>::new(), "no agent of the run survives on a node");
    let copies: Vec<String> =
        entries(Path::new("/run/iostudy")).into_iter().filter(|e| e.starts_with(&format!("bin-{run_pid}-"))).collect();
    assert!(copies.is_empty(), "the run's copy of iostudy is removed from the nodes: {copies:?}");
}

fn node_of(c: &CellResult, k: u32) -> &str {
    &c.placements.iter().find(|p| p.client == k).unwrap().node
}

fn two_nodes_bare_runc_and_gvisor_spread() -> Needs {
    hosts_ready()?;
    need(have("runc") && have("runsc"), "runc and runsc (apt-get install runc runsc)")?;
    let hosts = TestHosts::up(2, None);
    let dir = scratch();
    let s = study(dir.path(), &hosts, "", "\"bare\", \"runc\", \"gvisor\"", "1, 2, 4", "keep_files = false");
    let plan = iostudy(&["plan", s.to_str().unwrap()]);
    assert!(plan.status.success(), "{}", stdout(&plan));
    let p = stdout(&plan);
    assert!(
        p.contains("hosts: node1, node2 (spread: client k on node k mod n; the target is one shared filesystem)"),
        "{p}"
    );
    assert!(p.contains("  node 2  node2 (node2), kernel"), "{p}");
    assert!(p.contains("clients=4   rep=1  on node1×2 node2×2"), "{p}");
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &[]);
    assert_eq!(code, Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let cells = stored_cells(&out);
    assert_eq!(cells.len(), 9);
    for c in &cells {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.id, c.failure);
        for r in &c.clients {
            let node = format!("node{}", r.client_id % 2 + 1);
            assert_eq!(node_of(c, r.client_id), node, "{}: spread", c.cell.id);
            assert_eq!(r.host.hostname, node, "{} client {}: ran on its node", c.cell.id, r.client_id);
            assert!(r.start_ns >= c.start_ns.unwrap(), "{}: no client starts before go", c.cell.id);
            assert!(r.go_seen_ns.unwrap() <= r.go_instant_ns.unwrap(), "{}: go reached the node in time", c.cell.id);
        }
        // gVisor sandboxes (ptrace platform) sharing this machine's 2 cores wake from the
        // barrier up to ~0.6 s late, on one host as over nodes; the common window takes
        // that out. Native clients must start together across nodes.
        if c.cell.scenario != "gvisor" {
            let starts: Vec<u64> = c.clients.iter().map(|r| r.start_ns).collect();
            let spread = starts.iter().max().unwrap() - starts.iter().min().unwrap();
            assert!(spread < 250_000_000, "{}: the barrier held across nodes ({spread} ns)", c.cell.id);
        }
        assert!(
            c.placements.iter().all(|p| p.clock_uncertainty_ns.is_some_and(|u| u < 5_000_000)),
            "{:?}",
            c.placements
        );
    }
    let csv = std::fs::read_to_string(out.join("report/table.csv")).unwrap();
    let row = csv.lines().find(|l| l.starts_with("runc,runc,randread,4,")).unwrap();
    assert!(row.contains("node1=") && row.contains(";node2="), "per-node bandwidth: {row}");
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    assert!(html.contains("id=\"per-node\""));
    nothing_left(dir.path(), pid);
    assert!(!dir.path().join("target/iostudy-data").exists(), "keep_files = false");
    Ok(())
}

fn pack_fills_the_first_node_first() -> Needs {
    hosts_ready()?;
    let hosts = TestHosts::up(2, None);
    let dir = scratch();
    let s = study(dir.path(), &hosts, "placement = \"pack\"\nslots = 2", "\"bare\"", "3", "");
    let out = dir.path().join("results");
    let (code, _, se, pid) = run_study(&s, &out, &[]);
    assert_eq!(code, Some(0), "{se}");
    let c = &stored_cells(&out)[0];
    let nodes: Vec<&str> = (0..3).map(|k| node_of(c, k)).collect();
    assert_eq!(nodes, ["node1", "node1", "node2"]);
    nothing_left(dir.path(), pid);
    Ok(())
}

fn a_micro_vm_on_a_remote_node() -> Needs {
    hosts_ready()?;
    need(have("qemu-system-x86_64"), "QEMU (apt-get install qemu-system-x86)")?;
    need(iostudy::runtime::microvm::kernel::find(None).is_ok(), "a guest kernel (apt-get install linux-image-amd64)")?;
    let hosts = TestHosts::up(2, None);
    let dir = scratch();
    let s = study(dir.path(), &hosts, "", "\"vm\"", "1", "");
    let text = std::fs::read_to_string(&s).unwrap()
        + "\n[scenarios.vm]\nruntime = \"microvm\"\nshare = \"9p\"\nnodes = [\"node2\"]\n";
    std::fs::write(&s, text).unwrap();
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &[]);
    assert_eq!(code, Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let c = &stored_cells(&out)[0];
    assert_eq!(c.status, CellStatus::Ok, "{:?}", c.failure);
    assert_eq!(node_of(c, 0), "node2");
    let guest = iostudy::runtime::microvm::kernel::find(None).unwrap().version;
    assert_eq!(c.clients[0].host.kernel, guest, "ran in a guest on node2");
    assert!(c.boot_s[0].is_some(), "the guest's boot was timed through the node");
    nothing_left(dir.path(), pid);
    Ok(())
}

fn each_nodes_own_disk_when_the_target_is_not_shared() -> Needs {
    hosts_ready()?;
    let disk = PathBuf::from(format!("/srv/iostudy-test-disk-{}", std::process::id()));
    let hosts = TestHosts::up(2, Some(&disk));
    let dir = scratch();
    let s = study(dir.path(), &hosts, "shared_target = false", "\"bare\"", "2, 4", "keep_files = false");
    let text = std::fs::read_to_string(&s).unwrap().replace(
        &format!("target = \"{}\"", dir.path().join("target").display()),
        &format!("target = \"{}/t\"", disk.display()),
    );
    std::fs::write(&s, text).unwrap();
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &[]);
    assert_eq!(code, Some(0), "stdout:\n{so}\nstderr:\n{se}");
    for c in stored_cells(&out) {
        assert_eq!(c.status, CellStatus::Ok, "{:?}", c.failure);
        assert!(c.clients.iter().all(|r| r.read.bytes > 0));
    }
    assert!(entries(&disk).is_empty(), "this host's own disk was never used");
    for node in ["node1", "node2"] {
        let left = hosts.ssh(node, &format!("find {} -mindepth 1", disk.display()));
        assert_eq!(left.trim(), "", "{node}: the run removed what it created on the node's disk");
    }
    nothing_left(dir.path(), pid);
    drop(hosts);
    let _ = std::fs::remove_dir(&disk);
    Ok(())
}

fn a_node_lost_mid_cell_fails_it_and_the_study_goes_on() -> Needs {
    hosts_ready()?;
    let hosts = TestHosts::up(2, None);
    let dir = scratch();
    let s = study(dir.path(), &hosts, "", "\"bare\"", "2", "");
    let text = std::fs::read_to_string(&s)
        .unwrap()
        .replace("runtime = \"1s\"", "runtime = \"6s\"")
        .replace("patterns = [\"randread\"]", "patterns = [\"randread\", \"write\"]");
    std::fs::write(&s, text).unwrap();
    let out = dir.path().join("results");
    let mut run = spawn_run(&s, &out, &[]);
    let pid = run.id();
    wait_first_cell_go(dir.path(), Duration::from_secs(60));
    hosts.kill_sshd("node2");
    let st = wait_for(&mut run, Duration::from_secs(120));
    assert_eq!(st.code(), Some(1));
    let cells = stored_cells(&out);
    assert_eq!(cells.len(), 2, "the study went on");
    for c in &cells {
        assert_eq!(c.status, CellStatus::Failed);
        let why = c.failure.as_deref().unwrap();
        assert!(why.contains("node node2"), "{}: {why}", c.cell.id);
        let lost = Some(iostudy::results::cell::FailureKind::LostNode);
        assert_eq!(c.failure_kind, lost, "{}: counted as a lost node: {why}", c.cell.id);
    }
    nothing_left(dir.path(), pid);
    Ok(())
}

fn ctrl_c_or_a_kill_leaves_nothing_on_any_node() -> Needs {
    hosts_ready()?;
    need(have("runc"), "runc (apt-get install runc)")?;
    let hosts = TestHosts::up(2, None);
    for signal in [rustix::process::Signal::INT, rustix::process::Signal::KILL] {
        let dir = scratch();
        let s = study(dir.path(), &hosts, "", "\"runc\"", "2", "");
        std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("runtime = \"1s\"", "runtime = \"30s\""))
            .unwrap();
        let mut run = spawn_run(&s, &dir.path().join("results"), &[]);
        let pid = run.id();
        wait_first_cell_go(dir.path(), Duration::from_secs(60));
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), signal).unwrap();
        let st = wait_for(&mut run, Duration::from_secs(60));
        if signal == rustix::process::Signal::INT {
            assert_eq!(st.code(), Some(130));
        }
        // Killed outright, the controller takes its ssh sessions along, and each agent
        // tears its node down when its session ends; workers mention the target.
        let deadline = Instant::now() + Duration::from_secs(20);
        let left = || processes_mentioning(dir.path().to_str().unwrap());
        while !left().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(left(), Vec::<u32>::new(), "{signal:?}: no worker or container left");
        let runc = Command::new("pgrep").args(["-f", "runc .*run --bundle"]).output().unwrap();
        assert!(runc.stdout.is_empty(), "{signal:?}: no runc left: {}", String::from_utf8_lossy(&runc.stdout));
        if signal == rustix::process::Signal::INT {
            nothing_left(dir.path(), pid);
        }
    }
    Ok(())
}

crate::trials![
    two_nodes_bare_runc_and_gvisor_spread,
    pack_fills_the_first_node_first,
    a_micro_vm_on_a_remote_node,
    each_nodes_own_disk_when_the_target_is_not_shared,
    a_node_lost_mid_cell_fails_it_and_the_study_goes_on,
    ctrl_c_or_a_kill_leaves_nothing_on_any_node,
];
