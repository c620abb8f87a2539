//! `mp`: the multiprocess command-line tool.
//!
//! - `mp demo` shows the library at work: processes with names and pids under every start
//!   method, a process that returns a value, one that panics, one that is terminated.
//! - `mp copy SOURCE... DEST` copies files and folders like `cp -a`, on a pool of processes.
//! - `mp cluster status URL` shows a cluster's live nodes, builds, workers and backlog.
//! - `mp completions SHELL` prints a completion script.
//! - `mp man [COMMAND]` prints a man page (roff), generated from the same definitions as
//!   `--help`.
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
    /// Print a man page, mp(1) or a command's (e.g. `mp man copy > mp-copy.1; man ./mp-copy.1`).
    Man {
        /// The command whose page to print (`copy`, `demo`, ...); mp(1) without it.
        command: Option<String>,
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
        Command::Man { command } => {
            if let Err(err) = man(command.as_deref()) {
                eprintln!("mp: {err}");
                return std::process::ExitCode::FAILURE;
            }
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

/// Prints the man page of `mp` or of its subcommand `command`, from the clap definition.
fn man(command: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let mp = Cli::command();
    let page = match command {
        None => mp,
        Some(name) => {
            let sub = mp
                .find_subcommand(name)
                .ok_or_else(|| format!("no command {name:?}; see mp --help"))?;
            // Named as git names its pages: mp-copy(1). (clap takes a static name; this
            // one lives until the process ends a moment later.)
            let title: &'static str = format!("mp-{name}").leak();
            sub.clone().name(title).version(env!("CARGO_PKG_VERSION"))
        }
    };
    clap_mangen::Man::new(page).render(&mut std::io::stdout())?;
    Ok(())
}
