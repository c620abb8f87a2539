//! SCENARIOS.md section A (Process), under every start method.

mod common;

use std::time::{Duration, Instant};

use common::{join, recv, DEADLINE};
use multiprocess::{
    active_children, current_process, parent_process, pipe, spawn, Connection, Error, Process, Run,
    StartMethod,
};
use serde::{Deserialize, Serialize};

multiprocess::init_on_load!();

/// Python's `kwargs={'hello': 23, 'bye': 2.54}`, as a struct.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Kwargs {
    hello: i32,
    bye: f64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct A01Report {
    args: (i32, i32),
    kwargs: Kwargs,
    name: String,
    pid: u32,
}

fn a01_child(conn: Connection, a: i32, b: i32, kwargs: Kwargs) {
    let me = current_process();
    conn.send(&A01Report {
        args: (a, b),
        kwargs,
        name: me.name().to_string(),
        pid: std::process::id(),
    })
    .unwrap();
}

/// A01: a named daemonic process with arguments reports them, its name and pid; `exitcode`,
/// `is_alive` and `active_children` change as it starts and ends.
fn a01_process(method: StartMethod) {
    let (parent_end, child_end) = pipe().unwrap();
    let kwargs = Kwargs {
        hello: 23,
        bye: 2.54,
    };
    let p = Process::new(a01_child, (child_end, 1, 2, kwargs.clone()))
        .name("SomeProcess")
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
    assert!(p.daemon());
    assert_eq!(p.name(), "SomeProcess");
    assert_eq!(p.start_method(), method);
    let report: A01Report = recv(&parent_end);
    assert_eq!(report.args, (1, 2));
    assert_eq!(report.kwargs, kwargs);
    assert_eq!(report.name, "SomeProcess");
    assert_eq!(report.pid, p.pid());
    assert_eq!(join(&p), 0);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    assert!(!active_children().iter().any(|c| c.pid() == p.pid()));
}

fn block_on(conn: Connection) {
    let _ = conn.recv::<()>();
}

/// A01 (running half): while the child runs, `exitcode` is `None`, it is alive and listed.
fn a01_running_state(method: StartMethod) {
    let (release, child_end) = pipe().unwrap();
    let p = Process::new(block_on, (child_end,))
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(p.exitcode(), None);
    assert!(p.is_alive());
    assert!(active_children().iter().any(|c| c.pid() == p.pid()));
    release.send(&()).unwrap();
    assert_eq!(join(&p), 0);
}

fn report_parent(conn: Connection) {
    let parent = parent_process().expect("a child has a parent");
    conn.send(&(parent.pid(), parent.name().to_string(), parent.is_alive()))
        .unwrap();
}

/// A02: the main process's own attributes, and a child's view of its parent.
fn a02_current(method: StartMethod) {
    let me = current_process();
    assert!(me.is_alive());
    assert!(!me.daemon());
    assert_eq!(me.ident(), std::process::id());
    assert_eq!(me.exitcode(), None);
    assert_eq!(me.name(), "MainProcess");
    assert!(parent_process().is_none());

    let (mine, theirs) = pipe().unwrap();
    let p = Process::new(report_parent, (theirs,))
        .start_method(method)
        .start()
        .unwrap();
    let (pid, name, alive): (u32, String, bool) = recv(&mine);
    assert_eq!(pid, std::process::id());
    assert_eq!(name, "MainProcess");
    assert!(alive);
    assert_eq!(join(&p), 0);
}

fn report_daemon_flags(conn: Connection) {
    // Started by a daemonic process without a flag: inherits `true`.
    let inherited = Process::new(|| {}, ()).start().unwrap();
    let explicit = Process::new(|| {}, ()).daemon(false).start().unwrap();
    conn.send(&(
        current_process().daemon(),
        inherited.daemon(),
        explicit.daemon(),
    ))
    .unwrap();
    assert_eq!(join(&inherited), 0);
    assert_eq!(join(&explicit), 0);
}

/// A04: the daemon flag defaults to the creator's; explicit values win; a daemonic process may
/// start children (SPEC §2 "Nesting works" overrides CPython's refusal).
fn a04_daemon_flag(method: StartMethod) {
    let default = Process::new(|| {}, ())
        .start_method(method)
        .start()
        .unwrap();
    assert!(!default.daemon());
    assert_eq!(join(&default), 0);

    let (mine, theirs) = pipe().unwrap();
    let d = Process::new(report_daemon_flags, (theirs,))
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(recv::<(bool, bool, bool)>(&mine), (true, true, false));
    assert_eq!(join(&d), 0);
}

fn announce_then_sleep(conn: Connection) {
    conn.send(&"ready").unwrap();
    std::thread::sleep(Duration::from_secs(100));
}

