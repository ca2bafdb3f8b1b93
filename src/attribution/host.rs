//! The host side of attribution: Debian's `bpftrace`, driven as an external tool the
//! way fio is, timing the serving processes' positional I/O syscalls and their threads'
//! CPU in the kernel.
//!
//! Only syscall tracepoints and `sched_stat_runtime` are used: hosts without kprobes or
//! hist triggers (this project's test machines) have both. Latencies are aggregated in
//! the kernel into log-linear buckets (64 per power of two, 1.6 % wide), so nothing per
//! I/O crosses to user space; the buckets become an HDR histogram here. The program is
//! scoped to the cell's processes by pid, never the whole host.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::histogram_of;

/// Where tracefs is, mounted if it was not.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Mounts tracefs if it is not mounted; an error names what is missing.
pub fn tracefs() -> Result<(), String> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    use rustix::mount::{MountFlags, mount};
    match mount("nodev", TRACEFS, "tracefs", MountFlags::empty(), None) {
        Ok(()) if Path::new(TRACEFS).join("events").is_dir() => Ok(()),
        Ok(()) => Err(format!("tracefs mounted at {TRACEFS} has no events (a kernel without CONFIG_TRACING?)")),
        Err(e) => {
            Err(format!("tracefs is not mounted at {TRACEFS} and cannot be: {e} (a kernel without CONFIG_TRACING?)"))
        }
    }
}

/// The tracepoints the host program needs.
const TRACEPOINTS: [&str; 13] = [
    "syscalls/sys_enter_pread64",
    "syscalls/sys_exit_pread64",
    "syscalls/sys_enter_preadv",
    "syscalls/sys_exit_preadv",
    "syscalls/sys_enter_preadv2",
    "syscalls/sys_exit_preadv2",
    "syscalls/sys_enter_pwrite64",
    "syscalls/sys_exit_pwrite64",
    "syscalls/sys_enter_pwritev",
    "syscalls/sys_exit_pwritev",
    "syscalls/sys_enter_pwritev2",
    "syscalls/sys_exit_pwritev2",
    "sched/sched_stat_runtime",
];

/// Whether `bpftrace` is here and the kernel has what the program attaches to.
pub fn check_bpftrace() -> Result<(), String> {
    let v = Command::new("bpftrace").arg("--version").output();
    match v {
        Ok(o) if o.status.success() => {}
        _ => return Err("attribution needs bpftrace: apt-get install bpftrace".into()),
    }
    for t in TRACEPOINTS {
        if !Path::new(TRACEFS).join("events").join(t).is_dir() {
            return Err(format!("this kernel has no tracepoint {t} (CONFIG_FTRACE_SYSCALLS?)"));
        }
    }
    Ok(())
}

/// The functions of virtiofsd that handle a FUSE read or write (Rust-mangled:
/// `virtiofsd::server::Server<F>::read`, `…::write`).
const SERVER_FUNCTIONS: [&str; 2] = ["*Server*4read17h*", "*Server*5write17h*"];

/// The bpftrace program for processes `pids`, and for the file server executables
/// `servers` (their request handlers timed by uprobes).
fn program(pids: &[u32], servers: &[PathBuf]) -> String {
    let pred = pids.iter().map(|p| format!("pid == {p}")).collect::<Vec<_>>().join(" || ");
    let mut p = String::from("BEGIN { printf(\"iostudy-attached\\n\"); }\n");
    for (dir, calls) in [("read", ["pread64", "preadv", "preadv2"]), ("write", ["pwrite64", "pwritev", "pwritev2"])] {
        let probes =
            |side: &str| calls.iter().map(|c| format!("tracepoint:syscalls:sys_{side}_{c}")).collect::<Vec<_>>();
        let bytes = format!("if (args->ret > 0) {{ @{dir}_bytes = sum(args->ret); }}");
        p.push_str(&timed(dir, &probes("enter"), &probes("exit"), &pred, &bytes));
    }
    for exe in servers {
        let probes =
            |kind: &str| SERVER_FUNCTIONS.iter().map(|f| format!("{kind}:{}:{f}", exe.display())).collect::<Vec<_>>();
        p.push_str(&timed("server", &probes("uprobe"), &probes("uretprobe"), &pred, ""));
    }
    // The runtime is charged to args->pid, usually the task running here; a charge to
    // another task (a remote run queue's) is counted apart, as the figures' error.
    p.push_str(&format!(
        "tracepoint:sched:sched_stat_runtime /{pred}/ {{\n  if (args->pid == tid) {{ @cpu[pid, tid, comm] = sum(args->runtime); }}\n  \
         else {{ @cpu_other = sum(args->runtime); }}\n}}\n\
         END {{ clear(@read_at); clear(@write_at);{} }}\n",
        if servers.is_empty() { "" } else { " clear(@server_at);" }
    ));
    p
}

