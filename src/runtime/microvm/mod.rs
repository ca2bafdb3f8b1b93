//! The `microvm` runtime: one QEMU guest per client, sharing the target over virtio-9p
//! or virtio-fs — the storage path of Kata Containers, reproducible on any Linux host.
//!
//! Each client boots the host's distribution kernel (its ELF, extracted once per run,
//! boots through PVH without a decompression stub) with a generated initramfs holding
//! the static iostudy binary as `/init` and exactly the modules the share needs
//! ([`kernel::modules_for`]). The guest mounts the share, runs the worker's job — the
//! barrier and the results cross the same share as the I/O — and reboots, which ends
//! QEMU (`-no-reboot`). The serial console is the client's log.
//!
//! KVM is used only where it really works: `/dev/kvm` can exist while nested guests
//! hang, so `accel = "auto"` boots a probe guest under KVM with a short deadline and
//! falls back to TCG. The accelerator is recorded with every result; reports flag TCG
//! figures, which measure CPU emulation more than the transport.

pub mod initramfs;
pub mod kernel;
pub mod virtiofsd;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::command::{Cmd, which};
use crate::runtime::child::{ChildClient, Helper, kill_group};
use crate::runtime::{
    Backend, Client, ClientCost, Kind, Launch, Probe, RuntimeError, ScenarioContext, Section, SpannedError, Spec,
    TARGET_MOUNT, Timing, binary,
};
use crate::workload::{Bytes, Workload};

pub static KIND: MicrovmKind = MicrovmKind;

pub struct MicrovmKind;

/// The keys of a `microvm` scenario, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `9p` (Kata 1.x) or `virtiofs`.
    share: Option<Spanned<String>>,
    vcpus: Option<u32>,
    memory: Option<Bytes>,
    /// `auto` (probe KVM, fall back to TCG), `kvm` or `tcg`.
    accel: Option<Spanned<String>>,
    kernel: Option<PathBuf>,
    msize: Option<Bytes>,
    cache: Option<String>,
    security_model: Option<String>,
    virtiofsd_threads: Option<u32>,
    virtiofsd_args: Option<Vec<String>>,
}

impl Kind for MicrovmKind {
    fn name(&self) -> &'static str {
        "microvm"
    }

    /// Kata 1.x's 9p path and the virtio-fs that was hoped to fix it.
    fn demo_scenarios(&self) -> Vec<crate::runtime::DemoScenario> {
        [("microvm-9p", Share::NineP), ("microvm-virtiofs", Share::Virtiofs)]
            .into_iter()
            .map(|(name, share)| {
                let cfg = MicrovmConfig::new(share);
                let table =
                    format!("\n[scenarios.{name}]\nruntime = \"{}\"\nshare = \"{}\"\n", self.name(), cfg.share_name());
                crate::runtime::DemoScenario { name, spec: Arc::new(cfg), table }
            })
            .collect()
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError> {
        let s: Settings = section.deserialize()?;
        let share_value = s.share.ok_or_else(|| {
            section.error(
                "uses runtime `microvm` but names no share",
                Some("add share = \"9p\" (Kata 1.x's virtio-9p) or share = \"virtiofs\"".into()),
            )
        })?;
        let share = match share_value.get_ref().as_str() {
            "9p" => Share::NineP,
            "virtiofs" | "virtio-fs" => Share::Virtiofs,
            other => {
                return Err((share_value.span(), format!("unknown share `{other}`"), Some("9p or virtiofs".into())));
            }
        };
        let mut c = MicrovmConfig::new(share);
        if let Some(a) = &s.accel {
            c.accel = match a.get_ref().as_str() {
                "auto" => Accel::Auto,
                "kvm" => Accel::Kvm,
                "tcg" => Accel::Tcg,
                other => {
                    return Err((a.span(), format!("unknown accel `{other}`"), Some("auto, kvm or tcg".into())));
                }
            };
        }
        c.vcpus = s.vcpus.unwrap_or(c.vcpus);
        c.memory = s.memory.unwrap_or(c.memory);
        c.kernel = s.kernel;
        c.msize = s.msize.unwrap_or(c.msize);
        c.cache = s.cache.unwrap_or(c.cache);
        c.security_model = s.security_model.unwrap_or(c.security_model);
        c.virtiofsd_threads = s.virtiofsd_threads;
        c.virtiofsd_args = s.virtiofsd_args.unwrap_or_default();
        c.validate().map_err(|e| section.error(e, None))?;
        Ok(Arc::new(c))
    }

    fn rebuild(&self, settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
        let c: MicrovmConfig = serde_json::from_value(settings.clone())
            .map_err(|e| RuntimeError::Setup(format!("microvm settings: {e}")))?;
        c.validate().map_err(RuntimeError::Setup)?;
        Ok(Arc::new(c))
    }

    fn known(&self) -> Vec<Arc<dyn Spec>> {
        vec![Arc::new(MicrovmConfig::new(Share::NineP)), Arc::new(MicrovmConfig::new(Share::Virtiofs))]
    }
}

