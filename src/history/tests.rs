use std::path::Path;
use std::time::Duration;

use super::db::{Added, History, HistoryError, MIGRATIONS, current_version};
use super::*;
use crate::engine::Span;
use crate::report::model::Report;
use crate::results::cell::{Cell, RuntimeRecord};
use crate::results::synthetic;
use crate::study::Study;
use crate::workload::{Pattern, Workload};

const STUDY: &str = r#"
[study]
name = "history-test"
target = "/dev/shm/history-test"
repetitions = 2

[workload]
bs = "64K"
size = "16M"
runtime = "1s"

[matrix]
scenarios = ["bare", "runc"]
clients = [1, 2]
patterns = ["read"]
"#;

/// A run of [`STUDY`] from synthetic clients, starting at `t0` s, with runc at
/// `runc_version`.
fn report(t0: u64, runc_version: &str) -> Report {
    let study = Study::parse(Path::new("history-test.toml"), STUDY).expect("study");
    let info = study.run_info(
        |s| RuntimeRecord {
            kind: s.runtime.kind().name().into(),
            name: s.runtime.name(),
            version: (s.name == "runc").then(|| runc_version.to_string()),
            ..Default::default()
        },
        None,
        Vec::new(),
    );
    let mut cells = Vec::new();
    let mut n = 0;
    for rep in 1..=2 {
        for clients in [1u32, 2] {
            for scenario in ["bare", "runc"] {
                let mut w = Workload::new(Pattern::Read, 65536, 16 << 20, "/data");
                w.runtime = Some(Span(Duration::from_secs(1)));
                w.randseed = t0 + n;
                let start = (t0 + n * 10) * 1_000_000_000;
                let results = (0..clients).map(|k| synthetic::client(&w, k, start)).collect();
                let cell = Cell {
                    id: format!("{scenario}.read.c{clients}.r{rep}"),
                    scenario: scenario.into(),
                    pattern: Pattern::Read,
                    clients,
                    options: vec![],
                    repetition: rep,
                    workload: w,
                };
                cells.push(synthetic::cell(cell, results));
                n += 1;
            }
        }
    }
    Report::build(&cells, STUDY, Some(info))
}

fn record(t0: u64, runc_version: &str) -> RunRecord {
    RunRecord::of(&report(t0, runc_version), &format!("/results/{t0}")).expect("record")
}

/// `run` with every figure of `metric` multiplied by `factor` (a new fingerprint).
fn scaled(run: &RunRecord, metric: &str, factor: f64, tag: &str) -> RunRecord {
    let mut r = run.clone();
    r.fingerprint = format!("{}-{tag}", r.fingerprint);
    for c in &mut r.cells {
        for f in c.figures.iter_mut().filter(|f| f.metric == metric) {
            f.value *= factor;
        }
    }
    r
}

/// The cell of `run` whose key reads `text` (`scenario|pattern|clients|options`).
fn cell<'a>(run: &'a RunRecord, text: &str) -> Option<&'a CellRecord> {
    run.cells.iter().find(|c| c.key_text() == text)
}

fn runs_in(h: &History) -> usize {
    h.runs().unwrap().len()
}

#[test]
fn a_run_keeps_every_figure_with_its_unit_direction_and_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.db")).unwrap();
    let run = record(1_800_000_000, "runc 1.1.5");
    assert!(matches!(h.add(&run).unwrap(), Added::New(_)));
    let back = h.all_runs().unwrap().pop().unwrap();
    assert_eq!(back.cells.len(), 4, "2 scenarios × 2 client counts");
    assert_eq!(back.environment.get("runtime runc").map(String::as_str), Some("runc 1.1.5"));
    assert_eq!(back.study_hash, run.study_hash);
    for (a, b) in run.cells.iter().zip(&back.cells) {
        assert_eq!(a.key, b.key);
        assert_eq!(a.figures, b.figures, "figures round-trip exactly");
        assert_eq!(a.histogram, b.histogram);
        let bw = b.figure("bw").unwrap();
        assert_eq!((bw.unit.as_str(), bw.better, bw.n, bw.samples.len()), ("bytes/s", Better::Higher, 2, 2));
        assert_eq!(b.figure("p99").unwrap().better, Better::Lower);
        // The kept histogram merges back into the cell's percentiles.
        let h: hdrhistogram::Histogram<u64> =
            hdrhistogram::serialization::Deserializer::new().deserialize(&mut b.histogram.as_slice()).unwrap();
        assert_eq!(h.value_at_quantile(0.5) as f64, b.figure("p50").unwrap().value);
    }
}

