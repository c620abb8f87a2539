//! `pool-imap` and `pool-apply-async`: per-task overhead of a pool of 2 on a trivial task.

use std::time::Instant;

use multiprocess::Pool;

use crate::{python, report};

fn square(x: u64) -> u64 {
    x * x
}

/// `imap(square, 0..n)`, chunksize 1; µs per task.
fn imap(pool: &Pool, n: u64) -> multiprocess::Result<f64> {
    let start = Instant::now();
    let mut total = 0u64;
    for r in pool.imap(square, 0..n, 1) {
        total = total.wrapping_add(r?);
    }
    assert_eq!(total, (0..n).map(square).fold(0u64, u64::wrapping_add));
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// `n` × `apply_async(square, (i,))`, then `get` each; µs per task.
fn apply(pool: &Pool, n: u64) -> multiprocess::Result<f64> {
    let start = Instant::now();
    let results = (0..n)
        .map(|i| pool.apply_async(square, (i,)))
        .collect::<multiprocess::Result<Vec<_>>>()?;
    let mut total = 0u64;
    for r in results {
        total = total.wrapping_add(r.get()?);
    }
    assert_eq!(total, (0..n).map(square).fold(0u64, u64::wrapping_add));
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// Which pool case to run.
#[derive(Clone, Copy)]
pub enum Kind {
    Imap,
    ApplyAsync,
}

pub fn run(kind: Kind, tasks: u64, runs: u32, vs_python: bool) -> Result<(), String> {
    let (case, py_kind): (&str, &str) = match kind {
        Kind::Imap => ("pool-imap", "imap"),
        Kind::ApplyAsync => ("pool-apply-async", "apply"),
    };
    let pool = Pool::new(2).map_err(|e| e.to_string())?;
    pool.map(square, 0..10).map_err(|e| e.to_string())?; // warm-up: workers started
    let mut per_run = Vec::new();
    for _ in 0..runs {
        let us = match kind {
            Kind::Imap => imap(&pool, tasks),
            Kind::ApplyAsync => apply(&pool, tasks),
        };
        per_run.push(us.map_err(|e| e.to_string())?);
    }
    let ours = report::median(per_run);
    report::figure(case, None, ours, "us/task");
    if vs_python {
        let args = [py_kind.to_string(), tasks.to_string(), runs.to_string()];
        let python = python::run("pool.py", &args)?;
        report::figure(&format!("{case}-python"), None, python, "us/task");
        report::time_ratio(case, "ratio", ours, python);
    }
    Ok(())
}
