//! The Kubernetes API side: preflight, a cell's Job created and watched through its
//! pods, pod failures in words, and every Job of a run deleted.
//!
//! `kube` is async; the runner is not. A [`Cluster`] owns a small tokio runtime and
//! blocks on each call with a timeout, so a hung API server fails a cell instead of
//! the run. The pods of a cell are listed at most every [`REFRESH`] whatever the
//! number of clients polling them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolumeClaim, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Serialize};

use super::KubeSpec;
use super::manifest::{self, CellJob, INDEX_ANNOTATION, JOB_LABEL, RUN_LABEL, label_value};
use crate::runtime::{Backend, Client, Exit, Launch, Probe, RuntimeError, ScenarioContext, Timing, log_tail};

/// The longest one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a cell's pods are listed.
const REFRESH: Duration = Duration::from_millis(500);
/// How long the API server may fail to list a cell's pods before its clients fail (a
/// restarting API server, a network blip).
const API_PATIENCE: Duration = Duration::from_secs(30);
/// Waiting reasons of a pod's container that will not resolve by themselves.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
];
const RECORD: &str = "kubernetes.json";
/// A pod whose sandbox the kubelet failed to create this many times is failed: the
/// kubelet retries forever, and says why only in events, never in the pod's status.
const SANDBOX_ATTEMPTS: i32 = 3;
/// How often a cell's events are listed while a scheduled pod has not started.
const EVENTS_REFRESH: Duration = Duration::from_secs(2);

/// A connection to one cluster, with the runtime its calls run on.
pub struct Cluster {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    /// Where the connection came from, for messages.
    pub source: String,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the Kubernetes client's runtime: {e}"))
}

/// `~/x` with the home directory.
fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

impl Cluster {
    /// Connects as the spec says: its kubeconfig and context, else KUBECONFIG, then
    /// `~/.kube/config`, then the pod's in-cluster account.
    pub fn connect(spec: &KubeSpec) -> Result<Cluster, String> {
        #[cfg(test)]
        if let Some(scripted) = tests::SCRIPTED.lock().expect("scripted lock").as_ref() {
            return Ok(scripted());
        }
        let rt = runtime()?;
        let options = KubeConfigOptions { context: spec.context.clone(), ..KubeConfigOptions::default() };
        let (config, source) = rt.block_on(async {
            match &spec.kubeconfig {
                Some(path) => {
                    let path = expand_home(path);
                    let kc = Kubeconfig::read_from(&path).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
                    let c = kube::Config::from_custom_kubeconfig(kc, &options)
                        .await
                        .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
                    Ok::<_, String>((c, path.display().to_string()))
                }
                None if spec.context.is_some() => {
                    let c = kube::Config::from_kubeconfig(&options).await.map_err(|e| format!("kubeconfig: {e}"))?;
                    Ok((c, "KUBECONFIG or ~/.kube/config".to_string()))
                }
                None => {
                    let c = kube::Config::infer().await.map_err(|e| {
                        format!(
                            "no cluster configured ({e}): set kubeconfig in [kubernetes], KUBECONFIG, or ~/.kube/config"
                        )
                    })?;
                    Ok((c, "KUBECONFIG, ~/.kube/config or in-cluster".to_string()))
                }
            }
        })?;
        let source = format!("{} ({source})", config.cluster_url);
        let client = {
            let _guard = rt.enter();
            kube::Client::try_from(config).map_err(|e| format!("cannot build the Kubernetes client: {e}"))?
        };
        Ok(Cluster { rt, client, source })
    }

