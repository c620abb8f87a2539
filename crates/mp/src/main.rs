//! `mp`: the multiprocess command-line tool.
//!
//! - `mp demo` shows the library at work: processes with names and pids under every start
//!   method, a process that returns a value, one that panics, one that is terminated.
//! - `mp copy SOURCE... DEST` copies files and folders like `cp -a`, on a pool of processes.
//! - `mp cluster status URL` shows a cluster's live nodes, builds, workers and backlog.
//! - `mp completions SHELL` prints a completion script.
//! - `mp --version`.

mod cluster;
mod copy;
mod demo;

use clap::{CommandFactory, Parser, Subcommand};

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
    Copy(copy::CopyArgs),
    /// Look at a multiprocess cluster (nodes serving tasks through a Redis broker).
    Cluster(cluster::ClusterArgs),
    /// Print a shell completion script (e.g. `mp completions bash > /etc/bash_completion.d/mp`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> std::process::ExitCode {
    multiprocess::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Cluster(args) => cluster::run(args),
        Command::Copy(args) => return std::process::ExitCode::from(copy::run(args).code()),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mp", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mp: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
