//! SCENARIOS.md section D (synchronisation primitives and shared memory), under every start
//! method where a child is involved, and kill safety: a lock whose holder is SIGKILLed is
//! recovered, a barrier whose party dies breaks instead of hanging.

mod common;

use std::time::{Duration, Instant};

use common::{join, DEADLINE};
use multiprocess::{
    pipe, Array, Barrier, BoundedSemaphore, Condition, Connection, Error, Event, Lock, Process,
    ProcessHandle, Queue, RLock, RawArray, RawValue, Semaphore, StartMethod, Value,
};

multiprocess::init_on_load!();

const MS100: Duration = Duration::from_millis(100);

/// Runs `f`, asserting that it took `min`..`min + 250 ms` (SCENARIOS.md tolerance).
fn assert_takes<T>(min: Duration, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    let took = t.elapsed();
    assert!(
        took + Duration::from_millis(10) >= min && took <= min + Duration::from_millis(250),
        "took {took:?}, expected about {min:?}"
    );
    r
}

/// Polls `cond` until it holds, failing the test after [`DEADLINE`].
fn poll_until(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn start<F, A>(method: StartMethod, f: F, args: A) -> ProcessHandle
where
    F: multiprocess::Target<A>,
    A: serde::Serialize + serde::de::DeserializeOwned,
{
    Process::new(f, args).start_method(method).start().unwrap()
}

fn released_too_often<T: std::fmt::Debug>(r: multiprocess::Result<T>) -> bool {
    matches!(r, Err(Error::ReleasedTooOften))
}

fn not_held<T: std::fmt::Debug>(r: multiprocess::Result<T>) -> bool {
    matches!(r, Err(Error::LockNotHeld))
}

fn out_of_range<T: std::fmt::Debug>(r: multiprocess::Result<T>) -> bool {
    matches!(r, Err(Error::IndexOutOfRange { .. }))
}

fn is_broken<T: std::fmt::Debug>(r: &multiprocess::Result<T>) -> bool {
    matches!(r, Err(Error::BrokenBarrier))
}

// ---------------------------------------------------------------------------------------------
// D01: Lock and RLock in one process.

#[test]
fn d01_lock_rlock() {
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    assert!(lock.locked());
    assert!(!lock.try_acquire().unwrap());
    assert_takes(Duration::ZERO, || {
        assert!(!lock.acquire_timeout(Duration::ZERO).unwrap())
    });
    assert_takes(MS100, || assert!(!lock.acquire_timeout(MS100).unwrap()));
    lock.release().unwrap();
    assert!(!lock.locked());
    assert!(released_too_often(lock.release()));
    assert!(lock.acquire_timeout(DEADLINE).unwrap());
    lock.release().unwrap();

    let rlock = RLock::new().unwrap();
    for _ in 0..3 {
        rlock.acquire().unwrap();
    }
    assert!(rlock.try_acquire().unwrap());
    rlock.release().unwrap();
    // Another thread may neither take it nor release it.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(!rlock.try_acquire().unwrap());
            assert!(!rlock.acquire_timeout(Duration::from_millis(20)).unwrap());
            assert!(not_held(rlock.release()));
        });
    });
    for _ in 0..3 {
        rlock.release().unwrap();
    }
    assert!(!rlock.locked());
    assert!(not_held(rlock.release()));
    // Free again: another thread takes it at once.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(rlock.try_acquire().unwrap());
            rlock.release().unwrap();
        });
    });
}

// ---------------------------------------------------------------------------------------------
// D02: a Lock taken by a child is seen locked, and may be released by the parent.

fn take_lock(lock: Lock, holder: Value<u32>, acquired: Event, done: Event) {
    lock.acquire().unwrap();
    holder.set(std::process::id());
    acquired.set();
    assert!(done.wait_timeout(DEADLINE).unwrap());
}

fn d02_lock_across_processes(method: StartMethod) {
    let lock = Lock::new().unwrap();
    let holder = Value::new(0u32).unwrap();
    let (acquired, done) = (Event::new().unwrap(), Event::new().unwrap());
    let child = start(
        method,
        take_lock,
        (lock.clone(), holder.clone(), acquired.clone(), done.clone()),
    );
    assert!(acquired.wait_timeout(DEADLINE).unwrap());
    assert_eq!(holder.get(), child.pid());
    assert!(lock.locked());
    assert!(!lock.try_acquire().unwrap());
    assert_takes(MS100, || assert!(!lock.acquire_timeout(MS100).unwrap()));
    lock.release().unwrap(); // not ours: allowed for a Lock
    assert!(!lock.locked());
    assert!(lock.try_acquire().unwrap());
    lock.release().unwrap();
    done.set();
    assert_eq!(join(&child), 0);
}

// ---------------------------------------------------------------------------------------------
// D03: semaphores.

