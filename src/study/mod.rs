//! Studies: the study file, its validation, and its expansion into a [`plan::Plan`].
//!
//! A study is validated completely before anything runs: every workload combination is
//! built and checked, every scenario resolved to a runtime, so a study that would fail
//! at cell 30 fails before cell 1 — with file:line:col and a hint.

pub mod file;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::hints::{closest, unknown_field_hint};
use crate::hosts::{Placement, PlacementKind};
use crate::results::HostFacts;
use crate::results::cell::RuntimeRecord;
use crate::results::store::{RUN_SCHEMA_VERSION, RunInfo, ScenarioRecord};
use crate::runtime::{KINDS, Section, SpannedError, Spec};
use crate::workload::{Pattern, Workload};
use file::StudyFile;

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
    "engine",
    "iodepth",
    "runtime",
    "ramp_time",
    "rwmixread",
    "randseed",
    "end_fsync",
    "fsync_on_close",
    "invalidate",
    "engine_fallback",
    "log_interval",
];

/// The most clients a cell may have.
pub const MAX_CLIENTS: u32 = 100_000;
/// The most repetitions of a study.
pub const MAX_REPETITIONS: u32 = 10_000;

/// Keys that bring a fio job file's options into `[workload]`.
const FIO_JOB_KEYS: &[&str] = &["fio_job", "fio_ignore"];

/// The workload options of `[workload] fio_job = "FILE[:SECTION]"`, each located at
/// `fio_job`'s value; options set aside go to `notes`. Options iostudy does not
/// implement are an error unless `fio_ignore` lists them; fio's `rw` is left to the
/// matrix (patterns are an axis).
#[allow(clippy::type_complexity)]
fn fio_job(
    study: &Path,
    workload: &BTreeMap<String, toml::Spanned<toml::Value>>,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, toml::Spanned<toml::Value>)>, crate::runtime::SpannedError> {
    let Some(spec) = workload.get("fio_job") else {
        if let Some(ignore) = workload.get("fio_ignore") {
            return Err((ignore.span(), "fio_ignore without fio_job".into(), Some("add fio_job = \"job.fio\"".into())));
        }
        return Ok(Vec::new());
    };
    let span = spec.span();
    let Some(text) = spec.get_ref().as_str() else {
        return Err((
            span,
            "workload.fio_job must be a string".into(),
            Some("fio_job = \"job.fio\" or \"job.fio:SECTION\"".into()),
        ));
    };
    let (file, section) = match text.rsplit_once(':') {
        Some((f, s)) if !s.contains('/') => (f, Some(s)),
        _ => (text, None),
    };
    let path = study.parent().unwrap_or(Path::new(".")).join(file);
    let err = |msg: String| (span.clone(), format!("workload.fio_job: {msg}"), None);
    let job = crate::fio::job::JobFile::load(&path).map_err(err)?;
    let (job_name, options) = job.options(section).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let t = crate::fio::job::translate(&job_name, &options);
    let ignore: Vec<String> = match workload.get("fio_ignore").map(|v| v.get_ref()) {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(_) => return Err(err("fio_ignore must be a list of option names".into())),
    };
    let refused: Vec<String> = t
        .unsupported
        .iter()
        .filter(|d| !ignore.contains(&d.option.key))
        .map(|d| format!("{}: {d}", path.display()))
        .collect();
    if !refused.is_empty() {
        return Err((
            span,
            format!("fio job [{job_name}] has options iostudy does not implement: {}", refused.join("; ")),
            Some("remove them from the job file, or accept the difference: fio_ignore = [\"option\", …]".into()),
        ));
    }
    for d in &t.set_aside {
        notes.push(format!("fio job [{job_name}]: set aside {d}"));
    }
    for d in t.unsupported.iter().filter(|d| ignore.contains(&d.option.key)) {
        notes.push(format!("fio job [{job_name}]: ignored as asked (fio_ignore) {d}"));
    }
    let mut out = Vec::new();
    for (k, v) in t.workload {
        if k == "rw" {
            notes.push(format!("fio job [{job_name}]: rw={} is left to matrix.patterns", crate::study::value_text(&v)));
            continue;
        }
        out.push((k, toml::Spanned::new(span.clone(), v)));
    }
    Ok(out)
}

