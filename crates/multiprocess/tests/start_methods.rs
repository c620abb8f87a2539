//! SCENARIOS.md section G (start methods and process-creation hygiene), and the lifetime
//! guarantees of SPEC §2: no orphans, fork safety of the default method.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{join, recv, DEADLINE};
use multiprocess::{get_context, get_start_method, pipe, Connection, Process, StartMethod};

multiprocess::init_on_load!();

fn child_start_method() -> StartMethod {
    get_start_method()
}

/// G01: a context reports its method, and a child started with it reports the same.
fn g01_context(method: StartMethod) {
    let ctx = get_context(method);
    assert_eq!(ctx.start_method(), method);
    let h = ctx.spawn(child_start_method, ()).unwrap();
    assert_eq!(h.process().start_method(), method);
    assert_eq!(h.join().unwrap(), method);
}

fn echo_once(conn: Connection) {
    let x: u64 = conn.recv().unwrap();
    conn.send(&(x + 1)).unwrap();
}

/// G02: a pipe made in the parent works in a child under every method (no object is tied to
/// one start method here, so nothing needs to be rejected).
fn g02_objects_cross_methods(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    let p = Process::new(echo_once, (theirs,))
        .start_method(method)
        .start()
        .unwrap();
    mine.send(&41u64).unwrap();
    assert_eq!(recv::<u64>(&mine), 42);
    assert_eq!(join(&p), 0);
}

fn count_open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn report_fds(conn: Connection, gate: Connection, probe: i32) {
    let _ = gate.recv::<()>();
    // SAFETY: fcntl F_GETFD only queries the descriptor table.
    let has_probe = unsafe { libc::fcntl(probe, libc::F_GETFD) } != -1;
    conn.send(&(count_open_fds(), has_probe)).unwrap();
}

/// G04: children started together hold the same number of descriptors (nothing leaks between
/// siblings), and a descriptor the parent opened without close-on-exec is not inherited.
fn g04_no_fd_leaks(method: StartMethod) {
    if method == StartMethod::Fork {
        return; // a forked child is a copy of the parent: it inherits everything, as in Python
    }
    let probe_file = std::fs::File::open("/proc/self/exe").unwrap();
    let probe = std::os::fd::AsRawFd::as_raw_fd(&probe_file);
    // SAFETY: clearing FD_CLOEXEC on our own open descriptor.
    unsafe { libc::fcntl(probe, libc::F_SETFD, 0) };
    let mut ends = Vec::new();
    let mut procs = Vec::new();
    for _ in 0..5 {
        let (mine, theirs) = pipe().unwrap();
        let (gate_mine, gate_theirs) = pipe().unwrap();
        procs.push(
            Process::new(report_fds, (theirs, gate_theirs, probe))
                .start_method(method)
                .start()
                .unwrap(),
        );
        ends.push((mine, gate_mine));
    }
    let mut counts = Vec::new();
    for (mine, gate) in &ends {
        gate.send(&()).unwrap();
        let (count, has_probe): (usize, bool) = recv(mine);
        assert!(
            !has_probe,
            "the parent's descriptor leaked into a {method} child"
        );
        counts.push(count);
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
    for p in &procs {
        assert_eq!(join(p), 0);
    }
}

fn answer() -> u32 {
    42
}

/// G05: a re-executed child runs only its target (it returns its value and exits; it does not
/// run the test harness's `main` again, which would start the whole test suite).
fn g05_child_runs_only_the_target(method: StartMethod) {
    let started = Instant::now();
    let h = get_context(method).spawn(answer, ()).unwrap();
    let p = h.process().clone();
    assert_eq!(h.join().unwrap(), 42);
    assert_eq!(join(&p), 0);
    assert!(started.elapsed() < DEADLINE);
}

fn sleep_forever() {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn start_daemonic_children(conn: Connection, method: StartMethod) {
    let a = Process::new(sleep_forever, ())
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
    let b = Process::new(sleep_forever, ())
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
    conn.send(&(a.pid(), b.pid())).unwrap();
    sleep_forever();
}

/// SPEC §2 "No orphans": when a parent dies by SIGKILL, its daemonic children exit within 2 s.
fn daemonic_children_die_with_a_killed_parent(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    let parent = Process::new(start_daemonic_children, (theirs, method))
        .start_method(method)
        .start()
        .unwrap();
    let (a, b): (u32, u32) = recv(&mine);
    assert!(common::pid_exists(a) && common::pid_exists(b));
    parent.kill().unwrap();
    assert_eq!(join(&parent), -libc::SIGKILL);
    let limit = Duration::from_secs(2);
    assert!(
        common::wait_gone(a, limit),
        "daemonic child {a} outlived its parent"
    );
    assert!(
        common::wait_gone(b, limit),
        "daemonic child {b} outlived its parent"
    );
}

/// SPEC §2 "Fork safety": 50 processes started with the default method while 8 threads of the
/// parent hammer a mutex and the allocator all start, run and exit 0.
#[test]
fn default_method_is_safe_with_busy_threads() {
    assert_eq!(get_start_method(), StartMethod::ForkServer);
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Mutex::new(Vec::<Box<[u8]>>::new()));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let stop = Arc::clone(&stop);
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let block = vec![i as u8; 64 + n % 4096].into_boxed_slice();
                    let mut v = shared.lock().unwrap();
                    v.push(block);
                    if v.len() > 256 {
                        v.clear();
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let procs: Vec<_> = (0..50)
        .map(|_| Process::new(answer, ()).start().unwrap())
        .collect();
    let codes: Vec<i32> = procs.iter().map(join).collect();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(codes.iter().all(|&c| c == 0), "{codes:?}");
}

per_method!(
    g01_context,
    g02_objects_cross_methods,
    g04_no_fd_leaks,
    g05_child_runs_only_the_target,
    daemonic_children_die_with_a_killed_parent,
);
