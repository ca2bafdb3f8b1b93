//! A cell's own cgroup: where the CPU its clients cost the host is counted.
//!
//! Isolation's overhead is paid in host CPU — gVisor's sentry and gofer, QEMU's
//! emulation, virtiofsd, the runtimes themselves — so each cell's clients, and what
//! serves them, run in a cgroup of their own: worker processes, `runc run`, QEMU and
//! virtiofsd are moved into it as they start, and containers are created inside it
//! (`linux.cgroupsPath`), so its CPU counter covers all of them. On cgroup v1 (and
//! hybrid hosts) that is the `cpuacct` hierarchy; on pure v2 hosts `cpu.stat`, where
//! containers keep the cgroups their runtime gives them and are not counted (said in
//! the cell's notes). The counter is sampled with the host's total busy time from
//! `/proc/stat`, so the two can be checked against each other.

use std::fs;
use std::path::{Path, PathBuf};

pub use crate::results::cpu::CpuSample;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// A cgroup made for one cell.
#[derive(Debug)]
pub struct CellCgroup {
    dir: PathBuf,
    /// Its path below the hierarchy's root, as `linux.cgroupsPath` takes it.
    rel: PathBuf,
    version: Version,
}

impl CellCgroup {
    /// Creates `<this process's cgroup>/<name>` (name may hold `/`), or `None` where no
    /// cgroup may be made (not root, no cpuacct or cgroup2 mounted).
    pub fn create(name: &str) -> Option<CellCgroup> {
        let (mount, own, version) = hierarchy()?;
        let rel = own.join(name);
        let dir = mount.join(rel.strip_prefix("/").unwrap_or(&rel));
        fs::create_dir_all(&dir).ok()?;
        Some(CellCgroup { dir, rel, version })
    }

    /// Moves process `pid` (and its threads) into the cgroup.
    pub fn add(&self, pid: u32) -> std::io::Result<()> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// The path a container of this cell should get (`linux.cgroupsPath`), where its
    /// runtime would put it inside this cgroup; `None` on v2, where that is not done.
    pub fn container_path(&self, id: &str) -> Option<String> {
        (self.version == Version::V1).then(|| self.rel.join(id).display().to_string())
    }

    /// CPU time of everything in the cgroup so far, ns.
    pub fn usage_ns(&self) -> Option<u64> {
        match self.version {
            Version::V1 => fs::read_to_string(self.dir.join("cpuacct.usage")).ok()?.trim().parse().ok(),
            Version::V2 => fs::read_to_string(self.dir.join("cpu.stat"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))?
                .trim()
                .parse::<u64>()
                .ok()
                .map(|us| us * 1000),
        }
    }

    /// A reading of the cgroup's and the host's counters, now.
    pub fn sample(&self) -> Option<CpuSample> {
        Some(CpuSample { t_ns: crate::sys::wall_ns(), cgroup_ns: self.usage_ns()?, host_busy_ns: host_busy_ns()? })
    }

    /// Whether the counter covers containers too.
    pub fn covers_containers(&self) -> bool {
        self.version == Version::V1
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for CellCgroup {
    fn drop(&mut self) {
        remove_tree(&self.dir);
    }
}

/// Removes an emptied cgroup and its (emptied) children, deepest first.
pub fn remove_tree(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Removes the cgroups of the run (or node agent) named `run` — `iostudy-<run>/…`
/// below this process's own, where its cells' were made — once their processes are gone.
pub fn remove_run(run: &str) {
    if let Some(base) = base_dir() {
        remove_tree(&base.join(format!("iostudy-{run}")));
    }
}

/// The cgroup directory runs put their cells' cgroups in: this process's own.
pub fn base_dir() -> Option<PathBuf> {
    let (mount, own, _) = hierarchy()?;
    Some(mount.join(own.strip_prefix("/").unwrap_or(&own)))
}

/// The mount of the hierarchy CPU is counted in, this process's path in it, and its
/// version: cgroup v1's cpuacct if mounted, else cgroup v2.
fn hierarchy() -> Option<(PathBuf, PathBuf, Version)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS… - FSTYPE SOURCE SUPEROPTS
    let find = |fstype: &str, superopt: Option<&str>| {
        mounts.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let (t, _src, sopts) = (r.next()?, r.next()?, r.next().unwrap_or(""));
            let ok = t == fstype && superopt.is_none_or(|o| sopts.split(',').any(|x| x == o));
            if ok { left.split_whitespace().nth(4).map(PathBuf::from) } else { None }
        })
    };
    if let Some(mount) = find("cgroup", Some("cpuacct")) {
        let own = cgroups.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            ctrls.split(',').any(|c| c == "cpuacct").then(|| PathBuf::from(path))
        })?;
        return Some((mount, own, Version::V1));
    }
    let mount = find("cgroup2", None)?;
    let own = cgroups.lines().find_map(|l| l.strip_prefix("0::").map(PathBuf::from))?;
    Some((mount, own, Version::V2))
}

/// CPU time the host has been busy, over all CPUs, ns (`/proc/stat`: everything but
/// idle and iowait).
pub fn host_busy_ns() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let hz = rustix::param::clock_ticks_per_second();
    Some((total - idle) * (1_000_000_000 / hz))
}