/// Workload keys under an earlier name, still accepted.
const RENAMED_WORKLOAD_KEYS: &[&str] = &["uring_fallback"];

/// A scenario: a name, and the runtime its clients run in.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub label: String,
    pub runtime: Arc<dyn Spec>,
    /// The hosts' nodes (indexes) its clients may use; `None`: all of them.
    pub nodes: Option<Vec<usize>>,
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
    /// Every cell also runs traced ([`crate::attribution`]).
    pub attribute: bool,
    /// Where clients run besides this host (`[hosts]`…); `None`: every client here.
    pub placement: Option<Arc<dyn Placement>>,
    pub scenarios: Vec<Scenario>,
    pub clients: Vec<u32>,
    pub patterns: Vec<Pattern>,
    /// Workload options with one value.
    pub fixed: toml::Table,
    /// Workload options with several values, in file order of keys (alphabetical).
    pub axes: Vec<Axis>,
    /// What reading the study noted (a fio job's options set aside).
    pub notes: Vec<String>,
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
        let at = |(span, message, hint): SpannedError| {
            let (line, col) = line_col(source, span.start);
            StudyError::At { path: path.to_path_buf(), line, col, message, hint }
        };
        if source.trim().is_empty() {
            return Err(at((
                0..0,
                "the study file is empty".into(),
                Some("a study needs [study], [workload] and [matrix] tables: start from examples/small.toml".into()),
            )));
        }
        let doc =
            DeTable::parse(source).map_err(|e| at((e.span().unwrap_or(0..0), e.message().trim().into(), None)))?;
        let extensions = Extensions::of(doc.get_ref()).map_err(at)?;
        let mut core = DeTable::new();
        for (k, v) in doc.get_ref().iter() {
            if !extensions.names.iter().any(|n| n.as_str() == k.get_ref().as_ref()) {
                core.insert(k.clone(), v.clone());
            }
        }
        let core = Spanned::new(doc.span(), core);
        let file = StudyFile::deserialize(toml::de::Deserializer::from(core)).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let (message, hint) = explain(doc.get_ref(), e.message().trim(), &span);
            at((span, message, hint))
        })?;
        let placement = extensions.placement(doc.get_ref()).map_err(at)?;
        plain_text("study.name", &file.study.name).map_err(at)?;
        let scenarios = scenarios(doc.get_ref(), &file, placement.as_deref()).map_err(at)?;
        let clients = client_counts(&file.matrix).map_err(at)?;
        let patterns: Vec<Pattern> = file.matrix.patterns.get_ref().iter().map(|p| *p.get_ref()).collect();
        if patterns.is_empty() {
            return Err(at((
                file.matrix.patterns.span(),
                "matrix.patterns is empty".into(),
                Some("e.g. patterns = [\"read\", \"randread\", \"write\", \"randwrite\"]".into()),
            )));
        }
        let mut notes = Vec::new();
        let (fixed, axes) = workload_options(path, &file.workload, &mut notes).map_err(at)?;
        let baseline = baseline(&file.study, &scenarios).map_err(at)?;
        let study = Study {
            path: path.to_path_buf(),
            source: source.to_string(),
            name: file.study.name.get_ref().clone(),
            description: file.study.description.clone(),
            target: file.study.target.get_ref().clone(),
            repetitions: *file.study.repetitions.get_ref(),
            baseline,
            cell_timeout: file.study.cell_timeout.as_ref().map(|t| t.get_ref().0),
            barrier_timeout: file.study.barrier_timeout.as_ref().map_or(Duration::from_secs(600), |t| t.get_ref().0),
            drop_caches: file.study.drop_caches,
            keep_files: file.study.keep_files,
            attribute: file.study.attribute,
            placement,
            scenarios,
            clients,
            patterns,
            fixed,
            axes,
            notes,
        };
        study.check_settings(&file).map_err(at)?;
        Ok(study)
    }

    /// What `[study]` sets beyond names: repetitions, timeouts that every cell fits in,
    /// and an absolute target; and every workload combination valid.
    fn check_settings(&self, file: &StudyFile) -> Result<(), SpannedError> {
        let reps = &file.study.repetitions;
        if *reps.get_ref() == 0 || *reps.get_ref() > MAX_REPETITIONS {
            return Err((reps.span(), format!("repetitions must be from 1 to {MAX_REPETITIONS}"), None));
        }
        for combo in self.combinations() {
            let w = self
                .workload(Pattern::Read, &combo)
                .and_then(|w| w.validate().map(|()| w))
                .map_err(|msg| (file.workload.span(), format!("workload {}: {msg}", describe(&combo)), None))?;
            if let (Some(limit), Some(runtime)) = (&file.study.cell_timeout, w.runtime) {
                let needed = w.ramp_time.0 + runtime.0;
                if limit.get_ref().0 < needed {
                    let combo = if combo.is_empty() { String::new() } else { format!(", {}", describe(&combo)) };
                    return Err((
                        limit.span(),
                        format!(
                            "cell_timeout {} is shorter than the ramp and runtime of a cell ({}{combo}): every cell would fail",
                            limit.get_ref(),
                            crate::workload::Span(needed),
                        ),
                        Some("raise cell_timeout, or remove it to let iostudy derive it".into()),
                    ));
                }
            }
        }
        for (name, t) in [("cell_timeout", &file.study.cell_timeout), ("barrier_timeout", &file.study.barrier_timeout)]
        {
            if let Some(t) = t
                && t.get_ref().0 < Duration::from_secs(1)
            {
                let msg = format!("{name} {} is shorter than a second: clients cannot even start", t.get_ref());
                return Err((t.span(), msg, None));
            }
        }
        if !self.target.is_absolute() {
            let tilde = self.target.starts_with("~");
            return Err((
                file.study.target.span(),
                format!("study.target `{}` must be an absolute path", self.target.display()),
                Some(if tilde {
                    "`~` is not expanded in a study file: write the home directory out".into()
                } else {
                    "containers and VMs see the target through a mount; give its full host path".into()
                }),
            ));
        }
        Ok(())
    }

    /// What a results directory records about a run of this study: its scenarios in
    /// order with their runtimes (`record` gives each one's), baseline and axes.
    pub fn run_info(
        &self,
        record: impl Fn(&Scenario) -> RuntimeRecord,
        scale: Option<f64>,
        warnings: Vec<crate::results::store::PlanWarning>,
    ) -> RunInfo {
        RunInfo {
            schema_version: RUN_SCHEMA_VERSION,
            iostudy_version: env!("CARGO_PKG_VERSION").to_string(),
            iostudy_build: crate::image::own_build(),
            study_name: self.name.clone(),
            description: self.description.clone(),
            host: HostFacts::current(),
            scale,
            filters: Default::default(),
            scenarios: self
                .scenarios
                .iter()
                .map(|s| ScenarioRecord { name: s.name.clone(), label: s.label.clone(), runtime: record(s) })
                .collect(),
            baseline: self.baseline.clone(),
            patterns: self.patterns.clone(),
            clients: self.clients.clone(),
            warnings,
            target: None,
            placement: None,
        }
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
        Workload::from_table(t)
    }
}

