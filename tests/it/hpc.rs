//! The container runtimes HPC sites offer, on this host: Podman (crun, runc and gVisor
//! underneath; rootful, and rootless as an unprivileged user) and Charliecloud — each
//! client's result back through the barrier, nothing of the user's Podman storage
//! touched, and nothing left after Ctrl-C. (Under Slurm: `slurm.rs`.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use iostudy::results::cell::CellStatus;

use crate::util::*;

fn study(dir: &Path, scenarios: &str, runtime: &str) -> PathBuf {
    let path = dir.join("study.toml");
    let text = format!(
        r#"[study]
name = "hpc"
target = "{target}"
drop_caches = false

[workload]
bs = "64K"
size = "4M"
numjobs = 2
runtime = "{runtime}"

[matrix]
scenarios = [{scenarios}]
clients = [2]
patterns = ["read", "write"]
"#,
        target = dir.join("target").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn hpc_ready() -> Needs {
    need(is_root(), "root (containers)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")?;
    need(have("podman") && have("ch-run"), "Podman and Charliecloud (apt-get install podman charliecloud)")?;
    need(have("crun") && have("runc") && have("runsc"), "crun, runc and runsc (apt-get install crun runc runsc)")
}

/// The images in the host's own Podman storage (which a run must leave alone).
fn users_images() -> String {
    let o = Command::new("podman").args(["images", "--format", "{{.ID}} {{.Repository}}"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Processes of a container runtime still running a worker of `dir`.
fn runtime_processes(dir: &Path) -> Vec<String> {
    let o = Command::new("pgrep").args(["-a", "-f", "conmon|ch-run|runsc"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()) || l.contains("iostudy-"))
        .map(str::to_string)
        .collect()
}

fn podman_and_charliecloud_run_studies() -> Needs {
    hpc_ready()?;
    let before = users_images();
    let dir = scratch();
    let scenarios = "\"bare\", \"podman\", \"podman-runc\", \"podman-gvisor\", \"charliecloud\"";
    let s = study(dir.path(), scenarios, "1s");
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &[]);
    assert_eq!(code, Some(0), "stdout:\n{so}\nstderr:\n{se}");
    let cells = stored_cells(&out);
    assert_eq!(cells.len(), 10, "5 scenarios × 2 patterns");
    let bare_kernel = &cells.iter().find(|c| c.cell.scenario == "bare").unwrap().clients[0].host.kernel;
    for c in &cells {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.id, c.failure);
        assert_eq!(c.clients.len(), 2, "{}: both clients' results", c.cell.id);
        assert!(c.clients.iter().all(|r| r.read.bytes + r.write.bytes > 0), "{}", c.cell.id);
        let go = c.start_ns.unwrap();
        assert!(c.clients.iter().all(|r| r.start_ns >= go), "{}: the barrier held", c.cell.id);
        let (runtime, kernel) = (&c.runtime.name, &c.clients[0].host.kernel);
        match c.cell.scenario.as_str() {
            "podman" => assert_eq!(runtime, "podman/crun"),
            "podman-runc" => assert_eq!(runtime, "podman/runc"),
            // gVisor's kernel answers inside: the client really ran in its sandbox.
            "podman-gvisor" => {
                assert_eq!(runtime, "podman/runsc");
                assert_ne!(kernel, bare_kernel);
            }
            "charliecloud" => assert_eq!(runtime, "charliecloud/ch-run"),
            _ => {}
        }
        if c.cell.scenario != "bare" {
            assert!(c.runtime.version.as_deref().is_some_and(|v| !v.is_empty()), "{}: {:?}", c.cell.id, c.runtime);
        }
    }
    // Rootful Podman puts its containers under the cell's cgroup: their CPU is counted.
    let csv = std::fs::read_to_string(out.join("report/table.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for row in csv.lines().skip(1).filter(|r| r.starts_with("podman,") || r.starts_with("charliecloud,")) {
        let f: Vec<&str> = row.split(',').collect();
        assert!(f[at("host_cpu_s_per_gib")].parse::<f64>().is_ok_and(|c| c > 0.0), "host CPU counted: {row}");
    }
    assert_nothing_left(dir.path(), pid);
    assert_eq!(runtime_processes(dir.path()), Vec::<String>::new());
    assert_eq!(users_images(), before, "the host's own Podman storage is untouched");
    Ok(())
}

fn interrupted_podman_and_charliecloud_leave_nothing() -> Needs {
    hpc_ready()?;
    for scenario in ["podman", "charliecloud"] {
        let dir = scratch();
        let s = study(dir.path(), &format!("\"{scenario}\""), "60s");
        let out = dir.path().join("results");
        let mut run = spawn_run(&s, &out, &[]);
        wait_first_cell_go(dir.path(), Duration::from_secs(60));
        let pid = run.id();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::INT,
        )
        .unwrap();
        assert_eq!(wait_for(&mut run, Duration::from_secs(60)).code(), Some(130), "{scenario}");
        assert_nothing_left(dir.path(), pid);
        assert_eq!(runtime_processes(dir.path()), Vec::<String>::new(), "{scenario}");
    }
    Ok(())
}

/// An unprivileged user's study: rootless Podman (runc underneath) and Charliecloud
/// run; crun, which refuses a cgroup v1/v2 hybrid host without root, is named with
/// the fix before anything runs.
fn an_unprivileged_user_runs_rootless_containers() -> Needs {
    hpc_ready()?;
    need(have("setpriv"), "setpriv (util-linux)")?;
    // Everything the user needs in a directory of theirs: the binary, the study, home.
    let dir = scratch();
    rustix::fs::chown(dir.path(), Some(rustix::fs::Uid::from_raw(65534)), Some(rustix::fs::Gid::from_raw(65534)))
        .unwrap();
    let worker = dir.path().join("iostudy");
    std::fs::copy(bin(), &worker).unwrap();
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = study(dir.path(), "\"podman-runc\", \"charliecloud\"", "1s");
    let as_user = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
            .arg(format!("HOME={}", dir.path().display()))
            .arg(&worker)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    let out = dir.path().join("results");
    let o = as_user(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", stdout(&o), stderr(&o));
    let cells = stored_cells(&out);
    assert_eq!(cells.len(), 4);
    for c in &cells {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.id, c.failure);
        assert!(c.clients.iter().all(|r| r.read.bytes + r.write.bytes > 0));
    }
    let podman = cells.iter().find(|c| c.cell.scenario == "podman-runc").unwrap();
    assert!(
        podman.runtime.notes.iter().any(|n| n.contains("rootless Podman")),
        "the run says its containers were rootless: {:?}",
        podman.runtime.notes
    );
    if iostudy::runtime::oci::cgroup_hybrid() {
        let s = study(dir.path(), "\"podman\"", "1s");
        let o = as_user(&["plan", s.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stdout(&o).contains("rootless crun refuses a cgroup v1/v2 hybrid host")
                && stdout(&o).contains("podman-runc"),
            "{}",
            stdout(&o)
        );
    }
    assert_eq!(runtime_processes(dir.path()), Vec::<String>::new());
    Ok(())
}

crate::trials![
    podman_and_charliecloud_run_studies,
    interrupted_podman_and_charliecloud_leave_nothing,
    an_unprivileged_user_runs_rootless_containers,
];
