//! A client that is a child process of the controller — a worker, `runc run`, QEMU —
//! with the helpers that live and die with it (virtiofsd), and the commands that stop
//! it and clean up after it. Shared by every backend whose clients are processes here.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::command::Cmd;
use crate::runtime::{Client, Exit, Launch, RuntimeError, log_tail};

/// A client process and what belongs to it.
pub struct ChildClient {
    client: u32,
    log: PathBuf,
    child: Child,
    exit: Option<Exit>,
    /// Stops a hung client (e.g. `runc kill ID KILL`), before its process is killed.
    kill: Vec<Cmd>,
    /// Removes what the client left (e.g. `runc delete --force ID`).
    teardown: Vec<Cmd>,
    helpers: Vec<Helper>,
}

impl ChildClient {
    /// Spawns `cmd` with its stdout and stderr into the launch's log (for a guest: its
    /// serial console).
    pub fn spawn(l: &Launch, cmd: &Cmd, kill: Vec<Cmd>, teardown: Vec<Cmd>) -> Result<ChildClient, RuntimeError> {
        let log = crate::safety::create_file(&l.log)?;
        let out = log.try_clone().map_err(RuntimeError::io("clone a log fd"))?;
        let child = cmd
            .command()
            .stdout(out)
            .stderr(log)
            .spawn()
            .map_err(RuntimeError::io(format!("start `{}`", cmd.argv().join(" "))))?;
        let client = ChildClient {
            client: l.client,
            log: l.log.clone(),
            child,
            exit: None,
            kill,
            teardown,
            helpers: Vec::new(),
        };
        // On an error `client` is dropped, which kills it.
        into_cgroup(l, client.child.id())?;
        Ok(client)
    }

    /// Attaches a helper that must go when the client goes.
    pub fn with_helper(mut self, h: Helper) -> ChildClient {
        self.helpers.push(h);
        self
    }
}

impl Client for ChildClient {
    fn client(&self) -> u32 {
        self.client
    }

    fn poll(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            self.exit = match self.child.try_wait() {
                Ok(Some(st)) if st.success() => Some(Exit::Success),
                Ok(Some(st)) => Some(Exit::Failed(describe_status(st))),
                Ok(None) => None,
                Err(e) => Some(Exit::Failed(format!("cannot wait for it: {e}"))),
            };
        }
        self.exit.clone()
    }

    fn kill(&mut self) {
        if self.poll().is_some() {
            return;
        }
        for cmd in &self.kill {
            let _ = cmd.output();
        }
        kill_group(&mut self.child);
        for h in &mut self.helpers {
            kill_group(&mut h.child);
        }
        self.exit = Some(Exit::Failed("killed".into()));
    }

    fn teardown(&mut self) {
        for h in &mut self.helpers {
            // virtiofsd exits with its VM; give it a moment, then make sure.
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(h.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_group(&mut h.child);
        }
        for cmd in self.teardown.drain(..) {
            let _ = cmd.output();
        }
    }

    fn log(&self) -> &Path {
        &self.log
    }

    fn log_tail(&self, lines: usize) -> String {
        // Helpers' last words first, so the client's own last line stays last.
        let mut text = String::new();
        for h in &self.helpers {
            let said = log_tail(&h.log, 5);
            if !said.is_empty() {
                text.push_str(&format!("{}:\n{said}\n", h.log.display()));
            }
        }
        text.push_str(&log_tail(&self.log, lines));
        text
    }
}

impl Drop for ChildClient {
    fn drop(&mut self) {
        self.kill();
        self.teardown();
    }
}

/// A helper process a client needs (virtiofsd), with its own log.
pub struct Helper {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Helper {
    /// Starts `cmd` for the client of `l`, with its output into `log`.
    pub fn spawn(name: &'static str, cmd: &Cmd, log: &Path, l: &Launch) -> Result<Helper, RuntimeError> {
        let file = crate::safety::create_file(log)?;
        let child = cmd
            .command()
            .stdout(file.try_clone().map_err(RuntimeError::io("clone a log fd"))?)
            .stderr(file)
            .spawn()
            .map_err(RuntimeError::io(format!("start `{}`", cmd.argv().join(" "))))?;
        let helper = Helper { name, child, log: log.to_path_buf() };
        into_cgroup(l, helper.child.id())?;
        Ok(helper)
    }

    /// Waits until the helper has created `path`; a helper that exits or takes too long
    /// is killed and its own last words become the error.
    pub fn wait_for(&mut self, path: &Path, limit: Duration) -> Result<(), RuntimeError> {
        let started = Instant::now();
        while !path.exists() {
            let why = match self.child.try_wait() {
                Ok(Some(st)) => Some(format!("exited ({st}) before it created {}", path.display())),
                _ if started.elapsed() > limit => {
                    Some(format!("did not create {} within {} s", path.display(), limit.as_secs()))
                }
                _ => None,
            };
            if let Some(why) = why {
                kill_group(&mut self.child);
                let said = log_tail(&self.log, 5);
                let said = if said.is_empty() { "nothing".to_string() } else { said.replace('\n', " | ") };
                return Err(RuntimeError::Setup(format!(
                    "{} {why}; it said: {said} (log: {})",
                    self.name,
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Moves a process of the client of `l` into the cell's cgroup, if there is one.
fn into_cgroup(l: &Launch, pid: u32) -> Result<(), RuntimeError> {
    match &l.cgroup {
        Some(cg) => cg.add(pid).map_err(RuntimeError::io(format!("move process {pid} into {}", cg.dir().display()))),
        None => Ok(()),
    }
}

/// Kills a child that leads its own process group, with its group, and reaps it.
pub fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait()
        && let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn describe_status(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => st.to_string(),
    }
}
