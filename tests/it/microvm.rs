//! The `microvm` runtime with real QEMU (TCG here), virtiofsd and the host's kernel:
//! bare vs 9p vs virtio-fs end to end, a hung guest, and Ctrl-C during a VM cell.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iostudy::results::cell::CellStatus;

use crate::util::*;

pub fn vm_ready() -> Needs {
    need(is_root(), "root (virtiofsd, 9p passthrough)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")?;
    need(have("qemu-system-x86_64"), "QEMU (apt-get install qemu-system-x86)")?;
    need(
        iostudy::runtime::microvm::kernel::find(None).is_ok(),
        "a guest kernel with modules (apt-get install linux-image-amd64)",
    )?;
    need(iostudy::runtime::microvm::virtiofsd::find().is_ok(), "the maintained virtiofsd (cargo install virtiofsd)")
}

fn vm_study(dir: &Path, scenarios: &str, runtime: &str, extra: &str) -> PathBuf {
    let mut tables = String::new();
    if scenarios.contains("\"vm9p\"") {
        tables.push_str("\n[scenarios.vm9p]\nruntime = \"microvm\"\nshare = \"9p\"\nlabel = \"Kata-style 9p\"\n");
    }
    if scenarios.contains("\"vmfs\"") {
        tables.push_str("\n[scenarios.vmfs]\nruntime = \"microvm\"\nshare = \"virtiofs\"\ncache = \"never\"\n");
    }
    if scenarios.contains("\"vmbad\"") {
        tables.push_str(
            "\n[scenarios.vmbad]\nruntime = \"microvm\"\nshare = \"virtiofs\"\nvirtiofsd_args = [\"--no-such-flag\"]\n",
        );
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

fn bare_vs_9p_vs_virtiofs_end_to_end() -> Needs {
    vm_ready()?;
    let dir = scratch();
    let s = vm_study(dir.path(), "\"bare\", \"vm9p\", \"vmfs\"", "1s", "");
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &[]);
    assert_eq!(code, Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let cells = stored_cells(&out);
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
        assert!(c.boot_s.iter().all(|b| b.is_some_and(|s| s > 0.0 && s < c.ready_s + 1e-9)));
        assert!(matches!(c.runtime.accelerator.as_deref(), Some("tcg" | "kvm")), "{:?}", c.runtime);
        let share = if c.cell.scenario == "vm9p" { "9p" } else { "virtiofs" };
        assert_eq!(c.runtime.kind, "microvm");
        assert_eq!(c.runtime.settings["share"], share);
        assert!(c.clients.iter().all(|r| r.read.bytes + r.write.bytes > 0));
    }
    // The report shows all three, and flags TCG where it was used.
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    for label in ["bare", "Kata-style 9p", "vmfs"] {
        assert!(html.contains(&format!("<td>{label}</td>")), "report lists {label}");
    }
    let tcg = cells.iter().any(|c| c.runtime.accelerator.as_deref() == Some("tcg"));
    assert_eq!(html.contains("ran its guests under TCG"), tcg);
    assert_nothing_left(dir.path(), pid);
    Ok(())
}

fn a_hung_guest_is_killed_and_its_console_kept() -> Needs {
    vm_ready()?;
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
    let cells = stored_cells(&out);
    let why = cells[0].failure.clone().unwrap();
    assert!(why.contains("before the deadline (hung?)"), "{why}");
    let logs = out.join("logs").join(&cells[0].cell.id);
    let console = std::fs::read_to_string(logs.join("client-0.log")).unwrap_or_default()
        + &std::fs::read_to_string(logs.join("client-1.log")).unwrap_or_default();
    assert!(console.contains("] "), "the guests' serial consoles are kept: {console}");
    // The failure points at a kept console log.
    let log = why.split("(log: ").nth(1).and_then(|r| r.strip_suffix(')')).expect("the failure names its log");
    assert!(Path::new(log).is_file(), "{log}");
    assert_nothing_left(dir.path(), run_pid);
    Ok(())
}

fn interrupting_a_vm_cell_leaves_no_vm_behind() -> Needs {
    vm_ready()?;
    let dir = scratch();
    let s = vm_study(dir.path(), "\"vmfs\"", "20s", "");
    let out = dir.path().join("results");
    let mut run = spawn_run(&s, &out, &["--pattern", "write"]);
    let run_pid = run.id();
    // Wait until the guests are measuring (the go signal is out).
    wait_first_cell_go(dir.path(), Duration::from_secs(60));
    // This run's guests and virtiofsd run now (they mention its state directory).
    let state = format!("/iostudy/{run_pid}-");
    let mine = |tool: &str| processes_mentioning(tool).into_iter().filter(|p| processes_mentioning(&state).contains(p));
    assert!(mine("virtiofsd").count() > 0 && mine("qemu-system").count() > 0, "the run's guests are up");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(run_pid as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let st = wait_for(&mut run, Duration::from_secs(30));
    assert_eq!(st.code(), Some(130));
    assert_nothing_left(dir.path(), run_pid);
    assert!(stored_cells(&out).is_empty(), "the interrupted cell is not stored");
    Ok(())
}

fn a_failing_virtiofsd_speaks_for_itself() -> Needs {
    vm_ready()?;
    let dir = scratch();
    let s = vm_study(dir.path(), "\"vmbad\"", "1s", "");
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &["--pattern", "write"]);
    assert_eq!(code, Some(1), "stdout:\n{so}\nstderr:\n{se}");
    let cells = stored_cells(&out);
    let why = cells[0].failure.clone().unwrap();
    // virtiofsd's own words, not a timeout, and where its whole log is kept.
    assert!(why.contains("virtiofsd exited"), "{why}");
    assert!(why.contains("--no-such-flag"), "{why}");
    let log = out.join("logs").join(&cells[0].cell.id).join("client-0.virtiofsd.log");
    assert!(why.contains(log.to_str().unwrap()), "{why}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("--no-such-flag"));
    assert_nothing_left(dir.path(), pid);
    Ok(())
}

/// A machine with QEMU's legacy virtiofsd only (Debian 12's, /usr/lib/qemu/virtiofsd):
/// a virtio-fs study is refused before its first cell, with the fix.
fn only_the_legacy_virtiofsd_is_refused_before_the_first_cell() -> Needs {
    use iostudy::runtime::microvm::virtiofsd::{Flavor, Virtiofsd};
    let legacy = Path::new("/usr/lib/qemu/virtiofsd");
    need(
        legacy.is_file() && Virtiofsd::identify(legacy).flavor == Flavor::Legacy,
        "QEMU's legacy virtiofsd at /usr/lib/qemu/virtiofsd (Debian 12's qemu-system-x86)",
    )?;
    need(have("qemu-system-x86_64"), "QEMU (apt-get install qemu-system-x86)")?;
    need(iostudy::runtime::microvm::kernel::find(None).is_ok(), "a guest kernel (apt-get install linux-image-amd64)")?;
    // Hide the Rust virtiofsd: a PATH of system directories only, and an empty HOME.
    let system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let rust_in_system = system_path
        .split(':')
        .chain(["/usr/libexec"])
        .map(|d| Path::new(d).join("virtiofsd"))
        .any(|p| p.is_file() && Virtiofsd::identify(&p).flavor == Flavor::Rust);
    need(!rust_in_system, "no maintained virtiofsd in the system directories (only in ~/.cargo/bin)")?;
    let dir = scratch();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let s = vm_study(dir.path(), "\"vmfs\"", "1s", "");
    let out = dir.path().join("results");
    let hidden = |args: &[&str]| {
        std::process::Command::new(bin()).args(args).env("PATH", system_path).env("HOME", &home).output().unwrap()
    };
    let plan = hidden(&["plan", s.to_str().unwrap()]);
    let text = stdout(&plan);
    let fix = "found only QEMU's legacy virtiofsd at /usr/lib/qemu/virtiofsd (virtiofsd version 7.";
    assert!(text.contains(fix) && text.contains("install the maintained one: cargo install virtiofsd"), "{text}");
    let run = hidden(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains(fix), "{}", stderr(&run));
    assert!(!out.exists(), "refused before anything was written");
    Ok(())
}

/// Four guests on 2 cores under TCG: the guests' clocks stay on the TSC (booted with
/// tsc=reliable), resolve nanoseconds, and latencies come out in microseconds.
fn four_guests_keep_a_microsecond_clock() -> Needs {
    vm_ready()?;
    let dir = scratch();
    let s = vm_study(dir.path(), "\"vm9p\"", "2s", "");
    std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("clients = [2]", "clients = [4]")).unwrap();
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &["--pattern", "randread"]);
    assert_eq!(code, Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let c = &stored_cells(&out)[0];
    assert_eq!(c.clients.len(), 4);
    let tcg = c.runtime.accelerator.as_deref() == Some("tcg");
    for r in &c.clients {
        if tcg {
            assert_eq!(r.host.clock_source.as_deref(), Some("tsc"), "client {}", r.client_id);
        }
        assert_eq!(r.host.clock_source_end, r.host.clock_source, "client {}: the clock stayed put", r.client_id);
        let res = r.host.clock_resolution_ns.unwrap();
        assert!(res <= 1_000, "client {}: the clock resolves {res} ns", r.client_id);
        let u = r.host.clock_sync_uncertainty_ns.expect("the guest set its clock by the controller's");
        assert!(u < 50_000_000, "client {}: synced to ±{u} ns", r.client_id);
        let p50 = r.summary.latency_ns.p50;
        assert!(
            p50 > 1_000 && p50 < 4_000_000,
            "client {}: p50 {p50} ns is a microsecond figure, not a jiffy",
            r.client_id
        );
    }
    assert!(c.runtime.notes.iter().any(|n| n.starts_with("guest clock: ")), "{:?}", c.runtime.notes);
    // QEMU's CPU is counted in the cell's cgroup.
    let (from, to) =
        (c.clients.iter().map(|r| r.start_ns).max().unwrap(), c.clients.iter().map(|r| r.end_ns).min().unwrap());
    let cpu = iostudy::results::cpu::cpu_between(&c.cpu, from, to).unwrap_or_else(|| {
        let t: Vec<(Option<&String>, Vec<u64>)> =
            c.cpu.iter().map(|s| (s.node.as_ref(), s.samples.iter().map(|x| x.t_ns).collect())).collect();
        panic!("CPU samples {t:?} do not cover the window {from}..{to}")
    });
    assert!(cpu.cgroup_s > 0.5, "four TCG guests keep CPUs busy: {cpu:?}");
    let md = std::fs::read_to_string(out.join("report/table.md")).unwrap();
    assert!(!md.contains("clock source changed"), "{md}");
    assert_nothing_left(dir.path(), pid);
    Ok(())
}

crate::trials![
    bare_vs_9p_vs_virtiofs_end_to_end,
    a_hung_guest_is_killed_and_its_console_kept,
    interrupting_a_vm_cell_leaves_no_vm_behind,
    a_failing_virtiofsd_speaks_for_itself,
    only_the_legacy_virtiofsd_is_refused_before_the_first_cell,
    four_guests_keep_a_microsecond_clock,
];
