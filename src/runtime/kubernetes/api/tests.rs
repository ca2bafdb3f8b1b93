//! The API flow against a scripted API server at `kube`'s `tower` seam: what iostudy
//! asks the cluster, and how it reads what the cluster answers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::AtomicBool;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use crate::runtime::{CellShape, RunContext};

/// How a pod moves on: one status per listing of the pods, the last one kept.
type Script = fn(k: u32) -> Vec<Value>;

/// Where [`Cluster::connect`] connects instead, in tests that run whole studies.
#[allow(clippy::type_complexity)]
pub static SCRIPTED: Mutex<Option<Box<dyn Fn() -> Cluster + Send>>> = Mutex::new(None);

/// What the scripted server holds and what it was asked.
#[derive(Default)]
struct Server {
    /// A kubelet of sorts: each pod a real `iostudy worker` process on this host.
    kubelet: Option<Kubelet>,
    runtime_classes: BTreeMap<String, String>,
    jobs: BTreeMap<String, Value>,
    /// Pod name → (job, index, listings so far).
    pods: BTreeMap<String, (String, u32, usize)>,
    script: Option<Script>,
    /// This many listings of pods fail (500) first.
    failing_lists: usize,
    /// The namespace's events, as the kubelet posts them.
    events: Vec<Value>,
    /// Pending pods are already bound to a node (their sandbox is being made).
    pending_on_node: bool,
    /// `METHOD path` of every request, and the bodies of creates and deletes.
    requests: Vec<String>,
    bodies: Vec<Value>,
}

fn pending() -> Value {
    json!({"phase": "Pending"})
}

fn running() -> Value {
    json!({"phase": "Running", "containerStatuses": [{"name": "worker", "ready": true, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}}]})
}

