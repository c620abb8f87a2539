//! SCENARIOS.md sections E (Pool) and F (crashes, timeouts, recycling), under every start
//! method.
//!
//! Rows and their tests: E01 `e01_*`; E02 `e02_*`; E03 `e03_*`; E04 `e04_*`; E05 `e05_*`;
//! E06 `e06_*` (Rust form: an input iterator fails by panicking); E07 `e07_*`; E08 `e08_*`;
//! E09 `e09_*`; E10 `e10_*` and `e09_*`; E11 `e11_*`; E12 `e12_*`; E13 `e13_*`; E15 `e15_*`;
//! E16 `e16_*`; E17 `e17_*`; E18 `e18_*`; F01 `f01_*` and `random_kills_during_map`; F03/F10
//! `f03_*` and `e13_*`; F04 `f04_*`; F05 `f04_*` (close/join after crashes); F06 `e15_*`;
//! F07 `f07_*`; F08 `f08_*`; F09 `f09_*`; F11 `f11_*`; F12 in `queue_crash.rs`.
//! Not applicable: E14 (the pool keeps only encoded bytes, never the caller's values, and
//! drops them once a task is answered) and F02 (no "fail the whole pool" executor mode: a
//! dead worker fails only its own task).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{pool, Unencodable, DEADLINE};
use multiprocess::{current_process, Error, Pool, StartMethod};

multiprocess::init_on_load!();

fn sqr(x: i64) -> i64 {
    x * x
}

fn mul(a: i64, b: i64) -> i64 {
    a * b
}

/// E01: `apply`, `map` (with and without chunks) and `starmap` equal the serial results, in
/// order.
fn e01_apply_map_starmap(method: StartMethod) {
    let p = pool(method, 4);
    assert_eq!(p.apply(sqr, (5,)).unwrap(), 25);
    let serial: Vec<i64> = (0..10).map(sqr).collect();
    assert_eq!(p.map(sqr, 0..10).unwrap(), serial);
    let serial: Vec<i64> = (0..100).map(sqr).collect();
    assert_eq!(p.map_chunked(sqr, 0..100, 20).unwrap(), serial);
    let pairs: Vec<(i64, i64)> = (0..10).zip(10..20).collect();
    let serial: Vec<i64> = pairs.iter().map(|&(a, b)| a * b).collect();
    assert_eq!(p.starmap(mul, pairs.clone()).unwrap(), serial);
    assert_eq!(
        p.starmap_async(mul, pairs, 3).unwrap().get().unwrap(),
        serial
    );
}

fn parse(s: String) -> Result<i64, String> {
    s.parse::<i64>().map_err(|e| e.to_string())
}

fn raise_on_negative(x: i64) -> i64 {
    assert!(x >= 0, "negative input {x}");
    x
}

/// E02/E13: exactly one callback with the result, or exactly one error callback with the error.
fn e02_callbacks(method: StartMethod) {
    let p = pool(method, 2);
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let (g1, g2) = (Arc::clone(&got), Arc::clone(&got));
    let r = p
        .apply_async_with(
            parse,
            ("1".to_string(),),
            move |v| g1.lock().unwrap().push(format!("ok {v:?}")),
            move |e| g2.lock().unwrap().push(format!("err {e}")),
        )
        .unwrap();
    assert_eq!(r.get().unwrap(), Ok(1));
    let (g1, g2) = (Arc::clone(&got), Arc::clone(&got));
    let r = p
        .apply_async_with(
            raise_on_negative,
            (-1,),
            move |v| g1.lock().unwrap().push(format!("ok {v}")),
            move |e| g2.lock().unwrap().push(format!("err {e}")),
        )
        .unwrap();
    match r.get() {
        Err(Error::Panic { message, .. }) => assert_eq!(message, "negative input -1"),
        other => panic!("{other:?}"),
    }
    assert!(r.ready());
    assert_eq!(r.successful(), Some(false));
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], "ok Ok(1)");
    assert!(
        got[1].starts_with("err ") && got[1].contains("negative input -1"),
        "{got:?}"
    );
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn fails_at_line() -> u8 {
    panic!("RuntimeError(123)")
}

/// E11: the worker's panic comes back with its message and the source location.
fn e11_panic_location(method: StartMethod) {
    let p = pool(method, 1);
    match p.apply(fails_at_line, ()) {
        Err(Error::Panic { message, location }) => {
            assert_eq!(message, "RuntimeError(123)");
            let location = location.expect("a location");
            assert!(location.contains("tests/pool.rs:"), "{location}");
        }
        other => panic!("{other:?}"),
    }
}

