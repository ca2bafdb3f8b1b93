//! containerd scenarios and `iostudy image`, with the real containerd, shims, runc,
//! crun and runsc: the image loads, clients run through the shims, and nothing of a run
//! stays in containerd — after success, a killed client, Ctrl-C, or a run killed
//! outright and reaped by the next.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iostudy::results::cell::CellStatus;

use crate::util::*;

/// A containerd the test starts, with private root, state and socket; stopped on drop.
struct TestContainerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl TestContainerd {
    fn start() -> TestContainerd {
        let dir = tempfile::Builder::new().prefix("iostudy-test-ctr.").tempdir_in("/run").unwrap();
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/c.sock\"\n[ttrpc]\n  address = \"{0}/c.sock.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{0}/opt\"\n",
            d.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("log")).unwrap();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new("containerd")
                .arg("--config")
                .arg(d.join("config.toml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let t = TestContainerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !t.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "the test's containerd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    fn address(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr").arg("-a").arg(self.address()).args(["-n", "iostudy"]).args(args).output().unwrap()
    }

    fn lines(&self, args: &[&str]) -> Vec<String> {
        String::from_utf8_lossy(&self.ctr(args).stdout).lines().map(str::trim).map(String::from).collect()
    }

    /// Nothing of iostudy's runs left in it: no container, no task, no container
    /// snapshot (the image's layer may stay), no shim.
    fn assert_clean(&self) {
        assert_eq!(self.lines(&["containers", "list", "--quiet"]), Vec::<String>::new(), "containers left");
        let tasks = self.lines(&["tasks", "list"]);
        assert!(tasks.len() <= 1, "tasks left: {tasks:?}");
        let active: Vec<String> =
            self.lines(&["snapshots", "list"]).into_iter().filter(|l| l.contains("Active")).collect();
        assert!(active.is_empty(), "container snapshots left: {active:?}");
        assert_no_shims(&self.address());
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
        for pid in processes_mentioning(&self.address().display().to_string()) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
        iostudy::safety::unmount_under(self.dir.path());
    }
}

/// No shim (or other process) serving `address` survives.
fn assert_no_shims(address: &Path) {
    let marker = address.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<String> = processes_mentioning(&marker)
        .into_iter()
        .map(|p| {
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default()).replace('\0', " ")
        })
        .collect();
    assert!(left.is_empty(), "processes of {marker} left: {left:?}");
}

/// No worker of a container is left, whatever started it.
fn assert_no_container_workers() {
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = || processes_mentioning("/iostudy worker --job /data/");
    while !left().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(left(), Vec::<u32>::new(), "container workers left");
}

/// No containerd or shim of a run's own state survives.
fn assert_no_private_daemon(run_pid: u32) {
    assert_no_shims(Path::new(&format!("/run/iostudy/{run_pid}-")));
}

fn needs() -> Needs {
    need(is_root(), "root (containers)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")?;
    need(have("containerd") && have("ctr"), "containerd (apt-get install containerd)")?;
    need(have("runc") && have("crun") && have("runsc"), "runc, crun and runsc (apt-get install runc crun runsc)")
}