/// How the target is shared into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Share {
    #[serde(rename = "9p")]
    NineP,
    #[serde(rename = "virtiofs")]
    Virtiofs,
}

/// The accelerator: KVM, TCG, or decided by a probe boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// Settings of a microvm scenario; every one is recorded with its results.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MicrovmConfig {
    pub share: Share,
    pub vcpus: u32,
    pub memory: Bytes,
    pub accel: Accel,
    /// Guest kernel image (default: the newest /boot/vmlinuz-* with modules).
    pub kernel: Option<PathBuf>,
    /// 9p: maximum message size.
    pub msize: Bytes,
    /// 9p: `none`, `loose`, `fscache`, `mmap`; virtio-fs (virtiofsd): `auto`, `never`, `always`.
    pub cache: String,
    /// 9p: QEMU's security model (`none`, `mapped-xattr`, `passthrough`).
    pub security_model: String,
    /// virtio-fs: virtiofsd's thread pool size.
    pub virtiofsd_threads: Option<u32>,
    /// virtio-fs: extra virtiofsd arguments (e.g. `--allow-direct-io` for `direct = true`).
    #[serde(default)]
    pub virtiofsd_args: Vec<String>,
}

impl MicrovmConfig {
    pub fn new(share: Share) -> Self {
        Self {
            share,
            vcpus: 1,
            memory: Bytes(512 << 20),
            accel: Accel::Auto,
            kernel: None,
            msize: Bytes(512 << 10),
            cache: match share {
                Share::NineP => "none".into(),
                Share::Virtiofs => "auto".into(),
            },
            security_model: "none".into(),
            virtiofsd_threads: None,
            virtiofsd_args: Vec::new(),
        }
    }

    /// Checks values QEMU or the guest would reject.
    pub fn validate(&self) -> Result<(), String> {
        let caches: &[&str] = match self.share {
            Share::NineP => &["none", "loose", "fscache", "mmap"],
            Share::Virtiofs => &["auto", "never", "always", "metadata"],
        };
        if !caches.contains(&self.cache.as_str()) {
            return Err(format!(
                "cache `{}` is not a {} cache mode: {}",
                self.cache,
                self.share_name(),
                caches.join(", ")
            ));
        }
        if !["none", "mapped-xattr", "mapped-file", "passthrough"].contains(&self.security_model.as_str()) {
            return Err(format!(
                "security_model `{}`: none, mapped-xattr, mapped-file or passthrough",
                self.security_model
            ));
        }
        if self.share == Share::NineP && (self.virtiofsd_threads.is_some() || !self.virtiofsd_args.is_empty()) {
            return Err("virtiofsd_threads and virtiofsd_args are for share = \"virtiofs\"".into());
        }
        if self.vcpus == 0 || self.vcpus > 64 {
            return Err(format!("vcpus {} is out of range 1..=64", self.vcpus));
        }
        if self.memory.get() < 128 << 20 {
            return Err(format!("memory {} is too small for a guest: at least 128M", self.memory));
        }
        Ok(())
    }