    /// A cluster behind any `tower` service: how tests script the API server.
    #[cfg(test)]
    pub fn with_service<S, B>(service: S) -> Cluster
    where
        S: tower::Service<http::Request<kube::client::Body>, Response = http::Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let rt = runtime().expect("a tokio runtime");
        let client = {
            let _guard = rt.enter();
            kube::Client::new(service, "default")
        };
        Cluster { rt, client, source: "scripted".into() }
    }

    /// Runs one API call, with [`CALL_TIMEOUT`], its error in words.
    fn call<T>(&self, what: &str, f: impl Future<Output = Result<T, kube::Error>>) -> Result<T, ApiError> {
        match self.rt.block_on(async { tokio::time::timeout(CALL_TIMEOUT, f).await }) {
            Err(_) => Err(ApiError { code: None, message: format!("{what}: no answer within {CALL_TIMEOUT:?}") }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(kube::Error::Api(s))) => {
                let hint = match s.code {
                    401 => " (the kubeconfig's credentials were refused)",
                    403 => {
                        " (RBAC: iostudy needs create/get/list/delete on jobs and get/list on pods, pods/log and events in its namespace)"
                    }
                    _ => "",
                };
                Err(ApiError { code: Some(s.code), message: format!("{what}: {}{hint}", s.message) })
            }
            Ok(Err(e)) => {
                // The causes underneath (connection refused, certificate…) say the most.
                let mut said = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    let text = s.to_string();
                    if !said.contains(&text) {
                        said = format!("{said}: {text}");
                    }
                    source = s.source();
                }
                Err(ApiError { code: None, message: format!("{what} from {}: {said}", self.source) })
            }
        }
    }

    /// `v1.30.2` and the like.
    pub fn server_version(&self) -> Result<String, String> {
        let info = self.call("the API server's version", self.client.apiserver_version()).map_err(|e| e.message)?;
        Ok(info.git_version)
    }

    fn jobs(&self, ns: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Deletes a Job and its pods (foreground), and waits until it is gone.
    pub fn delete_job(&self, ns: &str, name: &str) -> Result<(), String> {
        let jobs = self.jobs(ns);
        match self.call(&format!("delete Job {name}"), jobs.delete(name, &DeleteParams::foreground())) {
            Ok(_) => {}
            Err(e) if e.code == Some(404) => return Ok(()),
            Err(e) => return Err(e.message),
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.call(&format!("get Job {name}"), jobs.get_opt(name)) {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => return Err(e.message),
            }
        }
        Err(format!("Job {name} was not gone 60 s after its deletion (kubectl -n {ns} get job {name})"))
    }

    /// Deletes every Job labelled with `run_id`.
    pub fn delete_run(&self, ns: &str, run_id: &str) -> Result<usize, String> {
        let lp = ListParams::default().labels(&format!("{RUN_LABEL}={}", label_value(run_id)));
        let list = self.call("list the run's Jobs", self.jobs(ns).list(&lp)).map_err(|e| e.message)?;
        let names: Vec<String> = list.items.into_iter().filter_map(|j| j.metadata.name).collect();
        for name in &names {
            self.delete_job(ns, name)?;
        }
        Ok(names.len())
    }
}

/// An API call that failed, with the HTTP status when the server answered.
#[derive(Debug)]
struct ApiError {
    code: Option<u16>,
    message: String,
}

/// What the cluster says about a spec before a run: the server's version and notes,
/// or why it cannot run.
pub fn check(cluster: &Cluster, spec: &KubeSpec) -> Result<(String, Vec<String>), String> {
    let version = cluster.server_version()?;
    let mut notes = vec![format!("Kubernetes {version} at {}", cluster.source)];
    let ns = &spec.namespace;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    match cluster.call(&format!("get namespace {ns}"), namespaces.get_opt(ns)).map_err(|e| e.message)? {
        Some(_) => {}
        None => return Err(format!("namespace {ns} does not exist: kubectl create namespace {ns}")),
    }
    if let Some(class) = &spec.runtime_class {
        let classes: Api<RuntimeClass> = Api::all(cluster.client.clone());
        match cluster.call(&format!("get RuntimeClass {class}"), classes.get_opt(class)).map_err(|e| e.message)? {
            Some(rc) => notes.push(format!("RuntimeClass {class}, handler {}", rc.handler)),
            None => {
                let all = cluster
                    .call("list RuntimeClasses", classes.list(&ListParams::default()))
                    .map(|l| l.items.into_iter().filter_map(|c| c.metadata.name).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                let all = if all.is_empty() { "none".to_string() } else { all };
                return Err(format!(
                    "RuntimeClass {class} does not exist in the cluster (classes: {all}): install the runtime's RuntimeClass or fix runtime_class"
                ));
            }
        }
    } else {
        notes.push("the cluster's default runtime (no RuntimeClass)".into());
    }
    if let Some(claim) = spec.volume.as_ref().and_then(|v| v.claim.as_ref()) {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), ns);
        let pvc = cluster
            .call(&format!("get PersistentVolumeClaim {claim}"), claims.get_opt(claim))
            .map_err(|e| e.message)?;
        let phase = pvc.as_ref().and_then(|p| p.status.as_ref()).and_then(|s| s.phase.clone());
        match (pvc, phase.as_deref()) {
            (None, _) => {
                return Err(format!(
                    "PersistentVolumeClaim {claim} does not exist in namespace {ns}: create it on the shared filesystem (the controller must see the same files at the study's target)"
                ));
            }
            (Some(_), Some("Bound")) => notes.push(format!("volume: PersistentVolumeClaim {claim} (Bound)")),
            (Some(_), Some("Lost")) => {
                return Err(format!("PersistentVolumeClaim {claim} is Lost: its volume is gone"));
            }
            (Some(_), p) => notes.push(format!(
                "volume: PersistentVolumeClaim {claim} is {} (bound when the first pod needs it?)",
                p.unwrap_or("in no phase")
            )),
        }
    }
    if let Some(path) = spec.volume.as_ref().and_then(|v| v.host_path.as_ref()) {
        notes.push(format!("volume: host path {} on every node", path.display()));
    }
    notes.push(format!(
        "image {} (pull policy {})",
        spec.image,
        spec.image_pull_policy.as_deref().unwrap_or("Kubernetes' default")
    ));
    Ok((version, notes))
}

