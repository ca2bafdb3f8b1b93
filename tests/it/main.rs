//! The one integration-test binary: the real `iostudy` binary driven end to end.
//!
//! A custom harness (libtest-mimic) so that a test which needs root or a runtime this
//! machine lacks is reported as *ignored*, with what it needs, and counted as such —
//! never as passed. With `IOSTUDY_REQUIRE_RUNTIMES=1` (CI) the same test fails.

mod attribution;
mod baits;
mod bench;
mod cli;
mod containerd;
mod fio;
mod fuzz;
mod history;
mod hostile;
mod hosts;
mod hpc;
mod instruments;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod microvm;
mod places;
mod report;
mod slurm;
mod study;
mod util;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let mut trials = Vec::new();
    for module in [
        attribution::trials,
        baits::trials,
        bench::trials,
        cli::trials,
        containerd::trials,
        fio::trials,
        fuzz::trials,
        history::trials,
        hostile::trials,
        hosts::trials,
        hpc::trials,
        instruments::trials,
        microvm::trials,
        places::trials,
        report::trials,
        slurm::trials,
        study::trials,
    ] {
        trials.extend(module());
    }
    #[cfg(feature = "kubernetes")]
    trials.extend(kubernetes::trials());
    let conclusion = libtest_mimic::run(&args, trials);
    #[cfg(feature = "kubernetes")]
    if let Err(left) = util::TestCluster::shutdown() {
        eprintln!("\nthe test Kubernetes cluster was not torn down whole:\n{left}");
        std::process::exit(101);
    }
    if conclusion.num_ignored > 0 {
        eprintln!(
            "\n{} test(s) skipped: each line marked `ignored` above says what it needs; IOSTUDY_REQUIRE_RUNTIMES=1 makes them mandatory",
            conclusion.num_ignored
        );
    }
    conclusion.exit();
}
