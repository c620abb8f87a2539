//! Process pools: Python's `multiprocessing.Pool`, with workers that can crash or hang without
//! taking the pool down.
//!
//! A [`Pool`] keeps `processes` daemonic workers (`worker.rs`), run by a supervisor thread in
//! the parent (`supervisor.rs`). A submitted task is encoded at once (a value that cannot be
//! encoded is an error at the call), queued, handed to a worker over its pipe, and its outcome
//! lands in an [`AsyncResult`] after the callbacks ran (in the supervisor thread). A worker
//! killed by a signal, `abort` or an exit fails exactly the task it ran with
//! [`Error::WorkerLost`] and is replaced; a task past its time limit fails with
//! [`Error::TimeLimit`] and its worker is killed and replaced.
//!
//! ```no_run
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> multiprocess::Result<()> {
//!     multiprocess::init();
//!     let pool = multiprocess::Pool::new(4)?;
//!     assert_eq!(pool.apply(square, (7,))?, 49);
//!     assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
//!     let r = pool.apply_async(square, (8,))?;
//!     assert_eq!(r.get()?, 64);
//!     pool.close();
//!     pool.join()?;
//!     Ok(())
//! }
//! ```

mod completions;
mod imap;
mod result;
mod shared_fds;
mod supervisor;
mod worker;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use completions::Completions;
use imap::LocalFeed;
#[cfg(feature = "cluster")]
pub(crate) use imap::{BoxedFeed, ChunkFeed};
pub use imap::{IMap, IMapUnordered};
#[cfg(feature = "cluster")]
pub(crate) use result::decode_one;
pub(crate) use result::gather_finishers;
pub use result::{AsyncResult, MapResult};
pub(crate) use result::{Finisher, Outcome, Slot};
use shared_fds::{SharedFd, SharedFds};
#[cfg(feature = "cluster")]
pub(crate) use supervisor::ON_SUPERVISOR;
pub use worker::soft_time_limit_exceeded;

use crate::buffer::{Measured, Payload};
use crate::codec;
use crate::connection::{pipe_simplex, Connection};
use crate::context::{get_start_method, StartMethod};
use crate::error::{Error, Result};
use crate::process::target::{self, EntryFn, Target};
use crate::process::{get_panic_output, PanicOutput};

/// A task encoded, not yet queued.
struct Prepared {
    entry: i64,
    args: Payload,
    fds: Vec<SharedFd>,
    timeout: Option<Duration>,
    /// Where its outcome will land (holding the callbacks until then).
    slot: Arc<Slot>,
}

/// A task waiting for a worker.
pub(crate) struct Pending {
    id: u64,
    entry: i64,
    args: Payload,
    fds: Vec<SharedFd>,
    slot: Arc<Slot>,
    timeout: Option<Duration>,
}

/// What the caller's side and the supervisor share.
pub(crate) struct Inner {
    state: Mutex<State>,
    /// Wakes the supervisor (it sleeps on `wake_rx` among its workers).
    wake_tx: Connection,
    wake_rx: Connection,
    /// A wake-up message is on its way (see [`Inner::wake`]).
    wake_pending: std::sync::atomic::AtomicBool,
    processes: usize,
    start_method: StartMethod,
    panic_output: PanicOutput,
    task_timeout: Option<Duration>,
    soft_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    worker: worker::WorkerConfig,
    /// The descriptors of handles among pending tasks' arguments, one per open file.
    shared_fds: SharedFds,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Pending>,
    next_id: u64,
    closing: bool,
    terminated: bool,
    /// Why the pool cannot run tasks any more (workers that cannot start, a failed supervisor).
    broken: Option<String>,
    /// `imap` iterators still alive: after `close`, the pool keeps running for them.
    open_iterators: usize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the supervisor; one wake-up message at most until it looks, so a busy supervisor
    /// never makes submitters wait on a full wake-up pipe.
    fn wake(&self) {
        if !self
            .wake_pending
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let _ = self.wake_tx.send_bytes(&[]);
        }
    }
}

