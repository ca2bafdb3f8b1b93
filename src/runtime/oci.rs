//! The `oci` runtime: clients in containers from a generated OCI bundle.
//!
//! The rootfs holds nothing but the static `iostudy` binary (and empty mount points):
//! no image, no registry, no shell. The study target is bind-mounted at `/data`; the
//! control directory lives under the target, so the barrier and the results cross the
//! same mount as the I/O does. Any OCI CLI works (`runc`, `crun`, `runsc`, `youki`,
//! `kata-runtime` 1.x, or a path); each gets a private `--root` under the run's state
//! dir, so cleanup is `delete --force` per container plus removing one directory.
//!
//! Host quirks are detected, not assumed: crun refuses cgroup v1/v2 *hybrid* hosts, so
//! there it runs in a private mount namespace with the cgroup2 mount hidden; runsc
//! needs `--network=none` on hosts where it may not touch the root network namespace.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec as OciConfig, UserBuilder,
};
use serde::{Deserialize, Serialize};

use crate::command::{Cmd, which};
use crate::runtime::binary::worker_binary;
use crate::runtime::child::ChildClient;
use crate::runtime::{
    Backend, Client, ClientCost, Kind, Launch, Probe, RuntimeError, ScenarioContext, Section, SpannedError, Spec,
    TARGET_MOUNT,
};
use crate::workload::Workload;

/// OCI CLIs probed by `iostudy runtimes`.
pub const KNOWN: &[&str] = &["runc", "crun", "runsc", "youki", "kata-runtime"];

pub static KIND: OciKind = OciKind;

pub struct OciKind;

/// The keys of an `oci` scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `runc`, `crun`, `runsc`, `youki`, `kata-runtime`, or a path.
    oci_runtime: Option<String>,
    /// Extra global arguments, e.g. `["--platform=ptrace"]` for runsc.
    #[serde(default)]
    runtime_args: Vec<String>,
}

impl Kind for OciKind {
    fn name(&self) -> &'static str {
        "oci"
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError> {
        let s: Settings = section.deserialize()?;
        let runtime = s.oci_runtime.ok_or_else(|| {
            section.error(
                "uses runtime `oci` but names no oci_runtime",
                Some("add oci_runtime = \"runc\" (or crun, runsc, youki, kata-runtime, or a path)".into()),
            )
        })?;
        Ok(Arc::new(OciSpec { runtime, args: s.runtime_args }))
    }

    fn rebuild(&self, settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
        let spec: OciSpec =
            serde_json::from_value(settings.clone()).map_err(|e| RuntimeError::Setup(format!("oci settings: {e}")))?;
        Ok(Arc::new(spec))
    }

    fn builtins(&self) -> Vec<(&'static str, Arc<dyn Spec>)> {
        let spec = |r: &str| -> Arc<dyn Spec> { Arc::new(OciSpec { runtime: r.into(), args: Vec::new() }) };
        vec![
            ("runc", spec("runc")),
            ("crun", spec("crun")),
            ("runsc", spec("runsc")),
            ("gvisor", spec("runsc")),
            ("youki", spec("youki")),
        ]
    }

    fn known(&self) -> Vec<Arc<dyn Spec>> {
        KNOWN.iter().map(|r| Arc::new(OciSpec { runtime: r.to_string(), args: Vec::new() }) as Arc<dyn Spec>).collect()
    }

    /// runc, crun and gVisor: the containers the seed compared, and their lighter and
    /// sandboxed neighbours.
    fn demo_scenarios(&self) -> Vec<crate::runtime::DemoScenario> {
        ["runc", "crun", "gvisor"].into_iter().filter_map(|n| crate::runtime::DemoScenario::builtin(self, n)).collect()
    }

    fn reap(&self, run_state: &Path) {
        for e in fs::read_dir(run_state).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("oci-") {
                delete_all(&e.path());
            }
        }
    }
}

/// Containers run by an OCI CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciSpec {
    /// The CLI's name on PATH, or its path.
    #[serde(rename = "oci_runtime")]
    pub runtime: String,
    #[serde(rename = "runtime_args")]
    pub args: Vec<String>,
}

