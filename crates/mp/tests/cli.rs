//! The `mp` binary: `--version` and `demo` run and say what they should.

use std::process::Command;

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

#[test]
fn demo() {
    let (ok, out) = mp(&["demo"]);
    assert!(ok, "{out}");
    for method in ["fork", "spawn", "forkserver"] {
        assert!(
            out.contains(&format!("[{method}] spawn(square, 12) returned 144")),
            "{out}"
        );
    }
    assert!(out.contains("the child process panicked at"), "{out}");
    assert!(
        out.contains("qsize 3 (exact), full true, first item 消息1"),
        "{out}"
    );
    assert!(out.contains("killed by signal 6 (SIGABRT)"), "{out}");
    assert!(out.contains("apply(square, 9) = 81"), "{out}");
    assert!(out.contains("exitcode -15"), "{out}");
}
