//! Process-creation hygiene beyond SCENARIOS.md: failures reported at the call, no hang at
//! exit, no state shared with forks the library did not make, the parent's working directory,
//! stdin, many handles, extreme timeouts. Each case that changes process-wide state runs inside
//! a helper child, so the test process itself is never changed.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{join, DEADLINE};
use multiprocess::{get_context, pipe, spawn, Connection, Error, Process, Queue, StartMethod};

multiprocess::init_on_load!();

/// Runs `f` in a forked helper child and returns what it returns.
fn in_helper<F, R>(f: F) -> R
where
    F: multiprocess::Target<(), Output = R>,
    R: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut h = get_context(StartMethod::Fork).spawn(f, ()).unwrap();
    h.join_timeout(DEADLINE).unwrap()
}

fn noop() {}

fn exec_failure() -> String {
    // An environment too large for execve: the spawn must fail at `start`, with the reason.
    std::env::set_var("MULTIPROCESS_TEST_HUGE", "x".repeat(4 << 20));
    match Process::new(noop, ())
        .start_method(StartMethod::Spawn)
        .start()
    {
        Ok(p) => format!("started {p:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn exec_failure_is_an_error_at_start() {
    let err = in_helper(exec_failure);
    assert!(err.contains("Argument list too long"), "{err}");
}

fn big_result() -> String {
    "r".repeat(8 << 20)
}

fn exit_with_unjoined_big_result(method: StartMethod) -> bool {
    let _unjoined = get_context(method).spawn(big_result, ()).unwrap();
    std::process::exit(0)
}

/// Exiting while a child blocks writing a large result nobody will read does not hang.
fn exit_does_not_wait_for_unread_results(method: StartMethod) {
    let p = Process::new(exit_with_unjoined_big_result, (method,))
        .start_method(StartMethod::Fork)
        .start()
        .unwrap();
    assert_eq!(join(&p), 0);
}

fn report_cwd() -> String {
    std::env::current_dir().unwrap().display().to_string()
}

fn cwd_follows_the_parent() -> (String, String) {
    let ctx = get_context(StartMethod::ForkServer);
    // The fork server starts here, in the current directory...
    let before = ctx.spawn(report_cwd, ()).unwrap().join().unwrap();
    // ...and a later child still starts where its parent is now.
    std::env::set_current_dir("/tmp").unwrap();
    let after = ctx.spawn(report_cwd, ()).unwrap().join().unwrap();
    (before, after)
}

#[test]
fn forkserver_children_start_in_the_parents_directory() {
    let (before, after) = in_helper(cwd_follows_the_parent);
    assert_ne!(before, "/tmp");
    assert_eq!(after, "/tmp");
}

fn read_stdin() -> usize {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).unwrap_or(0)
}

/// A child's stdin is `/dev/null`, as in Python: it never competes for the parent's input.
fn stdin_is_dev_null(method: StartMethod) {
    assert_eq!(
        get_context(method)
            .spawn(read_stdin, ())
            .unwrap()
            .join()
            .unwrap(),
        0
    );
}

fn count_queues(queues: Vec<Queue<u8>>) -> usize {
    queues.len()
}

/// Up to 250 OS handles cross as arguments (a FIFO queue is two: its shared memory, and the
/// socket that carries the handles inside its items); more fail at `start` with a clear error.
fn many_handles(method: StartMethod) {
    let mut queues: Vec<Queue<u8>> = (0..126).map(|_| Queue::new().unwrap()).collect();
    let err = get_context(method)
        .spawn(count_queues, (queues.clone(),))
        .unwrap_err();
    assert!(
        matches!(err, Error::Encode(ref m) if m.contains("at most 250")),
        "{err:?}"
    );
    queues.pop();
    let h = get_context(method).spawn(count_queues, (queues,)).unwrap();
    assert_eq!(h.join().unwrap(), 125);
}

fn panic_after_hook_change() -> String {
    std::panic::set_hook(Box::new(|_| {}));
    match get_context(StartMethod::Fork)
        .spawn(|| -> u8 { panic!("message survives a replaced hook") }, ())
        .unwrap()
        .join()
    {
        Err(Error::Panic { message, .. }) => message,
        other => format!("{other:?}"),
    }
}

#[test]
fn panic_message_survives_a_replaced_hook() {
    assert_eq!(
        in_helper(panic_after_hook_change),
        "message survives a replaced hook"
    );
}

fn block_on(conn: Connection) {
    let _ = conn.recv::<()>();
}

/// A `fork` the library did not make does not inherit the registry of children: the forked
/// copy's exit neither waits for them nor steals their exit statuses.
fn foreign_fork_does_not_steal_statuses(method: StartMethod) {
    let (release, theirs) = pipe().unwrap();
    let child = Process::new(block_on, (theirs,))
        .start_method(method)
        .start()
        .unwrap();
    // SAFETY: the forked copy only calls `exit`, which is what this test is about.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        std::process::exit(0);
    }
    let mut status = 0;
    // SAFETY: waiting for the copy we just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    release.send(&()).unwrap();
    assert_eq!(join(&child), 0);
}

fn sleep_then(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Timeouts too large to add to the clock mean "no limit", never a panic.
fn huge_timeouts(method: StartMethod) {
    let (a, b) = pipe().unwrap();
    b.send(&1u8).unwrap();
    assert!(a.poll(Duration::MAX).unwrap());
    let p = Process::new(noop, ()).start_method(method).start().unwrap();
    assert_eq!(p.join_timeout(Duration::MAX).unwrap(), Some(0));
    let mut h = get_context(method).spawn(sleep_then, (1,)).unwrap();
    assert_eq!(h.join_timeout(Duration::MAX).unwrap(), 1);
    let q = multiprocess::Queue::<u8>::new().unwrap();
    q.put(1).unwrap();
    assert_eq!(q.get_timeout(Duration::MAX).unwrap(), 1);
    assert_eq!(spawn(sleep_then, (0,)).unwrap().join().unwrap(), 0);
}

per_method!(
    exit_does_not_wait_for_unread_results,
    stdin_is_dev_null,
    many_handles,
    foreign_fork_does_not_steal_statuses,
    huge_timeouts,
);
