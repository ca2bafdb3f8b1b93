//! Taking a study's target for a run, here or on a node (by its agent): the directories
//! made or checked as safe ([`crate::safety`]), the control area, the target's lock
//! ([`super::lock`]) and the clients' data directories ([`super::data`]); and giving it
//! back at the end — the lock, the control area if this run made it, and, with
//! `keep_files = false` or when no cell ran, exactly what the run created.

use std::path::{Path, PathBuf};

use crate::control::{CONTROL_DIR, DATA_DIR};
use crate::runner::RunError;
use crate::runner::data::DataDirs;
use crate::runner::lock::{Holder, Lock};

/// A target held by a run.
#[derive(Debug)]
pub struct TargetHold {
    lock: Option<Lock>,
    /// The control area, when this run created it.
    created_control: Option<PathBuf>,
    pub data: DataDirs,
    /// What taking it noted (a dead run's lock taken over).
    pub notes: Vec<String>,
    released: bool,
}

impl TargetHold {
    /// Takes `target` for the run `me`: created or checked (each level), its control
    /// area made or checked, and locked.
    pub fn take(target: &Path, me: &Holder) -> Result<TargetHold, RunError> {
        let created = crate::safety::ensure_path(target)?;
        let control = target.join(CONTROL_DIR);
        let created_control = crate::safety::ensure_dir(&control)?.then(|| control.clone());
        let data = DataDirs::new(target.join(DATA_DIR), created);
        // Once the directories are recorded, a failure below gives them back.
        let mut hold = TargetHold { lock: None, created_control, data, notes: Vec::new(), released: false };
        let (lock, took_over) = Lock::take(&control.join("lock"), "target", target, me)?;
        hold.lock = Some(lock);
        hold.notes.extend(took_over);
        Ok(hold)
    }

    /// The target's control area.
    pub fn control(&self) -> PathBuf {
        self.data.root().parent().unwrap_or(Path::new("/")).join(CONTROL_DIR)
    }

    /// Gives the target back: the lock, then the control area if this run made it (and
    /// no other run uses it), then — when `remove_data` — the files and directories the
    /// run created.
    pub fn release(mut self, remove_data: bool) {
        self.released = true;
        drop(self.lock.take());
        if let Some(c) = self.created_control.take() {
            let _ = std::fs::remove_dir(c);
        }
        if remove_data {
            self.data.remove_created();
        }
    }
}

impl Drop for TargetHold {
    /// A hold dropped without [`TargetHold::release`] (a failure while taking it) gives
    /// back everything it created.
    fn drop(&mut self) {
        if !self.released {
            drop(self.lock.take());
            if let Some(c) = self.created_control.take() {
                let _ = std::fs::remove_dir(c);
            }
            self.data.remove_created();
        }
    }
}
