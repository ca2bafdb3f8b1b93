//! Hostile inputs and concurrent runs: links and foreign files planted where iostudy
//! writes as root, two runs on one target, colliding names, unlike workloads compared,
//! studies the host cannot run, and files that cannot be written or read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// A minimal study of one scenario on `target`.
fn study_at(dir: &Path, target: &Path, scenarios: &str, extra: &str, workload: &str) -> PathBuf {
    let text = format!(
        r#"[study]
name = "hostile"
target = "{}"
{extra}

[workload]
bs = "64K"
size = "1M"
runtime = "500ms"
{workload}

[matrix]
scenarios = [{scenarios}]
clients = [1]
patterns = ["read"]
"#,
        target.display()
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `sh -c script` as the unprivileged user `nobody`.
fn as_nobody(script: &str) {
    let st = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script])
        .status()
        .unwrap();
    assert!(st.success(), "as nobody: {script}");
}

/// A directory in /dev/shm, where the examples put targets, removed at the end.
struct Bait(PathBuf);

impl Bait {
    fn new(name: &str) -> Bait {
        let p = PathBuf::from(format!("/dev/shm/iostudy-bait-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Bait(p)
    }
}

impl Drop for Bait {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn plan_and_run_refuse(study: &Path, results: &Path, expected: &str) {
    let plan = iostudy(&["plan", study.to_str().unwrap()]);
    assert_eq!(plan.status.code(), Some(2), "{}", stdout(&plan));
    assert!(stdout(&plan).contains(expected), "plan: {}", stdout(&plan));
    let run = iostudy(&["run", study.to_str().unwrap(), "-o", results.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains(expected), "run: {}", stderr(&run));
    assert!(!results.exists(), "nothing written into -o");
}

fn bait_laid_by_an_unprivileged_user_is_refused() -> Needs {
    need(is_root(), "root (a second user plants the bait)")?;
    need(have("setpriv"), "setpriv (util-linux)")?;
    let dir = scratch();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let other = Bait::new("elsewhere");
    as_nobody(&format!("mkdir -p {}", other.0.display()));
    let cases = [
        (
            "file-link",
            format!(
                "mkdir -p {{T}}/iostudy-data/client-0 && ln -s {} {{T}}/iostudy-data/client-0/iostudy.0.dat",
                victim.display()
            ),
        ),
        ("dir-link", format!("mkdir -p {{T}}/iostudy-data && ln -s {} {{T}}/iostudy-data/client-0", other.0.display())),
        (
            "foreign-file",
            "mkdir -p {T}/iostudy-data/client-0 && echo x > {T}/iostudy-data/client-0/iostudy.0.dat".into(),
        ),
    ];
    for (name, script) in cases {
        let bait = Bait::new(name);
        as_nobody(&script.replace("{T}", bait.0.to_str().unwrap()));
        let s = study_at(dir.path(), &bait.0, "\"bare\"", "", "");
        plan_and_run_refuse(
            &s,
            &dir.path().join(format!("results-{name}")),
            &format!("{} belongs to uid 65534", bait.0.display()),
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{name}: the victim is untouched");
        assert!(std::fs::read_dir(&other.0).unwrap().next().is_none(), "{name}: nothing written through the link");
    }
    // A parent directory another user controls.
    let parent = Bait::new("parent");
    as_nobody(&format!("mkdir {}", parent.0.display()));
    let s = study_at(dir.path(), &parent.0.join("t"), "\"bare\"", "", "");
    plan_and_run_refuse(&s, &dir.path().join("results-parent"), "which belongs to uid 65534");
    Ok(())
}

fn links_and_foreign_files_under_an_own_target_are_refused() -> Needs {
    need(is_root(), "root (files of another user)")?;
    let dir = scratch();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let target = dir.path().join("target");
    let client = target.join("iostudy-data/client-0");
    std::fs::create_dir_all(&client).unwrap();
    let data = client.join("iostudy.0.dat");
    std::os::unix::fs::symlink(&victim, &data).unwrap();
    let s = study_at(dir.path(), &target, "\"bare\"", "", "");
    plan_and_run_refuse(&s, &dir.path().join("r1"), "is a symbolic link, and iostudy does not follow links");
    // The engine refuses on its own too (a worker given such a directory).
    let o = iostudy(&["bench", "--directory", client.to_str().unwrap(), "--size", "1m"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is a symbolic link"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // Another user's file where a data file goes.
    std::fs::remove_file(&data).unwrap();
    std::fs::write(&data, b"theirs").unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    plan_and_run_refuse(&s, &dir.path().join("r2"), "belongs to uid 65534");
    let o = iostudy(&["bench", "--directory", client.to_str().unwrap(), "--size", "1m"]);
    assert!(stderr(&o).contains("belongs to uid 65534"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&data).unwrap(), b"theirs", "not adopted, not extended");
    // A target open to everyone, or a link.
    std::fs::remove_file(&data).unwrap();
    std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    plan_and_run_refuse(&s, &dir.path().join("r3"), "is writable by other users (mode 1777)");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let s = study_at(dir.path(), &link, "\"bare\"", "", "");
    plan_and_run_refuse(&s, &dir.path().join("r4"), "is a symbolic link, and iostudy does not follow links");
    Ok(())
}

fn teardown_removes_only_what_the_run_created() {
    let dir = scratch();
    let target = dir.path().join("target");
    let client = target.join("iostudy-data/client-0");
    std::fs::create_dir_all(&client).unwrap();
    std::fs::write(client.join("notes.txt"), b"mine, from before").unwrap();
    let s = study_at(dir.path(), &target, "\"bare\"", "keep_files = false", "numjobs = 2");
    let (code, _, se, _) = run_study(&s, &dir.path().join("results"), &[]);
    assert_eq!(code, Some(0), "{se}");
    assert_eq!(entries(&client), ["notes.txt"], "the run's data files are gone, the rest stays");
    assert!(target.join("iostudy-data").exists());
    // A target the run created itself is removed whole.
    let fresh = dir.path().join("fresh/target");
    let s = study_at(dir.path(), &fresh, "\"bare\"", "keep_files = false", "");
    let (code, _, se, _) = run_study(&s, &dir.path().join("results2"), &[]);
    assert_eq!(code, Some(0), "{se}");
    assert!(!dir.path().join("fresh").exists(), "{:?}", entries(dir.path()));
}

fn a_second_run_on_a_target_or_results_dir_is_refused() {
    let dir = scratch();
    let target = dir.path().join("target");
    let s = study_at(dir.path(), &target, "\"bare\"", "", "");
    std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("500ms", "4s")).unwrap();
    let first_out = dir.path().join("first");
    let mut first = spawn_run(&s, &first_out, &[]);
    wait_first_cell_go(dir.path(), Duration::from_secs(30));
    let second = iostudy(&["run", s.to_str().unwrap(), "-o", dir.path().join("second").to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(2));
    let e = stderr(&second);
    assert!(e.contains(&format!("{} is in use by another iostudy run (pid {}", target.display(), first.id())), "{e}");
    assert!(e.contains(&format!("results in {}", first_out.display())), "{e}");
    assert!(!dir.path().join("second/cells").exists(), "the refused run wrote no results");
    // Another target, the same results directory.
    std::fs::create_dir(dir.path().join("other")).unwrap();
    let other = study_at(&dir.path().join("other"), &dir.path().join("t2"), "\"bare\"", "", "");
    let same_out = iostudy(&["run", other.to_str().unwrap(), "-o", first_out.to_str().unwrap(), "--resume"]);
    assert_eq!(same_out.status.code(), Some(2));
    assert!(
        ["results directory", "is in use", "was written by a different study file"]
            .iter()
            .any(|m| stderr(&same_out).contains(m)),
        "{}",
        stderr(&same_out)
    );
    let st = wait_for(&mut first, Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "the first run is unharmed");
    assert_eq!(stored_cells(&first_out).len(), 1);
}

fn scenario_names_that_once_collided_get_distinct_cells() {
    let dir = scratch();
    let s = study_at(dir.path(), &dir.path().join("t"), "\"a/b\", \"a_b\"", "", "");
    let text = std::fs::read_to_string(&s).unwrap()
        + "\n[scenarios.\"a/b\"]\nruntime = \"process\"\n\n[scenarios.a_b]\nruntime = \"process\"\n";
    std::fs::write(&s, text).unwrap();
    let out = dir.path().join("results");
    let (code, so, se, _) = run_study(&s, &out, &["--mock"]);
    assert_eq!(code, Some(0), "{se}");
    assert!(so.contains("2 cell(s) run"), "{so}");
    let mut ids: Vec<String> = stored_cells(&out).into_iter().map(|c| c.cell.id).collect();
    ids.sort();
    assert_eq!(ids, ["a%2Fb.read.c1.r1", "a_b.read.c1.r1"]);
    let (code, so, _, _) = run_study(&s, &out, &["--mock", "--resume"]);
    assert_eq!(code, Some(0));
    assert!(so.contains("0 cell(s) run, 2 skipped"), "{so}");
}

fn compare_pairs_only_like_workloads() {
    let dir = scratch();
    let run_with = |name: &str, bs: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let s = study_at(&sub, &sub.join("t"), "\"bare\"", "", "");
        std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("bs = \"64K\"", &format!("bs = \"{bs}\"")))
            .unwrap();
        let out = sub.join("results");
        let (code, _, se, _) = run_study(&s, &out, &["--mock"]);
        assert_eq!(code, Some(0), "{se}");
        out
    };
    let a = run_with("a", "64K");
    let b = run_with("b", "4K");
    let o = iostudy(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "not a regression: not comparable\n{}", stdout(&o));
    let e = stderr(&o);
    assert!(e.contains("have no comparable cell") && e.contains("bs 65536 vs 4096"), "{e}");
}

fn plan_refuses_what_run_would() -> Needs {
    let dir = scratch();
    // A pseudo-filesystem.
    let s = study_at(dir.path(), Path::new("/proc/iostudy"), "\"bare\"", "", "");
    plan_and_run_refuse(&s, &dir.path().join("r-proc"), "is on procfs, a kernel pseudo-filesystem");
    // More clients or threads than the host can hold.
    let s = study_at(dir.path(), &dir.path().join("t"), "\"bare\"", "", "");
    std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("clients = [1]", "clients = [100000]")).unwrap();
    let o = iostudy(&["plan", s.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("cell bare.read.c100000.r1 needs about"), "{}", stdout(&o));
    let s = study_at(dir.path(), &dir.path().join("t"), "\"bare\"", "", "numjobs = 100000");
    let o = iostudy(&["plan", s.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("numjobs 100000 is more than 4096 threads per client"), "{}", stderr(&o));
    // The most threads a study takes, on a host that allows 1000 open files.
    let s = study_at(dir.path(), &dir.path().join("t"), "\"bare\"", "", "numjobs = 4096");
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["plan", s.to_str().unwrap()]);
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let l = rustix::process::Rlimit { current: Some(1000), maximum: Some(1000) };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, l).map_err(std::io::Error::from)
        });
    }
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains("numjobs 4096 needs 4160 open files per client, and this host allows 1000"),
        "{}",
        stdout(&o)
    );
    need(is_root(), "root (read-only and block-device filesystems)")?;
    // A read-only target: refused before -o is written.
    let ro = TmpMount::new("ro,size=8m,mode=0755");
    let s = study_at(dir.path(), ro.path(), "\"bare\"", "", "");
    plan_and_run_refuse(&s, &dir.path().join("r-ro"), "is on a read-only filesystem");
    // A target exactly as big as the files: the filesystem needs room of its own.
    let exact = TmpMount::new("size=4m,mode=0755");
    let s = study_at(dir.path(), exact.path(), "\"bare\"", "", "numjobs = 4");
    plan_and_run_refuse(&s, &dir.path().join("r-full"), "the data files need 4MiB more on");
    // O_DIRECT at a block size the filesystem cannot align (4 KiB sectors, bs 512).
    need(have("mkfs.ext4") && have("losetup"), "mkfs.ext4 and losetup")?;
    let fs = LoopFs::new(4096);
    let s = study_at(dir.path(), &fs.path().join("t"), "\"bare\"", "", "direct = true\nbs = [\"512\", \"4K\"]");
    let text = std::fs::read_to_string(&s).unwrap().replacen("bs = \"64K\"\n", "", 1);
    std::fs::write(&s, text).unwrap();
    plan_and_run_refuse(&s, &dir.path().join("r-direct"), "needs I/O aligned to 4096 bytes, but bs is 512");
    Ok(())
}

