//! `backend`: parse, build, run; map the outcome to an exit status here and nowhere else
//! (0 served and stopped by a signal, or -h/-V; 1 a run-time failure such as a port in use;
//! 2 a bad command line).

use lb::backend::{self, Parsed, UsageError, args};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Read before anything else, so --die-with-parent can tell whether the parent that started
    // us died before the death signal was armed.
    let parent = nix::unistd::getppid();
    let words: Vec<_> = std::env::args_os().skip(1).collect();
    let args = match args::parse(&words) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => return say(&args::help()),
        Ok(Parsed::Version) => return say(&format!("backend {}", env!("CARGO_PKG_VERSION"))),
        Err(e) => return usage_error(&e),
    };
    lb::common::log::init("backend", args.level);
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => return usage_error(&e),
    };
    match backend::run(config, parent) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lb::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Prints to stdout; a closed stdout is not worth a panic, and there is nowhere to report it.
fn say(text: &str) -> ExitCode {
    let _ = writeln!(std::io::stdout(), "{}", text.trim_end());
    ExitCode::SUCCESS
}

fn usage_error(e: &UsageError) -> ExitCode {
    eprintln!("backend: {e}\n{}", args::USAGE);
    ExitCode::from(2)
}
