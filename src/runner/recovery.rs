//! Cleaning up after runs that were killed outright (SIGKILL, a crash, power loss) and
//! so could not tear down.
//!
//! A run's private state directory on a host is named `<pid>-<stamp>`: one whose pid is
//! gone on that host belongs to a dead run. A control directory under a target belongs
//! to a dead run whenever it is found by a run that holds the target's lock (a live run
//! would hold it) — which works across hosts sharing the target, where pids mean
//! nothing. Every process that still mentions a dead run's directories (workers, `runc
//! run`, QEMU, virtiofsd) is killed — on this host here, on nodes by their agents
//! ([`crate::sys::kill_processes_mentioning`]) — then each backend reaps what it left in the state
//! directory ([`crate::runtime::Kind::reap`]: OCI containers in their private roots…),
//! and the directories are removed.

use std::fs;
use std::path::Path;

/// What reaping found: a note per dead run, and the directories whose processes any
/// other host (a node) must kill too.
#[derive(Debug, Default)]
pub struct Reaped {
    pub notes: Vec<String>,
    pub markers: Vec<String>,
}

/// Reaps the dead runs whose state is in `state_base` (by pid) and, when given, every
/// run's control directory in `control_base` — the caller holds that target's lock.
pub fn reap_dead_runs(state_base: &Path, control_base: Option<&Path>) -> Reaped {
    let mut reaped = Reaped::default();
    let mut dead_states = Vec::new();
    for e in fs::read_dir(state_base).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if crate::sys::run_id_pid(&name).is_some_and(|p| !crate::sys::alive(p)) {
            dead_states.push(e.path());
        }
    }
    // Only what a run made: a directory of ours named as runs name theirs. Anything
    // else found there is left alone, and said.
    let mut dead_controls = Vec::new();
    for e in control_base.map(fs::read_dir).into_iter().flatten().flatten().flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "lock" || name.starts_with(".lock") {
            continue;
        }
        let ours = crate::sys::run_id_pid(&name).is_some()
            && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && crate::safety::is_mine(&m));
        if ours {
            dead_controls.push(path);
        } else {
            reaped.notes.push(format!(
                "left alone {}: not a control directory a run made (remove it yourself if it is not needed)",
                crate::text::printable(&path.display().to_string())
            ));
        }
    }
    let markers: Vec<String> = dead_states.iter().chain(&dead_controls).map(|d| format!("{}/", d.display())).collect();
    crate::sys::kill_processes_mentioning(&markers);
    for state in &dead_states {
        crate::runtime::reap_all(state);
        let _ = fs::remove_dir_all(state);
        // Its cells' cgroups, emptied by the kills above.
        if let Some(run) = state.file_name() {
            crate::runtime::cgroup::remove_run(&run.to_string_lossy());
        }
    }
    for control in &dead_controls {
        let _ = fs::remove_dir_all(control);
    }
    let mut names: Vec<String> = dead_states
        .iter()
        .chain(&dead_controls)
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names.dedup();
    reaped
        .notes
        .extend(names.iter().map(|n| format!("cleaned up after run {n}, which was killed before it could tear down")));
    reaped.markers = dead_controls.iter().map(|d| format!("{}/", d.display())).collect();
    reaped
}
