//! A cell's Job, built from `k8s-openapi`'s types: what `run` creates and what
//! `plan --manifests` writes for review.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, HostPathVolumeSource, ObjectFieldSelector, PersistentVolumeClaimVolumeSource,
    PodSpec, PodTemplateSpec, ResourceRequirements, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::KubeSpec;

/// Labels every object of a run carries: the run's reap and the pods' watch select by them.
pub const RUN_LABEL: &str = "iostudy.io/run";
pub const CELL_LABEL: &str = "iostudy.io/cell";
pub const STUDY_LABEL: &str = "iostudy.io/study";
/// The Job's own name, on its pods: what the spread constraint counts.
pub const JOB_LABEL: &str = "iostudy.io/job";
/// Where Kubernetes writes an Indexed Job pod's completion index.
pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// The worker's client id inside the pod, from the completion index.
const INDEX_ENV: &str = "IOSTUDY_CLIENT";
const VOLUME: &str = "target";

/// What one cell's Job is made of.
#[derive(Debug, Clone)]
pub struct CellJob<'a> {
    /// The Job's name (a DNS label): `iostudy-<run>-<cell index>`.
    pub name: &'a str,
    pub study: &'a str,
    pub run_id: &'a str,
    pub cell_id: &'a str,
    pub clients: u32,
    /// The cell's deadline: the Job's `activeDeadlineSeconds`.
    pub deadline: Duration,
    /// The cell's control directory as pods see it: `job-<k>.json` are posted there.
    pub control: &'a Path,
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends; a value
/// that had to change keeps a hash of the original, so two cells never share one.
pub fn label_value(s: &str) -> String {
    let clean: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    let trimmed = clean.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed == s && s.len() <= 63 {
        return s.to_string();
    }
    let hash = &crate::image::sha256_hex(s.as_bytes())[..10];
    let keep: String = trimmed.chars().take(52).collect();
    let keep = keep.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if keep.is_empty() { hash.to_string() } else { format!("{keep}-{hash}") }
}

/// The labels of a cell's Job and pods.
pub fn labels(job: &CellJob<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (STUDY_LABEL.to_string(), label_value(job.study)),
        (RUN_LABEL.to_string(), label_value(job.run_id)),
        (CELL_LABEL.to_string(), label_value(job.cell_id)),
        (JOB_LABEL.to_string(), job.name.to_string()),
        ("app.kubernetes.io/name".to_string(), "iostudy".to_string()),
    ])
}

