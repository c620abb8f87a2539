//! Queues and connections as iterators (ending when the source is closed or, for `try_iter`,
//! empty), an `Array` lent out as a slice under its lock, and `#[derive(Plain)]` structs in
//! shared memory, across processes.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::DEADLINE;
use multiprocess::{
    Array, Connection, JoinableQueue, LifoQueue, Plain, PriorityQueue, Queue, SimpleQueue, Value,
};

multiprocess::init_on_load!();

fn produce(q: Queue<u32>, n: u32) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[test]
fn every_queue_kind_iterates() {
    let q = Queue::<u32>::new().unwrap();
    let child = multiprocess::spawn(produce, (q.clone(), 5)).unwrap();
    // `for item in &q` waits for each item: take the five the child puts.
    let mut got = Vec::new();
    for item in &q {
        got.push(item.unwrap());
        if got.len() == 5 {
            break;
        }
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    let mut child = child;
    child.join_timeout(DEADLINE).unwrap();
    assert_eq!(q.try_iter().count(), 0);

    let lifo = LifoQueue::<u32>::new().unwrap();
    let simple = SimpleQueue::<u32>::new().unwrap();
    let joinable = JoinableQueue::<u32>::new().unwrap();
    let prio = PriorityQueue::<u32>::new().unwrap();
    for i in [2, 0, 1] {
        lifo.put(i).unwrap();
        simple.put(i).unwrap();
        joinable.put(i).unwrap();
        prio.put(i).unwrap();
    }
    let all = |it: multiprocess::Items<'_, u32>| it.collect::<multiprocess::Result<Vec<_>>>();
    assert_eq!(all(lifo.try_iter()).unwrap(), [1, 0, 2]);
    assert_eq!(all(simple.try_iter()).unwrap(), [2, 0, 1]);
    assert_eq!(all(joinable.try_iter()).unwrap(), [2, 0, 1]);
    assert_eq!(all(prio.try_iter()).unwrap(), [0, 1, 2]);
    // `try_iter` ends when empty; a later round finds what came since.
    prio.put(7).unwrap();
    assert_eq!(all(prio.try_iter()).unwrap(), [7]);
}

#[test]
fn a_closed_queue_handle_ends_iter() {
    let q = Queue::<u32>::new().unwrap();
    q.put(1).unwrap();
    let mut it = q.iter();
    assert_eq!(it.next().unwrap().unwrap(), 1);
    q.close();
    assert!(it.next().is_none());
    assert!((&q).into_iter().next().is_none());
}

fn send_then_close(c: Connection, n: u32) {
    for i in 0..n {
        c.send(&i).unwrap();
    }
}

#[test]
fn connection_iter_ends_when_the_other_side_is_gone() {
    let (mine, theirs) = multiprocess::pipe().unwrap();
    let child = multiprocess::spawn(send_then_close, (theirs, 100)).unwrap();
    // Our copy of the child's end was handed over: once the child exits, its end is closed.
    let got: Vec<u32> = mine.iter().collect::<multiprocess::Result<_>>().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    let mut child = child;
    child.join_timeout(DEADLINE).unwrap();

    let (a, b) = multiprocess::pipe().unwrap();
    assert_eq!(b.try_iter::<u32>().count(), 0);
    a.send(&5u32).unwrap();
    a.send(&6u32).unwrap();
    let now: Vec<u32> = b.try_iter().collect::<multiprocess::Result<_>>().unwrap();
    assert_eq!(now, [5, 6]);
    drop(a);
    assert!(b.try_iter::<u32>().next().is_none());
    assert!(b.iter::<u32>().next().is_none());
}

#[derive(Clone, Copy, Debug, PartialEq, Plain)]
#[repr(C)]
struct Particle {
    position: [f64; 3],
    id: u32,
    generation: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Plain)]
#[repr(transparent)]
struct Meters(f64);

fn step(mut particles: Array<Particle>, total: Value<Meters>) {
    let mut view = particles.lock().unwrap();
    for p in view.iter_mut() {
        p.position[0] += 1.0;
        p.generation += 1;
    }
    let moved: f64 = view.iter().map(|p| p.position[0]).sum();
    drop(view);
    total.set(Meters(moved));
}

#[test]
fn derived_plain_structs_and_array_views_cross_processes() {
    let start: Vec<Particle> = (0..4)
        .map(|i| Particle {
            position: [f64::from(i), 0.0, 0.0],
            id: i,
            generation: 0,
        })
        .collect();
    let mut particles = Array::new(&start).unwrap();
    let total = Value::new(Meters(0.0)).unwrap();
    let child = multiprocess::spawn(step, (particles.clone(), total.clone())).unwrap();
    let mut child = child;
    child.join_timeout(DEADLINE).unwrap();
    assert_eq!(total.get(), Meters(1.0 + 2.0 + 3.0 + 4.0));
    let view = particles.lock().unwrap();
    assert_eq!(view.len(), 4);
    assert!(view.iter().all(|p| p.generation == 1));
    assert_eq!(view[3].position, [4.0, 0.0, 0.0]);
}

fn hold_view(mut a: Array<u64>, ms: u64) {
    let mut view = a.lock().unwrap();
    view[0] = 1;
    std::thread::sleep(Duration::from_millis(ms));
    view[0] = 2;
}

/// Another process sees the view's writes only whole: its `get` waits for the lock.
#[test]
fn a_view_holds_the_arrays_lock() {
    let a = Array::new(&[0u64]).unwrap();
    let child = multiprocess::spawn(hold_view, (a.clone(), 300)).unwrap();
    let until = std::time::Instant::now() + DEADLINE;
    while !a.get_lock().locked() && a.to_vec() == [0] {
        assert!(
            std::time::Instant::now() < until,
            "the child never took the lock"
        );
        std::thread::yield_now();
    }
    assert_eq!(a.get(0).unwrap(), 2, "read inside the child's view");
    let mut child = child;
    child.join_timeout(DEADLINE).unwrap();
}

#[test]
fn a_view_needs_the_lock_alone() {
    let mut a = Array::new(&[1u8, 2]).unwrap();
    let lock = a.get_lock().clone();
    let guard = lock.lock().unwrap();
    assert!(matches!(
        a.lock(),
        Err(multiprocess::Error::InvalidArgument(_))
    ));
    drop(guard);
    let other = a.clone();
    let mut view = a.lock().unwrap();
    assert_eq!(&*view, &[1, 2]);
    // Another thread cannot take the lock while the view holds it, so its read waits until
    // the view is dropped, and sees what the view wrote.
    let (probed, probe) = mpsc::channel();
    let (read, result) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let taken = other.get_lock().try_acquire().unwrap();
        if taken {
            other.get_lock().release().unwrap();
        }
        probed.send(taken).unwrap();
        read.send(other.to_vec()).unwrap();
    });
    let taken = probe
        .recv_timeout(DEADLINE)
        .expect("the reader never probed the lock");
    assert!(!taken, "another thread took the lock while a view held it");
    view.copy_from_slice(&[7, 8]);
    drop(view);
    let seen = result
        .recv_timeout(DEADLINE)
        .expect("the reader never read");
    assert_eq!(seen, [7, 8]);
    reader.join().unwrap();
}
