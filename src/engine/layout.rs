//! Preparing the files before measuring, as fio does.
//!
//! Every check that can fail runs before the first byte is written: the directory
//! exists, is writable, has room for what must still be written (with a margin for the
//! filesystem's own metadata), the process may open that many files, and — with
//! O_DIRECT — its filesystem takes direct I/O at this block size. Files are opened
//! without following links and only when they are the running user's own
//! ([`crate::safety::open_nofollow`]): a link or another user's file planted where a
//! data file goes is refused, never extended. Then each file is created or
//! extended to full size with sequential incompressible writes and fsynced; a file that
//! already has the right size is reused untouched, so a study lays out once and reads
//! many times. If writing fails anyway (another writer filled the disk), what this call
//! created is removed and what it extended is cut back: nothing half-written stays.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::{OFlags, StatVfsMountFlags, StatxFlags};

use crate::engine::buffer::{AlignedBuf, BUFFER_ALIGN};
use crate::engine::pattern::SplitMix64;
use crate::engine::{EngineError, Workload};
use crate::results::LayoutStats;
use crate::safety::open_nofollow;

const LAYOUT_CHUNK: u64 = 1 << 20;

/// What must happen to one file.
#[derive(Debug)]
struct FilePlan {
    path: PathBuf,
    existed: bool,
    current_len: u64,
}

/// Checks the directory and lays out every thread's file.
pub fn prepare(w: &Workload) -> Result<LayoutStats, EngineError> {
    let dir = &w.directory;
    check_directory(dir)?;
    if w.direct {
        check_direct(w)?;
    }

    ensure_open_files(w.numjobs)?;
    let size = w.size.get();
    let mut plans = Vec::new();
    let mut needed = 0u64;
    for t in 0..w.numjobs {
        let path = w.file_path(t);
        // A regular file of ours with one name, or refused: never a link, a FIFO, a
        // device, another user's file or a hard link to a file elsewhere.
        let (existed, current_len) = match crate::safety::check_replaceable(&path) {
            Ok(true) => (true, fs::symlink_metadata(&path).map_or(0, |m| m.len())),
            Ok(false) => (false, 0),
            Err(e) => {
                return Err(EngineError::Io {
                    what: "use as a data file".into(),
                    path,
                    source: std::io::Error::from(e),
                });
            }
        };
        needed += size.saturating_sub(current_len);
        plans.push(FilePlan { path, existed, current_len });
    }

    if needed > 0 {
        let vfs = rustix::fs::statvfs(dir.as_path()).map_err(|e| EngineError::Io {
            what: "query free space of".into(),
            path: dir.clone(),
            source: e.into(),
        })?;
        let available = vfs.f_bavail.saturating_mul(vfs.f_frsize);
        if needed.saturating_add(space_margin(needed)) > available {
            return Err(EngineError::NoSpace { dir: dir.clone(), needed, available });
        }
    }

    let started = Instant::now();
    let mut stats = LayoutStats::default();
    let mut rng = SplitMix64::new(w.randseed ^ 0x001A_7007);
    // No larger than one file: a client of a small file (thousands of them in a
    // scale study) would otherwise fault in and fill a whole chunk it never writes.
    let chunk = size.clamp(1, LAYOUT_CHUNK).next_multiple_of(BUFFER_ALIGN as u64);
    let mut buf = AlignedBuf::random(if needed > 0 { chunk as usize } else { BUFFER_ALIGN }, &mut rng);
    for (i, plan) in plans.iter().enumerate() {
        if plan.existed && plan.current_len == size {
            stats.files_reused += 1;
            continue;
        }
        match write_file(plan, size, &mut buf, &mut rng) {
            Ok(written) => stats.bytes_written += written,
            Err(e) => {
                // Undo this file and every earlier one this call touched.
                for p in &plans[..=i] {
                    undo(p, size);
                }
                return Err(map_write_error(e, dir, &plan.path, needed));
            }
        }
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Room kept free beside `needed` bytes of data, for the filesystem's own metadata
/// (extents, inodes): a file that fills a filesystem exactly fails part-way.
pub fn space_margin(needed: u64) -> u64 {
    (needed / 64).max(1 << 20)
}

/// File descriptors a client needs besides its data files.
pub const SPARE_FDS: u64 = 64;

/// Raises the soft limit on open files as far as needed (and allowed), and refuses a
/// `numjobs` that could not open its files, before any file is laid out.
pub fn ensure_open_files(numjobs: u32) -> Result<(), EngineError> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let needed = u64::from(numjobs) + SPARE_FDS;
    let cur = getrlimit(Resource::Nofile);
    let (soft, hard) = (cur.current.unwrap_or(u64::MAX), cur.maximum.unwrap_or(u64::MAX));
    if soft >= needed {
        return Ok(());
    }
    // A guest's init (root in its own kernel) may raise the hard limit too.
    let raised = needed.min(hard);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(needed), maximum: Some(needed.max(hard)) })
        .or_else(|_| setrlimit(Resource::Nofile, Rlimit { current: Some(raised), maximum: cur.maximum }));
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now < needed {
        return Err(EngineError::Invalid(format!(
            "numjobs {numjobs} needs {needed} open files, and this process may open {now}: lower numjobs or raise the limit (ulimit -n)"
        )));
    }
    Ok(())
}