/// The top-level tables beyond `[study]`, `[workload]`, `[matrix]` and
/// `[scenarios]`: a placement's (`[hosts]`, at most one) and backends' shared keys
/// (`[kubernetes]`); any other is a located error.
struct Extensions {
    names: Vec<String>,
    placement: Option<(&'static dyn PlacementKind, std::ops::Range<usize>)>,
}

impl Extensions {
    fn of(doc: &DeTable<'_>) -> Result<Extensions, SpannedError> {
        const CORE: &[&str] = &["study", "workload", "matrix", "scenarios"];
        let mut ext = Extensions { names: Vec::new(), placement: None };
        for (k, v) in doc.iter() {
            let name = k.get_ref().to_string();
            if CORE.contains(&name.as_str()) {
                continue;
            }
            if let Some(kind) = crate::hosts::kind(&name) {
                if let Some((other, _)) = ext.placement {
                    return Err((
                        k.span(),
                        format!("[{name}] and [{}] both say where clients run", other.table()),
                        Some("keep one placement table".into()),
                    ));
                }
                ext.placement = Some((kind, v.span()));
            } else if !KINDS.iter().any(|kind| !kind.hidden() && kind.name() == name) {
                let tables: Vec<String> = CORE
                    .iter()
                    .map(|t| t.to_string())
                    .chain(crate::hosts::PLACEMENTS.iter().map(|p| p.table().to_string()))
                    .chain(kind_names().iter().map(|n| n.to_string()))
                    .collect();
                let names: Vec<&str> = tables.iter().map(String::as_str).collect();
                let hint = match closest(&name, &names) {
                    Some(c) => format!("did you mean `{c}`? tables: {}", tables.join(", ")),
                    None => format!("tables: {}", tables.join(", ")),
                };
                return Err((k.span(), format!("unknown table [{name}]"), Some(hint)));
            }
            ext.names.push(name);
        }
        Ok(ext)
    }

