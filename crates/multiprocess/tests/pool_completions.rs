//! `Completions`: a pool's results as one stream in the order tasks finish, tasks of several
//! kinds together; a lost worker, a terminated pool and a refused submission each show as
//! what they are.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{pool, DEADLINE};
use multiprocess::{Completions, Error, Pool, Queue, StartMethod};

multiprocess::init_on_load!();

fn sqr(x: i64) -> i64 {
    x * x
}

fn len(s: String) -> usize {
    s.len()
}

/// Tells `started` it runs, then sleeps `ms`.
fn started_then_sleep(started: Queue<u32>, ms: u64) -> u64 {
    started.put(std::process::id()).unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Submits a task that tells `started` it runs, then sleeps a minute.
fn submit_sleeper(done: &mut Completions<Done>, p: &Pool, started: &Queue<u32>) {
    let args = (started.clone(), 60_000);
    done.apply_async(p, started_then_sleep, args, Done::Slept)
        .unwrap();
}

/// What finished, as the tests' streams carry it.
#[derive(Debug)]
enum Done {
    Square(i64, multiprocess::Result<i64>),
    Len(multiprocess::Result<usize>),
    Slept(multiprocess::Result<u64>),
}

/// Receives every pending item within [`DEADLINE`].
fn drain(done: &mut Completions<Done>) -> Vec<Done> {
    let deadline = Instant::now() + DEADLINE;
    let mut items = Vec::new();
    while done.pending() > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{} items missing", done.pending());
        items.extend(done.next_timeout(left));
    }
    items
}

/// Tasks returning different types come through one stream, each item once, tagged with what
/// it was given; `pending` counts what has not been received; an empty stream gives `None`
/// at once, and the iterator ends.
fn tasks_of_several_kinds_share_one_stream(method: StartMethod) {
    let p = pool(method, 2);
    let mut done = Completions::new();
    assert!(done.next_timeout(DEADLINE).is_none(), "nothing pending");
    for x in 0..20 {
        done.apply_async(&p, sqr, (x,), move |r| Done::Square(x, r))
            .unwrap();
    }
    done.apply_async(&p, len, ("four".to_string(),), Done::Len)
        .unwrap();
    assert_eq!(done.pending(), 21);
    let mut squares = BTreeSet::new();
    for item in drain(&mut done) {
        match item {
            Done::Square(x, r) => {
                assert_eq!(r.unwrap(), x * x);
                assert!(squares.insert(x), "{x} twice");
            }
            Done::Len(r) => assert_eq!(r.unwrap(), 4),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(squares.len(), 20);
    assert_eq!(done.pending(), 0);
    assert!(done.try_next().is_none());
    assert!(
        done.next().is_none(),
        "the iterator ends with nothing pending"
    );
    done.apply_async(&p, sqr, (9,), move |r| Done::Square(9, r))
        .unwrap();
    let all: Vec<Done> = done.by_ref().collect();
    assert!(matches!(all[..], [Done::Square(9, Ok(81))]), "{all:?}");
}

/// A task whose worker is killed arrives as `WorkerLost`; the others as results; a short
/// wait with nothing finished gives `None` and loses nothing.
fn a_lost_worker_is_an_item_like_any_other(method: StartMethod) {
    let p = pool(method, 2);
    let mut done = Completions::new();
    let started = Queue::new().unwrap();
    submit_sleeper(&mut done, &p, &started);
    let victim = started.get_timeout(DEADLINE).unwrap();
    assert!(done.next_timeout(Duration::from_millis(1)).is_none());
    assert_eq!(done.pending(), 1);
    done.apply_async(&p, sqr, (3,), move |r| Done::Square(3, r))
        .unwrap();
    // SAFETY: killing the pool worker that runs our task.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let items = drain(&mut done);
    assert_eq!(items.len(), 2);
    for item in items {
        match item {
            Done::Slept(Err(Error::WorkerLost { exitcode })) => {
                assert_eq!(exitcode, -libc::SIGKILL)
            }
            Done::Square(3, Ok(9)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Terminating the pool ends every pending task with an error item, so a loop waiting for
/// them all ends; a submission to a terminated pool is refused and adds nothing.
fn a_terminated_pool_ends_every_pending_task(method: StartMethod) {
    let p = pool(method, 1);
    let mut done = Completions::new();
    let started = Queue::new().unwrap();
    for _ in 0..5 {
        submit_sleeper(&mut done, &p, &started);
    }
    started.get_timeout(DEADLINE).unwrap();
    p.terminate();
    let items = drain(&mut done);
    assert_eq!(items.len(), 5);
    assert!(
        items
            .iter()
            .all(|d| matches!(d, Done::Slept(Err(Error::PoolTerminated)))),
        "{items:?}"
    );
    let refused = done.apply_async(&p, sqr, (1,), move |r| Done::Square(1, r));
    assert!(matches!(refused, Err(Error::PoolTerminated)), "{refused:?}");
    assert_eq!(done.pending(), 0);
    p.join().unwrap();
}

per_method!(
    tasks_of_several_kinds_share_one_stream,
    a_lost_worker_is_an_item_like_any_other,
    a_terminated_pool_ends_every_pending_task,
);
