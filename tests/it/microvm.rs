//! The `microvm` runtime with real QEMU (TCG here), virtiofsd and the host's kernel:
//! bare vs 9p vs virtio-fs end to end, a hung guest, and Ctrl-C during a VM cell.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iostudy::results::store::{CellStatus, Store};

use crate::util::*;

fn vm_ready() -> bool {
    need(is_root(), "root (virtiofsd, 9p passthrough)")
        && need(static_worker(), "the static worker (scripts/build-static)")
        && need(have("qemu-system-x86_64"), "QEMU (apt-get install qemu-system-x86)")
        && need(
            iostudy::runtime::microvm::kernel::find(None).is_ok(),
            "a guest kernel with modules (apt-get install linux-image-amd64)",
        )
        && need(iostudy::runtime::microvm::find_virtiofsd().is_some(), "virtiofsd (cargo install virtiofsd)")
}

fn vm_study(dir: &Path, scenarios: &str, runtime: &str, extra: &str) -> PathBuf {
    let mut tables = String::new();
    if scenarios.contains("\"vm9p\"") {
        tables.push_str("\n[scenarios.vm9p]\nruntime = \"microvm\"\nshare = \"9p\"\nlabel = \"Kata-style 9p\"\n");
    }
    if scenarios.contains("\"vmfs\"") {
        tables.push_str("\n[scenarios.vmfs]\nruntime = \"microvm\"\nshare = \"virtiofs\"\ncache = \"never\"\n");
    }
    let text = format!(
        r#"[study]
name = "vm"
target = "{target}"
{extra}

[workload]
bs = "64K"
size = "4M"
numjobs = 2
runtime = "{runtime}"

[matrix]
scenarios = [{scenarios}]
clients = [2]
patterns = ["randread", "write"]
{tables}"#,
        target = dir.join("target").display()
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bare_vs_9p_vs_virtiofs_end_to_end() {
    if !vm_ready() {
        return;
    }
    let dir = scratch();
    let s = vm_study(dir.path(), "\"bare\", \"vm9p\", \"vmfs\"", "1s", "");
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &[]);
    assert_eq!(code, Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let cells = Store::open(&out).cells().unwrap();
    assert_eq!(cells.len(), 6);
    let host_kernel = rustix::system::uname().release().to_string_lossy().into_owned();
    let guest_kernel = iostudy::runtime::microvm::kernel::find(None).unwrap().version;
    for c in &cells {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.id, c.failure);
        assert_eq!(c.clients.len(), 2, "{}", c.cell.id);
        let go = c.start_ns.unwrap();
        assert!(c.clients.iter().all(|r| r.start_ns >= go), "{}: the barrier held across the share", c.cell.id);
        if c.cell.scenario == "bare" {
            assert!(c.boot_s.is_empty());
            assert_eq!(c.clients[0].host.kernel, host_kernel);
            continue;
        }
        // Inside the guest: the guest's kernel, its own CPU count, a measured boot.
        assert!(c.clients.iter().all(|r| r.host.kernel == guest_kernel), "{}: ran in the guest", c.cell.id);
        assert!(c.clients.iter().all(|r| r.host.cpus == 1));
        assert_eq!(c.boot_s.len(), 2);
        assert!(c.boot_s.iter().all(|b| b.is_some_and(|s| s > 0.0 && s < c.setup_s + 1e-9)));
        assert!(
            c.runtime_notes.iter().any(|n| n == "accelerator: tcg" || n == "accelerator: kvm"),
            "{:?}",
            c.runtime_notes
        );
        let share = if c.cell.scenario == "vm9p" { "9p" } else { "virtiofs" };
        assert!(matches!(&c.runtime, iostudy::runtime::RuntimeSpec::Microvm(m) if m.share_name() == share));
        assert!(c.clients.iter().all(|r| r.read.bytes + r.write.bytes > 0));
    }
    // The report shows all three, and flags TCG where it was used.
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    for label in ["bare", "Kata-style 9p", "vmfs"] {
        assert!(html.contains(&format!("<td>{label}</td>")), "report lists {label}");
    }
    let tcg = cells.iter().any(|c| c.runtime_notes.iter().any(|n| n == "accelerator: tcg"));
    assert_eq!(html.contains("ran its guests under TCG"), tcg);
    assert_nothing_left(dir.path(), pid);
}

#[test]
fn a_hung_guest_is_killed_and_its_console_kept() {
    if !vm_ready() {
        return;
    }
    let dir = scratch();
    let s = vm_study(dir.path(), "\"vm9p\"", "1s", "cell_timeout = \"25s\"");
    let out = dir.path().join("results");
    let mut run = spawn_run(&s, &out, &["--pattern", "randread"]);
    let run_pid = run.id();
    // Freeze the first QEMU once it is up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let qemu = loop {
        let pids: Vec<u32> = processes_mentioning("qemu-system-x86_64")
            .into_iter()
            .filter(|p| processes_mentioning(dir.path().to_str().unwrap()).contains(p))
            .collect();
        if let Some(&p) = pids.first() {
            break p;
        }
        assert!(Instant::now() < deadline, "no QEMU started");
        std::thread::sleep(Duration::from_millis(20));
    };
    rustix::process::kill_process(rustix::process::Pid::from_raw(qemu as i32).unwrap(), rustix::process::Signal::STOP)
        .unwrap();
    let st = wait_for(&mut run, Duration::from_secs(90));
    assert_eq!(st.code(), Some(1));
    let cells = Store::open(&out).cells().unwrap();
    let why = cells[0].failure.clone().unwrap();
    assert!(why.contains("before the deadline (hung?)"), "{why}");
    let logs = out.join("logs").join(&cells[0].cell.id);
    let console = std::fs::read_to_string(logs.join("client-0.stderr")).unwrap_or_default()
        + &std::fs::read_to_string(logs.join("client-1.stderr")).unwrap_or_default();
    assert!(console.contains("] "), "the guests' serial consoles are kept: {console}");
    // The failure points at a kept console log.
    let log = why.split("(log: ").nth(1).and_then(|r| r.strip_suffix(')')).expect("the failure names its log");
    assert!(Path::new(log).is_file(), "{log}");
    assert_nothing_left(dir.path(), run_pid);
}

#[test]
fn interrupting_a_vm_cell_leaves_no_vm_behind() {
    if !vm_ready() {
        return;
    }
    let dir = scratch();
    let s = vm_study(dir.path(), "\"vmfs\"", "20s", "");
    let out = dir.path().join("results");
    let mut run = spawn_run(&s, &out, &["--pattern", "write"]);
    let run_pid = run.id();
    // Wait until the guests are measuring (the go signal is out).
    wait_first_cell_go(dir.path(), Duration::from_secs(60));
    assert!(!processes_mentioning("virtiofsd").is_empty() || !processes_mentioning("qemu-system").is_empty());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(run_pid as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let st = wait_for(&mut run, Duration::from_secs(30));
    assert_eq!(st.code(), Some(130));
    assert_nothing_left(dir.path(), run_pid);
    assert!(Store::open(&out).cells().unwrap().is_empty(), "the interrupted cell is not stored");
}
