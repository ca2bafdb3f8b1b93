//! Which iostudy binary runs as the worker.
//!
//! Containers and VM initramfs hold nothing but the worker, so it must be statically
//! linked. Bare-process clients run the *same* binary, so that no scenario differs from
//! another by its build (a debug controller must not measure slower than a release
//! worker in a container).

use std::fs;
use std::path::{Path, PathBuf};

/// The static worker copied into every rootfs: `IOSTUDY_WORKER`, this executable when
/// it is static, or the `scripts/build-static` output beside a cargo build.
pub fn worker_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("IOSTUDY_WORKER") {
        let p = PathBuf::from(p);
        return match is_static(&p) {
            Ok(true) => Ok(p),
            Ok(false) => Err(format!(
                "IOSTUDY_WORKER={} is not statically linked: build it with scripts/build-static",
                p.display()
            )),
            Err(e) => Err(format!("IOSTUDY_WORKER={}: {e}", p.display())),
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the iostudy executable: {e}"))?;
    if is_static(&exe).unwrap_or(false) {
        return Ok(exe);
    }
    // target/{debug,release}/iostudy → target/x86_64-unknown-linux-gnu/dist/iostudy
    if let Some(target_dir) = exe.parent().and_then(Path::parent) {
        let candidate = target_dir.join("x86_64-unknown-linux-gnu/dist/iostudy");
        if is_static(&candidate).unwrap_or(false) {
            return Ok(candidate);
        }
    }
    Err("containers need a statically linked iostudy worker: run scripts/build-static, then run that binary or set IOSTUDY_WORKER to it".into())
}

/// Whether an ELF executable has no program interpreter (PT_INTERP), i.e. is static.
pub fn is_static(path: &Path) -> std::io::Result<bool> {
    let bytes = fs::read(path)?;
    let bad = || std::io::Error::other("not a 64-bit ELF executable");
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        let header = bytes.get(off..off + 4).ok_or_else(bad)?;
        if u32::from_le_bytes(header.try_into().expect("4 bytes")) == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

/// The worker for bare processes: the static worker when there is one, else this
/// executable.
pub fn process_worker() -> std::io::Result<PathBuf> {
    match worker_binary() {
        Ok(p) => Ok(p),
        Err(_) => std::env::current_exe(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_detection() {
        assert!(!is_static(Path::new("/bin/sh")).unwrap());
        assert!(is_static(Path::new("/etc/hostname")).is_err());
    }
}
