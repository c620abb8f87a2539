//! SCENARIOS.md section B (queues), under every start method.

mod common;

use std::time::{Duration, Instant};

use common::{join, recv, DEADLINE};
use multiprocess::{
    pipe, Connection, Error, JoinableQueue, LifoQueue, PriorityQueue, Process, Queue, SimpleQueue,
    StartMethod,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

multiprocess::init_on_load!();

/// Asserts that `f` fails with `want` after `min`..`min + 250 ms` (SCENARIOS.md tolerance).
fn assert_fails_in<T: std::fmt::Debug>(
    want: fn(&Error) -> bool,
    min: Duration,
    f: impl FnOnce() -> multiprocess::Result<T>,
) {
    let t = Instant::now();
    let r = f();
    let took = t.elapsed();
    assert!(matches!(&r, Err(e) if want(e)), "unexpected result {r:?}");
    assert!(
        took + Duration::from_millis(10) >= min && took <= min + Duration::from_millis(250),
        "took {took:?}, expected about {min:?}"
    );
}

fn is_full(e: &Error) -> bool {
    matches!(e, Error::Full)
}

fn is_empty(e: &Error) -> bool {
    matches!(e, Error::Empty)
}

fn drain_when_released(q: Queue<u32>, gate: Connection, n: u32) {
    let _ = gate.recv::<()>();
    for _ in 0..n {
        q.get_timeout(DEADLINE).unwrap();
    }
}

/// B01: a bounded queue fills, refuses more in every call form with the right timing, and
/// empties when a child drains it.
fn b01_put(method: StartMethod) {
    let q = Queue::<u32>::bounded(6).unwrap();
    assert!(q.empty() && !q.full());
    let (gate, gate_child) = pipe().unwrap();
    let reader = Process::new(drain_when_released, (q.clone(), gate_child, 6))
        .start_method(method)
        .start()
        .unwrap();
    q.put(1).unwrap();
    #[allow(clippy::needless_borrows_for_generic_args)] // `put` takes a reference, too
    q.put(&2).unwrap();
    q.put_timeout(3, DEADLINE).unwrap();
    q.put_nowait(4).unwrap();
    q.put_timeout(5, Duration::ZERO).unwrap();
    q.put_nowait(6).unwrap();
    assert!(!q.empty());
    assert!(q.full());
    assert_eq!(q.qsize(), 6);
    assert_fails_in(is_full, Duration::ZERO, || q.put_nowait(7));
    assert_fails_in(is_full, Duration::ZERO, || q.put_timeout(7, Duration::ZERO));
    assert_fails_in(is_full, Duration::from_millis(100), || {
        q.put_timeout(7, Duration::from_millis(100))
    });
    gate.send(&()).unwrap();
    assert_eq!(join(&reader), 0);
    assert!(q.empty() && !q.full());
}

fn put_when_released(q: Queue<u32>, gate: Connection, items: Vec<u32>) {
    let _ = gate.recv::<()>();
    for i in items {
        q.put(i).unwrap();
    }
}

/// B02: items put by a child come out in order through every form of `get`; an empty queue
/// refuses in every form with the right timing.
fn b02_get(method: StartMethod) {
    let q = Queue::<u32>::bounded(6).unwrap();
    let (gate, gate_child) = pipe().unwrap();
    let writer = Process::new(put_when_released, (q.clone(), gate_child, vec![2, 3, 4, 5]))
        .start_method(method)
        .start()
        .unwrap();
    assert!(q.empty());
    gate.send(&()).unwrap();
    assert_eq!(join(&writer), 0);
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get_timeout(DEADLINE).unwrap(), 3);
    assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), 4);
    assert_eq!(q.get_nowait().unwrap(), 5);
    assert!(q.empty());
    assert_fails_in(is_empty, Duration::ZERO, || q.get_nowait());
    assert_fails_in(is_empty, Duration::ZERO, || q.get_timeout(Duration::ZERO));
    assert_fails_in(is_empty, Duration::from_millis(100), || {
        q.get_timeout(Duration::from_millis(100))
    });
}

