//! `mp demo`: a short tour of the library, printed as it runs.
//!
//! Each section starts real processes, says in plain words what it shows, then prints what
//! happened. The one line a panicking child prints on stderr (the library's default
//! [`PanicOutput`](multiprocess::PanicOutput)) is part of the tour; nothing else goes to stderr.

use std::time::{Duration, Instant};

use multiprocess::{
    current_process, get_context, parent_pid, Error, Pool, Process, Queue, StartMethod,
};

fn greet(method: StartMethod) {
    println!(
        "   [{method}] hello from {}, pid {}, started by pid {}",
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
        if q.put(m.to_string()).is_err() {
            return; // the parent sees the queue short of three items
        }
    }
}

fn crash() -> u64 {
    std::process::abort()
}

fn sleep_long() {
    std::thread::sleep(Duration::from_secs(60));
}

/// Prints `text` wrapped to 90 columns, each line starting with `indent`.
fn print_wrapped(indent: &str, text: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.chars().count() + word.chars().count() >= 90 {
            println!("{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    println!("{indent}{line}");
}

/// Prints a section's number and title, then what it shows.
fn section(number: u32, title: &str, what: &str) {
    println!("\n{number}. {title}");
    print_wrapped("   ", what);
}

/// Runs the tour.
pub fn run() -> multiprocess::Result<()> {
    let me = current_process();
    print_wrapped(
        "",
        &format!(
            "mp demo: a tour of multiprocess, a Rust library that runs a function in a \
             separate operating-system process (a child process), as Python's multiprocessing \
             does. This program is the parent: {}, process id (pid) {}. Each section below \
             says what it shows, then shows it.",
            me.name(),
            me.pid()
        ),
    );
    start_methods()?;
    panic_in_child()?;
    queue()?;
    pool()?;
    terminate()?;
    println!();
    print_wrapped(
        "",
        "That is the tour. `mp copy SOURCE DEST` puts a pool of processes to work: it copies \
         a folder as `cp -a` does.",
    );
    Ok(())
}

/// 1: a child under each start method, and a child that returns a value.
fn start_methods() -> multiprocess::Result<()> {
    section(
        1,
        "Starting child processes",
        "A child process runs one function and exits. There are three ways to make one: fork \
         (a copy of this program), spawn (this program started afresh) and forkserver (a copy \
         made by a small helper process; the default). Under each, a child says hello, the \
         parent waits for it to exit (exit code 0 means success), and a second child computes \
         12 × 12 and sends the result back to the parent.",
    );
    for method in StartMethod::ALL {
        let ctx = get_context(method);
        let started = Instant::now();
        let p = ctx.process(greet, (method,)).start()?;
        let code = p.join()?;
        println!(
            "   [{method}] {} exited with code {code}, {:.1} ms after it was started",
            p.name(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let value = ctx.spawn(square, (12,))?.join()?;
        println!("   [{method}] a child computed square(12) and sent back {value}");
    }
    Ok(())
}

/// 2: a panic in a child reaches the parent as an error.
fn panic_in_child() -> multiprocess::Result<()> {
    section(
        2,
        "A child that fails",
        "A child's function fails on purpose (in Rust, a panic). The parent does not crash: it \
         receives the failure as an error value, with the message and the line of code where \
         it happened, and carries on. The child itself reports the failure in one line on stderr, \
         the line starting with \"multiprocess:\" (a program may choose Rust's full report, or \
         silence, instead).",
    );
    match multiprocess::spawn(fail, ("on purpose".to_string(),))?.join() {
        Err(Error::Panic { message, location }) => println!(
            "   the parent received Error::Panic: message {message:?}, at {}",
            location.as_deref().unwrap_or("an unknown place")
        ),
        Err(other) => println!("   the parent received another error: {other}"),
        Ok(v) => println!("   unexpected: the child returned {v}"),
    }
    Ok(())
}

/// 3: a queue filled by a child.
fn queue() -> multiprocess::Result<()> {
    section(
        3,
        "A queue between processes",
        "A queue with room for 3 messages is handed to a child, which puts 3 messages in it \
         (Chinese for \"message 1\" to \"message 3\", as in the Python examples this project \
         grew from). The parent then sees exactly 3 waiting and takes the first out.",
    );
    let q = Queue::bounded(3)?;
    Process::new(produce, (q.clone(),)).start()?.join()?;
    println!(
        "   waiting: {}, full: {}, first out: {}",
        q.qsize(),
        q.full(),
        q.get()?
    );
    Ok(())
}

/// 4: a pool of workers, one of which dies.
fn pool() -> multiprocess::Result<()> {
    section(
        4,
        "A pool of worker processes",
        "A pool keeps 2 child processes and hands them tasks. First it squares 0 to 7. Then \
         one task kills its worker outright (abort): only that task fails, the pool replaces \
         the worker and goes on with the next task.",
    );
    let pool = Pool::new(2)?;
    println!("   squares of 0..8: {:?}", pool.map(square, 0..8)?);
    match pool.apply_async(crash, ())?.get() {
        Err(err) => println!("   the task that aborts: {err}"),
        Ok(v) => println!("   unexpected: the task returned {v}"),
    }
    println!("   the next task, square(9): {}", pool.apply(square, (9,))?);
    pool.close();
    pool.join()?;
    Ok(())
}

/// 5: a child stopped from outside.
fn terminate() -> multiprocess::Result<()> {
    section(
        5,
        "Stopping a child",
        "A child that would sleep for a minute is stopped by the parent with terminate() (the \
         SIGTERM signal). Its exit code is then -15: minus the number of the signal that \
         ended it.",
    );
    let p = Process::new(sleep_long, ()).name("Sleeper").start()?;
    p.terminate()?;
    println!("   {} stopped, exit code {}", p.name(), p.join()?);
    Ok(())
}
