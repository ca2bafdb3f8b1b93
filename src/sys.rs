//! Facts of the system every layer needs, each computed in one place: the wall clock in
//! nanoseconds, where runs keep their private state and how a run is named, free space
//! and memory, the processes that mention a run, and which machine this is.
//!
//! The ground floor: nothing here imports anything of iostudy's, so the runner, the
//! node agent, preflight and the backends can all call it without importing each other.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_REALTIME in ns since the epoch (0 before 1970): the clock the barrier's go
/// instant and every result's timestamps are in.
pub fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Where runs keep their private state: `/run/iostudy` as root, else a directory of
/// the user's own in the temp dir.
pub fn state_base() -> PathBuf {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        PathBuf::from("/run/iostudy")
    } else {
        std::env::temp_dir().join(format!("iostudy-{}", uid.as_raw()))
    }
}

/// A name for this run (or agent) that is unique on the host and starts with its pid,
/// so that a later run can tell whether it is still alive: `<pid>-<ms mod 10^8>`.
pub fn run_id() -> String {
    format!("{}-{}", std::process::id(), wall_ns() / 1_000_000 % 100_000_000)
}

/// The pid a [`run_id`] starts with.
pub fn run_id_pid(name: &str) -> Option<u32> {
    name.split('-').next()?.parse().ok()
}

/// Whether process `pid` exists on this host.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `path`, or its nearest ancestor that exists (`/` at worst).
pub fn nearest_existing(path: &Path) -> PathBuf {
    path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/")).to_path_buf()
}

/// Free bytes on the filesystem holding `path` (or its nearest existing ancestor).
pub fn free_space(path: &Path) -> Option<u64> {
    rustix::fs::statvfs(nearest_existing(path)).ok().map(|v| v.f_bavail.saturating_mul(v.f_frsize))
}

/// A field of /proc/meminfo (`MemTotal:`, `MemAvailable:`) in bytes (0 when unknown).
pub fn meminfo(field: &str) -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb.saturating_mul(1024))
}

/// This boot of this machine (`/proc/sys/kernel/random/boot_id`): two hosts that report
/// the same one are one machine (network namespaces, containers), and share its CPUs.
pub fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Pids of this host's processes (other than this one) whose command line contains
/// any of `markers`.
pub fn processes_mentioning(markers: &[String]) -> Vec<u32> {
    if markers.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let text = String::from_utf8_lossy(&c).replace('\0', " ");
                markers.iter().any(|m| text.contains(m.as_str()))
            })
        })
        .collect()
}

/// Kills (SIGKILL) every process of this host whose command line mentions one of
/// `markers`.
pub fn kill_processes_mentioning(markers: &[String]) {
    for pid in processes_mentioning(markers) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Maps over items on every CPU, in order (decoding thousands of result documents and
/// histograms is what reading a large study costs).
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items.chunks(chunk).map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<R>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("a parallel_map worker panicked")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_names_its_process() {
        let id = run_id();
        assert_eq!(run_id_pid(&id), Some(std::process::id()));
        assert!(alive(std::process::id()));
        assert_eq!(run_id_pid("nodes"), None);
    }

    #[test]
    fn facts_of_this_machine() {
        assert!(meminfo("MemTotal:") > 0);
        assert!(free_space(Path::new("/nonexistent/below/root")).is_some());
        assert_eq!(nearest_existing(Path::new("/nonexistent/x")), PathBuf::from("/"));
        assert!(wall_ns() > 1_700_000_000_000_000_000);
    }
}
