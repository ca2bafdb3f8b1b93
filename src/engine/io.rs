//! The I/O engines: how one thread issues its I/Os (`psync`, `io_uring`).
//!
//! Both engines share [`Schedule`] — which block comes next, read or write, ramp or
//! measured, when to stop — and [`Recorder`]; they differ only in how I/Os are in
//! flight. A fixed set of engines, so an enum, not a trait object: the hot loop is
//! monomorphic. The psync loop is kept bare on purpose (two clock reads, one syscall,
//! one histogram increment per I/O): it is what the benchmark against fio measures.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use io_uring::{IoUring, opcode, types};

use crate::engine::buffer::AlignedBuf;
use crate::engine::measure::{Recorder, mono_ns};
use crate::engine::pattern::{BlockStream, Mix, Order, SplitMix64};
use crate::engine::{EngineError, IoEngineKind, Workload};

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
    /// Checks that this engine can run here, before any file is touched. For io_uring
    /// that means a ring *and* the read/write opcodes: gVisor, for one, sets up rings
    /// but answers EINVAL to IORING_OP_READ.
    pub fn probe(self) -> Result<(), std::io::Error> {
        match self {
            IoEngineKind::Psync => Ok(()),
            IoEngineKind::IoUring => {
                let ring = IoUring::new(2)?;
                let mut probe = io_uring::Probe::new();
                ring.submitter().register_probe(&mut probe)?;
                if probe.is_supported(opcode::Read::CODE) && probe.is_supported(opcode::Write::CODE) {
                    Ok(())
                } else {
                    Err(std::io::Error::other("the kernel's io_uring lacks IORING_OP_READ/IORING_OP_WRITE"))
                }
            }
        }
    }

    /// Runs one thread's I/O until the schedule says stop.
    pub fn run_thread(self, io: ThreadIo<'_>, schedule: &mut Schedule, rec: &mut Recorder) -> Result<(), EngineError> {
        match self {
            IoEngineKind::Psync => psync(io, schedule, rec),
            IoEngineKind::IoUring => uring(io, schedule, rec),
        }
    }
}

fn io_error(io: &ThreadIo<'_>, op: Op, source: std::io::Error) -> EngineError {
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

struct Slot {
    buf: AlignedBuf,
    op: Option<Op>,
    submit: u64,
}

fn uring(mut io: ThreadIo<'_>, schedule: &mut Schedule, rec: &mut Recorder) -> Result<(), EngineError> {
    let depth = io.iodepth.max(1);
    // Declared before the ring so the ring (and any I/O it still owns) goes first.
    let mut slots: Vec<Slot> =
        (0..depth).map(|_| Slot { buf: AlignedBuf::random(io.bs, &mut io.rng), op: None, submit: mono_ns() }).collect();
    let mut ring = IoUring::new(depth.next_power_of_two()).map_err(EngineError::uring_unavailable)?;
    let fd = types::Fd(io.file.as_raw_fd());
    let len = io.bs as u64;
    let mut free: Vec<usize> = (0..depth as usize).rev().collect();
    let mut in_flight = 0usize;
    let mut done = false;
    loop {
        while !done && let Some(&i) = free.last() {
            let now = mono_ns();
            let Some(op) = schedule.next(now) else {
                done = true;
                break;
            };
            free.pop();
            let slot = &mut slots[i];
            let ptr = slot.buf.as_mut_ptr();
            let entry = if op.is_read {
                opcode::Read::new(fd, ptr, io.bs as u32).offset(op.offset).build()
            } else {
                slot.buf.scramble(&mut io.rng);
                opcode::Write::new(fd, ptr, io.bs as u32).offset(op.offset).build()
            };
            slot.op = Some(op);
            slot.submit = now;
            // SAFETY: the buffer lives in `slots`, which outlives the ring's use of it:
            // we drain every in-flight entry before returning, including on error.
            unsafe { ring.submission().push(&entry.user_data(i as u64)) }
                .expect("the ring has a free entry for every free slot");
            in_flight += 1;
        }
        if in_flight == 0 {
            return Ok(());
        }
        ring.submit_and_wait(1).map_err(EngineError::uring_unavailable)?;
        let now = mono_ns();
        let mut failure = None;
        for cqe in ring.completion() {
            let i = cqe.user_data() as usize;
            in_flight -= 1;
            free.push(i);
            let slot = &mut slots[i];
            let op = slot.op.take().expect("completion for an issued slot");
            let res = cqe.result();
            if res < 0 || res as u64 != len {
                let e = if res < 0 {
                    std::io::Error::from_raw_os_error(-res)
                } else {
                    std::io::Error::other(format!("short transfer of {res} bytes"))
                };
                failure.get_or_insert((op, e));
                continue;
            }
            if op.measured {
                rec.record(op.is_read, len, slot.submit, now);
            }
        }
        if let Some((op, e)) = failure {
            // Drain what is still in flight so no buffer is freed under the kernel.
            while in_flight > 0 {
                if ring.submit_and_wait(1).is_err() {
                    break;
                }
                in_flight -= ring.completion().count();
            }
            return Err(io_error(&io, op, e));
        }
    }
}
