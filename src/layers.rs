//! The layer table of `lib.rs`, checked against the code: every `crate::…` path in a
//! module (tests aside) must lead to a module on a lower line of the table, or on its
//! own line without a cycle; and a backend's name (`"oci"`, …) appears as a string only
//! under `src/runtime/`. Run by `cargo test`, so `scripts/check` fails on an upward
//! import or an import cycle between folders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The table: each top-level module's line (0 = the top).
fn table() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let block = lib.split("//! ```text\n").nth(1).expect("lib.rs has the layer table").split("//! ```").next().unwrap();
    let mut levels = BTreeMap::new();
    let mut line = 0;
    for l in block.lines() {
        let l = l.trim_start_matches("//!").trim_start();
        if l.is_empty() || !l.starts_with(|c: char| c.is_ascii_lowercase()) {
            continue; // a description carried over to the next line
        }
        let names: String = l.split("  ").next().unwrap_or_default().to_string();
        for m in names.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            levels.insert(m.to_string(), line);
        }
        line += 1;
    }
    levels
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file's code: its test modules and comments left out.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The top-level module a file belongs to (`None`: lib.rs, main.rs).
fn top(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.trim_end_matches(".rs").to_string();
    let test = rel.ends_with("tests.rs") || rel.components().any(|c| c.as_os_str() == "tests") || name == "layers";
    (name != "lib" && name != "main" && !test).then_some(name)
}

/// Every `crate::x` a piece of code names (`use crate::{a, b::c}` included).
fn targets(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            for item in inner.split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn imports_run_down_the_layer_table_and_folders_make_no_circle() {
    let levels = table();
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut upward = Vec::new();
    for f in &all {
        let Some(from) = top(f) else { continue };
        let level = *levels.get(&from).unwrap_or_else(|| panic!("module `{from}` is not in lib.rs's layer table"));
        for to in targets(&code(f)) {
            if to == from {
                continue;
            }
            let Some(&l) = levels.get(&to) else { continue };
            if l < level {
                upward.push(format!("{} imports {to} (a higher layer)", f.strip_prefix(src()).unwrap().display()));
            }
            edges.entry(from.clone()).or_default().insert(to);
        }
    }
    assert!(upward.is_empty(), "imports that run upward:\n  {}", upward.join("\n  "));
    // No circle between folders (on one line they may import each other, not around).
    fn reaches(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str, seen: &mut BTreeSet<String>) -> bool {
        edges
            .get(from)
            .into_iter()
            .flatten()
            .any(|n| n == to || (seen.insert(n.clone()) && reaches(edges, n, to, seen)))
    }
    for (from, tos) in &edges {
        for to in tos {
            assert!(!reaches(&edges, to, from, &mut BTreeSet::new()), "an import cycle: {from} → {to} → … → {from}");
        }
    }
}

#[test]
fn a_backends_name_is_spelled_only_in_runtime() {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let runtime = src().join("runtime");
    let mut found = Vec::new();
    for f in all.iter().filter(|f| !f.starts_with(&runtime) && top(f).is_some()) {
        let code = code(f);
        for kind in crate::runtime::KINDS {
            let quoted = format!("\"{}\"", kind.name());
            if code.contains(&quoted) {
                found.push(format!("{} spells {quoted}", f.strip_prefix(src()).unwrap().display()));
            }
        }
    }
    assert!(found.is_empty(), "a backend's name outside src/runtime/:\n  {}", found.join("\n  "));
}