impl Spec for OciSpec {
    fn kind(&self) -> &'static dyn Kind {
        &KIND
    }

    fn own_cgroups(&self) -> bool {
        true
    }

    fn name(&self) -> String {
        format!("oci/{}", self.runtime)
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serializes")
    }

    fn probe(&self) -> Probe {
        probe(&self.runtime, &self.args)
    }

    fn startup_estimate(&self) -> Duration {
        Duration::from_millis(if Flavor::of(&self.runtime) == Flavor::Runsc { 1500 } else { 500 })
    }

    fn client_cost(&self, w: &Workload) -> ClientCost {
        // runc/crun wait in the foreground; gVisor adds its sentry and gofer.
        match Flavor::of(&self.runtime) {
            Flavor::Runsc => ClientCost::worker(w).plus(40, 160 << 20),
            _ => ClientCost::worker(w).plus(10, 16 << 20),
        }
    }

    fn prepare(&self, ctx: &ScenarioContext) -> Result<Box<dyn Backend>, RuntimeError> {
        Ok(Box::new(Oci::prepare(&self.runtime, &self.args, ctx)?))
    }
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Which CLI dialect, for the few places they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Runc,
    Crun,
    Runsc,
    Other,
}

impl Flavor {
    pub fn of(name: &str) -> Flavor {
        let base = Path::new(name).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match base.as_str() {
            "runc" => Flavor::Runc,
            "crun" => Flavor::Crun,
            "runsc" => Flavor::Runsc,
            _ => Flavor::Other,
        }
    }
}

/// The package (or other source) that provides an OCI CLI.
pub fn install_hint(name: &str) -> String {
    match name {
        "runc" | "crun" | "runsc" => format!("apt-get install {name}"),
        "youki" => "youki is not packaged for Debian: install a release and give oci_runtime its path".into(),
        "kata-runtime" => {
            "Kata Containers 1.x is not packaged for Debian: install it and give oci_runtime its path".into()
        }
        other => format!("install {other} or give oci_runtime its full path"),
    }
}

/// True on hosts with cgroup v1 controllers and a cgroup2 mount beside them.
pub fn cgroup_hybrid() -> bool {
    let fs_type = |p: &str| rustix::fs::statfs(p).map(|s| s.f_type).ok();
    fs_type("/sys/fs/cgroup").is_some_and(|t| t != CGROUP2_SUPER_MAGIC)
        && fs_type("/sys/fs/cgroup/unified") == Some(CGROUP2_SUPER_MAGIC)
}

/// What runs an OCI runtime on a cgroup v1/v2 hybrid host, under `unshare -m sh -c`:
/// the cgroup2 mount hidden in a private mount namespace, then the runtime (`$0`).
pub const HIDE_CGROUP2: &str = "umount /sys/fs/cgroup/unified && exec \"$0\" \"$@\"";

