//! `eventrelay`: parse the command line, bind, run, map the outcome to an exit code
//! (0 done, 1 the relay failed, 2 bad command line).

use std::process::ExitCode;

use lb::relay::args::{self, Parsed, USAGE};
use lb::relay::server::Relay;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let config = match args::parse(&argv, &|k| std::env::var(k).ok()) {
        Ok(Parsed::Run(c)) => c,
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("eventrelay {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("eventrelay: {e}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    lb::common::log::init("eventrelay", config.level);
    match Relay::bind(&config).and_then(Relay::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            lb::error!("{e}");
            ExitCode::from(1)
        }
    }
}