/// E03: `get` returns the value; `get_timeout` gives up in time while the task goes on.
fn e03_async_timeout(method: StartMethod) {
    let p = pool(method, 3);
    assert_eq!(p.apply_async(sqr, (7,)).unwrap().get().unwrap(), 49);
    let r = p.apply_async(sleep_ms, (500,)).unwrap();
    let t = Instant::now();
    assert!(matches!(
        r.get_timeout(Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    assert!(r.get_timeout(Duration::ZERO).unwrap_err().is_timeout());
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_millis(350),
        "{took:?}"
    );
    assert_eq!(r.get_timeout(DEADLINE).unwrap(), 500);
}

/// E04: `imap` gives ordered results lazily, and `next_timeout` gives up on a late one.
fn e04_imap(method: StartMethod) {
    let p = pool(method, 2);
    let got: Vec<i64> = p.imap(sqr, 0..10, 1).map(Result::unwrap).collect();
    assert_eq!(got, (0..10).map(sqr).collect::<Vec<_>>());
    let got: Vec<i64> = p.imap(sqr, 0..1000, 100).map(Result::unwrap).collect();
    assert_eq!(got, (0..1000).map(sqr).collect::<Vec<_>>());
    // An endless input works: only a bounded number of chunks is ever in flight.
    let first: Vec<i64> = p.imap(sqr, 0.., 1).take(20).map(Result::unwrap).collect();
    assert_eq!(first, (0..20).map(sqr).collect::<Vec<_>>());
    let mut slow = p.imap(sleep_ms, [300u64], 1);
    assert!(matches!(
        slow.next_timeout(Duration::from_millis(50)),
        Some(Err(Error::Timeout))
    ));
    assert_eq!(slow.next().unwrap().unwrap(), 300);
    assert!(slow.next().is_none());
}

fn mark(counter: String) {
    // Each worker records its pid once, in a file named after the test run.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(counter)
        .unwrap();
    // One write, so that lines from several workers never interleave.
    f.write_all(format!("{}\n", std::process::id()).as_bytes())
        .unwrap();
}

fn pid() -> u32 {
    std::process::id()
}

/// E07: invalid sizes are errors; the initializer runs once per worker before any task.
fn e07_make_pool(method: StartMethod) {
    assert!(matches!(Pool::new(0), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        Pool::builder().processes(1).maxtasksperchild(0).build(),
        Err(Error::InvalidArgument(_))
    ));
    let file = std::env::temp_dir().join(format!("mp-e07-{}-{method}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let p = Pool::builder()
        .processes(3)
        .start_method(method)
        .initializer(mark, (file.display().to_string(),))
        .unwrap()
        .build()
        .unwrap();
    let pids: std::collections::HashSet<u32> = (0..30)
        .map(|_| p.apply_async(pid, ()).unwrap())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|r| r.get().unwrap())
        .collect();
    p.close();
    p.join().unwrap();
    let marked: std::collections::HashSet<u32> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let _ = std::fs::remove_file(&file);
    assert_eq!(marked.len(), 3, "one initializer run per worker");
    assert!(
        pids.is_subset(&marked),
        "every task ran in an initialized worker"
    );
}

static REPORTS: std::sync::OnceLock<multiprocess::Queue<u32>> = std::sync::OnceLock::new();

fn keep_queue(q: multiprocess::Queue<u32>) {
    assert!(
        REPORTS.set(q).is_ok(),
        "the initializer runs once per worker"
    );
}

fn report_pid() {
    REPORTS
        .get()
        .expect("initialized")
        .put(std::process::id())
        .unwrap();
}

/// An initializer's arguments may hold handles: every worker, the replacements too, gets its
/// own copy of the queue (Python's `Pool(initializer=f, initargs=(queue,))`).
fn initializer_receives_handles(method: StartMethod) {
    let q = multiprocess::Queue::<u32>::new().unwrap();
    let p = Pool::builder()
        .processes(2)
        .start_method(method)
        .maxtasksperchild(2)
        .initializer(keep_queue, (q.clone(),))
        .unwrap()
        .build()
        .unwrap();
    let results: Vec<_> = (0..8)
        .map(|_| p.apply_async(report_pid, ()).unwrap())
        .collect();
    for r in results {
        r.get_timeout(DEADLINE).unwrap();
    }
    p.close();
    p.join().unwrap();
    let pids: std::collections::HashSet<u32> =
        (0..8).map(|_| q.get_timeout(DEADLINE).unwrap()).collect();
    assert!(q.empty());
    assert!(
        pids.len() >= 4,
        "replaced workers got the queue too: {pids:?}"
    );
}

/// E08: empty inputs give empty results without stalling.
fn e08_empty(method: StartMethod) {
    let p = pool(method, 1);
    assert!(p.map(sqr, Vec::<i64>::new()).unwrap().is_empty());
    assert!(p.imap(sqr, Vec::<i64>::new(), 1).next().is_none());
    assert!(p
        .map_async(sqr, Vec::<i64>::new(), 1)
        .unwrap()
        .get()
        .unwrap()
        .is_empty());
}

/// E09/E10: `terminate` and `join` return promptly with long tasks queued; a closed pool takes
/// no new tasks.
fn e09_terminate(method: StartMethod) {
    let p = pool(method, 3);
    let r = p.map_async(sleep_ms, vec![60_000u64; 1000], 1).unwrap();
    let t = Instant::now();
    p.terminate();
    p.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(matches!(r.get(), Err(Error::PoolTerminated)));
    let refused = p.apply_async(sqr, (1,)).unwrap_err();
    assert!(matches!(refused, Error::PoolTerminated) && refused.is_pool_not_running());

    let p = pool(method, 2);
    assert_eq!(p.map(sqr, 0..4).unwrap(), vec![0, 1, 4, 9]);
    p.close();
    assert!(matches!(p.apply_async(sqr, (1,)), Err(Error::PoolClosed)));
    assert!(p.join().is_ok());
    let q = pool(method, 1);
    assert!(
        matches!(q.join(), Err(Error::PoolStillRunning)),
        "join before close is an error"
    );
}

fn fail_after(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    panic!("{}", "x".repeat(1 << 20));
}

/// E12: a failing map still runs every task (no fail-fast), and close/join do not hang.
fn e12_no_failfast(method: StartMethod) {
    let p = pool(method, 2);
    let t = Instant::now();
    assert!(matches!(
        p.map(fail_after, [200u64, 200]),
        Err(Error::Panic { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(190));
    p.close();
    p.join().unwrap();
}

fn unencodable_result() -> Unencodable {
    Unencodable
}

fn takes_unencodable(_: Unencodable) {}

/// E13: an unencodable result is an encoding error for that task only, every time, without
/// losing workers; an unencodable argument fails at the call.
fn e13_unencodable(method: StartMethod) {
    let p = pool(method, 2);
    let results: Vec<_> = (0..20)
        .map(|_| p.apply_async(unencodable_result, ()).unwrap())
        .collect();
    for r in results {
        assert!(matches!(r.get(), Err(Error::Encode(ref m)) if m.contains("refuses")));
    }
    assert!(matches!(
        p.apply_async(takes_unencodable, (Unencodable,)),
        Err(Error::Encode(_))
    ));
    assert_eq!(p.apply(sqr, (3,)).unwrap(), 9);
}

/// E15/F06: with `maxtasksperchild`, workers are recycled and every result is right.
fn e15_worker_lifetime(method: StartMethod) {
    let p = Pool::builder()
        .processes(3)
        .start_method(method)
        .maxtasksperchild(10)
        .build()
        .unwrap();
    let results: Vec<_> = (0..100)
        .map(|i| p.apply_async(sqr, (i,)).unwrap())
        .collect();
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as i64);
    }
    let pids: std::collections::HashSet<u32> = (0..60).map(|_| p.apply(pid, ()).unwrap()).collect();
    assert!(pids.len() > 3, "workers were not recycled: {pids:?}");

    let one = Pool::builder()
        .processes(1)
        .start_method(method)
        .maxtasksperchild(3)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..4).map(|_| one.apply(pid, ()).unwrap()).collect();
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[1], pids[2]);
    assert_ne!(pids[2], pids[3]);
}

/// E16: close and join right after submitting, with maxtasksperchild 1: all results arrive.
fn e16_early_close(method: StartMethod) {
    let p = Pool::builder()
        .processes(3)
        .start_method(method)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let results: Vec<_> = (0..6)
        .map(|i| p.apply_async(sleep_ms, (50 + i,)).unwrap())
        .collect();
    p.close();
    p.join().unwrap();
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get_timeout(Duration::ZERO).unwrap(), 50 + i as u64);
    }
}