/// Whether the cluster answers and has what the spec names.
pub fn probe(spec: &KubeSpec) -> Probe {
    let p = Probe::of(spec);
    let cluster = match Cluster::connect(spec) {
        Ok(c) => c,
        Err(e) => return p.fail(e),
    };
    match check(&cluster, spec) {
        Ok((version, notes)) => Probe { version: Some(format!("Kubernetes {version}")), notes, usable: true, ..p },
        Err(e) => p.fail(e),
    }
}

/// Written in the scenario's state directory: how the next run finds this run's Jobs.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    spec: KubeSpec,
    run_id: String,
}

/// Deletes the Jobs a run killed outright left, from its record.
pub fn reap(run_state: &Path) {
    for e in std::fs::read_dir(run_state).into_iter().flatten().flatten() {
        if !e.file_name().to_string_lossy().starts_with("kubernetes-") {
            continue;
        }
        let Ok(bytes) = std::fs::read(e.path().join(RECORD)) else { continue };
        let Ok(record) = serde_json::from_slice::<Record>(&bytes) else { continue };
        match Cluster::connect(&record.spec).and_then(|c| c.delete_run(&record.spec.namespace, &record.run_id)) {
            Ok(n) if n > 0 => eprintln!("note: deleted {n} Job(s) of the dead run {}", record.run_id),
            Ok(_) => {}
            Err(err) => eprintln!(
                "warning: cannot delete the Jobs of the dead run {}: {err} (kubectl -n {} delete job -l {RUN_LABEL}={})",
                record.run_id,
                record.spec.namespace,
                label_value(&record.run_id)
            ),
        }
    }
}

/// A kubernetes scenario prepared for one run.
pub struct Kube {
    spec: KubeSpec,
    cluster: Arc<Cluster>,
    run_id: String,
    study: String,
    notes: Vec<String>,
    record: PathBuf,
    /// The cells' Jobs, by name, created by their first client's launch.
    jobs: Mutex<HashMap<String, Arc<JobWatch>>>,
}

impl Kube {
    pub fn prepare(spec: &KubeSpec, ctx: &ScenarioContext) -> Result<Kube, RuntimeError> {
        let cluster = Cluster::connect(spec).map_err(RuntimeError::Unavailable)?;
        Self::prepare_on(spec, ctx, Arc::new(cluster))
    }

    /// Prepares on a given cluster (tests script one).
    pub fn prepare_on(spec: &KubeSpec, ctx: &ScenarioContext, cluster: Arc<Cluster>) -> Result<Kube, RuntimeError> {
        let (_, notes) = check(&cluster, spec).map_err(RuntimeError::Unavailable)?;
        std::fs::create_dir_all(&ctx.dir).map_err(RuntimeError::io(format!("create {}", ctx.dir.display())))?;
        let record = ctx.dir.join(RECORD);
        let text =
            serde_json::to_vec(&Record { spec: spec.clone(), run_id: ctx.run.run_id.clone() }).expect("serializes");
        crate::safety::write_atomic(&record, &text)?;
        Ok(Kube {
            spec: spec.clone(),
            cluster,
            run_id: ctx.run.run_id.clone(),
            study: ctx.run.study.clone(),
            notes,
            record,
            jobs: Mutex::new(HashMap::new()),
        })
    }

