//! Helpers shared by the integration tests: running the binary, scratch directories on
//! tmpfs, and the rule for tests that need root or a runtime — reported as *ignored*
//! with the reason where they cannot run, failed under `IOSTUDY_REQUIRE_RUNTIMES=1`
//! (CI).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use iostudy::results::ClientResult;
use iostudy::results::cell::CellResult;
use iostudy::results::store::Store;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_iostudy"))
}

/// Runs iostudy with `args`.
pub fn iostudy(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("iostudy runs")
}

/// Runs iostudy with `args` under a seccomp filter that answers EPERM to `syscall`, as
/// a container runtime's default profile answers io_uring_setup.
pub fn iostudy_refusing(syscall: libc::c_long, args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(bin());
    cmd.args(args);
    // SAFETY: only async-signal-safe calls (prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let filter = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
            let prog = [
                // Load the syscall number; EPERM for `syscall`, allow everything else.
                filter(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
                filter(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, syscall as u32),
                filter(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
                filter(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
            ];
            let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const _) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("iostudy runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a successful `bench --json` and parses its result.
pub fn bench_json(args: &[&str]) -> ClientResult {
    let mut all = vec!["bench", "--json"];
    all.extend_from_slice(args);
    let o = iostudy(&all);
    assert!(o.status.success(), "iostudy {all:?} failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("bench --json prints a result document")
}

/// A scratch directory on tmpfs (the main disk's page cache is dropped from outside).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("iostudy-test.").tempdir_in("/dev/shm").expect("a scratch dir on /dev/shm")
}

pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Whether runtime/root tests are mandatory (CI).
pub fn required() -> bool {
    std::env::var("IOSTUDY_REQUIRE_RUNTIMES").is_ok_and(|v| v == "1")
}

/// Why a test could not run here: what it needs and how to get it.
#[derive(Debug)]
pub struct Skip(pub String);

/// Marks a skip that stays a skip under `IOSTUDY_REQUIRE_RUNTIMES=1`: what no CI
/// machine can have (a Kubernetes cluster), given only by the person running the tests.
const OPTIONAL: &str = "optional: ";

/// Like [`need`], for what CI cannot install: a skip even where runtimes are required.
pub fn optional(available: bool, what: &str) -> Needs {
    if available { Ok(()) } else { Err(Skip(format!("{OPTIONAL}needs {what}"))) }
}

/// What a test that needs root or a runtime returns: `Err(Skip)` when it could not run.
pub type Needs = Result<(), Skip>;

/// `Ok` when `available`; otherwise the test stops here, as a skip (or, under
/// `IOSTUDY_REQUIRE_RUNTIMES=1`, a failure — decided by the harness in `main.rs`).
pub fn need(available: bool, what: &str) -> Needs {
    if available { Ok(()) } else { Err(Skip(format!("needs {what}"))) }
}

/// A test body's result: `()` for tests that always run, [`Needs`] for the others.
pub trait Outcome {
    fn outcome(self) -> Needs;
}

impl Outcome for () {
    fn outcome(self) -> Needs {
        Ok(())
    }
}

impl Outcome for Needs {
    fn outcome(self) -> Needs {
        self
    }
}

/// One test for the harness: a skip becomes *ignored (reason)*, or a failure when
/// runtimes are required.
pub fn trial<O: Outcome + 'static>(module: &str, name: &str, f: fn() -> O) -> libtest_mimic::Trial {
    let module = module.rsplit("::").next().unwrap_or(module);
    libtest_mimic::Trial::ignorable_test(format!("{module}::{name}"), move || match f().outcome() {
        Ok(()) => Ok(libtest_mimic::Completion::Completed),
        Err(Skip(why)) if required() && !why.starts_with(OPTIONAL) => {
            Err(format!("{why}, which IOSTUDY_REQUIRE_RUNTIMES=1 makes mandatory, but it is not available").into())
        }
        Err(Skip(why)) => Ok(libtest_mimic::Completion::ignored_with(why)),
    })
}

/// The trials of a test module: `trials![a, b]` in module `it::m` → `m::a`, `m::b`.
#[macro_export]
macro_rules! trials {
    ($($name:ident),* $(,)?) => {
        pub fn trials() -> Vec<libtest_mimic::Trial> {
            vec![$($crate::util::trial(module_path!(), stringify!($name), $name)),*]
        }
    };
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A tmpfs mounted on a temp dir for the test's life (root only).
pub struct TmpMount {
    dir: tempfile::TempDir,
}

impl TmpMount {
    pub fn new(options: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("iostudy-mnt.").tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "iostudy-test"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(st.success(), "mount -t tmpfs -o {options} failed");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TmpMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Whether the iostudy under test is static, i.e. can be the worker in containers and
/// VMs (every cargo build of this tree is, through .cargo/config.toml).
/// An ext4 filesystem on a loop device with `sector`-byte sectors, mounted on a temp
/// dir for the test's life (root only): a filesystem whose O_DIRECT alignment is known.
pub struct LoopFs {
    dir: tempfile::TempDir,
    image: tempfile::NamedTempFile,
    device: String,
}

impl LoopFs {
    pub fn new(sector: u32) -> Self {
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(64 << 20).unwrap();
        let st = Command::new("mkfs.ext4").args(["-q", "-F", "-b", "4096"]).arg(image.path()).status().unwrap();
        assert!(st.success(), "mkfs.ext4");
        let o = Command::new("losetup")
            .args(["--sector-size", &sector.to_string(), "-f", "--show"])
            .arg(image.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "losetup: {}", String::from_utf8_lossy(&o.stderr));
        let device = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let dir = tempfile::Builder::new().prefix("iostudy-loop.").tempdir().unwrap();
        let st = Command::new("mount").arg(&device).arg(dir.path()).status().unwrap();
        assert!(st.success(), "mount {device}");
        Self { dir, image, device }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
        let _ = &self.image;
    }
}

pub fn static_worker() -> bool {
    iostudy::runtime::binary::is_static(&bin()).unwrap_or(false)
}

pub fn have(tool: &str) -> bool {
    iostudy::command::which(tool).is_some()
}

/// Pids of processes whose command line mentions `marker`.
pub fn processes_mentioning(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(marker))
        })
        .collect()
}

pub fn wait_for(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("iostudy run did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn spawn_run(study: &Path, out: &Path, extra: &[&str]) -> Child {
    Command::new(bin())
        .args(["run", study.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `iostudy run` to completion; returns (exit code, stdout, stderr, pid).
pub fn run_study(study: &Path, out: &Path, extra: &[&str]) -> (Option<i32>, String, String, u32) {
    let child = spawn_run(study, out, extra);
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    (o.status.code(), stdout(&o), stderr(&o), pid)
}

/// No process, control dir or runtime state of the run `run_pid` in `dir` is left.
pub fn assert_nothing_left(dir: &Path, run_pid: u32) {
    // Clients mention the study's directory; VMs and virtiofsd may mention only the
    // run's state directory (sockets, kernel, initramfs).
    let state = format!("{}/{run_pid}-", iostudy::sys::state_base().display());
    let left = || {
        let mut v = processes_mentioning(dir.to_str().unwrap());
        v.extend(processes_mentioning(&state));
        v
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !left().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(left(), Vec::<u32>::new(), "no client, VM or helper process survives");
    let control = dir.join("target").join(iostudy::control::CONTROL_DIR);
    assert!(!control.exists() || entries(&control).is_empty(), "control dirs removed: {:?}", entries(&control));
    // The run's private runtime state (bundles, rootfs, --root dirs) is gone.
    for base in [iostudy::sys::state_base()] {
        if base.exists() {
            let mine: Vec<String> =
                entries(&base).into_iter().filter(|e| e.starts_with(&format!("{run_pid}-"))).collect();
            assert!(mine.is_empty(), "state dirs left in {}: {mine:?}", base.display());
        }
    }
}

/// Whether a run in `dir` has told the clients of its first cell to go.
pub fn first_cell_went(dir: &Path) -> bool {
    use iostudy::control::{CONTROL_DIR, cell_dir, go_sent};
    std::fs::read_dir(dir.join("target").join(CONTROL_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .any(|run| go_sent(&cell_dir(&run.path(), 0)))
}

/// Waits (up to `limit`) until a run in `dir` has told its first cell's clients to go.
pub fn wait_first_cell_go(dir: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !first_cell_went(dir) {
        assert!(Instant::now() < deadline, "the first cell's clients were never told to go");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every cell result of a results directory; fails on an unreadable one.
pub fn stored_cells(results: &Path) -> Vec<CellResult> {
    let set = Store::open(results).cells().unwrap();
    assert!(set.unreadable.is_empty(), "unreadable cells: {:?}", set.unreadable);
    set.cells
}

/// Test hosts (scripts/test-hosts): `n` network namespaces, each with its own sshd,
/// hostname (`node1`…) and address, sharing this machine's filesystem; torn down when
/// dropped. With `local_disk`, each node also has a private disk at that path.
pub struct TestHosts {
    pub dir: tempfile::TempDir,
    pub local_disk: Option<PathBuf>,
}

impl TestHosts {
    pub fn up(n: u32, local_disk: Option<&Path>) -> TestHosts {
        let dir = tempfile::Builder::new().prefix("iostudy-hosts.").tempdir_in("/dev/shm").unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-hosts");
        let mut cmd = Command::new(script);
        cmd.arg("up").arg(dir.path()).arg(n.to_string());
        if let Some(d) = local_disk {
            cmd.env("LOCAL_DISK", d);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "test-hosts up: {}", String::from_utf8_lossy(&o.stderr));
        TestHosts { dir, local_disk: local_disk.map(Path::to_path_buf) }
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// Runs `script` on `node` through ssh; its stdout.
    pub fn ssh(&self, node: &str, script: &str) -> String {
        let o = Command::new("ssh").arg("-F").arg(self.ssh_config()).arg(node).arg(script).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Kills `node`'s sshd and every session it serves (the processes named sshd in
    /// the node's network namespace), as a crash of sshd would.
    pub fn kill_sshd(&self, node: &str) {
        let o = Command::new("ip").args(["netns", "pids", &format!("ios-{node}")]).output().unwrap();
        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sshd" {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
    }

    /// The `[hosts]` table of a study on these hosts.
    pub fn table(&self, extra: &str) -> String {
        format!(
            "[hosts]\nnodes = [\"node1\", \"node2\"]\nssh_options = [\"-F\", \"{}\"]\n{extra}\n",
            self.ssh_config().display()
        )
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-hosts");
        let _ = Command::new(script).arg("down").arg(self.dir.path()).status();
    }
}

/// Whether test hosts can be built here.
pub fn hosts_ready() -> Needs {
    need(is_root(), "root (network namespaces)")?;
    need(Path::new("/usr/sbin/sshd").exists(), "sshd (apt-get install openssh-server)")?;
    need(have("ssh") && have("ip") && have("nsenter"), "ssh, ip and nsenter (openssh-client, iproute2, util-linux)")?;
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")
}

/// A test Slurm cluster (scripts/test-slurm): slurmctld here and a slurmd in each of `n`
/// network namespaces (node1 …), sharing this machine's filesystem; torn down (every
/// job cancelled) when dropped. Commands get `SLURM_CONF` from [`TestSlurm::conf`].
pub struct TestSlurm {
    pub dir: tempfile::TempDir,
    // The cluster's names (namespaces, bridge, slurmctld's port) are the machine's:
    // one test's cluster at a time. Dropped after `drop` tore the cluster down.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static SLURM_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl TestSlurm {
    pub fn up(n: u32) -> TestSlurm {
        let one_at_a_time = SLURM_CLUSTER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = tempfile::Builder::new().prefix("iostudy-slurm.").tempdir_in("/dev/shm").unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-slurm");
        let o = Command::new(script).arg("up").arg(dir.path()).arg(n.to_string()).output().unwrap();
        assert!(o.status.success(), "test-slurm up: {}", String::from_utf8_lossy(&o.stderr));
        TestSlurm { dir, _one_at_a_time: one_at_a_time }
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("etc/slurm.conf")
    }

    /// A Slurm client command against this cluster.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// `squeue`'s jobs (id and name), one per line.
    pub fn jobs(&self) -> String {
        let o = self.cmd("squeue").args(["-h", "-o", "%i %j %T"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// iostudy with this cluster's config.
    pub fn iostudy(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).env("SLURM_CONF", self.conf()).env_remove("SLURM_JOB_ID");
        c
    }
}

impl Drop for TestSlurm {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-slurm");
        let _ = Command::new(script).arg("down").arg(self.dir.path()).status();
    }
}

/// Whether a test Slurm can be made here.
pub fn slurm_ready() -> Needs {
    need(is_root(), "root (network namespaces, slurmd)")?;
    for tool in ["slurmctld", "slurmd", "srun", "munged", "nsenter", "ip"] {
        need(
            have(tool) || Path::new(&format!("/usr/sbin/{tool}")).exists(),
            "Slurm (apt-get install --no-install-recommends slurmctld slurmd slurm-client munge)",
        )?;
    }
    need(static_worker(), "a static iostudy (cargo build, as .cargo/config.toml sets)")
}

/// Waits until the first cell's clients were told to go, and returns the pid of the
/// worker running job `job` (a path ending like `cell-0/job-1.json`).
pub fn worker_pid(dir: &Path, job: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pids: Vec<u32> = processes_mentioning(job)
            .into_iter()
            .filter(|p| processes_mentioning(dir.to_str().unwrap()).contains(p))
            .collect();
        if first_cell_went(dir) && !pids.is_empty() {
            return pids[0];
        }
        assert!(Instant::now() < deadline, "worker for {job} never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The test Kubernetes cluster (scripts/test-cluster): the official components built
/// from Go modules, one node whose kubelet runs pods through containerd. Started once
/// for the whole test binary by the first test that asks, torn down by
/// [`TestCluster::shutdown`] when every test has run.
#[cfg(feature = "kubernetes")]
pub struct TestCluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub image: String,
    pub target: PathBuf,
    /// `kubectl` of the same build.
    pub kubectl: PathBuf,
}

#[cfg(feature = "kubernetes")]
static CLUSTER: std::sync::Mutex<Option<Result<std::sync::Arc<TestCluster>, String>>> = std::sync::Mutex::new(None);

#[cfg(feature = "kubernetes")]
impl TestCluster {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-cluster")
    }

    /// The shared cluster, started on first use; `Err(Skip)` where it cannot run here.
    pub fn shared() -> Result<std::sync::Arc<TestCluster>, Skip> {
        need(is_root(), "root (kubelet, containerd)")?;
        for (tool, pkg) in [("go", "Go"), ("openssl", "openssl"), ("containerd", "containerd"), ("runsc", "runsc")] {
            need(have(tool), &format!("{pkg} for the test cluster (scripts/setup)"))?;
        }
        let built = Command::new(Self::script()).arg("built").output().unwrap();
        need(
            built.status.success(),
            "the test cluster's components (scripts/test-cluster build; scripts/setup runs it)",
        )?;
        let bins = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
        let mut slot = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let dir = std::env::temp_dir().join(format!("iostudy-k8s.{}", std::process::id()));
            let o = Command::new(Self::script()).arg("up").arg(&dir).env("IOSTUDY_BIN", bin()).output().unwrap();
            *slot = Some(if o.status.success() {
                let env: std::collections::HashMap<String, String> = std::fs::read_to_string(dir.join("env"))
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect();
                Ok(std::sync::Arc::new(TestCluster {
                    kubeconfig: env["IOSTUDY_KUBECONFIG"].clone().into(),
                    image: env["IOSTUDY_K8S_IMAGE"].clone(),
                    target: env["IOSTUDY_K8S_TARGET"].clone().into(),
                    kubectl: bins.join("kubectl"),
                    dir,
                }))
            } else {
                let _ = Command::new(Self::script()).arg("down").arg(&dir).output();
                Err(format!("test-cluster up failed:\n{}", String::from_utf8_lossy(&o.stderr)))
            });
        }
        match slot.as_ref().unwrap() {
            Ok(c) => Ok(c.clone()),
            Err(e) => panic!("{e}"),
        }
    }

    /// `kubectl` against this cluster; its stdout (it must succeed).
    pub fn kubectl(&self, args: &[&str]) -> String {
        let o = Command::new(&self.kubectl)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Tears the shared cluster down, if one was started; `Err` says what `down` left
    /// behind (a process, container, mount, cgroup, network namespace or interface).
    pub fn shutdown() -> Result<(), String> {
        let slot = CLUSTER.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(Ok(c)) = slot else { return Ok(()) };
        let o = Command::new(Self::script()).arg("down").arg(&c.dir).output().unwrap();
        if o.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&o.stderr).into_owned()) }
    }
}