/// E17: callbacks run in the parent, off the caller's thread, exactly once per task, before
/// `ready()`; one that panics does not stop the others.
fn e17_callbacks(method: StartMethod) {
    let p = pool(method, 2);
    let calls = Arc::new(AtomicUsize::new(0));
    let caller = std::thread::current().id();
    let mut results = Vec::new();
    for i in 0..100u64 {
        let calls = Arc::clone(&calls);
        results.push(
            p.apply_async_with(
                sleep_ms,
                (i % 5,),
                move |v| {
                    assert_ne!(std::thread::current().id(), caller);
                    calls.fetch_add(1, Ordering::SeqCst);
                    if v == 3 {
                        panic!("a callback that panics");
                    }
                },
                |e| panic!("unexpected {e}"),
            )
            .unwrap(),
        );
    }
    for r in &results {
        r.get().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 100);
}

fn my_name() -> (String, bool) {
    let me = current_process();
    (me.name().to_string(), me.daemon())
}

/// E18: workers are named as in Python and are daemonic.
fn e18_names(method: StartMethod) {
    let p = pool(method, 2);
    let (name, daemon) = p.apply(my_name, ()).unwrap();
    let prefix = match method {
        StartMethod::Fork => "ForkPoolWorker-",
        StartMethod::Spawn => "SpawnPoolWorker-",
        StartMethod::ForkServer => "ForkServerPoolWorker-",
    };
    assert!(name.starts_with(prefix), "{name}");
    assert!(daemon);
}