#[test]
fn d03_semaphore() {
    let sem = Semaphore::new(2).unwrap();
    assert_eq!(sem.get_value(), 2);
    sem.acquire().unwrap();
    assert_eq!(sem.get_value(), 1);
    assert!(sem.try_acquire().unwrap());
    assert_eq!(sem.get_value(), 0);
    assert!(!sem.try_acquire().unwrap());
    sem.release().unwrap();
    sem.release().unwrap();
    assert_eq!(sem.get_value(), 2);
    sem.release().unwrap();
    sem.release().unwrap();
    assert_eq!(sem.get_value(), 4);

    let empty = Semaphore::new(0).unwrap();
    assert_takes(Duration::ZERO, || assert!(!empty.try_acquire().unwrap()));
    assert_takes(Duration::ZERO, || {
        assert!(!empty.acquire_timeout(Duration::ZERO).unwrap())
    });
    assert_takes(MS100, || assert!(!empty.acquire_timeout(MS100).unwrap()));

    let bounded = BoundedSemaphore::new(2).unwrap();
    assert!(released_too_often(bounded.release()));
    bounded.acquire().unwrap();
    bounded.release().unwrap();
    assert!(released_too_often(bounded.release()));
    assert_eq!(bounded.get_value(), 2);
    let zero = BoundedSemaphore::new(0).unwrap();
    assert!(released_too_often(zero.release()));
}

fn release_when_told(sem: Semaphore, go: Connection, times: u32) {
    for _ in 0..times {
        go.recv::<()>().unwrap();
        sem.release().unwrap();
    }
}

/// D03 across processes: a waiter sleeping in `acquire` is woken by a child's `release`.
fn d03_semaphore_across_processes(method: StartMethod) {
    let sem = Semaphore::new(0).unwrap();
    let (go, go_child) = pipe().unwrap();
    let child = start(method, release_when_told, (sem.clone(), go_child, 2));
    go.send(&()).unwrap();
    assert!(sem.acquire_timeout(DEADLINE).unwrap());
    go.send(&()).unwrap();
    sem.acquire().unwrap();
    assert_eq!(sem.get_value(), 0);
    assert_eq!(join(&child), 0);
}

// ---------------------------------------------------------------------------------------------
// D04: events.

fn set_when_told(event: Event, go: Connection) {
    go.recv::<()>().unwrap();
    event.set();
}

fn d04_event(method: StartMethod) {
    let event = Event::new().unwrap();
    let (go, go_child) = pipe().unwrap();
    let child = start(method, set_when_told, (event.clone(), go_child));
    assert!(!event.is_set());
    assert_takes(Duration::ZERO, || {
        assert!(!event.wait_timeout(Duration::ZERO).unwrap())
    });
    assert_takes(MS100, || assert!(!event.wait_timeout(MS100).unwrap()));
    event.set();
    assert!(event.is_set());
    event.wait().unwrap();
    assert_takes(Duration::ZERO, || {
        assert!(event.wait_timeout(MS100).unwrap())
    });
    event.clear();
    assert!(!event.is_set());
    go.send(&()).unwrap();
    assert!(event.wait_timeout(DEADLINE).unwrap());
    assert!(event.is_set());
    assert_eq!(join(&child), 0);
}

/// A `set` immediately followed by `clear` still releases the waiters of that moment.
#[test]
fn event_set_then_clear_releases_waiters() {
    let event = Event::new().unwrap();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..3)
            .map(|_| s.spawn(|| event.wait_timeout(DEADLINE).unwrap()))
            .collect();
        // Asleep in `wait` (the Debug form counts sleepers): each has looked at the flag.
        poll_until("3 sleepers", || {
            format!("{event:?}").contains("sleeping: 3")
        });
        event.set();
        event.clear();
        for w in waiters {
            assert!(w.join().unwrap());
        }
    });
}

// ---------------------------------------------------------------------------------------------
// D05: barriers.

const PARTIES: usize = 5;

fn lockstep(barrier: Barrier, arrived: Value<u32>, indices: Queue<(u32, usize)>, passes: u32) {
    for pass in 0..passes {
        arrived.update(|x| x + 1);
        let index = barrier.wait_timeout(DEADLINE).unwrap();
        assert_eq!(arrived.get(), PARTIES as u32 * (pass + 1));
        indices.put((pass, index)).unwrap();
        barrier.wait_timeout(DEADLINE).unwrap();
    }
}

/// D05: 10 lockstep passes; each pass's indices are exactly 0..5.
fn d05_barrier_lockstep(method: StartMethod) {
    const PASSES: u32 = 10;
    let barrier = Barrier::new(PARTIES).unwrap();
    let arrived = Value::new(0u32).unwrap();
    let indices = Queue::new().unwrap();
    let children: Vec<_> = (1..PARTIES)
        .map(|_| {
            let args = (barrier.clone(), arrived.clone(), indices.clone(), PASSES);
            start(method, lockstep, args)
        })
        .collect();
    lockstep(barrier.clone(), arrived.clone(), indices.clone(), PASSES);
    for c in &children {
        assert_eq!(join(c), 0);
    }
    let mut seen = vec![Vec::new(); PASSES as usize];
    for _ in 0..PASSES as usize * PARTIES {
        let (pass, index) = indices.get_timeout(DEADLINE).unwrap();
        seen[pass as usize].push(index);
    }
    for mut pass in seen {
        pass.sort();
        assert_eq!(pass, (0..PARTIES).collect::<Vec<_>>());
    }
    assert_eq!(barrier.n_waiting(), 0);
    assert!(!barrier.broken());
}

