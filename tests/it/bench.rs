//! `iostudy bench` and `iostudy worker` driven as a user would, on tmpfs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iostudy::control::{Barrier, Channel, Go, Job, PROTOCOL_VERSION, SharedDir};
use iostudy::engine::{Pattern, Workload};
use iostudy::results::ClientResult;

use crate::util::*;

const SIZE: u64 = 2 << 20;
const BS: u64 = 4096;

fn check_one_pass(r: &ClientResult, pattern: Pattern, numjobs: u64) {
    let blocks = SIZE / BS * numjobs;
    let ops = r.read.ops + r.write.ops;
    assert_eq!(ops, blocks, "{pattern}: one pass = every block once per thread");
    assert_eq!(r.read.bytes + r.write.bytes, SIZE * numjobs, "{pattern}");
    match pattern.read_percent(50) {
        100 => assert_eq!(r.write.ops, 0, "{pattern}"),
        0 => assert_eq!(r.read.ops, 0, "{pattern}"),
        _ => assert!(r.read.ops > 0 && r.write.ops > 0, "{pattern}: both directions"),
    }
    assert_eq!(r.threads.len() as u64, numjobs);
    for t in &r.threads {
        assert_eq!(t.read.ops + t.write.ops, SIZE / BS, "{pattern}: per thread");
        assert_eq!(t.errors, 0);
    }
    let all = r.histograms.all.decode().expect("histogram decodes");
    assert_eq!(all.len(), ops, "{pattern}: one latency sample per I/O");
    let s = &r.summary;
    assert_eq!(s.latency_ns.count, ops);
    assert!(s.latency_ns.min <= s.latency_ns.p50 && s.latency_ns.p50 <= s.latency_ns.p99);
    assert!(s.latency_ns.p99 <= s.latency_ns.p999 && s.latency_ns.p999 <= s.latency_ns.max);
    assert!(s.bw_bytes_per_s > 0.0 && s.iops > 0.0);
    assert!(r.start_ns < r.end_ns);
    assert_eq!(r.intervals.bytes.iter().sum::<u64>(), SIZE * numjobs);
    assert_eq!(r.intervals.ops.iter().sum::<u64>(), ops);
    assert_eq!(r.intervals.interval_ns, 1_000_000_000);
    assert!(r.intervals.first_index <= r.start_ns / r.intervals.interval_ns);
    assert!(r.threads.iter().all(|t| t.start_ns >= r.start_ns && t.start_ns < t.end_ns && t.end_ns <= r.end_ns));
    assert_eq!(r.schema_version, iostudy::results::SCHEMA_VERSION);
    assert!(!r.host.kernel.is_empty() && r.host.cpus > 0);
    if pattern.read_percent(50) % 100 != 0 {
        assert!(r.histograms.read.is_some() && r.histograms.write.is_some());
    }
}

fn every_pattern_with_every_engine_moves_one_pass() {
    let dir = scratch();
    let d = dir.path().to_str().unwrap();
    for engine in ["psync", "io_uring", "libaio"] {
        for pattern in Pattern::ALL {
            let r = bench_json(&[
                "--directory",
                d,
                "--rw",
                pattern.name(),
                "--bs",
                "4k",
                "--size",
                "2m",
                "--numjobs",
                "2",
                "--ioengine",
                engine,
                "--iodepth",
                "8",
            ]);
            assert_eq!(r.ioengine_used.name(), engine);
            check_one_pass(&r, pattern, 2);
        }
    }
}

fn every_engine_moves_the_same_bytes_buffered_and_direct() {
    let shm = scratch();
    // O_DIRECT on the main disk, where it reaches the device.
    let disk = tempfile::Builder::new().prefix("iostudy-test.").tempdir_in("/var/tmp").unwrap();
    for (dir, direct) in [(&shm, "0"), (&disk, "1")] {
        let d = dir.path().to_str().unwrap();
        for pattern in ["randread", "randwrite", "randrw"] {
            let common = [
                "--directory",
                d,
                "--rw",
                pattern,
                "--bs",
                "16k",
                "--size",
                "4m",
                "--randseed",
                "42",
                "--direct",
                direct,
            ];
            let p = bench_json(&[&common[..], &["--ioengine", "psync"]].concat());
            for engine in ["io_uring", "libaio"] {
                let a = bench_json(&[&common[..], &["--ioengine", engine, "--iodepth", "32"]].concat());
                assert_eq!(a.ioengine_used.name(), engine);
                assert!(a.workload.direct == (direct == "1"));
                assert_eq!(p.read, a.read, "{pattern} {engine} direct={direct}: same seed, same reads");
                assert_eq!(p.write, a.write, "{pattern} {engine} direct={direct}: same seed, same writes");
                assert_eq!(a.summary.latency_ns.count, a.read.ops + a.write.ops, "one latency per I/O");
            }
        }
    }
}