fn die(q: multiprocess::Queue<u32>, how: u8) -> u8 {
    q.put(std::process::id()).unwrap();
    match how {
        0 => {
            // SAFETY: raising SIGKILL on ourselves is the point of the test.
            unsafe { libc::raise(libc::SIGKILL) };
            0
        }
        1 => std::process::exit(123),
        _ => std::process::abort(),
    }
}

/// F01: a worker killed by a signal, `exit` or `abort` fails exactly its task with WorkerLost
/// naming the cause, within a second; the other tasks complete; the pool stays usable.
fn f01_worker_lost(method: StartMethod) {
    let p = pool(method, 2);
    for (how, code) in [(0u8, -libc::SIGKILL), (1, 123), (2, -libc::SIGABRT)] {
        let others: Vec<_> = (0..10).map(|i| p.apply_async(sqr, (i,)).unwrap()).collect();
        let q = multiprocess::Queue::<u32>::new().unwrap();
        let dead = p.apply_async(die, (q.clone(), how)).unwrap();
        q.get_timeout(DEADLINE).unwrap(); // the task runs: its worker dies right after this
        let t = Instant::now();
        match dead.get_timeout(DEADLINE) {
            Err(Error::WorkerLost { exitcode }) => assert_eq!(exitcode, code),
            other => panic!("expected WorkerLost, got {other:?}"),
        }
        // SPEC: within a second of the death (typically a few ms; slack for a loaded CI).
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "case {how}: {:?}",
            t.elapsed()
        );
        for (i, r) in others.into_iter().enumerate() {
            assert_eq!(r.get_timeout(DEADLINE).unwrap(), (i * i) as i64);
        }
    }
    assert_eq!(
        p.map(sqr, 0..20).unwrap(),
        (0..20).map(sqr).collect::<Vec<_>>()
    );
    p.close();
    p.join().unwrap();
}

/// F01 (external kill) and the seeds' pattern of a queue handed to a pool task: the task
/// reports its worker's pid through the queue, and that worker is SIGKILLed from outside.
fn f01_external_kill(method: StartMethod) {
    let p = pool(method, 2);
    let q = multiprocess::Queue::<u32>::new().unwrap();
    let busy = p.apply_async(pid_then_sleep, (q.clone(), 60_000)).unwrap();
    let victim = q.get_timeout(DEADLINE).unwrap();
    // SAFETY: killing the pool worker that runs our task.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let t = Instant::now();
    assert!(matches!(
        busy.get_timeout(DEADLINE),
        Err(Error::WorkerLost { exitcode }) if exitcode == -libc::SIGKILL
    ));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(p.apply(sqr, (4,)).unwrap(), 16);
}

