//! The crate's conventions, checked: every public type prints with `{:?}`, the lazy map
//! iterators and the futures cross threads, `cpu_count` is what a pool uses by default.

mod common;

use std::fmt::Debug;
use std::rc::Rc;

use common::DEADLINE;
use multiprocess::Pool;

multiprocess::init_on_load!();

fn sqr(x: u64) -> u64 {
    x * x
}

fn send<T: Send>() {}
fn debug<T: Debug>() {}

/// Compile-time: the lazy map iterators over a `Send` input are `Send` (so they can be
/// consumed on another thread), as are the futures and the pool.
#[test]
fn iterators_and_results_are_send() {
    send::<multiprocess::IMap<'_, u64, std::ops::Range<u64>>>();
    send::<multiprocess::IMapUnordered<'_, u64, std::vec::IntoIter<u64>>>();
    send::<multiprocess::AsyncResult<u64>>();
    send::<multiprocess::MapResult<u64>>();
    send::<multiprocess::JoinHandle<u64>>();
    send::<Pool>();
    send::<&Pool>();
}

/// An `imap` consumed on another (scoped) thread than the one that made it.
#[test]
fn an_imap_moves_to_another_thread() {
    let pool = Pool::new(2).unwrap();
    let unordered = pool.imap_unordered(sqr, 0..50u64, 4);
    let ordered = pool.imap(sqr, 0..50u64, 4);
    let (mut a, b) = std::thread::scope(|s| {
        let a = s.spawn(move || unordered.collect::<multiprocess::Result<Vec<u64>>>());
        let b = s.spawn(move || ordered.collect::<multiprocess::Result<Vec<u64>>>());
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    a.sort_unstable();
    let want: Vec<u64> = (0..50).map(sqr).collect();
    assert_eq!((a, b), (want.clone(), want));
    pool.close();
    pool.join().unwrap();
}

/// An input that is not `Send` (an iterator holding an `Rc`) still works with `imap` and
/// `imap_unordered`: only the iterator stays on the thread that made it.
#[test]
fn an_imap_takes_an_input_that_is_not_send() {
    let pool = Pool::new(2).unwrap();
    let offset = Rc::new(1u64);
    let shifted = Rc::clone(&offset);
    let ordered = pool.imap(sqr, (0..20u64).map(move |x| x + *shifted), 3);
    let want: Vec<u64> = (1..21).map(sqr).collect();
    assert_eq!(
        ordered.collect::<multiprocess::Result<Vec<u64>>>().unwrap(),
        want
    );
    let shifted = Rc::clone(&offset);
    let unordered = pool.imap_unordered(sqr, (0..20u64).map(move |x| x + *shifted), 3);
    let mut got = unordered
        .collect::<multiprocess::Result<Vec<u64>>>()
        .unwrap();
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(
        Rc::strong_count(&offset),
        1,
        "the iterators dropped their input"
    );
    pool.close();
    pool.join().unwrap();
}

/// Compile-time: every public type implements `Debug` (the `missing_debug_implementations`
/// lint covers the rest; this names the generic ones with a plain parameter).
#[test]
fn public_types_are_debug() {
    debug::<multiprocess::Process<fn(u64) -> u64, (u64,)>>();
    debug::<multiprocess::ProcessHandle>();
    debug::<multiprocess::JoinHandle<u64>>();
    debug::<Pool>();
    debug::<multiprocess::PoolBuilder>();
    debug::<multiprocess::AsyncResult<u64>>();
    debug::<multiprocess::MapResult<u64>>();
    debug::<multiprocess::IMap<'_, u64, std::rc::Rc<u64>>>();
    debug::<multiprocess::IMapUnordered<'_, u64, std::rc::Rc<u64>>>();
    debug::<multiprocess::Completions<u64>>();
    debug::<multiprocess::Items<'_, u64>>();
    debug::<multiprocess::Queue<u64>>();
    debug::<multiprocess::PriorityQueue<u64>>();
    debug::<multiprocess::Connection>();
    debug::<multiprocess::Array<u64>>();
    debug::<multiprocess::ArrayGuard<'_, u64>>();
    debug::<multiprocess::Value<u64>>();
    debug::<multiprocess::Dict<String, u64>>();
    debug::<multiprocess::List<u64>>();
    debug::<multiprocess::SharedMemory>();
    debug::<multiprocess::ShmBuf>();
    debug::<multiprocess::Error>();
}

#[test]
fn printed_with_debug() {
    let pool = Pool::builder().processes(1).build().unwrap();
    let r = pool.apply_async(sqr, (3,)).unwrap();
    assert_eq!(r.get_timeout(DEADLINE).unwrap(), 9);
    assert_eq!(format!("{r:?}"), "AsyncResult { ready: true }");
    let imap = pool.imap(sqr, 0..3u64, 1);
    assert!(format!("{imap:?}").starts_with("IMap { chunks_in_flight: 0"));
    drop(imap);
    let builder = Pool::builder().processes(3).maxtasksperchild(5);
    let printed = format!("{builder:?}");
    assert!(printed.contains("processes: Some(3)"), "{printed}");
    assert!(printed.contains("maxtasksperchild: Some(5)"), "{printed}");
}

#[test]
fn cpu_count_is_the_default_pool_size() {
    let n = multiprocess::cpu_count();
    assert!(n >= 1);
    assert_eq!(n, std::thread::available_parallelism().unwrap().get());
    let pool = Pool::builder().build().unwrap();
    assert!(format!("{pool:?}").contains(&format!("processes: {n}")));
}