/// Starts a child that signals readiness and then sleeps 100 s.
fn start_sleeper(method: StartMethod) -> multiprocess::ProcessHandle {
    let (mine, theirs) = pipe().unwrap();
    let p = Process::new(announce_then_sleep, (theirs,))
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(recv::<String>(&mine), "ready");
    p
}

/// A05: `join_timeout(0)` returns at once while the child runs; `terminate` ends it with
/// `-SIGTERM`.
fn a05_terminate(method: StartMethod) {
    let p = start_sleeper(method);
    let t = Instant::now();
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    assert!(t.elapsed() < Duration::from_millis(100));
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.terminate().unwrap();
    assert_eq!(join(&p), -libc::SIGTERM);
    assert!(!p.is_alive());
    assert!(!active_children().iter().any(|c| c.pid() == p.pid()));
    // Signalling a process that has exited is harmless.
    p.terminate().unwrap();
    p.kill().unwrap();
}

/// A06: `kill` ends the child with `-SIGKILL`.
fn a06_kill(method: StartMethod) {
    let p = start_sleeper(method);
    p.kill().unwrap();
    assert_eq!(join(&p), -libc::SIGKILL);
}

/// A07: `interrupt` sends SIGINT; with the default disposition the child dies of it.
fn a07_interrupt(method: StartMethod) {
    let p = start_sleeper(method);
    p.interrupt().unwrap();
    assert_eq!(join(&p), -libc::SIGINT);
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn panics() {
    panic!("this child panics on purpose")
}

/// A08: an explicit exit code propagates; a return is 0; a panic is 1.
fn a08_exit_codes(method: StartMethod) {
    for code in [0, 1, 8, 255] {
        let p = Process::new(exit_with, (code,))
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(join(&p), code);
    }
    let p = Process::new(|| {}, ())
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(join(&p), 0);
    let p = Process::new(panics, ())
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(join(&p), 1);
}

fn panic_into_file(path: String) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::create(&path).unwrap();
    // SAFETY: dup2 onto stderr with a valid open descriptor.
    unsafe { libc::dup2(file.as_raw_fd(), 2) };
    panic!("marker line 1/0");
}

/// A09: a panic message reaches stderr before the child exits with 1: by default one line, with
/// the message and location, written straight to descriptor 2 (so even a forked child under
/// libtest's output capture gets it there). `tests/panic_output.rs` covers every setting.
fn a09_stderr_flush(method: StartMethod) {
    let dir = std::env::temp_dir().join(format!("mp-a09-{}-{method}", std::process::id()));
    let p = Process::new(panic_into_file, (dir.display().to_string(),))
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(join(&p), 1);
    let text = std::fs::read_to_string(&dir).unwrap();
    let _ = std::fs::remove_file(&dir);
    let want = format!(
        " (pid {}) panicked with \"marker line 1/0\" at {}:",
        p.pid(),
        file!()
    );
    assert!(
        text.starts_with("multiprocess: Process-") && text.contains(&want),
        "stderr was: {text}"
    );
    assert_eq!(text.lines().count(), 1, "stderr was: {text}");
}

/// A10: the sentinel is not ready while the child runs, and ready once it has exited, also
/// to a wait with no time to wait.
fn a10_sentinel(method: StartMethod) {
    let (release, theirs) = pipe().unwrap();
    let p = Process::new(block_on, (theirs,))
        .start_method(method)
        .start()
        .unwrap();
    assert!(multiprocess::wait(&[&p], Some(Duration::ZERO))
        .unwrap()
        .is_empty());
    release.send(&()).unwrap();
    assert_eq!(multiprocess::wait(&[&p], Some(DEADLINE)).unwrap(), vec![0]);
    // A zero timeout still looks once.
    assert_eq!(
        multiprocess::wait(&[&p], Some(Duration::ZERO)).unwrap(),
        vec![0]
    );
    assert_eq!(join(&p), 0);
}

