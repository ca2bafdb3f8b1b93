//! Every path iostudy writes as root in a place a user names, in one list.
//!
//! Running as root in shared, often world-writable places, each of these is a place
//! where someone could plant a link, a hard link, a FIFO or a file of their own before
//! iostudy writes there. Each is written through [`crate::safety`] (directories made or
//! checked with `ensure_dir`, files with `write_atomic`, `create_file` or
//! `open_nofollow`), and the hostile test suite plants each kind of bait at each entry
//! of this list and checks that nothing outside the run changes. A test also runs a
//! study and checks that every path it wrote matches an entry here, so the list cannot
//! fall behind the code.
//!
//! Templates: `<cell>` a cell id, `<k>` a client index, `<t>` a thread index, `<run>` a
//! run id, `<chart>` a chart name, `<prefix>` the data files' prefix.

/// Where an entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Under a results directory (`run -o`, `demo`, `import fio -o`, `report DIR`).
    Results,
    /// Under a study's target.
    Target,
    /// A file or directory named on the command line on its own.
    Named,
}

/// What is written there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// One path iostudy writes.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub place: Place,
    /// The path below the place, as a template.
    pub template: &'static str,
    pub kind: Kind,
    /// What writes it.
    pub by: &'static str,
}

const fn w(place: Place, template: &'static str, kind: Kind, by: &'static str) -> Written {
    Written { place, template, kind, by }
}

/// The inventory.
pub const WRITTEN: &[Written] = &[
    w(Place::Results, ".", Kind::Dir, "run, demo, import: the results directory"),
    w(Place::Results, ".iostudy-results", Kind::File, "the results directory's marker"),
    w(Place::Results, ".lock", Kind::File, "the results directory's lock, while a run lasts"),
    w(Place::Results, "study.toml", Kind::File, "the study as run"),
    w(Place::Results, "run.json", Kind::File, "the run's record"),
    w(Place::Results, "cells", Kind::Dir, "the cells"),
    w(Place::Results, "cells/<cell>.json", Kind::File, "each finished cell"),
    w(Place::Results, "logs", Kind::Dir, "the logs"),
    w(Place::Results, "logs/<cell>", Kind::Dir, "a cell's logs"),
    w(Place::Results, "logs/<cell>/client-<k>.log", Kind::File, "a client's output"),
    w(Place::Results, "logs/<cell>/client-<k>.virtiofsd.log", Kind::File, "a virtio-fs client's file server"),
    w(Place::Results, "report", Kind::Dir, "the report"),
    w(Place::Results, "report/report.html", Kind::File, "the report page"),
    w(Place::Results, "report/table.md", Kind::File, "the tables in Markdown"),
    w(Place::Results, "report/table.csv", Kind::File, "the tables as CSV"),
    w(Place::Results, "report/<chart>.svg", Kind::File, "each chart"),
    w(Place::Results, "report/<chart>.png", Kind::File, "each chart"),
    w(Place::Target, ".", Kind::Dir, "the study's target"),
    w(Place::Target, ".iostudy-control", Kind::Dir, "runs' control areas"),
    w(Place::Target, ".iostudy-control/lock", Kind::File, "the target's lock, while a run lasts"),
    w(Place::Target, ".iostudy-control/<run>", Kind::Dir, "a run's control area (a new name per run)"),
    w(Place::Target, "iostudy-data", Kind::Dir, "the clients' data"),
    w(Place::Target, "iostudy-data/client-<k>", Kind::Dir, "a client's data"),
    w(Place::Target, "iostudy-data/client-<k>/<prefix>.<t>.dat", Kind::File, "a thread's data file"),
    w(Place::Named, "image -o FILE", Kind::File, "the worker's OCI image"),
    w(Place::Named, "compare --html FILE", Kind::File, "a comparison page"),
    w(Place::Named, "plan --manifests DIR", Kind::Dir, "the Kubernetes Jobs' directory"),
    w(Place::Named, "plan --manifests DIR/<cell>.yaml", Kind::File, "a Kubernetes cell's Job"),
];

/// The entry a path `rel` below `place` matches, if any (a cell id, client or thread
/// index, run id, chart name or prefix in place of each template's placeholders).
pub fn matching(place: Place, rel: &str) -> Option<&'static Written> {
    WRITTEN.iter().find(|w| w.place == place && matches(w.template, rel))
}

/// Whether `rel` fits `template`: literal parts equal, each `<…>` one or more
/// characters without `/`.
fn matches(template: &str, rel: &str) -> bool {
    match template.find('<') {
        None => template == rel,
        Some(i) => {
            let Some(rest) = rel.strip_prefix(&template[..i]) else { return false };
            let after = &template[template[i..].find('>').map_or(template.len(), |j| i + j + 1)..];
            // The placeholder takes 1..n characters (no `/`); the rest must match.
            rest.char_indices()
                .skip(1)
                .map(|(j, _)| j)
                .chain(std::iter::once(rest.len()))
                .take_while(|&j| !rest[..j].contains('/'))
                .any(|j| matches(after, &rest[j..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_what_they_name() {
        assert!(matching(Place::Results, "cells/bare.read.c1.r1.json").is_some());
        assert!(matching(Place::Results, "logs/bare.read.c1.r1/client-12.log").is_some());
        assert!(matching(Place::Results, "report/latency-cdf.svg").is_some());
        assert!(matching(Place::Target, "iostudy-data/client-3/iostudy.0.dat").is_some());
        assert!(matching(Place::Results, "cells/sub/x.json").is_none(), "a placeholder is one name");
        assert!(matching(Place::Results, "elsewhere.txt").is_none());
        assert!(matching(Place::Target, ".iostudy-control/123-456").is_some());
    }
}
