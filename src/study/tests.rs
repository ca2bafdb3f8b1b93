//! Study-file validation: exact messages with file:line:col and hints, and expansion.

use std::path::Path;

use super::plan::{Plan, PlanOptions};
use super::*;

const BASE: &str = r#"[study]
name = "t"
target = "/srv/t"

[workload]
bs = "64K"
size = "1M"
numjobs = 2

[matrix]
scenarios = ["bare"]
clients = [1, 2]
patterns = ["read", "randwrite"]
"#;

fn err(text: &str) -> String {
    Study::parse(Path::new("s.toml"), text).unwrap_err().to_string()
}

#[test]
fn base_study_expands_to_cells() {
    let s = Study::parse(Path::new("s.toml"), BASE).unwrap();
    let plan = Plan::build(&s, &PlanOptions::default()).unwrap();
    assert_eq!(plan.cells.len(), 4);
    let ids: Vec<&str> = plan.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["bare.read.c1.r1", "bare.randwrite.c1.r1", "bare.read.c2.r1", "bare.randwrite.c2.r1"]);
    assert_eq!(plan.cells[0].workload.bs.get(), 65536);
    assert_eq!(plan.cells[0].workload.numjobs, 2);
    assert_eq!(plan.footprint_bytes, 2 * 2 * (1 << 20));
}

#[test]
fn list_valued_options_join_the_matrix() {
    let text = BASE
        .replace("bs = \"64K\"", "bs = [\"4k\", \"64K\"]")
        .replace("scenarios = [\"bare\"]", "scenarios = [\"bare\", \"runc\"]");
    let s = Study::parse(Path::new("s.toml"), &text).unwrap();
    let plan = Plan::build(&s, &PlanOptions::default()).unwrap();
    assert_eq!(plan.cells.len(), 2 * 2 * 2 * 2);
    // Scenarios interleave: the two scenarios of one combination are adjacent.
    assert_eq!(plan.cells[0].id, "bare.read.c1.bs=4k.r1");
    assert_eq!(plan.cells[1].id, "runc.read.c1.bs=4k.r1");
    assert_eq!(plan.cells[2].id, "bare.read.c1.bs=64K.r1");
    assert_eq!(plan.cells[2].workload.bs.get(), 65536);
}

#[test]
fn filters_and_scale() {
    let s = Study::parse(Path::new("s.toml"), BASE).unwrap();
    let opts = PlanOptions { clients: vec![2], patterns: vec![Pattern::Read], scale: Some(0.25), ..Default::default() };
    let plan = Plan::build(&s, &opts).unwrap();
    assert_eq!(plan.cells.len(), 1);
    assert_eq!(plan.cells[0].workload.size.get(), 256 * 1024);
    let bad = PlanOptions { scenarios: vec!["gvisor".into()], ..Default::default() };
    assert_eq!(
        Plan::build(&s, &bad).unwrap_err().to_string(),
        "--scenario gvisor: not a scenario of this study (it has: bare)"
    );
}

#[test]
fn unknown_workload_option_suggests_the_right_one() {
    let text = BASE.replace("numjobs = 2", "numjob = 2");
    assert_eq!(
        err(&text),
        "s.toml:8:10: unknown workload option `numjob` (hint: did you mean `numjobs`? known options: bs, size, numjobs, direct, ioengine, engine, iodepth, runtime, ramp_time, rwmixread, randseed, end_fsync, fsync_on_close, invalidate, engine_fallback, log_interval, fio_job, fio_ignore)"
    );
}

#[test]
fn unknown_study_key_suggests_the_right_one() {
    let text = BASE.replace("name = \"t\"", "name = \"t\"\nrepetition = 3");
    let e = err(&text);
    assert!(e.starts_with("s.toml:3:1: [study]: unknown field `repetition`"), "{e}");
    assert!(e.ends_with("(hint: did you mean `repetitions`?)"), "{e}");
}

#[test]
fn bad_size_points_at_the_value() {
    let text = BASE.replace("size = \"1M\"", "size = \"lots\"");
    assert_eq!(
        err(&text),
        "s.toml:7:8: workload.size: cannot parse size `lots`: invalid digit found in string (examples: 4k, 64K, 1m, 32GiB)"
    );
}

