//! `mp-bench`: the multiprocess library side by side with Python's `multiprocessing`, measured
//! in the same run on the same machine (see `shared/BENCH_PLAN.md`).
//!
//! Each case prints one line per figure, `case=NAME value=V unit=U`, and with `--vs-python`
//! also Python's figure and the ratio (always as the speedup over Python: above 1 is faster).

mod cluster;
mod ipc;
mod pool;
mod process_start;
mod python;
mod report;

use clap::{Parser, Subcommand};
use multiprocess::StartMethod;

#[derive(Parser)]
#[command(name = "mp-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    case: Case,
}

#[derive(Subcommand)]
enum Case {
    /// Start + join of a trivial process.
    ProcessStart {
        /// Also run Python's baseline and print the ratio.
        #[arg(long)]
        vs_python: bool,
        /// fork, spawn or forkserver (default: the library's default, forkserver).
        #[arg(long)]
        method: Option<StartMethod>,
        /// Start + join pairs per run (default: 300, or 50 for spawn).
        #[arg(long)]
        iters: Option<u32>,
        /// Runs; the median run is reported.
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// 1 producer process → 1 consumer, bounded 1024, small (`u64`) items.
    Queue(Throughput),
    /// 4 producer processes → 2 consumer processes, bounded 1024, 64-byte items.
    QueueMpmc(Throughput),
    /// Small messages one way through a pipe.
    Pipe(Throughput),
    /// Pool(2).imap over a trivial task, chunksize 1: µs per task.
    PoolImap(PoolTasks),
    /// Pool(2): apply_async of a trivial task, then get each: µs per task.
    PoolApplyAsync(PoolTasks),
    /// cluster::Pool.map of trivial tasks, one node of 2 workers, one local redis-server:
    /// tasks/s (with --vs-python: Celery, prefork pool of 2, same server).
    ClusterMap {
        /// Also run Celery's baseline (installed into bench/python/.venv) and print the ratio.
        #[arg(long)]
        vs_python: bool,
        /// A broker to use instead of a redis-server started by the bench.
        #[arg(long)]
        broker: Option<String>,
        /// Tasks per run.
        #[arg(long, default_value_t = 20_000)]
        tasks: u64,
        /// Runs; the median run is reported.
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// cluster::Pool.apply one at a time: round-trip p50 and p99 in µs.
    ClusterApply {
        /// A broker to use instead of a redis-server started by the bench.
        #[arg(long)]
        broker: Option<String>,
        /// Round trips measured.
        #[arg(long, default_value_t = 5_000)]
        tasks: u64,
    },
    /// SIGKILL of a node running a task until the client sees NodeLost: seconds.
    ClusterNodeLoss {
        /// A broker to use instead of a redis-server started by the bench.
        #[arg(long)]
        broker: Option<String>,
        /// The heartbeat time-to-live, in ms (default: the library's, 5000).
        #[arg(long, default_value_t = 5000)]
        ttl_ms: u64,
        /// Runs; the median run is reported.
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
}

/// Options of the pool cases.
#[derive(clap::Args)]
struct PoolTasks {
    /// Also run Python's baseline and print the ratio.
    #[arg(long)]
    vs_python: bool,
    /// Tasks per run.
    #[arg(long, default_value_t = 20_000)]
    tasks: u64,
    /// Runs; the median run is reported.
    #[arg(long, default_value_t = 5)]
    runs: u32,
}

/// Options of the throughput cases.
#[derive(clap::Args)]
struct Throughput {
    /// Also run Python's baseline and print the ratio.
    #[arg(long)]
    vs_python: bool,
    /// Items (or messages) per run.
    #[arg(long, default_value_t = 200_000)]
    items: u64,
    /// Runs; the median run is reported.
    #[arg(long, default_value_t = 5)]
    runs: u32,
}

fn main() -> std::process::ExitCode {
    multiprocess::init();
    let cli = Cli::parse();
    let result = match cli.case {
        Case::ProcessStart {
            vs_python,
            method,
            iters,
            runs,
        } => process_start::run(
            method.unwrap_or(multiprocess::DEFAULT_START_METHOD),
            iters,
            runs,
            vs_python,
        ),
        Case::Queue(t) => ipc::run(ipc::Kind::Queue, t.items, t.runs, t.vs_python),
        Case::QueueMpmc(t) => ipc::run(ipc::Kind::QueueMpmc, t.items, t.runs, t.vs_python),
        Case::Pipe(t) => ipc::run(ipc::Kind::Pipe, t.items, t.runs, t.vs_python),
        Case::PoolImap(t) => pool::run(pool::Kind::Imap, t.tasks, t.runs, t.vs_python),
        Case::PoolApplyAsync(t) => pool::run(pool::Kind::ApplyAsync, t.tasks, t.runs, t.vs_python),
        Case::ClusterMap {
            vs_python,
            broker,
            tasks,
            runs,
        } => cluster::map(broker, tasks, runs, vs_python),
        Case::ClusterApply { broker, tasks } => cluster::apply(broker, tasks),
        Case::ClusterNodeLoss {
            broker,
            ttl_ms,
            runs,
        } => cluster::node_loss(broker, std::time::Duration::from_millis(ttl_ms), runs),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mp-bench: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
