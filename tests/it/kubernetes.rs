//! Kubernetes scenarios: the Jobs `plan --manifests` writes read back field by field,
//! study-file errors and an unreachable cluster with the real binary, and studies on a
//! real cluster — the one `IOSTUDY_KUBECONFIG` names, else the test cluster
//! (scripts/test-cluster: the official components built here, one node whose kubelet
//! runs pods through containerd) — with the seed's RuntimeClasses and every failure the
//! scripted API server (`src/runtime/kubernetes/api/tests.rs`) plays.

use std::path::Path;
use std::process::Command;

use iostudy::results::cell::CellStatus;

use crate::util::*;

/// `iostudy` with no cluster to be found: KUBECONFIG at nothing, a HOME of its own.
fn iostudy_without_cluster(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).env("KUBECONFIG", home.join("none")).env("HOME", home).output().unwrap()
}

fn example() -> String {
    format!("{}/examples/stackhpc-kata-2019-kubernetes.toml", env!("CARGO_MANIFEST_DIR"))
}

fn plan_writes_each_cells_job_as_yaml() {
    let dir = scratch();
    let manifests = dir.path().join("manifests");
    let o = iostudy_without_cluster(dir.path(), &["plan", &example(), "--manifests", manifests.to_str().unwrap()]);
    // The plan itself says the cluster is unreachable (exit 2), and still writes the Jobs.
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stdout(&o).contains("no cluster configured"), "{}", stdout(&o));
    assert!(stdout(&o).contains("manifests: 24 Job(s) in"), "{}", stdout(&o));
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&manifests).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# iostudy "), "a header says what the file is");
        let job: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        let cell = path.file_stem().unwrap().to_str().unwrap().to_string();
        let clients: u64 = cell.split('.').find_map(|p| p.strip_prefix('c')?.parse().ok()).unwrap();
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["metadata"]["namespace"], "iostudy");
        assert_eq!(job["metadata"]["labels"]["iostudy.io/cell"], cell.as_str());
        assert_eq!(job["metadata"]["labels"]["iostudy.io/study"], "stackhpc-kata-2019-k8s");
        let spec = &job["spec"];
        assert_eq!(spec["completions"].as_u64(), Some(clients), "{cell}");
        assert_eq!(spec["parallelism"].as_u64(), Some(clients), "{cell}");
        assert_eq!(spec["completionMode"], "Indexed");
        assert_eq!(spec["backoffLimit"], 0);
        assert!(spec["activeDeadlineSeconds"].as_u64().unwrap() > 600, "the barrier's wait and the run");
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        match cell.split('.').next().unwrap() {
            "Kata" => assert_eq!(pod["runtimeClassName"], "kata-qemu"),
            "runC" => assert!(pod.get("runtimeClassName").is_none(), "the cluster's default runtime"),
            other => panic!("unexpected scenario {other}"),
        }
        assert_eq!(pod["topologySpreadConstraints"][0]["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "beegfs-iostudy");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.example/iostudy:0.1");
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/data");
        let args = c["args"].as_array().unwrap();
        assert!(args[1].as_str().unwrap().ends_with("/job-$(IOSTUDY_CLIENT).json"), "{args:?}");
        names.push(job["metadata"]["name"].as_str().unwrap().to_string());
    }
    assert_eq!(names.len(), 24);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 24, "one Job name per cell");
}