#[test]
fn adding_the_same_run_twice_keeps_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.db")).unwrap();
    let run = record(1_800_000_000, "runc 1.1.5");
    let Added::New(id) = h.add(&run).unwrap() else { panic!("first add is new") };
    // Built again from the same results: the same fingerprint.
    let again = record(1_800_000_000, "runc 1.1.5");
    assert_eq!(h.add(&again).unwrap(), Added::Already(id));
    assert_eq!(runs_in(&h), 1);
    assert!(matches!(h.add(&record(1_800_001_000, "runc 1.1.5")).unwrap(), Added::New(_)));
    assert_eq!(runs_in(&h), 2);
}

#[test]
fn an_older_schema_is_migrated_keeping_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    {
        let mut h = History::open(&path).unwrap();
        // Made as version 1 (no histograms table), with a run in it.
        h.migrate_to(current_version()).unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DROP TABLE histograms; PRAGMA user_version = 1;").unwrap();
    conn.execute(
        "INSERT INTO runs (fingerprint, started_ns, added_at, source, study_name, study_hash, iostudy_version)
         VALUES ('old', 1, 'then', '/old', 'old-study', 'h', '0.0.1')",
        [],
    )
    .unwrap();
    drop(conn);
    let mut h = History::open(&path).unwrap();
    assert_eq!(h.version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(h.runs().unwrap()[0].study_name, "old-study", "the old run is kept");
    assert!(matches!(h.add(&record(1_800_000_000, "runc 1.1.5")).unwrap(), Added::New(_)));
    assert!(!h.all_runs().unwrap()[1].cells[0].histogram.is_empty(), "the new table is used");
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    History::open(&path).unwrap();
    rusqlite::Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    let before = std::fs::read(&path).unwrap();
    let Err(e) = History::open(&path) else { panic!("a newer schema must be refused") };
    assert!(matches!(e, HistoryError::Newer { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("upgrade iostudy"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn corrupt_foreign_and_empty_files_are_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    // Not a database at all.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is a results note, not a database\n".repeat(200)).unwrap();
    // Another program's database.
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    // An iostudy history damaged in the middle (a page overwritten).
    let damaged = dir.path().join("damaged.db");
    {
        let mut h = History::open(&damaged).unwrap();
        for i in 0..5 {
            h.add(&record(1_800_000_000 + i * 1000, "runc 1.1.5")).unwrap();
        }
    }
    let mut bytes = std::fs::read(&damaged).unwrap();
    let page = 4096;
    assert!(bytes.len() > 3 * page, "several pages");
    for b in &mut bytes[page + 100..2 * page] {
        *b = 0xA5;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    for (path, says) in
        [(&junk, "not a SQLite database"), (&other, "another program"), (&damaged, "damaged"), (&empty, "empty file")]
    {
        let before = std::fs::read(path).unwrap();
        let Err(e) = History::open(path) else { panic!("{} must be refused", path.display()) };
        assert!(matches!(e, HistoryError::Foreign { .. }), "{}: {e}", path.display());
        assert!(e.to_string().contains(says), "{}: {e}", path.display());
        assert!(e.to_string().contains("left as it was"), "{e}");
        assert_eq!(std::fs::read(path).unwrap(), before, "{} unchanged", path.display());
    }
}

#[test]
fn a_link_in_place_of_the_history_or_its_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    let link = dir.path().join("h.db");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    assert!(History::open(&link).is_err());
    let journal_dir = dir.path().join("j");
    std::fs::create_dir(&journal_dir).unwrap();
    std::os::unix::fs::symlink(&victim, journal_dir.join("h.db-journal")).unwrap();
    let Err(e) = History::open(&journal_dir.join("h.db")) else { panic!("a planted journal link must be refused") };
    assert!(e.to_string().contains("h.db-journal"), "{e}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    assert!(!journal_dir.join("h.db").exists(), "nothing made");
}

#[test]
fn bounds_errors_name_file_line_and_column() {
    let p = Path::new("b.toml");
    let cases = [
        ("[[metric]]\ncheckvar = \"bw\"\nmidval = 1.0\nminpercent = 5.0\nmaxpercnt = 5.0\n", 5, "unknown field"),
        ("[[metric]]\nscenario = \"bare\"\ncheckvar = \"bandwidth\"\nminval = 1.0\n", 3, "not a figure"),
        ("[[metric]]\ncheckvar = \"bw\"\nchecktype = \"median\"\nminval = 1.0\n", 3, "median"),
        ("\n[[metric]]\ncheckvar = \"bw\"\nmidval = 1.0\n", 2, "minpercent"),
        ("[[metric]]\ncheckvar = \"bw\"\n", 1, "no bounds"),
        ("[[metric]]\ncheckvar = \"p50\"\npattern = \"sideways\"\nmaxval = 1.0\n", 3, "sideways"),
        ("# nothing\n", 1, "no [[metric]]"),
    ];
    for (text, line, says) in cases {
        let e = bounds::parse(text, p).expect_err(text).to_string();
        assert!(e.starts_with(&format!("b.toml:{line}:")), "{text:?} → {e}");
        assert!(e.contains(says), "{text:?} → {e}");
    }
}

#[test]
fn bounds_hold_each_selected_cell_and_fail_what_is_missing() {
    let run = record(1_800_000_000, "runc 1.1.5");
    let bw = cell(&run, "bare|read|1|").unwrap().figure("bw").unwrap().value;
    let text = format!(
        "[[metric]]\nscenario = \"bare\"\nclients = 1\ncheckvar = \"bw\"\nmidval = {bw}\nminpercent = 5.0\nmaxpercent = 5.0\n\
         [[metric]]\nscenario = \"bare\"\nclients = 1\ncheckvar = \"bw\"\nminval = {}\n\
         [[metric]]\nscenario = \"runc\"\ncheckvar = \"p99\"\nchecktype = \"max\"\nmaxval = 1e12\n\
         [[metric]]\nscenario = \"kata\"\ncheckvar = \"bw\"\nminval = 0.0\n\
         [[metric]]\nscenario = \"bare\"\nclients = 2\ncheckvar = \"bw\"\nchecktype = \"cov\"\nmaxval = 0.5\n",
        bw * 1.2
    );
    let checks = bounds::check(&run, &bounds::parse(&text, Path::new("b.toml")).unwrap());
    let pass: Vec<bool> = checks.iter().map(|c| c.pass).collect();
    // within ±5 %; 20 % below a floor; both runc cells under a ceiling; no kata cell;
    // a coefficient of variation over two repetitions.
    assert_eq!(pass, [true, false, true, true, false, true], "{}", bounds::text(&checks));
    assert!(checks[1].note.contains("below the floor"), "{}", checks[1].note);
    assert!(checks[4].note.contains("no cell"), "{}", checks[4].note);
    let table = bounds::text(&checks);
    assert!(
        table.contains("floor") && table.contains("ceiling") && table.contains("2 of 6 check(s) failed"),
        "{table}"
    );
}

#[test]
fn the_gate_fails_a_drop_beyond_the_noise_and_passes_noise() {
    // Twenty runs whose bandwidth varies by ±2 % around its value.
    let base = record(1_800_000_000, "runc 1.1.5");
    let history: Vec<RunRecord> =
        (0..20).map(|i| scaled(&base, "bw", 1.0 + 0.02 * ((i as f64) * 1.7).sin(), &format!("h{i}"))).collect();
    let rule = gate::Rule { metrics: vec!["bw".into(), "p50".into()], alpha: 0.01, min_change: 0.03 };
    let steady = gate::judge(&scaled(&base, "bw", 1.01, "steady"), &history, &rule);
    assert_eq!(steady.regressions(), 0, "{}", gate::text(&steady, &rule));
    let dropped = gate::judge(&scaled(&base, "bw", 0.9, "drop"), &history, &rule);
    assert_eq!(dropped.regressions(), 5, "every cell's bandwidth, and the run's: {}", gate::text(&dropped, &rule));
    let faster = gate::judge(&scaled(&base, "bw", 1.1, "up"), &history, &rule);
    assert_eq!(faster.regressions(), 0);
    assert!(faster.figures.iter().any(|f| f.verdict == gate::Verdict::Improved));
    // Latency is lower-is-better: a rise fails.
    let slower = gate::judge(&scaled(&base, "p50", 1.2, "slow"), &history, &rule);
    assert_eq!(slower.regressions(), 5, "{}", gate::text(&slower, &rule));
    // A history with no spread fails nothing below the smallest change that counts.
    let flat: Vec<RunRecord> = (0..5).map(|i| scaled(&base, "bw", 1.0, &format!("f{i}"))).collect();
    assert_eq!(gate::judge(&scaled(&base, "bw", 0.98, "tiny"), &flat, &rule).regressions(), 0);
    // Too little history: no verdict, said so.
    let few = gate::judge(&scaled(&base, "bw", 0.5, "few"), &history[..2], &rule);
    assert_eq!(few.regressions(), 0);
    assert!(gate::text(&few, &rule).contains("not judged"));
}

#[test]
fn a_drop_of_every_cell_within_each_cells_noise_fails_the_run() {
    // Each cell varies by ±4 % from run to run, independently of the others.
    let base = record(1_800_000_000, "runc 1.1.5");
    let noisy = |i: usize, factor: f64, tag: &str| {
        let mut r = base.clone();
        r.fingerprint = format!("{}-{tag}", r.fingerprint);
        for (c, cell) in r.cells.iter_mut().enumerate() {
            let f = factor * (1.0 + 0.04 * ((i as f64) * 1.7 + c as f64 * 2.3).sin());
            cell.figures.iter_mut().filter(|f| f.metric == "bw").for_each(|x| x.value *= f);
        }
        r
    };
    let history: Vec<RunRecord> = (0..20).map(|i| noisy(i, 1.0, &format!("h{i}"))).collect();
    let rule = gate::Rule { metrics: vec!["bw".into()], alpha: 0.01, min_change: 0.03 };
    let j = gate::judge(&noisy(20, 0.95, "drop"), &history, &rule);
    let text = gate::text(&j, &rule);
    let per_cell = j.figures.iter().filter(|f| !f.cell.starts_with("all ") && f.verdict == gate::Verdict::Regressed);
    assert_eq!(per_cell.count(), 0, "5 % is within one cell's noise: {text}");
    assert_eq!(j.regressions(), 1, "but not within the run's: {text}");
    assert!(text.contains("all 4 cells (geometric mean)"), "{text}");
    assert_eq!(gate::judge(&noisy(20, 1.0, "same"), &history, &rule).regressions(), 0);
}

#[test]
fn an_environment_change_is_shown_in_the_gate_and_the_trend() {
    let runs = vec![
        record(1_800_000_000, "runc 1.1.5"),
        record(1_800_001_000, "runc 1.1.5"),
        record(1_800_002_000, "runc 1.1.12"),
        record(1_800_003_000, "runc 1.1.12"),
    ];
    let rule = gate::Rule { metrics: vec!["bw".into()], alpha: 0.01, min_change: 0.03 };
    let j = gate::judge(&runs[2], &runs[..2], &rule);
    assert_eq!(j.environment, ["runtime runc: runc 1.1.5 → runc 1.1.12"]);
    let dir = tempfile::tempdir().unwrap();
    let page = trend::write(&runs, dir.path()).unwrap();
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains("runtime runc: runc 1.1.5 → runc 1.1.12"), "the change is listed");
    assert_eq!(html.matches("class=\"changed\"").count(), 1, "on run 3 only");
    assert_eq!(html.matches("<svg").count(), 4, "a chart per cell");
    assert!(html.contains("over 4 run(s), every client merged"), "pooled percentiles");
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png"))
            .count(),
        4
    );
}

#[test]
fn exports_are_bmf_json_and_openmetrics_text() {
    let run = record(1_800_000_000, "runc 1.1.5");
    let bmf: serde_json::Value = serde_json::from_str(&export::bmf(&run)).unwrap();
    let bench = &bmf["history-test/bare/read/c=1"];
    let bw = cell(&run, "bare|read|1|").unwrap().figure("bw").unwrap();
    assert_eq!(bench["bw"]["value"].as_f64(), Some(bw.value));
    assert_eq!(bench["bw"]["lower_value"].as_f64(), Some(bw.lo));
    assert_eq!(bmf.as_object().unwrap().len(), 4);
    let om = export::openmetrics(&run);
    assert!(om.ends_with("# EOF\n"));
    let mut families = 0;
    for line in om.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        value.parse::<f64>().unwrap();
        let family = name.split('{').next().unwrap();
        assert!(om.contains(&format!("# TYPE {family} gauge")), "{family}");
        assert!(name.contains("scenario=\"") && name.contains("clients=\""), "{line}");
    }
    for l in om.lines().filter(|l| l.starts_with("# UNIT ")) {
        let mut parts = l.split(' ').skip(2);
        let (family, unit) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(family.ends_with(&format!("_{unit}")), "OpenMetrics: a family's name ends with its unit: {l}");
        families += 1;
    }
    assert!(families >= 8, "{om}");
    let p50 = om
        .lines()
        .find(|l| {
            l.starts_with("iostudy_p50_seconds{") && l.contains("scenario=\"bare\",pattern=\"read\",clients=\"1\"")
        })
        .unwrap();
    let secs: f64 = p50.rsplit_once(' ').unwrap().1.parse().unwrap();
    assert!((secs * 1e9 - cell(&run, "bare|read|1|").unwrap().figure("p50").unwrap().value).abs() < 1.0);
}
