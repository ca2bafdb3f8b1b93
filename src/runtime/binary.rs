//! Which iostudy binary runs as the worker.
//!
//! Containers and VM initramfs hold nothing but the worker, so it must be statically
//! linked. `.cargo/config.toml` makes every cargo build of iostudy static, so the
//! running executable is the worker; `IOSTUDY_WORKER` names another one (a packaged
//! build). Bare-process clients run the *same* binary, so that no scenario differs from
//! another by its build (a debug controller must not measure slower than a release
//! worker in a container).

use std::fs;
use std::path::{Path, PathBuf};

/// The static worker copied into every rootfs: `IOSTUDY_WORKER`, else this executable
/// when it is static.
pub fn worker_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("IOSTUDY_WORKER") {
        let p = PathBuf::from(p);
        return match is_static(&p) {
            Ok(true) => Ok(p),
            Ok(false) => Err(format!(
                "IOSTUDY_WORKER={} is not statically linked: point it at a build of this source tree (cargo build --release)",
                p.display()
            )),
            Err(e) => Err(format!("IOSTUDY_WORKER={}: {e}", p.display())),
        };
    }
    let exe = current_exe()?;
    match is_static(&exe) {
        Ok(true) => Ok(exe),
        _ => Err(format!(
            "containers and micro-VMs need a statically linked iostudy, and {} is dynamically linked (RUSTFLAGS or a cargo config overrode the project's .cargo/config.toml): rebuild from the source tree with plain `cargo build --release`, or set IOSTUDY_WORKER to a static iostudy",
            exe.display()
        )),
    }
}

/// This executable; `/proc/self/exe` when its file was replaced or removed while it
/// runs (a node's copy), which still reads as the running binary.
fn current_exe() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the iostudy executable: {e}"))?;
    Ok(if exe.exists() { exe } else { PathBuf::from("/proc/self/exe") })
}

/// The worker's OCI image (`iostudy image`), built once per process: every containerd
/// and Podman scenario loads it.
pub fn worker_image() -> Result<&'static crate::image::Image, crate::runtime::RuntimeError> {
    static IMAGE: std::sync::OnceLock<Result<crate::image::Image, String>> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| crate::image::build(&worker_binary()?, None))
        .as_ref()
        .map_err(|e| crate::runtime::RuntimeError::Setup(e.clone()))
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
        Err(_) => current_exe().map_err(std::io::Error::other),
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

    #[test]
    fn every_cargo_build_is_static() {
        // .cargo/config.toml: this test binary is built like the iostudy binary.
        assert!(is_static(&std::env::current_exe().unwrap()).unwrap());
    }
}