    pub fn share_name(&self) -> &'static str {
        match self.share {
            Share::NineP => "9p",
            Share::Virtiofs => "virtiofs",
        }
    }

    fn modules(&self) -> &'static [&'static str] {
        match self.share {
            Share::NineP => &["virtio_mmio", "9pnet_virtio", "9p"],
            Share::Virtiofs => &["virtio_mmio", "virtiofs"],
        }
    }

    /// Guest mount type and options.
    fn mount(&self) -> (&'static str, String) {
        match self.share {
            Share::NineP => {
                ("9p", format!("trans=virtio,version=9p2000.L,msize={},cache={}", self.msize.get(), self.cache))
            }
            Share::Virtiofs => ("virtiofs", String::new()),
        }
    }
}

const QEMU: &str = "qemu-system-x86_64";

impl Spec for MicrovmConfig {
    fn kind(&self) -> &'static dyn Kind {
        &KIND
    }

    fn name(&self) -> String {
        format!("microvm/{}", self.share_name())
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serializes")
    }

    fn probe(&self) -> Probe {
        probe(self)
    }

    fn startup_estimate(&self) -> Duration {
        // A guest boots in ~4–7 s under TCG, well under 1 s with KVM.
        Duration::from_secs(7)
    }

    fn client_cost(&self, _w: &Workload) -> ClientCost {
        // QEMU's threads and the guest's memory (the worker lives inside it), plus
        // virtiofsd's threads for a virtio-fs share.
        let qemu = ClientCost { tasks: 6 + u64::from(self.vcpus), memory_bytes: self.memory.get() + (64 << 20) };
        match self.share {
            Share::Virtiofs => qemu.plus(8 + u64::from(self.virtiofsd_threads.unwrap_or(0)), 16 << 20),
            Share::NineP => qemu,
        }
    }

    fn prepare(&self, ctx: &ScenarioContext) -> Result<Box<dyn Backend>, RuntimeError> {
        Ok(Box::new(Microvm::prepare(self, ctx)?))
    }
}

/// Availability: QEMU, a kernel with modules, the share's modules, virtiofsd, worker.
pub fn probe(cfg: &MicrovmConfig) -> Probe {
    let mut p = Probe::of(cfg);
    if let Err(e) = cfg.validate() {
        p.problem = Some(e);
        return p;
    }
    let Some(qemu) = which(QEMU) else {
        p.problem = Some(format!("{QEMU} not found: apt-get install qemu-system-x86"));
        return p;
    };
    p.version = Cmd::new(&qemu).arg("--version").first_line();
    let k = match kernel::find(cfg.kernel.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            p.problem = Some(e);
            return p;
        }
    };
    p.notes.push(format!("guest kernel {} ({})", k.version, k.image.display()));
    if let Err(e) = kernel::modules_for(&k, cfg.modules()) {
        p.problem = Some(format!("{e}: the guest kernel lacks what a {} share needs", cfg.share_name()));
        return p;
    }
    if cfg.share == Share::Virtiofs {
        match virtiofsd::find() {
            Ok(v) => p.notes.push(format!("virtiofsd: {}", v.describe())),
            Err(e) => {
                p.problem = Some(e);
                return p;
            }
        }
        if !rustix::process::geteuid().is_root() {
            p.problem = Some("virtio-fs needs root here (virtiofsd): run as root".into());
            return p;
        }
    }
    p.notes.push(match cfg.accel {
        Accel::Auto if Path::new("/dev/kvm").exists() => {
            "accel = auto: KVM if a probe guest boots in time, else TCG".into()
        }
        Accel::Auto => "accel = auto: TCG (no /dev/kvm)".into(),
        Accel::Kvm => "accel = kvm".into(),
        Accel::Tcg => "accel = tcg".into(),
    });
    if let Err(e) = binary::worker_binary() {
        p.problem = Some(e);
        return p;
    }
    p.usable = true;
    p
}

