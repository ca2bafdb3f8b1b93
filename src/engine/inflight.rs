//! The loop both async engines (io_uring, libaio) share: keep `iodepth` I/Os in flight,
//! hand each to the kernel as soon as it is decided, reap completions, refill.
//!
//! An engine is only its kernel queue ([`Queue`]: submit one I/O, reap completions);
//! buffers, timestamps, errors and the waiting policy live here once. Two choices made
//! io_uring match fio at depth (issue 16; figures in `scripts/bench-vs-fio`):
//!
//! - **Each I/O is submitted the moment it is decided**, one `io_uring_enter` /
//!   `io_submit` per I/O as fio does by default (`iodepth_batch=1`), not in a batch once
//!   every free slot is filled. On the virtio disk a batch reached the device as one
//!   plugged burst and cost ~12 % of IOPS at 4 KiB, depth 8.
//! - **A thread polls for completions for up to [`POLL`] before it sleeps**, while
//!   polling pays ([`Poller`]). Buffered reads on tmpfs are handed to io_uring's worker
//!   threads, each taking ~1 µs; a thread that slept until the next completion had to be
//!   woken every few I/Os, and the worker, having drained the queue meanwhile, slept too.
//!   On a virtual machine waking a vCPU that went idle costs an exit to the hypervisor
//!   and an IPI — tens of µs, far more than the I/O. Sleeping on every wait held
//!   io_uring to 0.3–0.4× fio's IOPS with 4× its p50 (fio, doing more work per I/O in
//!   its own code, found its completions already there more often). On a disk, where
//!   completions take longer than [`POLL`], polling stops paying and the thread sleeps.
//!
//! Latency is counted from just before an I/O is handed to the kernel to the moment its
//! completion is reaped: fio's `lat` (submission plus completion), which for psync is
//! fio's `clat` too. For buffered libaio the kernel does the whole I/O inside
//! `io_submit`, where fio's `clat` would show almost nothing.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use crate::engine::EngineError;
use crate::engine::buffer::AlignedBuf;
use crate::engine::io::{Op, Schedule, ThreadIo, io_error};
use crate::engine::measure::{Recorder, mono_ns};
use crate::engine::pattern::SplitMix64;

/// How long a thread polls for a completion before sleeping in the kernel.
pub const POLL: Duration = Duration::from_micros(20);

/// One engine's kernel queue.
pub trait Queue {
    /// Hands one I/O to the kernel: `len` bytes at `op.offset` of `fd`, into or from
    /// `buf`, tagged `slot`.
    ///
    /// # Safety
    /// `buf` must stay valid for `len` bytes until the completion tagged `slot` is
    /// reaped. After an error the I/O may still be queued: the caller must not free it.
    unsafe fn submit(&mut self, slot: usize, op: Op, fd: RawFd, buf: *mut u8, len: usize) -> io::Result<()>;

    /// Appends completed I/Os to `done` as (slot, bytes or -errno). With `wait`, sleeps
    /// until at least one completes (or a signal arrives: then `done` may stay empty).
    fn reap(&mut self, wait: bool, done: &mut Vec<(usize, i64)>) -> io::Result<()>;
}

