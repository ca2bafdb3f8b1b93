//! fio interop: fio's json+ results as client results ([`output`]), fio job files as
//! workloads ([`job`]), and the real fio as the client inside each boundary ([`run`],
//! with what it needs there in [`deps`]).
//!
//! People who run fio trust its numbers: iostudy reports and compares their fio runs
//! (`iostudy import fio`), takes their job files (`fio_job`, `plan --from-fio`), and
//! reruns any study with fio itself (`engine = "fio"`), so a sceptic can compare fio's
//! figures with iostudy's engine on the same study.

pub mod deps;
pub mod import;
pub mod job;
pub mod output;
pub mod run;
