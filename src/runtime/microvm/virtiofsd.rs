//! Which virtiofsd drives a virtio-fs share: found by flavour, not by path.
//!
//! Two programs answer to the name. The maintained Rust virtiofsd (`cargo install
//! virtiofsd`; `--version` prints `virtiofsd 1.x`) takes `--socket-path`,
//! `--shared-dir` and `--cache`. QEMU ≤ 7.2 shipped a legacy C virtiofsd (Debian 12:
//! `/usr/lib/qemu/virtiofsd`; `--version` prints `virtiofsd version 7.2.x` and QEMU's
//! copyright) with another command line and other cache modes. A file named virtiofsd
//! proves nothing, so every candidate is asked what it is; the Rust one is used, and a
//! machine with only the legacy one is told how to get the other.

use std::path::{Path, PathBuf};

use crate::command::{Cmd, which};

/// The fix for a machine without the maintained virtiofsd.
pub const INSTALL_HINT: &str = "cargo install virtiofsd (needs libseccomp-dev libcap-ng-dev)";

/// What a virtiofsd binary turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The maintained Rust virtiofsd: the one iostudy drives.
    Rust,
    /// QEMU's deprecated C virtiofsd.
    Legacy,
    /// Something else that answers to the name.
    Unknown,
}

impl Flavor {
    /// Classifies `--version` output.
    pub fn of_version(text: &str) -> Flavor {
        let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        if first.starts_with("virtiofsd version ") || text.contains("QEMU Project") {
            Flavor::Legacy
        } else if first.strip_prefix("virtiofsd ").is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit())) {
            Flavor::Rust
        } else {
            Flavor::Unknown
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavor::Rust => "rust",
            Flavor::Legacy => "legacy C (QEMU)",
            Flavor::Unknown => "unknown",
        }
    }
}

/// One virtiofsd found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Virtiofsd {
    pub path: PathBuf,
    pub flavor: Flavor,
    /// First line of `--version`.
    pub version: String,
}

impl Virtiofsd {
    /// Asks `path` what it is.
    pub fn identify(path: &Path) -> Virtiofsd {
        let text = Cmd::new(path)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
            .unwrap_or_default();
        let version = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no version").to_string();
        Virtiofsd { path: path.to_path_buf(), flavor: Flavor::of_version(&text), version }
    }

    /// "virtiofsd 1.14.0 (rust) at /root/.cargo/bin/virtiofsd", for notes and tables.
    pub fn describe(&self) -> String {
        format!("{} ({}) at {}", self.version, self.flavor.name(), self.path.display())
    }
}

/// Where virtiofsd may be: PATH, cargo's bin dir, distribution locations; each once.
pub fn candidates() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    let mut v: Vec<PathBuf> = Vec::new();
    let places = [
        which("virtiofsd"),
        Some(home.join(".cargo/bin/virtiofsd")),
        Some("/usr/libexec/virtiofsd".into()),
        Some("/usr/lib/qemu/virtiofsd".into()),
    ];
    for p in places.into_iter().flatten() {
        let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if p.is_file() && !v.iter().any(|x| std::fs::canonicalize(x).unwrap_or_else(|_| x.clone()) == real) {
            v.push(p);
        }
    }
    v
}

/// The maintained virtiofsd, or why there is none usable (naming what was found).
pub fn find() -> Result<Virtiofsd, String> {
    choose(candidates().iter().map(|p| Virtiofsd::identify(p)).collect())
}

/// The first Rust virtiofsd of `found`, or an error that says what the others are.
pub fn choose(found: Vec<Virtiofsd>) -> Result<Virtiofsd, String> {
    if let Some(v) = found.iter().find(|v| v.flavor == Flavor::Rust) {
        return Ok(v.clone());
    }
    if found.is_empty() {
        return Err(format!("virtiofsd not found: {INSTALL_HINT}"));
    }
    let what: Vec<String> = found
        .iter()
        .map(|v| match v.flavor {
            Flavor::Legacy => format!("QEMU's legacy virtiofsd at {} ({})", v.path.display(), v.version),
            _ => format!("an unrecognised virtiofsd at {} (`--version` says: {})", v.path.display(), v.version),
        })
        .collect();
    Err(format!(
        "found only {}, which iostudy does not drive; install the maintained one: {INSTALL_HINT}",
        what.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavours_by_version_text() {
        assert_eq!(Flavor::of_version("virtiofsd 1.14.0\n"), Flavor::Rust);
        assert_eq!(
            Flavor::of_version(
                "virtiofsd version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"
            ),
            Flavor::Legacy
        );
        assert_eq!(Flavor::of_version("sh: 1: virtiofsd: not found"), Flavor::Unknown);
        assert_eq!(Flavor::of_version(""), Flavor::Unknown);
    }

    fn v(path: &str, flavor: Flavor, version: &str) -> Virtiofsd {
        Virtiofsd { path: path.into(), flavor, version: version.into() }
    }

    #[test]
    fn the_rust_one_wins_wherever_it_is() {
        let legacy = v("/usr/lib/qemu/virtiofsd", Flavor::Legacy, "virtiofsd version 7.2.22");
        let rust = v("/root/.cargo/bin/virtiofsd", Flavor::Rust, "virtiofsd 1.14.0");
        assert_eq!(choose(vec![legacy.clone(), rust.clone()]).unwrap(), rust);
        let e = choose(vec![legacy]).unwrap_err();
        assert_eq!(
            e,
            "found only QEMU's legacy virtiofsd at /usr/lib/qemu/virtiofsd (virtiofsd version 7.2.22), which iostudy does not drive; install the maintained one: cargo install virtiofsd (needs libseccomp-dev libcap-ng-dev)"
        );
        assert!(choose(Vec::new()).unwrap_err().starts_with("virtiofsd not found: cargo install virtiofsd"));
    }
}
