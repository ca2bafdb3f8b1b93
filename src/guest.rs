//! The micro-VM guest's init: the same static binary, started by the kernel as PID 1.
//!
//! The initramfs holds nothing but this binary and a few kernel modules, so init does
//! what a distribution's would, minimally: mount /proc, /sys and /dev, load the share's
//! modules in order, mount the share (virtio-9p or virtio-fs) where the kernel command
//! line says (`iostudy.mount`), report *booted* through the control channel (the
//! controller times boot by it), set its wall clock by the controller's, run the
//! worker's job, then sync and reboot — QEMU runs with `-no-reboot`, so a reboot ends the VM. Every error
//! is printed on the serial console (kept by the controller) and still ends the VM:
//! a guest must never sit waiting for a deadline to kill it.

use std::path::Path;

use rustix::mount::{MountFlags, mount};

use crate::control::{Link, SharedDirLink};

/// Whether this process is the guest's init: PID 1 started without arguments (in a
/// container the worker is PID 1 too, but always with `worker --job …`).
pub fn is_init() -> bool {
    rustix::process::getpid().is_init() && std::env::args_os().count() <= 1
}

/// Runs as init and never returns.
pub fn main() -> ! {
    let outcome = std::panic::catch_unwind(run);
    match outcome {
        Ok(Ok(())) => eprintln!("iostudy-guest: done"),
        Ok(Err(e)) => eprintln!("iostudy-guest: error: {e}"),
        Err(_) => eprintln!("iostudy-guest: panicked"),
    }
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// `iostudy.KEY=VALUE` parameters from the kernel command line.
pub fn params(cmdline: &str) -> Vec<(String, String)> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("iostudy."))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run() -> Result<(), String> {
    let none = MountFlags::empty();
    mount("proc", "/proc", "proc", none, None).map_err(|e| format!("mount /proc: {e}"))?;
    mount("sysfs", "/sys", "sysfs", none, None).map_err(|e| format!("mount /sys: {e}"))?;
    let _ = mount("devtmpfs", "/dev", "devtmpfs", none, None);
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("read /proc/cmdline: {e}"))?;
    let p = params(&cmdline);
    let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    if get("probe").is_some() {
        eprintln!("iostudy-probe-ok");
        return Ok(());
    }

    let order = std::fs::read_to_string("/modules/order").unwrap_or_default();
    for m in order.lines().filter(|l| !l.is_empty()) {
        let image = std::fs::read(m).map_err(|e| format!("read {m}: {e}"))?;
        match rustix::system::init_module(&image, c"") {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(format!("load module {m}: {e}")),
        }
    }

    let fstype = get("fstype").ok_or("no iostudy.fstype on the kernel command line")?;
    let tag = get("tag").unwrap_or_else(|| "data".into());
    let opts = get("opts").unwrap_or_default();
    let at = get("mount").ok_or("no iostudy.mount on the kernel command line")?;
    let data =
        if opts.is_empty() { None } else { Some(std::ffi::CString::new(opts.clone()).map_err(|e| e.to_string())?) };
    std::fs::create_dir_all(&at).map_err(|e| format!("create {at}: {e}"))?;
    mount(tag.as_str(), at.as_str(), fstype.as_str(), none, data.as_deref())
        .map_err(|e| format!("mount -t {fstype} -o {opts} {tag} {at}: {e}"))?;
    let job = get("job").ok_or("no iostudy.job on the kernel command line")?;
    let result = SharedDirLink::open(Path::new(&job)).map_err(|e| e.to_string()).and_then(|link| {
        link.booted().map_err(|e| e.to_string())?;
        sync_clock(&link)?;
        crate::worker::run_over(&link, Some(&fstype)).map(drop).map_err(|e| format!("{e:#}"))
    });
    let _ = rustix::mount::unmount(at.as_str(), rustix::mount::UnmountFlags::empty());
    result
}

/// Sets the guest's wall clock by the controller's. A guest starts with what the
/// emulated RTC says, in whole seconds; the start barrier and every timestamp need the
/// controller's clock to the millisecond or better.
fn sync_clock(link: &dyn Link) -> Result<(), String> {
    let sync = link.sync_clock(8).map_err(|e| format!("clock sync: {e}"))?;
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let ns = (now.tv_sec as i128 * 1_000_000_000 + now.tv_nsec as i128 + sync.offset_ns as i128).max(0);
    let set = rustix::time::Timespec { tv_sec: (ns / 1_000_000_000) as i64, tv_nsec: (ns % 1_000_000_000) as i64 };
    rustix::time::clock_settime(rustix::time::ClockId::Realtime, set).map_err(|e| format!("clock_settime: {e}"))?;
    let _ = crate::results::host::CLOCK_SYNC.set((sync.offset_ns, sync.uncertainty_ns));
    eprintln!(
        "iostudy-guest: wall clock set by the controller's: {:+.3} ms (± {:.3} ms)",
        sync.offset_ns as f64 / 1e6,
        sync.uncertainty_ns as f64 / 1e6
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_parameters() {
        let p = params(
            "console=ttyS0 quiet iostudy.fstype=9p iostudy.opts=trans=virtio,msize=524288 iostudy.job=/data/j.json",
        );
        assert_eq!(
            p,
            [
                ("fstype".to_string(), "9p".to_string()),
                ("opts".to_string(), "trans=virtio,msize=524288".to_string()),
                ("job".to_string(), "/data/j.json".to_string())
            ]
        );
    }
}
