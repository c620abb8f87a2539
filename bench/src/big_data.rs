//! `queue-bytes`, `queue-zero-copy`, `pool-bytes` and `dict`: large items between processes, and
//! a shared dictionary used from two processes.

use std::time::Instant;

use multiprocess::{Barrier, Dict, Pool, Process, ProcessHandle, Queue, ShmBuf, ShmBufMut};
use serde_bytes::ByteBuf;

use crate::{python, report};

/// Item sizes of the queue cases.
const SIZES: [(usize, &str); 2] = [(1 << 20, "1MiB"), (16 << 20, "16MiB")];

/// Items that cross before the clock starts (in Python's baselines too): a queue's memory, a
/// process's reusable buffers and its caches warm up on the first ones (fresh pages cost some
/// 8 µs each to fault in on this machine; see BENCHMARKS.md), and the figure is the steady
/// state a long-lived producer and consumer see.
const WARMUP: usize = 32;

fn produce_bytes(q: Queue<Option<ByteBuf>>, size: usize, count: usize) {
    let item = Some(ByteBuf::from(vec![7u8; size]));
    for _ in 0..WARMUP + count {
        q.put(&item).expect("put");
    }
    q.put(None).expect("put");
}

/// 1 producer process → this process, bounded 8, `serde_bytes` items of `size`; GB/s.
fn queue_bytes(size: usize, total: usize) -> multiprocess::Result<f64> {
    let count = (total / size).max(1);
    let q = Queue::<Option<ByteBuf>>::bounded(8)?;
    let p = Process::new(produce_bytes, (q.clone(), size, count)).start()?;
    timed_drain(&q, &p, size * count, |item| item.len())
}

/// Takes the warm-up items from `q`, then the rest until `None`, timed; returns GB/s of the
/// bytes `take` reports, which must add up to `expected`.
fn timed_drain<T: serde::Serialize + serde::de::DeserializeOwned>(
    q: &Queue<Option<T>>,
    producer: &ProcessHandle,
    expected: usize,
    mut take: impl FnMut(T) -> usize,
) -> multiprocess::Result<f64> {
    for _ in 0..WARMUP {
        q.get()?;
    }
    let start = Instant::now();
    let mut got = 0;
    while let Some(item) = q.get()? {
        got += take(item);
    }
    let elapsed = start.elapsed().as_secs_f64();
    producer.join()?;
    assert_eq!(got, expected);
    Ok(got as f64 / elapsed / 1e9)
}

fn produce_zero_copy(q: Queue<Option<ShmBuf>>, size: usize, count: usize) {
    let data = vec![7u8; size];
    for _ in 0..WARMUP + count {
        let buf = ShmBufMut::from_slice(&data).expect("buffer");
        q.put(Some(buf.freeze())).expect("put");
    }
    q.put(None).expect("put");
}

/// Reads every byte (a sum of 8-byte words, which the compiler vectorises).
fn read_all(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let sum = (&mut words).fold(0u64, |s, w| {
        s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or_default()))
    });
    words
        .remainder()
        .iter()
        .fold(sum, |s, &b| s.wrapping_add(u64::from(b)))
}

/// As [`queue_bytes`], each item a fresh zero-copy buffer written by the producer; this
/// process reads every byte of each; GB/s.
fn queue_zero_copy(size: usize, total: usize) -> multiprocess::Result<f64> {
    let count = (total / size).max(1);
    let q = Queue::<Option<ShmBuf>>::bounded(8)?;
    let p = Process::new(produce_zero_copy, (q.clone(), size, count)).start()?;
    let mut sum = 0u64;
    let gbps = timed_drain(&q, &p, size * count, |buf| {
        sum = sum.wrapping_add(read_all(&buf));
        buf.len()
    })?;
    let expected = 0x0707_0707_0707_0707u64
        .wrapping_mul((size / 8) as u64)
        .wrapping_mul(count as u64);
    assert_eq!(sum, expected);
    Ok(gbps)
}

fn byte_len(b: ByteBuf) -> usize {
    b.len()
}

/// Reads every byte of a zero-copy argument; its length.
fn buf_len(b: ShmBuf) -> usize {
    std::hint::black_box(read_all(&b));
    b.len()
}

/// As [`pool_bytes`], the arguments zero-copy buffers (made before the clock starts, as the
/// byte strings are), which each task reads whole; GB/s of arguments.
fn pool_zero_copy(pool: &Pool, size: usize, count: usize) -> multiprocess::Result<f64> {
    let data = vec![7u8; size];
    let args = (0..count)
        .map(|_| Ok(ShmBufMut::from_slice(&data)?.freeze()))
        .collect::<multiprocess::Result<Vec<ShmBuf>>>()?;
    let start = Instant::now();
    let lens = pool.map(buf_len, args)?;
    assert_eq!(lens.iter().sum::<usize>(), size * count);
    Ok((size * count) as f64 / start.elapsed().as_secs_f64() / 1e9)
}

