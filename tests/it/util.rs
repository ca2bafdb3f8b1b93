//! Helpers shared by the integration tests: running the binary, scratch directories on
//! tmpfs, and the rule for tests that need root or a runtime — skip locally with a
//! printed reason, fail under `IOSTUDY_REQUIRE_RUNTIMES=1` (CI).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use iostudy::results::ClientResult;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_iostudy"))
}

/// Runs iostudy with `args`.
pub fn iostudy(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("iostudy runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a successful `bench --json` and parses its result.
pub fn bench_json(args: &[&str]) -> ClientResult {
    let mut all = vec!["bench", "--json"];
    all.extend_from_slice(args);
    let o = iostudy(&all);
    assert!(o.status.success(), "iostudy {all:?} failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("bench --json prints a result document")
}

/// A scratch directory on tmpfs (the main disk's page cache is dropped from outside).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("iostudy-test.").tempdir_in("/dev/shm").expect("a scratch dir on /dev/shm")
}

pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Whether runtime/root tests are mandatory (CI).
pub fn required() -> bool {
    std::env::var("IOSTUDY_REQUIRE_RUNTIMES").is_ok_and(|v| v == "1")
}

/// Returns true when the test may go on; otherwise skips (locally) or fails (CI).
pub fn need(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if required() {
        panic!("{what} is required (IOSTUDY_REQUIRE_RUNTIMES=1) but not available");
    }
    eprintln!("SKIPPED: {what} is not available here");
    false
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A tmpfs mounted on a temp dir for the test's life (root only).
pub struct TmpMount {
    dir: tempfile::TempDir,
}

impl TmpMount {
    pub fn new(options: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("iostudy-mnt.").tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "iostudy-test"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(st.success(), "mount -t tmpfs -o {options} failed");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TmpMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
