//! Fuzzing every reader of input iostudy does not control, for a fixed time budget each
//! (`IOSTUDY_FUZZ_SECS`, 30 s by default): study files, fio json+ outputs, fio job
//! files and cell files (read into a report and rendered in every format). Inputs are
//! valid seeds mutated by proptest — bytes flipped, inserted, deleted, repeated and
//! spliced, numbers that overflow, control characters — and no input may panic; a
//! failing input is shrunk by proptest and named in the failure. With
//! `IOSTUDY_FUZZ_TRACE=FILE` each input is written there before it runs, to find what
//! an abort (an allocation that failed) died on.

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use iostudy::report::model::Report;

/// Tokens that break parsers more often than random bytes do.
const TOKENS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "1e300",
    "-1e300",
    "NaN",
    "0",
    "100000000000000d",
    "\"",
    "\\u0000",
    "\u{1b}[31m",
    "\n",
    "[",
    "]",
    "{",
    "}",
    "=",
    ":",
    ",",
    "<!--<script>",
    "9999999999999999999999999999",
    "\u{10ffff}",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Token(usize, usize),
    Delete(usize, usize),
    Repeat(usize, usize, u8),
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(p, t)| Mutation::Token(p, t)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), 1usize..32, 1u8..16).prop_map(|(p, n, k)| Mutation::Repeat(p, n, k)),
        (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(s, p, n)| Mutation::Splice(s, p, n)),
    ]
}

fn apply(seeds: &[Vec<u8>], seed: usize, muts: &[Mutation]) -> Vec<u8> {
    let mut b = seeds[seed % seeds.len()].clone();
    for m in muts {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
        match m {
            Mutation::Flip(p, x) if !b.is_empty() => {
                let i = p % b.len();
                b[i] ^= x;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(p, bytes) => {
                let i = at(*p, b.len());
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Token(p, t) => {
                let i = at(*p, b.len());
                b.splice(i..i, TOKENS[*t].bytes());
            }
            Mutation::Delete(p, n) => {
                let i = at(*p, b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Mutation::Repeat(p, n, k) => {
                let i = at(*p, b.len());
                let end = (i + n).min(b.len());
                let part: Vec<u8> = b[i..end].to_vec();
                for _ in 0..*k {
                    b.splice(end..end, part.iter().copied());
                }
            }
            Mutation::Splice(s, p, n) => {
                let other = &seeds[s % seeds.len()];
                let from = at(*p, other.len());
                let part: Vec<u8> = other[from..(from + n % 256).min(other.len())].to_vec();
                let i = at(*p, b.len());
                b.splice(i..i, part);
            }
        }
        b.truncate(1 << 20);
    }
    b
}

/// Runs `target` on mutated seeds until the budget is spent; panics (with the
/// shrunk input) if any input makes it panic. Returns the executions.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, target: impl Fn(&[u8])) -> u64 {
    let secs = std::env::var("IOSTUDY_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30u64);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 0..6));
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // panics are caught and reported below
    let executions = std::cell::Cell::new(0u64);
    let mut batch = 0u32;
    let outcome = loop {
        if Instant::now() >= deadline {
            break Ok(());
        }
        batch += 1;
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(u64::from(batch) * 7919),
            ..Config::default()
        });
        let result = runner.run(&strategy, |(seed, muts)| {
            executions.set(executions.get() + 1);
            let input = apply(&seeds, seed, &muts);
            if let Some(trace) = std::env::var_os("IOSTUDY_FUZZ_TRACE") {
                // Each input before it runs: what an abort (not a panic) died on.
                let _ = std::fs::write(trace, &input);
            }
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input))).map_err(|e| {
                let why =
                    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                TestCaseError::fail(format!("{}: input {:?}", why.unwrap_or_default(), String::from_utf8_lossy(&input)))
            })
        });
        if let Err(e) = result {
            break Err(e.to_string());
        }
    };
    std::panic::set_hook(hook);
    let executions = executions.get();
    if let Err(e) = outcome {
        panic!("fuzz {name}: a panic after {executions} executions: {e}");
    }
    eprintln!("fuzz {name}: {executions} executions in {secs} s, no panic");
    executions
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn examples() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    v.sort();
    v
}