/// Writes an executable wrapper at `path` that runs `bin` with `flags` before the
/// caller's arguments, hiding the cgroup2 mount first when `hybrid` — for callers that
/// take only a binary's path (containerd's shim, Podman).
pub fn write_wrapper(path: &Path, bin: &Path, flags: &[String], hybrid: bool) -> Result<(), RuntimeError> {
    let quoted: Vec<String> = std::iter::once(bin.display().to_string())
        .chain(flags.iter().cloned())
        .map(|a| crate::command::quote(&a))
        .collect();
    let exec = if hybrid { format!("exec unshare -m sh -c '{HIDE_CGROUP2}'") } else { "exec".into() };
    let script = format!("#!/bin/sh\n{exec} {} \"$@\"\n", quoted.join(" "));
    crate::safety::write_atomic(path, script.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(RuntimeError::io(format!("make {} executable", path.display())))
}

/// Availability of an OCI CLI here.
pub fn probe(runtime: &str, args: &[String]) -> Probe {
    let mut p = Probe::of(&OciSpec { runtime: runtime.to_string(), args: args.to_vec() });
    let Some(bin) = which(runtime) else {
        p.problem = Some(format!("{runtime} not found: {}", install_hint(runtime)));
        return p;
    };
    let flavor = Flavor::of(runtime);
    p.version = Cmd::new(&bin).arg("--version").first_line();
    if flavor == Flavor::Crun && cgroup_hybrid() {
        p.notes.push(
            "cgroup v1/v2 hybrid host: crun runs in a private mount namespace with /sys/fs/cgroup/unified hidden"
                .into(),
        );
    }
    if flavor == Flavor::Runsc {
        let platform = args.iter().find_map(|a| a.strip_prefix("--platform=")).unwrap_or("default (ptrace)");
        p.notes.push(format!("gVisor platform: {platform}; network: none"));
    }
    if !rustix::process::geteuid().is_root() {
        p.problem =
            Some(format!("{runtime} needs root here (iostudy does not set up rootless containers): run as root"));
        return p;
    }
    if let Err(e) = worker_binary() {
        p.problem = Some(e);
        return p;
    }
    p.usable = true;
    p
}

/// A prepared OCI runtime for one run.
#[derive(Debug)]
pub struct Oci {
    pub name: String,
    pub bin: PathBuf,
    pub flavor: Flavor,
    pub args: Vec<String>,
    pub hybrid_workaround: bool,
    pub state_root: PathBuf,
    pub rootfs: PathBuf,
    pub bundles: PathBuf,
    pub target: PathBuf,
    /// Host files bind-mounted read-only at their own paths (fio and its libraries).
    pub extra: Vec<PathBuf>,
}

impl Oci {
    pub fn prepare(runtime: &str, args: &[String], ctx: &ScenarioContext) -> Result<Oci, RuntimeError> {
        let probe = probe(runtime, args);
        if let Some(problem) = probe.problem {
            return Err(RuntimeError::Unavailable(problem));
        }
        let bin = which(runtime).ok_or_else(|| RuntimeError::Unavailable(format!("{runtime} not found")))?;
        let worker = worker_binary().map_err(RuntimeError::Unavailable)?;
        let base = ctx.dir.clone();
        let oci = Oci {
            name: runtime.to_string(),
            flavor: Flavor::of(runtime),
            bin,
            args: args.to_vec(),
            hybrid_workaround: Flavor::of(runtime) == Flavor::Crun && cgroup_hybrid(),
            state_root: base.join("state"),
            rootfs: base.join("rootfs"),
            bundles: base.join("bundles"),
            target: ctx.run.target.clone(),
            extra: ctx.run.extra_files()?,
        };
        for d in [&oci.state_root, &oci.bundles] {
            fs::create_dir_all(d).map_err(RuntimeError::io(format!("create {}", d.display())))?;
        }
        // How to reach these containers again, for the next run if this one is killed.
        let record = Record { bin: oci.bin.clone(), args: oci.args.clone(), hybrid_workaround: oci.hybrid_workaround };
        let path = base.join(RECORD);
        crate::safety::write_atomic(&path, &serde_json::to_vec(&record).expect("serializes"))?;
        for d in ["proc", "dev", "sys", "tmp", TARGET_MOUNT.trim_start_matches('/')] {
            let p = oci.rootfs.join(d);
            fs::create_dir_all(&p).map_err(RuntimeError::io(format!("create {}", p.display())))?;
        }
        fs::copy(&worker, oci.rootfs.join("iostudy"))
            .map_err(RuntimeError::io(format!("copy the worker {} into the rootfs", worker.display())))?;
        // Mount points for the extra files, in the rootfs this run owns (it is
        // read-only inside the container).
        for f in &oci.extra {
            let point = oci.rootfs.join(f.strip_prefix("/").unwrap_or(f));
            if let Some(dir) = point.parent() {
                fs::create_dir_all(dir).map_err(RuntimeError::io(format!("create {}", dir.display())))?;
            }
            fs::write(&point, b"").map_err(RuntimeError::io(format!("create {}", point.display())))?;
        }
        Ok(oci)
    }

    fn global_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["--root".into(), self.state_root.clone().into()];
        if self.flavor == Flavor::Runsc && !self.args.iter().any(|a| a.starts_with("--network")) {
            v.push("--network=none".into());
        }
        v.extend(self.args.iter().map(OsString::from));
        v
    }

    /// `BIN --root STATE [flags] SUBCOMMAND…`, wrapped for crun on hybrid hosts.
    fn cmd(&self, sub: &[OsString]) -> Cmd {
        if self.hybrid_workaround {
            Cmd::new("unshare")
                .args(["-m", "sh", "-c", HIDE_CGROUP2])
                .arg(&self.bin)
                .args(self.global_args())
                .args(sub.iter().cloned())
        } else {
            Cmd::new(&self.bin).args(self.global_args()).args(sub.iter().cloned())
        }
    }

    pub fn run_cmd(&self, bundle: &Path, id: &str) -> Cmd {
        self.cmd(&["run".into(), "--bundle".into(), bundle.into(), id.into()])
    }

    pub fn kill_cmd(&self, id: &str) -> Cmd {
        self.cmd(&["kill".into(), id.into(), "KILL".into()])
    }

    pub fn delete_cmd(&self, id: &str) -> Cmd {
        self.cmd(&["delete".into(), "--force".into(), id.into()])
    }

    /// The bundle's config: the worker as the only process, the target at /data, room
    /// for `open_files` open files.
    pub fn spec(&self, job_in_container: &Path, open_files: u64) -> Result<OciConfig, RuntimeError> {
        let err = |e: oci_spec::OciSpecError| RuntimeError::Setup(format!("cannot build the OCI config: {e}"));
        let mut spec = OciConfig::default();
        // The host's name, so each client's result says which host it ran on.
        spec.set_hostname(Some(rustix::system::uname().nodename().to_string_lossy().chars().take(63).collect()));
        spec.set_root(Some(RootBuilder::default().path(&self.rootfs).readonly(true).build().map_err(err)?));
        let process = ProcessBuilder::default()
            .args(vec![
                "/iostudy".to_string(),
                "worker".to_string(),
                "--job".to_string(),
                job_in_container.display().to_string(),
            ])
            .env(vec!["PATH=/".to_string()])
            .cwd("/")
            .terminal(false)
            .no_new_privileges(true)
            .user(UserBuilder::default().uid(0u32).gid(0u32).build().map_err(err)?)
            .build()
            .map_err(err)?;
        let mut process = process;
        if let Some(defaults) = OciConfig::default().process() {
            process.set_capabilities(defaults.capabilities().clone());
            let mut rlimits = defaults.rlimits().clone().unwrap_or_default();
            for r in &mut rlimits {
                if r.typ() == PosixRlimitType::RlimitNofile && r.hard() < open_files {
                    // Within the host's own hard limit: the container cannot have more.
                    let host_hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
                    let n = host_hard.map_or(open_files, |h| open_files.min(h));
                    *r = PosixRlimitBuilder::default()
                        .typ(PosixRlimitType::RlimitNofile)
                        .hard(n)
                        .soft(n)
                        .build()
                        .map_err(err)?;
                }
            }
            process.set_rlimits(Some(rlimits));
        }
        spec.set_process(Some(process));
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.push(
            MountBuilder::default()
                .destination(TARGET_MOUNT)
                .typ("bind")
                .source(&self.target)
                .options(vec!["rbind".to_string(), "rw".to_string()])
                .build()
                .map_err(err)?,
        );
        for f in &self.extra {
            mounts.push(
                MountBuilder::default()
                    .destination(f)
                    .typ("bind")
                    .source(f)
                    .options(vec!["bind".to_string(), "ro".to_string()])
                    .build()
                    .map_err(err)?,
            );
        }
        spec.set_mounts(Some(mounts));
        Ok(spec)
    }

    fn launch_client(&self, l: &Launch) -> Result<ChildClient, RuntimeError> {
        let bundle = self.bundles.join(&l.id);
        fs::create_dir_all(&bundle).map_err(RuntimeError::io(format!("create {}", bundle.display())))?;
        let mut spec = self.spec(&l.job, l.open_files)?;
        // The container inside the cell's cgroup, so its CPU is the cell's.
        if let (Some(path), Some(linux)) = (l.cgroup.as_ref().and_then(|c| c.container_path(&l.id)), spec.linux_mut()) {
            linux.set_cgroups_path(Some(path.into()));
        }
        spec.save(bundle.join("config.json"))
            .map_err(|e| RuntimeError::Setup(format!("cannot write {}/config.json: {e}", bundle.display())))?;
        let kill = vec![self.kill_cmd(&l.id)];
        let teardown = vec![self.delete_cmd(&l.id), Cmd::new("rm").arg("-rf").arg(&bundle)];
        ChildClient::spawn(l, &self.run_cmd(&bundle, &l.id), kill, teardown)
    }

    /// Lists the containers in this runtime's private root.
    pub fn list_cmd(&self) -> Cmd {
        self.cmd(&["list".into(), "--quiet".into()])
    }
}

