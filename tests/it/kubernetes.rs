//! Kubernetes scenarios. No API server can be installed on CI machines, so: the Jobs
//! `plan --manifests` writes are read back field by field, study-file errors and an
//! unreachable cluster are checked with the real binary, the API flow is unit-tested
//! against a scripted server (`src/runtime/kubernetes/api/tests.rs`), and a study runs
//! on a real cluster only when `IOSTUDY_KUBECONFIG` names one (skipped otherwise, even
//! under `IOSTUDY_REQUIRE_RUNTIMES=1`).

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

/// A real cluster, given by the person running the tests: `IOSTUDY_KUBECONFIG` (its
/// kubeconfig), `IOSTUDY_K8S_IMAGE` (the pushed `iostudy image` of this build),
/// `IOSTUDY_K8S_TARGET` (a directory this host and every node see as the same files,
/// mounted by pods as `host_path`), optional `IOSTUDY_K8S_RUNTIME_CLASS`.
fn a_study_runs_on_a_real_cluster() -> Needs {
    let kubeconfig = std::env::var("IOSTUDY_KUBECONFIG").ok();
    optional(kubeconfig.is_some(), "a Kubernetes cluster: IOSTUDY_KUBECONFIG, IOSTUDY_K8S_IMAGE, IOSTUDY_K8S_TARGET")?;
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set with IOSTUDY_KUBECONFIG"));
    let (image, target) = (env("IOSTUDY_K8S_IMAGE"), env("IOSTUDY_K8S_TARGET"));
    let class = std::env::var("IOSTUDY_K8S_RUNTIME_CLASS").ok();
    let dir = scratch();
    let class_line = class.map(|c| format!("runtime_class = {c:?}\n")).unwrap_or_default();
    let s = dir.path().join("s.toml");
    std::fs::write(
        &s,
        format!(
            "[study]\nname = \"k8s-e2e\"\ntarget = {target:?}\nkeep_files = false\ndrop_caches = false\n\n\
             [kubernetes]\nkubeconfig = {:?}\nimage = {image:?}\nvolume = {{ host_path = {target:?} }}\n\n\
             [workload]\nbs = \"64K\"\nsize = \"8M\"\nnumjobs = 2\nruntime = \"2s\"\n\n\
             [matrix]\nscenarios = [\"k8s\"]\nclients = [2]\npatterns = [\"read\", \"write\"]\n\n\
             [scenarios.k8s]\nruntime = \"kubernetes\"\n{class_line}",
            kubeconfig.unwrap()
        ),
    )
    .unwrap();
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
    Ok(())
}

crate::trials![
    plan_writes_each_cells_job_as_yaml,
    kubernetes_study_errors_are_located,
    an_unreachable_cluster_is_refused_before_the_first_cell,
    a_study_runs_on_a_real_cluster,
];
