//! The clients' data directories under the target, and removing exactly what a run
//! created in them.
//!
//! `TARGET/iostudy-data/client-<k>/` is created by the run (or verified: a real
//! directory of the running user, closed to others — [`crate::safety`]) the first time a
//! cell needs it, and what it held then is remembered. With `keep_files = false` the
//! run removes, at its end, the files that were not there before it and the
//! directories it created, and nothing else: never recursively, never through a link,
//! never another run's or user's file.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::safety::{SafetyError, ensure_dir, remove_own_file};

/// A run's data directories.
#[derive(Debug)]
pub struct DataDirs {
    root: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Directories this run created, outermost first.
    created: Vec<PathBuf>,
    /// What each client directory held when the run first used it.
    before: BTreeMap<PathBuf, BTreeSet<OsString>>,
}

impl DataDirs {
    /// The data root `root`; `created` are directories the run already created above
    /// it (the target), removed too if they end up empty.
    pub fn new(root: PathBuf, created: Vec<PathBuf>) -> DataDirs {
        DataDirs { root, state: Mutex::new(State { created, before: BTreeMap::new() }) }
    }

    /// Client `k`'s directory, made ready on first use.
    pub fn client(&self, k: u32) -> Result<PathBuf, SafetyError> {
        let dir = self.root.join(format!("client-{k}"));
        let mut st = self.state.lock().expect("not poisoned");
        if st.before.contains_key(&dir) {
            return Ok(dir);
        }
        for d in [&self.root, &dir] {
            if ensure_dir(d)? && !st.created.contains(d) {
                st.created.push(d.clone());
            }
        }
        let entries = std::fs::read_dir(&dir)
            .map_err(|source| SafetyError::Io { what: "list", path: dir.clone(), source })?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        st.before.insert(dir.clone(), entries);
        Ok(dir)
    }

    /// Removes the files and directories this run created.
    pub fn remove_created(&self) {
        let st = self.state.lock().expect("not poisoned");
        for (dir, before) in &st.before {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if !before.contains(&e.file_name()) {
                    remove_own_file(&e.path());
                }
            }
        }
        for d in st.created.iter().rev() {
            let _ = std::fs::remove_dir(d); // only when empty
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_run_created_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("iostudy-data");
        std::fs::create_dir_all(root.join("client-0")).unwrap();
        std::fs::write(root.join("client-0/old.dat"), b"kept").unwrap();
        let data = DataDirs::new(root.clone(), Vec::new());
        let c0 = data.client(0).unwrap();
        let c1 = data.client(1).unwrap();
        std::fs::write(c0.join("new.dat"), b"x").unwrap();
        std::fs::write(c1.join("new.dat"), b"x").unwrap();
        data.remove_created();
        assert!(root.join("client-0/old.dat").exists(), "a file from before the run stays");
        assert!(!c0.join("new.dat").exists());
        assert!(!c1.exists(), "a directory the run created goes");
        assert!(root.exists(), "the root existed before");
    }
}