    /// The cell's Job, created by the first of its clients to launch.
    fn job_for(&self, l: &Launch) -> Result<Arc<JobWatch>, RuntimeError> {
        // Launch ids are `<cell prefix>-<client>`: the prefix names the cell's Job.
        let prefix = l.id.rsplit_once('-').map_or(l.id.as_str(), |(p, _)| p);
        let name = if super::is_dns_label(prefix) { prefix.to_string() } else { label_value(prefix).to_lowercase() };
        let mut jobs = self.jobs.lock().expect("jobs lock");
        if let Some(w) = jobs.get(&name) {
            return Ok(w.clone());
        }
        let control = l.job.parent().unwrap_or(Path::new("/"));
        let cell = CellJob {
            name: &name,
            study: &self.study,
            run_id: &self.run_id,
            cell_id: &l.cell.id,
            clients: l.cell.clients,
            deadline: l.cell.deadline,
            control,
        };
        let job = manifest::job(&self.spec, &cell);
        let api = self.cluster.jobs(&self.spec.namespace);
        self.cluster
            .call(&format!("create Job {name}"), api.create(&PostParams::default(), &job))
            .map_err(|e| RuntimeError::Setup(e.message))?;
        let w = Arc::new(JobWatch {
            name,
            namespace: self.spec.namespace.clone(),
            cluster: self.cluster.clone(),
            snapshot: Mutex::new(Snapshot::default()),
            deleted: AtomicBool::new(false),
            left: AtomicU32::new(l.cell.clients),
        });
        jobs.insert(w.name.clone(), w.clone());
        Ok(w)
    }
}

impl Backend for Kube {
    fn client_path(&self, target: &Path, host_path: &Path) -> PathBuf {
        self.spec.mount_path.join(host_path.strip_prefix(target).unwrap_or(host_path))
    }

    fn notes(&self) -> Vec<String> {
        let mut n = self.notes.clone();
        n.push("clients' clocks: their nodes' (NTP), not measured by iostudy".into());
        n
    }

    fn timing(&self, clients: u32) -> Timing {
        super::timing(clients)
    }

    fn launch(&self, l: &Launch) -> Result<Box<dyn Client>, RuntimeError> {
        let job = self.job_for(l)?;
        Ok(Box::new(PodClient { job, client: l.client, log: l.log.clone(), exit: None, node: None, logged: false }))
    }

    fn cleanup(&self) {
        let jobs: Vec<Arc<JobWatch>> = self.jobs.lock().expect("jobs lock").drain().map(|(_, w)| w).collect();
        let mut all_gone = true;
        for w in jobs {
            all_gone &= w.delete().is_ok();
        }
        if all_gone {
            let _ = std::fs::remove_file(&self.record);
        }
    }
}

/// What the cluster last said about a cell's Job and pods.
#[derive(Default)]
struct Snapshot {
    at: Option<Instant>,
    pods: Vec<Pod>,
    /// The Job's Failed condition, in words.
    job_failed: Option<String>,
    /// Pods whose sandbox could not be created: attempts so far, and the last words.
    sandbox: HashMap<String, (i32, String)>,
    events_at: Option<Instant>,
    /// The last listing's error, and since when listings fail.
    error: Option<(String, Instant)>,
}

/// One cell's Job, shared by its clients.
struct JobWatch {
    name: String,
    namespace: String,
    cluster: Arc<Cluster>,
    snapshot: Mutex<Snapshot>,
    deleted: AtomicBool,
    /// Clients not yet torn down: the last one deletes the Job.
    left: AtomicU32,
}

