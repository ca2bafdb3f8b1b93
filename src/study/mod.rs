//! Studies: the study file, its validation, and its expansion into a [`plan::Plan`].
//!
//! A study is validated completely before anything runs: every workload combination is
//! built and checked, every scenario resolved to a runtime, so a study that would fail
//! at cell 30 fails before cell 1 — with file:line:col and a hint.

pub mod file;
pub mod plan;

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::engine::{Pattern, Workload};
use crate::runtime::RuntimeSpec;
use file::{ScenarioSection, StudyFile};

/// A study file problem, located in the file.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("cannot read study file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", format_at(path, *line, *col, message, hint.as_deref()))]
    At { path: PathBuf, line: usize, col: usize, message: String, hint: Option<String> },
}

fn format_at(path: &Path, line: usize, col: usize, message: &str, hint: Option<&str>) -> String {
    let mut s = format!("{}:{line}:{col}: {message}", path.display());
    if let Some(h) = hint {
        s.push_str(&format!(" (hint: {h})"));
    }
    s
}

/// Workload keys a study may set (everything the engine takes but the pattern, which is
/// a matrix axis, and the directory, which the runner assigns per client).
pub const WORKLOAD_KEYS: &[&str] = &[
    "bs",
    "size",
    "numjobs",
    "direct",
    "ioengine",
    "iodepth",
    "runtime",
    "ramp_time",
    "rwmixread",
    "randseed",
    "end_fsync",
    "fsync_on_close",
    "invalidate",
    "uring_fallback",
    "log_interval",
];

/// A scenario: a name, and the runtime its clients run in.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub label: String,
    pub runtime: RuntimeSpec,
}

/// A workload option with several values: one matrix axis.
#[derive(Debug, Clone)]
pub struct Axis {
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// A validated study.
#[derive(Debug, Clone)]
pub struct Study {
    pub path: PathBuf,
    pub source: String,
    pub name: String,
    pub description: Option<String>,
    pub target: PathBuf,
    pub repetitions: u32,
    pub baseline: String,
    pub cell_timeout: Option<Duration>,
    pub barrier_timeout: Duration,
    pub drop_caches: bool,
    pub keep_files: bool,
    pub scenarios: Vec<Scenario>,
    pub clients: Vec<u32>,
    pub patterns: Vec<Pattern>,
    /// Workload options with one value.
    pub fixed: toml::Table,
    /// Workload options with several values, in file order of keys (alphabetical).
    pub axes: Vec<Axis>,
}

impl Study {
    /// Reads and validates a study file.
    pub fn load(path: &Path) -> Result<Study, StudyError> {
        let source =
            std::fs::read_to_string(path).map_err(|source| StudyError::Read { path: path.to_path_buf(), source })?;
        Study::parse(path, &source)
    }

