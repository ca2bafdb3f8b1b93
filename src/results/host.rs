//! Facts about the machine a client runs on, recorded with every result.
//!
//! Read from `uname` and sysfs only, so they work the same on a host, in a container
//! and in a micro-VM guest whose initramfs holds nothing but the worker.

use crate::results::HostFacts;

impl HostFacts {
    /// Facts about the machine this process runs on.
    pub fn current() -> Self {
        let uts = rustix::system::uname();
        let clock_source = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Self {
            hostname: uts.nodename().to_string_lossy().into_owned(),
            kernel: uts.release().to_string_lossy().into_owned(),
            clock_source,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        }
    }
}
