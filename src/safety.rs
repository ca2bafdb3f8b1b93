//! Where iostudy may write, running as root in shared, often world-writable places
//! (`/dev/shm`, `/tmp`, cluster scratch).
//!
//! The rules: never follow a link we did not make, never adopt a file or directory
//! another user controls, never write under a directory someone else could rearrange.
//! A directory the user names (the target, the results directory) must be a real
//! directory owned by the running user and not writable by others, reached through
//! directories that belong to root or to that user (world-writable ones only with the
//! sticky bit, as `/tmp` and `/dev/shm` have) and through links that belong to root or
//! to that user. Below it iostudy creates its own directories ([`ensure_dir`]) and opens
//! its files without following links ([`open_nofollow`]); once every level is ours and
//! closed to others, nobody else can plant anything in it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a path is not safe to write under.
#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    #[error(
        "{} is a symbolic link, and iostudy does not follow links it did not make: give the real path ({})",
        path.display(), target.display()
    )]
    Link { path: PathBuf, target: PathBuf },
    #[error("{} exists and is not a directory: remove it or choose another path", .0.display())]
    NotADirectory(PathBuf),
    #[error(
        "{} belongs to uid {uid}, not to you (uid {me}): iostudy does not write into what another user controls; use a directory you own, or remove it",
        path.display()
    )]
    Foreign { path: PathBuf, uid: u32, me: u32 },
    #[error(
        "{} is writable by other users (mode {mode:04o}), who could plant links or files in it: chmod go-w {}, or use a directory of your own",
        path.display(), path.display()
    )]
    OpenToOthers { path: PathBuf, mode: u32 },
    #[error(
        "{} is reached through {}, which {why}: anyone who controls it can redirect what iostudy writes; choose a path whose parent directories belong to root or you",
        path.display(), ancestor.display()
    )]
    Ancestor { path: PathBuf, ancestor: PathBuf, why: String },
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error(
        "{} is relative, and the working directory is gone ({source}; it was removed after the shell entered it?): cd to a directory that exists, or give an absolute path",
        path.display()
    )]
    NoWorkingDirectory { path: PathBuf, source: io::Error },
    #[error("{}: `..` after a directory that does not exist ({}): give the path without it", path.display(), missing.display())]
    UpFromMissing { path: PathBuf, missing: PathBuf },
    #[error("an empty path: give a directory or file name")]
    Empty,
    #[error("{} is not a regular file: iostudy writes only its own files; remove it or choose another name", .0.display())]
    NotAFile(PathBuf),
    #[error(
        "{} has {links} hard links: another name elsewhere is the same file, and writing it would change that one too; remove it or choose another name",
        path.display()
    )]
    HardLinked { path: PathBuf, links: u64 },
}

impl From<SafetyError> for io::Error {
    fn from(e: SafetyError) -> io::Error {
        match e {
            SafetyError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull => source,
            other => io::Error::other(other),
        }
    }
}

/// Whether what `m` describes belongs to the running user.
pub fn is_mine(m: &std::fs::Metadata) -> bool {
    m.uid() == me()
}

fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SafetyError {
    let path = path.to_path_buf();
    move |source| SafetyError::Io { what, path, source }
}

/// A path to read, as the user gave it, made absolute (relative to the working
/// directory, which must still exist); nothing else is resolved.
pub fn absolute(path: &Path) -> Result<PathBuf, SafetyError> {
    if path.as_os_str().is_empty() {
        return Err(SafetyError::Empty);
    }
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|source| SafetyError::NoWorkingDirectory { path: path.to_path_buf(), source })?;
    Ok(cwd.join(path))
}

