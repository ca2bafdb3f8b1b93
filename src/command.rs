//! The command seam: every external tool (runc, crun, runsc, unshare…) is invoked
//! through [`Cmd`], a plain argv value. Runtimes *build* `Cmd`s, which unit tests
//! compare to exact command lines without the binaries; the runner *executes* them.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A command line, not yet run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Variables set in its environment (beyond what it inherits).
    pub env: Vec<(OsString, OsString)>,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into(), args: Vec::new(), env: Vec::new() }
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The argv as text, for tests, logs and error messages.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.to_string_lossy().into_owned())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    }

    /// A `Command` for this argv in its own process group (so a terminal's Ctrl-C
    /// reaches only iostudy, which then tears clients down in order), stdin closed.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).envs(self.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).process_group(0);
        c
    }

    /// Runs to completion, capturing output.
    pub fn output(&self) -> std::io::Result<Output> {
        self.command().output()
    }

    /// Runs to completion; an error carries the command and its stderr.
    /// The first non-empty line it prints (stdout, then stderr), trimmed: what tools
    /// answer to `--version`. `None` when it cannot run or prints nothing.
    pub fn first_line(&self) -> Option<String> {
        let o = self.output().ok()?;
        let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        text.lines().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string())
    }

    pub fn run_checked(&self) -> Result<Output, String> {
        let out = self.output().map_err(|e| format!("cannot run `{}`: {e}", self.argv().join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "`{}` failed ({}): {}",
                self.argv().join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out)
    }
}

/// Finds `name` on PATH, or accepts it as a path when it contains a `/`.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = Path::new(name);
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `s` quoted for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
