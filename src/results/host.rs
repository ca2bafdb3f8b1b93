//! Facts about the machine a client runs on, recorded with every result.
//!
//! Read from `uname` and sysfs only, so they work the same on a host, in a container
//! and in a micro-VM guest whose initramfs holds nothing but the worker.

use std::sync::OnceLock;

use crate::results::HostFacts;

/// Set once by a guest that synchronized its wall clock with the controller's:
/// (correction applied, uncertainty), ns.
pub static CLOCK_SYNC: OnceLock<(i64, u64)> = OnceLock::new();

impl HostFacts {
    /// Facts about the machine this process runs on.
    pub fn current() -> Self {
        let uts = rustix::system::uname();
        Self {
            hostname: uts.nodename().to_string_lossy().into_owned(),
            kernel: uts.release().to_string_lossy().into_owned(),
            clock_source: clock_source(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            cpu_model: cpu_model(),
            clock_resolution_ns: None,
            clock_getres_ns: None,
            clock_read_ns: None,
            clock_synced_offset_ns: CLOCK_SYNC.get().map(|s| s.0),
            clock_sync_uncertainty_ns: CLOCK_SYNC.get().map(|s| s.1),
            clock_source_end: None,
            timer: None,
        }
    }
}

impl HostFacts {
    /// A host known only by name (results imported from another tool).
    pub fn unknown(hostname: &str) -> Self {
        Self {
            hostname: hostname.to_string(),
            kernel: "unknown".into(),
            clock_source: None,
            cpus: 0,
            cpu_model: None,
            clock_resolution_ns: None,
            clock_getres_ns: None,
            clock_read_ns: None,
            clock_synced_offset_ns: None,
            clock_sync_uncertainty_ns: None,
            clock_source_end: None,
            timer: None,
        }
    }
}

/// The CPU's model name, if /proc/cpuinfo gives one.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string()).filter(|m| !m.is_empty())
}

/// The kernel's current clock source, if readable.
pub fn clock_source() -> Option<String> {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