/// Waits until `run`'s first cell went; a run that ended first is a failure with its
/// own words.
fn wait_go(dir: &Path, run: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !first_cell_went(dir) {
        if let Some(st) = run.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the run ended ({st}) before its first cell went: {err}");
        }
        assert!(Instant::now() < deadline, "the first cell's clients were never told to go");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A study in `dir` with `scenarios`, and an `ext-runc` scenario on `address`.
fn study(dir: &Path, scenarios: &str, runtime: &str, address: &Path) -> PathBuf {
    let text = format!(
        r#"[study]
name = "ctr"
target = "{target}"

[workload]
bs = "64K"
size = "4M"
numjobs = 2
runtime = "{runtime}"

[matrix]
scenarios = [{scenarios}]
clients = [2]
patterns = ["randread", "write"]

[scenarios.ext-runc]
runtime = "containerd"
address = "{address}"
"#,
        target = dir.join("target").display(),
        address = address.display()
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn image_is_reproducible_and_loads_in_containerd_and_skopeo() -> Needs {
    needs()?;
    need(have("skopeo"), "skopeo (apt-get install skopeo)")?;
    let dir = scratch();
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    for out in [&a, &b] {
        let o = iostudy(&["image", "-o", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "the same binary gives the same image");
    let said = stdout(&iostudy(&["image", "-o", a.to_str().unwrap()]));
    let name = said.split_whitespace().nth(2).unwrap().to_string();
    assert!(name.starts_with("localhost/iostudy:"), "{said}");

    let ctrd = TestContainerd::start();
    let o = ctrd.ctr(&["images", "import", a.to_str().unwrap()]);
    assert!(o.status.success(), "ctr refused it: {}", stderr(&o));
    assert!(ctrd.lines(&["images", "list", "--quiet"]).contains(&name), "imported under its name");
    let o = ctrd.ctr(&["run", "--rm", &name, "iostudy-image-test", "/iostudy", "--version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("iostudy {}", env!("CARGO_PKG_VERSION")));
    ctrd.assert_clean();

    // skopeo reads the archive and checks every blob's digest while copying it.
    let copy = dir.path().join("copy");
    let o = Command::new("skopeo")
        .args(["copy", &format!("oci-archive:{}", a.display()), &format!("oci:{}:t", copy.display())])
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo refused it: {}", stderr(&o));
    Ok(())
}

fn a_study_runs_through_containerd_shims_and_leaves_nothing() -> Needs {
    needs()?;
    let ctrd = TestContainerd::start();
    let dir = scratch();
    let s = study(
        dir.path(),
        "\"runc\", \"ctr-runc\", \"ctr-crun\", \"ctr-gvisor\", \"ext-runc\"",
        "500ms",
        &ctrd.address(),
    );
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &["--pattern", "randread"]);
    assert_eq!(code, Some(0), "{so}\n{se}");
    let all = stored_cells(&out);
    assert_eq!(all.len(), 5);
    for c in &all {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.scenario, c.failure);
        assert_eq!(c.clients.len(), 2);
        assert!(c.clients.iter().all(|r| r.read.ops > 0));
        if c.cell.scenario == "runc" {
            continue;
        }
        // Every cell records containerd's version, the shim and the shim's binary.
        let version = c.runtime.version.as_deref().unwrap();
        assert!(version.starts_with("containerd 1."), "{version}");
        assert!(version.contains("shim io.containerd.runc.v2"), "{version}");
        let binary = match c.cell.scenario.as_str() {
            "ctr-crun" => "crun version",
            "ctr-gvisor" => "runsc version",
            _ => "runc version",
        };
        assert!(version.contains(binary), "{}: {version}", c.cell.scenario);
        assert_eq!(c.runtime.kind, "containerd");
    }
    // gVisor's clients really ran in gVisor: their kernel is gVisor's.
    let gvisor = all.iter().find(|c| c.cell.scenario == "ctr-gvisor").unwrap();
    let kernel = &gvisor.clients[0].host.kernel;
    let host_kernel = rustix::system::uname().release().to_string_lossy().into_owned();
    assert_ne!(kernel, &host_kernel, "gVisor reports its own kernel version");
    assert_nothing_left(dir.path(), pid);
    assert_no_private_daemon(pid);
    assert_no_container_workers();
    ctrd.assert_clean();
    assert!(
        !ctrd.lines(&["images", "list", "--quiet"]).is_empty(),
        "the image stays in the user's containerd, for the next run"
    );
    Ok(())
}

fn faults_interrupts_and_kills_leave_nothing_in_containerd() -> Needs {
    needs()?;
    let ctrd = TestContainerd::start();
    let dir = scratch();

    // A client's worker killed inside its container: its cell fails, the study goes on.
    let s = study(dir.path(), "\"ext-runc\"", "3s", &ctrd.address());
    let out = dir.path().join("killed-client");
    let mut run = spawn_run(&s, &out, &[]);
    let run_pid = run.id();
    wait_go(dir.path(), &mut run);
    std::thread::sleep(Duration::from_millis(300));
    // The worker itself, not the `ctr run` that names it.
    let workers: Vec<u32> = processes_mentioning("cell-0/job-1.json")
        .into_iter()
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(b"/iostudy\0worker\0")))
        .collect();
    assert_eq!(workers.len(), 1, "client 1's worker runs in its container");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(workers[0] as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let st = wait_for(&mut run, Duration::from_secs(90));
    assert_eq!(st.code(), Some(1));
    let all = stored_cells(&out);
    assert_eq!(all.len(), 2, "the study went on to its next cell");
    let first = all.iter().find(|c| c.cell.pattern.name() == "randread").unwrap();
    assert_eq!(first.status, CellStatus::Failed);
    assert!(first.client_failures.iter().any(|f| f.client == 1), "{:?}", first.client_failures);
    assert_eq!(all.iter().find(|c| c.cell.pattern.name() == "write").unwrap().status, CellStatus::Ok);
    assert_nothing_left(dir.path(), run_pid);
    assert_no_container_workers();
    ctrd.assert_clean();

    // Ctrl-C in a cell of the run's own containerd.
    let s = study(dir.path(), "\"ctr-runc\", \"ext-runc\"", "20s", &ctrd.address());
    let mut run = spawn_run(&s, &dir.path().join("interrupted"), &["--scenario", "ctr-runc"]);
    let run_pid = run.id();
    wait_go(dir.path(), &mut run);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(run_pid as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    assert_eq!(wait_for(&mut run, Duration::from_secs(60)).code(), Some(130));
    assert_nothing_left(dir.path(), run_pid);
    assert_no_private_daemon(run_pid);
    assert_no_container_workers();

    // Killed outright (SIGKILL: no handler runs) in a cell of each kind of daemon; the
    // next run reaps what each left.
    for scenario in ["ctr-runc", "ext-runc"] {
        let s = study(dir.path(), "\"ctr-runc\", \"ext-runc\", \"bare\"", "20s", &ctrd.address());
        let mut run = spawn_run(&s, &dir.path().join(format!("killed-{scenario}")), &["--scenario", scenario]);
        let killed = run.id();
        wait_go(dir.path(), &mut run);
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(killed as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        run.wait().unwrap();
        assert!(!processes_mentioning("/iostudy worker --job /data/").is_empty(), "its containers still run");
        let (code, _, se, pid) = run_study(
            &s,
            &dir.path().join(format!("next-{scenario}")),
            &["--scenario", "bare", "--pattern", "write", "--scale", "0.05"],
        );
        assert_eq!(code, Some(0), "{se}");
        assert!(se.contains(&format!("note: cleaned up after run {killed}-")), "{se}");
        assert_nothing_left(dir.path(), killed);
        assert_nothing_left(dir.path(), pid);
        assert_no_private_daemon(killed);
        assert_no_container_workers();
        ctrd.assert_clean();
    }
    Ok(())
}

crate::trials![
    image_is_reproducible_and_loads_in_containerd_and_skopeo,
    a_study_runs_through_containerd_shims_and_leaves_nothing,
    faults_interrupts_and_kills_leave_nothing_in_containerd,
];
