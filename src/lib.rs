//! iostudy: design, run and report I/O performance studies of isolation runtimes.
//!
//! The map of the crate, from the ground up — each layer imports only those below it:
//!
//! ```text
//! workload, rng         what one client does (fio's options); the one PRNG
//! safety                where iostudy may write as root: no links, no foreign files
//! results               the result documents, the store, aggregation, statistics
//! engine                the fio-like client: layout, I/O engines, measurement
//! control               the versioned protocol between controller and clients
//! worker, guest         the client's side: a job in, a result out (guest: VM init)
//! runtime               where clients run: one Backend per kind, registered in KINDS
//! hosts                 on which node: ssh transport, the node agent, placement, clocks
//! study                 study file → Study → Plan (pure) + Preflight (host checks)
//! runner                cells × repetitions: launch, barrier, deadline, collect
//! report                terminal, tables, charts, HTML, compare — from results only
//! cli, commands, demo   the command line and its handlers
//! ```
//!
//! One binary, two roles: `iostudy` is the controller, and the same static binary run
//! as `iostudy worker` is the client inside every isolation boundary (and the init of
//! micro-VM guests). `main` only parses, calls [`run`], prints errors and maps exit
//! codes.

pub mod cli;
pub mod command;
pub mod commands;
pub mod control;
pub mod demo;
pub mod engine;
pub mod fio;
pub mod guest;
pub mod hints;
pub mod hosts;
pub mod image;
pub mod inventory;
pub mod report;
pub mod results;
pub mod rng;
pub mod runner;
pub mod runtime;
pub mod safety;
pub mod study;
pub mod sys;
pub mod text;
pub mod worker;
pub mod workload;

use std::process::ExitCode;

/// Exit code: everything ran.
pub const EXIT_OK: u8 = 0;
/// Exit code: ran, but a check failed (a cell failed, a regression was found).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code: configuration or runtime error; nothing (more) could run.
pub const EXIT_ERROR: u8 = 2;

/// Runs the parsed command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    commands::dispatch(cli)
}