fn pid_then_sleep(q: multiprocess::Queue<u32>, ms: u64) -> u64 {
    q.put(std::process::id()).unwrap();
    sleep_ms(ms)
}

/// F07: a task past its time limit fails with Timeout; its worker is replaced; others finish.
fn f07_task_timeout(method: StartMethod) {
    let p = Pool::builder()
        .processes(2)
        .start_method(method)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t = Instant::now();
    let slow = p.apply_async(sleep_ms, (10_000,)).unwrap();
    let fast: Vec<_> = (0..10).map(|i| p.apply_async(sqr, (i,)).unwrap()).collect();
    let limit = slow.get_timeout(DEADLINE).unwrap_err();
    assert!(
        matches!(limit, Error::TimeLimit) && !limit.is_timeout(),
        "{limit:?}"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    for (i, r) in fast.into_iter().enumerate() {
        assert_eq!(r.get_timeout(DEADLINE).unwrap(), (i * i) as i64);
    }
    let p2 = pool(method, 1);
    let r = p2
        .apply_async_timeout(sleep_ms, (10_000,), Duration::from_millis(200))
        .unwrap();
    assert!(r.get_timeout(DEADLINE).unwrap_err().is_time_limit());
    assert_eq!(p2.apply(sqr, (2,)).unwrap(), 4);
}

fn hog(mb: usize) -> (u32, usize) {
    let v = vec![1u8; mb << 20];
    std::mem::forget(v); // keep it: the worker's memory stays high after the task
    (std::process::id(), mb)
}

/// F08: a worker over its memory ceiling is replaced after the task; the result arrives.
fn f08_memory_ceiling(method: StartMethod) {
    let p = Pool::builder()
        .processes(1)
        .start_method(method)
        .max_memory_per_worker(100 << 20)
        .build()
        .unwrap();
    let (first, mb) = p.apply(hog, (200,)).unwrap();
    assert_eq!(mb, 200);
    let (second, _) = p.apply(hog, (1,)).unwrap();
    assert_ne!(
        first, second,
        "the worker over the ceiling was not replaced"
    );
}

/// F11: a worker killed while idle is replaced; a new task completes.
fn f11_idle_worker_killed(method: StartMethod) {
    let p = pool(method, 1);
    let worker = p.apply(pid, ()).unwrap();
    // SAFETY: killing our own idle pool worker.
    unsafe { libc::kill(worker as i32, libc::SIGKILL) };
    assert_eq!(p.apply(sqr, (6,)).unwrap(), 36);
}

/// E05: `imap_unordered` gives every result, in any order.
fn e05_imap_unordered(method: StartMethod) {
    let p = pool(method, 2);
    let mut got: Vec<i64> = p
        .imap_unordered(sqr, 0..10, 1)
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..10).map(sqr).collect::<Vec<_>>());
    let mut got: Vec<i64> = p
        .imap_unordered(sqr, 0..1000, 100)
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..1000).map(sqr).collect::<Vec<_>>());
}

/// SPEC §2 "Many at once": 10,000 outstanding `apply_async` on a pool of 2 all complete.
fn many_outstanding(method: StartMethod) {
    let p = pool(method, 2);
    let results: Vec<_> = (0..10_000)
        .map(|i| p.apply_async(sqr, (i,)).unwrap())
        .collect();
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get_timeout(DEADLINE).unwrap(), (i * i) as i64);
    }
}

fn nested(method: StartMethod) -> (i64, i32) {
    let inner = pool(method, 2);
    let sum: i64 = inner.map(sqr, 0..5).unwrap().into_iter().sum();
    let child = multiprocess::Process::new(|| {}, ())
        .start_method(method)
        .start()
        .unwrap();
    (sum, child.join().unwrap())
}

/// SPEC §2 "Nesting works": a task starts a process and a pool of its own.
fn nesting(method: StartMethod) {
    let p = pool(method, 1);
    assert_eq!(p.apply(nested, (method,)).unwrap(), (30, 0));
}

fn victim_pid(q: multiprocess::Queue<u32>, x: i64) -> i64 {
    if x % 1000 == 500 {
        q.put(std::process::id()).unwrap();
    }
    x * 2
}

