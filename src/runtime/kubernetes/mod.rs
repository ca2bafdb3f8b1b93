//! The `kubernetes` runtime: each cell one Indexed Job, its pods the clients, the
//! scenario's RuntimeClass choosing runc, Kata, gVisor… as a cluster's users do.
//!
//! The seed study ran its clients this way and switched runC for Kata with a
//! RuntimeClass. Here the controller sees the shared volume at the study's target (a
//! login node with the parallel filesystem mounted, or a node of a one-node cluster
//! with a `host_path`); pods mount the same volume at `mount_path` (`/data`), so the
//! control channel is the one every other backend uses: jobs, ready, go and results
//! cross the volume the I/O is measured on, and the start barrier holds across nodes.
//!
//! One Job per cell, not one pod per client: `completions = parallelism = clients`,
//! `completionMode: Indexed` makes a pod's completion index its client id, and the
//! scheduler spreads the pods over nodes (`topologySpreadConstraints` on the hostname,
//! the seed's two nodes). The Job is created when the cell's first client launches
//! ([`api::Kube::launch`]), watched through its pods, and deleted with foreground
//! propagation when the cell ends, fails or is interrupted; a run killed outright
//! leaves a record that the next run's reap uses to delete its Jobs by label.
//!
//! Manifests come from `k8s-openapi`'s types ([`manifest`]), never from text templates:
//! `iostudy plan --manifests` writes the same objects `run` creates. The API client
//! (`kube`, over a tokio runtime of its own) is behind the `kubernetes` cargo feature,
//! off by default: it doubles the static binary that is also every container's and
//! guest's worker. Built without it, a study naming this runtime is refused with the
//! fix; the workers in the pods never need it.

#[cfg(feature = "kubernetes")]
pub mod api;
#[cfg(feature = "kubernetes")]
pub mod manifest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runtime::{
    Backend, Kind, Probe, RuntimeError, ScenarioContext, Section, SpannedError, Spec, TARGET_MOUNT, Timing,
};

pub static KIND: KubernetesKind = KubernetesKind;

pub struct KubernetesKind;

/// The study file's `[kubernetes]` table and a kubernetes scenario's own keys (which
/// override it): the cluster, the image and the volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeSpec {
    /// The kubeconfig file; default: KUBECONFIG, then ~/.kube/config, then in-cluster.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; default: its current context.
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The worker's image, as `iostudy image` builds it and the user pushes it.
    #[serde(default)]
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; default: Kubernetes' own for the tag.
    #[serde(default)]
    pub image_pull_policy: Option<String>,
    /// The shared target: a PersistentVolumeClaim or a path on every node.
    #[serde(default)]
    pub volume: Option<Volume>,
    /// Where pods mount the volume (the target's path inside clients).
    #[serde(default = "default_mount")]
    pub mount_path: PathBuf,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// `hostname`: pods spread evenly over nodes (maxSkew 1); `none`: as scheduled.
    #[serde(default = "default_spread")]
    pub spread: String,
    /// Requests (and limits) of each client pod: `cpu`, `memory`, `ephemeral-storage`.
    #[serde(default)]
    pub resources: BTreeMap<String, String>,
    /// The RuntimeClass (`kata-qemu`, `gvisor`…); default: the cluster's (runc).
    #[serde(default)]
    pub runtime_class: Option<String>,
    /// How long a finished Job stays for inspection if iostudy could not delete it.
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u32,
}

/// The shared target as pods mount it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    #[serde(default)]
    pub claim: Option<String>,
    #[serde(default)]
    pub host_path: Option<PathBuf>,
}

fn default_namespace() -> String {
    "iostudy".into()
}

fn default_mount() -> PathBuf {
    PathBuf::from(TARGET_MOUNT)
}

fn default_spread() -> String {
    "hostname".into()
}

fn default_ttl() -> u32 {
    600
}

/// Resource names a client pod may ask for.
const RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

impl KubeSpec {
    /// Checks what serde cannot: one volume, known names, DNS-safe namespace.
    fn validate(&self, section: &Section<'_>) -> Result<(), SpannedError> {
        if self.image.is_empty() {
            return Err(section.error(
                "names no image",
                Some("`iostudy image -o iostudy.tar`, push it where the nodes pull from (e.g. `skopeo copy oci-archive:iostudy.tar docker://registry.example/iostudy:0.1`), then set image = \"…\" in [kubernetes]".into()),
            ));
        }
        match &self.volume {
            None => {
                return Err(section.error(
                    "names no volume: the pods need the study's target",
                    Some("volume = { claim = \"NAME\" } (a PersistentVolumeClaim on the shared filesystem) or { host_path = \"/mnt/…\" }, in [kubernetes]".into()),
                ));
            }
            Some(v) if v.claim.is_some() == v.host_path.is_some() => {
                return Err(section.error(
                    "volume must name exactly one of claim and host_path",
                    Some("volume = { claim = \"NAME\" } or volume = { host_path = \"/mnt/…\" }".into()),
                ));
            }
            Some(_) => {}
        }
        if !is_dns_label(&self.namespace) {
            return Err(section.error(
                format!("namespace `{}` is not a valid Kubernetes name", self.namespace),
                Some("lower-case letters, digits and '-', at most 63".into()),
            ));
        }
        if let Some(p) = &self.image_pull_policy
            && !PULL_POLICIES.contains(&p.as_str())
        {
            return Err(
                section.error(format!("image_pull_policy `{p}` is not one of {}", PULL_POLICIES.join(", ")), None)
            );
        }
        if !matches!(self.spread.as_str(), "hostname" | "none") {
            return Err(section.error(format!("spread `{}` is not hostname or none", self.spread), None));
        }
        if let Some(bad) = self.resources.keys().find(|k| !RESOURCES.contains(&k.as_str())) {
            return Err(section.error(
                format!("resources: unknown resource `{bad}`"),
                Some(format!("one of {}", RESOURCES.join(", "))),
            ));
        }
        if !self.mount_path.is_absolute() {
            return Err(section.error("mount_path must be an absolute path", None));
        }
        Ok(())
    }