    /// The placement its table configures, if the study has one.
    fn placement(&self, doc: &DeTable<'_>) -> Result<Option<Arc<dyn Placement>>, SpannedError> {
        let Some((kind, span)) = &self.placement else { return Ok(None) };
        let table = doc.get(kind.table()).expect("found above");
        if table.get_ref().as_table().is_none() {
            return Err((span.clone(), format!("[{}] must be a table", kind.table()), None));
        }
        let section = Section { what: format!("[{}]", kind.table()), span: span.clone(), table: table.clone() };
        kind.parse(&section).map(Some)
    }
}

/// `matrix.scenarios`: each a `[scenarios.NAME]` table or a built-in name; every table
/// listed.
fn scenarios(
    doc: &DeTable<'_>,
    file: &StudyFile,
    placement: Option<&dyn Placement>,
) -> Result<Vec<Scenario>, SpannedError> {
    let mut scenarios = Vec::new();
    let mut seen = BTreeSet::new();
    for name in file.matrix.scenarios.get_ref() {
        plain_text("a scenario name", name)?;
        if !seen.insert(name.get_ref().clone()) {
            return Err((name.span(), format!("scenario `{}` is listed twice", name.get_ref()), None));
        }
        let scenario = match file.scenarios.get(name.get_ref()) {
            Some(section) => resolve_scenario(doc, name.get_ref(), section.span(), placement)?,
            None => builtin_scenario(name.get_ref()).ok_or_else(|| {
                (
                    name.span(),
                    format!("scenario `{}` is not defined", name.get_ref()),
                    Some(format!(
                        "add a [scenarios.{}] table with a runtime, or use a built-in scenario: {}",
                        name.get_ref(),
                        builtin_names().join(", ")
                    )),
                )
            })?,
        };
        scenarios.push(scenario);
    }
    if scenarios.is_empty() {
        return Err((
            file.matrix.scenarios.span(),
            "matrix.scenarios is empty".into(),
            Some("list at least one scenario, e.g. [\"bare\"]".into()),
        ));
    }
    for (name, section) in &file.scenarios {
        if !seen.contains(name) {
            return Err((
                section.span(),
                format!("scenario `{name}` is defined but not listed in matrix.scenarios"),
                Some(format!("add \"{name}\" to matrix.scenarios or remove [scenarios.{name}]")),
            ));
        }
    }
    Ok(scenarios)
}

/// `matrix.clients`: positive, distinct, at most [`MAX_CLIENTS`].
fn client_counts(matrix: &file::MatrixSection) -> Result<Vec<u32>, SpannedError> {
    let mut clients: Vec<u32> = Vec::new();
    for (i, c) in matrix.clients.get_ref().iter().enumerate() {
        let n = *c.get_ref();
        let Some(k) = u32::try_from(n).ok().filter(|&k| k > 0) else {
            return Err((
                c.span(),
                format!("matrix.clients[{i}]: {n} is not a client count"),
                Some("a positive whole number of clients, e.g. clients = [1, 8, 64]".into()),
            ));
        };
        if k > MAX_CLIENTS {
            return Err((c.span(), format!("matrix.clients[{i}]: {k} is more than {MAX_CLIENTS} clients"), None));
        }
        if clients.contains(&k) {
            return Err((c.span(), format!("matrix.clients[{i}]: {k} is listed twice"), None));
        }
        clients.push(k);
    }
    if clients.is_empty() {
        return Err((
            matrix.clients.span(),
            "matrix.clients is empty".into(),
            Some("e.g. clients = [1, 8, 64]".into()),
        ));
    }
    Ok(clients)
}

/// `[workload]` (and a fio job's options): each value checked through the engine's own
/// `Workload`; options with one value are fixed, lists are axes.
fn workload_options(
    path: &Path,
    workload: &Spanned<BTreeMap<String, Spanned<toml::Value>>>,
    notes: &mut Vec<String>,
) -> Result<(toml::Table, Vec<Axis>), SpannedError> {
    let from_job = fio_job(path, workload.get_ref(), notes)?;
    let mut entries: Vec<(String, Spanned<toml::Value>)> = workload
        .get_ref()
        .iter()
        .filter(|(k, _)| !FIO_JOB_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in from_job {
        if !entries.iter().any(|(k, _)| *k == key) {
            entries.push((key, value));
        }
    }
    let (mut fixed, mut axes) = (toml::Table::new(), Vec::new());
    for (key, value) in &entries {
        let values = option_values(key, value)?;
        if values.len() == 1 {
            fixed.insert(key.clone(), values[0].clone());
        } else {
            axes.push(Axis { key: key.clone(), values });
        }
    }
    for key in ["bs", "size"] {
        if !entries.iter().any(|(k, _)| k == key) {
            return Err((
                workload.span(),
                format!("workload.{key} is required"),
                Some(format!("e.g. {key} = \"{}\"", if key == "bs" { "64K" } else { "1G" })),
            ));
        }
    }
    Ok((fixed, axes))
}

/// The values of one workload option (a list is an axis), each checked.
fn option_values(key: &str, value: &Spanned<toml::Value>) -> Result<Vec<toml::Value>, SpannedError> {
    if !WORKLOAD_KEYS.contains(&key) && !RENAMED_WORKLOAD_KEYS.contains(&key) {
        let hint = match key {
            "rw" => "patterns are a matrix axis: set matrix.patterns".to_string(),
            "directory" => "files live under study.target; the runner gives each client its own directory".to_string(),
            _ => {
                let known = [WORKLOAD_KEYS, FIO_JOB_KEYS].concat().join(", ");
                match closest(key, WORKLOAD_KEYS) {
                    Some(c) => format!("did you mean `{c}`? known options: {known}"),
                    None => format!("known options: {known}"),
                }
            }
        };
        return Err((value.span(), format!("unknown workload option `{key}`"), Some(hint)));
    }
    let values = match value.get_ref() {
        toml::Value::Array(items) if items.is_empty() => {
            return Err((
                value.span(),
                format!("workload.{key} is an empty list"),
                Some("give one value or a list of values to compare".into()),
            ));
        }
        toml::Value::Array(items) => items.clone(),
        v => vec![v.clone()],
    };
    for v in &values {
        check_option(key, v).map_err(|msg| (value.span(), format!("workload.{key}: {msg}"), None))?;
    }
    Ok(values)
}

/// `study.baseline`, a scenario of the study (default: the first).
fn baseline(study: &file::StudySection, scenarios: &[Scenario]) -> Result<String, SpannedError> {
    match &study.baseline {
        Some(b) if !scenarios.iter().any(|s| &s.name == b.get_ref()) => Err((
            b.span(),
            format!("baseline `{}` is not a scenario of this study", b.get_ref()),
            Some(format!("one of: {}", names(scenarios))),
        )),
        Some(b) => Ok(b.get_ref().clone()),
        None => Ok(scenarios[0].name.clone()),
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
    Workload::from_table(t).map(drop)
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

/// Scenario names usable without a `[scenarios.NAME]` table, from every backend.
pub fn builtin_names() -> Vec<&'static str> {
    KINDS.iter().filter(|k| !k.hidden()).flat_map(|k| k.builtins()).map(|(n, _)| n).collect()
}

fn builtin_scenario(name: &str) -> Option<Scenario> {
    let runtime = KINDS.iter().filter(|k| !k.hidden()).flat_map(|k| k.builtins()).find(|(n, _)| *n == name)?.1;
    Some(Scenario { name: name.to_string(), label: name.to_string(), runtime, nodes: None })
}

/// A `[scenarios.NAME]` table: `runtime` picks the backend, which parses the rest.
fn resolve_scenario(
    doc: &DeTable<'_>,
    name: &str,
    span: Range<usize>,
    placement: Option<&dyn Placement>,
) -> Result<Scenario, SpannedError> {
    let table = doc
        .get("scenarios")
        .and_then(|s| s.get_ref().get(name))
        .and_then(|t| t.get_ref().as_table().map(|tab| (t.span(), tab.clone())));
    let Some((table_span, mut table)) = table else {
        return Err((span, format!("[scenarios.{name}] must be a table"), None));
    };
    let mut take = |key: &str| table.remove(key);
    let runtime = take("runtime");
    let label = take("label");
    let nodes = take("nodes");
    let runtime_value = runtime.ok_or_else(|| {
        (
            span.clone(),
            format!("scenario `{name}` names no runtime"),
            Some(format!("add runtime = \"…\": one of {}", kind_names().join(", "))),
        )
    })?;
    let Some(runtime_name) = runtime_value.get_ref().as_str() else {
        return Err((runtime_value.span(), format!("scenarios.{name}.runtime must be a string"), None));
    };
    let kind = KINDS.iter().copied().find(|k| k.name() == runtime_name).ok_or_else(|| {
        let known = kind_names();
        let hint = match closest(runtime_name, &known) {
            Some(c) => format!("did you mean `{c}`? runtimes: {}", known.join(", ")),
            None => format!("runtimes: {}", known.join(", ")),
        };
        (runtime_value.span(), format!("unknown runtime `{runtime_name}` in scenario `{name}`"), Some(hint))
    })?;
    let label = match label {
        None => name.to_string(),
        Some(l) => match l.get_ref().as_str() {
            Some(text) => {
                plain_text(&format!("scenarios.{name}.label"), &Spanned::new(l.span(), text.to_string()))?;
                text.to_string()
            }
            None => return Err((l.span(), format!("scenarios.{name}.label must be a string"), None)),
        },
    };
    let nodes = match nodes {
        None => None,
        Some(v) if kind.places_clients() => {
            return Err((
                v.span(),
                format!("scenario `{name}`: {} places its clients itself; nodes does not apply", kind.name()),
                Some("remove nodes (a node_selector in [kubernetes] narrows where pods run)".into()),
            ));
        }
        Some(v) => Some(scenario_nodes(name, &v, placement)?),
    };
    // A top-level table named after the backend (`[kubernetes]`) gives every scenario
    // of it the keys it does not set itself.
    if let Some(defaults) = doc.get(kind.name()).and_then(|d| d.get_ref().as_table()) {
        for (k, v) in defaults {
            if !table.contains_key(k) {
                table.insert(k.clone(), v.clone());
            }
        }
    }
    let section = Section {
        what: format!("scenario `{name}`"),
        span: table_span.clone(),
        table: Spanned::new(table_span, DeValue::Table(table)),
    };
    let runtime = kind.parse(&section)?;
    Ok(Scenario { name: name.to_string(), label, runtime, nodes })
}

/// A scenario's `nodes = […]`: a non-empty subset of `[hosts]`' nodes.
fn scenario_nodes(
    name: &str,
    v: &Spanned<DeValue<'_>>,
    placement: Option<&dyn Placement>,
) -> Result<Vec<usize>, SpannedError> {
    let Some(placement) = placement else {
        return Err((
            v.span(),
            format!("scenarios.{name}.nodes needs a [hosts] table"),
            Some("add [hosts] with nodes = [\"node1\", …], or remove nodes".into()),
        ));
    };
    let not_list = || (v.span(), format!("scenarios.{name}.nodes must be a list of node names"), None);
    let items = v.get_ref().as_array().ok_or_else(not_list)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let n = item.get_ref().as_str().ok_or_else(not_list)?;
        let nodes = placement.node_names();
        let Some(idx) = nodes.iter().position(|h| h == n) else {
            return Err((
                item.span(),
                format!("scenarios.{name}.nodes[{i}]: `{n}` is not a node of [hosts]"),
                Some(format!("one of: {}", nodes.join(", "))),
            ));
        };
        if !out.contains(&idx) {
            out.push(idx);
        }
    }
    if out.is_empty() {
        return Err((v.span(), format!("scenarios.{name}.nodes is empty"), Some("name at least one node".into())));
    }
    Ok(out)
}

/// A name or label shown in every output: one line of text, without control characters
/// (a terminal escape, a newline) that would change what a table or terminal shows.
fn plain_text(what: &str, s: &Spanned<String>) -> Result<(), SpannedError> {
    match s.get_ref().chars().find(|c| c.is_control()) {
        None if s.get_ref().trim().is_empty() => {
            Err((s.span(), format!("{what} is empty"), Some("give it a few words".into())))
        }
        None => Ok(()),
        Some(c) => Err((
            s.span(),
            format!("{what} holds a control character ({})", crate::text::printable(&c.to_string())),
            Some("names and labels are one line of plain text: remove it".into()),
        )),
    }
}

fn kind_names() -> Vec<&'static str> {
    KINDS.iter().filter(|k| !k.hidden()).map(|k| k.name()).collect()
}

/// A located serde error in words: which key (with its table), and a hint.
fn explain(doc: &DeTable<'_>, message: &str, span: &Range<usize>) -> (String, Option<String>) {
    // A missing top-level table is reported at an empty span at the start.
    let path = if span.is_empty() { String::new() } else { key_path(doc, span) };
    if let Some(field) = message.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        if path.is_empty() {
            let hint = format!("add a [{field}] table (see examples/small.toml)");
            return (format!("the study file has no [{field}] table"), Some(hint));
        }
        let hint = match (path.as_str(), field) {
            ("study", "target") => {
                Some("e.g. target = \"/dev/shm/iostudy\": the directory every client's files live in".into())
            }
            ("study", "name") => Some("e.g. name = \"my-study\"".into()),
            ("matrix", "clients") => Some("e.g. clients = [1, 8, 64]".into()),
            ("matrix", "patterns") => Some("e.g. patterns = [\"read\", \"randread\", \"write\", \"randwrite\"]".into()),
            ("matrix", "scenarios") => Some("e.g. scenarios = [\"bare\", \"runc\"]".into()),
            _ => None,
        };
        return (format!("{path}.{field} is required"), hint);
    }
    // An unknown key is named by the message itself: say which table it is in.
    let path = match message.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
        Some(field) => path.strip_suffix(&format!(".{field}")).map_or(path.clone(), |t| format!("[{t}]")),
        None => path,
    };
    let hint = unknown_field_hint(message).or_else(|| {
        (message.starts_with("invalid value: integer") && message.contains("expected u"))
            .then(|| "a whole number, 0 or more (1 or more for counts)".to_string())
    });
    if path.is_empty() { (message.to_string(), hint) } else { (format!("{path}: {message}"), hint) }
}