    /// Validates study text; `path` is used in messages.
    pub fn parse(path: &Path, source: &str) -> Result<Study, StudyError> {
        let at = |span: Range<usize>, message: String, hint: Option<String>| {
            let (line, col) = line_col(source, span.start);
            StudyError::At { path: path.to_path_buf(), line, col, message, hint }
        };
        let file: StudyFile = toml::from_str(source).map_err(|e| {
            let message = e.message().trim().to_string();
            let hint = unknown_field_hint(&message);
            at(e.span().unwrap_or(0..0), message, hint)
        })?;

        // Scenarios: defined ones, or built-in names.
        let mut scenarios = Vec::new();
        let mut seen = BTreeSet::new();
        for name in file.matrix.scenarios.get_ref() {
            if !seen.insert(name.get_ref().clone()) {
                return Err(at(name.span(), format!("scenario `{}` is listed twice", name.get_ref()), None));
            }
            let scenario = match file.scenarios.get(name.get_ref()) {
                Some(section) => {
                    resolve_scenario(name.get_ref(), section).map_err(|(span, msg, hint)| at(span, msg, hint))?
                }
                None => builtin_scenario(name.get_ref()).ok_or_else(|| {
                    at(
                        name.span(),
                        format!("scenario `{}` is not defined", name.get_ref()),
                        Some(format!(
                            "add a [scenarios.{}] table with a runtime, or use a built-in scenario: {}",
                            name.get_ref(),
                            BUILTIN_SCENARIOS.join(", ")
                        )),
                    )
                })?,
            };
            scenarios.push(scenario);
        }
        if scenarios.is_empty() {
            return Err(at(
                file.matrix.scenarios.span(),
                "matrix.scenarios is empty".into(),
                Some("list at least one scenario, e.g. [\"bare\"]".into()),
            ));
        }
        for (name, section) in &file.scenarios {
            if !seen.contains(name) {
                return Err(at(
                    section.span(),
                    format!("scenario `{name}` is defined but not listed in matrix.scenarios"),
                    Some(format!("add \"{name}\" to matrix.scenarios or remove [scenarios.{name}]")),
                ));
            }
        }

        let clients: Vec<u32> = file.matrix.clients.get_ref().iter().map(|c| *c.get_ref()).collect();
        if clients.is_empty() {
            return Err(at(
                file.matrix.clients.span(),
                "matrix.clients is empty".into(),
                Some("e.g. clients = [1, 8, 64]".into()),
            ));
        }
        if let Some(zero) = file.matrix.clients.get_ref().iter().find(|c| *c.get_ref() == 0) {
            return Err(at(zero.span(), "a cell needs at least one client".into(), None));
        }
        let patterns: Vec<Pattern> = file.matrix.patterns.get_ref().iter().map(|p| *p.get_ref()).collect();
        if patterns.is_empty() {
            return Err(at(
                file.matrix.patterns.span(),
                "matrix.patterns is empty".into(),
                Some("e.g. patterns = [\"read\", \"randread\", \"write\", \"randwrite\"]".into()),
            ));
        }

        // Workload: every value checked through the engine's own Workload.
        let mut fixed = toml::Table::new();
        let mut axes = Vec::new();
        for (key, value) in file.workload.get_ref() {
            if !WORKLOAD_KEYS.contains(&key.as_str()) {
                let hint = match key.as_str() {
                    "rw" => "patterns are a matrix axis: set matrix.patterns".to_string(),
                    "directory" => {
                        "files live under study.target; the runner gives each client its own directory".to_string()
                    }
                    _ => match closest(key, WORKLOAD_KEYS) {
                        Some(c) => format!("did you mean `{c}`? known options: {}", WORKLOAD_KEYS.join(", ")),
                        None => format!("known options: {}", WORKLOAD_KEYS.join(", ")),
                    },
                };
                return Err(at(value.span(), format!("unknown workload option `{key}`"), Some(hint)));
            }
            let values = match value.get_ref() {
                toml::Value::Array(items) => {
                    if items.is_empty() {
                        return Err(at(
                            value.span(),
                            format!("workload.{key} is an empty list"),
                            Some("give one value or a list of values to compare".into()),
                        ));
                    }
                    items.clone()
                }
                v => vec![v.clone()],
            };
            for v in &values {
                check_option(key, v).map_err(|msg| at(value.span(), format!("workload.{key}: {msg}"), None))?;
            }
            if values.len() == 1 {
                fixed.insert(key.clone(), values[0].clone());
            } else {
                axes.push(Axis { key: key.clone(), values });
            }
        }
        for key in ["bs", "size"] {
            if !file.workload.get_ref().contains_key(key) {
                return Err(at(
                    file.workload.span(),
                    format!("workload.{key} is required"),
                    Some(format!("e.g. {key} = \"{}\"", if key == "bs" { "64K" } else { "1G" })),
                ));
            }
        }

        let baseline = match &file.study.baseline {
            Some(b) => {
                if !scenarios.iter().any(|s| &s.name == b.get_ref()) {
                    return Err(at(
                        b.span(),
                        format!("baseline `{}` is not a scenario of this study", b.get_ref()),
                        Some(format!("one of: {}", names(&scenarios))),
                    ));
                }
                b.get_ref().clone()
            }
            None => scenarios[0].name.clone(),
        };
        if *file.study.repetitions.get_ref() == 0 {
            return Err(at(file.study.repetitions.span(), "repetitions must be at least 1".into(), None));
        }

        let study = Study {
            path: path.to_path_buf(),
            source: source.to_string(),
            name: file.study.name,
            description: file.study.description,
            target: file.study.target.get_ref().clone(),
            repetitions: *file.study.repetitions.get_ref(),
            baseline,
            cell_timeout: file.study.cell_timeout.map(|t| t.get_ref().0),
            barrier_timeout: file.study.barrier_timeout.map_or(Duration::from_secs(600), |t| t.get_ref().0),
            drop_caches: file.study.drop_caches,
            keep_files: file.study.keep_files,
            scenarios,
            clients,
            patterns,
            fixed,
            axes,
        };
        // Every combination must make a valid workload.
        for combo in study.combinations() {
            if let Err(msg) = study.workload(Pattern::Read, &combo).and_then(|w| w.validate()) {
                return Err(at(file.workload.span(), format!("workload {}: {msg}", describe(&combo)), None));
            }
        }
        if !study.target.is_absolute() {
            return Err(at(
                file.study.target.span(),
                format!("study.target `{}` must be an absolute path", study.target.display()),
                Some("containers and VMs see the target through a mount; give its full host path".into()),
            ));
        }
        Ok(study)
    }