/// Probes timing a span per thread from `enter` to `exit`, into map `@name` as
/// log-linear buckets (the value shifted right until it is under 128, and the shift:
/// `[v << e, (v + 1) << e)`), then `extra`.
///
/// Every map operation costs the traced call (on a VM, about 0.6 µs per probe before
/// any), so the exit looks its start up once and leaves it: the thread's next entry
/// overwrites it, and an exit without an entry since tracing began finds none.
fn timed(name: &str, enter: &[String], exit: &[String], pred: &str, extra: &str) -> String {
    format!(
        "{enter} /{pred}/ {{ @{name}_at[tid] = nsecs; }}\n\
         {exit} /{pred}/ {{\n  $s = @{name}_at[tid];\n  if ($s > 0) {{\n    $d = nsecs - $s;\n    \
         $v = $d; $e = 0; while ($v >= 128) {{ $v = $v >> 1; $e = $e + 1; }}\n    \
         @{name}[$e, $v] = count();\n    {extra}\n  }}\n}}\n",
        enter = enter.join(","),
        exit = exit.join(","),
    )
}

/// Whether `exe` is a virtiofsd whose request handlers can be probed: a plain path
/// (bpftrace takes it unquoted) with the symbols [`SERVER_FUNCTIONS`] name. Asked once
/// per executable.
pub fn probeable_server(exe: &Path) -> bool {
    static SEEN: std::sync::Mutex<Vec<(PathBuf, bool)>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().expect("not poisoned");
    if let Some((_, ok)) = seen.iter().find(|(p, _)| p == exe) {
        return *ok;
    }
    let plain = exe.to_str().is_some_and(|s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b)));
    let ok = plain
        && SERVER_FUNCTIONS.iter().all(|f| {
            Command::new("bpftrace")
                .args(["-l", &format!("uprobe:{}:{f}", exe.display())])
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
        });
    seen.push((exe.to_path_buf(), ok));
    ok
}

/// A running tracer; dropped unstopped, it is killed.
pub struct Tracer {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    stopped: bool,
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the tracer saw.
#[derive(Debug, Default)]
pub struct HostTrace {
    pub read: Option<Histogram<u64>>,
    pub write: Option<Histogram<u64>>,
    /// The file server's request handlers (virtiofsd), when probed.
    pub server: Option<Histogram<u64>>,
    pub bytes: u64,
    /// `(pid, tid, thread name, ns)`.
    pub cpu: Vec<(u32, u32, String, u64)>,
    pub cpu_other_ns: u64,
}

impl HostTrace {
    /// Reads and writes together.
    pub fn all(&self) -> Option<Histogram<u64>> {
        let mut out: Option<Histogram<u64>> = None;
        for h in [&self.read, &self.write].into_iter().flatten() {
            match &mut out {
                Some(o) => {
                    let _ = o.add(h);
                }
                None => out = Some(h.clone()),
            }
        }
        out
    }
}

/// How long bpftrace may take to compile and attach.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

impl Tracer {
    /// Starts tracing processes `pids`; returns once every probe is attached.
    pub fn start(pids: &[u32], servers: &[PathBuf]) -> Result<Tracer, String> {
        if pids.is_empty() {
            return Err("no process of the cell was found to trace".into());
        }
        let mut child = Command::new("bpftrace")
            .args(["-f", "json", "-e", &program(pids, servers)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start bpftrace: {e}"))?;
        let out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut t = Tracer { child, lines, stderr: Some(stderr), stopped: false };
        loop {
            match t.lines.recv_timeout(ATTACH_TIMEOUT) {
                Ok(l) if l.contains("iostudy-attached") => return Ok(t),
                Ok(_) => {}
                Err(_) => {
                    let _ = t.child.kill();
                    let _ = t.child.wait();
                    t.stopped = true;
                    let why = t.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
                    return Err(format!("bpftrace did not attach: {}", last_error(&why)));
                }
            }
        }
    }

    /// Stops tracing and reads what was seen.
    pub fn stop(mut self) -> Result<HostTrace, String> {
        self.stopped = true;
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).expect("a child's pid is positive"),
            rustix::process::Signal::INT,
        );
        let mut trace = HostTrace::default();
        let mut buckets = Buckets::default();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(30)) {
            parse_line(&line, &mut trace, &mut buckets);
        }
        let status = self.child.wait().map_err(|e| format!("bpftrace: {e}"))?;
        let why = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if !status.success() && buckets.read.is_empty() && buckets.write.is_empty() && trace.cpu.is_empty() {
            return Err(format!("bpftrace failed: {}", last_error(&why)));
        }
        let hist = |b: Vec<(u64, u64)>| (!b.is_empty()).then(|| histogram_of(b));
        trace.read = hist(buckets.read);
        trace.write = hist(buckets.write);
        trace.server = hist(buckets.server);
        Ok(trace)
    }
}

