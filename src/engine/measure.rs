//! Recording the measured phase: latency histograms and the wall-clock interval series.
//!
//! Each thread records alone (no shared counters, no locks on the I/O path); the
//! engine merges threads at the end. Timestamps are CLOCK_MONOTONIC nanoseconds as a
//! plain `u64` ([`mono_ns`]: one vDSO call, no `Instant` arithmetic on the hot path),
//! mapped to wall-clock ns through one (monotonic, realtime) pair taken at engine
//! start, so all threads agree on interval boundaries and clients on different hosts
//! line up to the accuracy of their clocks. Finding an I/O's interval costs one
//! comparison except at a boundary.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::results::DirectionStats;
use crate::results::histogram::{MAX_LATENCY_NS, new_latency_histogram};

/// The engine's time now, in ns of CLOCK_MONOTONIC: a reading of that clock, or where
/// [`crate::engine::clock::check`] found a reading slow and switched to it, the CPU's
/// time-stamp counter calibrated against that clock.
#[inline]
pub fn mono_ns() -> u64 {
    match TSC.get() {
        Some(t) => t.now_ns(),
        None => clock_monotonic_ns(),
    }
}

/// CLOCK_MONOTONIC now, in ns.
#[inline]
pub fn clock_monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The time-stamp counter as a clock: `base_ns + (tsc − base_tsc) × ns_per_tick`.
///
/// Used only where reading CLOCK_MONOTONIC is itself slow — inside gVisor a reading is
/// a trapped system call of 15–50 µs, two per I/O, more than a tmpfs read; fio avoids
/// the same cost by reading the TSC (its default `clocksource=cpu`). Only a constant,
/// non-stop TSC qualifies, and only when two calibrations agree.
#[derive(Debug, Clone, Copy)]
pub struct Tsc {
    base_tsc: u64,
    base_ns: u64,
    /// ns per tick, in 1/2^32.
    ns_per_tick_q32: u64,
}

static TSC: std::sync::OnceLock<Tsc> = std::sync::OnceLock::new();

#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

impl Tsc {
    #[inline]
    pub fn now_ns(&self) -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            let ticks = rdtsc().wrapping_sub(self.base_tsc);
            self.base_ns + ((u128::from(ticks) * u128::from(self.ns_per_tick_q32)) >> 32) as u64
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            clock_monotonic_ns()
        }
    }

    /// The counter's frequency, MHz.
    pub fn mhz(&self) -> f64 {
        (1u64 << 32) as f64 / self.ns_per_tick_q32 as f64 * 1000.0
    }

    /// Calibrates the TSC against CLOCK_MONOTONIC over two 50 ms spans; `None` where
    /// there is no constant, non-stop TSC or the spans disagree by more than 0.05 %.
    pub fn calibrate() -> Option<Tsc> {
        #[cfg(target_arch = "x86_64")]
        {
            // CPUID 0x80000007 EDX bit 8: an invariant TSC (constant rate, runs in every
            // power state) — what Linux shows as constant_tsc + nonstop_tsc, asked of
            // the CPU because gVisor's /proc/cpuinfo does not show those flags.
            let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
            if max_ext < 0x8000_0007 || core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) == 0 {
                return None;
            }
            // A clock reading bracketed by two counter readings, so a slow reading
            // costs half its length in error, not all of it.
            let pair = || {
                let a = rdtsc();
                let ns = clock_monotonic_ns();
                let b = rdtsc();
                (a / 2 + b / 2, ns)
            };
            let span = |from: (u64, u64)| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                let to = pair();
                ((to.1 - from.1) as f64 / (to.0 - from.0) as f64, to)
            };
            let start = pair();
            let (first, mid) = span(start);
            let (second, _) = span(mid);
            if !(first > 0.0 && ((first - second) / first).abs() < 5e-4) {
                return None;
            }
            let ns_per_tick = (first + second) / 2.0;
            Some(Tsc {
                base_tsc: start.0,
                base_ns: start.1,
                ns_per_tick_q32: (ns_per_tick * (1u64 << 32) as f64) as u64,
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    }

    /// Makes [`mono_ns`] read this counter from now on (once per process).
    pub fn install(self) -> bool {
        TSC.set(self).is_ok()
    }
}

/// Maps monotonic ns to wall-clock ns since the epoch.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    mono0: u64,
    wall0_ns: u64,
}

impl WallClock {
    pub fn now() -> Self {
        let mono0 = mono_ns();
        let wall0_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self { mono0, wall0_ns }
    }

    pub fn wall_ns(&self, mono: u64) -> u64 {
        self.wall0_ns + mono.saturating_sub(self.mono0)
    }

