//! Linux native AIO (`io_setup`, `io_submit`, `io_getevents`): fio's `libaio` engine,
//! which the seed's own harness ran (`iodepth=8`, `direct=1`).
//!
//! Called through raw syscalls on the kernel's ABI (`linux/aio_abi.h`), not through
//! libaio the library: two structs and four calls, stable since Linux 2.6. AIO is truly
//! asynchronous only with O_DIRECT; a buffered I/O is done inside `io_submit`, so with
//! `direct = false` this engine behaves like psync with the submission counted in the
//! latency (as fio's `lat` counts it). Where io_uring is refused — the default seccomp
//! profiles of container runtimes and Kubernetes' `RuntimeDefault` block it — AIO is
//! usually allowed, which is why it matters in clusters.

use std::io;
use std::os::fd::RawFd;

use crate::engine::inflight::Queue;
use crate::engine::io::Op;

const IOCB_CMD_PREAD: u16 = 0;
const IOCB_CMD_PWRITE: u16 = 1;

/// `struct iocb` of `linux/aio_abi.h`.
#[repr(C)]
#[derive(Default)]
struct Iocb {
    aio_data: u64,
    #[cfg(target_endian = "little")]
    aio_key: u32,
    aio_rw_flags: i32,
    #[cfg(target_endian = "big")]
    aio_key: u32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

/// `struct io_event` of `linux/aio_abi.h`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

const _: () = assert!(size_of::<Iocb>() == 64 && size_of::<IoEvent>() == 32);

fn check(ret: libc::c_long) -> io::Result<usize> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret as usize) }
}

/// Checks that the kernel (and any seccomp filter) allows AIO, with one context.
pub fn probe() -> io::Result<()> {
    Context::new(1).map(drop)
}

/// One thread's AIO context.
pub struct Context {
    id: libc::c_ulong,
    events: Vec<IoEvent>,
}

impl Context {
    /// A context for `depth` I/Os in flight. EAGAIN means the system-wide
    /// `fs.aio-max-nr` is used up.
    pub fn new(depth: u32) -> io::Result<Self> {
        let depth = depth.max(1);
        let mut id: libc::c_ulong = 0;
        // SAFETY: io_setup writes one aio_context_t to the pointer it is given.
        check(unsafe { libc::syscall(libc::SYS_io_setup, depth as libc::c_long, &mut id as *mut libc::c_ulong) })?;
        Ok(Self { id, events: vec![IoEvent::default(); depth as usize] })
    }

    fn getevents(&mut self, min: usize, timeout: Option<&libc::timespec>) -> io::Result<usize> {
        let timeout = timeout.map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `events` has room for the `len` events the kernel may write.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_getevents,
                self.id,
                min as libc::c_long,
                self.events.len() as libc::c_long,
                self.events.as_mut_ptr(),
                timeout,
            )
        };
        match check(ret) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            other => other,
        }
    }
}

impl Drop for Context {
    /// io_destroy cancels what it can and waits for the rest, so no buffer is written
    /// after the context is gone.
    fn drop(&mut self) {
        // SAFETY: the context is ours and destroyed once.
        unsafe { libc::syscall(libc::SYS_io_destroy, self.id) };
    }
}

impl Queue for Context {
    unsafe fn submit(&mut self, slot: usize, op: Op, fd: RawFd, buf: *mut u8, len: usize) -> io::Result<()> {
        let mut iocb = Iocb {
            aio_data: slot as u64,
            aio_lio_opcode: if op.is_read { IOCB_CMD_PREAD } else { IOCB_CMD_PWRITE },
            aio_fildes: fd as u32,
            aio_buf: buf as u64,
            aio_nbytes: len as u64,
            aio_offset: op.offset as i64,
            ..Iocb::default()
        };
        let mut list = [&mut iocb as *mut Iocb];
        loop {
            // SAFETY: the kernel copies the iocb during the call; the caller keeps `buf`
            // alive until the completion is reaped.
            let ret = unsafe { libc::syscall(libc::SYS_io_submit, self.id, 1 as libc::c_long, list.as_mut_ptr()) };
            match check(ret) {
                Ok(1) => return Ok(()),
                Ok(_) => return Err(io::Error::other("io_submit accepted no I/O")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn reap(&mut self, wait: bool, done: &mut Vec<(usize, i64)>) -> io::Result<()> {
        let now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let n = if wait { self.getevents(1, None)? } else { self.getevents(0, Some(&now))? };
        done.extend(self.events[..n].iter().map(|e| (e.data as usize, e.res)));
        Ok(())
    }
}
