//! io_uring, driven as fio's io_uring engine drives it: one ring per thread, one
//! `io_uring_enter` per I/O, completions collected whenever the thread enters the kernel.
//!
//! The ring asks for `COOP_TASKRUN` (Linux 5.19): completions finished by io_uring's
//! worker threads (every buffered read on tmpfs is handed to one) are queued for this
//! thread to collect on its next entry instead of interrupting it with an IPI. The
//! thread enters for every submission and every poll ([`super::inflight`]), so nothing
//! waits.
//!
//! What fio offers and this does not, each measured here at 4 KiB randread, depth 8:
//! `SINGLE_ISSUER | DEFER_TASKRUN` (fio 3.33 sets them): IOPS within run-to-run noise on
//! tmpfs, p50 13 % higher on the virtio disk. `registerfiles` and `fixedbufs` (save a
//! file-table lookup and a page pin per I/O): within noise on both. `sqthread_poll`: the
//! kernel's polling thread takes a core the I/O needs (0.92× IOPS, 1.5× p50 on the disk,
//! 2 cores). `hipri` needs a device with polled queues (NVMe `poll_queues`); virtio-blk
//! here has none, so it could not be measured and is not offered untested.

use std::io;
use std::os::fd::RawFd;

use io_uring::{IoUring, opcode, types};

use crate::engine::inflight::Queue;
use crate::engine::io::Op;

const ENTER_GETEVENTS: u32 = 1;

/// Checks for a ring *and* the read/write opcodes: gVisor, for one, sets up rings but
/// answers EINVAL to IORING_OP_READ.
pub fn probe() -> io::Result<()> {
    let ring = IoUring::new(2)?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    if probe.is_supported(opcode::Read::CODE) && probe.is_supported(opcode::Write::CODE) {
        Ok(())
    } else {
        Err(io::Error::other("the kernel's io_uring lacks IORING_OP_READ/IORING_OP_WRITE"))
    }
}

/// One thread's ring.
pub struct Ring {
    ring: IoUring,
}

impl Ring {
    pub fn new(depth: u32) -> io::Result<Self> {
        let entries = depth.max(1).next_power_of_two();
        let ring = IoUring::builder()
            .setup_cqsize(entries)
            .setup_coop_taskrun()
            .build(entries)
            // Before 5.19: completions interrupt the thread instead; nothing else changes.
            .or_else(|_| IoUring::new(entries))?;
        Ok(Self { ring })
    }

    /// Submits what is queued and collects finished completions; sleeps until
    /// `min_complete` are there.
    fn enter(&mut self, to_submit: u32, min_complete: u32) -> io::Result<()> {
        // SAFETY: no argument pointer is passed, so the kernel reads nothing of ours.
        match unsafe { self.ring.submitter().enter::<[u64; 1]>(to_submit, min_complete, ENTER_GETEVENTS, None) } {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted && to_submit == 0 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Queue for Ring {
    unsafe fn submit(&mut self, slot: usize, op: Op, fd: RawFd, buf: *mut u8, len: usize) -> io::Result<()> {
        let fd = types::Fd(fd);
        let entry = if op.is_read {
            opcode::Read::new(fd, buf, len as u32).offset(op.offset).build()
        } else {
            opcode::Write::new(fd, buf, len as u32).offset(op.offset).build()
        }
        .user_data(slot as u64);
        // SAFETY: the caller keeps `buf` alive until the completion is reaped.
        unsafe { self.ring.submission().push(&entry) }.expect("the ring has an entry for every free slot");
        self.enter(1, 0)
    }

    fn reap(&mut self, wait: bool, done: &mut Vec<(usize, i64)>) -> io::Result<()> {
        if self.ring.completion().is_empty() {
            self.enter(0, u32::from(wait))?;
        }
        done.extend(self.ring.completion().map(|cqe| (cqe.user_data() as usize, i64::from(cqe.result()))));
        Ok(())
    }
}
