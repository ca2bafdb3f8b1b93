//! The clock every latency is timed with, checked before it is trusted.
//!
//! Latencies are differences of CLOCK_MONOTONIC readings. A clock that only advances in
//! coarse steps makes them lie without a sign: with the `refined-jiffies` clocksource
//! (a guest under TCG whose watchdog gave up on the TSC) every I/O reads as 0 or 4 ms,
//! and a p50 of 0 µs looks like a result. So a client reads its clock a few thousand
//! times back to back. A clock that stands still between readings and then jumps is
//! coarse: its resolution is the smallest jump, and one that cannot resolve a
//! microsecond is refused. A clock that moves on every reading resolves at least as
//! finely as one reading takes; then what a reading costs is recorded too, since every
//! latency includes about one (a few ns natively, 15–50 µs inside gVisor, where each
//! reading is a trapped system call). Where a reading costs more than
//! [`SLOW_READ_NS`], the engine times with the CPU's time-stamp counter instead,
//! calibrated against CLOCK_MONOTONIC ([`Tsc`]) — as fio does — and records it: at two
//! readings per I/O, gVisor's slow clock had cost iostudy's engine 20–30 % of its IOPS
//! against fio's in the same sandbox.

use crate::engine::EngineError;
use crate::engine::measure::{Tsc, mono_ns};

/// A clock reading slower than this is worth avoiding: switch to the TSC.
pub const SLOW_READ_NS: u64 = 1_000;

/// Coarser than this and a latency cannot be told from its neighbours.
pub const MAX_RESOLUTION_NS: u64 = 1_000;

/// Readings taken to find the clock's step.
const READS: usize = 5_000;

/// What a clock was found to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The smallest non-zero step seen between two readings, ns.
    pub step_ns: u64,
    /// Whether the clock stood still between some readings (then `step_ns` is its
    /// resolution; otherwise it resolves at least as finely as a reading takes).
    pub stalls: bool,
    /// What one reading costs, ns (mean).
    pub read_ns: u64,
    /// `clock_getres(CLOCK_MONOTONIC)`, ns.
    pub getres_ns: u64,
    /// What the engine times with when it is not CLOCK_MONOTONIC itself, and why.
    pub timer: Option<String>,
}

impl Resolution {
    /// The resolution to record: the step of a coarse clock, else what the kernel
    /// claims (no reading showed anything coarser than a reading's own cost).
    pub fn resolution_ns(&self) -> u64 {
        if self.stalls { self.step_ns } else { self.getres_ns.min(self.step_ns).max(1) }
    }
}

/// Measures CLOCK_MONOTONIC's effective resolution.
pub fn measure() -> Resolution {
    let mut step = u64::MAX;
    let mut stalls = false;
    let mut last = mono_ns();
    let started = last;
    let mut reads = 0u64;
    // Enough readings to see steps; for a coarse clock, keep reading until it moved
    // (at most 50 ms).
    while reads < READS as u64 || (step == u64::MAX && last.saturating_sub(started) < 50_000_000) {
        let now = mono_ns();
        if now > last {
            step = step.min(now - last);
        } else {
            stalls = true;
        }
        last = now;
        reads += 1;
    }
    let res = rustix::time::clock_getres(rustix::time::ClockId::Monotonic);
    Resolution {
        step_ns: step,
        stalls,
        read_ns: last.saturating_sub(started) / reads.max(1),
        getres_ns: res.tv_sec as u64 * 1_000_000_000 + res.tv_nsec as u64,
        timer: None,
    }
}

/// Measures the clock and refuses one that cannot resolve [`MAX_RESOLUTION_NS`].
pub fn check(source: Option<&str>) -> Result<Resolution, EngineError> {
    let mut r = measure();
    if r.read_ns > SLOW_READ_NS
        && let Some(tsc) = Tsc::calibrate()
    {
        let slow = r.read_ns;
        let mhz = tsc.mhz();
        tsc.install();
        r = measure();
        r.timer = Some(format!(
            "TSC at {mhz:.1} MHz, calibrated against CLOCK_MONOTONIC, whose readings cost {:.1} µs here",
            slow as f64 / 1000.0
        ));
    }
    if r.resolution_ns() > MAX_RESOLUTION_NS {
        return Err(EngineError::Clock(format!(
            "this client's clock (clocksource {}) advances in steps of {} (clock_getres says {} ns): every latency would read as a multiple of that; in a guest under TCG boot with tsc=reliable (iostudy's micro-VMs do), under KVM use kvm-clock, on a host switch to tsc (/sys/devices/system/clocksource/clocksource0/current_clocksource)",
            source.unwrap_or("unknown"),
            if r.step_ns == u64::MAX { "more than 50 ms".to_string() } else { format!("{} ns", r.step_ns) },
            r.getres_ns
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_hosts_clock_resolves_a_microsecond() {
        let r = check(Some("test")).unwrap();
        assert!(r.resolution_ns() <= MAX_RESOLUTION_NS && r.step_ns > 0, "{r:?}");
        assert!(r.read_ns < 10_000, "{r:?}");
        assert!(r.getres_ns >= 1, "{r:?}");
    }
}