/// Runs one thread's I/O through `queue` until the schedule says stop.
pub fn drive(
    queue: &mut impl Queue,
    mut io: ThreadIo<'_>,
    schedule: &mut Schedule,
    rec: &mut Recorder,
) -> Result<(), EngineError> {
    let mut slots = Slots::new(io.iodepth, io.bs, &mut io.rng);
    let fd = io.file.as_raw_fd();
    let mut done = Vec::with_capacity(slots.depth());
    let mut failure = None;
    let mut stopping = false;
    let mut poller = Poller::default();
    loop {
        while !stopping
            && failure.is_none()
            && let Some(i) = slots.free()
        {
            let now = mono_ns();
            let Some(op) = schedule.next(now) else {
                stopping = true;
                break;
            };
            let buf = slots.issue(i, op, now, &mut io.rng);
            // SAFETY: the buffer belongs to `slots`, which is leaked rather than dropped
            // whenever this function leaves with I/O possibly still in the kernel's hands.
            if let Err(e) = unsafe { queue.submit(i, op, fd, buf, io.bs) } {
                std::mem::forget(slots);
                return Err(io_error(&io, op, e));
            }
        }
        if slots.in_flight() == 0 {
            return failure.map_or(Ok(()), Err);
        }
        if let Err(e) = poller.reap(queue, &mut done) {
            std::mem::forget(slots);
            return Err(EngineError::Io {
                what: "collect completed I/O on".into(),
                path: io.path.to_path_buf(),
                source: e,
            });
        }
        let now = mono_ns();
        for (i, res) in done.drain(..) {
            if let Err((op, e)) = slots.complete(i, res, now, rec) {
                // Stop issuing; the loop drains what is in flight, then reports this.
                failure.get_or_insert_with(|| io_error(&io, op, e));
            }
        }
    }
}

/// When to poll for completions and when to sleep.
///
/// Polling pays only while this thread has a CPU to itself: with more busy threads than
/// CPUs (2 or 4 threads of one client on 2 cores, or many clients on one host), the
/// thread that polls holds the CPU the kernel's worker needs to finish its I/O, and on a
/// slow device the completion does not come within [`POLL`] anyway. Measured on 2 cores
/// with 4 threads, always polling fell to 0.5× fio's IOPS. So the thread keeps the share
/// of its recent polls that found a completion, and below one half it sleeps at once,
/// trying a poll again only every [`Poller::PROBE_EVERY`] waits.
struct Poller {
    /// Share of recent polls that found a completion, in 1/256ths (moving average).
    success: u32,
    /// Waits that went straight to sleep since the last poll.
    slept: u32,
}

impl Default for Poller {
    fn default() -> Self {
        Self { success: 256, slept: 0 }
    }
}

impl Poller {
    const PROBE_EVERY: u32 = 16;

    /// Reaps at least one completion: what is already there, else polls for up to
    /// [`POLL`] if polling has been paying, else sleeps. A signal may end the sleep with
    /// nothing reaped; the caller simply asks again.
    fn reap(&mut self, queue: &mut impl Queue, done: &mut Vec<(usize, i64)>) -> io::Result<()> {
        queue.reap(false, done)?;
        if !done.is_empty() {
            return Ok(());
        }
        if self.success < 128 && self.slept < Self::PROBE_EVERY {
            self.slept += 1;
            return queue.reap(true, done);
        }
        self.slept = 0;
        let until = mono_ns() + POLL.as_nanos() as u64;
        while mono_ns() < until {
            queue.reap(false, done)?;
            if !done.is_empty() {
                self.success += (256 - self.success) / 8;
                return Ok(());
            }
        }
        self.success -= self.success / 8;
        queue.reap(true, done)
    }
}

/// The I/Os a thread may have in flight: a buffer each, the op it carries and when it
/// was handed to the kernel.
struct Slots {
    slots: Vec<Slot>,
    free: Vec<usize>,
    bs: usize,
}

struct Slot {
    buf: AlignedBuf,
    op: Option<Op>,
    submit: u64,
}

impl Slots {
    fn new(depth: u32, bs: usize, rng: &mut SplitMix64) -> Self {
        let depth = depth.max(1) as usize;
        let slots = (0..depth).map(|_| Slot { buf: AlignedBuf::random(bs, rng), op: None, submit: 0 }).collect();
        Self { slots, free: (0..depth).rev().collect(), bs }
    }

