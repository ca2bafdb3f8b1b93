//! The history on real runs: bare clients on tmpfs kept with `run --history`, judged
//! by `check --db` and by a bounds file `bounds` wrote, exported, drawn; the trend page
//! in real headless Chromium.

use std::path::Path;
use std::process::Command;

use iostudy::results::store::Store;

use crate::util::*;

fn study(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("gate.toml");
    std::fs::write(
        &path,
        format!(
            r#"[study]
name = "history-it"
target = "{}"
repetitions = 2
keep_files = false

[workload]
bs = "64K"
size = "8M"
runtime = "500ms"

[matrix]
scenarios = ["bare"]
clients = [1]
patterns = ["read"]
"#,
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

/// A copy of results directory `src` at `dst` whose clients moved `f` times the bytes.
fn scaled_copy(src: &Path, dst: &Path, f: f64) {
    std::fs::create_dir_all(dst.join("cells")).unwrap();
    for name in ["run.json", "study.toml"] {
        std::fs::copy(src.join(name), dst.join(name)).unwrap();
    }
    let from = Store::open(src);
    let to = Store::open(dst);
    for mut c in from.cells().unwrap().cells {
        for r in &mut c.clients {
            let s = |x: u64| (x as f64 * f) as u64;
            r.read.bytes = s(r.read.bytes);
            r.intervals.bytes.iter_mut().for_each(|b| *b = s(*b));
            r.summary.bw_bytes_per_s *= f;
            r.summary.iops *= f;
        }
        to.write_cell(&c).unwrap();
    }
}

fn history_of_real_runs_gates_bounds_exports_and_trends() {
    let dir = scratch();
    let study = study(dir.path());
    let db = dir.path().join("history.db");
    let db_arg = db.to_str().unwrap();
    let mut runs = Vec::new();
    for i in 0..5 {
        let out = dir.path().join(format!("run{i}"));
        let (code, _, err, _) = run_study(&study, &out, &["--history", db_arg]);
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains(&format!("history: kept as run {}", i + 1)), "{err}");
        runs.push(out);
    }
    let last = runs[4].to_str().unwrap();
    // Kept once: a second add of the same run changes nothing.
    let o = iostudy(&["history", "add", last, "--db", db_arg]);
    assert!(o.status.success() && stderr(&o).contains("already kept as run 5"), "{}", stderr(&o));
    let ls = stdout(&iostudy(&["history", "ls", "--db", db_arg]));
    assert_eq!(ls.lines().count(), 6, "a header and five runs: {ls}");
    // The database is a real one: sqlite3 reads it.
    if have("sqlite3") {
        let o = Command::new("sqlite3")
            .args([db_arg, "SELECT count(*) FROM figures WHERE metric = 'bw'"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "5");
    }

    // The last run against the four before it: judged (not failed for noise alone is
    // not asserted: it is a 1 % chance), every figure listed.
    let o = iostudy(&["check", last, "--db", db_arg]);
    let table = stdout(&o);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    assert!(table.contains("bare seq read c=1") && table.contains("against 4 earlier run(s)"), "{table}");
    // A copy of it with 90 % of its bandwidth gone fails (half-second cells vary by
    // several percent: five runs give wide bounds).
    let dropped = dir.path().join("dropped");
    scaled_copy(&runs[4], &dropped, 0.1);
    let o = iostudy(&["check", dropped.to_str().unwrap(), "--db", db_arg, "--metric", "bw"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("REGRESSED"), "{}", stdout(&o));

    // Bounds from the history hold the runs they came from, and fail the drop.
    let bounds = dir.path().join("bounds.toml");
    let o = iostudy(&["bounds", "--db", db_arg, "--last", "5", "-o", bounds.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&bounds).unwrap();
    assert_eq!(text.matches("[[metric]]").count(), 2, "bw and p50 of the one cell: {text}");
    for r in &runs {
        let o = iostudy(&["check", r.to_str().unwrap(), "--bounds", bounds.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    }
    let o = iostudy(&["check", dropped.to_str().unwrap(), "--bounds", bounds.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}\n{text}", stdout(&o));
    assert!(stdout(&o).contains("below the floor"), "{}", stdout(&o));

    // Exports.
    let bmf: serde_json::Value = serde_json::from_slice(&iostudy(&["export", last, "--format", "bmf"]).stdout).unwrap();
    assert!(bmf["history-it/bare/read/c=1"]["bw"]["value"].as_f64().unwrap() > 0.0, "{bmf}");
    let om = stdout(&iostudy(&["export", last, "--format", "openmetrics"]));
    assert!(
        om.contains("iostudy_bw_bytes_per_second{study=\"history-it\",scenario=\"bare\"") && om.ends_with("# EOF\n")
    );

    // The trend page, in a real browser.
    let trend = dir.path().join("trend");
    let o = iostudy(&["history", "report", "--db", db_arg, "-o", trend.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(trend.join("trend.html")).unwrap();
    assert!(html.contains("history-it") && html.contains("#5") && html.contains("<svg"));
    assert!(trend.join("trend-1.png").exists());
    if let Some(chromium) = iostudy::command::which("chromium") {
        let profile = tempfile::tempdir().unwrap();
        let dom = Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--dump-dom"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("file://{}", trend.join("trend.html").display()))
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&dom.stdout);
        assert!(dom.contains("<h3>bare seq read c=1</h3>") && dom.contains("<svg"), "{}", &dom[..dom.len().min(400)]);
    } else {
        assert!(!required(), "chromium (apt-get install chromium) is required under IOSTUDY_REQUIRE_RUNTIMES=1");
    }
}

/// What is not a history is refused, unchanged, with the reason.
fn a_file_that_is_not_a_history_is_refused() {
    let dir = scratch();
    let study = study(dir.path());
    let notes = dir.path().join("notes.db");
    std::fs::write(&notes, "meeting notes\n".repeat(100)).unwrap();
    let out = dir.path().join("run");
    let (code, _, err, _) = run_study(&study, &out, &["--history", notes.to_str().unwrap()]);
    assert_eq!(code, Some(2), "refused before the first cell: {err}");
    assert!(err.contains("not a SQLite database") && err.contains("left as it was"), "{err}");
    assert!(!out.join("cells").exists(), "no cell ran");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "meeting notes\n".repeat(100));
    let bad = dir.path().join("b.toml");
    std::fs::write(&bad, "[[metric]]\ncheckvar = \"bw\"\nmidval = 1.0\nminpercent = 1.0\nmaxprecent = 1.0\n").unwrap();
    let o = iostudy(&["check", dir.path().to_str().unwrap(), "--bounds", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("b.toml:5:1: unknown field `maxprecent`"), "{}", stderr(&o));
}

crate::trials![history_of_real_runs_gates_bounds_exports_and_trends, a_file_that_is_not_a_history_is_refused];
