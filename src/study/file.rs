//! The study file (TOML) as written by a user, with the source span of every value.
//!
//! Parsing keeps spans (`toml::Spanned`) so that every error — a typo in a key, a bad
//! size, a scenario that is not defined — points at file:line:col. Workload options are
//! read as raw TOML values first: any of them may be a list, and a list joins the
//! matrix as an axis. Each value is checked by deserializing it through the engine's
//! own `Workload`, so the study file accepts exactly what `iostudy bench` accepts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::engine::{Bytes, Pattern, Span};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyFile {
    pub study: StudySection,
    pub workload: Spanned<BTreeMap<String, Spanned<toml::Value>>>,
    pub matrix: MatrixSection,
    #[serde(default)]
    pub scenarios: BTreeMap<String, Spanned<ScenarioSection>>,
}

/// `[study]`: what the study is and where it runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySection {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Directory every client's files live in (a shared filesystem on a cluster).
    pub target: Spanned<PathBuf>,
    #[serde(default = "one")]
    pub repetitions: Spanned<u32>,
    /// Scenario the others are compared against (default: the first).
    #[serde(default)]
    pub baseline: Option<Spanned<String>>,
    /// Longest a cell may take from launch to the last result (default: derived from
    /// the workload's ramp and runtime).
    #[serde(default)]
    pub cell_timeout: Option<Spanned<Span>>,
    /// Longest clients may take to lay out their files and report ready.
    #[serde(default)]
    pub barrier_timeout: Option<Spanned<Span>>,
    /// Drop the host page cache before each cell (root only).
    #[serde(default = "yes")]
    pub drop_caches: bool,
    /// Keep the data files under the target after the run, for the next run to reuse
    /// (as fio does); `false` removes them when the run ends.
    #[serde(default = "yes")]
    pub keep_files: bool,
}

/// `[matrix]`: the axes every study has.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixSection {
    pub scenarios: Spanned<Vec<Spanned<String>>>,
    pub clients: Spanned<Vec<Spanned<u32>>>,
    pub patterns: Spanned<Vec<Spanned<Pattern>>>,
}

/// `[scenarios.NAME]`: how a scenario's clients run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSection {
    /// `process`, `oci`, `microvm` or (tests only) `mock`.
    pub runtime: Spanned<String>,
    /// For `oci`: `runc`, `crun`, `runsc`, `youki`, `kata-runtime`, or a path.
    #[serde(default)]
    pub oci_runtime: Option<Spanned<String>>,
    /// For `oci`: extra global arguments, e.g. `["--platform=ptrace"]` for runsc.
    #[serde(default)]
    pub runtime_args: Vec<String>,
    /// Display name in reports (default: the scenario's key).
    #[serde(default)]
    pub label: Option<String>,
    /// For `microvm`: `9p` or `virtiofs`.
    #[serde(default)]
    pub share: Option<Spanned<String>>,
    /// For `microvm`: guest vCPUs (default 1).
    #[serde(default)]
    pub vcpus: Option<u32>,
    /// For `microvm`: guest memory (default 512M).
    #[serde(default)]
    pub memory: Option<Bytes>,
    /// For `microvm`: `auto` (probe KVM, fall back to TCG), `kvm` or `tcg`.
    #[serde(default)]
    pub accel: Option<Spanned<String>>,
    /// For `microvm`: guest kernel image (default: newest /boot/vmlinuz-* with modules).
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// For `microvm` with 9p: message size (default 512K).
    #[serde(default)]
    pub msize: Option<Bytes>,
    /// For `microvm`: 9p cache mode (none, loose, fscache, mmap) or virtiofsd's
    /// (auto, never, always).
    #[serde(default)]
    pub cache: Option<String>,
    /// For `microvm` with 9p: QEMU security model (default none).
    #[serde(default)]
    pub security_model: Option<String>,
    /// For `microvm` with virtio-fs: virtiofsd thread pool size.
    #[serde(default)]
    pub virtiofsd_threads: Option<u32>,
    /// For `microvm` with virtio-fs: extra virtiofsd arguments.
    #[serde(default)]
    pub virtiofsd_args: Option<Vec<String>>,
}

impl ScenarioSection {
    /// Whether any micro-VM setting is present.
    pub fn has_microvm_settings(&self) -> bool {
        self.share.is_some()
            || self.vcpus.is_some()
            || self.memory.is_some()
            || self.accel.is_some()
            || self.kernel.is_some()
            || self.msize.is_some()
            || self.cache.is_some()
            || self.security_model.is_some()
            || self.virtiofsd_threads.is_some()
            || self.virtiofsd_args.is_some()
    }
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

fn yes() -> bool {
    true
}
