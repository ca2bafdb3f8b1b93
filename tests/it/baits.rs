//! Every path iostudy writes as root ([`iostudy::inventory::WRITTEN`]), each baited in
//! every way someone could bait it: a symbolic link and a hard link to a victim, a FIFO,
//! and a file or directory of another user (uid 65534; planted by that user where it
//! can write, `setpriv --reuid`). For each case the command that writes the path runs,
//! and the victim must be unchanged and the refusal must name the path. A second test
//! runs a study and checks that every path it wrote is in the inventory, so the list
//! cannot fall behind the code.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use iostudy::inventory::{Kind, Place, WRITTEN, Written, matching};

use crate::util::*;

/// The kinds of bait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bait {
    Symlink,
    Hardlink,
    Fifo,
    Foreign,
}

const BAITS: [Bait; 4] = [Bait::Symlink, Bait::Hardlink, Bait::Fifo, Bait::Foreign];

/// What must not change: a file and a directory outside everything a run touches.
struct Victims {
    _dir: tempfile::TempDir,
    file: PathBuf,
    dir: PathBuf,
}

impl Victims {
    fn new() -> Victims {
        let d = scratch();
        let file = d.path().join("victim.txt");
        std::fs::write(&file, b"the victim's own bytes\n").unwrap();
        let dir = d.path().join("victim-dir");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("inside.txt"), b"inside the victim's directory\n").unwrap();
        Victims { _dir: d, file, dir }
    }

    /// Everything about the victims that a write through a bait would change.
    fn state(&self) -> String {
        let m = std::fs::metadata(&self.file).unwrap();
        format!(
            "{:?} {} {} {:?} {:?}",
            std::fs::read(&self.file).unwrap(),
            m.len(),
            m.nlink(),
            entries(&self.dir),
            std::fs::read(self.dir.join("inside.txt")).unwrap()
        )
    }
}

/// Plants `bait` at `path` (made free first) for an entry of `kind`; `false` when the
/// bait does not apply (a hard link to a directory).
fn plant(path: &Path, bait: Bait, kind: Kind, v: &Victims) -> bool {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    let nobody = |p: &Path| std::os::unix::fs::lchown(p, Some(65534), Some(65534)).unwrap();
    match (bait, kind) {
        (Bait::Symlink, Kind::File) => std::os::unix::fs::symlink(&v.file, path).unwrap(),
        (Bait::Symlink, Kind::Dir) => std::os::unix::fs::symlink(&v.dir, path).unwrap(),
        (Bait::Hardlink, Kind::File) => std::fs::hard_link(&v.file, path).unwrap(),
        (Bait::Hardlink, Kind::Dir) => return false,
        (Bait::Fifo, _) => rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap(),
        (Bait::Foreign, Kind::File) => {
            std::fs::write(path, b"another user's file\n").unwrap();
            nobody(path);
        }
        (Bait::Foreign, Kind::Dir) => {
            std::fs::create_dir(path).unwrap();
            nobody(path);
        }
    }
    true
}

