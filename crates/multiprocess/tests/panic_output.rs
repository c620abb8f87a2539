//! What a child prints on stderr when its target panics ([`PanicOutput`]): under each setting,
//! set for every child or for one process / one pool, under each start method, for pool
//! workers and for a child's own children, with `RUST_BACKTRACE=1` in the environment. The
//! parent receives `Error::Panic` with message and location every time.
//!
//! Each case runs [`scenario`] in a copy of this test binary, whose stderr (which every child
//! inherits) the case reads. `scenario` does nothing unless [`SCENARIO_ENV`] is set.

multiprocess::init_on_load!();

mod common;

use std::process::Command;

use common::DEADLINE;
use multiprocess::{
    get_panic_output, set_panic_output, Error, PanicOutput, Pool, Process, StartMethod, Target,
};

/// Names the setting and its scope for [`scenario`]: `full|one-line|silent` and
/// `global|local`.
const SCENARIO_ENV: &str = "MULTIPROCESS_TEST_PANIC_SCENARIO";

/// The line of the `panic!` in [`fail`].
const FAIL_LINE: u32 = line!() + 3;

fn fail(what: String) -> u32 {
    panic!("{what}")
}

fn square(x: u32) -> u32 {
    x * x
}

/// A child that starts a child of its own (with nothing set: it inherits) that panics, and
/// returns the message its child's panic came back with.
fn nested(method: StartMethod, what: String) -> String {
    let err = Process::new(fail, (what,))
        .start_method(method)
        .spawn()
        .and_then(|mut h| h.join_timeout(DEADLINE))
        .expect_err("the grandchild panicked");
    match err {
        Error::Panic {
            message,
            location: Some(_),
        } => message,
        other => panic!("expected a panic, got {other:?}"),
    }
}

fn parse_setting(name: &str) -> PanicOutput {
    match name {
        "full" => PanicOutput::Full,
        "one-line" => PanicOutput::OneLine,
        "silent" => PanicOutput::Silent,
        other => panic!("unknown setting {other}"),
    }
}

/// Checks that `result` is the panic of [`fail`] with `message`.
fn assert_fail_panic<T: std::fmt::Debug>(result: multiprocess::Result<T>, message: &str) {
    let want_location = format!("{}:{FAIL_LINE}:", file!());
    match result {
        Err(Error::Panic {
            message: got,
            location: Some(location),
        }) => {
            assert_eq!(got, message);
            assert!(location.starts_with(&want_location), "{location}");
        }
        other => panic!("expected the panic {message:?}, got {other:?}"),
    }
}

/// The messages of the panics [`scenario`] causes, in order.
fn messages() -> Vec<String> {
    let mut all = Vec::new();
    for method in StartMethod::ALL {
        for kind in ["spawn", "start", "pool", "nested"] {
            all.push(format!("boom {method} {kind}"));
        }
    }
    all
}

/// `p` with its own setting, if it has one.
fn with_setting<F: Target<A>, A>(p: Process<F, A>, own: Option<PanicOutput>) -> Process<F, A> {
    match own {
        Some(setting) => p.panic_output(setting),
        None => p,
    }
}

