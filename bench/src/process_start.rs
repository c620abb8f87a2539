//! `process-start`: start + join of a trivial process.

use std::time::Instant;

use multiprocess::{get_context, StartMethod};

use crate::{python, report};

fn noop() {}

/// Median over `runs` of the mean milliseconds per start + join with `method`.
fn measure(method: StartMethod, iters: u32, runs: u32) -> multiprocess::Result<f64> {
    let ctx = get_context(method);
    ctx.process(noop, ()).start()?.join()?; // warm-up: starts the fork server, if any
    let mut per_run = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..iters {
            let p = ctx.process(noop, ()).start()?;
            let code = p.join()?;
            if code != 0 {
                return Err(multiprocess::Error::Exited(code));
            }
        }
        per_run.push(started.elapsed().as_secs_f64() * 1e3 / f64::from(iters));
    }
    Ok(report::median(per_run))
}

pub fn run(
    method: StartMethod,
    iters: Option<u32>,
    runs: u32,
    vs_python: bool,
) -> Result<(), String> {
    let iters = iters.unwrap_or(if method == StartMethod::Spawn {
        50
    } else {
        300
    });
    let ours = measure(method, iters, runs).map_err(|e| e.to_string())?;
    report::figure("process-start", Some(method.as_str()), ours, "ms");
    if !vs_python {
        return Ok(());
    }
    let py_args = |m: StartMethod| vec![m.to_string(), iters.to_string(), runs.to_string()];
    let python = python::run("process_start.py", &py_args(method))?;
    report::figure("process-start-python", Some(method.as_str()), python, "ms");
    report::time_ratio("process-start", "ratio", ours, python);
    if method != StartMethod::Fork {
        // The target (SPEC §3) compares with Python's fastest way, fork.
        let python_fork = python::run("process_start.py", &py_args(StartMethod::Fork))?;
        report::figure("process-start-python", Some("fork"), python_fork, "ms");
        report::time_ratio("process-start", "ratio-vs-python-fork", ours, python_fork);
    }
    Ok(())
}