fn check_directory(dir: &Path) -> Result<(), EngineError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(EngineError::NotADirectory(dir.to_path_buf())),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(EngineError::DirectoryMissing(dir.to_path_buf()));
        }
        Err(source) => {
            return Err(EngineError::Io { what: "inspect".into(), path: dir.to_path_buf(), source });
        }
    }
    if let Ok(vfs) = rustix::fs::statvfs(dir)
        && vfs.f_flag.contains(StatVfsMountFlags::RDONLY)
    {
        return Err(EngineError::ReadOnly(dir.to_path_buf()));
    }
    if let Err(e) = rustix::fs::access(dir, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK) {
        return Err(EngineError::NotWritable { dir: dir.to_path_buf(), source: e.into() });
    }
    Ok(())
}

/// Probes O_DIRECT on the target filesystem and checks the block size against the
/// alignment it reports.
fn check_direct(w: &Workload) -> Result<(), EngineError> {
    let align = direct_alignment(&w.file_path(0), &w.directory)?;
    let bs = w.bs.get();
    if bs % align != 0 || align as usize > BUFFER_ALIGN {
        return Err(EngineError::DirectMisaligned { bs, align, dir: w.directory.clone() });
    }
    Ok(())
}

/// The alignment O_DIRECT needs on the filesystem of `probe` (a file path that is
/// created for the probe and removed again unless it existed), from statx
/// `STATX_DIOALIGN` (Linux ≥ 6.1; 512 bytes otherwise). `dir` names the place in errors.
pub fn direct_alignment(probe: &Path, dir: &Path) -> Result<u64, EngineError> {
    let existed = probe.symlink_metadata().is_ok();
    let cleanup = || {
        if !existed {
            let _ = fs::remove_file(probe);
        }
    };
    let opened = open_nofollow(probe, OpenOptions::new().write(true).truncate(false), OFlags::DIRECT, true);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            cleanup();
            return Err(EngineError::DirectUnsupported(dir.to_path_buf()));
        }
        Err(source) => {
            return Err(EngineError::Io { what: "create".into(), path: probe.to_path_buf(), source });
        }
    };
    let align = match rustix::fs::statx(&file, "", rustix::fs::AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) {
        Ok(sx) if StatxFlags::from_bits_retain(sx.stx_mask).contains(StatxFlags::DIOALIGN) => (sx.stx_dio_offset_align
            != 0)
            .then(|| u64::from(sx.stx_dio_offset_align).max(u64::from(sx.stx_dio_mem_align))),
        _ => Some(512),
    };
    drop(file);
    cleanup();
    align.ok_or_else(|| EngineError::DirectUnsupported(dir.to_path_buf()))
}

/// The largest O_DIRECT alignment the engine's buffers meet.
pub const MAX_DIRECT_ALIGN: u64 = BUFFER_ALIGN as u64;

fn write_file(plan: &FilePlan, size: u64, buf: &mut AlignedBuf, rng: &mut SplitMix64) -> std::io::Result<u64> {
    let file = open_nofollow(&plan.path, OpenOptions::new().write(true).truncate(false), OFlags::empty(), true)?;
    if plan.current_len > size {
        file.set_len(size)?;
        file.sync_all()?;
        return Ok(0);
    }
    let mut offset = plan.current_len;
    while offset < size {
        let len = (size - offset).min(buf.as_slice().len() as u64) as usize;
        buf.scramble(rng);
        file.write_all_at(&buf.as_slice()[..len], offset)?;
        offset += len as u64;
    }
    // fio's create_fsync: the layout is on stable storage before measuring.
    file.sync_all()?;
    Ok(size - plan.current_len)
}

fn undo(plan: &FilePlan, size: u64) {
    if !plan.existed {
        crate::safety::remove_own_file(&plan.path);
    } else if plan.current_len != size
        && let Ok(f) = open_nofollow(&plan.path, OpenOptions::new().write(true), OFlags::empty(), false)
    {
        let _ = f.set_len(plan.current_len);
    }
}

fn map_write_error(e: std::io::Error, dir: &Path, path: &Path, needed: u64) -> EngineError {
    if e.kind() == ErrorKind::StorageFull || e.kind() == ErrorKind::QuotaExceeded {
        let available = rustix::fs::statvfs(dir).map(|v| v.f_bavail.saturating_mul(v.f_frsize)).unwrap_or(0);
        return EngineError::NoSpace { dir: dir.to_path_buf(), needed, available };
    }
    EngineError::Io { what: "lay out".into(), path: path.to_path_buf(), source: e }
}

/// Opens a laid-out file for the measured phase.
pub fn open_for_run(w: &Workload, path: &Path) -> Result<File, EngineError> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(w.rw.read_percent(w.rwmixread) < 100);
    let flags = if w.direct { OFlags::DIRECT } else { OFlags::empty() };
    open_nofollow(path, &mut opts, flags, false).map_err(|source| EngineError::Io {
        what: "open".into(),
        path: path.to_path_buf(),
        source,
    })
}

/// Drops a file's cached pages (fio's `invalidate`), so reads measure storage.
pub fn invalidate(file: &File, path: &Path) -> Result<(), EngineError> {
    rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed).map_err(|e| EngineError::Io {
        what: "drop cached pages of".into(),
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Tells the kernel how the file will be read, as fio's `fadvise_hint` does by default:
/// no readahead for random patterns, more of it for sequential ones. A hint only: a
/// filesystem that ignores or refuses it (gVisor, some FUSE) changes no figure's meaning.
pub fn advise(file: &File, rw: crate::workload::Pattern) {
    let advice = if rw.is_random() { rustix::fs::Advice::Random } else { rustix::fs::Advice::Sequential };
    let _ = rustix::fs::fadvise(file, 0, None, advice);
}
