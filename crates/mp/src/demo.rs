//! `mp demo`: a short tour of the library, printed as it runs.

use std::time::{Duration, Instant};

use multiprocess::{
    current_process, get_context, parent_pid, Error, Pool, Process, Queue, StartMethod,
};

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

fn produce(q: Queue<String>) {
    for m in ["消息1", "消息2", "消息3"] {
        q.put(m.to_string()).expect("put");
    }
}

fn crash() -> u64 {
    std::process::abort()
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

    let q = Queue::bounded(3)?;
    Process::new(produce, (q.clone(),)).start()?.join()?;
    println!(
        "a queue filled by a child: qsize {} (exact), full {}, first item {}",
        q.qsize(),
        q.full(),
        q.get()?
    );

    let pool = Pool::new(2)?;
    println!("Pool(2).map(square, 0..8) = {:?}", pool.map(square, 0..8)?);
    match pool.apply_async(crash, ())?.get() {
        Err(err) => println!("a pool worker that aborts fails only its task: {err}"),
        Ok(v) => println!("unexpected: {v}"),
    }
    println!(
        "and the pool goes on: apply(square, 9) = {}",
        pool.apply(square, (9,))?
    );
    pool.close();
    pool.join()?;

    let p = Process::new(sleep_long, ()).name("Sleeper").start()?;
    p.terminate()?;
    println!(
        "terminate() on {}: exitcode {} (-15 is SIGTERM)",
        p.name(),
        p.join()?
    );
    Ok(())
}