/// A two-cell study (read, write) of `scenario` on `target`.
fn study(dir: &Path, target: &Path, scenario: &str) -> PathBuf {
    let text = format!(
        "[study]\nname = \"baits\"\ntarget = \"{}\"\ndrop_caches = false\n\n[workload]\nbs = \"64K\"\nsize = \"1M\"\n\
         runtime = \"300ms\"\n\n[matrix]\nscenarios = [\"{scenario}\"]\nclients = [1]\npatterns = [\"read\", \"write\"]\n{}",
        target.display(),
        if scenario == "vfs" { "\n[scenarios.vfs]\nruntime = \"microvm\"\nshare = \"virtiofs\"\n" } else { "" }
    );
    let path = dir.join(format!("{scenario}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// A template's path with its placeholders filled in for the cell that is run again.
fn fill(template: &str, cell: &str) -> String {
    template
        .replace("<cell>", cell)
        .replace("<k>", "0")
        .replace("<t>", "0")
        .replace("<chart>", "bandwidth")
        .replace("<prefix>", "iostudy")
        .replace("<run>", "1-1")
}

/// One baited case's verdict: the victim intact, the command refused, naming the path.
fn judge(what: &str, path: &Path, o: &Output, before: &str, v: &Victims, refused: &mut Vec<String>) {
    assert_eq!(v.state(), before, "{what}: the victim changed\n{}", stderr(o));
    let said = format!("{}{}", stdout(o), stderr(o));
    assert!(o.status.code() != Some(0), "{what}: the command succeeded\n{said}");
    assert!(said.contains(&path.display().to_string()), "{what}: the message does not name {}\n{said}", path.display());
    refused.push(what.to_string());
}

/// The results directory's paths, each baited in a copy of a finished run that is
/// then resumed with its second cell to run again (so every file is written anew).
fn results_paths(
    v: &Victims,
    (base, s): (&Path, &Path),
    extra: &[&str],
    cell: &str,
    which: impl Fn(&Written) -> bool,
    refused: &mut Vec<String>,
) {
    for w in WRITTEN.iter().filter(|w| w.place == Place::Results && which(w)) {
        for bait in BAITS {
            let case = scratch();
            let out = case.path().join("results");
            let cp = Command::new("cp").arg("-a").arg(base).arg(&out).status().unwrap();
            assert!(cp.success());
            std::fs::remove_file(out.join(format!("cells/{cell}.json"))).unwrap();
            let path = if w.template == "." { out.clone() } else { out.join(fill(w.template, cell)) };
            if !plant(&path, bait, w.kind, v) {
                continue;
            }
            let before = v.state();
            let mut args = vec!["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()];
            if w.template != "." {
                args.push("--resume");
            }
            args.extend_from_slice(extra);
            let o = run(&args);
            judge(&format!("{} as {bait:?}", w.template), &path, &o, &before, v, refused);
        }
    }
}

fn every_written_path_refuses_every_bait() -> Needs {
    need(is_root(), "root (files of another user, and what iostudy refuses as root)")?;
    let v = Victims::new();
    let mut refused = Vec::new();

    // The results directory, through the mock backend (one fake, the same writers).
    let dir = scratch();
    let s = study(dir.path(), &dir.path().join("target"), "bare");
    let base = dir.path().join("base");
    let o = run(&["run", s.to_str().unwrap(), "-o", base.to_str().unwrap(), "--mock"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // (The virtio-fs file server's log is baited below, where a micro-VM runs.)
    let not_virtiofsd = |w: &Written| !w.template.contains("virtiofsd");
    results_paths(&v, (&base, &s), &["--mock"], "bare.write.c1.r1", not_virtiofsd, &mut refused);

    // The target's paths, baited before a fresh run.
    for w in WRITTEN.iter().filter(|w| w.place == Place::Target) {
        for bait in BAITS {
            let case = scratch();
            let target = case.path().join("target");
            std::fs::create_dir_all(target.join("iostudy-data/client-0")).unwrap();
            std::fs::create_dir_all(target.join(".iostudy-control")).unwrap();
            let path = if w.template == "." { target.clone() } else { target.join(fill(w.template, "-")) };
            if !plant(&path, bait, w.kind, &v) {
                continue;
            }
            let s = study(case.path(), &target, "bare");
            let before = v.state();
            let out = case.path().join("results");
            let o = run(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]);
            let what = format!("target {} as {bait:?}", w.template);
            if w.template.ends_with("<run>") {
                // A run's control area has a new name each run: one planted under a
                // run's name is not a run's, and is left alone, said.
                assert_eq!(v.state(), before, "{what}: the victim changed");
                assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(&o));
                assert!(std::fs::symlink_metadata(&path).is_ok(), "{what}: removed");
                assert!(stderr(&o).contains(&format!("left alone {}", path.display())), "{what}: {}", stderr(&o));
                refused.push(what);
            } else {
                judge(&what, &path, &o, &before, &v, &mut refused);
            }
        }
    }

    // Files named on their own, planted by another user in a sticky world-writable
    // directory (as /tmp is) where a root-owned bait cannot be.
    let open = scratch();
    std::fs::set_permissions(open.path(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(&v.file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let a = base.display().to_string();
    for bait in BAITS {
        let tag = format!("{bait:?}").to_lowercase();
        let plant_as_nobody = |name: &str| -> PathBuf {
            let p = open.path().join(name);
            let script = match bait {
                Bait::Symlink => format!("ln -s {} {}", v.file.display(), p.display()),
                Bait::Hardlink => format!("ln {} {}", v.file.display(), p.display()),
                Bait::Fifo => format!("mkfifo {}", p.display()),
                Bait::Foreign => format!("echo mine > {}", p.display()),
            };
            let ok = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", &script])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            if !ok.success() {
                // A hard link to a file nobody may read is refused by the kernel
                // (protected_hardlinks): root plants it, chowned as the user's.
                std::fs::hard_link(&v.file, &p).unwrap();
            }
            p
        };
        let image = plant_as_nobody(&format!("image-{tag}.tar"));
        let before = v.state();
        let o = run(&["image", "-o", image.to_str().unwrap()]);
        judge(&format!("image -o FILE as {bait:?}"), &image, &o, &before, &v, &mut refused);
        let page = plant_as_nobody(&format!("compare-{tag}.html"));
        let before = v.state();
        let o = run(&["compare", &a, &a, "--html", page.to_str().unwrap()]);
        judge(&format!("compare --html FILE as {bait:?}"), &page, &o, &before, &v, &mut refused);
    }
    #[cfg(feature = "kubernetes")]
    manifests(&v, &mut refused);

    // The virtio-fs file server's log, where a micro-VM runs.
    if crate::microvm::vm_ready().is_ok() {
        let s = study(dir.path(), &dir.path().join("target-vfs"), "vfs");
        let base = dir.path().join("base-vfs");
        let o = run(&["run", s.to_str().unwrap(), "-o", base.to_str().unwrap(), "--pattern", "read"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // Resume the same filters; the cell run again is the read one.
        let virtiofsd = |w: &Written| w.template.contains("virtiofsd");
        results_paths(&v, (&base, &s), &["--pattern", "read"], "vfs.read.c1.r1", virtiofsd, &mut refused);
    } else if required() {
        return Err(Skip("needs QEMU, a guest kernel and virtiofsd (scripts/setup) for the virtiofsd log".into()));
    }
    eprintln!("{} baited cases refused, every victim intact", refused.len());
    Ok(())
}

#[cfg(feature = "kubernetes")]
fn manifests(v: &Victims, refused: &mut Vec<String>) {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/stackhpc-kata-2019-kubernetes.toml");
    for w in WRITTEN.iter().filter(|w| w.template.starts_with("plan --manifests")) {
        for bait in BAITS {
            let case = scratch();
            let dir = case.path().join("jobs");
            let path = if w.kind == Kind::Dir {
                dir.clone()
            } else {
                std::fs::create_dir(&dir).unwrap();
                dir.join("runC.read.c1.r1.yaml")
            };
            if !plant(&path, bait, w.kind, v) {
                continue;
            }
            let before = v.state();
            let home = case.path().join("home");
            std::fs::create_dir(&home).unwrap();
            let o = Command::new(bin())
                .args(["plan", example, "--manifests", dir.to_str().unwrap()])
                .env("HOME", &home)
                .env_remove("KUBECONFIG")
                .output()
                .unwrap();
            judge(&format!("{} as {bait:?}", w.template), &path, &o, &before, v, refused);
        }
    }
}

/// Every path a run, its report and an import write is one the inventory lists.
fn the_inventory_lists_every_path_a_run_writes() {
    let dir = scratch();
    let target = dir.path().join("target");
    let s = study(dir.path(), &target, "bare");
    let out = dir.path().join("results");
    let o = run(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut seen = 0;
    for (place, root) in [(Place::Results, &out), (Place::Target, &target)] {
        for p in walk(root) {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let rel = if rel.is_empty() { ".".to_string() } else { rel };
            assert!(matching(place, &rel).is_some(), "{place:?} {rel} is written but not in the inventory");
            seen += 1;
        }
    }
    assert!(seen > 20, "the run wrote {seen} paths");
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

crate::trials![every_written_path_refuses_every_bait, the_inventory_lists_every_path_a_run_writes];