fn study_files() {
    fuzz("study files", examples(), |b| {
        let dir = std::env::temp_dir();
        if let Ok(study) = iostudy::study::Study::parse(&dir.join("fuzz.toml"), &text(b)) {
            let _ = iostudy::study::plan::Plan::build(&study, &Default::default());
        }
    });
}

const FIO_JSON_PLUS: &str = r#"{"fio version":"fio-3.33","timestamp":1700000000,"timestamp_ms":1700000000123,
"global options":{"bs":"64k","ioengine":"psync","size":"8m"},
"jobs":[{"jobname":"j","error":0,"job_runtime":1000,"job options":{"rw":"randread","numjobs":"1"},
"read":{"io_bytes":8388608,"total_ios":128,"clat_ns":{"min":1000,"bins":{"1000":100,"2000":27,"90000":1}},
"lat_ns":{"bins":{"1100":100,"2100":28}}},
"write":{"io_bytes":0,"total_ios":0}}]}"#;

fn fio_outputs() {
    let client_server = FIO_JSON_PLUS
        .replace("\"jobs\":", "\"client_stats\":")
        .replace("\"jobname\":\"j\"", "\"jobname\":\"j\",\"hostname\":\"h1\"");
    fuzz("fio json+", vec![FIO_JSON_PLUS.as_bytes().to_vec(), client_server.into_bytes()], |b| {
        use iostudy::fio::output::{Context, client_result, parse};
        let Ok(out) = parse(&text(b)) else { return };
        for (k, c) in out.clients.iter().enumerate() {
            let Ok((workload, notes)) = c.workload() else { continue };
            let r = client_result(
                c,
                Context {
                    client_id: k as u32,
                    host: iostudy::results::HostFacts::unknown("h"),
                    workload,
                    latency: c.latency_kind(),
                    end_ns: out.timestamp_ms.unwrap_or(0).saturating_mul(1_000_000),
                    version: &out.version,
                    origin: "fuzz",
                    notes,
                },
            );
            let _ = serde_json::to_vec(&r).expect("a converted result serializes");
        }
    });
}

fn fio_job_files() {
    let seeds = vec![
        b"[global]\nbs=64k\nioengine=libaio\niodepth=8\ndirect=1\n\n[seq-read]\nrw=read\nsize=32g\nnumjobs=4\nruntime=60\ntime_based\n".to_vec(),
        b"; comment\n[job]\nrw=randrw\nrwmixread=70\nbs=4k\nsize=1g\nfsync_on_close=1\n".to_vec(),
    ];
    fuzz("fio job files", seeds, |b| {
        let Ok(f) = iostudy::fio::job::JobFile::parse(&text(b)) else { return };
        if let Ok((name, options)) = f.options(None) {
            let _ = iostudy::fio::job::translate(&name, &options);
        }
    });
}

fn cell_files() {
    use iostudy::results::{store::Cell, synthetic};
    use iostudy::workload::{Pattern, Workload};
    let mut w = Workload::new(Pattern::Randread, 65536, 1 << 20, "/data");
    w.numjobs = 2;
    let clients = (0..2).map(|k| synthetic::client(&w, k, 1_900_000_000_000_000_000)).collect();
    let cell = Cell {
        id: "bare.randread.c2.r1".into(),
        scenario: "bare".into(),
        pattern: Pattern::Randread,
        clients: 2,
        options: vec![],
        repetition: 1,
        workload: w,
    };
    let seed = serde_json::to_vec(&synthetic::cell(cell, clients)).unwrap();
    fuzz("cell files", vec![seed], |b| {
        let Ok(cell) = iostudy::results::store::parse_cell(b, Path::new("fuzz.json")) else { return };
        let r = Report::build(&[cell], "", None);
        let _ = iostudy::report::terminal(&r);
        let _ = iostudy::report::table::markdown(&r);
        let _ = iostudy::report::table::csv(&r);
        if let Ok(svgs) = iostudy::report::charts::svgs(&r) {
            let _ = iostudy::report::html::render(&r, &svgs);
        }
    });
}

crate::trials![study_files, fio_outputs, fio_job_files, cell_files];
