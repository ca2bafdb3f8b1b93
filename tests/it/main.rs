//! The one integration-test binary: the real `iostudy` binary driven end to end.

mod bench;
mod cli;
mod microvm;
mod report;
mod study;
mod util;