/// Under each start method: a child whose value comes back (`spawn`), one that sends nothing
/// back (`start`, exit code 1), a pool task (and the pool goes on), and a child's child.
#[test]
fn scenario() {
    let Ok(spec) = std::env::var(SCENARIO_ENV) else {
        return; // only the cases below run it
    };
    let (setting, scope) = spec.split_once(',').expect("SETTING,SCOPE");
    let setting = parse_setting(setting);
    let local = scope == "local";
    // Set locally, the setting must win over a different global one.
    let other = match setting {
        PanicOutput::Full => PanicOutput::Silent,
        _ => PanicOutput::Full,
    };
    set_panic_output(if local { other } else { setting });
    let own = local.then_some(setting);
    let mut messages = messages().into_iter();
    for method in StartMethod::ALL {
        let p = Process::new(fail, (messages.next().unwrap(),)).start_method(method);
        let mut h = with_setting(p, own).spawn().unwrap();
        assert_fail_panic(h.join_timeout(DEADLINE), &format!("boom {method} spawn"));

        let p = Process::new(fail, (messages.next().unwrap(),)).start_method(method);
        assert_eq!(common::join(&with_setting(p, own).start().unwrap()), 1);

        let mut b = Pool::builder().processes(1).start_method(method);
        if let Some(s) = own {
            b = b.panic_output(s);
        }
        let pool = b.build().unwrap();
        let task = pool.apply_async(fail, (messages.next().unwrap(),)).unwrap();
        assert_fail_panic(task.get_timeout(DEADLINE), &format!("boom {method} pool"));
        let next = pool.apply_async(square, (7,)).unwrap();
        assert_eq!(next.get_timeout(DEADLINE).unwrap(), 49);
        pool.terminate();
        pool.join().unwrap();

        let p = Process::new(nested, (method, messages.next().unwrap())).start_method(method);
        let mut h = with_setting(p, own).spawn().unwrap();
        assert_eq!(
            h.join_timeout(DEADLINE).unwrap(),
            format!("boom {method} nested")
        );
    }
    // The setting of this process is untouched by what its children were told.
    assert_eq!(get_panic_output(), if local { other } else { setting });
}

/// Runs [`scenario`] with `setting` and `scope` and returns its stderr, having checked that it
/// passed.
fn run_scenario(setting: &str, scope: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = common::output_within(
        Command::new(exe)
            .args(["scenario", "--exact", "--nocapture", "--test-threads=1"])
            .env(SCENARIO_ENV, format!("{setting},{scope}"))
            .env("RUST_BACKTRACE", "1"),
    );
    assert!(
        out.status.success() && out.stdout.contains("1 passed"),
        "the scenario failed ({}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stderr
}

fn full(scope: &str) {
    let stderr = run_scenario("full", scope);
    // Rust's default hook: `thread '…' panicked at FILE:LINE:COL:`, the message, a backtrace.
    let n = messages().len();
    assert_eq!(stderr.matches(" panicked at ").count(), n, "{stderr}");
    assert_eq!(stderr.matches("stack backtrace:").count(), n, "{stderr}");
    let at = format!("panicked at {}:{FAIL_LINE}:", file!());
    assert_eq!(stderr.matches(&at).count(), n, "{stderr}");
    for message in messages() {
        assert!(
            stderr.contains(&format!("\n{message}\n")),
            "{message}: {stderr}"
        );
    }
}

fn one_line(scope: &str) {
    let stderr = run_scenario("one-line", scope);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), messages().len(), "{stderr}");
    let at = format!(" at {}:{FAIL_LINE}:", file!());
    for message in messages() {
        let ending = format!(" panicked with {message:?}{at}");
        let line = lines
            .iter()
            .find(|l| l.contains(&ending))
            .unwrap_or_else(|| panic!("no line for {message:?}: {stderr}"));
        assert!(line.starts_with("multiprocess: "), "{line}");
        assert!(line.contains(" (pid "), "{line}");
    }
    for raw in [
        "panicked at",
        "RUST_BACKTRACE",
        "stack backtrace",
        "thread '",
    ] {
        assert!(!stderr.contains(raw), "{raw:?} in {stderr}");
    }
}

fn silent(scope: &str) {
    let stderr = run_scenario("silent", scope);
    assert_eq!(stderr, "");
}

#[test]
fn full_for_every_child() {
    full("global");
}

#[test]
fn full_for_one_process_or_pool() {
    full("local");
}

#[test]
fn one_line_for_every_child() {
    one_line("global");
}

#[test]
fn one_line_for_one_process_or_pool() {
    one_line("local");
}

#[test]
fn silent_for_every_child() {
    silent("global");
}

#[test]
fn silent_for_one_process_or_pool() {
    silent("local");
}

/// The default, with nothing set anywhere, is one line.
#[test]
fn one_line_is_the_default() {
    assert_eq!(get_panic_output(), PanicOutput::OneLine);
    assert_eq!(PanicOutput::default(), PanicOutput::OneLine);
}
