//! `shutdown()` on every queue kind (Python 3.13's `Queue.shutdown`): it ends a consumer's
//! `for item in &queue` in another process once the items are taken, wakes a get or put asleep
//! in another thread, and makes later puts fail, under every start method.

mod common;

use std::sync::mpsc;
use std::time::Instant;

use common::DEADLINE;
use multiprocess::{
    get_context, Error, JoinHandle, JoinableQueue, LifoQueue, PriorityQueue, Queue, SimpleQueue,
    StartMethod,
};

multiprocess::init_on_load!();

const ITEMS: u32 = 200;

/// The result of `h`, within [`DEADLINE`] (the process is killed otherwise).
fn result_of<R: serde::de::DeserializeOwned>(mut h: JoinHandle<R>) -> R {
    match h.join_timeout(DEADLINE) {
        Ok(value) => value,
        Err(e) => {
            let _ = h.process().kill();
            let _ = h.join_timeout(DEADLINE);
            panic!("the child gave no result within {DEADLINE:?}: {e}");
        }
    }
}

/// Waits (within [`DEADLINE`]) until `done` holds, checking between yields.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !done() {
        assert!(
            Instant::now() < until,
            "{what} did not happen within {DEADLINE:?}"
        );
        std::thread::yield_now();
    }
}

fn consume_all(q: Queue<u32>) -> Vec<u32> {
    (&q).into_iter().map(|item| item.unwrap()).collect()
}

fn consume_all_priority(q: PriorityQueue<u32>) -> Vec<u32> {
    (&q).into_iter().map(|item| item.unwrap()).collect()
}

/// A consumer child's `for item in &q` gets every item put before the shutdown, then ends
/// (the child is asleep in `get` by then, or about to be).
fn consumer_child_ends_after_shutdown(method: StartMethod) {
    let q = Queue::<u32>::new().unwrap();
    let child = get_context(method)
        .spawn(consume_all, (q.clone(),))
        .unwrap();
    for i in 0..ITEMS {
        q.put(i).unwrap();
    }
    wait_until("the child taking every item", || q.empty());
    q.shutdown();
    assert_eq!(result_of(child), (0..ITEMS).collect::<Vec<_>>());
    assert!(matches!(q.put(0), Err(Error::ShutDown)));

    let p = PriorityQueue::<u32>::new().unwrap();
    let child = get_context(method)
        .spawn(consume_all_priority, (p.clone(),))
        .unwrap();
    for i in (0..ITEMS).rev() {
        p.put(i).unwrap();
    }
    p.shutdown();
    let mut got = result_of(child);
    got.sort_unstable();
    assert_eq!(got, (0..ITEMS).collect::<Vec<_>>());
}

fn produce_then_shutdown(q: Queue<u32>) {
    for i in 0..ITEMS {
        q.put(i).unwrap();
    }
    q.shutdown();
}

/// A shutdown made in a child (its own handle) ends the parent's iteration.
fn producer_child_shuts_down(method: StartMethod) {
    let q = Queue::<u32>::bounded(8).unwrap();
    let child = get_context(method)
        .spawn(produce_then_shutdown, (q.clone(),))
        .unwrap();
    let got: Vec<u32> = q.iter().collect::<multiprocess::Result<_>>().unwrap();
    assert_eq!(got, (0..ITEMS).collect::<Vec<_>>());
    result_of(child);
    assert!(q.is_shutdown());
}

per_method!(
    consumer_child_ends_after_shutdown,
    producer_child_shuts_down
);

/// The calling thread's kernel id.
fn gettid() -> i64 {
    // SAFETY: gettid takes no argument and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// Whether thread `tid` of this process is asleep (state `S` in its `stat`).
fn asleep(tid: i64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
}

/// Runs `call` in a thread, waits until that thread sleeps in it, runs `wake`, and returns
/// what `call` returned, within [`DEADLINE`].
fn woken_by<T: Send + 'static>(
    call: impl FnOnce() -> multiprocess::Result<T> + Send + 'static,
    wake: impl FnOnce(),
) -> multiprocess::Result<T> {
    let (tid_tx, tid_rx) = mpsc::channel();
    let (out_tx, out_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let _ = out_tx.send(call());
    });
    let tid = tid_rx.recv_timeout(DEADLINE).unwrap();
    wait_until("the thread sleeping in its call", || asleep(tid));
    wake();
    let out = out_rx
        .recv_timeout(DEADLINE)
        .expect("the sleeping call was not woken by the shutdown");
    thread.join().unwrap();
    out
}

/// For one queue kind: a get asleep on the empty queue and a put asleep on the full one are
/// woken by a shutdown through another handle; then puts fail, gets take what is left and
/// then fail instead of waiting, and both iterators end.
macro_rules! check_kind {
    ($kind:ident) => {{
        let q = $kind::<u32>::new().unwrap();
        let getter = q.clone();
        let got = woken_by(move || getter.get(), || q.clone().shutdown());
        assert!(matches!(got, Err(Error::ShutDown)), "{got:?}");

        let q = $kind::<u32>::bounded(2).unwrap();
        q.put(1).unwrap();
        q.put(2).unwrap();
        let putter = q.clone();
        let put = woken_by(move || putter.put(3), || q.clone().shutdown());
        assert!(matches!(put, Err(Error::ShutDown)), "{put:?}");
        assert!(q.is_shutdown());
        assert!(matches!(q.put(4), Err(Error::ShutDown)));
        assert!(matches!(q.put_nowait(4), Err(Error::ShutDown)));
        assert!(matches!(q.put_timeout(4, DEADLINE), Err(Error::ShutDown)));
        assert_eq!(q.qsize(), 2);
        let mut left = vec![q.get_timeout(DEADLINE).unwrap()];
        left.extend(q.iter().map(|item| item.unwrap()));
        left.sort_unstable();
        assert_eq!(left, [1, 2]);
        let t = Instant::now();
        assert!(matches!(q.get_timeout(DEADLINE), Err(Error::ShutDown)));
        assert!(
            t.elapsed() < DEADLINE / 2,
            "get waited on a shut-down queue"
        );
        assert!(matches!(q.get_nowait(), Err(Error::ShutDown)));
        assert!(q.try_iter().next().is_none());
        assert!((&q).into_iter().next().is_none());
        q.shutdown(); // again: nothing changes
        assert!(q.is_shutdown());
        assert!(format!("{q:?}").contains("shutdown: true"), "{q:?}");
    }};
}

#[test]
fn every_queue_kind_shuts_down() {
    check_kind!(Queue);
    check_kind!(LifoQueue);
    check_kind!(JoinableQueue);
    check_kind!(SimpleQueue);
    check_kind!(PriorityQueue);
}

#[test]
fn the_error_says_what_happened() {
    assert_eq!(Error::ShutDown.to_string(), "the queue was shut down");
}