fn wait_and_report(barrier: Barrier, timeout: Duration, results: Queue<(bool, u64)>) {
    let t = Instant::now();
    let r = barrier.wait_timeout(timeout);
    results
        .put((is_broken(&r), t.elapsed().as_millis() as u64))
        .unwrap();
}

/// D05: `abort()` by one party breaks the barrier for the 4 waiting.
fn d05_barrier_abort(method: StartMethod) {
    let barrier = Barrier::new(PARTIES).unwrap();
    let results = Queue::new().unwrap();
    let children: Vec<_> = (1..PARTIES)
        .map(|_| {
            let args = (barrier.clone(), DEADLINE, results.clone());
            start(method, wait_and_report, args)
        })
        .collect();
    poll_until("4 parties waiting", || barrier.n_waiting() == PARTIES - 1);
    barrier.abort();
    for _ in &children {
        let (broken, _) = results.get_timeout(DEADLINE).unwrap();
        assert!(broken);
    }
    assert!(barrier.broken());
    assert!(is_broken(&barrier.wait_timeout(DEADLINE)));
    for c in &children {
        assert_eq!(join(c), 0);
    }
    barrier.reset();
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
}

/// D05: with one party late, `wait(0.5)` breaks for all the others, and the late party finds
/// the barrier broken.
fn d05_barrier_timeout(method: StartMethod) {
    let timeout = Duration::from_millis(500);
    let barrier = Barrier::new(PARTIES).unwrap();
    let results = Queue::new().unwrap();
    let children: Vec<_> = (1..PARTIES)
        .map(|_| {
            let args = (barrier.clone(), timeout, results.clone());
            start(method, wait_and_report, args)
        })
        .collect();
    let mut longest = 0;
    for _ in &children {
        let (broken, ms) = results.get_timeout(DEADLINE).unwrap();
        assert!(broken);
        assert!(ms <= 500 + 250, "a party waited {ms} ms");
        longest = longest.max(ms);
    }
    assert!(longest + 10 >= 500, "the longest wait was {longest} ms");
    // The late party arrives.
    assert_takes(Duration::ZERO, || {
        assert!(is_broken(&barrier.wait_timeout(DEADLINE)))
    });
    for c in &children {
        assert_eq!(join(c), 0);
    }
}

fn pass_and_write(barrier: Barrier, lock: Lock, out: Connection, passes: u32) {
    for i in 0..passes {
        barrier.wait_timeout(DEADLINE).unwrap();
        let _guard = lock.lock().unwrap();
        out.send(&i).unwrap();
    }
}

/// D05 (`test_thousand`): 5 processes pass the barrier 1000 times, each writing the pass number
/// under a lock to one pipe: the numbers arrive in order, five of each.
fn d05_barrier_thousand(method: StartMethod) {
    const PASSES: u32 = 1000;
    let barrier = Barrier::new(PARTIES).unwrap();
    let lock = Lock::new().unwrap();
    let (rx, tx) = pipe().unwrap();
    let children: Vec<_> = (0..PARTIES)
        .map(|_| {
            let args = (
                barrier.clone(),
                lock.clone(),
                tx.try_clone().unwrap(),
                PASSES,
            );
            start(method, pass_and_write, args)
        })
        .collect();
    for i in 0..PASSES {
        for _ in 0..PARTIES {
            assert!(rx.poll(DEADLINE).unwrap(), "no message within {DEADLINE:?}");
            assert_eq!(rx.recv::<u32>().unwrap(), i);
        }
    }
    for c in &children {
        assert_eq!(join(c), 0);
    }
}

/// A barrier works again after a reset, and after parties left on a timeout.
#[test]
fn barrier_reset_and_reuse() {
    let barrier = Barrier::new(3).unwrap();
    assert_eq!(barrier.parties(), 3);
    assert_takes(Duration::from_millis(50), || {
        assert!(is_broken(&barrier.wait_timeout(Duration::from_millis(50))))
    });
    assert!(barrier.broken());
    barrier.reset();
    for _ in 0..20 {
        std::thread::scope(|s| {
            let others: Vec<_> = (0..2)
                .map(|_| s.spawn(|| barrier.wait_timeout(DEADLINE).unwrap()))
                .collect();
            let mut indices = vec![barrier.wait_timeout(DEADLINE).unwrap()];
            indices.extend(others.into_iter().map(|t| t.join().unwrap()));
            indices.sort();
            assert_eq!(indices, [0, 1, 2]);
        });
    }
    assert!(matches!(Barrier::new(0), Err(Error::InvalidArgument(_))));
}