    /// The RuntimeClass, or `default` (the cluster's own runtime) when none is named.
    pub fn class_name(&self) -> &str {
        self.runtime_class.as_deref().unwrap_or("default")
    }
}

/// The barrier's timing: go crosses the shared filesystem to pods on other nodes.
pub fn timing(clients: u32) -> Timing {
    Timing { lead: Duration::from_millis(2000 + 10 * u64::from(clients)), poll: Duration::from_millis(20) }
}

/// Whether `s` is a DNS-1123 label (a namespace, a Job's name).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Kind for KubernetesKind {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn parse(&self, section: &Section<'_>) -> Result<Arc<dyn Spec>, SpannedError> {
        if !cfg!(feature = "kubernetes") {
            return Err(section.error(
                "this iostudy was built without Kubernetes support",
                Some("build the controller with it: cargo build --release --features kubernetes (the pods' image needs no rebuild)".into()),
            ));
        }
        let spec: KubeSpec = section.deserialize()?;
        spec.validate(section)?;
        Ok(Arc::new(spec))
    }

    fn places_clients(&self) -> bool {
        true
    }

    fn rebuild(&self, settings: &serde_json::Value) -> Result<Arc<dyn Spec>, RuntimeError> {
        let spec: KubeSpec = serde_json::from_value(settings.clone())
            .map_err(|e| RuntimeError::Setup(format!("kubernetes settings: {e}")))?;
        Ok(Arc::new(spec))
    }

    fn known(&self) -> Vec<Arc<dyn Spec>> {
        // The cluster found as a study without `kubeconfig` would find it.
        let spec: KubeSpec = serde_json::from_value(serde_json::json!({})).expect("every key has a default");
        vec![Arc::new(spec)]
    }

    fn reap(&self, run_state: &Path) {
        #[cfg(feature = "kubernetes")]
        api::reap(run_state);
        #[cfg(not(feature = "kubernetes"))]
        let _ = run_state;
    }
}

impl Spec for KubeSpec {
    fn kind(&self) -> &'static dyn Kind {
        &KIND
    }

    fn name(&self) -> String {
        format!("kubernetes/{}", self.class_name())
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serializes")
    }

    fn probe(&self) -> Probe {
        #[cfg(feature = "kubernetes")]
        return api::probe(self);
        #[cfg(not(feature = "kubernetes"))]
        Probe::of(self).fail("this iostudy was built without Kubernetes support: cargo build --features kubernetes")
    }

    fn startup_estimate(&self) -> Duration {
        // Scheduling, a pull of a ~10 MB image, a sandbox (Kata: a VM).
        Duration::from_secs(5)
    }

    fn manifest(&self, cell: &crate::runtime::ManifestCell<'_>) -> Option<Result<String, RuntimeError>> {
        #[cfg(feature = "kubernetes")]
        return Some(manifest::for_plan(self, cell));
        #[cfg(not(feature = "kubernetes"))]
        {
            let _ = cell;
            Some(Err(RuntimeError::Unavailable("built without Kubernetes support".into())))
        }
    }

    fn own_cgroups(&self) -> bool {
        true
    }

    fn prepare(&self, ctx: &ScenarioContext) -> Result<Box<dyn Backend>, RuntimeError> {
        #[cfg(feature = "kubernetes")]
        return Ok(Box::new(api::Kube::prepare(self, ctx)?));
        #[cfg(not(feature = "kubernetes"))]
        {
            let _ = ctx;
            Err(RuntimeError::Unavailable("built without Kubernetes support".into()))
        }
    }
}

/// The seed's Kata scenario as a spec, for tests.
#[cfg(all(test, feature = "kubernetes"))]
pub(crate) fn test_spec() -> KubeSpec {
    KubeSpec {
        kubeconfig: None,
        context: None,
        namespace: "iostudy".into(),
        image: "registry.example/iostudy:0.2".into(),
        image_pull_policy: Some("IfNotPresent".into()),
        volume: Some(Volume { claim: Some("beegfs".into()), host_path: None }),
        mount_path: PathBuf::from("/data"),
        node_selector: BTreeMap::from([("iostudy/worker".into(), "true".into())]),
        spread: "hostname".into(),
        resources: BTreeMap::from([("cpu".into(), "4".into()), ("memory".into(), "8Gi".into())]),
        runtime_class: Some("kata-qemu".into()),
        ttl_seconds: 600,
    }
}