fn succeeded() -> Value {
    json!({"phase": "Succeeded", "containerStatuses": [{"name": "worker", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
}

fn ok(v: Value) -> Response<Body> {
    Response::builder().status(200).body(Body::from(serde_json::to_vec(&v).unwrap())).unwrap()
}

fn not_found(what: &str) -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{what} not found"), "reason": "NotFound", "code": 404});
    Response::builder().status(StatusCode::NOT_FOUND).body(Body::from(serde_json::to_vec(&status).unwrap())).unwrap()
}

/// `%2F` and friends.
fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn query(req: &Request<Body>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(decode))
}

/// Runs each pod's container as a process: the image's entrypoint is this build's
/// `iostudy worker`, its arguments the Job's with the completion index expanded.
struct Kubelet {
    worker: PathBuf,
    logs: PathBuf,
    procs: BTreeMap<String, std::process::Child>,
}

impl Kubelet {
    fn start(&mut self, pod: &str, k: u32, job: &Value) {
        let args: Vec<String> = job["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().replace("$(IOSTUDY_CLIENT)", &k.to_string()))
            .collect();
        let log = std::fs::File::create(self.logs.join(format!("{pod}.log"))).unwrap();
        let child = std::process::Command::new(&self.worker)
            .arg("worker")
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.insert(pod.to_string(), child);
    }

    /// The pod's status from its process.
    fn status(&mut self, pod: &str) -> Value {
        let child = self.procs.get_mut(pod).unwrap();
        match child.try_wait().unwrap() {
            None => running(),
            Some(st) if st.success() => succeeded(),
            Some(st) => {
                json!({"phase": "Failed", "containerStatuses": [{"name": "worker", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"terminated": {"exitCode": st.code().unwrap_or(137), "reason": "Error"}}}]})
            }
        }
    }

    fn kill(&mut self, pod: &str) {
        if let Some(mut c) = self.procs.remove(pod) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Server {
    fn pod(&mut self, name: &str) -> Value {
        let (job, k, seen) = self.pods[name].clone();
        let status = match &mut self.kubelet {
            Some(kubelet) => kubelet.status(name),
            None => {
                let steps = (self.script.expect("a script"))(k);
                steps[seen.min(steps.len() - 1)].clone()
            }
        };
        let node = (status["phase"] != "Pending" || self.pending_on_node).then(|| format!("node{}", k % 2 + 1));
        json!({
            "metadata": {"name": name, "namespace": "iostudy", "labels": {JOB_LABEL: job}, "annotations": {INDEX_ANNOTATION: k.to_string()}},
            "spec": {"containers": [{"name": "worker"}], "nodeName": node},
            "status": status,
        })
    }

    async fn answer(server: Arc<Mutex<Server>>, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let labels = query(&req, "labelSelector");
        let body = req.into_body().collect_bytes().await.unwrap();
        let mut s = server.lock().unwrap();
        s.requests.push(format!("{method} {path}"));
        if !body.is_empty() {
            s.bodies.push(serde_json::from_slice(&body).unwrap());
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            (Method::GET, ["version"]) => ok(
                json!({"major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "x", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"}),
            ),
            (Method::GET, ["api", "v1", "namespaces", "iostudy"]) => ok(json!({"metadata": {"name": "iostudy"}})),
            (Method::GET, ["api", "v1", "namespaces", ns]) => not_found(&format!("namespaces \"{ns}\"")),
            (Method::GET, ["apis", "node.k8s.io", "v1", "runtimeclasses", name]) => {
                match s.runtime_classes.get(*name) {
                    Some(h) => ok(json!({"metadata": {"name": name}, "handler": h})),
                    None => not_found("runtimeclass"),
                }
            }
            (Method::GET, ["apis", "node.k8s.io", "v1", "runtimeclasses"]) => {
                let items: Vec<Value> =
                    s.runtime_classes.iter().map(|(n, h)| json!({"metadata": {"name": n}, "handler": h})).collect();
                ok(json!({"metadata": {}, "items": items}))
            }
            (Method::GET, ["api", "v1", "namespaces", _, "persistentvolumeclaims", "beegfs"]) => {
                ok(json!({"metadata": {"name": "beegfs"}, "spec": {}, "status": {"phase": "Bound"}}))
            }
            (Method::GET, ["api", "v1", "namespaces", _, "persistentvolumeclaims", _]) => not_found("pvc"),
            (Method::POST, ["apis", "batch", "v1", "namespaces", _, "jobs"]) => {
                let job: Value = serde_json::from_slice(&body).unwrap();
                let name = job["metadata"]["name"].as_str().unwrap().to_string();
                for k in 0..job["spec"]["completions"].as_u64().unwrap() as u32 {
                    let pod = format!("{name}-{k}-x7k2p");
                    if let Some(kubelet) = &mut s.kubelet {
                        kubelet.start(&pod, k, &job);
                    }
                    s.pods.insert(pod, (name.clone(), k, 0));
                }
                s.jobs.insert(name, job.clone());
                ok(job)
            }
            (Method::GET, ["apis", "batch", "v1", "namespaces", _, "jobs"]) => {
                let (key, value) = labels.as_deref().and_then(|l| l.split_once('=')).unwrap();
                let items: Vec<Value> =
                    s.jobs.values().filter(|j| j["metadata"]["labels"][key] == value).cloned().collect();
                ok(json!({"metadata": {}, "items": items}))
            }
            (Method::GET, ["apis", "batch", "v1", "namespaces", _, "jobs", name]) => match s.jobs.get(*name) {
                Some(j) => ok(j.clone()),
                None => not_found("job"),
            },
            (Method::DELETE, ["apis", "batch", "v1", "namespaces", _, "jobs", name]) => {
                let name = name.to_string();
                let gone: Vec<String> =
                    s.pods.iter().filter(|(_, (j, ..))| *j == name).map(|(p, _)| p.clone()).collect();
                for pod in gone {
                    if let Some(kubelet) = &mut s.kubelet {
                        kubelet.kill(&pod);
                    }
                    s.pods.remove(&pod);
                }
                match s.jobs.remove(&name) {
                    Some(j) => ok(j),
                    None => not_found("job"),
                }
            }
            (Method::GET, ["api", "v1", "namespaces", _, "pods"]) if s.failing_lists > 0 => {
                s.failing_lists -= 1;
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcdserver: leader changed", "reason": "InternalError", "code": 500});
                Response::builder().status(500).body(Body::from(serde_json::to_vec(&status).unwrap())).unwrap()
            }
            (Method::GET, ["api", "v1", "namespaces", _, "pods"]) => {
                let job = labels.as_deref().and_then(|l| l.strip_prefix(&format!("{JOB_LABEL}="))).unwrap().to_string();
                let names: Vec<String> =
                    s.pods.iter().filter(|(_, (j, ..))| *j == job).map(|(n, _)| n.clone()).collect();
                let items: Vec<Value> = names.iter().map(|n| s.pod(n)).collect();
                for n in &names {
                    s.pods.get_mut(n).unwrap().2 += 1;
                }
                ok(json!({"metadata": {}, "items": items}))
            }
            (Method::GET, ["api", "v1", "namespaces", _, "events"]) => {
                ok(json!({"metadata": {}, "items": s.events.clone()}))
            }
            (Method::GET, ["api", "v1", "namespaces", _, "pods", name, "log"]) => {
                let text = match &s.kubelet {
                    Some(k) => std::fs::read_to_string(k.logs.join(format!("{name}.log"))).unwrap_or_default(),
                    None => format!("log of {name}\nlast line\n"),
                };
                Response::builder().status(200).body(Body::from(text.into_bytes())).unwrap()
            }
            (m, p) => panic!("unexpected request {m} /{}", p.join("/")),
        }
    }
}

/// A cluster whose API server is `server`.
fn cluster(server: &Arc<Mutex<Server>>) -> Arc<Cluster> {
    let server = server.clone();
    let service = tower::service_fn(move |req: Request<Body>| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(Server::answer(server, req).await) }
    });
    Arc::new(Cluster::with_service(service))
}

fn spec() -> KubeSpec {
    super::super::test_spec()
}

struct Fixture {
    server: Arc<Mutex<Server>>,
    backend: Kube,
    tmp: tempfile::TempDir,
}

fn fixture(script: Script) -> Fixture {
    let server = Arc::new(Mutex::new(Server {
        runtime_classes: BTreeMap::from([("kata-qemu".into(), "kata-qemu".into())]),
        script: Some(script),
        ..Server::default()
    }));
    let tmp = tempfile::tempdir().unwrap();
    let run = RunContext {
        run_id: "4242-17".into(),
        study: "seed".into(),
        state_dir: tmp.path().join("state"),
        target: tmp.path().join("target"),
        cancel: Arc::new(AtomicBool::new(false)),
        fio: false,
    };
    let backend =
        Kube::prepare_on(&spec(), &ScenarioContext::new(&run, "kubernetes", "kata"), cluster(&server)).unwrap();
    Fixture { server, backend, tmp }
}

impl Fixture {
    fn launch(&self, clients: u32) -> Vec<Box<dyn Client>> {
        (0..clients)
            .map(|k| {
                let l = Launch {
                    id: format!("iostudy-4242-17-0-{k}"),
                    client: k,
                    job: PathBuf::from(format!("/data/.iostudy-control/4242-17/cell-0/job-{k}.json")),
                    log: self.tmp.path().join(format!("client-{k}.log")),
                    log_dir: self.tmp.path().to_path_buf(),
                    open_files: 8,
                    cgroup: None,
                    cell: CellShape {
                        id: "kata.read.c2.r1".into(),
                        clients,
                        deadline: Duration::from_secs(90),
                        attribute: false,
                    },
                };
                self.backend.launch(&l).unwrap()
            })
            .collect()
    }

    /// Polls every client until all ended (at most 10 s).
    fn wait(clients: &mut [Box<dyn Client>]) -> Vec<Exit> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exits: Vec<Option<Exit>> = clients.iter_mut().map(|c| c.poll()).collect();
            if exits.iter().all(Option::is_some) {
                return exits.into_iter().map(Option::unwrap).collect();
            }
            assert!(Instant::now() < deadline, "clients did not end: {exits:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn requests(&self, prefix: &str) -> usize {
        self.server.lock().unwrap().requests.iter().filter(|r| r.starts_with(prefix)).count()
    }
}

#[test]
fn a_cell_is_one_job_its_pods_run_and_it_is_deleted_in_the_foreground() {
    let f = fixture(|_| vec![pending(), running(), succeeded()]);
    assert!(f.backend.notes().iter().any(|n| n.contains("Kubernetes v1.31.2")), "{:?}", f.backend.notes());
    assert!(f.backend.notes().iter().any(|n| n == "RuntimeClass kata-qemu, handler kata-qemu"));
    let mut clients = f.launch(2);
    assert_eq!(f.requests("POST /apis/batch/v1/namespaces/iostudy/jobs"), 1, "one Job for the cell's two clients");
    let job = f.server.lock().unwrap().bodies[0].clone();
    assert_eq!(job["metadata"]["name"], "iostudy-4242-17-0");
    assert_eq!(job["spec"]["completions"], 2);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 90);
    assert_eq!(job["spec"]["template"]["spec"]["runtimeClassName"], "kata-qemu");
    assert_eq!(job["metadata"]["labels"][RUN_LABEL], "4242-17");

    assert_eq!(Fixture::wait(&mut clients), vec![Exit::Success, Exit::Success]);
    assert_eq!(clients[0].node().as_deref(), Some("node1"));
    assert_eq!(clients[1].node().as_deref(), Some("node2"));
    // Two clients listed the pods at most once per refresh between them.
    let lists =
        f.server.lock().unwrap().requests.iter().filter(|r| *r == "GET /api/v1/namespaces/iostudy/pods").count();
    assert_eq!(lists, 3, "pending, running, succeeded: {:?}", f.server.lock().unwrap().requests);
    for c in &mut clients {
        c.teardown();
    }
    assert_eq!(
        f.requests("DELETE /apis/batch/v1/namespaces/iostudy/jobs/iostudy-4242-17-0"),
        1,
        "deleted once, by the last"
    );
    let delete = f.server.lock().unwrap().bodies.last().cloned().unwrap();
    assert_eq!(delete["propagationPolicy"], "Foreground");
    assert!(f.server.lock().unwrap().jobs.is_empty());
    let log = std::fs::read_to_string(f.tmp.path().join("client-1.log")).unwrap();
    assert!(log.contains("log of iostudy-4242-17-0-1-x7k2p"), "{log}");
    f.backend.cleanup();
    assert_eq!(f.requests("DELETE "), 1, "cleanup does not delete twice");
}

#[test]
fn a_passing_api_server_error_does_not_fail_the_clients() {
    let f = fixture(|_| vec![running(), succeeded()]);
    f.server.lock().unwrap().failing_lists = 2;
    let mut clients = f.launch(1);
    assert_eq!(Fixture::wait(&mut clients), vec![Exit::Success]);
    assert_eq!(f.server.lock().unwrap().failing_lists, 0, "the failing listings were seen");
}

#[test]
fn an_unschedulable_pod_fails_its_client_with_the_schedulers_words() {
    let f = fixture(|k| match k {
        0 => vec![pending(), running()],
        _ => vec![
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes are available: 2 Insufficient memory."}]}),
        ],
    });
    let mut clients = f.launch(2);
    let deadline = Instant::now() + Duration::from_secs(5);
    let why = loop {
        if let Some(Exit::Failed(why)) = clients[1].poll() {
            break why;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(why, "pod iostudy-4242-17-0-1-x7k2p: Unschedulable: 0/2 nodes are available: 2 Insufficient memory.");
    assert_eq!(clients[0].poll(), None, "client 0 still runs");
    assert!(clients[1].log_tail(5).contains("Insufficient memory"));
}

/// As a real kubelet does when its runtime cannot start a pod's sandbox: the pod stays
/// Pending with its container "ContainerCreating", the reason only in events.
#[test]
fn a_pod_whose_sandbox_cannot_be_created_fails_with_the_kubelets_words() {
    let f = fixture(|_| {
        vec![
            json!({"phase": "Pending", "containerStatuses": [{"name": "worker", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        ]
    });
    let mut clients = f.launch(1);
    // Pending pods of the script have no node: give this one its node, as a real pod
    // whose sandbox is being made has.
    assert_eq!(clients[0].poll(), None, "a sandbox not made yet is no failure");
    let event = |count: i32| json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "iostudy-4242-17-0-0-x7k2p"}, "reason": "FailedCreatePodSandBox", "count": count, "message": "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to start sandbox container task: OCI runtime start failed"});
    f.server.lock().unwrap().events = vec![event(1)];
    f.server.lock().unwrap().pending_on_node = true;
    std::thread::sleep(EVENTS_REFRESH + REFRESH);
    assert_eq!(clients[0].poll(), None, "one attempt is no failure: the kubelet retries");
    f.server.lock().unwrap().events = vec![event(3)];
    std::thread::sleep(EVENTS_REFRESH + REFRESH);
    match clients[0].poll() {
        Some(Exit::Failed(why)) => assert_eq!(
            why,
            "pod iostudy-4242-17-0-0-x7k2p on node1: FailedCreatePodSandBox (3 attempts): Failed to create pod sandbox: rpc error: code = Unknown desc = failed to start sandbox container task: OCI runtime start failed"
        ),
        other => panic!("{other:?}"),
    }
    let asked = f.server.lock().unwrap().requests.iter().filter(|r| r.ends_with("/events")).count();
    assert!((1..=4).contains(&asked), "events are listed only while a scheduled pod waits, throttled: {asked}");
}

#[test]
fn a_failing_pod_gives_its_reason_exit_code_and_log() {
    let f = fixture(|_| {
        vec![
            running(),
            json!({"phase": "Failed", "containerStatuses": [{"name": "worker", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        ]
    });
    let mut clients = f.launch(1);
    let exits = Fixture::wait(&mut clients);
    assert_eq!(exits, vec![Exit::Failed("pod iostudy-4242-17-0-0-x7k2p on node1: OOMKilled (exit 137)".into())]);
    let tail = clients[0].log_tail(3);
    assert!(tail.contains("OOMKilled") && tail.ends_with("last line"), "{tail}");
}

#[test]
fn an_image_that_cannot_be_pulled_fails_at_once() {
    let f = fixture(|_| {
        vec![
            json!({"phase": "Pending", "containerStatuses": [{"name": "worker", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"registry.example/iostudy:0.2\""}}}]}),
        ]
    });
    let mut clients = f.launch(1);
    let exits = Fixture::wait(&mut clients);
    assert!(
        matches!(&exits[0], Exit::Failed(w) if w.contains("ImagePullBackOff: Back-off pulling image")),
        "{exits:?}"
    );
}

#[test]
fn interrupting_deletes_the_job_and_its_pods() {
    let f = fixture(|_| vec![pending(), running()]);
    let mut clients = f.launch(2);
    assert_eq!(clients[0].poll(), None);
    for c in &mut clients {
        c.kill();
    }
    assert_eq!(f.requests("DELETE "), 1);
    assert_eq!(f.server.lock().unwrap().bodies.last().unwrap()["propagationPolicy"], "Foreground");
    assert!(f.server.lock().unwrap().pods.is_empty());
    for c in &mut clients {
        c.teardown();
    }
    assert_eq!(f.requests("DELETE "), 1, "no second delete");
}

#[test]
fn a_job_past_its_deadline_fails_the_clients_without_a_pod() {
    let f = fixture(|_| vec![pending()]);
    let mut clients = f.launch(1);
    {
        let mut s = f.server.lock().unwrap();
        s.pods.clear();
        let job = s.jobs.get_mut("iostudy-4242-17-0").unwrap();
        job["status"] = json!({"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]});
    }
    let exits = Fixture::wait(&mut clients);
    assert_eq!(
        exits,
        vec![Exit::Failed(
            "Job iostudy-4242-17-0 failed: DeadlineExceeded: Job was active longer than specified deadline".into()
        )]
    );
}

#[test]
fn preflight_names_what_the_cluster_lacks() {
    let server = Arc::new(Mutex::new(Server {
        runtime_classes: BTreeMap::from([("gvisor".into(), "runsc".into())]),
        ..Server::default()
    }));
    let c = cluster(&server);
    let e = check(&c, &spec()).unwrap_err();
    assert_eq!(
        e,
        "RuntimeClass kata-qemu does not exist in the cluster (classes: gvisor): install the runtime's RuntimeClass or fix runtime_class"
    );
    let mut s = spec();
    s.namespace = "elsewhere".into();
    assert_eq!(check(&c, &s).unwrap_err(), "namespace elsewhere does not exist: kubectl create namespace elsewhere");
    let mut s = spec();
    s.volume = Some(super::super::Volume { claim: Some("other".into()), host_path: None });
    s.runtime_class = Some("gvisor".into());
    assert!(check(&c, &s).unwrap_err().starts_with("PersistentVolumeClaim other does not exist in namespace iostudy"));
    s.volume = Some(super::super::Volume { claim: Some("beegfs".into()), host_path: None });
    let (version, notes) = check(&c, &s).unwrap();
    assert_eq!(version, "v1.31.2");
    assert!(notes.contains(&"RuntimeClass gvisor, handler runsc".to_string()), "{notes:?}");
    assert!(notes.contains(&"volume: PersistentVolumeClaim beegfs (Bound)".to_string()), "{notes:?}");
}

#[test]
fn a_dead_runs_jobs_are_reaped_by_label() {
    let f = fixture(|_| vec![running()]);
    let _clients = f.launch(2);
    // Another run's Job stays.
    f.server
        .lock()
        .unwrap()
        .jobs
        .insert("other".into(), json!({"metadata": {"name": "other", "labels": {RUN_LABEL: "1-2"}}}));
    let c = cluster(&f.server);
    assert_eq!(c.delete_run("iostudy", "4242-17").unwrap(), 1);
    let jobs: Vec<String> = f.server.lock().unwrap().jobs.keys().cloned().collect();
    assert_eq!(jobs, vec!["other".to_string()]);
    assert!(f.tmp.path().join("state/kubernetes-kata").join(RECORD).exists(), "the record the next run reaps from");
}

/// This build's `iostudy` binary, beside the test binary's `deps/` directory.
fn built_iostudy() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("iostudy");
    assert!(bin.exists(), "{} is missing: cargo build first (scripts/check does)", bin.display());
    bin
}

#[test]
fn a_study_runs_through_jobs_with_the_barrier_and_leaves_no_job() {
    use crate::runner::preflight::{Preflight, Results};
    use crate::study::Study;
    use crate::study::plan::{Plan, PlanOptions};

    let tmp = tempfile::Builder::new().prefix("iostudy-k8s.").tempdir_in("/dev/shm").unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let logs = tmp.path().join("kubelet");
    std::fs::create_dir(&logs).unwrap();
    let server = Arc::new(Mutex::new(Server {
        kubelet: Some(Kubelet { worker: built_iostudy(), logs, procs: BTreeMap::new() }),
        ..Server::default()
    }));
    {
        let server = server.clone();
        *SCRIPTED.lock().unwrap() = Some(Box::new(move || {
            let server = server.clone();
            let service = tower::service_fn(move |req: Request<Body>| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(Server::answer(server, req).await) }
            });
            Cluster::with_service(service)
        }));
    }
    // Pods see the volume at the target's own path: the kubelet here is this host.
    let text = format!(
        "[study]\nname = \"k8s\"\ntarget = {t:?}\nkeep_files = false\ndrop_caches = false\n\n\
         [kubernetes]\nimage = \"registry.example/iostudy:test\"\nvolume = {{ host_path = {t:?} }}\nmount_path = {t:?}\n\n\
         [workload]\nbs = \"64K\"\nsize = \"2M\"\nnumjobs = 2\n\n\
         [matrix]\nscenarios = [\"k8s\"]\nclients = [2, 3]\npatterns = [\"read\"]\n\n\
         [scenarios.k8s]\nruntime = \"kubernetes\"\n",
        t = target
    );
    let study = Study::parse(Path::new("k8s.toml"), &text).unwrap();
    let plan = Plan::build(&study, &PlanOptions::default()).unwrap();
    let out = tmp.path().join("results");
    let pre = Preflight::gather(&plan, Some(Results { dir: &out, resume: false }));
    let opts = crate::runner::RunOptions { output: out.clone(), resume: false, progress: false };
    let outcome = crate::runner::run(&plan, &pre, &opts, Arc::new(AtomicBool::new(false)));
    *SCRIPTED.lock().unwrap() = None;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.failed, 0, "{:?}", outcome.cells.iter().map(|c| &c.failure).collect::<Vec<_>>());
    assert_eq!(outcome.cells.len(), 2);
    for c in &outcome.cells {
        let n = c.cell.clients as usize;
        assert_eq!(c.clients.len(), n, "every pod's result came back over the volume");
        assert!(c.start_ns.is_some(), "go was sent once all pods were ready");
        assert!(c.clients.iter().all(|r| r.threads.iter().map(|t| t.read.bytes).sum::<u64>() > 0));
        let nodes: Vec<&str> = c.placements.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(nodes.len(), n, "{nodes:?}");
        assert!(nodes.contains(&"node1") && nodes.contains(&"node2"), "{nodes:?}");
        assert!(c.cpu.is_empty(), "no host CPU figure for clients on other machines: {:?}", c.cpu);
        assert!(c.runtime.notes.iter().any(|n| n.starts_with("Kubernetes v1.31.2")), "{:?}", c.runtime.notes);
    }
    let s = server.lock().unwrap();
    assert!(s.jobs.is_empty(), "every Job deleted: {:?}", s.jobs.keys());
    assert_eq!(s.requests.iter().filter(|r| r.starts_with("POST ")).count(), 2, "one Job per cell");
    assert!(s.kubelet.as_ref().unwrap().procs.is_empty(), "no pod process left");
    assert!(std::fs::read_dir(&target).unwrap().next().is_none(), "the target is left as found");
}
