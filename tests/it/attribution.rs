//! Attribution on real runs: bare and runc traced by the real bpftrace, a 9p micro-VM
//! timed at all four layers (its own kernel, QEMU's trace, the host's syscalls), and
//! refusal where tracing cannot run.

use std::path::{Path, PathBuf};

use iostudy::attribution::{CLIENT, GUEST, HOST, VMM};
use iostudy::results::cell::{CellResult, CellStatus};

use crate::microvm::vm_ready;
use crate::util::*;

fn tracing_ready() -> Needs {
    need(is_root(), "root (attribution traces the kernel)")?;
    need(have("bpftrace"), "bpftrace (apt-get install bpftrace)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")
}

fn study(dir: &Path, scenarios: &str, tables: &str, target: &Path) -> PathBuf {
    let text = format!(
        r#"[study]
name = "attr"
target = "{target}"
keep_files = false
attribute = true

[workload]
bs = "64K"
size = "8M"
numjobs = 1
runtime = "1s"

[matrix]
scenarios = [{scenarios}]
clients = [1]
patterns = ["read", "write"]
{tables}"#,
        target = target.display()
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn p50(c: &CellResult, layer: &str) -> (u64, f64) {
    let a = c.attribution.as_ref().unwrap();
    let l = a.layer(layer).unwrap_or_else(|| panic!("{}: no layer {layer}", c.cell.id));
    let h = l.histogram.as_ref().unwrap_or_else(|| panic!("{}: {layer} not measured: {:?}", c.cell.id, l.not_measured));
    let h = h.decode().unwrap();
    (h.value_at_quantile(0.5), h.mean())
}

fn bare_runc_and_gvisor_are_traced_at_the_syscall() -> Needs {
    tracing_ready()?;
    need(have("runc"), "runc (apt-get install runc)")?;
    need(have("runsc"), "gVisor (apt-get install runsc)")?;
    let dir = scratch();
    let shm = TmpMount::new("size=256m");
    let s = study(dir.path(), "\"bare\", \"runc\", \"gvisor\"", "", &shm.path().join("t"));
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &[]);
    assert_eq!(code, Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let cells = stored_cells(&out);
    assert_eq!(cells.len(), 12, "each cell traced and untraced");
    for c in &cells {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.id, c.failure);
        if !c.cell.attributed() {
            assert!(c.attribution.is_none(), "{}: an untraced cell is a normal one", c.cell.id);
            continue;
        }
        let a = c.attribution.as_ref().unwrap();
        if c.cell.scenario == "gvisor" {
            // The sandbox's own host syscalls serve the client's: inside its time.
            let ((client, _), (host, _)) = (p50(c, CLIENT), p50(c, HOST));
            assert!(host < client, "{}: host {host} ns inside client {client} ns", c.cell.id);
            assert!(a.cpu.iter().any(|r| r.role == "sandbox" && r.cpu_ns > 0), "{}: {:?}", c.cell.id, a.cpu);
            continue;
        }
        // Each client I/O is one host syscall of 64 KiB, and nothing else in between.
        let per_io = a.host_syscalls.unwrap() as f64 / a.client_ios as f64;
        assert!((per_io - 1.0).abs() <= 0.01, "{}: {per_io} syscalls per I/O", c.cell.id);
        assert_eq!(a.host_bytes.unwrap(), a.client_bytes, "{}", c.cell.id);
        let (client, client_mean) = p50(c, CLIENT);
        let (host, host_mean) = p50(c, HOST);
        assert!(host <= client && host_mean <= client_mean, "{}: host {host} ns inside client {client} ns", c.cell.id);
        assert!(a.layer(GUEST).is_none() && a.layer(VMM).is_none());
        // The client's CPU is the worker's, by name.
        assert!(a.cpu.iter().any(|r| r.role == "client" && r.cpu_ns > 0), "{}: {:?}", c.cell.id, a.cpu);
    }
    // The report: the table's columns, the charts, the terminal's summary.
    let csv = std::fs::read_to_string(out.join("report/table.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    // Counted from the end: the warnings before the attribution columns hold commas.
    let from_end = header.len() - 1 - header.iter().position(|h| *h == "attr_host_syscalls_per_io").unwrap();
    let traced: Vec<&str> = csv.lines().filter(|l| l.contains("attribute=on")).collect();
    assert_eq!(traced.len(), 6);
    let syscalls = |l: &&str| l.rsplit(',').nth(from_end).map(str::to_string);
    assert!(
        traced.iter().filter(|l| !l.starts_with("gvisor")).all(|l| syscalls(l).as_deref() == Some("1.000")),
        "{csv}"
    );
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    assert!(html.contains("id=\"attribution-table\"") && html.contains("p50 goes, layer by layer"));
    assert!(out.join("report/attribution-latency.png").is_file() && out.join("report/attribution-cpu.png").is_file());
    assert!(so.contains("of p50 in host syscall"), "{so}");
    assert!(processes_mentioning("iostudy-attached").is_empty(), "no bpftrace left");
    assert_nothing_left(dir.path(), pid);
    Ok(())
}

fn micro_vms_are_timed_at_every_layer_and_they_nest() -> Needs {
    tracing_ready()?;
    vm_ready()?;
    let dir = scratch();
    let tables = "\n[scenarios.vm9p]\nruntime = \"microvm\"\nshare = \"9p\"\ncache = \"none\"\n\
                  \n[scenarios.vmfs]\nruntime = \"microvm\"\nshare = \"virtiofs\"\ncache = \"never\"\n";
    let s = study(dir.path(), "\"vm9p\", \"vmfs\"", tables, &dir.path().join("target"));
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &[]);
    assert_eq!(code, Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let traced: Vec<CellResult> = stored_cells(&out).into_iter().filter(|c| c.cell.attributed()).collect();
    assert_eq!(traced.len(), 4);
    for c in &traced {
        let vmm = &c.attribution.as_ref().unwrap().layer(VMM).unwrap().boundary;
        let server = if c.cell.scenario == "vm9p" { "QEMU v9fs_read" } else { "virtiofsd" };
        assert!(vmm.starts_with(server), "{}: {vmm}", c.cell.id);
        // Each measured at its own boundary: none missing, each inside the one outside it.
        let layers: Vec<(u64, f64)> = [CLIENT, GUEST, VMM, HOST].iter().map(|l| p50(c, l)).collect();
        for w in layers.windows(2) {
            assert!(w[1].0 <= w[0].0 && w[1].1 <= w[0].1, "{}: layers nest: {layers:?}", c.cell.id);
        }
        let a = c.attribution.as_ref().unwrap();
        let roles: Vec<&str> = a.cpu.iter().map(|r| r.role.as_str()).collect();
        assert!(roles.contains(&"guest vCPU") && roles.contains(&"VMM I/O"), "{roles:?}");
        assert_eq!(roles.contains(&"file server"), c.cell.scenario == "vmfs", "{roles:?}");
    }
    assert_nothing_left(dir.path(), pid);
    Ok(())
}

fn attribution_is_refused_where_it_cannot_run() -> Needs {
    need(static_worker(), "a static iostudy")?;
    let dir = scratch();
    let s = study(dir.path(), "\"bare\"", "", &dir.path().join("target"));
    // Without bpftrace on the PATH (or without root), plan says why and what to do.
    let o = std::process::Command::new(bin())
        .args(["plan", s.to_str().unwrap()])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let text = stdout(&o) + &stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("attribution cannot run here"), "{text}");
    let why = if is_root() { "apt-get install bpftrace" } else { "run iostudy as root" };
    assert!(text.contains(why), "{text}");
    assert!(!dir.path().join("target").exists(), "nothing was made");
    Ok(())
}

crate::trials![
    bare_runc_and_gvisor_are_traced_at_the_syscall,
    micro_vms_are_timed_at_every_layer_and_they_nest,
    attribution_is_refused_where_it_cannot_run
];
