//! The instruments a figure is measured with, checked where they exist: a cell's CPU
//! counter (a cgroup, root only) and the TSC clock. Where one is missing the test is
//! reported as skipped with what it needs, never as passed.

use iostudy::engine::measure::{Tsc, clock_monotonic_ns};
use iostudy::runtime::cgroup::CellCgroup;

use crate::util::*;

fn a_cells_cgroup_counts_a_busy_child() -> Needs {
    need(is_root(), "root (a cgroup of its own)")?;
    let cg = CellCgroup::create(&format!("iostudy-test-{}", std::process::id()));
    need(cg.is_some(), "a cpuacct or cgroup2 hierarchy mounted")?;
    let cg = cg.expect("checked");
    let mut child = std::process::Command::new("sh")
        .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
        .spawn()
        .unwrap();
    cg.add(child.id()).unwrap();
    child.wait().unwrap();
    let s = cg.sample().unwrap();
    assert!(s.cgroup_ns > 10_000_000, "{s:?}");
    assert!(s.host_busy_ns > s.cgroup_ns, "{s:?}");
    let dir = cg.dir().to_path_buf();
    drop(cg);
    assert!(!dir.exists(), "the cgroup goes with its owner");
    Ok(())
}

fn a_calibrated_tsc_keeps_time_with_the_monotonic_clock() -> Needs {
    let tsc = Tsc::calibrate();
    need(tsc.is_some(), "an invariant TSC (x86_64 with constant_tsc and nonstop_tsc)")?;
    let t = tsc.expect("checked");
    assert!((100.0..10_000.0).contains(&t.mhz()), "{} MHz", t.mhz());
    let a = clock_monotonic_ns();
    let b = t.now_ns();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let c = clock_monotonic_ns();
    let d = t.now_ns();
    let drift = ((d - b) as i64 - (c - a) as i64).abs();
    assert!(drift < 100_000, "the TSC clock drifted {drift} ns in 20 ms");
    Ok(())
}

crate::trials![a_cells_cgroup_counts_a_busy_child, a_calibrated_tsc_keeps_time_with_the_monotonic_clock];