/// A seccomp filter refuses the engine's setup call, as container runtimes' default
/// profiles refuse io_uring: a clear error naming the cause and the fix, or with the
/// fallback, psync with the reason recorded.
fn async_engines_refused_by_seccomp_fail_clearly_or_fall_back() {
    for (engine, syscall, what) in
        [("libaio", libc::SYS_io_setup, "Linux AIO"), ("io_uring", libc::SYS_io_uring_setup, "io_uring")]
    {
        let dir = scratch();
        let d = dir.path().to_str().unwrap();
        let args = ["bench", "--json", "--directory", d, "--rw", "randread", "--size", "1m", "--ioengine", engine];
        let o = iostudy_refusing(syscall, &[&args[..], &["--iodepth", "8"]].concat());
        assert!(!o.status.success(), "{engine} refused must fail without the fallback");
        let e = stderr(&o);
        assert!(e.contains(&format!("{what} is unavailable here")), "{e}");
        assert!(e.contains("seccomp") && e.contains("engine_fallback"), "names the cause and the fix: {e}");
        assert!(entries(dir.path()).is_empty(), "refused before any file is laid out: {:?}", entries(dir.path()));

        let o = iostudy_refusing(syscall, &[&args[..], &["--iodepth", "8", "--engine-fallback"]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let r: iostudy::results::ClientResult = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r.ioengine_used.name(), "psync");
        assert_eq!(r.workload.ioengine.name(), engine, "the asked-for engine is kept beside the one used");
        let note = r.ioengine_note.expect("the fallback is recorded");
        assert!(note.contains(&format!("{engine} unavailable")) && note.contains("fell back to psync"), "{note}");
        assert_eq!(r.read.bytes, 1 << 20);
    }
}

fn time_based_runs_go_pass_after_pass_and_ramp_is_excluded() {
    let dir = scratch();
    let d = dir.path().to_str().unwrap();
    let r = bench_json(&["--directory", d, "--rw", "randread", "--bs", "4k", "--size", "256k", "--runtime", "300ms"]);
    assert!(r.read.bytes > 256 * 1024, "a time-based run wraps around the file");
    assert_eq!(r.workload.runtime.unwrap().0, Duration::from_millis(300));

    // Size-based with a ramp: the ramp's I/O is not counted, the measured pass is whole.
    let r = bench_json(&["--directory", d, "--rw", "read", "--bs", "4k", "--size", "1m", "--ramp-time", "200ms"]);
    assert_eq!(r.read.bytes, 1 << 20);
    assert_eq!(r.summary.latency_ns.count, 256);
}

fn files_are_reused_when_their_size_matches() {
    let dir = scratch();
    let d = dir.path().to_str().unwrap();
    let first = bench_json(&["--directory", d, "--rw", "read", "--size", "1m", "--numjobs", "2"]);
    assert_eq!(first.layout.bytes_written, 2 << 20);
    let again = bench_json(&["--directory", d, "--rw", "read", "--size", "1m", "--numjobs", "2"]);
    assert_eq!(again.layout.files_reused, 2);
    assert_eq!(again.layout.bytes_written, 0);
    // --unlink removes them afterwards.
    bench_json(&["--directory", d, "--rw", "read", "--size", "1m", "--numjobs", "2", "--unlink"]);
    assert!(entries(dir.path()).is_empty());
}

fn written_data_is_incompressible() {
    let dir = scratch();
    let d = dir.path().to_str().unwrap();
    bench_json(&["--directory", d, "--rw", "write", "--bs", "64k", "--size", "1m"]);
    let data = std::fs::read(dir.path().join("iostudy.0.dat")).unwrap();
    assert_eq!(data.len(), 1 << 20);
    // No two 512-byte sectors are alike (no dedup), and bytes are spread evenly.
    let mut sectors: Vec<&[u8]> = data.chunks(512).collect();
    sectors.sort_unstable();
    sectors.dedup();
    assert_eq!(sectors.len(), data.len() / 512);
    let mut freq = [0u64; 256];
    data.iter().for_each(|&b| freq[b as usize] += 1);
    let expected = data.len() as f64 / 256.0;
    assert!(freq.iter().all(|&f| (f as f64 - expected).abs() < expected * 0.2));
}

fn human_summary_reads_like_fio() {
    let dir = scratch();
    let o = iostudy(&["bench", "--directory", dir.path().to_str().unwrap(), "--rw=randrw", "--bs=4k", "--size=1m"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("randrw: bs=4KiB, size=1MiB, numjobs=1, ioengine=psync"), "{out}");
    for needle in ["  read: IOPS=", "  write: IOPS=", "p50=", "p99.9=", "  total: IOPS=", "layout:"] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

fn assert_one_line_error(args: &[&str], expected: &str) {
    let o = iostudy(args);
    assert_eq!(o.status.code(), Some(2), "{args:?} should fail with exit 2");
    let err = stderr(&o);
    assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "one-line error, got {err:?}");
}

fn bad_input_is_a_clear_error_and_leaves_nothing() {
    let dir = scratch();
    let d = dir.path().to_str().unwrap();
    assert_one_line_error(&["bench", "--directory", d, "--size", "0"], "size must be greater than zero");
    assert_one_line_error(&["bench", "--directory", d, "--size", "1m", "--bs", "0"], "bs must be greater than zero");
    let o = iostudy(&["bench", "--directory", d, "--size", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot parse size `lots`"), "{}", stderr(&o));
    assert_one_line_error(
        &["bench", "--directory", d, "--size", "2k", "--bs", "4k"],
        "size 2KiB is smaller than bs 4KiB",
    );
    let missing = dir.path().join("nope");
    assert_one_line_error(
        &["bench", "--directory", missing.to_str().unwrap(), "--size", "1m"],
        "does not exist: create it (mkdir -p",
    );
    assert_one_line_error(
        &["bench", "--directory", d, "--size", "1m", "--bs", "1000", "--direct"],
        "needs I/O aligned to 512 bytes, but bs is 1000",
    );
    assert_one_line_error(
        &["bench", "--directory", d, "--size", "1m", "--rwmixread", "150", "--rw", "randrw"],
        "rwmixread 150",
    );
    assert!(entries(dir.path()).is_empty(), "nothing left behind: {:?}", entries(dir.path()));
}

fn read_only_and_full_filesystems_are_refused_before_writing() -> Needs {
    need(is_root(), "root (to mount small and read-only tmpfs)")?;
    let ro = TmpMount::new("ro,size=8m");
    assert_one_line_error(
        &["bench", "--directory", ro.path().to_str().unwrap(), "--size", "1m"],
        "is on a read-only filesystem: choose a writable directory",
    );

    let small = TmpMount::new("size=8m");
    let d = small.path().to_str().unwrap();
    assert_one_line_error(&["bench", "--directory", d, "--size", "3m", "--numjobs", "4"], "not enough space in");
    assert!(entries(small.path()).is_empty(), "nothing half-written: {:?}", entries(small.path()));
    // What fits still runs there.
    let r = bench_json(&["--directory", d, "--size", "3m", "--numjobs", "2", "--unlink"]);
    assert_eq!(r.read.bytes, 6 << 20);
    Ok(())
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Acts as the controller of one client (id 3) through the control protocol: posts
/// its job in `dir/control` and returns the channel and the job's path.
fn post_job(dir: &std::path::Path, barrier_timeout: &str) -> (SharedDir, std::path::PathBuf) {
    let control = dir.join("control");
    let channel = SharedDir::create(&control, &control).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let workload = Workload::new(Pattern::Randread, 4096, 1 << 20, dir.join("data"));
    let barrier = Barrier { timeout: barrier_timeout.parse().unwrap(), poll: "5ms".parse().unwrap() };
    let job = channel.post_job(&Job::new(3, workload, Some(barrier), false)).unwrap();
    (channel, job)
}

fn worker_waits_for_go_and_writes_its_result() {
    let dir = scratch();
    let (channel, job) = post_job(dir.path(), "30s");
    let mut child = std::process::Command::new(bin()).args(["worker", "--job", job.to_str().unwrap()]).spawn().unwrap();
    let waited = std::time::Instant::now();
    while !channel.is_ready(3).unwrap() {
        assert!(waited.elapsed() < Duration::from_secs(20), "worker never became ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(channel.result(3).is_err(), "no result before go");
    let start_ns = now_ns() + 300_000_000;
    channel.go(&Go { protocol: PROTOCOL_VERSION, start_ns }).unwrap();
    assert!(child.wait().unwrap().success());
    let r: ClientResult = channel.result(3).unwrap();
    assert_eq!(r.client_id, 3);
    assert!(r.start_ns >= start_ns, "measured phase starts at the go instant, not before");
    assert_eq!(r.read.bytes, 1 << 20);
    let leftovers: Vec<_> = entries(&dir.path().join("control")).into_iter().filter(|e| e.contains(".tmp")).collect();
    assert!(leftovers.is_empty(), "atomic write leaves no temp file: {leftovers:?}");
}

fn worker_without_go_fails_clearly() {
    let dir = scratch();
    let (channel, job) = post_job(dir.path(), "200ms");
    let o = iostudy(&["worker", "--job", job.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no go signal in"), "{}", stderr(&o));
    assert!(channel.result(3).is_err());
}

crate::trials![
    every_pattern_with_every_engine_moves_one_pass,
    every_engine_moves_the_same_bytes_buffered_and_direct,
    async_engines_refused_by_seccomp_fail_clearly_or_fall_back,
    time_based_runs_go_pass_after_pass_and_ramp_is_excluded,
    files_are_reused_when_their_size_matches,
    written_data_is_incompressible,
    human_summary_reads_like_fio,
    bad_input_is_a_clear_error_and_leaves_nothing,
    read_only_and_full_filesystems_are_refused_before_writing,
    worker_waits_for_go_and_writes_its_result,
    worker_without_go_fails_clearly,
];