/// Options for a [`Pool`], as Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild)` and more.
///
/// ```no_run
/// use std::time::Duration;
/// fn setup(level: u8) { let _ = level; }
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     let pool = multiprocess::Pool::builder()
///         .processes(2)
///         .initializer(setup, (3,))?
///         .maxtasksperchild(100)
///         .task_timeout(Duration::from_secs(30))
///         .max_memory_per_worker(512 << 20)
///         .build()?;
///     # drop(pool);
///     Ok(())
/// }
/// ```
#[derive(Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    start_method: Option<StartMethod>,
    panic_output: Option<PanicOutput>,
    task_timeout: Option<Duration>,
    soft_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    worker: worker::WorkerConfig,
    /// The initializer's entry, checked at `build` like a task's.
    initializer_entry: Option<EntryFn>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("start_method", &self.start_method)
            .field("initializer", &self.worker.initializer.is_some())
            .field("maxtasksperchild", &self.worker.max_tasks)
            .field("max_memory_per_worker", &self.worker.max_memory)
            .field("task_timeout", &self.task_timeout)
            .field("soft_task_timeout", &self.soft_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    /// How many worker processes (default: [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// How workers are started (default: [`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// What a worker prints on stderr when a task panics (default: [`get_panic_output`] when
    /// the pool is built, one line). The task's caller receives [`Error::Panic`] either way.
    pub fn panic_output(mut self, output: PanicOutput) -> Self {
        self.panic_output = Some(output);
        self
    }

    /// A function each worker runs once, with `args`, before any task. The arguments may hold
    /// handles (a [`Queue`](crate::Queue), an [`Event`](crate::Event), ...): each worker gets
    /// its own, as with Python's `Pool(initializer=init, initargs=(queue,))`.
    pub fn initializer<F, Args>(mut self, f: F, args: Args) -> Result<Self>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
    {
        target::assert_zero_sized::<F>();
        let _ = f;
        let entry: EntryFn = target::run_discarding::<F, Args>;
        let (args, fds) = codec::encode_with_fds(&args)?;
        self.worker.initializer = Some(worker::Initializer {
            entry: target::entry_offset(entry),
            args,
            handles: worker::SharedHandles(Arc::new(fds)),
        });
        self.initializer_entry = Some(entry);
        Ok(self)
    }

    /// Replaces a worker after it ran this many tasks (Python's `maxtasksperchild`).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.worker.max_tasks = Some(n);
        self
    }

    /// Fails a task that runs longer than this with [`Error::TimeLimit`]; its worker is killed
    /// and replaced. [`Pool::apply_async_timeout`] sets one per task.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Tells a task that has run this long (SIGUSR1 to its worker) that it should wrap up:
    /// the task sees [`soft_time_limit_exceeded`] turn true and may return a value early
    /// (billiard's soft time limit). Combine with [`task_timeout`](Self::task_timeout) for a
    /// hard limit after it.
    pub fn soft_task_timeout(mut self, limit: Duration) -> Self {
        self.soft_timeout = Some(limit);
        self
    }

    /// Lets workers that have been idle this long exit (cleanly, not counted as crashes); the
    /// next task starts new ones (loky's reusable executor timeout).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Replaces a worker after a task that left it using more than `bytes` of memory (the
    /// task's result is still delivered).
    pub fn max_memory_per_worker(mut self, bytes: u64) -> Self {
        self.worker.max_memory = Some(bytes);
        self
    }

    /// Starts the pool.
    pub fn build(self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(Error::InvalidArgument(
                "a pool needs at least one process".into(),
            ));
        }
        let start_method = self.start_method.unwrap_or_else(get_start_method);
        if let (true, Some(entry)) = (start_method.reexecutes(), self.initializer_entry) {
            target::check_same_object(entry)?;
        }
        if self.worker.max_tasks == Some(0) {
            return Err(Error::InvalidArgument(
                "maxtasksperchild must be at least 1".into(),
            ));
        }
        let (wake_rx, wake_tx) = pipe_simplex()?;
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            wake_tx,
            wake_rx,
            wake_pending: Default::default(),
            shared_fds: SharedFds::default(),
            processes,
            start_method,
            panic_output: self.panic_output.unwrap_or_else(get_panic_output),
            task_timeout: self.task_timeout,
            soft_timeout: self.soft_timeout,
            idle_timeout: self.idle_timeout,
            worker: self.worker,
        });
        let for_thread = Arc::clone(&inner);
        let supervisor = std::thread::Builder::new()
            .name("multiprocess-pool".into())
            .spawn(move || supervisor::run(for_thread))?;
        Ok(Pool {
            inner,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }
}

