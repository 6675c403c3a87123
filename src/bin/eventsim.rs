//! `eventsim`: parse the command line, run the simulation, print the verdict, map it to an exit
//! code (0 all notifications received, 1 a failure, 2 bad command line).

use std::process::ExitCode;

use lb::relay::sim::args::{self, SimParsed, USAGE};
use lb::relay::sim::check::Verdict;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let config = match args::parse(&argv, &|k| std::env::var(k).ok()) {
        Ok(SimParsed::Run(c)) => c,
        Ok(SimParsed::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(SimParsed::Version) => {
            println!("eventsim {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("eventsim: {e}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    lb::common::log::init("eventsim", config.level);
    match lb::relay::sim::run(&config) {
        Ok(Verdict::Passed { events, notifications, elapsed }) => {
            let secs = elapsed.as_secs_f64().max(1e-9);
            println!("events: {events}");
            println!("notifications: {notifications}");
            println!("seconds: {secs:.3}");
            println!("events/s: {:.0}", events as f64 / secs);
            println!("notifications/s: {:.0}", notifications as f64 / secs);
            println!("\\o/ ALL NOTIFICATIONS RECEIVED \\o/");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Failed(why)) => {
            println!("FAILED: {why}");
            lb::error!("{why}");
            ExitCode::from(1)
        }
        Err(e) => {
            println!("FAILED: {e}");
            lb::error!("{e}");
            ExitCode::from(1)
        }
    }
}