/// The host's TSC rate in kHz, measured once against CLOCK_MONOTONIC_RAW (a guest under
/// TCG reads the host's TSC); 2 GHz where there is no TSC to read.
pub fn host_tsc_khz() -> u64 {
    static KHZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *KHZ.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let raw = || {
                let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicRaw);
                t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
            };
            // SAFETY: RDTSC has no preconditions on x86_64; it only reads a counter.
            let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
            let (t0, c0) = (raw(), tsc());
            std::thread::sleep(Duration::from_millis(50));
            let (t1, c1) = (raw(), tsc());
            let khz = (c1 - c0) as u128 * 1_000_000 / u128::from((t1 - t0).max(1));
            if khz > 100_000 {
                return khz as u64;
            }
        }
        2_000_000
    })
}

/// A prepared micro-VM runtime.
#[derive(Debug)]
pub struct Microvm {
    pub cfg: MicrovmConfig,
    pub qemu: PathBuf,
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    pub accel: Accel,
    pub virtiofsd: Option<virtiofsd::Virtiofsd>,
    pub dir: PathBuf,
    pub target: PathBuf,
    pub notes: Vec<String>,
}

/// KVM probe results per run (the probe costs a boot; do it once).
static KVM_PROBE: Mutex<Option<(bool, String)>> = Mutex::new(None);

impl Microvm {
    pub fn prepare(cfg: &MicrovmConfig, ctx: &ScenarioContext) -> Result<Microvm, RuntimeError> {
        let probe = probe(cfg);
        if let Some(problem) = probe.problem {
            return Err(RuntimeError::Unavailable(problem));
        }
        let target = &ctx.run.target;
        if target.to_string_lossy().contains(',') {
            return Err(RuntimeError::Setup(format!(
                "the target {} contains a comma, which QEMU options cannot carry: choose another target",
                target.display()
            )));
        }
        let qemu = which(QEMU).ok_or_else(|| RuntimeError::Unavailable(format!("{QEMU} not found")))?;
        let k = kernel::find(cfg.kernel.as_deref()).map_err(RuntimeError::Unavailable)?;
        let dir = ctx.dir.clone();
        std::fs::create_dir_all(&dir).map_err(RuntimeError::io(format!("create {}", dir.display())))?;
        let vmlinux = ctx.run.state_dir.join(format!("vmlinux-{}", k.version));
        if !vmlinux.exists() {
            kernel::extract_elf(&k.image, &vmlinux).map_err(RuntimeError::Setup)?;
        }
        let modules = kernel::modules_for(&k, cfg.modules()).map_err(RuntimeError::Setup)?;
        let worker = binary::worker_binary().map_err(RuntimeError::Unavailable)?;
        let initramfs = dir.join("initramfs.cpio");
        initramfs::build(&initramfs, &worker, &modules, &ctx.run.extra_files()?).map_err(RuntimeError::Setup)?;
        let mut vm = Microvm {
            cfg: cfg.clone(),
            qemu,
            vmlinux,
            initramfs,
            accel: Accel::Tcg,
            virtiofsd: match cfg.share {
                Share::Virtiofs => Some(virtiofsd::find().map_err(RuntimeError::Unavailable)?),
                Share::NineP => None,
            },
            dir,
            target: target.clone(),
            notes: Vec::new(),
        };
        vm.accel = match cfg.accel {
            Accel::Kvm => Accel::Kvm,
            Accel::Tcg => Accel::Tcg,
            Accel::Auto if !Path::new("/dev/kvm").exists() => Accel::Tcg,
            Accel::Auto => {
                let mut cached = KVM_PROBE.lock().unwrap_or_else(|e| e.into_inner());
                let (works, why) = cached.get_or_insert_with(|| vm.probe_kvm(Duration::from_secs(20))).clone();
                vm.notes.push(format!("KVM probe: {why}"));
                if works { Accel::Kvm } else { Accel::Tcg }
            }
        };
        vm.notes.push(match vm.accel {
            Accel::Kvm => "guest clock: kvm-clock (KVM)".to_string(),
            _ => format!(
                "guest clock: tsc at the host's {:.3} MHz, booted with tsc=reliable (under TCG the clocksource watchdog would fall back to jiffies), wall clock set by the controller's",
                host_tsc_khz() as f64 / 1e3
            ),
        });
        Ok(vm)
    }

