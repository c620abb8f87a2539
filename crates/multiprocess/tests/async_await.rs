//! Pool results and spawned processes awaited as futures, under a real tokio runtime (and a
//! plain `block_on` with no runtime): many at once, a worker that dies while awaited, a
//! process whose large result is read while it is awaited.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::DEADLINE;
use multiprocess::{Error, Pool};

multiprocess::init_on_load!();

fn sqr(x: i64) -> i64 {
    x * x
}

fn slow_sqr(x: i64, ms: u64) -> i64 {
    std::thread::sleep(Duration::from_millis(ms));
    x * x
}

fn die_by_sigkill(x: i64) -> i64 {
    // SAFETY: raising SIGKILL on ourselves is the point of the test.
    unsafe { libc::raise(libc::SIGKILL) };
    x
}

fn big(len: usize) -> String {
    "x".repeat(len)
}

fn panics(msg: String) -> u8 {
    panic!("{msg}")
}

/// Awaits `fut` within [`DEADLINE`], failing the test otherwise.
async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("not ready within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pool_results_awaited_at_once() {
    let pool = Pool::new(2).unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..300i64 {
        let r = pool.apply_async(sqr, (i,)).unwrap();
        set.spawn(async move { (i, r.await) });
    }
    let mut seen = 0;
    while let Some(joined) = within(set.join_next()).await {
        let (i, r) = joined.unwrap();
        assert_eq!(r.unwrap(), i * i);
        seen += 1;
    }
    assert_eq!(seen, 300);
    // A map in several chunks, awaited whole, next to single results.
    let (map, one) = tokio::join!(
        within(pool.map_async(sqr, 0..100, 7).unwrap()),
        within(pool.apply_async(slow_sqr, (9, 50)).unwrap())
    );
    assert_eq!(map.unwrap(), (0..100).map(sqr).collect::<Vec<_>>());
    assert_eq!(one.unwrap(), 81);
    assert_eq!(
        within(pool.map_async(sqr, 0..0, 1).unwrap()).await.unwrap(),
        vec![]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_while_awaited_is_worker_lost() {
    let pool = Pool::new(2).unwrap();
    let slow = pool.apply_async(slow_sqr, (3, 200)).unwrap();
    let dead = pool.apply_async(die_by_sigkill, (1,)).unwrap();
    match within(dead).await {
        Err(Error::WorkerLost { exitcode }) => assert_eq!(exitcode, -libc::SIGKILL),
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    assert_eq!(within(slow).await.unwrap(), 9);
    // The pool replaced the worker and goes on.
    assert_eq!(
        within(pool.apply_async(sqr, (5,)).unwrap()).await.unwrap(),
        25
    );
    // A chunk of a map that loses its worker fails the whole awaited map.
    let map = pool.map_async(die_by_sigkill, 0..1, 1).unwrap();
    assert!(matches!(within(map).await, Err(Error::WorkerLost { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_processes_awaited() {
    let quick = multiprocess::spawn(sqr, (12,)).unwrap();
    let slow = multiprocess::spawn(slow_sqr, (7, 300)).unwrap();
    // Larger than a socket buffer: the child can only exit once the awaiting side reads it.
    let large = multiprocess::spawn(big, (4 << 20,)).unwrap();
    let failing = multiprocess::spawn(panics, ("awaited".to_string(),)).unwrap();
    let (quick, slow, large, failing) =
        tokio::join!(within(quick), within(slow), within(large), within(failing));
    assert_eq!(quick.unwrap(), 144);
    assert_eq!(slow.unwrap(), 49);
    assert_eq!(large.unwrap(), big(4 << 20));
    match failing {
        Err(Error::Panic { message, .. }) => assert_eq!(message, "awaited"),
        other => panic!("expected Panic, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awaited_process_can_still_be_joined_after_a_timeout() {
    let mut handle = multiprocess::spawn(slow_sqr, (4, 300)).unwrap();
    // Polled once (a watcher starts), then given up on: a blocking join still gets the result.
    let gave_up = tokio::time::timeout(Duration::from_millis(20), &mut handle).await;
    assert!(gave_up.is_err());
    let joined = tokio::task::spawn_blocking(move || handle.join_timeout(DEADLINE))
        .await
        .unwrap();
    assert_eq!(joined.unwrap(), 16);
}

/// The smallest executor: runs `fut` on this thread, parking until it is woken.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "not ready within the deadline");
        std::thread::park_timeout(left);
    }
}

#[test]
fn futures_need_no_runtime() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(
        block_on(pool.apply_async(slow_sqr, (6, 50)).unwrap()).unwrap(),
        36
    );
    assert_eq!(
        block_on(pool.map_async(sqr, 0..10, 3).unwrap()).unwrap(),
        (0..10).map(sqr).collect::<Vec<_>>()
    );
    assert_eq!(
        block_on(multiprocess::spawn(slow_sqr, (5, 100)).unwrap()).unwrap(),
        25
    );
}

/// Futures cross threads, as a multi-threaded runtime needs.
#[test]
fn futures_are_send() {
    fn send<T: Send>() {}
    send::<multiprocess::AsyncResult<u64>>();
    send::<multiprocess::MapResult<u64>>();
    send::<multiprocess::JoinHandle<u64>>();
}