fn kubernetes_study_errors_are_located() {
    let dir = scratch();
    let base = std::fs::read_to_string(example()).unwrap();
    let cases: [(&str, &str, &str); 4] = [
        (
            "image = \"registry.example/iostudy:0.1\"\n",
            "",
            "scenario `runC`: names no image (hint: `iostudy image -o iostudy.tar`",
        ),
        (
            "volume = { claim = \"beegfs-iostudy\" }",
            "volume = { claim = \"x\", host_path = \"/mnt/x\" }",
            "scenario `runC`: volume must name exactly one of claim and host_path",
        ),
        ("namespace = \"iostudy\"", "namespce = \"iostudy\"", "unknown field `namespce`"),
        ("runtime_class = \"kata-qemu\"", "runtime_class = \"kata-qemu\"\nnodes = [\"node1\"]", "nodes does not apply"),
    ];
    for (from, to, expected) in cases {
        let s = dir.path().join("s.toml");
        let text = base.replacen(from, to, 1);
        let text = if to.contains("nodes") { format!("{text}\n[hosts]\nnodes = [\"node1\"]\n") } else { text };
        std::fs::write(&s, &text).unwrap();
        let o = iostudy_without_cluster(dir.path(), &["plan", s.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(&format!("{}:", s.display())) && e.contains(expected), "{expected}: {e}");
        // file:line:col
        let loc = e.split(&format!("{}:", s.display())).nth(1).unwrap();
        let mut parts = loc.splitn(3, ':');
        assert!(parts.next().unwrap().parse::<u32>().is_ok() && parts.next().unwrap().parse::<u32>().is_ok(), "{e}");
    }
}

/// A kubeconfig whose API server does not answer (a closed port on loopback).
fn unreachable_kubeconfig(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\n    insecure-skip-tls-verify: true\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n",
    )
    .unwrap();
    path
}