#[test]
fn undefined_scenario_gets_a_hint() {
    let text = BASE.replace("scenarios = [\"bare\"]", "scenarios = [\"bare\", \"kata\"]");
    assert_eq!(
        err(&text),
        "s.toml:11:22: scenario `kata` is not defined (hint: add a [scenarios.kata] table with a runtime, or use a built-in scenario: bare, runc, crun, runsc, gvisor, youki, ctr-runc, ctr-crun, ctr-gvisor, podman, podman-runc, podman-gvisor, charliecloud, apptainer, enroot)"
    );
}

#[test]
fn size_smaller_than_bs_is_caught_before_running() {
    let text = BASE.replace("size = \"1M\"", "size = \"4k\"");
    assert_eq!(
        err(&text),
        "s.toml:5:1: workload (base): size 4KiB is smaller than bs 64KiB: each file needs at least one block"
    );
}

#[test]
fn unknown_pattern_and_runtime() {
    let text = BASE.replace("\"randwrite\"", "\"seqread\"");
    let e = err(&text);
    assert!(e.starts_with("s.toml:13:21: matrix.patterns[1]: unknown variant `seqread`"), "{e}");

    let vm =
        |extra: &str| BASE.replace("scenarios = [\"bare\"]", "scenarios = [\"vm\"]") + "\n[scenarios.vm]\n" + extra;
    assert_eq!(
        err(&vm("runtime = \"firecracker\"\n")),
        "s.toml:16:11: unknown runtime `firecracker` in scenario `vm` (hint: runtimes: process, oci, containerd, kubernetes, microvm, podman, charliecloud, apptainer, enroot)"
    );
    let k8s = err(&vm("runtime = \"kubernetes\"\n"));
    if cfg!(feature = "kubernetes") {
        assert!(
            k8s.starts_with("s.toml:15:1: scenario `vm`: names no image (hint: `iostudy image -o iostudy.tar`"),
            "{k8s}"
        );
    } else {
        assert!(
            k8s.starts_with("s.toml:15:1: scenario `vm`: this iostudy was built without Kubernetes support (hint: build the controller with it: cargo build --release --features kubernetes"),
            "{k8s}"
        );
    }
    assert_eq!(
        err(&vm("runtime = \"microvm\"\n")),
        "s.toml:15:1: scenario `vm`: uses runtime `microvm` but names no share (hint: add share = \"9p\" (Kata 1.x's virtio-9p) or share = \"virtiofs\")"
    );
    assert_eq!(
        err(&vm("runtime = \"microvm\"\nshare = \"nfs\"\n")),
        "s.toml:17:9: unknown share `nfs` (hint: 9p or virtiofs)"
    );
    let e = err(&vm("runtime = \"microvm\"\nshare = \"9p\"\ncache = \"auto\"\n"));
    assert!(e.ends_with("scenario `vm`: cache `auto` is not a 9p cache mode: none, loose, fscache, mmap"), "{e}");
    let e = err(&vm("runtime = \"process\"\nshare = \"9p\"\n"));
    assert_eq!(e, "s.toml:17:1: scenario `vm`: unknown field `share`, there are no fields");
    let e = err(&vm("runtime = \"oci\"\noci_runtime = \"runc\"\nshare = \"9p\"\n"));
    assert_eq!(e, "s.toml:18:1: scenario `vm`: unknown field `share`, expected `oci_runtime` or `runtime_args`");
    let e = err(&vm("runtime = \"microvm\"\nshare = \"9p\"\nmsise = \"8K\"\n"));
    assert!(e.starts_with("s.toml:18:1: scenario `vm`: unknown field `msise`, expected one of"), "{e}");
    assert!(e.ends_with("(hint: did you mean `msize`?)"), "{e}");
    let e = err(&vm("runtime = \"ocii\"\n"));
    assert!(e.ends_with("(hint: did you mean `oci`? runtimes: process, oci, containerd, kubernetes, microvm, podman, charliecloud, apptainer, enroot)"), "{e}");
}

#[test]
fn syntax_errors_have_a_position() {
    let text = BASE.replace("bs = \"64K\"", "bs = \"64K");
    let e = err(&text);
    assert!(e.starts_with("s.toml:6:10: invalid basic string"), "{e}");
}

