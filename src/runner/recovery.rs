//! Cleaning up after runs that were killed outright (SIGKILL, a crash, power loss) and
//! so could not tear down.
//!
//! Runs are named `<pid>-<stamp>`; a run whose pid is gone left its private state
//! directory and its control directory under the target. Every process that still
//! mentions either (workers, `runc run`, QEMU, virtiofsd) is killed, then each backend
//! reaps what it left in the state directory ([`crate::runtime::Kind::reap`]: OCI
//! containers in their private roots…), and both directories are removed.

use std::fs;
use std::path::Path;

/// Reaps every dead run found in `state_base` or `control_base`; returns a note per run.
pub fn reap_dead_runs(state_base: &Path, control_base: &Path) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for base in [state_base, control_base] {
        for e in fs::read_dir(base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut notes = Vec::new();
    for name in names {
        let state = state_base.join(&name);
        let control = control_base.join(&name);
        let markers = [format!("{}/", state.display()), format!("{}/", control.display())];
        for pid in processes_mentioning(&markers) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        crate::runtime::reap_all(&state);
        let _ = fs::remove_dir_all(&state);
        let _ = fs::remove_dir_all(&control);
        notes.push(format!("cleaned up after run {name}, which was killed before it could tear down"));
    }
    notes
}

/// Pids of processes whose command line contains any of `markers`.
fn processes_mentioning(markers: &[String]) -> Vec<u32> {
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
