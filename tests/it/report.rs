//! `iostudy report` and `iostudy compare` on fixture result sets, and the HTML report
//! in real headless Chromium.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use iostudy::engine::{Pattern, Span, Workload};
use iostudy::results::ClientResult;
use iostudy::results::cell::Cell;
use iostudy::results::store::Store;
use iostudy::results::synthetic;
use iostudy::study::Study;

use crate::util::*;

const STUDY: &str = r#"[study]
name = "fixture"
description = "bare vs runc, synthetic"
target = "/srv/fixture"
repetitions = 3

[workload]
bs = "64K"
size = "1G"
numjobs = 2
runtime = "10s"

[matrix]
scenarios = ["bare", "runc"]
clients = [1, 4]
patterns = ["read", "randwrite"]
"#;

/// Scales a client's throughput by `f` (bytes, ops, rates), keeping its timing.
fn scale(c: &mut ClientResult, f: f64) {
    let s = |x: u64| (x as f64 * f) as u64;
    c.read.bytes = s(c.read.bytes);
    c.write.bytes = s(c.write.bytes);
    c.intervals.bytes.iter_mut().for_each(|b| *b = s(*b));
    c.summary.bw_bytes_per_s *= f;
    c.summary.iops *= f;
}

/// A results directory: runc at `runc_factor` of bare's bandwidth, repetitions
/// varying by a few percent; one client of `late` cell starts 4 s late.
fn fixture(dir: &Path, runc_factor: f64, late: Option<&str>) {
    let store = Store::create(dir, STUDY, false).unwrap();
    let study = Study::parse(Path::new("fixture.toml"), STUDY).unwrap();
    let synthetic_runtime = |s: &iostudy::study::Scenario| iostudy::results::cell::RuntimeRecord {
        kind: s.runtime.kind().name().into(),
        name: s.runtime.name(),
        version: Some(format!("{} (synthetic)", s.name)),
        ..Default::default()
    };
    store.write_run_info(&study.run_info(synthetic_runtime, None, Vec::new())).unwrap();
    let t0 = 1_900_000_000_000_000_000u64;
    let mut n = 0u64;
    for rep in 1..=3u32 {
        for clients in [1u32, 4] {
            for pattern in [Pattern::Read, Pattern::Randwrite] {
                for scenario in ["bare", "runc"] {
                    let mut w = Workload::new(pattern, 65536, 1 << 30, "/data");
                    w.numjobs = 2;
                    w.runtime = Some(Span(Duration::from_secs(10)));
                    w.log_interval = Span(Duration::from_millis(100));
                    w.randseed = u64::from(rep) * 10 + u64::from(scenario == "runc");
                    let start = t0 + n * 20_000_000_000;
                    let id = format!("{scenario}.{pattern}.c{clients}.r{rep}");
                    let rep_noise = [1.0, 1.02, 0.98][rep as usize - 1];
                    let results: Vec<ClientResult> = (0..clients)
                        .map(|k| {
                            let delay = if late == Some(id.as_str()) && k == 1 { 4_000_000_000 } else { 0 };
                            let mut c = synthetic::client(&w, k, start + delay);
                            scale(&mut c, rep_noise * if scenario == "runc" { runc_factor } else { 1.0 });
                            c
                        })
                        .collect();
                    let cell = Cell {
                        id,
                        scenario: scenario.into(),
                        pattern,
                        clients,
                        options: vec![],
                        repetition: rep,
                        workload: w,
                    };
                    store.write_cell(&synthetic::cell(cell, results)).expect("write cell");
                    n += 1;
                }
            }
        }
    }
}

