//! `loadbalancer`: parse, build, run; every error becomes one line and an exit code here.

use lb::balancer::cli::{self, Command};
use lb::common::log::{self, Level};
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    log::init("loadbalancer", Level::Info);
    std::panic::set_hook(Box::new(|info| lb::error!("internal: panic: {info}")));
    match cli::parse(&argv) {
        Ok(Command::Help) => {
            println!("{}", cli::help());
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("loadbalancer {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Stats { file, json }) => match lb::balancer::store::print_table(&file, json) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadbalancer: {e}");
                ExitCode::from(1)
            }
        },
        Ok(Command::Run(args)) if args.check => {
            log::set_level(args.log_level);
            match lb::balancer::check::check(&args) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Ok(Command::Run(args)) => {
            log::set_level(args.log_level);
            match lb::balancer::run(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Err(e) => {
            eprintln!("loadbalancer: {e}\n{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}

/// One line for a failed start or check, with the usage line after a bad setting.
fn fail(e: lb::balancer::RunError) -> ExitCode {
    let code = e.exit_code();
    match e {
        lb::balancer::RunError::Usage(msg) => eprintln!("loadbalancer: {msg}\n{}", cli::USAGE),
        lb::balancer::RunError::File(msg) | lb::balancer::RunError::Runtime(msg) => eprintln!("loadbalancer: {msg}"),
    }
    ExitCode::from(code as u8)
}