/// `reset()` while parties wait: they get BrokenBarrier, and the barrier is usable after.
#[test]
fn barrier_reset_while_waiting() {
    let barrier = Barrier::new(3).unwrap();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..2)
            .map(|_| s.spawn(|| barrier.wait_timeout(DEADLINE)))
            .collect();
        poll_until("2 waiting", || barrier.n_waiting() == 2);
        barrier.reset();
        for w in waiters {
            assert!(is_broken(&w.join().unwrap()));
        }
    });
    assert!(!barrier.broken());
    std::thread::scope(|s| {
        let a = s.spawn(|| barrier.wait_timeout(DEADLINE).unwrap());
        let b = s.spawn(|| barrier.wait_timeout(DEADLINE).unwrap());
        let c = barrier.wait_timeout(DEADLINE).unwrap();
        assert_eq!(a.join().unwrap() + b.join().unwrap() + c, 3);
    });
}

// ---------------------------------------------------------------------------------------------
// D06: conditions.

fn wait_notified(cond: Condition, sleeping: Semaphore, woken: Semaphore) {
    cond.acquire().unwrap();
    sleeping.release().unwrap();
    assert!(cond.wait_timeout(DEADLINE).unwrap(), "not notified in time");
    woken.release().unwrap();
    cond.release().unwrap();
}

/// Asserts that exactly `n` more waiters report being woken.
fn expect_woken(woken: &Semaphore, n: usize) {
    for _ in 0..n {
        assert!(woken.acquire_timeout(DEADLINE).unwrap(), "too few woken");
    }
    assert!(!woken.acquire_timeout(MS100).unwrap(), "too many woken");
}

/// D06: `notify()` wakes exactly one waiter at a time (one child process and one thread).
fn d06_condition_notify(method: StartMethod) {
    let cond = Condition::new().unwrap();
    let (sleeping, woken) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    let child = start(
        method,
        wait_notified,
        (cond.clone(), sleeping.clone(), woken.clone()),
    );
    let (c, sl, wo) = (cond.clone(), sleeping.clone(), woken.clone());
    let thread = std::thread::spawn(move || wait_notified(c, sl, wo));
    for _ in 0..2 {
        assert!(sleeping.acquire_timeout(DEADLINE).unwrap());
    }
    // Both registered as waiters before they let `sleeping` go, with the lock held.
    expect_woken(&woken, 0);
    for _ in 0..2 {
        let _guard = cond.lock().unwrap();
        cond.notify(1).unwrap();
        drop(_guard);
        expect_woken(&woken, 1);
    }
    thread.join().unwrap();
    assert_eq!(join(&child), 0);
    // Counters consistent: nobody registered, nothing left over to wake a new waiter.
    assert_counts_clear(&cond);
    let _guard = cond.lock().unwrap();
    cond.notify_all().unwrap();
    assert_takes(Duration::from_millis(50), || {
        assert!(!cond.wait_timeout(Duration::from_millis(50)).unwrap())
    });
}

/// Asserts that no waiter is registered or selected (read from the Debug form).
fn assert_counts_clear(cond: &Condition) {
    let debug = format!("{cond:?}");
    assert!(
        debug.contains("sleepers: 0, selected: 0"),
        "counters left over: {debug}"
    );
}