impl JobWatch {
    /// The pod of client `k`, the Job's failure and the pod's sandbox failure, listed at
    /// most every [`REFRESH`].
    fn state(&self, k: u32) -> Result<PodView, String> {
        let mut s = self.snapshot.lock().expect("snapshot lock");
        if s.at.is_none_or(|at| at.elapsed() >= REFRESH) {
            s.at = Some(Instant::now());
            let lp = ListParams::default().labels(&format!("{JOB_LABEL}={}", self.name));
            match self
                .cluster
                .call(&format!("list the pods of Job {}", self.name), self.cluster.pods(&self.namespace).list(&lp))
            {
                Ok(list) => {
                    s.pods = list.items;
                    s.error = None;
                }
                Err(e) => {
                    let since = s.error.as_ref().map_or_else(Instant::now, |(_, t)| *t);
                    s.error = Some((e.message, since));
                }
            }
            let job = self
                .cluster
                .call(&format!("get Job {}", self.name), self.cluster.jobs(&self.namespace).get_opt(&self.name));
            s.job_failed = match job {
                Ok(Some(j)) => job_failure(&j),
                Ok(None) => Some(format!("Job {} was deleted from outside iostudy", self.name)),
                Err(_) => s.job_failed.take(),
            };
            let waiting = s.pods.iter().any(|p| {
                p.spec.as_ref().is_some_and(|sp| sp.node_name.is_some())
                    && p.status.as_ref().and_then(|st| st.phase.as_deref()) == Some("Pending")
            });
            if waiting && s.events_at.is_none_or(|at| at.elapsed() >= EVENTS_REFRESH) {
                s.events_at = Some(Instant::now());
                let events: Api<Event> = Api::namespaced(self.cluster.client.clone(), &self.namespace);
                let lp = ListParams::default().fields("involvedObject.kind=Pod,reason=FailedCreatePodSandBox");
                if let Ok(list) = self.cluster.call("list the pods' events", events.list(&lp)) {
                    for e in list.items {
                        let Some(pod) = e.involved_object.name else { continue };
                        let count = e.count.unwrap_or(1);
                        let entry = s.sandbox.entry(pod).or_insert((0, String::new()));
                        if count >= entry.0 {
                            *entry = (count, e.message.unwrap_or_default());
                        }
                    }
                }
            }
        }
        if let Some((e, since)) = &s.error
            && since.elapsed() >= API_PATIENCE
        {
            return Err(format!("{e} (for {} s)", since.elapsed().as_secs()));
        }
        let pod = s
            .pods
            .iter()
            .filter(|p| completion_index(p) == Some(k))
            .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
            .cloned();
        let sandbox = pod.as_ref().and_then(|p| {
            let name = p.metadata.name.as_deref()?;
            let (attempts, message) = s.sandbox.get(name).filter(|(n, _)| *n >= SANDBOX_ATTEMPTS)?;
            let on = p.spec.as_ref().and_then(|sp| sp.node_name.as_deref()).unwrap_or("?");
            Some(format!("pod {name} on {on}: FailedCreatePodSandBox ({attempts} attempts): {message}"))
        });
        Ok(PodView { pod, job_failed: s.job_failed.clone(), sandbox_failed: sandbox })
    }

    /// Deletes the Job once (foreground: its pods first).
    fn delete(&self) -> Result<(), String> {
        if self.deleted.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.cluster.delete_job(&self.namespace, &self.name).inspect_err(|e| {
            eprintln!("warning: {e} (kubectl -n {} delete job {} --cascade=foreground)", self.namespace, self.name)
        })
    }

    fn log(&self, pod: &str) -> Result<String, String> {
        let lp = LogParams { tail_lines: Some(200), ..LogParams::default() };
        self.cluster
            .call(&format!("the log of pod {pod}"), self.cluster.pods(&self.namespace).logs(pod, &lp))
            .map_err(|e| e.message)
    }
}

/// What a client sees of its pod.
#[derive(Default)]
struct PodView {
    pod: Option<Pod>,
    job_failed: Option<String>,
    /// The kubelet cannot create the pod's sandbox, in its words.
    sandbox_failed: Option<String>,
}

/// An Indexed Job pod's completion index.
fn completion_index(pod: &Pod) -> Option<u32> {
    pod.metadata.annotations.as_ref()?.get(INDEX_ANNOTATION)?.parse().ok()
}

/// The Job's Failed condition in words (e.g. its deadline passed).
fn job_failure(job: &Job) -> Option<String> {
    let c = job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Failed" && c.status == "True")?;
    Some(format!(
        "Job {} failed: {}{}",
        job.metadata.name.as_deref().unwrap_or("?"),
        c.reason.as_deref().unwrap_or("no reason given"),
        c.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    ))
}

/// Where a pod stands, as a client's exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not yet scheduled or started, or running.
    Pending,
    Running,
    Succeeded,
    Failed(String),
}

