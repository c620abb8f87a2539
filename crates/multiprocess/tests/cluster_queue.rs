//! The cluster queue against a real `redis-server`: FIFO order, exact `qsize`, bounds,
//! timeouts and `nowait`, and items crossing between processes.
multiprocess::init_on_load!();

mod cluster_common;

use std::time::{Duration, Instant};

use cluster_common::*;
use multiprocess::cluster::Queue;
use multiprocess::Error;

#[test]
fn fifo_exact_size_and_empty_timeouts() {
    let redis = Redis::start();
    let q: Queue<(u32, String)> = Queue::open(&redis.url(), "jobs").unwrap();
    assert!(q.empty().unwrap());
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
    let start = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(100)),
        Err(Error::Empty)
    ));
    assert!(start.elapsed() >= Duration::from_millis(100));
    for i in 0..10 {
        q.put(&(i, format!("item {i}"))).unwrap();
    }
    assert_eq!(q.qsize().unwrap(), 10);
    assert!(!q.full().unwrap(), "an unbounded queue is never full");
    for i in 0..10 {
        assert_eq!(q.get().unwrap(), (i, format!("item {i}")));
    }
    assert_eq!(q.qsize().unwrap(), 0);
    // Another handle on the same name sees the same queue.
    let other: Queue<(u32, String)> = Queue::open(&redis.url(), "jobs").unwrap();
    q.put(&(7, "seven".into())).unwrap();
    assert_eq!(other.get_timeout(DEADLINE).unwrap(), (7, "seven".into()));
}

#[test]
fn a_bounded_queue_holds_its_bound() {
    let redis = Redis::start();
    let q: Queue<u64> = Queue::bounded(&redis.url(), "bounded", 3).unwrap();
    for i in 0..3 {
        q.put_nowait(&i).unwrap();
    }
    assert!(q.full().unwrap());
    assert!(matches!(q.put_nowait(&9), Err(Error::Full)));
    let start = Instant::now();
    assert!(matches!(
        q.put_timeout(&9, Duration::from_millis(100)),
        Err(Error::Full)
    ));
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(q.qsize().unwrap(), 3);
    // A blocked put goes through once a consumer makes room.
    std::thread::scope(|s| {
        let putter = s.spawn(|| q.put_timeout(&3, DEADLINE));
        assert_eq!(q.get_timeout(DEADLINE).unwrap(), 0);
        putter.join().unwrap().unwrap();
    });
    assert_eq!(q.qsize().unwrap(), 3);
    let drained: Vec<u64> = (0..3).map(|_| q.get_nowait().unwrap()).collect();
    assert_eq!(drained, vec![1, 2, 3]);
}

fn produce(url: String, from: u64, count: u64) {
    let q: Queue<u64> = Queue::bounded(&url, "crossing", 16).unwrap();
    for i in from..from + count {
        q.put_timeout(&i, DEADLINE).unwrap();
    }
}

#[test]
fn items_cross_processes_once_each() {
    let redis = Redis::start();
    let producers: Vec<_> = (0..3)
        .map(|k| {
            multiprocess::Process::new(produce, (redis.url(), k * 1000, 200))
                .start()
                .unwrap()
        })
        .collect();
    let q: Queue<u64> = Queue::bounded(&redis.url(), "crossing", 16).unwrap();
    let mut got: Vec<u64> = (0..600).map(|_| q.get_timeout(DEADLINE).unwrap()).collect();
    for p in producers {
        assert_eq!(p.join_timeout(DEADLINE).unwrap(), Some(0));
    }
    got.sort();
    let want: Vec<u64> = (0..3).flat_map(|k| k * 1000..k * 1000 + 200).collect();
    assert_eq!(got, want);
    assert!(q.empty().unwrap());
    // An empty list leaves no key behind.
    assert_eq!(dbsize(&mut redis.admin()), 0);
}

#[test]
fn a_local_handle_is_refused() {
    let redis = Redis::start();
    let q: Queue<multiprocess::Event> = Queue::open(&redis.url(), "handles").unwrap();
    let event = multiprocess::Event::new().unwrap();
    assert!(matches!(q.put(&event), Err(Error::Encode(_))));
    assert_eq!(q.qsize().unwrap(), 0);
}

fn consume(url: String, n: u32) {
    let q: multiprocess::cluster::JoinableQueue<u32> =
        multiprocess::cluster::JoinableQueue::open(&url, "joinable").unwrap();
    for _ in 0..n {
        q.get_timeout(DEADLINE).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn a_joinable_queue_joins_once_every_item_is_done() {
    let redis = Redis::start();
    let q: multiprocess::cluster::JoinableQueue<u32> =
        multiprocess::cluster::JoinableQueue::open(&redis.url(), "joinable").unwrap();
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooOften)));
    for i in 0..20 {
        q.put(&i).unwrap();
    }
    assert_eq!(q.unfinished().unwrap(), 20);
    assert!(!q.join_timeout(Duration::from_millis(10)).unwrap());
    let consumer = multiprocess::Process::new(consume, (redis.url(), 20))
        .start()
        .unwrap();
    q.join_timeout(DEADLINE)
        .unwrap()
        .then_some(())
        .expect("all done");
    assert_eq!(consumer.join_timeout(DEADLINE).unwrap(), Some(0));
    assert_eq!(q.unfinished().unwrap(), 0);
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooOften)));
    // Done and empty: no key left.
    assert_eq!(dbsize(&mut redis.admin()), 0);
}

#[test]
fn a_broker_error_is_returned_not_swallowed() {
    let redis = Redis::start();
    let q: Queue<u32> = Queue::bounded(&redis.url(), "spoiled", 4).unwrap();
    let jq: multiprocess::cluster::JoinableQueue<u32> =
        multiprocess::cluster::JoinableQueue::open(&redis.url(), "spoiled").unwrap();
    // Someone else made the queue's key a string: every call fails with the broker's error.
    let _: () = redis::cmd("SET")
        .arg("mp:queue:spoiled")
        .arg("not a list")
        .query(&mut redis.admin())
        .unwrap();
    let broker_error = |r: Result<(), Error>| match r {
        Err(Error::Broker(why)) => assert!(why.contains("WRONGTYPE"), "{why}"),
        other => panic!("{other:?}"),
    };
    broker_error(q.full().map(drop));
    broker_error(q.empty().map(drop));
    broker_error(q.qsize().map(drop));
    broker_error(q.put(&1));
    broker_error(q.put_nowait(&1));
    broker_error(q.get_nowait().map(drop));
    broker_error(q.get_timeout(Duration::from_millis(10)).map(drop));
    broker_error(jq.put(&1));
    broker_error(jq.empty().map(drop));
}
