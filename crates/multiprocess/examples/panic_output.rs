//! What a child prints when its function panics, and what the parent receives: a child started
//! with `spawn` and a pool task each panic; the parent prints the `Error::Panic` it got, while
//! the children print on stderr what the chosen `PanicOutput` says.
//!
//! Run: `cargo run --example panic_output -- [one-line|full|silent]` (default `one-line`, the
//! library's default). Try `full` with `RUST_BACKTRACE=1` for Rust's report with a backtrace.

use multiprocess::{Error, PanicOutput, Pool};

fn parse_digit(text: String) -> u32 {
    text.parse()
        .unwrap_or_else(|_| panic!("not a number: {text}"))
}

/// Prints what the parent received from a child.
fn show(what: &str, result: multiprocess::Result<u32>) {
    match result {
        Ok(n) => println!("{what}: returned {n}"),
        Err(Error::Panic { message, location }) => println!(
            "{what}: the parent received Error::Panic, message {message:?}, location {}",
            location.as_deref().unwrap_or("unknown")
        ),
        Err(other) => println!("{what}: another error: {other}"),
    }
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let output = match std::env::args().nth(1).as_deref() {
        None | Some("one-line") => PanicOutput::OneLine,
        Some("full") => PanicOutput::Full,
        Some("silent") => PanicOutput::Silent,
        Some(other) => {
            eprintln!("panic_output: unknown setting {other:?}: expected one-line, full or silent");
            std::process::exit(2);
        }
    };
    // For every child started from now on; `Process::panic_output` and
    // `PoolBuilder::panic_output` choose for one process or one pool.
    multiprocess::set_panic_output(output);

    show(
        "a child started with spawn",
        multiprocess::spawn(parse_digit, ("seven".to_string(),))?.join(),
    );
    let pool = Pool::new(2)?;
    show("a pool task", pool.apply(parse_digit, ("八".to_string(),)));
    show(
        "the next pool task",
        pool.apply(parse_digit, ("9".to_string(),)),
    );
    pool.close();
    pool.join()?;
    Ok(())
}
