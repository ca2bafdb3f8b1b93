//! Recording the measured phase: latency histograms and the wall-clock interval series.
//!
//! Each thread records alone (no shared counters, no locks on the I/O path); the
//! engine merges threads at the end. Timestamps are monotonic `Instant`s mapped to
//! wall-clock ns through one (monotonic, realtime) pair taken at engine start, so all
//! threads agree on interval boundaries and clients on different hosts line up to the
//! accuracy of their clocks. Finding an I/O's interval costs one comparison except at
//! a boundary.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::results::DirectionStats;
use crate::results::histogram::{MAX_LATENCY_NS, new_latency_histogram};

/// Maps monotonic instants to wall-clock ns since the epoch.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    mono0: Instant,
    wall0_ns: u64,
}

impl WallClock {
    pub fn now() -> Self {
        let mono0 = Instant::now();
        let wall0_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self { mono0, wall0_ns }
    }

    pub fn wall_ns(&self, t: Instant) -> u64 {
        let ns = t.saturating_duration_since(self.mono0).as_nanos() as u64;
        self.wall0_ns + ns
    }

    /// The instant at which the wall clock reads `wall_ns`.
    pub fn instant_at(&self, wall_ns: u64) -> Instant {
        self.mono0 + Duration::from_nanos(wall_ns.saturating_sub(self.wall0_ns))
    }
}

/// One thread's record of the measured phase.
pub struct Recorder {
    clock: WallClock,
    interval_ns: u64,
    first_index: u64,
    current: usize,
    next_boundary: Instant,
    pub bytes: Vec<u64>,
    pub ops: Vec<u64>,
    pub read: DirectionStats,
    pub write: DirectionStats,
    pub read_hist: Histogram<u64>,
    pub write_hist: Histogram<u64>,
    pub last_completion: Option<Instant>,
    /// Submission of the first measured I/O: when this thread really started, which
    /// is later than the agreed start if it woke late.
    pub first_submit: Option<Instant>,
}

impl Recorder {
    pub fn new(clock: WallClock, interval: Duration, measure_start: Instant) -> Self {
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
            read_hist: new_latency_histogram(),
            write_hist: new_latency_histogram(),
            last_completion: None,
            first_submit: None,
        };
        r.next_boundary = r.boundary_after(0);
        r
    }

    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    fn boundary_after(&self, slot: usize) -> Instant {
        let wall = (self.first_index + slot as u64 + 1) * self.interval_ns;
        self.clock.instant_at(wall)
    }

    /// Records one completed I/O of `len` bytes submitted at `submit`.
    #[inline]
    pub fn record(&mut self, is_read: bool, len: u64, submit: Instant, complete: Instant) {
        let lat = complete.saturating_duration_since(submit).as_nanos() as u64;
        let lat = lat.clamp(1, MAX_LATENCY_NS);
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
    fn advance(&mut self, t: Instant) {
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
        let start = Instant::now();
        let mut r = Recorder::new(clock, Duration::from_millis(100), start);
        let first_boundary = clock.instant_at((r.first_index() + 1) * 100_000_000);
        r.record(true, 10, start, start);
        r.record(true, 10, first_boundary, first_boundary);
        r.record(false, 5, first_boundary, first_boundary + Duration::from_millis(250));
        assert_eq!(r.bytes, vec![10, 10, 0, 5]);
        assert_eq!(r.ops, vec![1, 1, 0, 1]);
        assert_eq!(r.read, DirectionStats { bytes: 20, ops: 2 });
        assert_eq!(r.write, DirectionStats { bytes: 5, ops: 1 });
        assert_eq!(r.write_hist.len(), 1);
        assert!(r.write_hist.value_at_quantile(1.0).abs_diff(250_000_000) < 250_000);
    }
}
