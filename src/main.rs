//! Thin entry point: parse, run, print the error chain once, map the exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Started by a micro-VM's kernel as /init: be the guest's init, not a CLI.
    if iostudy::guest::is_init() {
        iostudy::guest::main();
    }
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = iostudy::cli::Cli::parse();
    match iostudy::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let mut shown = err.to_string();
            eprintln!("Error: {}", iostudy::text::terminal(&shown));
            // Messages often quote their cause already; print each text once.
            for cause in err.chain().skip(1) {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("caused by: {}", iostudy::text::terminal(&text));
                    shown.push_str(&text);
                }
            }
            ExitCode::from(iostudy::EXIT_ERROR)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
