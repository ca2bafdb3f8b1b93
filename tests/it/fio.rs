//! fio interop with Debian's real fio: its json+ imported (local and client/server
//! runs), other outputs refused, job files read, and `engine = "fio"` inside bare
//! processes, runc and a micro-VM, compared with iostudy's engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use iostudy::results::cell::CellStatus;

use crate::util::*;

fn needs_fio() -> Needs {
    need(have("fio"), "fio (apt-get install fio)")
}

/// Runs fio with `args` (json+ to stdout) in `dir`, in the background.
fn spawn_fio(dir: &Path, name: &str, args: &[&str]) -> Child {
    Command::new("fio")
        .arg(format!("--name={name}"))
        .arg(format!("--directory={}", dir.display()))
        .args(["--thread", "--output-format=json+"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn save(child: Child, path: &Path) -> PathBuf {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "fio failed");
    std::fs::write(path, &out.stdout).unwrap();
    path.to_path_buf()
}

/// The p-th percentile of summed bins, as a histogram of the same samples would give.
fn percentile(bins: &BTreeMap<u64, u64>, p: f64) -> u64 {
    let total: u64 = bins.values().sum();
    let want = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (v, c) in bins {
        seen += c;
        if seen >= want {
            return *v;
        }
    }
    *bins.keys().last().unwrap()
}

/// Every job's `lat_ns.bins` (direction `dir`) of every output, summed.
fn summed_bins(files: &[PathBuf], dir: &str) -> BTreeMap<u64, u64> {
    let mut sum = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
        let jobs = doc.get("jobs").or_else(|| doc.get("client_stats")).unwrap().as_array().unwrap();
        for j in jobs.iter().filter(|j| j["jobname"] != "All clients") {
            for (k, v) in j[dir]["lat_ns"]["bins"].as_object().unwrap() {
                *sum.entry(k.parse::<u64>().unwrap()).or_insert(0) += v.as_u64().unwrap();
            }
        }
    }
    sum
}

fn close(ours: u64, expected: u64) -> bool {
    // HDR keeps 3 significant digits: a value reads back within 0.1 % (and its
    // bucket's highest equivalent value).
    ours.abs_diff(expected) <= expected / 500 + 1
}

fn fio_outputs_import_with_exactly_merged_latency() -> Needs {
    needs_fio()?;
    let dir = scratch();
    let d = dir.path();
    let results = d.join("results");
    // Two clients at once, 1 job each, reading; then two at once with 4 jobs each, writing.
    for (pattern, jobs) in [("read", "1"), ("randwrite", "4")] {
        let common = ["--rw", pattern, "--bs=4k", "--size=4m", "--runtime=1", "--time_based", "--lat_percentiles=1"];
        let args: Vec<String> = common.iter().map(|s| s.to_string()).chain([format!("--numjobs={jobs}")]).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = spawn_fio(d, &format!("{pattern}-a"), &args);
        let b = spawn_fio(d, &format!("{pattern}-b"), &args);
        let files = [save(a, &d.join(format!("{pattern}-a.json"))), save(b, &d.join(format!("{pattern}-b.json")))];
        let mut cmd = vec!["import", "fio"];
        cmd.extend(files.iter().map(|f| f.to_str().unwrap()));
        cmd.extend(["-o", results.to_str().unwrap(), "--scenario", "bare", "--clients", "2"]);
        let o = iostudy(&cmd);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!("imported 2 client(s), {} thread(s)", 2 * jobs.parse::<usize>().unwrap()))
        );

        let cells = stored_cells(&results);
        let cell = cells.iter().find(|c| c.cell.pattern.name() == pattern).unwrap();
        assert_eq!(cell.status, CellStatus::Ok);
        assert_eq!(cell.clients.len(), 2);
        assert!(cell.clients.iter().all(|c| c.threads.len() == jobs.parse::<usize>().unwrap()));
        assert!(cell.clients[0].measured_by.starts_with("fio-3"), "{}", cell.clients[0].measured_by);
        let dir_name = if pattern == "read" { "read" } else { "write" };
        let bins = summed_bins(&files, dir_name);
        let count: u64 = bins.values().sum();
        // The cell's own figures, merged over both clients the way reports merge them.
        let mut merged = iostudy::results::histogram::new_latency_histogram();
        for c in &cell.clients {
            merged.add(c.histograms.all.decode().unwrap()).unwrap();
        }
        assert_eq!(merged.len(), count, "every I/O of every job of every client");
        for p in [50.0, 99.0] {
            let ours = merged.value_at_quantile(p / 100.0);
            let expected = percentile(&bins, p);
            assert!(close(ours, expected), "{pattern} p{p}: merged {ours} ns vs {expected} ns from the bins");
        }
        let bytes: u64 = cell.clients.iter().map(|c| c.read.bytes + c.write.bytes).sum();
        assert!(bytes > 0);
    }
    // Both cells in one results directory, which report reads like any other.
    let o = iostudy(&["report", results.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(results.join("report/table.md")).unwrap();
    assert!(md.contains("## Measured by") && md.contains("fio-3"), "{md}");
    // Importing into a study's results is refused; so is an unrelated directory.
    let not_empty = d.join("other");
    std::fs::create_dir(&not_empty).unwrap();
    std::fs::write(not_empty.join("x"), "").unwrap();
    let o = iostudy(&["import", "fio", d.join("read-a.json").to_str().unwrap(), "-o", not_empty.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));
    Ok(())
}

fn a_client_server_run_imports_a_client_per_host() -> Needs {
    needs_fio()?;
    let dir = scratch();
    let d = dir.path();
    let port = 8700 + (std::process::id() % 200) as u16;
    let mut server = Command::new("fio")
        .arg(format!("--server=ip:127.0.0.1,{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let job = d.join("cs.fio");
    std::fs::write(
        &job,
        format!(
            "[cs]\ndirectory={}\nrw=randread\nbs=4k\nsize=4m\nnumjobs=2\nruntime=1\ntime_based\nthread\nlat_percentiles=1\n",
            d.display()
        ),
    )
    .unwrap();
    let out = Command::new("fio")
        .arg(format!("--client=127.0.0.1,{port}"))
        .arg(&job)
        .arg("--output-format=json+")
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "fio client/server: {}", String::from_utf8_lossy(&out.stderr));
    let file = d.join("cs.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let results = d.join("results");
    let o = iostudy(&["import", "fio", file.to_str().unwrap(), "-o", results.to_str().unwrap(), "--scenario", "cs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cells = stored_cells(&results);
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].clients.len(), 1, "one host served");
    assert_eq!(cells[0].clients[0].host.hostname, "127.0.0.1");
    assert_eq!(cells[0].clients[0].threads.len(), 2);
    let bins = summed_bins(&[file], "read");
    let ours = cells[0].clients[0].summary.latency_ns.p99;
    assert!(close(ours, percentile(&bins, 99.0)), "p99 {ours} vs {}", percentile(&bins, 99.0));
    Ok(())
}

fn other_fio_outputs_are_refused_with_the_flag_to_use() -> Needs {
    needs_fio()?;
    let dir = scratch();
    let d = dir.path();
    for (format, expect) in
        [("normal", "normal (text) output"), ("terse", "terse output"), ("json", "plain json output")]
    {
        let out = Command::new("fio")
            .args(["--name=t", &format!("--directory={}", d.display()), "--rw=read", "--size=1m", "--thread"])
            .arg(format!("--output-format={format}"))
            .output()
            .unwrap();
        let file = d.join(format!("out.{format}"));
        std::fs::write(&file, &out.stdout).unwrap();
        let o = iostudy(&["import", "fio", file.to_str().unwrap(), "-o", d.join("r").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{format}");
        let e = stderr(&o);
        assert!(e.contains(expect) && e.contains("--output-format=json+"), "{format}: {e}");
        assert!(!d.join("r").exists(), "nothing written for a refused input");
    }
    Ok(())
}

/// Impossible values in a fio output are refused with their JSON path (or noted), and
/// nothing but a regular file of a sane size is read.
fn impossible_fio_outputs_are_refused_with_their_place() {
    let dir = scratch();
    let d = dir.path();
    let doc = |count: &str, runtime: &str| {
        format!(
            r#"{{"fio version":"fio-3.33","timestamp_ms":1700000000000,"jobs":[{{"jobname":"j","job_runtime":{runtime},
            "job options":{{"rw":"read","bs":"64k","size":"1m"}},"read":{{"io_bytes":1048576,"total_ios":16,
            "clat_ns":{{"bins":{{"1000":{count}}}}}}},"write":{{"io_bytes":0,"total_ios":0}}}}]}}"#
        )
    };
    for (count, runtime, expected) in [
        ("18446744073709551615", "1000", "jobs[0].read.clat_ns.bins.1000: 18446744073709551615 is not a count"),
        ("1e300", "1000", "jobs[0].read.clat_ns.bins.1000: 1e+300 is not a count"),
        ("-5", "1000", "jobs[0].read.clat_ns.bins.1000: -5 is not a count"),
        ("16", "315569520000000", "jobs[0].job_runtime: 315569520000000 ms is longer than a year"),
    ] {
        let file = d.join("out.json");
        std::fs::write(&file, doc(count, runtime)).unwrap();
        let out = d.join("r");
        let o = iostudy(&["import", "fio", file.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{count} {runtime}: {}", stdout(&o));
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));
        assert!(!out.exists(), "nothing written for a refused input");
    }
    // A job that ran 0 ms has no rate: imported, with the reason said.
    let file = d.join("zero.json");
    std::fs::write(&file, doc("16", "0")).unwrap();
    let o = iostudy(&["import", "fio", file.to_str().unwrap(), "-o", d.join("z").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("moved 1MiB in 0 ms: its rate is not a measurement"), "{}", stdout(&o));
    // Not a file: refused at once, not read forever.
    let o = iostudy(&["import", "fio", "/dev/zero", "-o", d.join("dz").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/dev/zero is not a regular file"), "{}", stderr(&o));
}

fn a_fio_job_file_becomes_the_workload() {
    let dir = scratch();
    let d = dir.path();
    let job = d.join("job.fio");
    std::fs::write(
        &job,
        "[global]\nioengine=libaio\niodepth=8\nbs=64k\nsize=4m\nnumjobs=2\nruntime=2\ntime_based\ngroup_reporting\n\n[rr]\nrw=randread\nverify=md5\n",
    )
    .unwrap();
    let study = |extra: &str| {
        let s = d.join("s.toml");
        std::fs::write(
            &s,
            format!(
                "[study]\nname = \"j\"\ntarget = \"{}\"\n[workload]\nfio_job = \"job.fio\"\n{extra}\n[matrix]\nscenarios = [\"bare\"]\nclients = [1]\npatterns = [\"randread\"]\n",
                d.join("t").display()
            ),
        )
        .unwrap();
        s
    };
    // verify is not implemented: an error naming it, its line and the way out.
    let o = iostudy(&["plan", study("").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("s.toml:5:11: fio job [rr] has options iostudy does not implement"), "{e}");
    assert!(e.contains("line 13: verify=md5 (iostudy does not verify data)") && e.contains("fio_ignore"), "{e}");
    // Accepted explicitly: the plan takes the job's options and says what it set aside.
    let o = iostudy(&["plan", study("fio_ignore = [\"verify\"]\niodepth = 4").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = stdout(&o);
    assert!(
        p.contains("bs=64KiB size=4MiB numjobs=2 ioengine=libaio iodepth=4 direct=0 runtime=2s"),
        "study keys win: {p}"
    );
    assert!(p.contains("note: fio job [rr]: set aside line 9: group_reporting"), "{p}");
    assert!(p.contains("note: fio job [rr]: ignored as asked (fio_ignore) line 13: verify=md5"), "{p}");
    // plan --from-fio shows the translation, and fails while something is not implemented.
    let o = iostudy(&["plan", "--from-fio", job.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains("ioengine = \"libaio\"") && stdout(&o).contains("# NOT IMPLEMENTED: line 13: verify=md5")
    );
}

/// A study with `engine` as an axis: iostudy's engine and fio in the same cells' places.
fn engine_study(dir: &Path, scenarios: &str) -> PathBuf {
    let s = dir.join("study.toml");
    std::fs::write(
        &s,
        format!(
            r#"[study]
name = "engines"
target = "{}"
repetitions = 2

[workload]
bs = "64K"
size = "8M"
numjobs = 2
runtime = "1s"
engine = ["iostudy", "fio"]

[matrix]
scenarios = [{scenarios}]
clients = [2]
patterns = ["randread", "write"]

{vm}"#,
            dir.join("target").display(),
            vm = if scenarios.contains("vm") {
                // The guest's initramfs carries fio and its ~80 MB of libraries.
                "\n[scenarios.vm]\nruntime = \"microvm\"\nshare = \"9p\"\nmemory = \"1G\"\n"
            } else {
                ""
            }
        ),
    )
    .unwrap();
    s
}

fn fio_runs_inside_bare_runc_and_a_microvm() -> Needs {
    needs_fio()?;
    need(is_root(), "root (containers and VMs)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")?;
    need(have("runc"), "runc (apt-get install runc)")?;
    need(have("qemu-system-x86_64"), "QEMU (apt-get install qemu-system-x86)")?;
    let dir = scratch();
    let s = engine_study(dir.path(), "\"bare\", \"runc\", \"vm\"");
    let out = dir.path().join("results");
    let (code, so, se, pid) = run_study(&s, &out, &["--pattern", "randread"]);
    assert_eq!(code, Some(0), "{so}\n{se}");
    let cells = stored_cells(&out);
    let fio_cells: Vec<_> = cells.iter().filter(|c| c.cell.workload.engine.name() == "fio").collect();
    assert_eq!(fio_cells.len(), 6, "bare, runc and vm, 2 repetitions");
    for c in &fio_cells {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.id, c.failure);
        for r in &c.clients {
            assert!(
                r.measured_by.starts_with("fio-3") && r.measured_by.contains("run by iostudy"),
                "{}",
                r.measured_by
            );
            assert!(r.read.ops > 0 && r.summary.latency_ns.count == r.read.ops, "{}", c.cell.id);
            assert!(r.go_instant_ns.is_some(), "fio started on the barrier");
            assert_eq!(r.threads.len(), 2);
        }
    }
    // In the guest, fio ran on the guest's kernel (the host's kernel, booted in QEMU).
    let vm = fio_cells.iter().find(|c| c.cell.scenario == "vm").unwrap();
    assert!(vm.clients[0].host.clock_source.is_some());
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    assert!(html.contains("Measured by") && html.contains("fio-3"), "provenance in the report");
    assert_nothing_left(dir.path(), pid);
    Ok(())
}

fn compare_of_fio_and_iostudy_engines_pairs_every_cell() -> Needs {
    needs_fio()?;
    need(is_root(), "root (containers)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")?;
    need(have("runc"), "runc (apt-get install runc)")?;
    let dir = scratch();
    let s = engine_study(dir.path(), "\"bare\", \"runc\"");
    // Two runs of the same study, one per engine, as a user checks fidelity.
    let text = std::fs::read_to_string(&s).unwrap();
    let mut outs = Vec::new();
    for engine in ["iostudy", "fio"] {
        let one = dir.path().join(format!("{engine}.toml"));
        std::fs::write(&one, text.replace("engine = [\"iostudy\", \"fio\"]", &format!("engine = \"{engine}\"")))
            .unwrap();
        let out = dir.path().join(engine);
        let (code, _, se, _) = run_study(&one, &out, &[]);
        assert_eq!(code, Some(0), "{se}");
        outs.push(out);
    }
    let o = iostudy(&["compare", outs[0].to_str().unwrap(), outs[1].to_str().unwrap()]);
    let text = stdout(&o);
    assert_ne!(o.status.code(), Some(2), "{text}{}", stderr(&o));
    assert!(text.contains("(measured by iostudy") && text.contains("(measured by fio-3"), "{text}");
    assert!(text.contains("4 cell(s) compared"), "every cell paired, none refused: {text}");
    assert!(!text.contains("not compared"), "{text}");
    eprintln!("{text}");
    Ok(())
}

crate::trials![
    impossible_fio_outputs_are_refused_with_their_place,
    fio_outputs_import_with_exactly_merged_latency,
    a_client_server_run_imports_a_client_per_host,
    other_fio_outputs_are_refused_with_the_flag_to_use,
    a_fio_job_file_becomes_the_workload,
    fio_runs_inside_bare_runc_and_a_microvm,
    compare_of_fio_and_iostudy_engines_pairs_every_cell,
];