/// Issue 4: workers SIGKILLed at random during a 10,000-task map: every task that was not
/// running on a killed worker gets its right result, the others fail with WorkerLost, and
/// nothing hangs.
fn random_kills_during_map(method: StartMethod) {
    let p = pool(method, 2);
    let q = multiprocess::Queue::<u32>::new().unwrap();
    let results: Vec<_> = (0..10_000i64)
        .map(|x| p.apply_async(victim_pid, (q.clone(), x)).unwrap())
        .collect();
    let killer = std::thread::spawn(move || {
        for _ in 0..3 {
            if let Ok(pid) = q.get_timeout(DEADLINE) {
                // SAFETY: killing a pool worker of this test.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    });
    let mut lost = 0;
    for (x, r) in results.into_iter().enumerate() {
        match r.get_timeout(DEADLINE) {
            Ok(v) => assert_eq!(v, x as i64 * 2),
            Err(Error::WorkerLost { exitcode }) => {
                assert_eq!(exitcode, -libc::SIGKILL);
                lost += 1;
            }
            Err(e) => panic!("task {x}: {e}"),
        }
    }
    killer.join().unwrap();
    assert!(lost <= 3, "{lost} tasks lost for 3 kills");
}

fn to_int(s: String) -> i64 {
    s.parse().expect("not a number")
}

/// E02 (map_async): exactly one callback with every result; then exactly one error callback.
fn e02_map_async_callbacks(method: StartMethod) {
    let p = pool(method, 2);
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    for input in [vec!["1".to_string()], vec!["a".to_string()]] {
        let (g1, g2) = (Arc::clone(&got), Arc::clone(&got));
        let r = p
            .map_async_with(
                to_int,
                input,
                1,
                move |v| g1.lock().unwrap().push(format!("ok {v:?}")),
                move |e| g2.lock().unwrap().push(format!("err {e}")),
            )
            .unwrap();
        let _ = r.get();
        assert!(r.ready());
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], "ok [1]");
    assert!(
        got[1].starts_with("err ") && got[1].contains("not a number"),
        "{got:?}"
    );
}

/// E10: leaving the scope (drop) terminates the pool and reaps its workers.
fn e10_drop_terminates(method: StartMethod) {
    let worker = {
        let p = pool(method, 2);
        let r = p.map_async(sqr, 0..10, 1).unwrap();
        assert_eq!(r.get().unwrap(), (0..10).map(sqr).collect::<Vec<_>>());
        p.apply(pid, ()).unwrap()
    };
    assert!(
        common::wait_gone(worker, DEADLINE),
        "a worker outlived its pool"
    );
}

/// Encodes fine, never decodes.
#[derive(Debug, serde::Serialize)]
struct Undecodable(u8);

impl<'de> serde::Deserialize<'de> for Undecodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("refuses to be decoded"))
    }
}

fn takes_undecodable(_: Undecodable) -> u8 {
    0
}

fn returns_undecodable() -> Undecodable {
    Undecodable(1)
}

/// F03/F10: arguments that fail to decode in the worker, and results that fail to decode in
/// the parent, are errors for their task only; the pool goes on.
fn f03_decode_failures(method: StartMethod) {
    let p = pool(method, 2);
    let r = p.apply_async(takes_undecodable, (Undecodable(1),)).unwrap();
    assert!(matches!(r.get_timeout(DEADLINE), Err(Error::Decode(ref m)) if m.contains("refuses")));
    let r = p.apply_async(returns_undecodable, ()).unwrap();
    assert!(matches!(r.get_timeout(DEADLINE), Err(Error::Decode(ref m)) if m.contains("refuses")));
    assert_eq!(p.apply(sqr, (9,)).unwrap(), 81);
}

fn crash_on(data: String) -> usize {
    if data.len() > 1000 {
        // SAFETY: the point of the test.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    data.len()
}

/// F04: large payloads to workers that crash: clean WorkerLost errors, no deadlock.
fn f04_crash_with_big_data(method: StartMethod) {
    let p = pool(method, 2);
    let big = "a".repeat(4 << 20);
    let results: Vec<_> = (0..10)
        .map(|_| p.apply_async(crash_on, (big.clone(),)).unwrap())
        .collect();
    for r in results {
        assert!(matches!(
            r.get_timeout(DEADLINE),
            Err(Error::WorkerLost { exitcode }) if exitcode == -libc::SIGKILL
        ));
    }
    assert_eq!(p.apply(crash_on, ("ok".to_string(),)).unwrap(), 2);
    p.close();
    p.join().unwrap();
}

fn until_soft_limit() -> (bool, u64) {
    let t = Instant::now();
    while !multiprocess::soft_time_limit_exceeded() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5)); // a task at work, polling its limit
    }
    (
        multiprocess::soft_time_limit_exceeded(),
        t.elapsed().as_millis() as u64,
    )
}

