//! fio and what it needs to run, as files: what a container gets bind-mounted
//! read-only at the same paths, and a micro-VM's initramfs gets copied in.
//!
//! The host's own fio is used inside every boundary, so one binary measures in all of
//! them. Its shared libraries are found with `ldd` (the loader's own answer, so
//! multiarch paths and `ld.so.cache` are respected); inside, they sit at the paths the
//! loader searches by default.

use std::path::{Path, PathBuf};

use crate::command::{Cmd, which};

/// Where fio is looked for inside a boundary whose PATH is minimal.
pub const FIO_PATHS: &[&str] = &["/usr/bin/fio", "/usr/local/bin/fio", "/bin/fio"];

/// The fio a client runs: on PATH, else at a usual place.
pub fn fio_binary() -> Option<PathBuf> {
    which("fio").or_else(|| FIO_PATHS.iter().map(PathBuf::from).find(|p| p.is_file()))
}

/// fio and every shared library it loads, absolute paths, fio first.
pub fn files() -> Result<Vec<PathBuf>, String> {
    let fio = fio_binary()
        .ok_or("fio not found: apt-get install fio (engine = \"fio\" runs the host's fio in every client)")?;
    let out = Cmd::new("ldd").arg(&fio).output().map_err(|e| format!("cannot run ldd on {}: {e}", fio.display()))?;
    let mut files = vec![fio.clone()];
    // `ldd` of a static binary says so and fails: fio alone is then enough.
    if out.status.success() {
        files.extend(libraries(&String::from_utf8_lossy(&out.stdout)));
    }
    Ok(files)
}

/// The absolute paths in `ldd` output: `libz.so.1 => /lib/…/libz.so.1 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; `linux-vdso.so.1` has none.
fn libraries(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=>").map_or(l, |(_, p)| p).split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The version line fio prints (`fio-3.33`).
pub fn version(fio: &Path) -> Result<String, String> {
    let out = Cmd::new(fio).arg("--version").output().map_err(|e| format!("cannot run {}: {e}", fio.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.is_empty() {
        return Err(format!(
            "{} does not run here ({}): {}",
            fio.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_absolute_paths_only() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\tlibmissing.so => not found\n";
        assert_eq!(
            libraries(ldd),
            [PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]
        );
    }
}
