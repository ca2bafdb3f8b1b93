//! The I/O engines: how one thread issues its I/Os (`psync`, `io_uring`, `libaio`).
//!
//! Every engine shares [`Schedule`] — which block comes next, read or write, ramp or
//! measured, when to stop — and [`Recorder`]; they differ only in how I/Os are in
//! flight. A fixed set of engines, so an enum, not a trait object: the hot loop is
//! monomorphic. The psync loop is kept bare on purpose (two clock reads, one syscall,
//! one histogram increment per I/O): it is what the benchmark against fio measures.
//! The async engines share one loop ([`inflight`]) over their kernel queue.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::engine::buffer::AlignedBuf;
use crate::engine::measure::{Recorder, mono_ns};
use crate::engine::pattern::{BlockStream, Mix, Order, SplitMix64};
use crate::engine::{EngineError, IoEngineKind, Workload, aio, inflight, uring};

/// One I/O decided by the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub offset: u64,
    pub is_read: bool,
    /// Counted in the figures (false during the ramp).
    pub measured: bool,
}

/// Which I/O comes next and when the thread is done.
pub struct Schedule {
    stream: BlockStream,
    mix: Mix,
    bs: u64,
    measure_start: u64,
    /// Time-based runs: no I/O is issued from here on (`u64::MAX` otherwise).
    deadline: u64,
    /// Size-based runs: measured I/Os still to issue.
    remaining: Option<u64>,
}

impl Schedule {
    pub fn new(w: &Workload, thread: u32, ramp_start: u64) -> Self {
        let seed = w.randseed ^ (u64::from(thread) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let order = if w.rw.is_random() { Order::Random } else { Order::Sequential };
        let measure_start = ramp_start + w.ramp_time.0.as_nanos() as u64;
        Self {
            stream: BlockStream::new(order, w.blocks(), seed),
            mix: Mix::new(w.rw.read_percent(w.rwmixread), seed),
            bs: w.bs.get(),
            measure_start,
            deadline: w.runtime.map_or(u64::MAX, |r| measure_start + r.0.as_nanos() as u64),
            remaining: if w.runtime.is_some() { None } else { Some(w.blocks()) },
        }
    }

    pub fn measure_start(&self) -> u64 {
        self.measure_start
    }

    /// The next I/O to issue at `now`, or `None` when the thread is done.
    #[inline]
    pub fn next(&mut self, now: u64) -> Option<Op> {
        let measured = now >= self.measure_start;
        if measured {
            if now >= self.deadline {
                return None;
            }
            if let Some(rem) = &mut self.remaining {
                if *rem == 0 {
                    return None;
                }
                *rem -= 1;
            }
        }
        let offset = self.stream.next_block() * self.bs;
        Some(Op { offset, is_read: self.mix.is_read(), measured })
    }
}

/// What a thread needs to run.
pub struct ThreadIo<'a> {
    pub file: &'a File,
    pub path: &'a Path,
    pub bs: usize,
    pub iodepth: u32,
    pub rng: SplitMix64,
}

impl IoEngineKind {
    /// Checks that this engine can run here, before any file is touched.
    pub fn probe(self) -> Result<(), std::io::Error> {
        match self {
            IoEngineKind::Psync => Ok(()),
            IoEngineKind::IoUring => uring::probe(),
            IoEngineKind::Libaio => aio::probe(),
        }
    }

    /// Runs one thread's I/O until the schedule says stop.
    pub fn run_thread(self, io: ThreadIo<'_>, schedule: &mut Schedule, rec: &mut Recorder) -> Result<(), EngineError> {
        match self {
            IoEngineKind::Psync => psync(io, schedule, rec),
            IoEngineKind::IoUring => {
                let mut ring = uring::Ring::new(io.iodepth).map_err(EngineError::unavailable(self))?;
                inflight::drive(&mut ring, io, schedule, rec)
            }
            IoEngineKind::Libaio => {
                let mut ctx = aio::Context::new(io.iodepth).map_err(EngineError::unavailable(self))?;
                inflight::drive(&mut ctx, io, schedule, rec)
            }
        }
    }
}

pub(super) fn io_error(io: &ThreadIo<'_>, op: Op, source: std::io::Error) -> EngineError {
    EngineError::Io {
        what: format!("{} {} bytes at offset {} of", if op.is_read { "read" } else { "write" }, io.bs, op.offset),
        path: io.path.to_path_buf(),
        source,
    }
}

fn psync(mut io: ThreadIo<'_>, schedule: &mut Schedule, rec: &mut Recorder) -> Result<(), EngineError> {
    let mut buf = AlignedBuf::random(io.bs, &mut io.rng);
    let len = io.bs as u64;
    let mut now = mono_ns();
    while let Some(op) = schedule.next(now) {
        if !op.is_read {
            buf.scramble(&mut io.rng);
        }
        let submit = mono_ns();
        let result = if op.is_read {
            io.file.read_exact_at(buf.as_mut_slice(), op.offset)
        } else {
            io.file.write_all_at(buf.as_slice(), op.offset)
        };
        now = mono_ns();
        result.map_err(|e| io_error(&io, op, e))?;
        if op.measured {
            rec.record(op.is_read, len, submit, now);
        }
    }
    Ok(())
}
