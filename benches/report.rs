//! Benchmark: rendering the full report of a synthetic seed-sized study.
//!
//! 36 cells (3 scenarios × 3 client counts × 4 patterns) × 3 repetitions, 64 clients
//! per cell with 4 threads each — every client result with its own latency histogram
//! and interval series — written as a results directory, then `Report::load` +
//! `write_all` (charts SVG + PNG, tables, HTML) timed over several rounds.
//! Target (issue 4): under 1 s on the project's 2-core machines.
//!
//!     cargo bench --bench report

use std::time::{Duration, Instant};

use iostudy::engine::{Pattern, Span, Workload};
use iostudy::report;
use iostudy::results::cell::Cell;
use iostudy::results::store::Store;
use iostudy::results::synthetic;
use iostudy::study::Study;

const STUDY: &str = r#"[study]
name = "synthetic-seed"
target = "/srv/x"
repetitions = 3
[workload]
bs = "64K"
size = "32G"
numjobs = 4
runtime = "60s"
[matrix]
scenarios = ["bare", "runc", "gvisor"]
clients = [1, 8, 64]
patterns = ["read", "randread", "write", "randwrite"]
"#;

fn main() {
    // As the seed: 1, 8 and 64 clients; then the worst case, 64 clients in every cell.
    bench("seed-shaped (1/8/64 clients)", [1, 8, 64]);
    bench("64 clients in every cell", [64, 64, 64]);
}

fn bench(name: &str, client_counts: [u32; 3]) {
    println!("{name}:");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::create(dir.path(), STUDY, false).expect("store");
    let study = Study::parse(std::path::Path::new("synthetic.toml"), STUDY).expect("study");
    let synthetic_runtime = |s: &iostudy::study::Scenario| iostudy::results::cell::RuntimeRecord {
        kind: s.runtime.kind().name().into(),
        name: s.runtime.name(),
        ..Default::default()
    };
    store.write_run_info(&study.run_info(synthetic_runtime, None, Vec::new())).expect("run info");
    let mut n = 0;
    let t0 = 1_800_000_000_000_000_000u64;
    for rep in 1..=3 {
        for (ci, clients) in client_counts.into_iter().enumerate() {
            for pattern in [Pattern::Read, Pattern::Randread, Pattern::Write, Pattern::Randwrite] {
                for scenario in ["bare", "runc", "gvisor"] {
                    let mut w = Workload::new(pattern, 65536, 32 << 30, "/data");
                    w.numjobs = 4;
                    w.runtime = Some(Span(Duration::from_secs(60)));
                    w.randseed = n;
                    w.log_interval = Span(Duration::from_millis(100));
                    let start = t0 + n * 100_000_000_000;
                    let results =
                        (0..clients).map(|k| synthetic::client(&w, k, start + u64::from(k) * 1_000_000)).collect();
                    let id = format!("{scenario}.{pattern}.c{clients}-{ci}.r{rep}");
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
    let bytes: u64 =
        std::fs::read_dir(dir.path().join("cells")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let clients: u32 = client_counts.iter().sum::<u32>() * 12 * 3;
    println!(
        "  {n} cell results, {clients} client results (4 threads each), {:.1} MiB of JSON",
        bytes as f64 / 1048576.0
    );
    let mut times = Vec::new();
    for round in 0..5 {
        let t = Instant::now();
        let model = report::model::Report::load(dir.path()).expect("load");
        let loaded = t.elapsed();
        report::write_all(&model, dir.path()).expect("write report");
        let total = t.elapsed();
        println!(
            "  round {round}: load + aggregate {:.3} s, total with charts/tables/HTML {:.3} s",
            loaded.as_secs_f64(),
            total.as_secs_f64()
        );
        times.push(total.as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!("  median full report render: {:.3} s (target < 1 s)", times[times.len() / 2]);
}
