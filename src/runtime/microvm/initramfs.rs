//! A minimal initramfs: the static iostudy binary as `/init`, the kernel modules the
//! share needs, their load order, and `/dev/console` — nothing else.
//!
//! Written as a `newc` cpio archive (uncompressed: the kernel unpacks it directly and
//! compressing ~10 MB costs more than it saves). The format is a 110-byte ASCII header
//! per entry followed by the name and data, each padded to 4 bytes; it is simple
//! enough that writing it here is clearer than adapting a general archive library.

use std::io::Write;
use std::path::Path;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Builds archives entry by entry.
pub struct Cpio<W: Write> {
    out: W,
    ino: u32,
}

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Self { out, ino: 1 }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> std::io::Result<()> {
        let namesize = name.len() + 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len(),
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            namesize,
            0, // check
        );
        self.ino += 1;
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        pad(&mut self.out, 110 + namesize)?;
        self.out.write_all(data)?;
        pad(&mut self.out, data.len())
    }

    pub fn dir(&mut self, name: &str) -> std::io::Result<()> {
        self.entry(name, S_IFDIR | 0o755, (0, 0), &[])
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.entry(name, S_IFREG | mode, (0, 0), data)
    }

    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) -> std::io::Result<()> {
        self.entry(name, S_IFCHR | 0o600, (major, minor), &[])
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        Ok(self.out)
    }
}

/// A module's ELF image: `.ko` as is, `.ko.xz` decompressed here so init can hand it
/// to `init_module` without the kernel's own decompression support.
fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read module {}: {e}", path.display()))?;
    let name = path.to_string_lossy();
    if name.ends_with(".ko.xz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut liblzma::read::XzDecoder::new(data.as_slice()), &mut out)
            .map_err(|e| format!("cannot decompress module {}: {e}", path.display()))?;
        Ok(out)
    } else if name.ends_with(".ko") {
        Ok(data)
    } else {
        Err(format!("module {} is compressed in a format iostudy cannot unpack (only .ko and .ko.xz)", path.display()))
    }
}

fn pad<W: Write>(w: &mut W, len: usize) -> std::io::Result<()> {
    let rem = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..rem])
}

/// Writes the guest's initramfs: `/init` (the worker), `/modules/NN-name.ko` and
/// `/modules/order`, `/dev/console`, the mount points, and `extra` host files at their
/// own paths (fio and its libraries; links followed).
pub fn build(
    out: &Path,
    init: &Path,
    modules: &[std::path::PathBuf],
    extra: &[std::path::PathBuf],
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot write the initramfs {}: {e}", out.display());
    let file = std::fs::File::create(out).map_err(io)?;
    let mut c = Cpio::new(std::io::BufWriter::new(file));
    for d in ["dev", "proc", "sys", "modules", "tmp"] {
        c.dir(d).map_err(io)?;
    }
    c.char_device("dev/console", 5, 1).map_err(io)?;
    let worker = std::fs::read(init).map_err(|e| format!("cannot read the worker {}: {e}", init.display()))?;
    c.file("init", 0o755, &worker).map_err(io)?;
    let mut order = String::new();
    for (i, m) in modules.iter().enumerate() {
        let data = read_module(m)?;
        let file = m.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let name = format!("modules/{i:02}-{}", file.trim_end_matches(".xz"));
        c.file(&name, 0o644, &data).map_err(io)?;
        order.push_str(&format!("/{name}\n"));
    }
    c.file("modules/order", 0o644, order.as_bytes()).map_err(io)?;
    let mut dirs = std::collections::BTreeSet::new();
    for f in extra {
        let rel = f.strip_prefix("/").unwrap_or(f);
        for d in rel.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()).collect::<Vec<_>>().into_iter().rev() {
            if dirs.insert(d.to_path_buf())
                && !["dev", "proc", "sys", "modules", "tmp"].iter().any(|m| d == Path::new(m))
            {
                c.dir(&d.display().to_string()).map_err(io)?;
            }
        }
        let data = std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        c.file(&rel.display().to_string(), 0o755, &data).map_err(io)?;
    }
    c.finish().map_err(io)?.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xz_modules_are_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let ko = dir.path().join("m.ko.xz");
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(b"\x7fELF module").unwrap();
        std::fs::write(&ko, enc.finish().unwrap()).unwrap();
        assert_eq!(read_module(&ko).unwrap(), b"\x7fELF module");
        let zst = dir.path().join("m.ko.zst");
        std::fs::write(&zst, b"x").unwrap();
        assert!(read_module(&zst).unwrap_err().contains("only .ko and .ko.xz"));
    }

    #[test]
    fn newc_layout() {
        let mut c = Cpio::new(Vec::new());
        c.file("init", 0o755, b"abc").unwrap();
        let bytes = c.finish().unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("070701"));
        // header(110) + "init\0"(5) → padded to 116, data 3 → padded to 4.
        assert_eq!(&bytes[110..115], b"init\0");
        assert_eq!(&bytes[116..119], b"abc");
        assert_eq!(bytes.len() % 4, 0);
        assert!(text.contains("TRAILER!!!"));
        // The file's mode and size fields.
        assert_eq!(&text[14..22], format!("{:08x}", S_IFREG | 0o755));
        assert_eq!(&text[54..62], "00000003");
    }
}