/// The cell's Indexed Job.
pub fn job(spec: &KubeSpec, cell: &CellJob<'_>) -> Job {
    let labels = labels(cell);
    let volume = match &spec.volume {
        Some(super::Volume { claim: Some(claim), .. }) => Volume {
            name: VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: None,
            }),
            ..Volume::default()
        },
        Some(super::Volume { host_path: Some(path), .. }) => Volume {
            name: VOLUME.into(),
            host_path: Some(HostPathVolumeSource { path: path.display().to_string(), type_: Some("Directory".into()) }),
            ..Volume::default()
        },
        _ => unreachable!("a parsed spec names one volume"),
    };
    let resources = (!spec.resources.is_empty()).then(|| {
        let q: BTreeMap<String, Quantity> =
            spec.resources.iter().map(|(k, v)| (k.clone(), Quantity(v.clone()))).collect();
        ResourceRequirements { requests: Some(q.clone()), limits: Some(q), ..ResourceRequirements::default() }
    });
    let spread = (spec.spread == "hostname").then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(JOB_LABEL.to_string(), cell.name.to_string())])),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]
    });
    let job_file = crate::control::job_file_pattern(cell.control, &format!("$({INDEX_ENV})"));
    let container = Container {
        name: "worker".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        // The image's entrypoint is `/iostudy worker`.
        args: Some(vec!["--job".into(), job_file.display().to_string()]),
        env: Some(vec![EnvVar {
            name: INDEX_ENV.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.annotations['{INDEX_ANNOTATION}']"),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME.into(),
            mount_path: spec.mount_path.display().to_string(),
            ..VolumeMount::default()
        }]),
        resources,
        ..Container::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        runtime_class_name: spec.runtime_class.clone(),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        topology_spread_constraints: spread,
        volumes: Some(vec![volume]),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(5),
        ..PodSpec::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(cell.name.to_string()),
            namespace: Some(spec.namespace.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            completions: Some(cell.clients as i32),
            parallelism: Some(cell.clients as i32),
            completion_mode: Some("Indexed".into()),
            backoff_limit: Some(0),
            active_deadline_seconds: Some(cell.deadline.as_secs().max(1) as i64),
            ttl_seconds_after_finished: Some(spec.ttl_seconds as i32),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// The Job as YAML, with a header saying what it is.
/// The run id `plan --manifests` Jobs carry in place of a run's.
pub const PLAN_RUN_ID: &str = "plan";

/// A cell's Job as YAML, exactly as `iostudy run` would create it (but for the run id,
/// [`PLAN_RUN_ID`]), with a header saying what it is.
pub fn for_plan(spec: &KubeSpec, m: &crate::runtime::ManifestCell<'_>) -> Result<String, crate::runtime::RuntimeError> {
    use crate::control::{CONTROL_DIR, cell_dir};
    let cell = m.cell;
    let name = format!("iostudy-{PLAN_RUN_ID}-{}", m.index);
    let control = cell_dir(&spec.mount_path.join(CONTROL_DIR).join(PLAN_RUN_ID), m.index);
    let deadline = cell.deadline(super::timing(cell.clients).lead, m.barrier_timeout, m.cell_timeout);
    let cell_job = CellJob {
        name: &name,
        study: m.study,
        run_id: PLAN_RUN_ID,
        cell_id: &cell.id,
        clients: cell.clients,
        deadline,
        control: &control,
    };
    let header = format!(
        "iostudy {} — study {:?}, cell {}\n\
         `iostudy run` creates this Job (with its own run id) after posting each client's job file\n\
         under {} on the shared volume, and sends go once every pod reported ready: applied by\n\
         hand, its pods wait for job files that only a run writes.",
        env!("CARGO_PKG_VERSION"),
        m.study,
        cell.id,
        control.display()
    );
    to_yaml(&job(spec, &cell_job), &header).map_err(crate::runtime::RuntimeError::Setup)
}

pub fn to_yaml(job: &Job, header: &str) -> Result<String, String> {
    let body = serde_yaml::to_string(job).map_err(|e| format!("cannot write YAML: {e}"))?;
    let header: String = header.lines().map(|l| format!("# {l}\n")).collect();
    Ok(format!("{header}{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_cell_is_one_indexed_job_with_its_runtime_class_spread_over_nodes() {
        let control = PathBuf::from("/data/.iostudy-control/r1/cell-3");
        let cell = CellJob {
            name: "iostudy-r1-3",
            study: "seed study",
            run_id: "r1",
            cell_id: "kata.read.c8.r1",
            clients: 8,
            deadline: Duration::from_secs(95),
            control: &control,
        };
        let j = job(&super::super::test_spec(), &cell);
        let v = serde_json::to_value(&j).unwrap();
        let s = &v["spec"];
        assert_eq!(s["completions"], 8);
        assert_eq!(s["parallelism"], 8);
        assert_eq!(s["completionMode"], "Indexed");
        assert_eq!(s["backoffLimit"], 0);
        assert_eq!(s["activeDeadlineSeconds"], 95);
        assert_eq!(s["ttlSecondsAfterFinished"], 600);
        let pod = &s["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["runtimeClassName"], "kata-qemu");
        assert_eq!(pod["nodeSelector"]["iostudy/worker"], "true");
        let spread = &pod["topologySpreadConstraints"][0];
        assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(spread["maxSkew"], 1);
        assert_eq!(spread["whenUnsatisfiable"], "DoNotSchedule");
        assert_eq!(spread["labelSelector"]["matchLabels"][JOB_LABEL], "iostudy-r1-3");
        assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "beegfs");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.example/iostudy:0.2");
        assert_eq!(
            c["args"],
            serde_json::json!(["--job", "/data/.iostudy-control/r1/cell-3/job-$(IOSTUDY_CLIENT).json"])
        );
        assert_eq!(
            c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
            format!("metadata.annotations['{INDEX_ANNOTATION}']")
        );
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/data");
        assert_eq!(c["resources"]["limits"]["memory"], "8Gi");
        assert_eq!(c["resources"]["requests"]["cpu"], "4");
        for labels in [&v["metadata"]["labels"], &s["template"]["metadata"]["labels"]] {
            assert_eq!(labels[STUDY_LABEL], label_value("seed study"));
            assert_eq!(labels[RUN_LABEL], "r1");
            assert_eq!(labels[CELL_LABEL], "kata.read.c8.r1");
        }
    }

    #[test]
    fn label_values_are_valid_and_distinct() {
        assert_eq!(label_value("runc.read.c1.r1"), "runc.read.c1.r1");
        let a = label_value("a/b.read.c1.r1");
        let b = label_value("a_b.read.c1.r1");
        assert_ne!(a, b);
        for v in [a, b, label_value(&"x".repeat(100)), label_value("--"), label_value("seed study")] {
            assert!(v.len() <= 63 && !v.is_empty(), "{v}");
            assert!(v.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{v}");
            assert!(
                v.starts_with(|c: char| c.is_ascii_alphanumeric()) && v.ends_with(|c: char| c.is_ascii_alphanumeric()),
                "{v}"
            );
        }
    }

    #[test]
    fn a_host_path_volume_must_be_a_directory() {
        let mut s = super::super::test_spec();
        s.volume = Some(super::super::Volume { claim: None, host_path: Some("/mnt/beegfs/iostudy".into()) });
        s.runtime_class = None;
        let control = PathBuf::from("/data/c");
        let cell = CellJob {
            name: "j",
            study: "s",
            run_id: "r",
            cell_id: "c",
            clients: 1,
            deadline: Duration::ZERO,
            control: &control,
        };
        let v = serde_json::to_value(job(&s, &cell)).unwrap();
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["hostPath"],
            serde_json::json!({"path": "/mnt/beegfs/iostudy", "type": "Directory"})
        );
        assert!(pod.get("runtimeClassName").is_none(), "the cluster's default runtime");
        assert_eq!(v["spec"]["activeDeadlineSeconds"], 1);
    }
}