    fn depth(&self) -> usize {
        self.slots.len()
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn free(&self) -> Option<usize> {
        self.free.last().copied()
    }

    /// Takes free slot `i` for `op`, timed from `now`; returns its buffer, scrambled
    /// first for a write so no two writes carry the same data.
    fn issue(&mut self, i: usize, op: Op, now: u64, rng: &mut SplitMix64) -> *mut u8 {
        debug_assert_eq!(self.free.last(), Some(&i));
        self.free.pop();
        let slot = &mut self.slots[i];
        if !op.is_read {
            slot.buf.scramble(rng);
        }
        slot.op = Some(op);
        slot.submit = now;
        slot.buf.as_mut_ptr()
    }

    /// Frees slot `i`, whose I/O ended with `res` at `now`, and records it.
    fn complete(&mut self, i: usize, res: i64, now: u64, rec: &mut Recorder) -> Result<(), (Op, io::Error)> {
        let slot = &mut self.slots[i];
        let op = slot.op.take().expect("a completion for an issued slot");
        self.free.push(i);
        if res == self.bs as i64 {
            if op.measured {
                rec.record(op.is_read, self.bs as u64, slot.submit, now);
            }
            Ok(())
        } else if res < 0 {
            Err((op, io::Error::from_raw_os_error(-res as i32)))
        } else {
            Err((op, io::Error::other(format!("short transfer of {res} bytes"))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Pattern, Workload};

    /// A queue that completes each I/O on the next reap, failing the ones at `fail_at`.
    struct Instant {
        pending: Vec<(usize, u64)>,
        fail_at: Option<u64>,
        submitted: u64,
        sleeps: u32,
    }

    impl Queue for Instant {
        unsafe fn submit(&mut self, slot: usize, op: Op, _: RawFd, _: *mut u8, _: usize) -> io::Result<()> {
            self.submitted += 1;
            self.pending.push((slot, op.offset));
            Ok(())
        }

        fn reap(&mut self, wait: bool, done: &mut Vec<(usize, i64)>) -> io::Result<()> {
            self.sleeps += u32::from(wait);
            for (slot, offset) in self.pending.drain(..) {
                done.push((slot, if Some(offset) == self.fail_at { -5 } else { 4096 }));
            }
            Ok(())
        }
    }

    fn thread_io(file: &std::fs::File, depth: u32) -> ThreadIo<'_> {
        ThreadIo { file, path: std::path::Path::new("f"), bs: 4096, iodepth: depth, rng: SplitMix64::new(1) }
    }

    #[test]
    fn every_block_once_and_no_sleep_when_completions_are_ready() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        let w = Workload::new(Pattern::Randread, 4096, 64 * 4096, dir.path());
        let mut schedule = Schedule::new(&w, 0, 0);
        let mut rec = Recorder::new(crate::engine::measure::WallClock::now(), Duration::from_secs(1), 0);
        let mut q = Instant { pending: vec![], fail_at: None, submitted: 0, sleeps: 0 };
        drive(&mut q, thread_io(&file, 8), &mut schedule, &mut rec).unwrap();
        assert_eq!(q.submitted, 64);
        assert_eq!(rec.read.ops, 64);
        assert_eq!(q.sleeps, 0, "completions were always ready when polled");
    }

    #[test]
    fn an_error_stops_issuing_drains_and_names_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        let w = Workload::new(Pattern::Read, 4096, 64 * 4096, dir.path());
        let mut schedule = Schedule::new(&w, 0, 0);
        let mut rec = Recorder::new(crate::engine::measure::WallClock::now(), Duration::from_secs(1), 0);
        let mut q = Instant { pending: vec![], fail_at: Some(3 * 4096), submitted: 0, sleeps: 0 };
        let e = drive(&mut q, thread_io(&file, 8), &mut schedule, &mut rec).unwrap_err().to_string();
        assert!(e.contains("read 4096 bytes at offset 12288"), "{e}");
        assert_eq!(q.submitted, 8, "nothing is issued after the failed completion is seen");
        assert_eq!(rec.read.ops, 7, "the others in flight are drained and counted");
    }
}