    /// Every combination of axis values (one empty combination when there are no axes).
    pub fn combinations(&self) -> Vec<Vec<(String, toml::Value)>> {
        let mut out = vec![Vec::new()];
        for axis in &self.axes {
            let mut next = Vec::new();
            for combo in &out {
                for v in &axis.values {
                    let mut c = combo.clone();
                    c.push((axis.key.clone(), v.clone()));
                    next.push(c);
                }
            }
            out = next;
        }
        out
    }

    /// The workload of one pattern and axis combination; the directory is a
    /// placeholder the runner replaces per client.
    pub fn workload(&self, pattern: Pattern, combo: &[(String, toml::Value)]) -> Result<Workload, String> {
        let mut t = self.fixed.clone();
        for (k, v) in combo {
            t.insert(k.clone(), v.clone());
        }
        t.insert("rw".into(), toml::Value::String(pattern.name().into()));
        t.insert("directory".into(), toml::Value::String("/".into()));
        t.entry("log_interval").or_insert_with(|| toml::Value::String("100ms".into()));
        Workload::deserialize_table(t)
    }
}

impl Workload {
    fn deserialize_table(t: toml::Table) -> Result<Workload, String> {
        use serde::Deserialize;
        Workload::deserialize(toml::Value::Table(t)).map_err(|e| e.message().trim().to_string())
    }
}

/// Checks one workload option's value by building a workload around it.
fn check_option(key: &str, v: &toml::Value) -> Result<(), String> {
    let mut t = toml::Table::new();
    t.insert("rw".into(), "read".into());
    t.insert("bs".into(), "4k".into());
    t.insert("size".into(), "1m".into());
    t.insert("directory".into(), "/".into());
    t.insert(key.to_string(), v.clone());
    Workload::deserialize_table(t).map(drop)
}

/// Human description of an axis combination, e.g. `bs=4k iodepth=8`.
pub fn describe(combo: &[(String, toml::Value)]) -> String {
    if combo.is_empty() {
        return "(base)".into();
    }
    combo.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect::<Vec<_>>().join(" ")
}

/// A TOML value as plain text (strings without quotes).
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Scenario names usable without a `[scenarios.NAME]` table.
pub const BUILTIN_SCENARIOS: &[&str] = &["bare", "runc", "crun", "runsc", "gvisor", "youki"];

fn builtin_scenario(name: &str) -> Option<Scenario> {
    let runtime = match name {
        "bare" => RuntimeSpec::Process,
        "runc" | "crun" | "runsc" | "youki" => RuntimeSpec::Oci { runtime: name.to_string(), args: Vec::new() },
        "gvisor" => RuntimeSpec::Oci { runtime: "runsc".to_string(), args: Vec::new() },
        _ => return None,
    };
    Some(Scenario { name: name.to_string(), label: name.to_string(), runtime })
}

type SpannedError = (Range<usize>, String, Option<String>);

fn resolve_scenario(name: &str, section: &Spanned<ScenarioSection>) -> Result<Scenario, SpannedError> {
    use crate::runtime::microvm::{Accel, MicrovmConfig, Share};
    let s = section.get_ref();
    let runtime = match s.runtime.get_ref().as_str() {
        "process" => RuntimeSpec::Process,
        "mock" => RuntimeSpec::Mock,
        "oci" => {
            let rt = s.oci_runtime.as_ref().ok_or_else(|| {
                (
                    section.span(),
                    format!("scenario `{name}` uses runtime `oci` but names no oci_runtime"),
                    Some("add oci_runtime = \"runc\" (or crun, runsc, youki, kata-runtime, or a path)".to_string()),
                )
            })?;
            RuntimeSpec::Oci { runtime: rt.get_ref().clone(), args: s.runtime_args.clone() }
        }
        "microvm" => {
            let share_value = s.share.as_ref().ok_or_else(|| {
                (
                    section.span(),
                    format!("scenario `{name}` uses runtime `microvm` but names no share"),
                    Some("add share = \"9p\" (Kata 1.x's virtio-9p) or share = \"virtiofs\"".to_string()),
                )
            })?;
            let share = match share_value.get_ref().as_str() {
                "9p" => Share::NineP,
                "virtiofs" | "virtio-fs" => Share::Virtiofs,
                other => {
                    return Err((
                        share_value.span(),
                        format!("unknown share `{other}`"),
                        Some("9p or virtiofs".into()),
                    ));
                }
            };
            let mut c = MicrovmConfig::new(share);
            if let Some(a) = &s.accel {
                c.accel = match a.get_ref().as_str() {
                    "auto" => Accel::Auto,
                    "kvm" => Accel::Kvm,
                    "tcg" => Accel::Tcg,
                    other => {
                        return Err((a.span(), format!("unknown accel `{other}`"), Some("auto, kvm or tcg".into())));
                    }
                };
            }
            c.vcpus = s.vcpus.unwrap_or(c.vcpus);
            c.memory = s.memory.unwrap_or(c.memory);
            c.kernel = s.kernel.clone();
            c.msize = s.msize.unwrap_or(c.msize);
            c.cache = s.cache.clone().unwrap_or(c.cache);
            c.security_model = s.security_model.clone().unwrap_or(c.security_model);
            c.virtiofsd_threads = s.virtiofsd_threads;
            c.virtiofsd_args = s.virtiofsd_args.clone().unwrap_or_default();
            c.validate().map_err(|e| (section.span(), format!("scenario `{name}`: {e}"), None))?;
            RuntimeSpec::Microvm(c)
        }
        other => {
            let hint = match other {
                "containerd" | "kubernetes" | "ssh" => {
                    format!(
                        "the `{other}` runtime is not available in this version of iostudy; runtimes: process, oci, microvm"
                    )
                }
                _ => "runtimes: process, oci, microvm".to_string(),
            };
            return Err((s.runtime.span(), format!("unknown runtime `{other}` in scenario `{name}`"), Some(hint)));
        }
    };
    if !matches!(runtime, RuntimeSpec::Oci { .. })
        && let Some(rt) = &s.oci_runtime
    {
        return Err((
            rt.span(),
            format!("oci_runtime is only for runtime = \"oci\" (scenario `{name}` uses `{}`)", s.runtime.get_ref()),
            None,
        ));
    }
    if !matches!(runtime, RuntimeSpec::Microvm(_)) && s.has_microvm_settings() {
        return Err((
            section.span(),
            format!("scenario `{name}` sets micro-VM options but uses runtime `{}`", s.runtime.get_ref()),
            Some("share, vcpus, memory, accel, kernel, msize, cache, security_model, virtiofsd_threads and virtiofsd_args are for runtime = \"microvm\"".into()),
        ));
    }
    Ok(Scenario { name: name.to_string(), label: s.label.clone().unwrap_or_else(|| name.to_string()), runtime })
}

fn names(scenarios: &[Scenario]) -> String {
    scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    closest(field, &expected).map(|c| format!("did you mean `{c}`?"))
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The candidate closest to `word` by edit distance, if it is close.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.runtime)
    }
}

#[cfg(test)]
mod tests;