#[test]
fn pattern_and_directory_belong_elsewhere() {
    let text = BASE.replace("numjobs = 2", "rw = \"read\"");
    assert!(err(&text).ends_with("(hint: patterns are a matrix axis: set matrix.patterns)"));
    let text = BASE.replace("target = \"/srv/t\"", "target = \"relative\"");
    assert!(err(&text).contains("study.target `relative` must be an absolute path"));
}

#[test]
fn the_seed_study_is_valid() {
    let s = Study::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/stackhpc-kata-2019.toml"))).unwrap();
    let plan = Plan::build(&s, &PlanOptions::default()).unwrap();
    assert_eq!(plan.cells.len(), 36);
    let w = &plan.cells[0].workload;
    assert_eq!((w.bs.get(), w.numjobs, w.size.get(), w.direct), (65536, 4, 32 << 30, false));
    assert_eq!(plan.footprint_bytes, 64 * 4 * (32u64 << 30));
    assert_eq!(s.baseline, "bare");
}

#[test]
fn the_seed_harness_study_is_the_same_matrix_with_libaio_direct() {
    let examples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"));
    let psync = Plan::build(&Study::load(&examples.join("stackhpc-kata-2019.toml")).unwrap(), &PlanOptions::default());
    let libaio = Study::load(&examples.join("stackhpc-kata-2019-libaio.toml")).unwrap();
    let plan = Plan::build(&libaio, &PlanOptions::default()).unwrap();
    assert_eq!(plan.cells.len(), psync.unwrap().cells.len());
    let w = &plan.cells[0].workload;
    assert_eq!((w.ioengine, w.iodepth, w.direct), (crate::workload::IoEngineKind::Libaio, 8, true));
    assert_eq!((w.bs.get(), w.numjobs, w.size.get()), (65536, 4, 32 << 30));
    assert!(w.runtime.is_some(), "time-based, as the harness ran it");
}

#[test]
fn the_old_name_of_engine_fallback_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    let study = "[study]\nname = \"s\"\ntarget = \"/tmp/x\"\n[workload]\nbs = \"4K\"\nsize = \"1M\"\nioengine = \"libaio\"\nuring_fallback = true\n[matrix]\nscenarios = [\"bare\"]\nclients = [1]\npatterns = [\"read\"]\n";
    std::fs::write(&path, study).unwrap();
    let s = Study::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let plan = Plan::build(&s, &PlanOptions::default()).unwrap();
    assert!(plan.cells[0].workload.engine_fallback);
}

#[test]
fn every_example_study_is_valid() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // Kubernetes studies need the feature (their refusal is tested above).
            let kubernetes = std::fs::read_to_string(&path).unwrap().contains("runtime = \"kubernetes\"");
            if kubernetes && !cfg!(feature = "kubernetes") {
                continue;
            }
            let s = Study::load(&path).unwrap_or_else(|e| panic!("{e}"));
            Plan::build(&s, &PlanOptions::default()).unwrap();
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn messages_name_the_key_with_its_table() {
    let e = err(&BASE.replace("clients = [1, 2]", "clients = [1, -8]"));
    assert_eq!(
        e,
        "s.toml:12:15: matrix.clients[1]: -8 is not a client count (hint: a positive whole number of clients, e.g. clients = [1, 8, 64])"
    );
    let e = err(&BASE.replace("target = \"/srv/t\"\n", ""));
    assert_eq!(
        e,
        "s.toml:1:1: study.target is required (hint: e.g. target = \"/dev/shm/iostudy\": the directory every client's files live in)"
    );
    assert_eq!(
        err(""),
        "s.toml:1:1: the study file is empty (hint: a study needs [study], [workload] and [matrix] tables: start from examples/small.toml)"
    );
    let e = err(&BASE.replace("[matrix]", "[matrixx]"));
    assert!(e.contains("the study file has no [matrix] table") || e.contains("did you mean `matrix`"), "{e}");
    let e = err(&BASE.replace("numjobs = 2", "numjobs = -2"));
    assert!(e.starts_with("s.toml:8:11: workload.numjobs: invalid value: integer `-2`, expected u32"), "{e}");
}