fn report(dir: &Path) -> String {
    let o = iostudy(&["report", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn terminal_and_markdown_snapshots() {
    let dir = scratch();
    fixture(dir.path(), 0.9, Some("runc.read.c4.r2"));
    let out = report(dir.path());
    let expected = "\
Findings (against bare, geometric mean over client counts):
  runc: read 0.90× bw, 1.00× p50; randwrite 0.90× bw, 1.00× p50
  largest host CPU cost: runc rand write with 4 client(s): 0.25 CPU-s per GiB (bare: 0.25)

Commit latency percentiles (µs, merged over all clients)
Number of clients >               1           4
Mode                 Scenario   50%   99%   50%   99%
seq read             bare      5079  9904  5059  9904
                     runc      5042  9912  5059  9904
rand write           bare      5079  9904  5059  9904
                     runc      5042  9912  5059  9904

Aggregate bandwidth over the window all clients ran (mean, 95 % CI with repetitions)
Mode        Scenario                                           1 client(s)                                           4 client(s)
seq read    bare                              200MiB/s (196MiB/s–204MiB/s)                          800MiB/s (784MiB/s–816MiB/s)
            runc      180MiB/s (176MiB/s–184MiB/s), 0.90× bare (0.88–0.92)  720MiB/s (706MiB/s–734MiB/s), 0.90× bare (0.88–0.92)
rand write  bare                              200MiB/s (196MiB/s–204MiB/s)                          800MiB/s (784MiB/s–816MiB/s)
            runc      180MiB/s (176MiB/s–184MiB/s), 0.90× bare (0.88–0.92)  720MiB/s (706MiB/s–734MiB/s), 0.90× bare (0.88–0.92)

Warnings:
  - clients ran together for only part of their run (1): cell runc.read.c4.r2: clients ran together for only 60 % of the longest client's run (one started late or stopped early; start spread 4000.0 ms): bandwidth is over the common window of 6.00 s
";
    assert_eq!(out.split("\nreport: ").next().unwrap(), expected);

    let md = std::fs::read_to_string(dir.path().join("report/table.md")).unwrap();
    assert!(md.starts_with("# fixture\n\nbare vs runc, synthetic\n\n## Commit latency"), "{md}");
    assert!(md.contains(
        "| Mode | Scenario | 1 clients 50% | 1 clients 99% | 4 clients 50% | 4 clients 99% |\n|---|---|---:|---:|---:|---:|\n| seq read | bare | 5079 | 9904 | 5059 | 9904 |\n"
    ), "{md}");
    assert!(md.contains("## Host CPU per GiB moved"), "{md}");
    assert!(md.contains("| seq read | bare | 0.25 ("), "synthetic cells cost 0.25 CPU-s per GiB: {md}");
    let csv = std::fs::read_to_string(dir.path().join("report/table.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row_of = |prefix: &str| -> Vec<String> {
        csv.lines().find(|l| l.starts_with(prefix)).unwrap().split(',').map(String::from).collect()
    };
    let value =
        |row: &[String], name: &str| row[header.iter().position(|h| *h == name).unwrap()].parse::<f64>().unwrap();
    let bare = row_of("bare,bare,read,4,");
    assert!((value(&bare, "host_cpu_s_per_gib") - 0.25).abs() < 0.01, "{bare:?}");
    let row = row_of("runc,runc,read,4,");
    let col = |name: &str| value(&row, name);
    // Client 1 of runc.read.c4.r2 started 4 s late: last-done bandwidth shows the gap.
    assert!(col("bw_last_done_bytes_per_s") < col("bw_window_bytes_per_s"), "{row:?}");
    assert!(col("client_bw_cv") < 0.05 && col("client_bw_min") > 0.0, "{row:?}");
    let mut lines = csv.lines();
    assert!(
        lines.next().unwrap().starts_with(
            "scenario,label,pattern,clients,options,repetitions,failed_repetitions,bw_window_bytes_per_s,"
        )
    );
    assert_eq!(lines.count(), 8, "one row per scenario × pattern × clients");
    assert!(csv.contains("\nrunc,runc,read,4,,3,0,754974706.667,"), "{csv}");
}

fn charts_and_html_exist_and_parse() {
    let dir = scratch();
    fixture(dir.path(), 0.9, None);
    report(dir.path());
    let r = dir.path().join("report");
    let texts = |svg: &str| -> Vec<String> {
        let text = std::fs::read_to_string(r.join(svg)).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{svg} parses: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(|t| t.trim().to_string())
            .collect()
    };
    for svg in ["bandwidth.svg", "host-cpu.svg", "client-bandwidth.svg"] {
        let t = texts(svg);
        assert!(t.iter().any(|x| x == "4 client(s)"), "{svg}: a panel per client count: {t:?}");
        assert!(t.iter().any(|x| x == "bare") && t.iter().any(|x| x == "runc"), "{svg}: the legend: {t:?}");
    }
    for svg in ["latency-cdf.svg", "bandwidth-timeline.svg"] {
        let t = texts(svg);
        for panel in
            ["seq read · 1 client(s)", "seq read · 4 client(s)", "rand write · 1 client(s)", "rand write · 4 client(s)"]
        {
            assert!(t.iter().any(|x| x == panel), "{svg}: a panel per pattern × clients: {t:?}");
        }
        let lines = std::fs::read_to_string(r.join(svg)).unwrap().matches("<polyline").count();
        assert!(lines >= 8, "{svg}: a line per scenario in each panel ({lines})");
    }
    let bw = std::fs::read_to_string(r.join("bandwidth.svg")).unwrap();
    assert!(bw.matches("<rect").count() >= 8, "a bar per scenario × pattern × clients");
    for png in ["bandwidth.png", "latency-cdf.png", "host-cpu.png", "client-bandwidth.png", "bandwidth-timeline.png"] {
        let img = image::open(r.join(png)).unwrap_or_else(|e| panic!("{png} decodes: {e}")).to_rgb8();
        let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 100)).count();
        assert!(dark > 1000, "{png}: text and axes were drawn with the bundled font ({dark} dark pixels)");
    }
    let html = std::fs::read_to_string(r.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for needle in [
        "<svg",
        "id=\"latency-table\"",
        "id=\"cpu-table\"",
        "id=\"timeline-chart\"",
        "id=\"iostudy-data\"",
        "name = &quot;fixture&quot;",
        "0.90× bare (0.88–0.92)",
    ] {
        assert!(html.contains(needle), "report.html lacks {needle}");
    }
    for forbidden in ["http://", "https://", "<link", "src="] {
        let hits: Vec<&str> = html.matches(forbidden).collect();
        let only_svg_ns = forbidden == "http://" && html.matches("http://www.w3.org/2000/svg").count() == hits.len();
        assert!(hits.is_empty() || only_svg_ns, "self-contained: found {forbidden}");
    }
    // Top-down: the findings, then the seed's three outputs (bandwidth, the latency
    // CDF, the p50/p99 table), then host CPU.
    let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("report.html lacks {needle}"));
    assert!(at("id=\"findings\"") < at("id=\"bandwidth-chart\""));
    assert!(at("id=\"bandwidth-chart\"") < at("id=\"cdf-chart\""));
    assert!(at("id=\"cdf-chart\"") < at("id=\"latency-table\""));
    assert!(at("id=\"latency-table\"") < at("id=\"cpu-chart\""));
    assert!(html.contains("<td>runc</td><td class=\"num\">0.90× bw, 1.00× p50</td>"), "the findings table");
    // The embedded data is the model, as JSON.
    let data = html.split("id=\"iostudy-data\">").nth(1).unwrap().split("</script>").next().unwrap();
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["study_name"], "fixture");
    assert_eq!(v["groups"].as_array().unwrap().len(), 8);
}

fn html_report_renders_in_headless_chromium() -> Needs {
    let chromium = iostudy::command::which("chromium");
    need(chromium.is_some(), "chromium (apt-get install chromium)")?;
    let dir = scratch();
    fixture(dir.path(), 0.8, None);
    report(dir.path());
    let page = format!("file://{}", dir.path().join("report/report.html").display());
    let profile = tempfile::tempdir().unwrap();
    let shot = dir.path().join("screenshot.png");
    let base = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut cmd = Command::new(chromium.as_ref().unwrap());
    base(&mut cmd);
    let o = cmd.args(["--window-size=1400,1800", &format!("--screenshot={}", shot.display()), &page]).output().unwrap();
    assert!(shot.exists(), "chromium wrote no screenshot: {}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1400, 1800));
    let white = img.pixels().filter(|p| p.0 == [255, 255, 255]).count();
    let colored = img.pixels().filter(|p| p.0[2] > 150 && p.0[0] < 80).count(); // the blue bars
    assert!(white < img.pixels().count() * 95 / 100, "the page is not blank");
    assert!(colored > 500, "the bandwidth chart's bars are rendered ({colored} blue pixels)");

    let mut cmd = Command::new(chromium.as_ref().unwrap());
    base(&mut cmd);
    let dom = cmd.args(["--dump-dom", &page]).output().unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<h1 id=\"title\">fixture</h1>"), "the DOM was built: {}", &dom[..dom.len().min(400)]);
    assert!(dom.contains("id=\"latency-table\"") && dom.contains("<svg"));
    assert!(
        dom.contains("<section id=\"findings\">") && dom.contains("0.80× bw, 1.00× p50"),
        "the findings open the page"
    );
    Ok(())
}

