//! # multiprocess
//!
//! Python's `multiprocessing`, in Rust: run a function in a real OS process, with the names,
//! behaviour and start methods a Python user knows, and the guarantees Python cannot give.
//!
//! ```no_run
//! use multiprocess::{current_process, Process};
//!
//! fn sing(times: u32, name: String) {
//!     for _ in 0..times {
//!         println!("{name} sings in {} ({})", current_process().name(), std::process::id());
//!     }
//! }
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> multiprocess::Result<()> {
//!     multiprocess::init(); // first line of main: a re-executed child stops here
//!
//!     // Python: Process(target=sing, args=(3, "xiaoming")).start(); p.join()
//!     let p = Process::new(sing, (3, "xiaoming".to_string())).start()?;
//!     assert_eq!(p.join()?, 0);
//!
//!     // A process that returns a value, like std::thread::spawn.
//!     let h = multiprocess::spawn(square, (12,))?;
//!     assert_eq!(h.join()?, 144);
//!     Ok(())
//! }
//! ```
//!
//! ## The parts
//!
//! - [`Process`] / [`ProcessHandle`]: start, `join`, `join_timeout`, `terminate`, `kill`,
//!   `exitcode` (`-N` when killed by signal N), `is_alive`, names (`Process-1`, `Process-2:1`),
//!   daemonic processes; [`Run`] for the "subclass with `run()`" style.
//! - [`spawn`] / [`JoinHandle`]: a process whose return value comes back; a panic comes back as
//!   [`Error::Panic`] with message and location, and the child prints one line about it on
//!   stderr ([`PanicOutput`] chooses: Rust's full output, one line, or nothing).
//! - [`current_process`], [`parent_process`], [`parent_pid`], [`active_children`].
//! - [`StartMethod`]: `Fork`, `Spawn`, `ForkServer` (the default), per process, per
//!   [`Context`], or process-wide with [`set_start_method`].
//! - [`Queue`], [`LifoQueue`], [`PriorityQueue`], [`JoinableQueue`], [`SimpleQueue`]: queues in
//!   shared memory, exact `qsize`, safe when a process is killed at any instant; an item of a
//!   FIFO queue may carry handles (a zero-copy buffer, a queue, a connection). Each iterates
//!   ([`Items`]): `for item in &queue`, `queue.try_iter()`.
//! - [`pipe`] / [`Connection`] / [`wait`]: message pipes between processes; a message may carry
//!   handles (a queue, a connection) to a process that is already running;
//!   `connection.iter::<T>()` ends when the other end is closed.
//! - Big data: items are encoded straight into shared memory and decoded straight out (a large
//!   byte string is copied once in, once out); [`ShmBuf`] / [`ShmBufMut`] are zero-copy
//!   buffers whose pages cross by descriptor; [`SharedMemory`] is Python's `shared_memory`, a
//!   block opened by name from any process, and [`ShareableList`] its typed list view.
//! - [`Dict`], [`List`]: Python's `Manager().dict()` and `.list()` without a manager process,
//!   exact `len`, safe when a process is killed mid-update.
//! - [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`],
//!   [`Barrier`], [`Value`], [`Array`]: synchronisation and shared data; a lock held by a dead
//!   process is recovered. [`Array::lock`] lends the elements as a slice; `#[derive(Plain)]`
//!   ([`Plain`](trait@Plain)) puts a struct in shared memory without `unsafe`.
//! - [`cpu_count`]: the default size of a pool.
//! - Async: [`AsyncResult`], [`MapResult`] and [`JoinHandle`] are
//!   [`Future`](std::future::Future)s, woken by whoever completes them (the pool's supervisor
//!   thread, a thread watching the process): `pool.apply_async(f, args)?.await` under tokio,
//!   async-std or any `block_on`, with no runtime among this crate's dependencies.
//! - [`Pool`]: `apply`, `apply_async` (with callbacks), `map`, `imap`, `imap_unordered`,
//!   `starmap`, `close`, `join`, `terminate`; [`Completions`], results of tasks of any kind as
//!   one stream in the order they finish; a worker that dies fails only its own task with
//!   [`Error::WorkerLost`] and is replaced; task time limits, `maxtasksperchild`, a memory
//!   ceiling.
//!
//! - [`cluster`] (feature `cluster`): the same `Pool` and a `Queue` across machines, through a
//!   Redis broker, with the same crash guarantees and a few more (a lost machine's tasks fail
//!   with [`Error::NodeLost`], tasks are authenticated, nothing grows without bound in Redis).
//!
//! Queues, connections, locks, shared values and containers, and buffers are passed to a child
//! (or a pool task) as arguments, under every start method.
//!
//! ## Features
//!
//! - `cluster`: [`cluster`], above.
//! - `log`: pool events through the [`log`](https://docs.rs/log) crate, target
//!   `multiprocess`, what Python's `log_to_stderr()` shows: workers started, stopped and
//!   replaced (`info`; a worker that died under a task is a `warn`), tasks that failed
//!   (`info`: the caller receives the error too).
//!
//! ## Set-up: one line
//!
//! `Spawn` and `ForkServer` re-execute the program's binary; [`init`] as the first line of `main`
//! makes that copy run the requested function instead of `main`. In an integration test file,
//! whose `main` is the test harness's, write [`init_on_load!()`](init_on_load) once at the top.
//!
//! ## Lifetimes, as in Python, and better
//!
//! When `main` returns (or `std::process::exit` is called), daemonic children are terminated
//! and the others joined. A daemonic child also dies when its parent dies by SIGKILL: it watches
//! a pidfd of its parent, from a thread of its own. Its descriptor table has room for 1000
//! descriptors from the start: with that thread, each later growth of the table would stall
//! it for a grace period of the kernel's RCU (14–27 ms measured). A daemonic child may start
//! children of its own.
//!
//! ## Platform
//!
//! Linux (kernel 5.3 or later, for pidfds). Every call into the kernel (or libc) is in one
//! private module, `sys` (`src/sys/`, one file per kind: descriptors, sockets, signals,
//! processes, memory, futex, the robust mutex), so that other Unix systems can follow; a test
//! checks that no other file of the library names `libc`.
//!
// Built without the `cluster` feature, the module the links above name is not there: they lead
// to its page on docs.rs, which documents every feature.
#![cfg_attr(
    not(feature = "cluster"),
    doc = "[`cluster`]: https://docs.rs/multiprocess/latest/multiprocess/cluster/index.html"
)]
// The doc examples show `fn main` on purpose: `multiprocess::init()` belongs first in it.
#![allow(clippy::needless_doctest_main)]
// No panic on a path that user input or another process can reach: errors are returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