/// Reads a pod's status the way a user reading `kubectl describe` would.
pub fn pod_state(pod: &Pod) -> PodState {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let on = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).map(|n| format!(" on {n}")).unwrap_or_default();
    let Some(status) = &pod.status else { return PodState::Pending };
    let container = status.container_statuses.as_ref().and_then(|c| c.first());
    let said = |reason: &str, message: Option<&str>| {
        let mut s = format!("pod {name}{on}: {reason}");
        if let Some(m) = message.filter(|m| !m.is_empty()) {
            let _ = write!(s, ": {}", m.trim());
        }
        s
    };
    match status.phase.as_deref() {
        Some("Succeeded") => PodState::Succeeded,
        Some("Failed") => {
            if let Some(t) = container.and_then(|c| c.state.as_ref()).and_then(|s| s.terminated.as_ref()) {
                let reason = format!("{} (exit {})", t.reason.as_deref().unwrap_or("terminated"), t.exit_code);
                return PodState::Failed(said(&reason, t.message.as_deref()));
            }
            PodState::Failed(said(status.reason.as_deref().unwrap_or("failed"), status.message.as_deref()))
        }
        Some("Running") => PodState::Running,
        _ => {
            let unschedulable = status.conditions.iter().flatten().find(|c| {
                c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
            });
            if let Some(c) = unschedulable {
                return PodState::Failed(said("Unschedulable", c.message.as_deref()));
            }
            if let Some(w) = container.and_then(|c| c.state.as_ref()).and_then(|s| s.waiting.as_ref())
                && let Some(reason) = w.reason.as_deref().filter(|r| FATAL_WAITING.contains(r))
            {
                return PodState::Failed(said(reason, w.message.as_deref()));
            }
            PodState::Pending
        }
    }
}

/// A client: one pod of its cell's Job.
struct PodClient {
    job: Arc<JobWatch>,
    client: u32,
    log: PathBuf,
    exit: Option<Exit>,
    node: Option<String>,
    logged: bool,
}

impl PodClient {
    /// Writes the pod's status and its log's last lines to the client's log, once.
    fn keep_log(&mut self, pod: Option<&Pod>, state: Option<&str>) {
        if self.logged {
            return;
        }
        self.logged = true;
        let mut text = String::new();
        if let Some(s) = state {
            let _ = writeln!(text, "{s}");
        }
        if let Some(name) = pod.and_then(|p| p.metadata.name.as_deref()) {
            match self.job.log(name) {
                Ok(log) => text.push_str(&log),
                Err(e) => {
                    let _ = writeln!(text, "(no log: {e})");
                }
            }
        }
        let _ = crate::safety::write_atomic(&self.log, text.as_bytes());
    }
}

impl Client for PodClient {
    fn client(&self) -> u32 {
        self.client
    }

    fn poll(&mut self) -> Option<Exit> {
        if self.exit.is_some() {
            return self.exit.clone();
        }
        let PodView { pod, job_failed, sandbox_failed } = match self.job.state(self.client) {
            Ok(s) => s,
            Err(e) => return Some(Exit::Failed(e)),
        };
        if let Some(n) = pod.as_ref().and_then(|p| p.spec.as_ref()).and_then(|s| s.node_name.clone()) {
            self.node = Some(n);
        }
        let exit = match pod.as_ref().map(pod_state) {
            Some(PodState::Succeeded) => Some(Exit::Success),
            Some(PodState::Failed(why)) => Some(Exit::Failed(why)),
            Some(PodState::Pending) => sandbox_failed.or(job_failed).map(Exit::Failed),
            Some(PodState::Running) | None => job_failed.map(Exit::Failed),
        };
        if let Some(e) = &exit {
            let state = match e {
                Exit::Failed(why) | Exit::Lost(why) => why.clone(),
                Exit::Success => "pod succeeded".to_string(),
            };
            self.keep_log(pod.as_ref(), Some(&state));
            self.exit = exit.clone();
        }
        exit
    }

    fn kill(&mut self) {
        if self.exit.is_none() {
            let pod = self.job.state(self.client).unwrap_or_default().pod;
            self.keep_log(pod.as_ref(), Some("stopped by iostudy"));
            self.exit = Some(Exit::Failed("killed".into()));
        }
        let _ = self.job.delete();
    }

    fn teardown(&mut self) {
        if !self.logged {
            let pod = self.job.state(self.client).unwrap_or_default().pod;
            self.keep_log(pod.as_ref(), None);
        }
        if self.job.left.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _ = self.job.delete();
        }
    }

    fn log(&self) -> &Path {
        &self.log
    }

    fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    fn node(&self) -> Option<String> {
        self.node.clone()
    }
}

#[cfg(test)]
mod tests;