/// Many warnings of a kind are one line with a count; the instruments (guests under
/// TCG) come before how clients ran together, whatever order the cells came in.
fn warnings_are_grouped_by_kind_most_telling_first() {
    let dir = scratch();
    fixture(dir.path(), 0.9, Some("runc.read.c4.r2"));
    let store = Store::open(dir.path());
    for mut c in store.cells().unwrap().cells {
        if c.cell.scenario == "runc" {
            c.runtime.accelerator = Some("tcg".into());
        }
        if c.cell.scenario == "bare" && c.cell.clients == 4 {
            // Every 4-client bare cell: its second client starts 4 s late.
            let go = c.clients[0].start_ns;
            c.clients[1].start_ns = go + 4_000_000_000;
        }
        store.write_cell(&c).unwrap();
    }
    let out = report(dir.path());
    let warnings = out.split("Warnings:\n").nth(1).unwrap();
    let lines: Vec<&str> = warnings.lines().filter(|l| l.starts_with("  - ")).collect();
    assert!(
        lines[0].starts_with(
            "  - guests ran under TCG (software CPU emulation): their figures measure emulation (1): scenario runc"
        ),
        "{warnings}"
    );
    assert!(lines[1].starts_with("  - clients ran together for only part of their run (7): "), "{warnings}");
    assert_eq!(lines.len(), 2, "{warnings}");
    let html = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert_eq!(html.matches("<details class=\"warning-group\"").count(), 2);
    assert!(html.contains("<strong>clients ran together for only part of their run</strong> (7)"), "the count");
    assert!(html.find("data-concern=\"emulated\"").unwrap() < html.find("data-concern=\"window\"").unwrap());
}

