//! `queue`, `queue-mpmc` and `pipe`: items through the library's queues and pipes, one process
//! to another.

use std::time::Instant;

use multiprocess::{pipe_simplex, Connection, Process, Queue};
use serde_bytes::ByteBuf;

use crate::{python, report};

fn produce_ints(q: Queue<u64>, n: u64) {
    for i in 0..n {
        q.put(i).expect("put");
    }
}

fn produce_bytes(q: Queue<Option<ByteBuf>>, n: u64) {
    let item = Some(ByteBuf::from(vec![0u8; 64]));
    for _ in 0..n {
        q.put(&item).expect("put");
    }
}

fn consume(q: Queue<Option<ByteBuf>>, done: Queue<u64>) {
    let mut n = 0;
    while q.get().expect("get").is_some() {
        n += 1;
    }
    done.put(n).expect("put");
}

fn send_all(w: Connection, n: u64) {
    for i in 0..n {
        w.send(&i).expect("send");
    }
}

/// 1 producer process → this process, bounded 1024, `u64` items; items/s.
fn spsc(items: u64) -> multiprocess::Result<f64> {
    let q = Queue::<u64>::bounded(1024)?;
    let start = Instant::now();
    let p = Process::new(produce_ints, (q.clone(), items)).start()?;
    for _ in 0..items {
        q.get()?;
    }
    p.join()?;
    Ok(items as f64 / start.elapsed().as_secs_f64())
}

/// 4 producer processes → 2 consumer processes, bounded 1024, 64-byte items; items/s.
fn mpmc(items: u64) -> multiprocess::Result<f64> {
    let q = Queue::<Option<ByteBuf>>::bounded(1024)?;
    let done = Queue::<u64>::new()?;
    let start = Instant::now();
    let consumers = (0..2)
        .map(|_| Process::new(consume, (q.clone(), done.clone())).start())
        .collect::<multiprocess::Result<Vec<_>>>()?;
    let producers = (0..4)
        .map(|_| Process::new(produce_bytes, (q.clone(), items / 4)).start())
        .collect::<multiprocess::Result<Vec<_>>>()?;
    for p in &producers {
        p.join()?;
    }
    for _ in &consumers {
        q.put(None)?;
    }
    let total: u64 = (0..2)
        .map(|_| done.get())
        .sum::<multiprocess::Result<u64>>()?;
    for c in &consumers {
        c.join()?;
    }
    assert_eq!(total, items / 4 * 4);
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// One child sends small messages through a one-way pipe; msg/s.
fn pipe_once(n: u64) -> multiprocess::Result<f64> {
    let (r, w) = pipe_simplex()?;
    let start = Instant::now();
    let p = Process::new(send_all, (w, n)).start()?;
    for _ in 0..n {
        r.recv::<u64>()?;
    }
    p.join()?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// One run of a case: items (or messages) per second.
type Measure = fn(u64) -> multiprocess::Result<f64>;

/// Which throughput case to run.
#[derive(Clone, Copy)]
pub enum Kind {
    Queue,
    QueueMpmc,
    Pipe,
}

pub fn run(kind: Kind, items: u64, runs: u32, vs_python: bool) -> Result<(), String> {
    let (case, unit, ours): (&str, &str, Measure) = match kind {
        Kind::Queue => ("queue", "items/s", spsc),
        Kind::QueueMpmc => ("queue-mpmc", "items/s", mpmc),
        Kind::Pipe => ("pipe", "msg/s", pipe_once),
    };
    let mut figures = Vec::new();
    for _ in 0..runs {
        figures.push(ours(items).map_err(|e| e.to_string())?);
    }
    let ours = report::median(figures);
    report::figure(case, None, ours, unit);
    if vs_python {
        let (script, mut args) = match kind {
            Kind::Queue => ("mp_queue.py", vec!["spsc".to_string()]),
            Kind::QueueMpmc => ("mp_queue.py", vec!["mpmc".to_string()]),
            Kind::Pipe => ("pipe.py", vec![]),
        };
        args.extend([items.to_string(), runs.to_string()]);
        let python = python::run(script, &args)?;
        report::figure(&format!("{case}-python"), None, python, unit);
        report::rate_ratio(case, ours, python);
    }
    Ok(())
}
