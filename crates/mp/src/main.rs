//! `mp`: the multiprocess command-line tool.
//!
//! - `mp demo` shows the library at work: processes with names and pids under every start
//!   method, a process that returns a value, one that panics, one that is terminated.
//! - `mp --version`.

mod demo;

use clap::{Parser, Subcommand};

/// Python's multiprocessing, done right, in Rust.
#[derive(Parser)]
#[command(name = "mp", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start processes under every start method and show what happens.
    Demo,
}

fn main() -> std::process::ExitCode {
    multiprocess::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mp: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