/// The dotted key path (`matrix.clients[1]`) of the innermost key or value whose place
/// covers `span` ("" when none does). A `[table]`'s own place is only its header, so
/// every table is searched, not only those whose place covers the span.
pub fn key_path(doc: &DeTable<'_>, span: &Range<usize>) -> String {
    fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
        outer.start <= inner.start && inner.end <= outer.end.max(outer.start + 1)
    }
    fn search(v: &Spanned<DeValue<'_>>, span: &Range<usize>, path: String, best: &mut Option<String>) {
        if covers(&v.span(), span) {
            *best = Some(path.clone());
        }
        match v.get_ref() {
            DeValue::Table(t) => {
                for (k, child) in t.iter() {
                    let p = if path.is_empty() { k.get_ref().to_string() } else { format!("{path}.{}", k.get_ref()) };
                    if covers(&k.span(), span) {
                        *best = Some(p.clone());
                    }
                    search(child, span, p, best);
                }
            }
            DeValue::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    search(child, span, format!("{path}[{i}]"), best);
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    for (k, v) in doc.iter() {
        let p = k.get_ref().to_string();
        if covers(&k.span(), span) {
            best = Some(p.clone());
        }
        search(v, span, p, &mut best);
    }
    best.unwrap_or_default()
}

fn names(scenarios: &[Scenario]) -> String {
    scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
}
/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.runtime.name())
    }
}

#[cfg(test)]
mod tests;