/// B03: items put before and after a child starts arrive exactly once, in order.
fn b03_fork(method: StartMethod) {
    let q = Queue::<u32>::new().unwrap();
    for i in 0..10 {
        q.put(i).unwrap();
    }
    let (gate, gate_child) = pipe().unwrap();
    let child = Process::new(
        put_when_released,
        (q.clone(), gate_child, (10..20).collect()),
    )
    .start_method(method)
    .start()
    .unwrap();
    gate.send(&()).unwrap();
    assert_eq!(join(&child), 0);
    let got: Vec<u32> = (0..20).map(|_| q.get_timeout(DEADLINE).unwrap()).collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
}

/// B04: `qsize` is exact.
#[test]
fn b04_qsize() {
    let q = Queue::<u32>::new().unwrap();
    assert_eq!(q.qsize(), 0);
    q.put(1).unwrap();
    assert_eq!(q.qsize(), 1);
    q.put(2).unwrap();
    assert_eq!(q.qsize(), 2);
    q.get().unwrap();
    assert_eq!(q.qsize(), 1);
    q.get().unwrap();
    assert_eq!(q.qsize(), 0);
}

/// B05: a `get` with a timeout on an empty queue waits for it, then fails.
#[test]
fn b05_timeout() {
    let q = Queue::<u32>::new().unwrap();
    assert_fails_in(is_empty, Duration::from_millis(200), || {
        q.get_timeout(Duration::from_millis(200))
    });
}

fn joinable_worker(q: JoinableQueue<Option<u32>>, done: Queue<u32>) {
    while let Some(x) = q.get().unwrap() {
        std::thread::sleep(Duration::from_millis(10));
        done.put(x).unwrap();
        q.task_done().unwrap();
    }
    q.task_done().unwrap();
}

/// B06: `JoinableQueue::join` returns once 4 workers have processed all 10 items.
fn b06_task_done(method: StartMethod) {
    let q = JoinableQueue::<Option<u32>>::new().unwrap();
    let done = Queue::<u32>::new().unwrap();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            Process::new(joinable_worker, (q.clone(), done.clone()))
                .start_method(method)
                .start()
                .unwrap()
        })
        .collect();
    for i in 0..10 {
        q.put(Some(i)).unwrap();
    }
    assert!(q.join_timeout(DEADLINE).unwrap(), "join did not return");
    assert_eq!(done.qsize(), 10);
    for _ in &workers {
        q.put(None).unwrap();
    }
    for w in &workers {
        assert_eq!(join(w), 0);
    }
    assert_eq!(q.unfinished(), 0);
}

/// B07: `task_done` with nothing outstanding is an error.
#[test]
fn b07_task_done_too_often() {
    let q = JoinableQueue::<u8>::new().unwrap();
    let err = q.task_done().unwrap_err();
    assert!(matches!(err, Error::TaskDoneTooOften), "{err:?}");
    assert!(err.to_string().contains("too many times"), "{err}");
}

/// Encodes only when `true`.
#[derive(Debug, PartialEq, Deserialize)]
struct Picky(bool);

impl Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 {
            s.serialize_newtype_struct("Picky", &true)
        } else {
            Err(serde::ser::Error::custom("refuses to be encoded"))
        }
    }
}

/// B08: an item that fails to encode is an error at `put` and changes nothing.
#[test]
fn b08_bad_item_fails_at_put() {
    for q in [
        Queue::<Picky>::new().unwrap(),
        Queue::<Picky>::bounded(1).unwrap(),
    ] {
        let err = q.put(Picky(false)).unwrap_err();
        assert!(
            matches!(err, Error::Encode(ref m) if m.contains("refuses")),
            "{err:?}"
        );
        assert_eq!(q.qsize(), 0);
        q.put(Picky(true)).unwrap();
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get_timeout(DEADLINE).unwrap(), Picky(true));
        assert!(q.empty());
    }
}

/// B08 (decoding side): an item of the wrong shape fails at `get`, and the queue goes on.
#[test]
fn b08_bad_item_fails_at_get() {
    let q = Queue::<String>::new().unwrap();
    q.put("not a number".to_string()).unwrap();
    q.put("next".to_string()).unwrap();
    // The same shared memory, seen as a queue of numbers.
    let bytes = multiprocess::codec::encode_with_fds(&q).unwrap();
    let as_numbers: Queue<u64> = multiprocess::codec::decode_with_fds(&bytes.0, bytes.1).unwrap();
    assert!(matches!(as_numbers.get_nowait(), Err(Error::Decode(_))));
    assert_eq!(q.get_nowait().unwrap(), "next");
}

