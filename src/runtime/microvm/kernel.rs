//! The guest kernel and its modules: found on the host, made bootable fast.
//!
//! The guest runs a distribution kernel (Debian's `linux-image-amd64` puts it in
//! `/boot/vmlinuz-VERSION` with modules in `/lib/modules/VERSION/`). A bzImage boots
//! through its real-mode stub and decompresses itself, which costs seconds under TCG;
//! the ELF `vmlinux` inside it boots directly through its PVH entry point. So the xz
//! stream inside the bzImage is located by its magic and decompressed once per run.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];

/// A kernel image and the modules directory that belongs to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    pub image: PathBuf,
    pub version: String,
    pub modules: PathBuf,
}

/// The newest `/boot/vmlinuz-*` with a matching modules directory, or the configured
/// image (whose version is read from its file name).
pub fn find(configured: Option<&Path>) -> Result<GuestKernel, String> {
    let candidates: Vec<PathBuf> = match configured {
        Some(p) => vec![p.to_path_buf()],
        None => {
            let mut v: Vec<PathBuf> = fs::read_dir("/boot")
                .map_err(|e| format!("cannot list /boot: {e}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
                .collect();
            v.sort();
            v.reverse();
            v
        }
    };
    for image in &candidates {
        let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let version = name.strip_prefix("vmlinuz-").unwrap_or(&name).to_string();
        let modules = Path::new("/lib/modules").join(&version);
        if image.is_file() && modules.join("modules.dep").is_file() {
            return Ok(GuestKernel { image: image.clone(), version, modules });
        }
    }
    Err(match configured {
        Some(p) => format!(
            "kernel {} has no modules in /lib/modules/<version>/ (its version is read from the vmlinuz-VERSION file name)",
            p.display()
        ),
        None => {
            "no guest kernel: /boot has no vmlinuz-* with modules in /lib/modules: apt-get install linux-image-amd64"
                .into()
        }
    })
}

/// Extracts the ELF vmlinux from a bzImage (or returns the image if it is an ELF).
pub fn extract_elf(image: &Path, out: &Path) -> Result<(), String> {
    let data = fs::read(image).map_err(|e| format!("cannot read {}: {e}", image.display()))?;
    if data.starts_with(b"\x7fELF") {
        return fs::write(out, &data).map_err(|e| format!("cannot write {}: {e}", out.display()));
    }
    let start = data.windows(XZ_MAGIC.len()).position(|w| w == XZ_MAGIC).ok_or_else(|| {
        format!("{} holds no xz-compressed kernel: give an ELF vmlinux or an xz bzImage", image.display())
    })?;
    let mut elf = Vec::with_capacity(data.len() * 6);
    liblzma::read::XzDecoder::new(&data[start..])
        .read_to_end(&mut elf)
        .map_err(|e| format!("cannot decompress the kernel in {}: {e}", image.display()))?;
    if !elf.starts_with(b"\x7fELF") {
        return Err(format!("the xz stream in {} is not an ELF kernel", image.display()));
    }
    fs::write(out, &elf).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

/// Modules needed for a share, in load order (dependencies first), resolved from
/// `modules.dep`; modules built into the kernel (`modules.builtin`) are skipped.
pub fn modules_for(k: &GuestKernel, wanted: &[&str]) -> Result<Vec<PathBuf>, String> {
    let dep_text = fs::read_to_string(k.modules.join("modules.dep"))
        .map_err(|e| format!("cannot read {}/modules.dep: {e}", k.modules.display()))?;
    let builtin = fs::read_to_string(k.modules.join("modules.builtin")).unwrap_or_default();
    let name_of = |path: &str| -> String {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.split(".ko").next().unwrap_or(file).replace('-', "_")
    };
    let mut deps: std::collections::HashMap<String, (String, Vec<String>)> = std::collections::HashMap::new();
    for line in dep_text.lines() {
        let Some((path, rest)) = line.split_once(':') else { continue };
        deps.insert(name_of(path), (path.to_string(), rest.split_whitespace().map(name_of).collect()));
    }
    let is_builtin = |name: &str| builtin.lines().any(|l| name_of(l) == name);
    let mut order: Vec<String> = Vec::new();
    fn visit(
        name: &str,
        deps: &std::collections::HashMap<String, (String, Vec<String>)>,
        is_builtin: &dyn Fn(&str) -> bool,
        order: &mut Vec<String>,
        stack: &mut Vec<String>,
    ) -> Result<(), String> {
        if order.iter().any(|o| o == name) || is_builtin(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(format!("module dependency cycle through {name}"));
        }
        let (_, ds) = deps.get(name).ok_or_else(|| format!("module {name} is neither in modules.dep nor built in"))?;
        stack.push(name.to_string());
        for d in ds {
            visit(d, deps, is_builtin, order, stack)?;
        }
        stack.pop();
        order.push(name.to_string());
        Ok(())
    }
    for w in wanted {
        visit(&w.replace('-', "_"), &deps, &is_builtin, &mut order, &mut Vec::new())?;
    }
    Ok(order.iter().map(|n| k.modules.join(&deps[n].0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_dependencies_first() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("modules.dep"),
            "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\nkernel/net/9p/9pnet.ko:\nkernel/fs/netfs/netfs.ko:\nkernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio.ko:\n",
        )
        .unwrap();
        fs::write(dir.path().join("modules.builtin"), "kernel/drivers/virtio/virtio.ko\n").unwrap();
        let k = GuestKernel { image: "/x".into(), version: "v".into(), modules: dir.path().into() };
        let names: Vec<String> = modules_for(&k, &["9pnet_virtio", "9p"])
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["9pnet.ko", "9pnet_virtio.ko", "netfs.ko", "9p.ko"]);
        assert!(modules_for(&k, &["nope"]).unwrap_err().contains("module nope is neither"));
    }
}