/// A path to write under, as the user gave it, made the absolute path every check walks: relative to
/// the working directory (the physical one, as the kernel resolves it), with `.` and
/// `..` resolved the way the kernel resolves them — through what exists, with links on
/// the way checked as written first. The last component is kept as given, so a link
/// there is refused by the checks that follow, never silently resolved. Call once, at
/// the command boundary, for every path a user passes.
pub fn resolve(path: &Path) -> Result<PathBuf, SafetyError> {
    let abs = absolute(path)?;
    check_links_as_written(&abs)?;
    // The longest prefix that exists, resolved; the rest appended as names.
    let comps: Vec<Component> = abs.components().collect();
    let mut split = comps.len();
    while split > 1 {
        let prefix: PathBuf = comps[..split].iter().collect();
        if prefix.symlink_metadata().is_ok() {
            break;
        }
        split -= 1;
    }
    // A name at the very end stays as written (a link there must be seen, not followed).
    let last_is_name = matches!(comps.last(), Some(Component::Normal(_)));
    if split == comps.len() && last_is_name && split > 1 {
        split -= 1;
    }
    let prefix: PathBuf = comps[..split].iter().collect();
    let mut out = std::fs::canonicalize(&prefix).map_err(io_err("resolve", &prefix))?;
    for c in &comps[split..] {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(SafetyError::UpFromMissing { path: path.to_path_buf(), missing: out });
            }
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Creates `path` and any missing parents, each checked as safe (the existing ones on
/// the way as [`check_user_dir`] checks them, the rest made by this call and ours);
/// returns the directories it created, outermost first.
pub fn ensure_path(path: &Path) -> Result<Vec<PathBuf>, SafetyError> {
    let path = resolve(path)?;
    check_way_to(&path)?;
    let existing = path.ancestors().find(|p| p.symlink_metadata().is_ok()).unwrap_or(Path::new("/"));
    if existing == path {
        ensure_dir(&path)?;
        return Ok(Vec::new());
    }
    ensure_dirs_below(existing, &path)
}

/// Checks a single file the user named for iostudy to write (`image -o`, `compare
/// --html`): the way to it as for [`check_user_dir`], and a directory to hold it. The
/// file itself is then written with [`write_atomic`], which refuses anything at its
/// name that is not a file of ours.
pub fn check_output_file(path: &Path) -> Result<(), SafetyError> {
    let path = &resolve(path)?;
    check_way_to(path)?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    match std::fs::symlink_metadata(parent) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SafetyError::NotADirectory(parent.to_path_buf())),
        Err(e) => Err(io_err("inspect", parent)(e)),
    }
}

/// Checks a directory the user named: the way to it (see the module doc) and, if it
/// exists, the directory itself. Returns whether it exists.
pub fn check_user_dir(path: &Path) -> Result<bool, SafetyError> {
    let path = &resolve(path)?;
    check_way_to(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            check_own_dir(path, &m)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

/// Creates `path` (mode 0755) or verifies it: a real directory, not a link, owned by
/// the running user, not writable by others. Returns true when this call created it.
pub fn ensure_dir(path: &Path) -> Result<bool, SafetyError> {
    match std::fs::DirBuilder::new().mode(0o755).create(path) {
        Ok(()) => {
            let m = std::fs::symlink_metadata(path).map_err(io_err("inspect", path))?;
            check_own_dir(path, &m)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let m = std::fs::symlink_metadata(path).map_err(io_err("inspect", path))?;
            check_own_dir(path, &m)?;
            Ok(false)
        }
        Err(e) => Err(io_err("create", path)(e)),
    }
}

/// [`ensure_dir`] for `path` and every missing directory above it (each one created is
/// ours; existing ones are verified only from `base` down, which the caller checked).
/// Returns the directories this call created, outermost first.
pub fn ensure_dirs_below(base: &Path, path: &Path) -> Result<Vec<PathBuf>, SafetyError> {
    let rel = path
        .strip_prefix(base)
        .map_err(|_| io_err("place", path)(io::Error::other(format!("it is not under {}", base.display()))))?;
    let mut created = Vec::new();
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        if ensure_dir(&cur)? {
            created.push(cur.clone());
        }
    }
    Ok(created)
}

fn check_own_dir(path: &Path, m: &std::fs::Metadata) -> Result<(), SafetyError> {
    if m.file_type().is_symlink() {
        let target = std::fs::read_link(path).unwrap_or_default();
        return Err(SafetyError::Link { path: path.to_path_buf(), target });
    }
    if !m.is_dir() {
        return Err(SafetyError::NotADirectory(path.to_path_buf()));
    }
    if m.uid() != me() {
        return Err(SafetyError::Foreign { path: path.to_path_buf(), uid: m.uid(), me: me() });
    }
    if m.mode() & 0o022 != 0 {
        return Err(SafetyError::OpenToOthers { path: path.to_path_buf(), mode: m.mode() & 0o7777 });
    }
    Ok(())
}

fn trusted(uid: u32) -> bool {
    uid == 0 || uid == me()
}

/// The links on the way to `path` (not `path` itself), as written, belong to root or to
/// the running user.
fn check_links_as_written(path: &Path) -> Result<(), SafetyError> {
    let mut cur = PathBuf::new();
    let comps: Vec<Component> = path.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        if let Ok(m) = std::fs::symlink_metadata(&cur)
            && m.file_type().is_symlink()
            && !trusted(m.uid())
        {
            let why = format!("is a link owned by uid {}", m.uid());
            return Err(SafetyError::Ancestor { path: path.to_path_buf(), ancestor: cur, why });
        }
    }
    Ok(())
}