impl Backend for Oci {
    fn client_path(&self, target: &Path, host_path: &Path) -> PathBuf {
        Path::new(TARGET_MOUNT).join(host_path.strip_prefix(target).unwrap_or(host_path))
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        Ok(Box::new(self.launch_client(l)?))
    }

    /// Removes the rootfs, bundles and the private state root.
    fn cleanup(&self) {
        if let Some(base) = self.rootfs.parent() {
            let _ = fs::remove_dir_all(base);
        }
    }
}

/// Written beside a run's OCI state: the exact binary and flags that created the
/// containers, so a later run can delete them whatever the runtime was called.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    bin: PathBuf,
    args: Vec<String>,
    hybrid_workaround: bool,
}

const RECORD: &str = "runtime.json";

/// Kills and deletes every container a run that died left in its OCI state directory
/// `base` (`oci-…` under the run's state dir), with the runtime recorded there.
fn delete_all(base: &Path) {
    let Ok(bytes) = fs::read(base.join(RECORD)) else { return };
    let Ok(record) = serde_json::from_slice::<Record>(&bytes) else { return };
    let name = record.bin.display().to_string();
    let oci = Oci {
        flavor: Flavor::of(&name),
        name,
        bin: record.bin,
        args: record.args,
        hybrid_workaround: record.hybrid_workaround,
        state_root: base.join("state"),
        rootfs: PathBuf::new(),
        bundles: PathBuf::new(),
        target: PathBuf::new(),
        extra: Vec::new(),
    };
    let Ok(out) = oci.list_cmd().output() else { return };
    for id in String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
        let _ = oci.kill_cmd(id).output();
        let _ = oci.delete_cmd(id).output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(name: &str, hybrid: bool, args: &[&str]) -> Oci {
        Oci {
            name: name.into(),
            bin: PathBuf::from(format!("/usr/bin/{name}")),
            flavor: Flavor::of(name),
            args: args.iter().map(|s| s.to_string()).collect(),
            hybrid_workaround: hybrid,
            state_root: "/run/x/state".into(),
            rootfs: "/run/x/rootfs".into(),
            bundles: "/run/x/bundles".into(),
            target: "/srv/target".into(),
            extra: Vec::new(),
        }
    }

    #[test]
    fn command_lines() {
        let b = Path::new("/run/x/bundles/c0");
        assert_eq!(
            oci("runc", false, &[]).run_cmd(b, "c0").argv(),
            ["/usr/bin/runc", "--root", "/run/x/state", "run", "--bundle", "/run/x/bundles/c0", "c0"]
        );
        assert_eq!(
            oci("runsc", false, &["--platform=ptrace"]).run_cmd(b, "c0").argv(),
            [
                "/usr/bin/runsc",
                "--root",
                "/run/x/state",
                "--network=none",
                "--platform=ptrace",
                "run",
                "--bundle",
                "/run/x/bundles/c0",
                "c0"
            ]
        );
        assert_eq!(
            oci("crun", true, &[]).delete_cmd("c0").argv(),
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                "umount /sys/fs/cgroup/unified && exec \"$0\" \"$@\"",
                "/usr/bin/crun",
                "--root",
                "/run/x/state",
                "delete",
                "--force",
                "c0"
            ]
        );
        assert_eq!(
            oci("crun", false, &[]).kill_cmd("c0").argv(),
            ["/usr/bin/crun", "--root", "/run/x/state", "kill", "c0", "KILL"]
        );
    }

    #[test]
    fn spec_runs_only_the_worker_with_the_target_mounted() {
        let spec = oci("runc", false, &[]).spec(Path::new("/data/ctl/job-0.json"), 100).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/iostudy", "worker", "--job", "/data/ctl/job-0.json"]);
        assert!(!p.terminal().unwrap());
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("/run/x/rootfs"));
        assert_eq!(root.readonly(), Some(true));
        let data = spec.mounts().as_ref().unwrap().iter().find(|m| m.destination() == Path::new("/data")).unwrap();
        assert_eq!(data.source().as_deref(), Some(Path::new("/srv/target")));
        assert_eq!(data.options().as_ref().unwrap(), &["rbind", "rw"]);
        let rl = p.rlimits().as_ref().unwrap();
        assert!(rl.iter().all(|r| r.hard() <= 20_000), "within this host's hard nofile limit");
    }

    #[test]
    fn missing_runtime_names_the_package() {
        let p = probe("/nonexistent/runsc", &[]);
        assert!(!p.usable);
        assert!(p.problem.unwrap().contains("not found"));
        assert_eq!(install_hint("runsc"), "apt-get install runsc");
    }
}