/// A11 (Rust form): dropping a handle early neither kills nor leaks the child: it is still
/// listed, and reaped (no zombie) once it exits.
fn a11_drop_handle_early(method: StartMethod) {
    let (release, theirs) = pipe().unwrap();
    let pid = Process::new(block_on, (theirs,))
        .start_method(method)
        .start()
        .unwrap()
        .pid();
    let listed = active_children()
        .into_iter()
        .find(|c| c.pid() == pid)
        .expect("a dropped handle's child is still tracked");
    release.send(&()).unwrap();
    assert_eq!(join(&listed), 0);
    assert!(!active_children().iter().any(|c| c.pid() == pid));
    assert!(!common::pid_exists(pid), "the child was not reaped");
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A12: many processes at once all exit 0; many terminated right after start all show
/// `-SIGTERM`; nothing hangs.
fn a12_many_processes(method: StartMethod) {
    let n = if method == StartMethod::Spawn {
        20
    } else {
        100
    };
    let procs: Vec<_> = (0..n)
        .map(|_| {
            Process::new(sleep_ms, (10,))
                .start_method(method)
                .start()
                .unwrap()
        })
        .collect();
    for p in &procs {
        assert_eq!(join(p), 0);
    }
    let procs: Vec<_> = (0..n)
        .map(|_| {
            Process::new(sleep_ms, (100_000,))
                .start_method(method)
                .start()
                .unwrap()
        })
        .collect();
    for p in &procs {
        p.terminate().unwrap();
    }
    for p in &procs {
        assert_eq!(join(p), -libc::SIGTERM);
    }
}

fn recurse(conn: Connection, ids: Vec<u32>, method: StartMethod) {
    conn.send(&ids).unwrap();
    if ids.len() < 2 {
        for i in 0..2 {
            let mut next = ids.clone();
            next.push(i);
            let conn = conn.try_clone().unwrap();
            let p = Process::new(recurse, (conn, next, method))
                .start_method(method)
                .start()
                .unwrap();
            assert_eq!(join(&p), 0);
        }
    }
}

/// A13: recursive start/join to depth 2, all reporting through one pipe, in order.
fn a13_recursion(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    recurse(theirs, vec![], method);
    let got: Vec<Vec<u32>> = (0..7).map(|_| recv(&mine)).collect();
    let want: Vec<Vec<u32>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0, 1],
        vec![1],
        vec![1, 0],
        vec![1, 1],
    ];
    assert_eq!(got, want);
}

fn grandchild_watches_parent(conn: Connection) {
    let parent = parent_process().unwrap();
    conn.send(&parent.is_alive()).unwrap();
    let ended = parent.join_timeout(DEADLINE);
    conn.send(&(ended, parent.is_alive())).unwrap();
}

fn child_starts_grandchild(conn: Connection, method: StartMethod) {
    let _grandchild = Process::new(grandchild_watches_parent, (conn,))
        .start_method(method)
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_secs(100));
}

/// A14: a grandchild sees its parent alive, then sees it die.
fn a14_parent_death_seen(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    let p = Process::new(child_starts_grandchild, (theirs, method))
        .start_method(method)
        .start()
        .unwrap();
    assert!(recv::<bool>(&mine), "the parent is alive at first");
    p.terminate().unwrap();
    assert_eq!(join(&p), -libc::SIGTERM);
    assert_eq!(recv::<(bool, bool)>(&mine), (true, false));
}

/// The seeds' "subclass Process, override run()": an echo server that upper-cases.
#[derive(Serialize, Deserialize)]
struct UpperCaser {
    conn: Connection,
}

impl Run for UpperCaser {
    fn run(self) {
        while let Ok(Some(s)) = self.conn.recv::<Option<String>>() {
            self.conn.send(&s.to_uppercase()).unwrap();
        }
    }
}

/// A16: a `Run` type with a duplex pipe echo loop.
fn a16_subclassing(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    let p = UpperCaser { conn: theirs }
        .into_process()
        .start_method(method)
        .start()
        .unwrap();
    let submit = |s: &str| -> String {
        mine.send(&Some(s.to_string())).unwrap();
        recv(&mine)
    };
    assert_eq!(submit("hello"), "HELLO");
    assert_eq!(submit("world"), "WORLD");
    mine.send(&None::<String>).unwrap();
    assert_eq!(join(&p), 0);
}

fn exiting_parent(conn: Connection, gate: Connection, method: StartMethod) {
    let daemonic = Process::new(sleep_ms, (100_000,))
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
    let plain = Process::new(block_on, (gate,))
        .start_method(method)
        .start()
        .unwrap();
    conn.send(&(daemonic.pid(), plain.pid())).unwrap();
    // Return without joining: the exit clean-up must handle both children.
}

/// Sends the size of this process's descriptor table and its limit on open descriptors.
fn report_fd_room(conn: Connection) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let size: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("FDSize in /proc/self/status");
    // SAFETY: rlim is a valid out struct for getrlimit.
    let limit = unsafe {
        let mut rlim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim), 0);
        rlim.rlim_cur
    };
    conn.send(&(size, limit)).unwrap();
}

/// A daemonic child has room for 1000 descriptors from its start (fewer if its limit is
/// lower): its table is shared with the thread that watches for the parent's death, and
/// then each growth of it would stall the child for an RCU grace period.
fn daemon_has_room_for_descriptors(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    let d = Process::new(report_fd_room, (theirs,))
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
    let (size, limit) = recv::<(u64, u64)>(&mine);
    assert!(size >= limit.min(1000), "table of {size}, limit {limit}");
    assert_eq!(join(&d), 0);
}