/// `Pool(2).map` over `count` arguments of `size` bytes; GB/s of arguments.
fn pool_bytes(pool: &Pool, size: usize, count: usize) -> multiprocess::Result<f64> {
    let args: Vec<ByteBuf> = (0..count).map(|_| ByteBuf::from(vec![7u8; size])).collect();
    let start = Instant::now();
    let lens = pool.map(byte_len, args)?;
    assert_eq!(lens.iter().sum::<usize>(), size * count);
    Ok((size * count) as f64 / start.elapsed().as_secs_f64() / 1e9)
}

fn dict_worker(d: Dict<u64, u64>, barrier: Barrier, seed: u64, ops: u64) {
    barrier.wait().expect("barrier");
    let mut key = seed;
    for i in 0..ops / 2 {
        key = (key.wrapping_mul(1_103_515_245) + 12345) % 1000;
        d.set(key, i).expect("set");
        d.get(&((key * 7) % 1000)).expect("get");
    }
}

/// 2 processes doing `ops` operations in all on one `Dict`, alternately `set` and `get` over
/// 1000 keys, timed from when both are ready to when both are done; ops/s.
fn dict_ops(ops: u64) -> multiprocess::Result<f64> {
    let d = Dict::<u64, u64>::new()?;
    let barrier = Barrier::new(3)?;
    let procs = [1, 2]
        .map(|seed| Process::new(dict_worker, (d.clone(), barrier.clone(), seed, ops / 2)).start());
    let procs = procs
        .into_iter()
        .collect::<multiprocess::Result<Vec<_>>>()?;
    barrier.wait()?;
    let start = Instant::now();
    for p in &procs {
        p.join()?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert!(!d.is_empty());
    Ok((ops / 4 * 4) as f64 / elapsed)
}

/// Which case to run.
#[derive(Clone, Copy)]
pub enum Kind {
    QueueBytes,
    QueueZeroCopy,
    PoolBytes,
}

fn median_of(runs: u32, mut one: impl FnMut() -> multiprocess::Result<f64>) -> Result<f64, String> {
    let mut figures = Vec::new();
    for _ in 0..runs {
        figures.push(one().map_err(|e| e.to_string())?);
    }
    Ok(report::median(figures))
}

/// Runs a big-data case: `total` bytes per run for the queues, `count` 1 MiB arguments for
/// the pool.
pub fn run(
    kind: Kind,
    total: usize,
    count: usize,
    runs: u32,
    vs_python: bool,
) -> Result<(), String> {
    match kind {
        Kind::QueueBytes | Kind::QueueZeroCopy => {
            for (size, label) in SIZES {
                let (case, ours) = match kind {
                    Kind::QueueBytes => {
                        ("queue-bytes", median_of(runs, || queue_bytes(size, total))?)
                    }
                    _ => (
                        "queue-zero-copy",
                        median_of(runs, || queue_zero_copy(size, total))?,
                    ),
                };
                let case = format!("{case}-{label}");
                report::figure(&case, None, ours, "GB/s");
                if vs_python {
                    let args = [
                        size.to_string(),
                        total.to_string(),
                        runs.to_string(),
                        WARMUP.to_string(),
                    ];
                    let py =
                        python::run("big_data.py", &[&["queue".to_string()], &args[..]].concat())?;
                    report::figure(&format!("{case}-python"), None, py, "GB/s");
                    report::rate_ratio(&case, ours, py);
                    if matches!(kind, Kind::QueueZeroCopy) {
                        let shm = python::run(
                            "big_data.py",
                            &[&["shm".to_string()], &args[..]].concat(),
                        )?;
                        report::figure(&format!("{case}-python-shm"), None, shm, "GB/s");
                        println!("case={case} ratio-vs-python-shm={:.2}", ours / shm);
                    }
                }
            }
        }
        Kind::PoolBytes => {
            let pool = Pool::new(2).map_err(|e| e.to_string())?;
            pool.map(byte_len, [ByteBuf::new(), ByteBuf::new()])
                .map_err(|e| e.to_string())?;
            let ours = median_of(runs, || pool_bytes(&pool, 1 << 20, count))?;
            report::figure("pool-bytes", None, ours, "GB/s");
            let zero_copy = median_of(runs, || pool_zero_copy(&pool, 1 << 20, count))?;
            report::figure("pool-bytes-zero-copy", None, zero_copy, "GB/s");
            if vs_python {
                let args = [
                    "pool".to_string(),
                    (1 << 20).to_string(),
                    count.to_string(),
                    runs.to_string(),
                ];
                let py = python::run("big_data.py", &args)?;
                report::figure("pool-bytes-python", None, py, "GB/s");
                report::rate_ratio("pool-bytes", ours, py);
            }
        }
    }
    Ok(())
}

/// Runs the `dict` case: `ops` operations per run (`python_ops` for Python's, which is far
/// slower; rates are compared).
pub fn run_dict(ops: u64, python_ops: u64, runs: u32, vs_python: bool) -> Result<(), String> {
    let ours = median_of(runs, || dict_ops(ops))?;
    report::figure("dict", None, ours, "ops/s");
    if vs_python {
        let py = python::run("dict.py", &[python_ops.to_string(), runs.to_string()])?;
        report::figure("dict-python", None, py, "ops/s");
        report::rate_ratio("dict", ours, py);
    }
    Ok(())
}
