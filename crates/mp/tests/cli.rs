//! The `mp` binary: `--version` and `demo` run and say what they should.

use std::process::Command;

#[allow(dead_code)]
mod copy_common;

fn mp(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mp"))
        .args(args)
        .output()
        .expect("run mp");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn version() {
    let (ok, out) = mp(&["--version"]);
    assert!(ok);
    assert!(out.starts_with("mp "), "{out}");
}

/// `mp demo` reads as a tour: an opening line, five numbered sections, and nothing alarming
/// even with `RUST_BACKTRACE=1` set (as it often is): the child that panics on purpose prints
/// one line of the library's own, and the parent shows the error it received.
#[test]
fn demo_reads_as_a_tour() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mp"));
    cmd.arg("demo").env("RUST_BACKTRACE", "1");
    let out = copy_common::run(cmd);
    out.expect_code(0);
    let stdout = &out.stdout;
    assert!(
        stdout.starts_with("mp demo: a tour of multiprocess, a Rust library that runs a function"),
        "{out}"
    );
    let titles = [
        "1. Starting child processes",
        "2. A child that fails",
        "3. A queue between processes",
        "4. A pool of worker processes",
        "5. Stopping a child",
    ];
    let mut from = 0;
    for title in titles {
        let at = stdout[from..]
            .find(&format!("\n{title}\n"))
            .unwrap_or_else(|| panic!("no section {title:?} after byte {from}: {out}"));
        from += at + title.len();
    }
    for method in ["fork", "spawn", "forkserver"] {
        assert!(
            stdout.contains(&format!(
                "[{method}] a child computed square(12) and sent back 144"
            )),
            "{out}"
        );
    }
    assert!(
        stdout.contains(
            "the parent received Error::Panic: message \"on purpose\", at crates/mp/src/demo.rs:"
        ),
        "{out}"
    );
    assert!(
        stdout.contains("waiting: 3, full: true, first out: 消息1"),
        "{out}"
    );
    assert!(stdout.contains("killed by signal 6 (SIGABRT)"), "{out}");
    assert!(stdout.contains("the next task, square(9): 81"), "{out}");
    assert!(stdout.contains("Sleeper stopped, exit code -15"), "{out}");
    // The child's own report: one line, the library's.
    let stderr: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(stderr.len(), 1, "{out}");
    assert!(
        stderr[0].starts_with("multiprocess: Process-")
            && stderr[0].contains(" panicked with \"on purpose\" at crates/mp/src/demo.rs:"),
        "{out}"
    );
    for raw in [
        "panicked at",
        "RUST_BACKTRACE",
        "stack backtrace",
        "thread '",
    ] {
        assert!(
            !stdout.contains(raw) && !out.stderr.contains(raw),
            "{raw:?} in {out}"
        );
    }
}