/// F07 (soft limit): the task sees the soft limit at about the set time and returns a value;
/// the worker is not killed, and the next task starts with the flag down.
fn f07_soft_limit(method: StartMethod) {
    let p = Pool::builder()
        .processes(1)
        .start_method(method)
        .soft_task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let first_pid = p.apply(pid, ()).unwrap();
    let (seen, ms) = p.apply(until_soft_limit, ()).unwrap();
    assert!(seen, "the task never saw its soft limit");
    assert!((250..2000).contains(&ms), "seen after {ms} ms");
    assert_eq!(
        p.apply(pid, ()).unwrap(),
        first_pid,
        "the worker was replaced"
    );
    assert!(!p.apply(multiprocess::soft_time_limit_exceeded, ()).unwrap());
}

/// F09: idle workers exit cleanly after the idle timeout; the next task starts new ones.
fn f09_idle_timeout(method: StartMethod) {
    let p = Pool::builder()
        .processes(2)
        .start_method(method)
        .idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let first = p.apply(pid, ()).unwrap();
    assert!(
        common::wait_gone(first, DEADLINE),
        "an idle worker did not exit"
    );
    let second = p.apply(pid, ()).unwrap();
    assert_ne!(first, second);
    assert_eq!(
        p.map(sqr, 0..10).unwrap(),
        (0..10).map(sqr).collect::<Vec<_>>()
    );
}

/// E06 (Rust form): an input iterator that panics (Rust's way for an iterator to fail) panics
/// in the caller, after the results before it; the pool stays usable.
fn e06_input_iterator_panics(method: StartMethod) {
    let p = pool(method, 2);
    let items = (0..10i64).inspect(|&i| assert!(i != 3, "input fails at 3"));
    let mut got = Vec::new();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for r in p.imap(sqr, items, 1) {
            got.push(r.unwrap());
        }
    }));
    assert!(caught.is_err(), "the input's panic reached the caller");
    assert!(got.len() <= 3, "{got:?}");
    assert_eq!(p.map(sqr, 0..5).unwrap(), vec![0, 1, 4, 9, 16]);
}

fn wait_for_item(q: multiprocess::Queue<u8>) -> u8 {
    q.get_timeout(DEADLINE).unwrap()
}

fn put_item(q: multiprocess::Queue<u8>) -> u8 {
    q.put(7).unwrap();
    0
}

/// Review p1: a task queued behind a long one on a busy worker moves to an idle worker (here,
/// the long one waits for it: without that, a deadlock).
fn no_task_waits_behind_a_long_one(method: StartMethod) {
    let p = pool(method, 2);
    let q = multiprocess::Queue::<u8>::new().unwrap();
    let a = p.apply_async(wait_for_item, (q.clone(),)).unwrap();
    let b = p.apply_async(sleep_ms, (100,)).unwrap();
    let c = p.apply_async(put_item, (q.clone(),)).unwrap();
    assert_eq!(a.get_timeout(DEADLINE).unwrap(), 7);
    assert_eq!(b.get_timeout(DEADLINE).unwrap(), 100);
    assert_eq!(c.get_timeout(DEADLINE).unwrap(), 0);
}

fn count_queues(qs: Vec<multiprocess::Queue<u8>>) -> usize {
    qs.len()
}

/// Review p4: a task with more handles than fit in a message fails at the call and blocks
/// nothing behind it.
fn too_many_handles_fail_at_the_call(method: StartMethod) {
    let p = pool(method, 1);
    let qs: Vec<_> = (0..300)
        .map(|_| multiprocess::Queue::<u8>::new().unwrap())
        .collect();
    assert!(matches!(
        p.apply_async(count_queues, (qs,)),
        Err(Error::Encode(_))
    ));
    assert_eq!(p.apply(sqr, (5,)).unwrap(), 25);
}

