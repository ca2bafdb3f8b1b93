//! iostudy: design, run and report I/O performance studies of isolation runtimes.
//!
//! The map of the crate, from the top down. A module imports only the modules on the
//! lines below its own (modules on one line may import each other, never in a circle);
//! a test (`layers` below) reads every `crate::…` path of the code and holds it to this
//! table, and holds each backend's name to `src/runtime/`:
//!
//! ```text
//! cli, commands, demo        the command line and its handlers
//! runner                     cells × repetitions: preflight, launch, barrier, collect; a node's side
//! history                    every run kept (SQLite), gates, trends, exports
//! report                     terminal, tables, charts, HTML, compare, the plan's text
//! study                      study file → Study → Plan (pure)
//! hosts                      on which node: placements, transports, the agent protocol, clocks
//! runtime                    inside what: one Backend per kind, registered in KINDS
//! worker, guest              the client's side: a job in, a result out (guest: VM init)
//! attribution                each layer a request crosses, timed by tracers (bpftrace, tracefs)
//! control                    the versioned protocol between controller and clients
//! fio                        fio interop: job files, json+ outputs, fio as the client
//! engine                     the fio-like client: layout, I/O engines, measurement
//! results                    the result documents, the store, aggregation, statistics
//! image                      the worker's OCI image
//! command, safety, sys, text, inventory, workload, rng, hints
//!                            the ground floor: tools, safe writes, system facts, escaping
//! ```
//!
//! One binary, two roles: `iostudy` is the controller, and the same static binary run
//! as `iostudy worker` is the client inside every isolation boundary (and the init of
//! micro-VM guests). `main` only parses, calls [`run`], prints errors and maps exit
//! codes.

pub mod attribution;
pub mod cli;
pub mod command;
pub mod commands;
pub mod control;
pub mod demo;
pub mod engine;
pub mod fio;
pub mod guest;
pub mod hints;
pub mod history;
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

#[cfg(test)]
mod layers;