fn unwritable_and_unreadable_results_are_explained() -> Needs {
    let dir = scratch();
    let s = study_at(dir.path(), &dir.path().join("t"), "\"bare\", \"runc\"", "", "");
    let out = dir.path().join("results");
    let (code, _, se, _) = run_study(&s, &out, &["--mock"]);
    assert_eq!(code, Some(0), "{se}");
    // A truncated cell file is skipped with a warning, not fatal.
    let cells = out.join("cells");
    let victim = cells.join(&entries(&cells)[0]);
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    // A chart that cannot be written: its name is taken by a directory.
    std::fs::remove_file(out.join("report/bandwidth.png")).unwrap();
    std::fs::create_dir(out.join("report/bandwidth.png")).unwrap();
    let o = iostudy(&["report", out.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(e.contains("warning: skipped") && e.contains("is not valid JSON (truncated or damaged?)"), "{e}");
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("cannot write") && e.contains("bandwidth.png"), "{e}");
    assert!(!e.contains("Os {") && !e.contains("kind:"), "no Rust debug output: {e}");
    let stray: Vec<String> = entries(&out.join("report")).into_iter().filter(|f| f.contains(".tmp")).collect();
    assert!(stray.is_empty(), "no half-written chart: {stray:?}");
    std::fs::remove_dir(out.join("report/bandwidth.png")).unwrap();
    let o = iostudy(&["report", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A results filesystem that fills up: where, and how to continue.
    need(is_root(), "root (a small tmpfs)")?;
    let small = TmpMount::new("size=48k,mode=0755");
    let full = small.path().join("results");
    let s = study_at(dir.path(), &dir.path().join("t"), "\"bare\", \"runc\"", "", "");
    std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("clients = [1]", "clients = [1, 2, 3, 4]"))
        .unwrap();
    let (code, _, se, _) = run_study(&s, &full, &["--mock"]);
    assert_eq!(code, Some(2), "{se}");
    assert!(se.contains("No space left on device") && se.contains("continue with --resume and the same -o"), "{se}");
    Ok(())
}

/// Numbers beyond what a run can hold are refused where they are read, with their
/// place in the file: `plan` refuses what `run` would overflow on.
fn every_number_is_bounded_where_it_is_read() {
    let dir = scratch();
    for (workload, extra, expected) in [
        ("runtime = \"100000000000000d\"", "", "is longer than a year"),
        ("ramp_time = \"400d\"", "", "is longer than a year"),
        ("", "cell_timeout = \"100000000000000d\"", "is longer than a year"),
        ("", "barrier_timeout = \"1ns\"", "barrier_timeout 1ns is shorter than a second"),
        (
            "runtime = \"5s\"",
            "cell_timeout = \"2s\"",
            "cell_timeout 2s is shorter than the ramp and runtime of a cell (5s)",
        ),
        ("bs = \"2G\"", "", "bs 2GiB is larger than 1GiB"),
        ("size = \"18446744073709551616\"", "", "beyond what a 64-bit count of bytes holds"),
        ("size = \"1844674407370955161564k\"", "", "beyond what a 64-bit count of bytes holds"),
        ("numjobs = 5000", "", "numjobs 5000 is more than 4096 threads per client"),
    ] {
        let s = study_at(dir.path(), &dir.path().join("t"), "\"bare\"", extra, workload);
        let text = std::fs::read_to_string(&s).unwrap();
        // A key given twice would be a TOML error: the extra wins over the default.
        let text = if workload.starts_with("bs") || workload.starts_with("size") || workload.starts_with("runtime") {
            let key = workload.split(' ').next().unwrap();
            let line = text.lines().find(|l| l.starts_with(&format!("{key} ="))).unwrap().to_string();
            text.replacen(&format!("{line}\n"), "", 1)
        } else {
            text
        };
        std::fs::write(&s, text).unwrap();
        for cmd in ["plan", "run"] {
            let mut args = vec![cmd, s.to_str().unwrap()];
            let out = dir.path().join("r");
            if cmd == "run" {
                args.extend(["-o", out.to_str().unwrap()]);
            }
            let o = iostudy(&args);
            assert_eq!(o.status.code(), Some(2), "{cmd} {workload}{extra}: {}", stdout(&o));
            assert!(stderr(&o).contains(expected) && stderr(&o).contains("study.toml:"), "{cmd}: {}", stderr(&o));
            assert!(!out.exists(), "{cmd} {workload}{extra}: nothing written");
        }
    }
}

crate::trials![
    every_number_is_bounded_where_it_is_read,
    bait_laid_by_an_unprivileged_user_is_refused,
    links_and_foreign_files_under_an_own_target_are_refused,
    teardown_removes_only_what_the_run_created,
    a_second_run_on_a_target_or_results_dir_is_refused,
    scenario_names_that_once_collided_get_distinct_cells,
    compare_pairs_only_like_workloads,
    plan_refuses_what_run_would,
    unwritable_and_unreadable_results_are_explained,
];
