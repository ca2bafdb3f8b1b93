//! Result types shared by the engine, the runner and every reporter.
//!
//! One schema, written as you go: the engine produces [`ClientResult`], everything
//! downstream reads it. Files are written atomically ([`write_atomic`]) so a crash or
//! Ctrl-C never leaves a half-written result that a later `--resume` would trust.

pub mod aggregate;
pub mod cell;
pub mod cpu;
pub mod histogram;
pub mod host;
pub mod schema;
pub mod stats;
pub mod store;
pub mod synthetic;

use std::fs;
use std::io::Write;
use std::path::Path;

pub use histogram::{EncodedHistogram, LatencySummary};
pub use schema::*;

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name =
        path.file_name().ok_or_else(|| std::io::Error::other(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