/// A17: when a process returns, its daemonic child is terminated and its other child joined.
fn a17_exit_joins_and_terminates(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    let (gate_mine, gate_theirs) = pipe().unwrap();
    let parent = Process::new(exiting_parent, (theirs, gate_theirs, method))
        .start_method(method)
        .start()
        .unwrap();
    let (daemonic, plain): (u32, u32) = recv(&mine);
    // The parent waits for its non-daemonic child, which waits for our gate.
    assert_eq!(
        parent.join_timeout(Duration::from_millis(300)).unwrap(),
        None
    );
    gate_mine.send(&()).unwrap();
    assert_eq!(join(&parent), 0);
    assert!(common::wait_gone(plain, DEADLINE));
    assert!(common::wait_gone(daemonic, DEADLINE));
}

fn square(x: u64) -> u64 {
    x * x
}

fn add3(a: i32, b: i32, c: i32) -> i32 {
    a + b + c
}

fn big(n: usize) -> String {
    "7".repeat(n)
}

fn panic_with_value(x: u32) -> u32 {
    if x > 0 {
        panic!("x was {x}");
    }
    x
}

/// `spawn`: the return value comes back, large ones too; a panic comes back with its message
/// and location; an early exit or a signal is told apart.
fn spawn_results(method: StartMethod) {
    let ctx = multiprocess::get_context(method);
    assert_eq!(ctx.spawn(square, (12,)).unwrap().join().unwrap(), 144);
    assert_eq!(ctx.spawn(add3, (1, 2, 3)).unwrap().join().unwrap(), 6);
    let n = 16 * 1024 * 1024 + 3;
    assert_eq!(ctx.spawn(big, (n,)).unwrap().join().unwrap(), "7".repeat(n));
    match ctx.spawn(panic_with_value, (5,)).unwrap().join() {
        Err(Error::Panic { message, location }) => {
            assert_eq!(message, "x was 5");
            assert!(location.unwrap().contains("tests/process.rs"));
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    let err = ctx.spawn(exit_with, (3,)).unwrap().join().unwrap_err();
    assert!(matches!(err, Error::Exited(3)), "{err:?}");
    let mut h = ctx.spawn(sleep_ms, (100_000,)).unwrap();
    let t = Instant::now();
    assert!(matches!(
        h.join_timeout(Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(90));
    h.process().kill().unwrap();
    let err = h.join_timeout(DEADLINE).unwrap_err();
    assert!(matches!(err, Error::Signaled(9)), "{err:?}");
    assert!(err.to_string().contains("SIGKILL"));
    let mut h = ctx.spawn(big, (1,)).unwrap();
    assert_eq!(h.join_timeout(DEADLINE).unwrap(), "7");
    assert!(matches!(
        h.join_timeout(DEADLINE),
        Err(Error::AlreadyJoined)
    ));
}

/// A value whose encoding always fails.
#[derive(Debug)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("this value refuses to be decoded"))
    }
}

/// Encodes fine, never decodes.
#[derive(Serialize, Debug)]
struct Undecodable(u8);

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("this value refuses to be decoded"))
    }
}

fn takes_unencodable(_: Unencodable) {}
fn takes_undecodable(_: Undecodable) -> u8 {
    0
}
fn returns_unencodable() -> Unencodable {
    Unencodable
}

/// Bad values fail at the call, in the right place, and start nothing.
fn bad_values(method: StartMethod) {
    let before = active_children().len();
    let err = Process::new(takes_unencodable, (Unencodable,))
        .start_method(method)
        .start()
        .unwrap_err();
    assert!(
        matches!(err, Error::Encode(ref m) if m.contains("refuses")),
        "{err:?}"
    );
    assert_eq!(active_children().len(), before);

    let ctx = multiprocess::get_context(method);
    let err = ctx
        .spawn(takes_undecodable, (Undecodable(1),))
        .unwrap()
        .join();
    assert!(
        matches!(err, Err(Error::Decode(ref m)) if m.contains("refuses")),
        "{err:?}"
    );
    let err = ctx.spawn(returns_unencodable, ()).unwrap().join();
    assert!(
        matches!(err, Err(Error::Encode(ref m)) if m.contains("refuses")),
        "{err:?}"
    );
}

/// `spawn` with the default method works too.
#[test]
fn spawn_default_method() {
    assert_eq!(spawn(square, (3,)).unwrap().join().unwrap(), 9);
}

per_method!(
    a01_process,
    a01_running_state,
    a02_current,
    a04_daemon_flag,
    a05_terminate,
    a06_kill,
    a07_interrupt,
    a08_exit_codes,
    a09_stderr_flush,
    a10_sentinel,
    a11_drop_handle_early,
    a12_many_processes,
    a13_recursion,
    a14_parent_death_seen,
    a16_subclassing,
    daemon_has_room_for_descriptors,
    a17_exit_joins_and_terminates,
    spawn_results,
    bad_values,
);