/// A pool of worker processes, as Python's `multiprocessing.Pool`. Dropping it terminates the
/// workers (as leaving Python's `with Pool() as p:` does).
pub struct Pool {
    inner: Arc<Inner>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.inner.processes)
            .finish()
    }
}

impl Pool {
    /// A pool of `processes` workers, with the default start method.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// Options beyond the number of processes.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Encodes one task over a chunk of argument tuples; nothing is queued yet.
    fn prepare<F, Args>(
        &self,
        chunk: &[Args],
        timeout: Option<Duration>,
        finisher: Option<Finisher>,
    ) -> Result<Prepared>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let entry = self.chunk_entry::<F, Args>()?;
        let (args, fds) = Payload::encode_with_fds(chunk)?;
        check_handles(fds.len())?;
        Ok(self.prepared(entry, args, fds, timeout, finisher))
    }

    /// The entry offset of the task running `F` over a chunk of `Args`.
    fn chunk_entry<F, Args>(&self) -> Result<i64>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let entry: EntryFn = target::run_chunk::<F, Args>;
        if self.inner.start_method.reexecutes() {
            target::check_same_object(entry)?;
        }
        Ok(target::entry_offset(entry))
    }

    fn prepared(
        &self,
        entry: i64,
        args: Payload,
        fds: Vec<std::os::fd::OwnedFd>,
        timeout: Option<Duration>,
        finisher: Option<Finisher>,
    ) -> Prepared {
        Prepared {
            entry,
            args,
            fds: self.inner.shared_fds.share(fds),
            timeout: timeout.or(self.inner.task_timeout),
            slot: Slot::new(finisher),
        }
    }

    /// Queues the chunks of a `map`, each with its finisher. Every chunk is measured first (a
    /// value that cannot be encoded fails the call and nothing runs; a small chunk is encoded
    /// by that, a large one only counted); then each large one is written and queued in turn,
    /// so the workers start on the first chunks while later ones are written, and a large
    /// chunk's shared memory can be one that an earlier chunk has given back (warm pages, which
    /// cost a fraction of fresh ones: see BENCHMARKS.md, `pool-bytes`). Only a failure to
    /// write a chunk that measured well (no memory left, say) leaves the chunks before it
    /// queued.
    fn submit_chunks<F, Args>(
        &self,
        chunks: &[Vec<Args>],
        finishers: Vec<Option<Finisher>>,
    ) -> Result<Vec<Arc<Slot>>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let entry = self.chunk_entry::<F, Args>()?;
        let mut measured = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let m = Payload::measure_with_fds(chunk)?;
            check_handles(m.handles())?;
            measured.push(m);
        }
        // Holds the pool open until the last chunk is queued (a `close` meanwhile must not let
        // the workers finish before it).
        let _open = HoldOpen::new(self);
        let mut slots = Vec::with_capacity(chunks.len());
        // Small chunks (encoded already) go in batches, each closed by a large chunk once it is
        // written: a map of small items is queued at once, as before, in one batch.
        let mut batch = Vec::new();
        for ((chunk, m), finisher) in chunks.iter().zip(measured).zip(finishers) {
            let (args, fds, large) = match m {
                Measured::Done(args, fds) => (args, fds, false),
                Measured::Large { len, .. } => {
                    let (args, fds) = Payload::write_large_with_fds(chunk, len)?;
                    (args, fds, true)
                }
            };
            batch.push(self.prepared(entry, args, fds, None, finisher));
            if large {
                slots.extend(self.enqueue(std::mem::take(&mut batch), !slots.is_empty())?);
            }
        }
        if !batch.is_empty() {
            slots.extend(self.enqueue(batch, !slots.is_empty())?);
        }
        Ok(slots)
    }

    /// Queues encoded tasks, all or none. Tasks of an `imap` that began before `close` are
    /// still accepted after it (`from_iterator`), as in Python.
    fn enqueue(&self, tasks: Vec<Prepared>, from_iterator: bool) -> Result<Vec<Arc<Slot>>> {
        let mut slots = Vec::with_capacity(tasks.len());
        {
            let mut state = self.inner.lock();
            if let Some(why) = &state.broken {
                return Err(Error::PoolBroken(why.clone()));
            }
            if state.terminated {
                return Err(Error::PoolTerminated);
            }
            if state.closing && !from_iterator {
                return Err(Error::PoolClosed);
            }
            for t in tasks {
                state.next_id += 1;
                slots.push(Arc::clone(&t.slot));
                let id = state.next_id;
                state.pending.push_back(Pending {
                    id,
                    entry: t.entry,
                    args: t.args,
                    fds: t.fds,
                    slot: t.slot,
                    timeout: t.timeout,
                });
            }
        }
        self.inner.wake();
        Ok(slots)
    }

    /// Encodes and queues one task (`from_iterator`: the next chunk of an `imap`).
    fn submit<F, Args>(
        &self,
        chunk: &[Args],
        timeout: Option<Duration>,
        finisher: Option<Finisher>,
        from_iterator: bool,
    ) -> Result<Arc<Slot>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let task = self.prepare::<F, Args>(chunk, timeout, finisher)?;
        let slot = Arc::clone(&task.slot);
        self.enqueue(vec![task], from_iterator)?;
        Ok(slot)
    }

    /// Runs `f(args...)` in a worker and returns its result (Python's `apply`).
    pub fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        self.apply_async(f, args)?.get()
    }

    /// Submits `f(args...)` and returns at once with its [`AsyncResult`].
    pub fn apply_async<F, Args>(&self, f: F, args: Args) -> Result<AsyncResult<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        Ok(AsyncResult::new(self.submit::<F, Args>(
            &[args],
            None,
            None,
            false,
        )?))
    }

    /// As [`apply_async`](Self::apply_async), with a time limit for this task.
    pub fn apply_async_timeout<F, Args>(
        &self,
        f: F,
        args: Args,
        limit: Duration,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        Ok(AsyncResult::new(self.submit::<F, Args>(
            &[args],
            Some(limit),
            None,
            false,
        )?))
    }

    /// As [`apply_async`](Self::apply_async), with Python's `callback` and `error_callback`:
    /// called in the parent (in the pool's supervisor thread), exactly once per task, before
    /// the result is ready. A callback that panics is reported and stops nothing.
    pub fn apply_async_with<F, Args, C, E>(
        &self,
        f: F,
        args: Args,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
        C: FnOnce(F::Output) + Send + 'static,
        E: FnOnce(Error) + Send + 'static,
    {
        let _ = f;
        let finisher: Finisher = Box::new(move |outcome: &Outcome| {
            match outcome
                .as_ref()
                .map_err(Error::clone_for_caller)
                .and_then(|bytes| result::decode_one::<F::Output>(bytes))
            {
                Ok(value) => callback(value),
                Err(err) => error_callback(err),
            }
        });
        Ok(AsyncResult::new(self.submit::<F, Args>(
            &[args],
            None,
            Some(finisher),
            false,
        )?))
    }

    /// Applies `f` to every item, in chunks of `chunksize`, and returns the results in order.
    pub fn map<F, A, I>(&self, f: F, items: I) -> Result<Vec<F::Output>>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
        F::Output: Serialize + DeserializeOwned,
    {
        self.map_chunked(f, items, 1)
    }

    /// [`map`](Self::map) with Python's `chunksize`: items go to workers this many at a time.
    pub fn map_chunked<F, A, I>(&self, f: F, items: I, chunksize: usize) -> Result<Vec<F::Output>>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
        F::Output: Serialize + DeserializeOwned,
    {
        self.map_async(f, items, chunksize)?.get()
    }

    /// Submits every item at once (in chunks) and returns a [`MapResult`].
    pub fn map_async<F, A, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<MapResult<F::Output>>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
        F::Output: Serialize + DeserializeOwned,
    {
        self.starmap_async(f, items.into_iter().map(|a| (a,)), chunksize)
    }

    /// As [`map`](Self::map) for functions of several arguments: each item is a tuple of them.
    pub fn starmap<F, Args, I>(&self, f: F, items: I) -> Result<Vec<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        I: IntoIterator<Item = Args>,
        F::Output: Serialize + DeserializeOwned,
    {
        self.starmap_async(f, items, 1)?.get()
    }

    /// As [`map_async`](Self::map_async), with Python's `callback` (called once with every
    /// result, in order) and `error_callback` (called once with the first error), in the
    /// parent, before the [`MapResult`] is ready. For an empty input the callback runs at once.
    pub fn map_async_with<F, A, I, C, E>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
        callback: C,
        error_callback: E,
    ) -> Result<MapResult<F::Output>>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
        F::Output: Serialize + DeserializeOwned,
        C: FnOnce(Vec<F::Output>) + Send + 'static,
        E: FnOnce(Error) + Send + 'static,
    {
        let _ = f;
        let chunksize = chunksize.max(1);
        let mut items = items.into_iter().map(|a| (a,)).peekable();
        let mut chunks: Vec<Vec<(A,)>> = Vec::new();
        while items.peek().is_some() {
            chunks.push(items.by_ref().take(chunksize).collect());
        }
        if chunks.is_empty() {
            callback(Vec::new());
            return Ok(MapResult::new(Vec::new()));
        }
        let finishers = gather_finishers::<F::Output, C, E>(chunks.len(), callback, error_callback);
        let slots =
            self.submit_chunks::<F, (A,)>(&chunks, finishers.into_iter().map(Some).collect())?;
        Ok(MapResult::new(slots))
    }

    /// As [`map_async`](Self::map_async) over tuples of arguments.
    pub fn starmap_async<F, Args, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<MapResult<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        I: IntoIterator<Item = Args>,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        let chunksize = chunksize.max(1);
        let mut chunks: Vec<Vec<Args>> = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            chunks.push(items.by_ref().take(chunksize).collect());
        }
        let finishers = chunks.iter().map(|_| None).collect();
        let slots = self.submit_chunks::<F, Args>(&chunks, finishers)?;
        Ok(MapResult::new(slots))
    }

    /// Applies `f` to the items lazily, with a bounded number of chunks in flight, yielding
    /// results in order (Python's `imap`). An endless iterator works. The [`IMap`] is `Send`
    /// when the input iterator is: then it may be consumed on another thread (a scoped one, as
    /// it borrows the pool).
    pub fn imap<'p, F, A, I>(
        &'p self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMap<'p, F::Output, I::IntoIter>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned + 'p,
        I: IntoIterator<Item = A> + 'p,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        IMap::new(
            items.into_iter(),
            self.local_feed::<F, A, I::IntoIter>(chunksize),
        )
    }

    /// As [`imap`](Self::imap), yielding each result as soon as its chunk is done, in no
    /// particular order (Python's `imap_unordered`).
    pub fn imap_unordered<'p, F, A, I>(
        &'p self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMapUnordered<'p, F::Output, I::IntoIter>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned + 'p,
        I: IntoIterator<Item = A> + 'p,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        IMapUnordered::new(
            items.into_iter(),
            self.local_feed::<F, A, I::IntoIter>(chunksize),
        )
    }

    /// The feed of an `imap` over the input `I`: submits it chunk by chunk, on demand.
    fn local_feed<'p, F, A, I>(&'p self, chunksize: usize) -> imap::BoxedFeed<'p, I>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned + 'p,
        I: Iterator<Item = A> + 'p,
        F::Output: Serialize + DeserializeOwned,
    {
        Box::new(LocalFeed::new(
            self,
            Self::submit_next::<F, A, I>,
            chunksize,
        ))
    }

    /// Submits the next chunk of `items` (at most `chunksize` of them), or says they are
    /// used up: what the feed of an `imap` calls.
    fn submit_next<F, A, I>(
        &self,
        items: &mut I,
        chunksize: usize,
        finisher: Option<Finisher>,
    ) -> Option<Result<Arc<Slot>>>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        I: Iterator<Item = A>,
        F::Output: Serialize + DeserializeOwned,
    {
        let chunk: Vec<(A,)> = items.take(chunksize).map(|a| (a,)).collect();
        if chunk.is_empty() {
            return None;
        }
        Some(self.submit::<F, (A,)>(&chunk, None, finisher, true))
    }

    /// Queues a task that is already encoded (a chunk entry's offset and its encoded argument
    /// list, no handles) and calls `finisher` with its raw outcome: a cluster node runs the
    /// tasks it takes from the broker this way, so crashes, time limits and worker
    /// replacement are the local pool's.
    #[cfg(feature = "cluster")]
    pub(crate) fn submit_encoded(
        &self,
        entry: i64,
        args: Vec<u8>,
        timeout: Option<Duration>,
        finisher: Finisher,
    ) -> Result<()> {
        let task = Prepared {
            entry,
            args: Payload::Inline(Arc::new(args)),
            fds: Vec::new(),
            timeout: timeout.or(self.inner.task_timeout),
            slot: Slot::new(Some(finisher)),
        };
        self.enqueue(vec![task], false).map(drop)
    }

    /// Stops accepting tasks (a later submission fails with [`Error::PoolClosed`]); the
    /// workers exit once the queued ones are done.
    pub fn close(&self) {
        self.inner.lock().closing = true;
        self.inner.wake();
    }

    /// Kills the workers at once; unfinished tasks fail with [`Error::PoolTerminated`], as
    /// does any later submission.
    pub fn terminate(&self) {
        self.inner.lock().terminated = true;
        self.inner.wake();
    }

    /// Waits for the workers to exit, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate) ([`Error::PoolStillRunning`] otherwise, as in Python). After `close`, an
    /// `imap` iterator begun before it is still served: `join` also waits until it is used up
    /// or dropped.
    pub fn join(&self) -> Result<()> {
        {
            let state = self.inner.lock();
            if !state.closing && !state.terminated {
                return Err(Error::PoolStillRunning);
            }
        }
        if supervisor::ON_SUPERVISOR.with(|f| f.get()) {
            // Called from a callback (the pool dropped inside one): the supervisor is this
            // very thread, which returns to its loop and finishes by itself.
            return Ok(());
        }
        let handle = self
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        Ok(())
    }
}

/// Fails a task carrying more descriptors than one message can.
fn check_handles(n: usize) -> Result<()> {
    if n > crate::sys::MAX_FDS_PER_MESSAGE {
        return Err(Error::Encode(format!(
            "a task holds {n} OS handles; at most {} fit in one",
            crate::sys::MAX_FDS_PER_MESSAGE
        )));
    }
    Ok(())
}

/// Counts as an open iterator of a pool while it lives: a closed pool keeps its workers for
/// the tasks still to be queued by a call that began before `close`.
struct HoldOpen<'p>(&'p Pool);

impl<'p> HoldOpen<'p> {
    fn new(pool: &'p Pool) -> Self {
        pool.inner.lock().open_iterators += 1;
        HoldOpen(pool)
    }
}

impl Drop for HoldOpen<'_> {
    fn drop(&mut self) {
        let mut state = self.0.inner.lock();
        state.open_iterators = state.open_iterators.saturating_sub(1);
        drop(state);
        self.0.inner.wake();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.join();
    }
}
