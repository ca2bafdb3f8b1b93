//! The study file (TOML) as written by a user, with the source span of every value.
//!
//! Parsing keeps spans (`toml::Spanned`) so that every error — a typo in a key, a bad
//! size, a scenario that is not defined — points at file:line:col. Workload options are
//! read as raw TOML values first: any of them may be a list, and a list joins the
//! matrix as an axis. Each value is checked by deserializing it through the engine's
//! own `Workload`, so the study file accepts exactly what `iostudy bench` accepts.
//! Scenario tables belong to their backends, which parse them with the same spans; a
//! placement's table (`[hosts]`) and a backend's shared keys (`[kubernetes]`) belong
//! to their modules, and are taken out before this is read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::workload::{Pattern, Span};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyFile {
    pub study: StudySection,
    pub workload: Spanned<BTreeMap<String, Spanned<toml::Value>>>,
    pub matrix: MatrixSection,
    /// `[scenarios.NAME]` tables: read here only for their names and places; each is
    /// parsed by its backend ([`crate::runtime::Kind::parse`]).
    #[serde(default)]
    pub scenarios: BTreeMap<String, Spanned<toml::Table>>,
}

/// `[study]`: what the study is and where it runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySection {
    pub name: Spanned<String>,
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
    /// Attribute each cell's time and CPU to the layers it crosses: every cell runs
    /// traced and untraced (root, tracefs and bpftrace).
    #[serde(default)]
    pub attribute: bool,
}

/// `[matrix]`: the axes every study has.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixSection {
    pub scenarios: Spanned<Vec<Spanned<String>>>,
    /// Signed, so that `-8` is refused as a client count, not as a type error.
    pub clients: Spanned<Vec<Spanned<i64>>>,
    pub patterns: Spanned<Vec<Spanned<Pattern>>>,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

fn yes() -> bool {
    true
}
