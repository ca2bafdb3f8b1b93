//! Which processes serve a cell, and what role each of their threads plays.
//!
//! A cell's processes are those in its cgroup (the worker, `runc run` and its
//! container, runsc's sandbox and gofer, QEMU, virtiofsd: see
//! [`crate::runtime::cgroup`]) and their descendants. Roles come from what each process
//! is (its name and command line) and, for QEMU, from its threads' names (it is started
//! with `debug-threads=on`: vCPUs are `CPU n/TCG` or `CPU n/KVM`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

pub const CLIENT: &str = "client";
pub const VCPU: &str = "guest vCPU";
pub const VMM: &str = "VMM I/O";
pub const FILE_SERVER: &str = "file server";
pub const SANDBOX: &str = "sandbox";
pub const RUNTIME: &str = "runtime";
pub const OTHER: &str = "other";

/// Every role, in the order reports show them.
pub const ALL: [&str; 7] = [CLIENT, VCPU, VMM, FILE_SERVER, SANDBOX, RUNTIME, OTHER];

/// The processes of the cell whose cgroup directory is `cgroup` (its sub-cgroups
/// included), with their descendants, each with its role.
pub fn cell_processes(cgroup: &Path) -> BTreeMap<u32, &'static str> {
    let mut pids = Vec::new();
    collect_cgroup(cgroup, &mut pids, 0);
    // Descendants: children of any process found, until nothing new turns up.
    let parents = parent_map();
    loop {
        let before = pids.len();
        for (&pid, &ppid) in &parents {
            if pids.contains(&ppid) && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        if pids.len() == before {
            break;
        }
    }
    pids.into_iter().map(|p| (p, process_role(p))).collect()
}

fn collect_cgroup(dir: &Path, pids: &mut Vec<u32>, depth: u32) {
    if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
        for p in s.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            if !pids.contains(&p) {
                pids.push(p);
            }
        }
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    if depth > 8 {
        return;
    }
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_cgroup(&e.path(), pids, depth + 1);
        }
    }
}

/// pid → parent pid, for every process now.
fn parent_map() -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else { continue };
        // After the command name's closing parenthesis: state, then ppid.
        if let Some(ppid) = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok()) {
            out.insert(pid, ppid);
        }
    }
    out
}

/// A process's role, from its name and command line.
fn process_role(pid: u32) -> &'static str {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    role_of(comm.trim(), &args)
}

/// The role of a process named `comm` run as `args`.
pub fn role_of(comm: &str, args: &[String]) -> &'static str {
    let has = |w: &str| args.iter().any(|a| a == w || a.ends_with(&format!("/{w}")));
    if comm.starts_with("qemu-system") {
        VMM
    } else if comm == "virtiofsd" || has("virtiofsd") {
        FILE_SERVER
    } else if comm.starts_with("runsc") || has("runsc") || comm == "exe" {
        // runsc re-executes itself: `runsc … gofer`, `runsc … boot` (the sentry).
        if args.iter().any(|a| a == "gofer") || comm == "runsc-gofer" {
            FILE_SERVER
        } else if args.iter().any(|a| a == "boot") || comm == "runsc-sandbox" || comm == "exe" {
            SANDBOX
        } else {
            RUNTIME
        }
    } else if comm.starts_with("runc")
        || comm.starts_with("crun")
        || comm.starts_with("containerd-")
        || comm == "conmon"
    {
        RUNTIME
    } else if comm == "iostudy" || has("iostudy") || args.iter().any(|a| a == "worker") {
        CLIENT
    } else {
        OTHER
    }
}

/// A thread's role: its process's, but a VMM's vCPU threads are the guest's.
pub fn thread_role(process: &'static str, thread: &str) -> &'static str {
    if process == VMM && thread.starts_with("CPU ") { VCPU } else { process }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &str) -> Vec<String> {
        a.split(' ').map(String::from).collect()
    }

    #[test]
    fn roles_by_process_and_thread() {
        assert_eq!(role_of("qemu-system-x86", &args("/usr/bin/qemu-system-x86_64 -M microvm")), VMM);
        assert_eq!(thread_role(VMM, "CPU 0/TCG"), VCPU);
        assert_eq!(thread_role(VMM, "worker"), VMM);
        assert_eq!(role_of("virtiofsd", &args("/root/.cargo/bin/virtiofsd --socket-path=x")), FILE_SERVER);
        assert_eq!(role_of("exe", &args("runsc-gofer --root=/r gofer --bundle b")), FILE_SERVER);
        assert_eq!(role_of("exe", &args("runsc-sandbox --root=/r boot --bundle b")), SANDBOX);
        assert_eq!(role_of("runsc", &args("runsc --root=/r run x")), RUNTIME);
        assert_eq!(role_of("runc", &args("runc run x")), RUNTIME);
        assert_eq!(role_of("iostudy", &args("/w/iostudy worker --job j")), CLIENT);
        assert_eq!(role_of("sh", &args("sh -c x")), OTHER);
    }
}
