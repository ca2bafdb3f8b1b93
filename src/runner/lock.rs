//! One run at a time per target and per results directory.
//!
//! Two runs on one target would share data files and each measure about half the
//! bandwidth; two runs into one results directory would overwrite each other's cells.
//! So a run holds an exclusive `flock` on a lock file in each for its whole life, with
//! its pid, host, start time and results directory written in it, and a second run is
//! refused at once with those. The kernel drops a dead process's locks, so a lock file
//! left by a run killed outright is taken over, with a note. The file is removed when
//! the run ends; after taking the lock a run checks the file is still the one at the
//! path (another run may have removed it meanwhile), and retries if not.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::safety::open_nofollow;

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// RFC 3339.
    pub started: String,
    pub results: PathBuf,
}

impl Holder {
    /// This run.
    pub fn me(results: &Path) -> Holder {
        Holder {
            pid: std::process::id(),
            host: rustix::system::uname().nodename().to_string_lossy().into_owned(),
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            results: std::path::absolute(results).unwrap_or_else(|_| results.to_path_buf()),
        }
    }
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{} is in use by another iostudy run (pid {} on {}, started {}, results in {}): wait for it to finish, or choose another {what}",
        what_path.display(), holder.pid, holder.host, holder.started, holder.results.display()
    )]
    Held { what: &'static str, what_path: PathBuf, holder: Holder },
    #[error("cannot lock {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// A held lock; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock at `path`, guarding `what` (`target`, `results directory`) at
    /// `what_path`. Returns the lock and a note when it took over a dead run's.
    pub fn take(
        path: &Path,
        what: &'static str,
        what_path: &Path,
        me: &Holder,
    ) -> Result<(Lock, Option<String>), LockError> {
        let io = |source| LockError::Io { path: path.to_path_buf(), source };
        loop {
            let mut file = open_nofollow(
                path,
                std::fs::OpenOptions::new().read(true).write(true),
                rustix::fs::OFlags::empty(),
                true,
            )
            .map_err(io)?;
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let holder = serde_json::from_str(&text).unwrap_or(Holder {
                        pid: 0,
                        host: "?".into(),
                        started: "?".into(),
                        results: PathBuf::from("?"),
                    });
                    return Err(LockError::Held { what, what_path: what_path.to_path_buf(), holder });
                }
                Err(e) => return Err(io(e.into())),
            }
            // Still the file at the path? (A run that ended may have removed it.)
            let same = std::fs::symlink_metadata(path)
                .is_ok_and(|m| file.metadata().is_ok_and(|f| f.ino() == m.ino() && f.dev() == m.dev()));
            if !same {
                continue;
            }
            let mut previous = String::new();
            let _ = file.read_to_string(&mut previous);
            let note = serde_json::from_str::<Holder>(&previous).ok().map(|h| {
                format!(
                    "took over the lock on {} of run pid {} (started {}), which is no longer running",
                    what_path.display(),
                    h.pid,
                    h.started
                )
            });
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            file.write_all(&serde_json::to_vec(me).expect("serializes")).map_err(io)?;
            return Ok((Lock { file, path: path.to_path_buf() }, note));
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held, so no other run can have taken this file.
        let _ = std::fs::remove_file(&self.path);
        let _ = rustix::fs::flock(&self.file, rustix::fs::FlockOperation::Unlock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_with_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("lock");
        let me = Holder::me(Path::new("/r"));
        let (lock, note) = Lock::take(&path, "target", tmp.path(), &me).unwrap();
        assert!(note.is_none());
        // flock locks belong to the open file: a second open in this process conflicts too.
        let e = Lock::take(&path, "target", tmp.path(), &me).unwrap_err().to_string();
        assert!(e.contains(&format!("is in use by another iostudy run (pid {}", std::process::id())), "{e}");
        assert!(e.contains("results in /r"), "{e}");
        drop(lock);
        assert!(!path.exists());
        // A dead run's file (no lock held) is taken over, with a note.
        std::fs::write(&path, r#"{"pid":99999999,"host":"h","started":"2026-01-01T00:00:00Z","results":"/x"}"#)
            .unwrap();
        let (_lock, note) = Lock::take(&path, "target", tmp.path(), &me).unwrap();
        assert!(note.unwrap().contains("of run pid 99999999 (started 2026-01-01T00:00:00Z)"));
    }
}