    /// The monotonic time at which the wall clock reads `wall_ns`.
    pub fn mono_at(&self, wall_ns: u64) -> u64 {
        self.mono0 + wall_ns.saturating_sub(self.wall0_ns)
    }
}

/// A thread's two latency histograms, made before go: each is 256 KiB of counters
/// written to zero. Made after go, they started every client about 0.5 ms late
/// (measured: one client 0.63 → 0.16 ms from go to its first I/O), and a thousand
/// clients on two cores spread their starts over most of a second.
pub struct Histograms {
    read: Histogram<u64>,
    write: Histogram<u64>,
}

impl Histograms {
    pub fn new() -> Self {
        Histograms { read: new_latency_histogram(), write: new_latency_histogram() }
    }
}

impl Default for Histograms {
    fn default() -> Self {
        Self::new()
    }
}

/// One thread's record of the measured phase.
pub struct Recorder {
    clock: WallClock,
    interval_ns: u64,
    first_index: u64,
    current: usize,
    next_boundary: u64,
    pub bytes: Vec<u64>,
    pub ops: Vec<u64>,
    pub read: DirectionStats,
    pub write: DirectionStats,
    pub read_hist: Histogram<u64>,
    pub write_hist: Histogram<u64>,
    pub last_completion: Option<u64>,
    /// Submission of the first measured I/O: when this thread really started, which
    /// is later than the agreed start if it woke late.
    pub first_submit: Option<u64>,
}

impl Recorder {
    pub fn new(clock: WallClock, interval: Duration, measure_start: u64) -> Self {
        Self::with_histograms(clock, interval, measure_start, Histograms::new())
    }

    /// A recorder whose histograms were made beforehand (see [`Histograms`]).
    pub fn with_histograms(clock: WallClock, interval: Duration, measure_start: u64, h: Histograms) -> Self {
        let interval_ns = interval.as_nanos() as u64;
        let first_index = clock.wall_ns(measure_start) / interval_ns;
        let mut r = Self {
            clock,
            interval_ns,
            first_index,
            current: 0,
            next_boundary: measure_start,
            bytes: vec![0],
            ops: vec![0],
            read: DirectionStats::default(),
            write: DirectionStats::default(),
            read_hist: h.read,
            write_hist: h.write,
            last_completion: None,
            first_submit: None,
        };
        r.next_boundary = r.boundary_after(0);
        r
    }

    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    fn boundary_after(&self, slot: usize) -> u64 {
        let wall = (self.first_index + slot as u64 + 1) * self.interval_ns;
        self.clock.mono_at(wall)
    }

    /// Records one completed I/O of `len` bytes submitted at `submit`.
    #[inline]
    pub fn record(&mut self, is_read: bool, len: u64, submit: u64, complete: u64) {
        let lat = complete.saturating_sub(submit).clamp(1, MAX_LATENCY_NS);
        if is_read {
            self.read.bytes += len;
            self.read.ops += 1;
            self.read_hist.saturating_record(lat);
        } else {
            self.write.bytes += len;
            self.write.ops += 1;
            self.write_hist.saturating_record(lat);
        }
        if complete >= self.next_boundary {
            self.advance(complete);
        }
        self.bytes[self.current] += len;
        self.ops[self.current] += 1;
        self.last_completion = Some(complete);
        if self.first_submit.is_none() {
            self.first_submit = Some(submit);
        }
    }

    #[cold]
    fn advance(&mut self, t: u64) {
        let index = self.clock.wall_ns(t) / self.interval_ns;
        let slot = index.saturating_sub(self.first_index) as usize;
        if slot >= self.bytes.len() {
            self.bytes.resize(slot + 1, 0);
            self.ops.resize(slot + 1, 0);
        }
        self.current = slot;
        self.next_boundary = self.boundary_after(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_follow_the_wall_clock() {
        let clock = WallClock::now();
        let start = mono_ns();
        let mut r = Recorder::new(clock, Duration::from_millis(100), start);
        let first_boundary = clock.mono_at((r.first_index() + 1) * 100_000_000);
        r.record(true, 10, start, start);
        r.record(true, 10, first_boundary, first_boundary);
        r.record(false, 5, first_boundary, first_boundary + 250_000_000);
        assert_eq!(r.bytes, vec![10, 10, 0, 5]);
        assert_eq!(r.ops, vec![1, 1, 0, 1]);
        assert_eq!(r.read, DirectionStats { bytes: 20, ops: 2 });
        assert_eq!(r.write, DirectionStats { bytes: 5, ops: 1 });
        assert_eq!(r.write_hist.len(), 1);
        assert!(r.write_hist.value_at_quantile(1.0).abs_diff(250_000_000) < 250_000);
    }
}