/// Waiters with short timeouts racing notifies of random sizes: the counters end at zero and
/// no more waiters report a notification than were selected.
#[test]
fn condition_accounting_under_races() {
    let cond = Condition::new().unwrap();
    let notified = std::sync::atomic::AtomicUsize::new(0);
    let requested = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (cond, notified) = (&cond, &notified);
            s.spawn(move || {
                for i in 0..200u64 {
                    let _guard = cond.lock().unwrap();
                    let timeout = Duration::from_micros((i * 7 + t * 13) % 2000);
                    if cond.wait_timeout(timeout).unwrap() {
                        notified.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        s.spawn(|| {
            for i in 0..400usize {
                let _guard = cond.lock().unwrap();
                let n = i % 3;
                cond.notify(n).unwrap();
                requested.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        });
    });
    let (notified, requested) = (notified.into_inner(), requested.into_inner());
    assert!(notified <= requested, "{notified} notified of {requested}");
    assert_counts_clear(&cond);
}

/// D06: `notify(2)` of 3 waiters wakes exactly 2; `notify_all` the last.
fn d06_condition_notify_n(method: StartMethod) {
    let cond = Condition::new().unwrap();
    let (sleeping, woken) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    let children: Vec<_> = (0..2)
        .map(|_| {
            let args = (cond.clone(), sleeping.clone(), woken.clone());
            start(method, wait_notified, args)
        })
        .collect();
    let (c, sl, wo) = (cond.clone(), sleeping.clone(), woken.clone());
    let thread = std::thread::spawn(move || wait_notified(c, sl, wo));
    for _ in 0..3 {
        assert!(sleeping.acquire_timeout(DEADLINE).unwrap());
    }
    cond.acquire().unwrap();
    cond.notify(2).unwrap();
    cond.release().unwrap();
    expect_woken(&woken, 2);
    cond.acquire().unwrap();
    cond.notify_all().unwrap();
    cond.release().unwrap();
    expect_woken(&woken, 1);
    thread.join().unwrap();
    for c in &children {
        assert_eq!(join(c), 0);
    }
    assert_counts_clear(&cond);
}

#[test]
fn condition_timeouts_and_misuse() {
    let cond = Condition::new().unwrap();
    assert!(not_held(cond.wait_timeout(MS100)));
    assert!(not_held(cond.notify(1)));
    let guard = cond.lock().unwrap();
    assert_takes(Duration::ZERO, || {
        assert!(!cond.wait_timeout(Duration::ZERO).unwrap())
    });
    assert_takes(MS100, || assert!(!cond.wait_timeout(MS100).unwrap()));
    assert!(
        cond.get_lock().locked(),
        "the lock is held again after a wait"
    );
    assert_takes(MS100, || {
        assert!(!cond.wait_for(|| false, Some(MS100)).unwrap())
    });
    assert!(cond.wait_for(|| true, Some(Duration::ZERO)).unwrap());
    drop(guard);
    assert!(!cond.get_lock().locked());

    // A condition over an existing lock uses that lock.
    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    cond.acquire().unwrap();
    assert!(lock.locked());
    cond.release().unwrap();
    assert!(!lock.locked());
}

fn set_and_notify(cond: Condition, flag: Value<bool>, go: Connection) {
    go.recv::<()>().unwrap();
    let _guard = cond.lock().unwrap();
    flag.set(true);
    cond.notify_all().unwrap();
}

/// `wait_for` returns once a child makes the predicate true.
fn condition_wait_for(method: StartMethod) {
    let cond = Condition::new().unwrap();
    let flag = Value::new(false).unwrap();
    let (go, go_child) = pipe().unwrap();
    let child = start(
        method,
        set_and_notify,
        (cond.clone(), flag.clone(), go_child),
    );
    let _guard = cond.lock().unwrap();
    go.send(&()).unwrap();
    assert!(cond.wait_for(|| flag.get(), Some(DEADLINE)).unwrap());
    drop(_guard);
    assert_eq!(join(&child), 0);
}

// ---------------------------------------------------------------------------------------------
// D07: values.

#[allow(clippy::too_many_arguments)]
fn change_values(
    i: Value<i32>,
    d: Value<f64>,
    h: Value<i16>,
    q: Value<i64>,
    c: Value<u8>,
    b: RawValue<bool>,
    a: Value<[u16; 3]>,
) {
    i.set(24234);
    d.set(-4.25);
    h.set(234);
    q.set(1 << 34);
    c.set(b'y');
    b.set(true);
    a.update(|[x, y, z]| [z, y, x]);
}

fn d07_values(method: StartMethod) {
    let i = Value::new(4343i32).unwrap();
    let d = Value::new(3.625f64).unwrap();
    let h = Value::new(-232i16).unwrap();
    let q = Value::new(1i64 << 33).unwrap();
    let c = Value::new(b'x').unwrap();
    let b = RawValue::new(false).unwrap();
    let a = Value::new([1u16, 2, 3]).unwrap();
    assert_eq!(
        (
            i.get(),
            d.get(),
            h.get(),
            q.get(),
            c.get(),
            b.get(),
            a.get()
        ),
        (4343, 3.625, -232, 1 << 33, b'x', false, [1, 2, 3])
    );
    let args = (
        i.clone(),
        d.clone(),
        h.clone(),
        q.clone(),
        c.clone(),
        b.clone(),
        a.clone(),
    );
    let child = start(method, change_values, args);
    assert_eq!(join(&child), 0);
    assert_eq!(
        (
            i.get(),
            d.get(),
            h.get(),
            q.get(),
            c.get(),
            b.get(),
            a.get()
        ),
        (24234, -4.25, 234, 1 << 34, b'y', true, [3, 2, 1])
    );
}

#[test]
fn d07_value_locks() {
    // Its own lock: reentrant, so get/set work while it is held.
    let v = Value::new(1u32).unwrap();
    {
        let _guard = v.get_lock().lock().unwrap();
        v.set(v.get() + 1);
    }
    assert_eq!(v.get(), 2);
    assert!(!v.get_lock().locked());
    // A given lock is that lock.
    let lock = RLock::new().unwrap();
    let v = Value::with_lock(0u8, lock.clone()).unwrap();
    lock.acquire().unwrap();
    assert!(v.get_lock().locked());
    std::thread::scope(|s| {
        s.spawn(|| assert!(!v.get_lock().try_acquire().unwrap()));
    });
    lock.release().unwrap();
    assert!(!v.get_lock().locked());
    // Raw values have no lock (checked at compile time, see RawValue's docs).
    let raw = RawValue::new(7i8).unwrap();
    raw.set(raw.get() - 8);
    assert_eq!(raw.get(), -1);
}

/// A handle decoded as the wrong type is refused instead of misread.
#[test]
fn shared_memory_of_another_type_is_refused() {
    let v = Value::new(1u32).unwrap();
    let (bytes, fds) = multiprocess::codec::encode_with_fds(&v).unwrap();
    let wrong: multiprocess::Result<Value<f32>> = multiprocess::codec::decode_with_fds(&bytes, fds);
    assert!(matches!(wrong, Err(Error::Decode(_))), "{wrong:?}");
    let a = RawArray::new(&[1u8, 2]).unwrap();
    let (bytes, fds) = multiprocess::codec::encode_with_fds(&a).unwrap();
    let wrong: multiprocess::Result<RawArray<u16>> =
        multiprocess::codec::decode_with_fds(&bytes, fds);
    assert!(matches!(wrong, Err(Error::Decode(_))));
    let (bytes, fds) = multiprocess::codec::encode_with_fds(&a).unwrap();
    let right: RawArray<u8> = multiprocess::codec::decode_with_fds(&bytes, fds).unwrap();
    assert_eq!(right.to_vec(), [1, 2]);
}

// ---------------------------------------------------------------------------------------------
// D08: arrays.

fn prefix_sums(a: Array<i32>) {
    let _guard = a.get_lock().lock().unwrap();
    for i in 1..a.len() {
        a.set(i, a.get(i).unwrap() + a.get(i - 1).unwrap()).unwrap();
    }
}

fn increment(v: Value<u32>, times: u32) {
    for _ in 0..times {
        let _guard = v.get_lock().lock().unwrap();
        v.set(v.get() + 1);
    }
}

fn d08_arrays(method: StartMethod) {
    let seq = [681, -35, 2, 0, 107, 42, -9, 1000, 3, 5];
    let a = Array::new(&seq).unwrap();
    assert_eq!(a.len(), 10);
    let child = start(method, prefix_sums, (a.clone(),));
    assert_eq!(join(&child), 0);
    let mut expected = seq;
    for i in 1..expected.len() {
        expected[i] += expected[i - 1];
    }
    assert_eq!(a.to_vec(), expected);
    assert!(matches!(
        a.get(10),
        Err(Error::IndexOutOfRange { index: 10, len: 10 })
    ));
    assert!(out_of_range(a.set(usize::MAX, 0)));

    for _ in 0..3 {
        let z = Array::<i32>::zeroed(10).unwrap();
        assert_eq!(z.to_vec(), [0; 10]);
        z.set(9, 1).unwrap();
        assert_eq!(z.get(9).unwrap(), 1);
    }
    let empty = Array::<f64>::new(&[]).unwrap();
    assert!(empty.is_empty() && empty.to_vec().is_empty() && out_of_range(empty.get(0)));

    // The documented idiom: `with v.get_lock(): v.value += 1` from 4 processes.
    let counter = Value::new(0u32).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| start(method, increment, (counter.clone(), 10_000)))
        .collect();
    for c in &children {
        assert_eq!(join(c), 0);
    }
    assert_eq!(counter.get(), 40_000);
}

// ---------------------------------------------------------------------------------------------
// Kill safety.

fn hold_lock_until_killed(lock: Lock, held: Event, never: Event) {
    lock.acquire().unwrap();
    held.set();
    never.wait_timeout(DEADLINE).unwrap();
}

fn hold_rlock_until_killed(lock: RLock, held: Event, never: Event) {
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    held.set();
    never.wait_timeout(DEADLINE).unwrap();
}

/// Kills `child` (which holds the lock) while a thread sleeps in `acquire`, and checks that
/// the thread, then the parent, get the lock within 2 s.
fn kill_holder_and_recover(child: &ProcessHandle, acquire: impl Fn(Duration) -> bool + Sync) {
    let recovery = Duration::from_secs(2);
    std::thread::scope(|s| {
        let sleeper = s.spawn(|| {
            let got = acquire(DEADLINE);
            (got, Instant::now())
        });
        child.kill().unwrap();
        let killed = Instant::now();
        assert_eq!(join(child), -libc::SIGKILL);
        let (got, at) = sleeper.join().unwrap();
        assert!(got, "the sleeper never got the lock");
        let took = at.saturating_duration_since(killed);
        assert!(took <= recovery, "recovered after {took:?}");
    });
}

/// A Lock whose holder is SIGKILLed is recovered by a sleeping waiter and by a later one.
fn lock_holder_killed(method: StartMethod) {
    let lock = Lock::new().unwrap();
    let (held, never) = (Event::new().unwrap(), Event::new().unwrap());
    let child = start(
        method,
        hold_lock_until_killed,
        (lock.clone(), held.clone(), never.clone()),
    );
    assert!(held.wait_timeout(DEADLINE).unwrap());
    kill_holder_and_recover(&child, |t| {
        let got = lock.acquire_timeout(t).unwrap();
        if got {
            lock.release().unwrap();
        }
        got
    });
    assert!(!lock.locked());

    // Killed again, and nobody waiting at the time: the next acquire recovers it.
    held.clear();
    let child = start(
        method,
        hold_lock_until_killed,
        (lock.clone(), held.clone(), never.clone()),
    );
    assert!(held.wait_timeout(DEADLINE).unwrap());
    child.kill().unwrap();
    assert_eq!(join(&child), -libc::SIGKILL);
    let got = assert_takes_at_most(Duration::from_secs(2), || lock.acquire_timeout(DEADLINE));
    assert!(got.unwrap());
    lock.release().unwrap();
}

/// An RLock whose holder is SIGKILLed (holding it twice) is recovered.
fn rlock_holder_killed(method: StartMethod) {
    let lock = RLock::new().unwrap();
    let (held, never) = (Event::new().unwrap(), Event::new().unwrap());
    let child = start(
        method,
        hold_rlock_until_killed,
        (lock.clone(), held.clone(), never.clone()),
    );
    assert!(held.wait_timeout(DEADLINE).unwrap());
    kill_holder_and_recover(&child, |t| {
        let got = lock.acquire_timeout(t).unwrap();
        if got {
            lock.release().unwrap();
            assert!(not_held(lock.release()), "recovered with a count of 1");
        }
        got
    });
    assert!(!lock.locked());
    // Usable as usual afterwards.
    let _a = lock.lock().unwrap();
    let _b = lock.lock().unwrap();
}

fn assert_takes_at_most<T>(max: Duration, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    assert!(t.elapsed() <= max, "took {:?}", t.elapsed());
    r
}

fn wait_until_killed(barrier: Barrier) {
    let _ = barrier.wait_timeout(DEADLINE);
}

/// A party killed while waiting breaks the barrier for the others (no hang), and after a reset
/// the barrier works without it.
fn barrier_party_killed_while_waiting(method: StartMethod) {
    let barrier = Barrier::new(3).unwrap();
    let child = start(method, wait_until_killed, (barrier.clone(),));
    poll_until("the child waiting", || barrier.n_waiting() == 1);
    child.kill().unwrap();
    assert_eq!(join(&child), -libc::SIGKILL);
    let r = assert_takes_at_most(Duration::from_secs(2), || barrier.wait_timeout(DEADLINE));
    assert!(is_broken(&r), "{r:?}");
    assert!(barrier.broken());
    barrier.reset();
    assert_eq!(barrier.n_waiting(), 0);
    std::thread::scope(|s| {
        let a = s.spawn(|| barrier.wait_timeout(DEADLINE).unwrap());
        let b = s.spawn(|| barrier.wait_timeout(DEADLINE).unwrap());
        let c = barrier.wait_timeout(DEADLINE).unwrap();
        assert_eq!(a.join().unwrap() + b.join().unwrap() + c, 3);
    });
}

fn never_arrive(never: Event) {
    let _ = never.wait_timeout(DEADLINE);
}

/// A party killed before it arrives: the others' timed waits end on time with BrokenBarrier.
fn barrier_party_killed_before_arriving(method: StartMethod) {
    let timeout = Duration::from_millis(300);
    let barrier = Barrier::new(3).unwrap();
    let never = Event::new().unwrap();
    let results = Queue::new().unwrap();
    let late = start(method, never_arrive, (never.clone(),));
    let other = start(
        method,
        wait_and_report,
        (barrier.clone(), timeout, results.clone()),
    );
    late.kill().unwrap();
    assert_eq!(join(&late), -libc::SIGKILL);
    let t = Instant::now();
    let r = barrier.wait_timeout(timeout);
    assert!(is_broken(&r));
    assert!(t.elapsed() <= timeout + Duration::from_millis(250));
    let (broken, ms) = results.get_timeout(DEADLINE).unwrap();
    assert!(broken && ms <= 300 + 250, "{broken} after {ms} ms");
    assert_eq!(join(&other), 0);
}

fn wait_on_condition(cond: Condition, sleeping: Semaphore) {
    cond.acquire().unwrap();
    sleeping.release().unwrap();
    let _ = cond.wait_timeout(DEADLINE);
}

/// A condition waiter killed while waiting does not stop a later notify from waking a live one.
fn condition_waiter_killed(method: StartMethod) {
    let cond = Condition::new().unwrap();
    let (sleeping, woken) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
    let doomed = start(method, wait_on_condition, (cond.clone(), sleeping.clone()));
    assert!(sleeping.acquire_timeout(DEADLINE).unwrap());
    // It holds no lock now (it released it to wait): kill it.
    cond.acquire().unwrap();
    doomed.kill().unwrap();
    assert_eq!(join(&doomed), -libc::SIGKILL);
    cond.release().unwrap();
    let live = start(
        method,
        wait_notified,
        (cond.clone(), sleeping.clone(), woken.clone()),
    );
    assert!(sleeping.acquire_timeout(DEADLINE).unwrap());
    cond.acquire().unwrap();
    cond.notify(1).unwrap();
    cond.release().unwrap();
    assert!(woken.acquire_timeout(DEADLINE).unwrap());
    assert_eq!(join(&live), 0);
}

fn count_under_lock(
    lock: Lock,
    counter: RawValue<u64>,
    done: RawArray<u64>,
    me: usize,
    stop: Event,
) {
    while !stop.is_set() {
        let _guard = lock.lock().unwrap();
        let v = counter.get();
        std::hint::black_box(0..100).for_each(drop); // widen the window for a torn update
        counter.set(v + 1);
        done.set(me, done.get(me).unwrap() + 1).unwrap();
    }
}

/// Workers increment a counter under a Lock while some are SIGKILLed at random instants (often
/// holding the lock): the survivors recover the lock each time, and no update is lost to two
/// processes inside at once (the counter is at least the sum of the per-worker counts, and at
/// most one ahead per kill).
fn lock_mutual_exclusion_under_kills(method: StartMethod) {
    const WORKERS: usize = 3;
    const KILLS: u64 = 6;
    let lock = Lock::new().unwrap();
    let counter = RawValue::new(0u64).unwrap();
    let done = RawArray::<u64>::zeroed(WORKERS + KILLS as usize).unwrap();
    let stop = Event::new().unwrap();
    let spawn_worker = |slot: usize| {
        let args = (
            lock.clone(),
            counter.clone(),
            done.clone(),
            slot,
            stop.clone(),
        );
        start(method, count_under_lock, args)
    };
    let mut workers: Vec<_> = (0..WORKERS).map(spawn_worker).collect();
    let mut rng = (std::process::id() as u64) << 17 | 0x9e37;
    for kill in 0..KILLS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // The random instant of the kill, not a synchronisation.
        std::thread::sleep(Duration::from_millis(20 + rng % 80));
        let victim = workers.remove((rng % WORKERS as u64) as usize);
        victim.kill().unwrap();
        assert!(matches!(join(&victim), 0 | -9));
        workers.push(spawn_worker(WORKERS + kill as usize));
    }
    let before = counter.get();
    // Progress after the last kill: the lock was not left stuck.
    poll_until("progress after the kills", || counter.get() > before + 100);
    stop.set();
    for w in &workers {
        assert_eq!(join(w), 0);
    }
    let total: u64 = done.to_vec().iter().sum();
    let counted = counter.get();
    assert!(
        counted >= total && counted <= total + KILLS,
        "counter {counted}, per-worker total {total}"
    );
    assert!(lock.acquire_timeout(Duration::from_secs(2)).unwrap());
}

per_method!(
    lock_mutual_exclusion_under_kills,
    d02_lock_across_processes,
    d03_semaphore_across_processes,
    d04_event,
    d05_barrier_lockstep,
    d05_barrier_abort,
    d05_barrier_timeout,
    d05_barrier_thousand,
    d06_condition_notify,
    d06_condition_notify_n,
    condition_wait_for,
    d07_values,
    d08_arrays,
    lock_holder_killed,
    rlock_holder_killed,
    barrier_party_killed_while_waiting,
    barrier_party_killed_before_arriving,
    condition_waiter_killed,
);

fn take_turns(
    cond: multiprocess::Condition,
    turn: multiprocess::Value<u32>,
    me: u32,
    rounds: u32,
) -> bool {
    for _ in 0..rounds {
        let _held = cond.lock().unwrap();
        if !cond.wait_for(|| turn.get() == me, Some(DEADLINE)).unwrap() {
            return false;
        }
        turn.set(1 - me);
        cond.notify(1).unwrap();
    }
    true
}

/// Review: a notifier that waits next can never take the notification meant for the other
/// waiter (ping-pong between two processes through one Condition).
fn condition_ping_pong(method: StartMethod) {
    let cond = multiprocess::Condition::new().unwrap();
    let turn = multiprocess::Value::new(0u32).unwrap();
    let other = multiprocess::Process::new(take_turns, (cond.clone(), turn.clone(), 1, 50))
        .start_method(method)
        .spawn()
        .unwrap();
    assert!(
        take_turns(cond, turn, 0, 50),
        "a turn was never handed over"
    );
    assert!(other.join().unwrap(), "the other side missed a turn");
}

mod review_ping_pong {
    use multiprocess::StartMethod;
    #[test]
    fn fork() {
        super::condition_ping_pong(StartMethod::Fork)
    }
    #[test]
    fn spawn() {
        super::condition_ping_pong(StartMethod::Spawn)
    }
    #[test]
    fn forkserver() {
        super::condition_ping_pong(StartMethod::ForkServer)
    }
}

/// Review: a handle received as the wrong primitive is refused, not misread.
#[test]
fn a_handle_of_the_wrong_type_is_refused() {
    let lock = multiprocess::Lock::new().unwrap();
    let (bytes, fds) = multiprocess::codec::encode_with_fds(&lock).unwrap();
    let err =
        multiprocess::codec::decode_with_fds::<multiprocess::Semaphore>(&bytes, fds).unwrap_err();
    assert!(err.to_string().contains("not a"), "{err}");
    let (bytes, fds) = multiprocess::codec::encode_with_fds(&lock).unwrap();
    let same = multiprocess::codec::decode_with_fds::<multiprocess::Lock>(&bytes, fds).unwrap();
    assert!(same.try_acquire().unwrap());
    assert!(lock.locked());
    same.release().unwrap();
}