/// B09: a closed handle refuses `put` and `get`.
#[test]
fn b09_closed() {
    let q = Queue::<u8>::new().unwrap();
    q.close();
    assert!(matches!(q.put(1), Err(Error::Closed)));
    assert!(matches!(q.get(), Err(Error::Closed)));
    assert!(q.get().unwrap_err().to_string().contains("is closed"));
    let j = JoinableQueue::<u8>::new().unwrap();
    j.close();
    assert!(matches!(j.put(1), Err(Error::Closed)));
}

fn put_big(q: Queue<String>, n: usize) {
    q.put("x".repeat(n)).unwrap();
}

/// B10: a child that put a large item exits at once (no feeder thread to wait for), and the
/// item arrives intact after the join. Decision for the SCENARIOS row: no deadlock, no loss.
fn b10_join_before_get(method: StartMethod) {
    let q = Queue::<String>::new().unwrap();
    let p = Process::new(put_big, (q.clone(), 1 << 20))
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(2)).unwrap(), Some(0));
    assert_eq!(q.get_nowait().unwrap(), "x".repeat(1 << 20));
}

fn produce_sequence(q: Queue<(u32, u32)>, id: u32) {
    for seq in 0..1000 {
        q.put((id, seq)).unwrap();
    }
}

/// B11: with 3 producers, each producer's items arrive in order, none lost or duplicated.
fn b11_fifo_per_producer(method: StartMethod) {
    let q = Queue::<(u32, u32)>::bounded(64).unwrap();
    let producers: Vec<_> = (0..3)
        .map(|id| {
            Process::new(produce_sequence, (q.clone(), id))
                .start_method(method)
                .start()
                .unwrap()
        })
        .collect();
    let mut next = [0u32; 3];
    for _ in 0..3000 {
        let (id, seq) = q.get_timeout(DEADLINE).unwrap();
        assert_eq!(seq, next[id as usize], "producer {id} out of order");
        next[id as usize] += 1;
    }
    assert_eq!(next, [1000; 3]);
    for p in &producers {
        assert_eq!(join(p), 0);
    }
    assert!(q.empty());
}

fn report_empty_twice(q: SimpleQueue<bool>, gate: Connection) {
    let _ = gate.recv::<()>();
    q.put(q.empty()).unwrap();
    q.put(q.empty()).unwrap();
}

/// B12: `SimpleQueue::empty` before and after.
fn b12_simple_queue(method: StartMethod) {
    let q = SimpleQueue::<bool>::new().unwrap();
    let (gate, gate_child) = pipe().unwrap();
    let p = Process::new(report_empty_twice, (q.clone(), gate_child))
        .start_method(method)
        .start()
        .unwrap();
    assert!(q.empty());
    gate.send(&()).unwrap();
    assert_eq!(join(&p), 0);
    assert!(!q.empty());
    assert!(q.get().unwrap());
    assert!(!q.get().unwrap());
    assert!(q.empty());
}

fn check_in_child(q: Queue<u32>, report: Connection) {
    let seen = (q.qsize(), q.full(), q.empty());
    let items = (q.get_nowait().unwrap(), q.get_nowait().unwrap());
    report.send(&(seen, items, q.empty())).unwrap();
}

/// B13: a queue handed to a child is the same queue there.
fn b13_queue_in_child(method: StartMethod) {
    let q = Queue::<u32>::bounded(2).unwrap();
    q.put(5).unwrap();
    q.put(6).unwrap();
    let (mine, theirs) = pipe().unwrap();
    let p = Process::new(check_in_child, (q.clone(), theirs))
        .start_method(method)
        .start()
        .unwrap();
    type Seen = ((usize, bool, bool), (u32, u32), bool);
    assert_eq!(recv::<Seen>(&mine), ((2, true, false), (5, 6), true));
    assert_eq!(join(&p), 0);
    assert!(q.empty() && !q.full());
}

fn put_lifo(q: LifoQueue<u32>) {
    for i in 1..=3 {
        q.put(i).unwrap();
    }
}

