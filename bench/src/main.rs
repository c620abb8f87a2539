//! `mp-bench`: the multiprocess library side by side with Python's `multiprocessing`, measured
//! in the same run on the same machine (see `shared/BENCH_PLAN.md`).
//!
//! Each case prints one line per figure, `case=NAME value=V unit=U`, and with `--vs-python`
//! also Python's figure and the ratio (always as the speedup over Python: above 1 is faster).

mod big_data;
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
    /// 1 MiB and 16 MiB `serde_bytes` items, 1 producer process → 1 consumer, bounded 8: GB/s.
    QueueBytes(BigData),
    /// The same with zero-copy buffers (`ShmBuf`), the consumer reading every byte: GB/s.
    QueueZeroCopy(BigData),
    /// Pool(2).map over 1 MiB arguments: GB/s of arguments.
    PoolBytes(BigData),
    /// A shared `Dict` from 2 processes, alternately set and get: operations per second.
    Dict {
        /// Also run Python's baseline (`Manager().dict()`) and print the ratio.
        #[arg(long)]
        vs_python: bool,
        /// Operations per run (both processes together).
        #[arg(long, default_value_t = 400_000)]
        ops: u64,
        /// Operations per run of Python's baseline (far slower: rates are compared).
        #[arg(long, default_value_t = 20_000)]
        python_ops: u64,
        /// Runs; the median run is reported.
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
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

/// Options of the big-data cases.
#[derive(clap::Args)]
struct BigData {
    /// Also run Python's baseline and print the ratio.
    #[arg(long)]
    vs_python: bool,
    /// Bytes moved per run and item size, after the warm-up items (queue cases).
    #[arg(long, default_value_t = 2 << 30)]
    total: usize,
    /// Arguments of 1 MiB per run (pool-bytes).
    #[arg(long, default_value_t = 512)]
    count: usize,
    /// Runs; the median run is reported.
    #[arg(long, default_value_t = 5)]
    runs: u32,
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

impl BigData {
    fn run(&self, kind: big_data::Kind) -> Result<(), String> {
        big_data::run(kind, self.total, self.count, self.runs, self.vs_python)
    }
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
        Case::QueueBytes(b) => b.run(big_data::Kind::QueueBytes),
        Case::QueueZeroCopy(b) => b.run(big_data::Kind::QueueZeroCopy),
        Case::PoolBytes(b) => b.run(big_data::Kind::PoolBytes),
        Case::Dict {
            vs_python,
            ops,
            python_ops,
            runs,
        } => big_data::run_dict(ops, python_ops, runs, vs_python),
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