fn compare_finds_a_regression_and_gates() {
    let a = scratch();
    let b = scratch();
    fixture(a.path(), 1.0, None);
    fixture(b.path(), 0.8, None);
    let html = a.path().join("compare.html");
    let o =
        iostudy(&["compare", a.path().to_str().unwrap(), b.path().to_str().unwrap(), "--html", html.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "a regression fails the gate:\n{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("seq read    runc      4        800MiB/s  640MiB/s  -20.0 % (-22.1…-17.8)"), "{out}");
    assert!(out.contains("regressed"));
    assert!(out.ends_with("8 cell(s) compared: 0 improved, 4 regressed, 4 no significant change\n"), "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("class=\"regressed\"") && page.contains("4 regressed"));

    // The other way round it is an improvement; against itself, nothing changed.
    let o = iostudy(&["compare", b.path().to_str().unwrap(), a.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("4 improved, 0 regressed"));
    let o = iostudy(&["compare", a.path().to_str().unwrap(), a.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("0 improved, 0 regressed, 8 no significant change"));
    // A threshold above the change lets it pass.
    let o = iostudy(&["compare", a.path().to_str().unwrap(), b.path().to_str().unwrap(), "--threshold", "0.3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

fn report_of_an_empty_directory_says_what_to_do() {
    let dir = scratch();
    std::fs::create_dir_all(dir.path().join("cells")).unwrap();
    let o = iostudy(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("holds no cell results: run a study into it first"), "{}", stderr(&o));
}

/// A cell whose clients never ran together has no bandwidth, only the fio-style sum;
/// clients started late because forty of them woke on two CPUs are said to be so.
fn no_common_window_and_a_crowded_wake_up_are_said_so() {
    let dir = scratch();
    fixture(dir.path(), 0.9, None);
    let store = Store::open(dir.path());
    for mut c in store.cells().unwrap().cells {
        if c.cell.id.starts_with("bare.read.c4.") {
            // In every repetition, client 1 starts after client 0 ended.
            let (a, b) = (c.clients[0].clone(), &mut c.clients[1]);
            let shift = a.end_ns + 1_000_000_000 - b.start_ns;
            b.start_ns += shift;
            b.end_ns += shift;
            b.intervals.first_index += shift / b.intervals.interval_ns;
        }
        if c.cell.id == "bare.randwrite.c4.r1" {
            let go = c.clients[0].start_ns;
            let first = c.clients[0].clone();
            c.clients = (0..40u32)
                .map(|k| {
                    let mut r = first.clone();
                    r.client_id = k;
                    r.host.cpus = 2;
                    r.host.hostname = "crowded".into();
                    r.go_seen_ns = Some(go - 1_000_000);
                    r.go_instant_ns = Some(go);
                    r.start_ns = go + u64::from(k) * 10_000_000;
                    r
                })
                .collect();
            c.cell.clients = 40;
        }
        store.write_cell(&c).unwrap();
    }
    let out = report(dir.path());
    assert!(out.contains("no common window (fio sum"), "{out}");
    assert!(
        out.contains("cell bare.read.c4.r1: no common window — one client finished before the last started"),
        "{out}"
    );
    assert!(
        out.contains(
            "a CPU-bound wake-up: 40 clients started at once on crowded's 2 CPU(s), and waking them took 390 ms"
        ),
        "{out}"
    );
    assert!(out.contains("29 client(s) had go in time but started late"), "{out}");
}

crate::trials![
    no_common_window_and_a_crowded_wake_up_are_said_so,
    terminal_and_markdown_snapshots,
    charts_and_html_exist_and_parse,
    warnings_are_grouped_by_kind_most_telling_first,
    html_report_renders_in_headless_chromium,
    compare_finds_a_regression_and_gates,
    report_of_an_empty_directory_says_what_to_do,
    labels_cannot_break_any_output,
    a_closed_stdout_ends_quietly,
    compare_fails_on_failed_missing_or_unreadable_cells,
];

/// A label written to break every output: a newline, terminal escapes (a colour and an
/// OSC title), an HTML comment opening a script, Markdown and CSV syntax, a formula.
const HOSTILE: &str = "=cmd|' /C calc'!A0\nrun\u{1b}[31mc\u{1b}]0;pwned\u{7} <!--<script>x *_&\"";

fn labels_cannot_break_any_output() {
    let dir = scratch();
    fixture(dir.path(), 0.9, None);
    let store = Store::open(dir.path());
    for mut c in store.cells().unwrap().cells {
        if c.cell.scenario == "runc" {
            c.scenario_label = HOSTILE.into();
            c.runtime.notes.push(format!("a tool said: {HOSTILE}"));
        }
        store.write_cell(&c).unwrap();
    }
    let mut info = store.run_info().unwrap();
    info.scenarios[1].label = HOSTILE.into();
    info.study_name = HOSTILE.into();
    store.write_run_info(&info).unwrap();
    let o = iostudy(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let printable = iostudy::text::printable(HOSTILE).into_owned();
    // Terminal: no control character reaches it, the label stays on its row.
    let out = stdout(&o);
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(out.lines().any(|l| l.contains(&printable)), "{out}");
    // Markdown: each table row keeps its columns.
    let md = std::fs::read_to_string(dir.path().join("report/table.md")).unwrap();
    // (Each hostile row right after its table's bare row, with as many columns.)
    let lines: Vec<&str> = md.lines().collect();
    let columns = |l: &str| l.replace("\\|", "").matches('|').count();
    let hostile: Vec<usize> = (1..lines.len()).filter(|&i| lines[i].contains("=cmd")).collect();
    assert_eq!(hostile.len(), 6, "{md}");
    assert!(hostile.iter().all(|&i| columns(lines[i]) == columns(lines[i - 1])), "{md}");
    assert!(!md.contains("<!--") && !md.contains('\u{1b}'), "{md}");
    // CSV: one record per line, the label one quoted field that no spreadsheet runs.
    let csv = std::fs::read_to_string(dir.path().join("report/table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9, "{csv}");
    assert!(csv.contains(",\"'=cmd|' /C calc'!A0\\nrun\\e[31mc"), "{csv}");
    // SVG: every chart is well-formed XML and shows the label.
    for svg in ["bandwidth", "host-cpu", "client-bandwidth", "bandwidth-timeline", "latency-cdf"] {
        let text = std::fs::read_to_string(dir.path().join(format!("report/{svg}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{svg}.svg: {e}"));
        let shown = doc.descendants().filter_map(|n| n.text()).any(|t| t.contains("run\\e[31mc"));
        assert!(shown || svg == "bandwidth-timeline" || svg == "latency-cdf", "{svg}: the legend shows the label");
    }
    // HTML: the page has no comment or script opened by the label, and the embedded
    // JSON is whole and holds the label.
    let html = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(!html.contains("<!--<script>"), "the label is escaped in the page");
    let data = html.split("id=\"iostudy-data\">").nth(1).unwrap().split("</script>").next().unwrap();
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert!(v["scenarios"].to_string().contains("<!--<script>"), "the JSON keeps the label's text");
    assert!(html.trim_end().ends_with("</html>"));
}

/// `report DIR | head -1`: a stdout closed early ends the command quietly.
fn a_closed_stdout_ends_quietly() {
    let dir = scratch();
    fixture(dir.path(), 0.9, None);
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    drop(reader);
    let o = Command::new(bin())
        .args(["report", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(dir.path().join("report/report.html").exists(), "the report is written all the same");
}

/// A gate never passes a run whose figures are not all there: a failed cell, a missing
/// one or an unreadable one on either side exits 1, named.
fn compare_fails_on_failed_missing_or_unreadable_cells() {
    let a = scratch();
    fixture(a.path(), 1.0, None);
    let copy = |name: &str| {
        let d = scratch();
        let st = Command::new("cp").arg("-aT").arg(a.path()).arg(d.path()).status().unwrap();
        assert!(st.success(), "{name}");
        d
    };
    let failed = copy("failed");
    let store = Store::open(failed.path());
    let mut c = store.read_cell(&store.cell_path("runc.read.c4.r2")).unwrap();
    c.status = iostudy::results::cell::CellStatus::Failed;
    c.failure = Some("client 1 exited".into());
    c.clients.clear();
    store.write_cell(&c).unwrap();
    let o = iostudy(&["compare", a.path().to_str().unwrap(), failed.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("B: runc seq read c=4: 1 of 3 repetition(s) failed"), "{}", stdout(&o));
    let missing = copy("missing");
    for rep in 1..=3 {
        std::fs::remove_file(missing.path().join(format!("cells/runc.read.c4.r{rep}.json"))).unwrap();
    }
    let o = iostudy(&["compare", a.path().to_str().unwrap(), missing.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("only in A: runc seq read c=4"), "{}", stdout(&o));
    let corrupt = copy("corrupt");
    std::fs::write(corrupt.path().join("cells/bare.read.c1.r1.json"), b"{\"schema_version\": 2, \"cell\"").unwrap();
    let o = iostudy(&["compare", a.path().to_str().unwrap(), corrupt.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("not compared, B: ") && stdout(&o).contains("bare.read.c1.r1.json"), "{}", stdout(&o));
}
