//! `iostudy runtimes`: what is installed and usable here, with versions, and the fix
//! for what is not.

use std::fmt::Write;

use crate::runtime::Probe;

pub fn render(probes: &[Probe]) -> String {
    let width = probes.iter().map(|p| p.runtime.len()).max().unwrap_or(0);
    let mut out = String::new();
    for p in probes {
        let status = match (&p.problem, &p.version) {
            (Some(problem), Some(v)) => format!("unusable ({v}): {problem}"),
            (Some(problem), None) => format!("unusable: {problem}"),
            (None, Some(v)) => format!("ok  {v}"),
            (None, None) => "ok".to_string(),
        };
        let _ = writeln!(out, "{:width$}  {status}", p.runtime);
        for n in &p.notes {
            let _ = writeln!(out, "{:width$}    note: {n}", "");
        }
    }
    out
}