/// The directories and links on the way to `path` (not `path` itself) belong to root or
/// to the running user; a directory others may write must be sticky.
fn check_way_to(path: &Path) -> Result<(), SafetyError> {
    check_links_as_written(path)?;
    // Directories on the way, resolved.
    let Some(parent) = path.parent() else { return Ok(()) };
    let existing = parent.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let real = std::fs::canonicalize(existing).map_err(io_err("resolve", existing))?;
    for dir in real.ancestors() {
        let m = std::fs::metadata(dir).map_err(io_err("inspect", dir))?;
        let why = if !trusted(m.uid()) {
            Some(format!("belongs to uid {}", m.uid()))
        } else if m.mode() & 0o002 != 0 && m.mode() & 0o1000 == 0 {
            Some(format!("is writable by everyone without the sticky bit (mode {:04o})", m.mode() & 0o7777))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(SafetyError::Ancestor { path: path.to_path_buf(), ancestor: dir.to_path_buf(), why });
        }
    }
    Ok(())
}

/// Opens a file iostudy owns without following a link (`flags` are added to
/// `O_NOFOLLOW | O_NONBLOCK`, e.g. `O_DIRECT`): `create` makes it (mode 0644) when
/// missing. What is opened must be a regular file of the running user with one name
/// ([`check_replaceable`]'s rules): a FIFO planted there is not waited on (`O_NONBLOCK`
/// has no effect on regular files), a hard link to a file elsewhere is not written.
pub fn open_nofollow(path: &Path, opts: &mut OpenOptions, flags: rustix::fs::OFlags, create: bool) -> io::Result<File> {
    use rustix::fs::OFlags;
    opts.custom_flags((flags | OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32);
    if create {
        opts.create(true).mode(0o644);
    }
    let file = opts.open(path).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            let target = std::fs::read_link(path).unwrap_or_default();
            io::Error::from(SafetyError::Link { path: path.to_path_buf(), target })
        } else {
            e
        }
    })?;
    check_own_file(path, &file.metadata()?)?;
    Ok(file)
}

/// What may be replaced at `path`: nothing (`Ok(false)`), or a regular file of the
/// running user with no other name (`Ok(true)`). A link, a directory, a FIFO or device,
/// another user's file or a hard-linked one is refused, named.
pub fn check_replaceable(path: &Path) -> Result<bool, SafetyError> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("inspect", path)(e)),
    };
    check_own_file(path, &m)?;
    Ok(true)
}

