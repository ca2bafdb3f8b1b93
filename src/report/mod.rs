//! Everything that turns results into something a person reads.
//!
//! Renderers take the result schema and return text; printing is the caller's job, so
//! every rendering can be snapshot-tested.

pub mod client;
pub mod runtimes;
pub mod summary;
pub mod units;