fn slow_init(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn failing_init() {
    panic!("this initializer always fails");
}

/// Review p14/p2: time limits count from the task's start, not the worker's start-up; an
/// initializer that always fails breaks the pool instead of restarting workers for ever.
fn initializers_and_limits(method: StartMethod) {
    let p = Pool::builder()
        .processes(1)
        .start_method(method)
        .initializer(slow_init, (800,))
        .unwrap()
        .task_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert_eq!(p.apply(sqr, (3,)).unwrap(), 9);

    let broken = Pool::builder()
        .processes(2)
        .start_method(method)
        .initializer(failing_init, ())
        .unwrap()
        .build()
        .unwrap();
    let r = broken.apply_async(sqr, (3,)).unwrap();
    match r.get_timeout(DEADLINE) {
        Err(err @ Error::PoolBroken(_)) => assert!(err.to_string().contains("broken"), "{err}"),
        other => panic!("expected a broken pool, got {other:?}"),
    }
    assert!(matches!(
        broken.apply_async(sqr, (3,)),
        Err(Error::PoolBroken(_))
    ));
}

/// Review p7: a time-limit kill never hits the task after the one it was meant for.
fn timeout_kill_hits_only_its_task(method: StartMethod) {
    let p = Pool::builder()
        .processes(1)
        .start_method(method)
        .task_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    for _ in 0..30 {
        let a = p.apply_async(sleep_ms, (19,)).unwrap();
        let b = p.apply_async(sqr, (2,)).unwrap();
        let _ = a.get_timeout(DEADLINE);
        assert_eq!(b.get_timeout(DEADLINE).unwrap(), 4);
    }
}

/// Review p3/p5/p8: an `imap` begun before `close` still delivers; a bad value in a
/// `map_async` runs nothing; a callback that waits for a pool result does not wedge the pool.
fn close_bad_values_and_callbacks(method: StartMethod) {
    let p = pool(method, 2);
    let it = p.imap(sqr, 0..10, 1);
    p.close();
    let got: Vec<i64> = it.map(Result::unwrap).collect();
    assert_eq!(got, (0..10).map(sqr).collect::<Vec<_>>());
    p.join().unwrap();

    let p = Arc::new(pool(method, 2));
    let file = std::env::temp_dir().join(format!("mp-p5-{}-{method}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let items: Vec<(String, Option<Unencodable>)> = (0..8)
        .map(|i| (file.display().to_string(), (i == 5).then_some(Unencodable)))
        .collect();
    assert!(matches!(
        p.starmap_async(touch, items, 1),
        Err(Error::Encode(_))
    ));
    assert!(!file.exists(), "a task ran although the call failed");

    let inner = Arc::clone(&p);
    let (tx, rx) = std::sync::mpsc::channel();
    p.apply_async_with(
        sqr,
        (2,),
        move |_| {
            let _ = tx.send(inner.apply(sqr, (3,)).is_err());
        },
        |_| {},
    )
    .unwrap()
    .get_timeout(DEADLINE)
    .unwrap();
    assert!(
        rx.recv_timeout(DEADLINE).unwrap(),
        "a blocking call inside a callback"
    );
    assert_eq!(p.apply(sqr, (4,)).unwrap(), 16);
    assert!(p
        .map_async(sqr, Vec::<i64>::new(), 1)
        .unwrap()
        .get_timeout(Duration::from_millis(100))
        .unwrap()
        .is_empty());
}

fn touch(path: String, _unused: Option<Unencodable>) {
    std::fs::write(path, b"ran").unwrap();
}

per_method!(
    e11_panic_location,
    no_task_waits_behind_a_long_one,
    too_many_handles_fail_at_the_call,
    initializers_and_limits,
    initializer_receives_handles,
    timeout_kill_hits_only_its_task,
    close_bad_values_and_callbacks,
    e06_input_iterator_panics,
    f07_soft_limit,
    f09_idle_timeout,
    e02_map_async_callbacks,
    e10_drop_terminates,
    f03_decode_failures,
    f04_crash_with_big_data,
    e05_imap_unordered,
    many_outstanding,
    nesting,
    random_kills_during_map,
    e01_apply_map_starmap,
    e02_callbacks,
    e03_async_timeout,
    e04_imap,
    e07_make_pool,
    e08_empty,
    e09_terminate,
    e12_no_failfast,
    e13_unencodable,
    e15_worker_lifetime,
    e16_early_close,
    e17_callbacks,
    e18_names,
    f01_worker_lost,
    f01_external_kill,
    f07_task_timeout,
    f08_memory_ceiling,
    f11_idle_worker_killed,
);