/// A regular file of the running user with one name, or why not.
fn check_own_file(path: &Path, m: &std::fs::Metadata) -> Result<(), SafetyError> {
    if m.file_type().is_symlink() {
        let target = std::fs::read_link(path).unwrap_or_default();
        return Err(SafetyError::Link { path: path.to_path_buf(), target });
    }
    if !m.is_file() {
        return Err(SafetyError::NotAFile(path.to_path_buf()));
    }
    if m.uid() != me() {
        return Err(SafetyError::Foreign { path: path.to_path_buf(), uid: m.uid(), me: me() });
    }
    if m.nlink() > 1 {
        return Err(SafetyError::HardLinked { path: path.to_path_buf(), links: m.nlink() });
    }
    Ok(())
}

/// Writes `bytes` to `path` as one atomic step, the way every file iostudy writes is
/// written: into a temp file beside it with an unpredictable name, created exclusively
/// (`O_CREAT | O_EXCL`, so nothing planted there is opened), fsynced, then renamed over
/// `path` — which must be missing or a file of ours ([`check_replaceable`]); when it is
/// missing, the rename refuses to replace whatever appears meanwhile. The directory
/// holding `path` must already be checked by the caller (ours, or reached safely).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SafetyError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let name = path.file_name().ok_or_else(|| SafetyError::NotAFile(path.to_path_buf()))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let exists = check_replaceable(path)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .rand_bytes(12)
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(io_err("create a temp file in", dir))?;
    tmp.write_all(bytes).map_err(io_err("write", path))?;
    tmp.as_file().sync_all().map_err(io_err("write", path))?;
    let persisted = if exists { tmp.persist(path) } else { tmp.persist_noclobber(path) };
    persisted.map(drop).map_err(|e| io_err("write", path)(e.error))
}

/// Creates `path` afresh for writing (a log): an earlier file of ours there is removed
/// first; anything else there is refused ([`check_replaceable`]). Never follows a link.
pub fn create_file(path: &Path) -> Result<File, SafetyError> {
    if check_replaceable(path)? {
        std::fs::remove_file(path).map_err(io_err("replace", path))?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(io_err("create", path))
}

/// Removes `path` if it is a regular file of ours (never through a link).
pub fn remove_own_file(path: &Path) {
    if let Ok(m) = std::fs::symlink_metadata(path)
        && m.is_file()
        && m.uid() == me()
    {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_directories_pass_and_links_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        assert!(ensure_dir(&d).unwrap());
        assert!(!ensure_dir(&d).unwrap());
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(matches!(ensure_dir(&link), Err(SafetyError::Link { .. })));
        assert!(matches!(check_user_dir(&link), Err(SafetyError::Link { .. })));
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        assert!(matches!(ensure_dir(&open), Err(SafetyError::OpenToOthers { mode: 0o777, .. })));
    }

    #[test]
    fn files_are_opened_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::write(&real, b"x").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = open_nofollow(&link, OpenOptions::new().write(true), rustix::fs::OFlags::empty(), true).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert!(open_nofollow(&real, OpenOptions::new().read(true), rustix::fs::OFlags::empty(), false).is_ok());
    }

    #[test]
    fn dirs_below_are_created_one_by_one() {
        let tmp = tempfile::tempdir().unwrap();
        let created = ensure_dirs_below(tmp.path(), &tmp.path().join("a/b/c")).unwrap();
        assert_eq!(created.len(), 3);
        assert!(ensure_dirs_below(tmp.path(), &tmp.path().join("a/b/c")).unwrap().is_empty());
    }
}

/// Detaches every mount at or below `dir`, deepest first: what a killed container
/// runtime left mounted in state iostudy is about to remove (removing through a mount
/// would delete the mounted files, not the mount point).
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod mountinfo_tests {
    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(super::unescape_mountinfo(r"/run/a\040b/rootfs"), "/run/a b/rootfs");
        assert_eq!(super::unescape_mountinfo(r"/plain\0"), r"/plain\0");
    }
}
