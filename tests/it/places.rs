//! Every way a user names a place, run from a working directory as a user would: `demo`
//! with no `-o`, relative study files and results directories, `.`/`..`, a working
//! directory reached through a link or removed under the shell; and runs refused before
//! their first cell, which must leave nothing they created behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

/// Runs iostudy with `args` from the working directory `cwd`.
fn iostudy_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin()).args(args).current_dir(cwd).output().expect("iostudy runs")
}

/// A one-cell study file `name` in `dir` on the target `target` (absolute).
fn study_file(dir: &Path, name: &str, target: &Path) -> PathBuf {
    let text = format!(
        "[study]\nname = \"places\"\ntarget = \"{}\"\n\n[workload]\nbs = \"64K\"\nsize = \"1M\"\nruntime = \"500ms\"\n\n\
         [matrix]\nscenarios = [\"bare\"]\nclients = [1]\npatterns = [\"read\"]\n",
        target.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
    stdout(o)
}

fn demo_without_o_writes_into_the_working_directory() {
    let cwd = scratch();
    let o = iostudy_in(cwd.path(), &["demo", "--mock"]);
    let out = ok(&o);
    let made: Vec<String> = entries(cwd.path()).into_iter().filter(|e| e.starts_with("iostudy-demo-")).collect();
    assert_eq!(made.len(), 1, "{:?}", entries(cwd.path()));
    let results = cwd.path().join(&made[0]);
    assert!(results.join("report/report.html").is_file());
    let cells = stored_cells(&results);
    let said = out.clone() + &stderr(&o);
    let planned: usize = said
        .lines()
        .find_map(|l| l.strip_prefix("iostudy demo: ")?.split(' ').next()?.parse().ok())
        .expect("the demo says how many cells it plans");
    assert!(planned >= 8, "{said}");
    assert_eq!(cells.len(), planned, "every cell of the demo is stored");
    assert!(out.contains(&format!("results in {}", results.display())), "the absolute place is named:\n{out}");
}

fn run_and_plan_take_relative_paths() {
    let cwd = scratch();
    let target = cwd.path().join("target");
    study_file(cwd.path(), "s.toml", &target);
    let sub = cwd.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let plan = ok(&iostudy_in(&sub, &["plan", "../s.toml"]));
    assert!(plan.contains(&format!("file: {}", cwd.path().join("sub/../s.toml").display())), "{plan}");
    // -o relative and nested, none of it existing yet.
    let o = iostudy_in(&sub, &["run", "../s.toml", "-o", "a/b/c", "--mock"]);
    let out = ok(&o);
    let results = sub.join("a/b/c");
    assert_eq!(stored_cells(&results).len(), 1, "{out}");
    assert!(out.contains(&format!("results in {}", results.display())), "{out}");
    // `-o .` in an empty directory puts the results there.
    let here = cwd.path().join("here");
    std::fs::create_dir(&here).unwrap();
    ok(&iostudy_in(&here, &["run", "../s.toml", "-o", ".", "--mock"]));
    assert_eq!(stored_cells(&here).len(), 1);
    // `-o ..`: a directory holding other things, not a results directory: refused.
    let o = iostudy_in(&here, &["run", "../s.toml", "-o", "..", "--mock"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(e.contains(&format!("{} is not empty and not an iostudy results directory", cwd.path().display())), "{e}");
    // `report` and `compare` of relative directories.
    ok(&iostudy_in(&sub, &["report", "a/b/c"]));
    let c = ok(&iostudy_in(cwd.path(), &["compare", "sub/a/b/c", "here"]));
    assert!(c.contains("no significant change"), "{c}");
}

fn a_working_directory_through_a_link_or_removed() -> Needs {
    need(have("sh"), "sh")?;
    let dir = scratch();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    study_file(&real, "s.toml", &dir.path().join("target"));
    // Entered through a link: the results land in the real directory.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && exec {} run s.toml -o out --mock", link.display(), bin().display()))
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(stored_cells(&real.join("out")).len(), 1);
    // A working directory removed after the shell entered it.
    let gone = dir.path().join("gone");
    std::fs::create_dir(&gone).unwrap();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {gone} && rmdir {gone} && exec {bin} run {study} -o out --mock",
            gone = gone.display(),
            bin = bin().display(),
            study = real.join("s.toml").display()
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("out is relative, and the working directory is gone"), "{}", stderr(&o));
    Ok(())
}

fn import_fio_takes_relative_files() -> Needs {
    need(have("fio"), "fio (apt-get install fio)")?;
    let cwd = scratch();
    let o = Command::new("fio")
        .args([
            "--name=j",
            "--directory=.",
            "--rw=read",
            "--bs=64k",
            "--size=1m",
            "--output-format=json+",
            "--output=c0.json",
        ])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = ok(&iostudy_in(cwd.path(), &["import", "fio", "c0.json", "-o", "imported"]));
    assert!(out.contains(&format!("into {}", cwd.path().join("imported").display())), "{out}");
    assert_eq!(stored_cells(&cwd.path().join("imported")).len(), 1);
    Ok(())
}

/// Each step a run takes before its first cell, made to fail on purpose: the run
/// exits 2 naming the step, and nothing it created is left — not the target or results
/// directories (both nested, so several levels are created), not the locks, state or
/// control directories.
fn a_run_refused_before_its_first_cell_leaves_nothing() -> Needs {
    need(cfg!(feature = "failpoints"), "a build with --features failpoints (scripts/check builds --all-features)")?;
    for step in ["run:take-results", "run:take-target", "run:take-state", "run:prepare", "run:open-store"] {
        let dir = scratch();
        let s = study_file(dir.path(), "s.toml", &dir.path().join("t/target"));
        let child = Command::new(bin())
            .args(["run", s.to_str().unwrap(), "-o", "r/results", "--mock"])
            .current_dir(dir.path())
            .env("FAILPOINTS", format!("{step}=return"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{step}: {}", stdout(&o));
        assert!(stderr(&o).contains(&format!("failed on purpose at {step}")), "{step}: {}", stderr(&o));
        assert_eq!(entries(dir.path()), ["s.toml"], "{step}: the run left what it created");
        let state = iostudy::sys::state_base();
        if state.exists() {
            assert!(
                !entries(&state).iter().any(|e| e.starts_with(&format!("{pid}-"))),
                "{step}: its state dir is left"
            );
        }
    }
    // A real refusal after the results directory was taken: the target is in use.
    let dir = scratch();
    let target = dir.path().join("target");
    let s = study_file(dir.path(), "s.toml", &target);
    std::fs::write(&s, std::fs::read_to_string(&s).unwrap().replace("500ms", "4s")).unwrap();
    let mut first = spawn_run(&s, &dir.path().join("first"), &[]);
    wait_first_cell_go(dir.path(), std::time::Duration::from_secs(30));
    let o = iostudy_in(dir.path(), &["run", "s.toml", "-o", "second/nested"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is in use by another iostudy run"), "{}", stderr(&o));
    assert!(!dir.path().join("second").exists(), "the refused run removed the results directories it made");
    assert_eq!(wait_for(&mut first, std::time::Duration::from_secs(60)).code(), Some(0));
    Ok(())
}

crate::trials![
    demo_without_o_writes_into_the_working_directory,
    run_and_plan_take_relative_paths,
    a_working_directory_through_a_link_or_removed,
    import_fio_takes_relative_files,
    a_run_refused_before_its_first_cell_leaves_nothing,
];