/// bpftrace's error: its lines but the harmless RLIMIT_MEMLOCK warning and the
/// underlining of the program text.
fn last_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.contains("RLIMIT_MEMLOCK") && l.chars().any(|c| c.is_alphanumeric()))
        .collect();
    lines.iter().find(|l| l.contains("ERROR")).or(lines.last()).unwrap_or(&"no output").to_string()
}

/// Latency buckets as (ns, count), by map.
#[derive(Default)]
struct Buckets {
    read: Vec<(u64, u64)>,
    write: Vec<(u64, u64)>,
    server: Vec<(u64, u64)>,
}

/// One line of `bpftrace -f json`: a map printed at exit.
fn parse_line(line: &str, t: &mut HostTrace, b: &mut Buckets) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { return };
    if v["type"] != "map" {
        return;
    }
    let Some(data) = v["data"].as_object() else { return };
    for (name, value) in data {
        match name.as_str() {
            "@read" | "@write" | "@server" => {
                let Some(m) = value.as_object() else { continue };
                let into = match name.as_str() {
                    "@read" => &mut b.read,
                    "@write" => &mut b.write,
                    _ => &mut b.server,
                };
                for (k, n) in m {
                    let mut parts = k.split(',').map(|x| x.trim().parse::<u64>());
                    if let (Some(Ok(e)), Some(Ok(v)), Some(n)) = (parts.next(), parts.next(), n.as_u64()) {
                        // The bucket's middle.
                        into.push((((2 * v + 1) << e) / 2, n));
                    }
                }
            }
            "@read_bytes" | "@write_bytes" => t.bytes += value.as_u64().unwrap_or(0),
            "@cpu_other" => t.cpu_other_ns += value.as_u64().unwrap_or(0),
            "@cpu" => {
                let Some(m) = value.as_object() else { continue };
                for (k, n) in m {
                    let mut parts = k.splitn(3, ',');
                    let pid = parts.next().and_then(|x| x.trim().parse().ok());
                    let tid = parts.next().and_then(|x| x.trim().parse().ok());
                    if let (Some(pid), Some(tid), Some(comm), Some(n)) = (pid, tid, parts.next(), n.as_u64()) {
                        t.cpu.push((pid, tid, comm.to_string(), n));
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_scoped_to_the_pids() {
        let p = program(&[12, 34], &[]);
        assert!(p.contains("/pid == 12 || pid == 34/"));
        assert_eq!(p.matches("sys_enter_p").count(), 6);
        assert!(!p.contains("uprobe"));
        let p = program(&[12], &[PathBuf::from("/usr/libexec/virtiofsd")]);
        assert!(p.contains("uretprobe:/usr/libexec/virtiofsd:*Server*4read17h*"), "{p}");
    }

    #[test]
    fn maps_become_histograms_and_threads() {
        let mut t = HostTrace::default();
        let mut b = Buckets::default();
        for line in [
            r#"{"type": "map", "data": {"@read": {"6,100": 3, "0,5": 1}}}"#,
            r#"{"type": "map", "data": {"@read_bytes": 262144}}"#,
            r#"{"type": "map", "data": {"@cpu": {"7,8,CPU 0/TCG": 1000, "7,9,worker": 50}}}"#,
            r#"{"type": "printf", "data": "iostudy-attached\n"}"#,
        ] {
            parse_line(line, &mut t, &mut b);
        }
        // Bucket (6, 100) is [6400, 6464): its middle.
        assert_eq!(b.read, vec![(5, 1), (6432, 3)]);
        assert_eq!(t.bytes, 262144);
        assert_eq!(t.cpu, vec![(7, 8, "CPU 0/TCG".into(), 1000), (7, 9, "worker".into(), 50)]);
    }
}
