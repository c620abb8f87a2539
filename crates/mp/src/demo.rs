//! `mp demo`: a short tour of the library, printed as it runs.

use std::time::{Duration, Instant};

use multiprocess::{current_process, get_context, parent_pid, Error, Process, StartMethod};

fn greet(method: StartMethod) {
    println!(
        "  [{method}] child {} pid={} parent={}",
        current_process().name(),
        std::process::id(),
        parent_pid()
    );
}

fn square(x: u64) -> u64 {
    x * x
}

fn fail(reason: String) -> u64 {
    panic!("{reason}")
}

fn sleep_long() {
    std::thread::sleep(Duration::from_secs(60));
}

/// Runs the tour.
pub fn run() -> multiprocess::Result<()> {
    println!("{}", current_process());
    for method in StartMethod::ALL {
        let ctx = get_context(method);
        let started = Instant::now();
        let p = ctx.process(greet, (method,)).start()?;
        let code = p.join()?;
        println!(
            "  [{method}] {} exited with {code} after {:.2} ms",
            p.name(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let value = ctx.spawn(square, (12,))?.join()?;
        println!("  [{method}] spawn(square, 12) returned {value}");
    }

    println!("a panic in a child comes back as an error:");
    match multiprocess::spawn(fail, ("on purpose".to_string(),))?.join() {
        Err(err @ Error::Panic { .. }) => println!("  {err}"),
        other => println!("  unexpected: {other:?}"),
    }

    let p = Process::new(sleep_long, ()).name("Sleeper").start()?;
    p.terminate()?;
    println!(
        "terminate() on {}: exitcode {} (-15 is SIGTERM)",
        p.name(),
        p.join()?
    );
    Ok(())
}