/// Marks every item it holds `#[cfg(target_os = "linux")]`: on another target the crate is
/// empty but for the one `compile_error!` below, instead of a page of unresolved names.
macro_rules! linux_only {
    ($($item:item)*) => {
        $(
            #[cfg(target_os = "linux")]
            $item
        )*
    };
}

#[cfg(not(target_os = "linux"))]
compile_error!(
    "multiprocess supports Linux only (kernel 5.3 or later: it needs pidfds, futexes and \
     memfd_create); this target is not Linux"
);

linux_only! {
    mod buffer;
    #[cfg(feature = "cluster")]
    pub mod cluster;
    pub mod codec;
    mod connection;
    mod context;
    mod error;
    mod items;
    mod logging;
    mod per_process;
    mod pool;
    mod process;
    mod queue;
    mod shareable_list;
    mod shared;
    mod shared_memory;
    mod shm;
    mod store;
    mod sync;
    mod sys;

    pub use buffer::{ShmBuf, ShmBufMut};
    pub use connection::{pipe, pipe_simplex, wait, Connection, Waitable, PIPE_CAPACITY};
    pub use context::{
        cpu_count,
        get_all_start_methods, get_context, get_start_method, init, set_start_method,
        set_start_method_force, Context, StartMethod, DEFAULT_START_METHOD,
    };
    pub use error::{signal_name, Error, Result};
    pub use items::Items;
    /// Derives [`Plain`](trait@Plain) for a `#[repr(C)]` struct of plain fields, checked at compile
    /// time (see the trait).
    pub use multiprocess_derive::Plain;
    pub use pool::{
        soft_time_limit_exceeded, AsyncResult, Completions, IMap, IMapUnordered, MapResult, Pool,
        PoolBuilder,
    };
    pub use process::{
        active_children, current_process, get_panic_output, parent_pid, parent_process,
        set_panic_output, spawn, JoinHandle, PanicOutput, ParentProcess, Process, ProcessHandle,
        ProcessInfo, Run, Target,
    };
    pub use queue::{JoinableQueue, LifoQueue, PriorityQueue, Queue, SimpleQueue};
    pub use shared::{Array, ArrayGuard, Plain, RawArray, RawValue, Value};
    pub use shareable_list::ShareableList;
    pub use shared_memory::SharedMemory;
    pub use store::{Dict, List};
    pub use sync::{
        Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, RLock, RLockGuard, Semaphore,
    };
}

/// The README's code runs as a doc test, so the tour never goes stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The crate's own README (the one crates.io shows) is checked the same way.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct CrateReadmeDoctests;