    /// Boots a guest that only prints a marker, under KVM, within `deadline`.
    fn probe_kvm(&self, deadline: Duration) -> (bool, String) {
        let log = self.dir.join("kvm-probe.log");
        let Ok(file) = crate::safety::create_file(&log) else { return (false, "cannot create its log".into()) };
        let mut cmd = self.base_cmd(Accel::Kvm, "iostudy.probe=1").command();
        let Ok(mut child) = cmd.stdout(file.try_clone().expect("clone fd")).stderr(file).spawn() else {
            return (false, "qemu did not start".into());
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                return if out.contains("iostudy-probe-ok") {
                    (true, format!("a guest booted in {:.1} s", started.elapsed().as_secs_f64()))
                } else {
                    (false, format!("the probe guest failed: {}", out.lines().last().unwrap_or("no output")))
                };
            }
            if started.elapsed() > deadline {
                kill_group(&mut child);
                return (false, format!("the probe guest hung for {} s (nested KVM?), using TCG", deadline.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn base_cmd(&self, accel: Accel, params: &str) -> Cmd {
        let kvm = accel == Accel::Kvm;
        let mem_mib = self.cfg.memory.get() >> 20;
        let mut machine = "microvm,pit=on,pic=on,rtc=on".to_string();
        if self.cfg.share == Share::Virtiofs {
            machine.push_str(",memory-backend=mem");
        }
        let mut append = "console=ttyS0 quiet pci=off reboot=t panic=-1".to_string();
        if !kvm {
            // Under TCG the kernel hangs calibrating the TSC without the first; without
            // the second its clocksource watchdog, starved of CPU, declares the TSC
            // unstable and falls back to refined-jiffies (4 ms steps). The guest reads
            // the host's TSC, so its rate must be the host's: any other makes every
            // guest duration wrong by the ratio.
            append.push_str(&format!(" tsc_early_khz={} tsc=reliable", host_tsc_khz()));
        }
        append.push(' ');
        append.push_str(params);
        let mut cmd = Cmd::new(&self.qemu)
            .args(["-M", &machine, "-accel", if kvm { "kvm" } else { "tcg" }, "-cpu", if kvm { "host" } else { "max" }])
            .args(["-smp".to_string(), self.cfg.vcpus.to_string(), "-m".to_string(), format!("{mem_mib}M")])
            .args(["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"])
            .arg("-kernel")
            .arg(&self.vmlinux)
            .arg("-initrd")
            .arg(&self.initramfs)
            .arg("-append")
            .arg(append);
        if self.cfg.share == Share::Virtiofs {
            cmd = cmd.args(["-object".to_string(), format!("memory-backend-memfd,id=mem,size={mem_mib}M,share=on")]);
        }
        cmd
    }

    /// QEMU's command line for one client.
    pub fn qemu_cmd(&self, job_in_guest: &Path, socket: Option<&Path>) -> Cmd {
        let (fstype, opts) = self.cfg.mount();
        let mut params = format!(
            "iostudy.fstype={fstype} iostudy.tag=data iostudy.mount={TARGET_MOUNT} iostudy.job={}",
            job_in_guest.display()
        );
        if !opts.is_empty() {
            params.push_str(&format!(" iostudy.opts={opts}"));
        }
        let cmd = self.base_cmd(self.accel, &params);
        match (self.cfg.share, socket) {
            (Share::Virtiofs, Some(sock)) => cmd.args([
                "-chardev".to_string(),
                format!("socket,id=vfs,path={}", sock.display()),
                "-device".to_string(),
                "vhost-user-fs-device,queue-size=1024,chardev=vfs,tag=data".to_string(),
            ]),
            _ => cmd.args([
                "-fsdev".to_string(),
                format!("local,id=fs0,path={},security_model={}", self.target.display(), self.cfg.security_model),
                "-device".to_string(),
                "virtio-9p-device,fsdev=fs0,mount_tag=data".to_string(),
            ]),
        }
    }

    /// virtiofsd's command line for one client.
    pub fn virtiofsd_cmd(&self, bin: &Path, socket: &Path) -> Cmd {
        let mut cmd = Cmd::new(bin)
            .arg(format!("--socket-path={}", socket.display()))
            .arg(format!("--shared-dir={}", self.target.display()))
            .arg(format!("--cache={}", self.cfg.cache));
        if let Some(n) = self.cfg.virtiofsd_threads {
            cmd = cmd.arg(format!("--thread-pool-size={n}"));
        }
        cmd.args(&self.cfg.virtiofsd_args)
    }

    fn launch_client(&self, l: &Launch) -> Result<ChildClient, RuntimeError> {
        let mut helper = None;
        let socket = match (&self.virtiofsd, self.cfg.share) {
            (Some(v), Share::Virtiofs) => {
                let sock = self.dir.join(format!("{}.sock", l.id));
                let _ = std::fs::remove_file(&sock);
                let log = l.log_dir.join(format!("client-{}.virtiofsd.log", l.client));
                let mut h = Helper::spawn("virtiofsd", &self.virtiofsd_cmd(&v.path, &sock), &log, l)?;
                h.wait_for(&sock, Duration::from_secs(10))?;
                helper = Some(h);
                Some(sock)
            }
            _ => None,
        };
        let mut cmd = self.qemu_cmd(&l.job, socket.as_deref());
        if l.cell.attribute && self.cfg.share == Share::NineP {
            // QEMU opens its log itself, following links: it gets a file of ours.
            let trace = qemu_trace(&l.log_dir, l.client);
            crate::safety::create_file(&trace)?;
            cmd = cmd.args(crate::attribution::vmm::qemu_args(&trace));
        } else if l.cell.attribute {
            cmd = cmd.args(crate::attribution::vmm::THREAD_NAMES);
        }
        let mut teardown = Vec::new();
        if let Some(sock) = &socket {
            teardown.push(Cmd::new("rm").arg("-f").arg(sock));
        }
        let client = ChildClient::spawn(l, &cmd, Vec::new(), teardown)?;
        Ok(match helper {
            Some(h) => client.with_helper(h),
            None => client,
        })
    }
}

/// Where QEMU logs client `client`'s 9p requests when attribution is on.
fn qemu_trace(log_dir: &Path, client: u32) -> PathBuf {
    log_dir.join(format!("client-{client}.qemu-trace.log"))
}

impl Backend for Microvm {
    fn client_path(&self, target: &Path, host_path: &Path) -> PathBuf {
        Path::new(TARGET_MOUNT).join(host_path.strip_prefix(target).unwrap_or(host_path))
    }

    fn drops_guest_caches(&self) -> bool {
        true
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn accelerator(&self) -> Option<String> {
        Some(if self.accel == Accel::Kvm { "kvm" } else { "tcg" }.to_string())
    }

    fn timing(&self, clients: u32) -> Timing {
        // Guests poll over their share, and under TCG a guest's clock reading is slow.
        let t = Timing::local(clients);
        Timing { lead: t.lead * 2, ..t }
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        Ok(Box::new(self.launch_client(l)?))
    }

    fn vmm_trace(&self, log_dir: &Path, client: u32) -> Option<PathBuf> {
        (self.cfg.share == Share::NineP).then(|| qemu_trace(log_dir, client))
    }

    fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(share: Share) -> Microvm {
        Microvm {
            cfg: MicrovmConfig::new(share),
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            vmlinux: "/run/x/vmlinux".into(),
            initramfs: "/run/x/initramfs.cpio".into(),
            accel: Accel::Tcg,
            virtiofsd: None,
            dir: "/run/x".into(),
            target: "/srv/t".into(),
            notes: vec![],
        }
    }

    #[test]
    fn qemu_command_for_9p() {
        let argv = vm(Share::NineP).qemu_cmd(Path::new("/data/c/job-0.json"), None).argv();
        let joined = argv.join(" ");
        assert!(joined.starts_with("/usr/bin/qemu-system-x86_64 -M microvm,pit=on,pic=on,rtc=on -accel tcg -cpu max -smp 1 -m 512M -nodefaults -no-user-config -display none -serial stdio -no-reboot -kernel /run/x/vmlinux -initrd /run/x/initramfs.cpio -append"), "{joined}");
        let append = &argv[argv.iter().position(|a| a == "-append").unwrap() + 1];
        assert_eq!(
            append,
            &format!(
                "console=ttyS0 quiet pci=off reboot=t panic=-1 tsc_early_khz={} tsc=reliable iostudy.fstype=9p iostudy.tag=data iostudy.mount=/data iostudy.job=/data/c/job-0.json iostudy.opts=trans=virtio,version=9p2000.L,msize=524288,cache=none",
                host_tsc_khz()
            )
        );
        assert!(joined.ends_with(
            "-fsdev local,id=fs0,path=/srv/t,security_model=none -device virtio-9p-device,fsdev=fs0,mount_tag=data"
        ));
    }

    #[test]
    fn qemu_and_virtiofsd_commands_for_virtiofs() {
        let mut v = vm(Share::Virtiofs);
        v.accel = Accel::Kvm;
        v.cfg.virtiofsd_threads = Some(4);
        v.cfg.virtiofsd_args = vec!["--allow-direct-io".into()];
        let argv = v.qemu_cmd(Path::new("/data/j.json"), Some(Path::new("/run/x/c0.sock"))).argv();
        let joined = argv.join(" ");
        assert!(joined.contains("-M microvm,pit=on,pic=on,rtc=on,memory-backend=mem -accel kvm -cpu host"), "{joined}");
        assert!(!joined.contains("tsc_early_khz"), "KVM keeps the real TSC");
        assert!(joined.contains("-object memory-backend-memfd,id=mem,size=512M,share=on"));
        assert!(joined.ends_with("-chardev socket,id=vfs,path=/run/x/c0.sock -device vhost-user-fs-device,queue-size=1024,chardev=vfs,tag=data"));
        assert!(
            joined.contains("iostudy.fstype=virtiofs iostudy.tag=data iostudy.mount=/data iostudy.job=/data/j.json")
        );
        assert_eq!(
            v.virtiofsd_cmd(Path::new("/usr/bin/virtiofsd"), Path::new("/run/x/c0.sock")).argv(),
            [
                "/usr/bin/virtiofsd",
                "--socket-path=/run/x/c0.sock",
                "--shared-dir=/srv/t",
                "--cache=auto",
                "--thread-pool-size=4",
                "--allow-direct-io"
            ]
        );
    }

    #[test]
    fn config_validation() {
        let mut c = MicrovmConfig::new(Share::NineP);
        assert!(c.validate().is_ok());
        c.cache = "auto".into();
        assert_eq!(c.validate().unwrap_err(), "cache `auto` is not a 9p cache mode: none, loose, fscache, mmap");
        let mut c = MicrovmConfig::new(Share::Virtiofs);
        c.memory = Bytes(64 << 20);
        assert!(c.validate().unwrap_err().contains("too small"));
    }
}