fn an_unreachable_cluster_is_refused_before_the_first_cell() {
    let dir = scratch();
    let target = dir.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("/mnt/beegfs/iostudy", target.to_str().unwrap())
        .replace("size = \"32G\"", "size = \"1M\"")
        .replace(
            "# kubeconfig = \"~/.kube/config\"",
            &format!("kubeconfig = {:?}", unreachable_kubeconfig(dir.path())),
        );
    let s = dir.path().join("s.toml");
    std::fs::write(&s, text).unwrap();
    let out = dir.path().join("results");
    let o = iostudy_without_cluster(dir.path(), &["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("the API server's version") && e.contains("127.0.0.1:9"), "{e}");
    assert!(
        !out.join("cells").exists() || std::fs::read_dir(out.join("cells")).unwrap().next().is_none(),
        "no cell ran"
    );
}

/// The cluster the real-cluster tests run on: the one `IOSTUDY_KUBECONFIG` names (with
/// `IOSTUDY_K8S_IMAGE`, this build's pushed image, and `IOSTUDY_K8S_TARGET`, a directory
/// this host and every node see as the same files), else the test cluster.
struct Real {
    kubeconfig: String,
    image: String,
    target: String,
    cluster: Option<std::sync::Arc<TestCluster>>,
}

fn real() -> Result<Real, Skip> {
    if let Ok(kubeconfig) = std::env::var("IOSTUDY_KUBECONFIG") {
        let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set with IOSTUDY_KUBECONFIG"));
        return Ok(Real {
            kubeconfig,
            image: env("IOSTUDY_K8S_IMAGE"),
            target: env("IOSTUDY_K8S_TARGET"),
            cluster: None,
        });
    }
    let c = TestCluster::shared()?;
    Ok(Real {
        kubeconfig: c.kubeconfig.display().to_string(),
        image: c.image.clone(),
        target: c.target.display().to_string(),
        cluster: Some(c),
    })
}

impl Real {
    /// A study of `scenarios` (tables given in `tables`) on this cluster, in `dir`.
    fn study(&self, dir: &Path, extra_study: &str, workload: &str, matrix: &str, tables: &str) -> std::path::PathBuf {
        let (target, image, kubeconfig) = (&self.target, &self.image, &self.kubeconfig);
        // `workload` keys replace these.
        let defaults: String = ["bs = \"64K\"", "size = \"8M\"", "numjobs = 2", "runtime = \"2s\""]
            .iter()
            .filter(|d| !workload.lines().any(|l| l.split('=').next() == d.split('=').next()))
            .map(|d| format!("{d}\n"))
            .collect();
        let s = dir.join("s.toml");
        std::fs::write(
            &s,
            format!(
                "[study]\nname = \"k8s-e2e\"\ntarget = {target:?}\nkeep_files = false\ndrop_caches = false\n{extra_study}\n\
                 [kubernetes]\nkubeconfig = {kubeconfig:?}\nimage = {image:?}\nimage_pull_policy = \"IfNotPresent\"\n\
                 volume = {{ host_path = {target:?} }}\n\n\
                 [workload]\n{defaults}{workload}\n\
                 [matrix]\n{matrix}\n\n{tables}"
            ),
        )
        .unwrap();
        s
    }

    /// The Jobs and pods left in the namespace, if this is the test cluster.
    fn left(&self) -> String {
        match &self.cluster {
            Some(c) => c.kubectl(&["-n", "iostudy", "get", "jobs,pods", "-o", "name"]),
            None => String::new(),
        }
    }

    fn assert_nothing_left(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.left().trim().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        assert_eq!(self.left().trim(), "", "no Job or pod left");
    }
}

fn a_study_runs_on_a_real_cluster() -> Needs {
    let k = real()?;
    let class = std::env::var("IOSTUDY_K8S_RUNTIME_CLASS").ok();
    let dir = scratch();
    let class_line = class.map(|c| format!("runtime_class = {c:?}\n")).unwrap_or_default();
    let s = k.study(
        dir.path(),
        "",
        "",
        "scenarios = [\"k8s\"]\nclients = [2]\npatterns = [\"read\", \"write\"]",
        &format!("[scenarios.k8s]\nruntime = \"kubernetes\"\n{class_line}"),
    );
    let out = dir.path().join("results");
    let o = iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let cells = stored_cells(&out);
    assert_eq!(cells.len(), 2, "both cells (read, write) are stored");
    for c in cells {
        assert_eq!(c.status, CellStatus::Ok, "{:?}", c.failure);
        assert_eq!(c.clients.len(), 2);
        assert_eq!(c.placements.len(), 2, "each pod's node is recorded");
        assert!(c.runtime.notes.iter().any(|n| n.starts_with("Kubernetes v")), "{:?}", c.runtime.notes);
    }
    k.assert_nothing_left();
    Ok(())
}

/// The seed's shape through RuntimeClasses, as its authors chose runtimes: runc and
/// gVisor, 1, 2 and 4 clients, read and write; each pod's node from `spec.nodeName`.
fn the_seed_shape_runs_through_runtime_classes() -> Needs {
    let k = real()?;
    let Some(cluster) = k.cluster.clone() else {
        return optional(false, "the test cluster (its RuntimeClasses runc and gvisor), not IOSTUDY_KUBECONFIG's");
    };
    let dir = scratch();
    let s = k.study(
        dir.path(),
        "",
        "",
        "scenarios = [\"runc\", \"gvisor\"]\nclients = [1, 2, 4]\npatterns = [\"read\", \"write\"]",
        "[scenarios.runc]\nruntime = \"kubernetes\"\nruntime_class = \"runc\"\n\n\
         [scenarios.gvisor]\nruntime = \"kubernetes\"\nruntime_class = \"gvisor\"\n",
    );
    let out = dir.path().join("results");
    let o = iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let cells = stored_cells(&out);
    assert_eq!(cells.len(), 12, "2 RuntimeClasses × 3 client counts × 2 patterns");
    let kernel = rustix::system::uname().release().to_string_lossy().into_owned();
    for c in &cells {
        assert_eq!(c.status, CellStatus::Ok, "{}: {:?}", c.cell.id, c.failure);
        assert_eq!(c.clients.len() as u32, c.cell.clients);
        assert!(c.placements.iter().all(|p| p.node == "k8s-node1"), "{}: {:?}", c.cell.id, c.placements);
        let handler = format!("RuntimeClass {}, handler {}", c.cell.scenario, c.cell.scenario);
        assert!(c.runtime.notes.contains(&handler), "{}: {:?}", c.cell.id, c.runtime.notes);
        // Inside gVisor the kernel that answers is gVisor's, not this host's.
        let in_gvisor = c.clients.iter().all(|r| r.host.kernel != kernel);
        assert_eq!(in_gvisor, c.cell.scenario == "gvisor", "{}: {}", c.cell.id, c.clients[0].host.kernel);
    }
    println!("{}", stdout(&o));
    k.assert_nothing_left();
    drop(cluster);
    Ok(())
}

/// What the scripted API server plays, for real: a pod no node can take, an image that
/// cannot be pulled, a container killed for memory, a cell past its deadline.
fn real_failures_are_reported_in_the_pods_words() -> Needs {
    let k = real()?;
    if k.cluster.is_none() {
        return optional(false, "the test cluster (failures are provoked on it), not IOSTUDY_KUBECONFIG's");
    }
    let cases: [(&str, &str, &str, &str); 4] = [
        ("", "", "node_selector = { \"iostudy/none\" = \"true\" }\n", "Unschedulable: 0/1 nodes are available"),
        ("", "", "image = \"localhost/iostudy:not-there\"\nimage_pull_policy = \"Never\"\n", "ErrImageNeverPull"),
        ("", "bs = \"64M\"\nsize = \"128M\"\n", "resources = { memory = \"24Mi\" }\n", "OOMKilled (exit 137)"),
        (
            "cell_timeout = \"4s\"\nbarrier_timeout = \"1s\"\n",
            "runtime = \"3s\"\n",
            "",
            // On a real cluster iostudy's own deadline comes first (the Job's counts from
            // its start, later, and adds the barrier's wait): activeDeadlineSeconds is a
            // backstop for pods that hang after their controller died.
            "not finished before the deadline (hung?): stopped by iostudy",
        ),
    ];
    for (study_keys, workload, scenario_keys, words) in cases {
        let dir = scratch();
        let s = k.study(
            dir.path(),
            study_keys,
            workload,
            "scenarios = [\"k8s\"]\nclients = [1]\npatterns = [\"read\"]",
            &format!("[scenarios.k8s]\nruntime = \"kubernetes\"\n{scenario_keys}"),
        );
        let out = dir.path().join("results");
        let o = iostudy(&["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{words}: {}\n{}", stdout(&o), stderr(&o));
        let cells = stored_cells(&out);
        assert_eq!(cells.len(), 1);
        let failure = cells[0].failure.clone().unwrap_or_default();
        assert!(failure.contains(words), "expected `{words}` in: {failure}");
        k.assert_nothing_left();
    }
    Ok(())
}

/// Ctrl-C deletes the cell's Job and its pods; a controller killed outright leaves its
/// Job (its pods run on, or stop at the barrier's timeout without go), which the next
/// run deletes by label.
fn interrupted_and_killed_runs_leave_no_job() -> Needs {
    let k = real()?;
    let Some(cluster) = k.cluster.clone() else {
        return optional(false, "the test cluster, not IOSTUDY_KUBECONFIG's");
    };
    for signal in [rustix::process::Signal::INT, rustix::process::Signal::KILL] {
        let dir = scratch();
        let s = k.study(
            dir.path(),
            "",
            "runtime = \"60s\"\n",
            "scenarios = [\"k8s\"]\nclients = [2]\npatterns = [\"read\"]",
            "[scenarios.k8s]\nruntime = \"kubernetes\"\n",
        );
        let out = dir.path().join("results");
        let mut run = Command::new(bin())
            .args(["run", s.to_str().unwrap(), "-o", out.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let said = || std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !cluster
            .kubectl(&["-n", "iostudy", "get", "pods", "-o", "jsonpath={.items[*].status.phase}"])
            .contains("Running")
        {
            assert!(run.try_wait().unwrap().is_none(), "the run ended first: {}", said());
            assert!(std::time::Instant::now() < deadline, "the pods never ran: {}", said());
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        let pid = run.id();
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), signal).unwrap();
        let st = wait_for(&mut run, std::time::Duration::from_secs(120));
        if signal == rustix::process::Signal::INT {
            assert_eq!(st.code(), Some(130));
            k.assert_nothing_left();
            continue;
        }
        assert!(k.left().contains("job.batch/"), "a killed run leaves its Job: {}", k.left());
        let next = scratch();
        let s2 = k.study(
            next.path(),
            "",
            "",
            "scenarios = [\"k8s\"]\nclients = [1]\npatterns = [\"read\"]",
            "[scenarios.k8s]\nruntime = \"kubernetes\"\n",
        );
        let o = iostudy(&["run", s2.to_str().unwrap(), "-o", next.path().join("r").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stderr(&o).contains("note: deleted 1 Job(s) of the dead run"), "{}", stderr(&o));
        k.assert_nothing_left();
    }
    Ok(())
}

crate::trials![
    plan_writes_each_cells_job_as_yaml,
    kubernetes_study_errors_are_located,
    an_unreachable_cluster_is_refused_before_the_first_cell,
    a_study_runs_on_a_real_cluster,
    the_seed_shape_runs_through_runtime_classes,
    real_failures_are_reported_in_the_pods_words,
    interrupted_and_killed_runs_leave_no_job,
];
