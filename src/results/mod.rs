//! Result types shared by the engine, the runner and every reporter.
//!
//! One schema, written as you go: the engine produces [`ClientResult`], everything
//! downstream reads it. Files are written atomically ([`crate::safety::write_atomic`]) so a crash or
//! Ctrl-C never leaves a half-written result that a later `--resume` would trust.

pub mod aggregate;
pub mod attribution;
pub mod cell;
pub mod cpu;
pub mod histogram;
pub mod host;
pub mod schema;
pub mod stats;
pub mod store;
pub mod synthetic;

pub use histogram::{EncodedHistogram, LatencySummary};
pub use schema::*;
