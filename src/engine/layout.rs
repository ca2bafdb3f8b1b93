//! Preparing the files before measuring, as fio does.
//!
//! Every check that can fail runs before the first byte is written: the directory
//! exists, is writable, has room for what must still be written, and — with O_DIRECT —
//! its filesystem takes direct I/O at this block size. Then each file is created or
//! extended to full size with sequential incompressible writes and fsynced; a file that
//! already has the right size is reused untouched, so a study lays out once and reads
//! many times. If writing fails anyway (another writer filled the disk), what this call
//! created is removed and what it extended is cut back: nothing half-written stays.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::{StatVfsMountFlags, StatxFlags};

use crate::engine::buffer::{AlignedBuf, BUFFER_ALIGN};
use crate::engine::pattern::SplitMix64;
use crate::engine::{EngineError, Workload};
use crate::results::LayoutStats;

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

    let size = w.size.get();
    let mut plans = Vec::new();
    let mut needed = 0u64;
    for t in 0..w.numjobs {
        let path = w.file_path(t);
        let (existed, current_len) = match fs::metadata(&path) {
            Ok(m) if m.is_file() => (true, m.len()),
            Ok(_) => {
                return Err(EngineError::Io {
                    what: "use as a data file".into(),
                    path,
                    source: std::io::Error::other("it exists and is not a regular file"),
                });
            }
            Err(e) if e.kind() == ErrorKind::NotFound => (false, 0),
            Err(source) => {
                return Err(EngineError::Io { what: "inspect".into(), path, source });
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
        if needed > available {
            return Err(EngineError::NoSpace { dir: dir.clone(), needed, available });
        }
    }

    let started = Instant::now();
    let mut stats = LayoutStats::default();
    let mut rng = SplitMix64::new(w.randseed ^ 0x001A_7007);
    let mut buf = AlignedBuf::random(LAYOUT_CHUNK as usize, &mut rng);
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
/// alignment it reports (statx `STATX_DIOALIGN`, Linux ≥ 6.1; 512 bytes otherwise).
fn check_direct(w: &Workload) -> Result<(), EngineError> {
    let path = w.file_path(0);
    let existed = path.exists();
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(&path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            if !existed {
                let _ = fs::remove_file(&path);
            }
            return Err(EngineError::DirectUnsupported(w.directory.clone()));
        }
        Err(source) => {
            return Err(EngineError::Io { what: "create".into(), path, source });
        }
    };
    let align = match rustix::fs::statx(&file, "", rustix::fs::AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) {
        Ok(sx) if StatxFlags::from_bits_retain(sx.stx_mask).contains(StatxFlags::DIOALIGN) => {
            if sx.stx_dio_offset_align == 0 {
                drop(file);
                if !existed {
                    let _ = fs::remove_file(&path);
                }
                return Err(EngineError::DirectUnsupported(w.directory.clone()));
            }
            u64::from(sx.stx_dio_offset_align).max(u64::from(sx.stx_dio_mem_align))
        }
        _ => 512,
    };
    drop(file);
    if !existed {
        let _ = fs::remove_file(&path);
    }
    let bs = w.bs.get();
    if bs % align != 0 || align as usize > BUFFER_ALIGN {
        return Err(EngineError::DirectMisaligned { bs, align, dir: w.directory.clone() });
    }
    Ok(())
}

fn write_file(plan: &FilePlan, size: u64, buf: &mut AlignedBuf, rng: &mut SplitMix64) -> std::io::Result<u64> {
    let file = OpenOptions::new().write(true).create(true).truncate(false).open(&plan.path)?;
    if plan.current_len > size {
        file.set_len(size)?;
        file.sync_all()?;
        return Ok(0);
    }
    let mut offset = plan.current_len;
    while offset < size {
        let len = (size - offset).min(LAYOUT_CHUNK) as usize;
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
        let _ = fs::remove_file(&plan.path);
    } else if plan.current_len != size
        && let Ok(f) = OpenOptions::new().write(true).open(&plan.path)
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
    if w.direct {
        opts.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
    }
    opts.open(path).map_err(|source| EngineError::Io { what: "open".into(), path: path.to_path_buf(), source })
}

/// Drops a file's cached pages (fio's `invalidate`), so reads measure storage.
pub fn invalidate(file: &File, path: &Path) -> Result<(), EngineError> {
    rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed).map_err(|e| EngineError::Io {
        what: "drop cached pages of".into(),
        path: path.to_path_buf(),
        source: e.into(),
    })
}