/// B14: a LIFO queue filled by a child gives the items back newest first, and has the same
/// Full/Empty behaviour as `Queue`.
fn b14_lifo(method: StartMethod) {
    let q = LifoQueue::<u32>::bounded(3).unwrap();
    let p = Process::new(put_lifo, (q.clone(),))
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(join(&p), 0);
    assert!(q.full());
    assert_fails_in(is_full, Duration::from_millis(100), || {
        q.put_timeout(4, Duration::from_millis(100))
    });
    let got: Vec<u32> = (0..3).map(|_| q.get_nowait().unwrap()).collect();
    assert_eq!(got, vec![3, 2, 1]);
    assert_fails_in(is_empty, Duration::from_millis(100), || {
        q.get_timeout(Duration::from_millis(100))
    });
}

fn put_priorities(q: PriorityQueue<(u32, String)>) {
    for (p, s) in [(3, "c"), (1, "a"), (2, "b")] {
        q.put((p, s.to_string())).unwrap();
    }
}

/// B14 (priority half): items put by a child come out smallest first; Full and Empty behave as
/// in `Queue`.
fn b14_priority(method: StartMethod) {
    let q = PriorityQueue::<(u32, String)>::bounded(3).unwrap();
    let p = Process::new(put_priorities, (q.clone(),))
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(join(&p), 0);
    assert!(q.full());
    assert_eq!(q.qsize(), 3);
    assert_fails_in(is_full, Duration::from_millis(100), || {
        q.put_timeout((0, "z".to_string()), Duration::from_millis(100))
    });
    assert!(matches!(
        q.put_nowait((0, "z".to_string())),
        Err(Error::Full)
    ));
    let got: Vec<String> = (0..3).map(|_| q.get_nowait().unwrap().1).collect();
    assert_eq!(got, ["a", "b", "c"]);
    assert_fails_in(is_empty, Duration::from_millis(100), || {
        q.get_timeout(Duration::from_millis(100))
    });
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
}

/// The priority queue against `std::collections::BinaryHeap`, over many interleaved puts and
/// gets of mixed sizes (so that its arena is compacted and grown many times).
#[test]
fn priority_queue_matches_a_binary_heap() {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let q = PriorityQueue::<(u64, String)>::new().unwrap();
    let mut model = BinaryHeap::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..5000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 3 != 0 || model.is_empty() {
            let item = (
                x % 1000,
                "p".repeat((x % 3000) as usize) + &step.to_string(),
            );
            q.put(&item).unwrap();
            model.push(Reverse(item));
        } else {
            let Reverse(want) = model.pop().unwrap();
            let got = q.get_nowait().unwrap();
            assert_eq!(got.0, want.0, "step {step}");
        }
        assert_eq!(q.qsize(), model.len());
    }
    while let Some(Reverse(want)) = model.pop() {
        assert_eq!(q.get_nowait().unwrap().0, want.0);
    }
    assert!(q.empty());
}

fn echo_big(q_in: Queue<ByteBuf>, q_out: Queue<ByteBuf>) {
    while let Ok(item) = q_in.get() {
        if item.is_empty() {
            break;
        }
        q_out.put(item).unwrap();
    }
}

/// Items of any size cross: 16 MiB and more, mixed with small ones, in order.
fn large_items(method: StartMethod) {
    // serde_bytes makes a byte buffer one MessagePack "bin" (a copy), not an array of numbers.
    let q_in = Queue::<ByteBuf>::bounded(4).unwrap();
    let q_out = Queue::<ByteBuf>::new().unwrap();
    let p = Process::new(echo_big, (q_in.clone(), q_out.clone()))
        .start_method(method)
        .start()
        .unwrap();
    let sizes = [1usize, 16 << 20, 3, (16 << 20) + 1, 100_000];
    for (i, &n) in sizes.iter().enumerate() {
        let item = ByteBuf::from((0..n).map(|j| (i + j) as u8).collect::<Vec<u8>>());
        q_in.put_timeout(&item, DEADLINE).unwrap();
        assert_eq!(q_out.get_timeout(DEADLINE).unwrap(), item);
    }
    q_in.put(ByteBuf::new()).unwrap();
    assert_eq!(join(&p), 0);
}

per_method!(
    b01_put,
    b02_get,
    b03_fork,
    b06_task_done,
    b10_join_before_get,
    b11_fifo_per_producer,
    b12_simple_queue,
    b13_queue_in_child,
    b14_lifo,
    b14_priority,
    large_items,
);
