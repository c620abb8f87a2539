//! The lazy map iterators of a pool: [`IMap`] (results in input order) and [`IMapUnordered`]
//! (results as their chunks finish), Python's `Pool.imap` and `Pool.imap_unordered`. The same
//! two types serve the local pool and the cluster's: only the [`ChunkFeed`] that sends their
//! chunks differs.
//!
//! Each `next` first lets the feed top the window of chunks in flight up from the input (so an
//! endless input is read lazily), then waits for the chunk it needs: the oldest (`IMap`), or
//! whichever finishes first, named by its finisher on a channel (`IMapUnordered`). A live feed
//! counts as an open iterator of its pool, so a closed pool keeps serving it until the
//! iterator is dropped.
//!
//! The input iterator is kept as it is (a type parameter of the iterators, not boxed), and the
//! feed reaches it through a plain function pointer: an `IMap` is `Send` exactly when its input
//! is, and an input that is not `Send` (one holding an `Rc`, a locked stdin) still works.

use std::collections::{HashMap, VecDeque};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::result::{Finisher, Slot};
use super::{AsyncResult, HoldOpen, Pool};
use crate::error::{Error, Result};

/// Where an `imap`'s chunks go: sends more of the input `I` when the window has room.
pub(crate) trait ChunkFeed<I> {
    /// With `in_flight` chunks unfinished, sends the next chunks of `items` as the window
    /// allows, the k-th (from 0, per call) with `finisher(k)`. `Ok(None)`: the input is
    /// exhausted. An error is the first chunk that could not be sent; nothing follows it.
    fn send(
        &mut self,
        items: &mut I,
        in_flight: usize,
        finisher: &mut dyn FnMut(usize) -> Option<Finisher>,
    ) -> Result<Option<Vec<Arc<Slot>>>>;
}

/// How many chunks a local `imap` keeps in flight: enough to keep every worker busy while
/// results travel back, bounded so that an endless input is read lazily.
const IMAP_CHUNKS_PER_WORKER: usize = 64;

/// Submits the next chunk (of at most the given size) of the input to a local pool, or says
/// the input is exhausted. A function pointer (the target and the item type fixed in it), so
/// a feed is `Send` whatever the input.
pub(super) type Submitter<I> =
    fn(&Pool, &mut I, usize, Option<Finisher>) -> Option<Result<Arc<Slot>>>;

/// The feed of a local pool's `imap`: one chunk at a time into the pool's queue.
pub(super) struct LocalFeed<'p, I> {
    pool: &'p Pool,
    /// A live feed counts as an open iterator of its pool.
    _open: HoldOpen<'p>,
    submit: Submitter<I>,
    chunksize: usize,
    /// A chunk that could not be sent after others were: reported on the next call.
    failed: Option<Error>,
}

impl<'p, I> LocalFeed<'p, I> {
    /// A feed of chunks of `chunksize` items; counts as an open iterator of `pool` until
    /// dropped.
    pub(super) fn new(pool: &'p Pool, submit: Submitter<I>, chunksize: usize) -> Self {
        LocalFeed {
            pool,
            _open: HoldOpen::new(pool),
            submit,
            chunksize: chunksize.max(1),
            failed: None,
        }
    }
}

impl<I> ChunkFeed<I> for LocalFeed<'_, I> {
    fn send(
        &mut self,
        items: &mut I,
        in_flight: usize,
        finisher: &mut dyn FnMut(usize) -> Option<Finisher>,
    ) -> Result<Option<Vec<Arc<Slot>>>> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let window = self.pool.inner.processes * IMAP_CHUNKS_PER_WORKER;
        let mut sent = Vec::new();
        while in_flight + sent.len() < window {
            match (self.submit)(self.pool, items, self.chunksize, finisher(sent.len())) {
                Some(Ok(slot)) => sent.push(slot),
                Some(Err(e)) if sent.is_empty() => return Err(e),
                Some(Err(e)) => {
                    self.failed = Some(e); // after the chunks before it
                    break;
                }
                None if sent.is_empty() => return Ok(None),
                None => break,
            }
        }
        Ok(Some(sent))
    }
}

/// A feed as the iterators hold it: `Send` whatever the input (the input is held beside it).
pub(crate) type BoxedFeed<'p, I> = Box<dyn ChunkFeed<I> + Send + 'p>;

/// The input side of an iterator: the input, its feed, and whether the input is used up.
struct Input<'p, I> {
    items: I,
    feed: BoxedFeed<'p, I>,
    exhausted: bool,
}

impl<'p, I> Input<'p, I> {
    fn new(items: I, feed: BoxedFeed<'p, I>) -> Self {
        Input {
            items,
            feed,
            exhausted: false,
        }
    }

    /// What an iterator's `Debug` shows: how far it is.
    fn debug(
        &self,
        f: &mut std::fmt::Formatter<'_>,
        name: &str,
        in_flight: usize,
        ready: usize,
    ) -> std::fmt::Result {
        f.debug_struct(name)
            .field("chunks_in_flight", &in_flight)
            .field("results_ready", &ready)
            .field("input_exhausted", &self.exhausted)
            .finish()
    }

    /// Lets the feed send more; after an error or the end of the input, sends nothing more
    /// (what is in flight still comes).
    fn top_up(
        &mut self,
        in_flight: usize,
        finisher: &mut dyn FnMut(usize) -> Option<Finisher>,
    ) -> Result<Vec<Arc<Slot>>> {
        if self.exhausted {
            return Ok(Vec::new());
        }
        match self.feed.send(&mut self.items, in_flight, finisher) {
            Ok(Some(sent)) => Ok(sent),
            Ok(None) => {
                self.exhausted = true;
                Ok(Vec::new())
            }
            Err(e) => {
                self.exhausted = true;
                Err(e)
            }
        }
    }
}

/// The iterator of [`Pool::imap`] (and of the cluster pool's), over results `R` of the input
/// iterator `I`. It is `Send` when `I` is, so it may be consumed on another thread; an input
/// that is not `Send` (here one holding an `Rc`) works too, its iterator staying on its thread:
///
/// ```no_run
/// use std::rc::Rc;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     let pool = multiprocess::Pool::new(2)?;
///     let there = pool.imap(square, 0..3u64, 1);
///     let squares = std::thread::scope(|s| s.spawn(move || there.sum::<multiprocess::Result<u64>>()).join());
///     assert_eq!(squares.unwrap()?, 5);
///
///     let offset = Rc::new(10);
///     let here = pool.imap(square, (0..3u64).map(move |x| x + *offset), 1);
///     assert_eq!(here.collect::<multiprocess::Result<Vec<_>>>()?, [100, 121, 144]);
///     Ok(())
/// }
/// ```
///
/// Such an iterator cannot cross to another thread:
///
/// ```compile_fail,E0277
/// # fn square(x: u64) -> u64 { x * x }
/// # fn main() -> multiprocess::Result<()> {
/// let pool = multiprocess::Pool::new(2)?;
/// let offset = std::rc::Rc::new(10);
/// let here = pool.imap(square, (0..3u64).map(move |x| x + *offset), 1);
/// std::thread::scope(|s| s.spawn(move || here.count()).join()).unwrap();
/// # Ok(()) }
/// ```
#[must_use = "iterators are lazy: no chunk is sent until `next` is called"]
pub struct IMap<'p, R, I> {
    input: Input<'p, I>,
    in_flight: VecDeque<AsyncResult<Vec<R>>>,
    ready: VecDeque<R>,
}

impl<R, I> std::fmt::Debug for IMap<'_, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.input
            .debug(f, "IMap", self.in_flight.len(), self.ready.len())
    }
}

impl<'p, R, I> IMap<'p, R, I> {
    /// An iterator over the chunks of `items` that `feed` sends.
    pub(crate) fn new(items: I, feed: BoxedFeed<'p, I>) -> Self {
        IMap {
            input: Input::new(items, feed),
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
        }
    }
}

impl<R: DeserializeOwned, I> IMap<'_, R, I> {
    fn fill(&mut self) -> Result<()> {
        let sent = self.input.top_up(self.in_flight.len(), &mut |_| None)?;
        self.in_flight
            .extend(sent.into_iter().map(AsyncResult::new));
        Ok(())
    }

    /// The next result, waiting at most `timeout` for it ([`Error::Timeout`] after that; the
    /// iterator can go on).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        if let Some(r) = self.ready.pop_front() {
            return Some(Ok(r));
        }
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        let head = self.in_flight.front()?;
        if !head.wait_timeout(timeout) {
            return Some(Err(Error::Timeout));
        }
        self.next()
    }
}

impl<R: DeserializeOwned, I> Iterator for IMap<'_, R, I> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(Ok(r));
            }
            if let Err(e) = self.fill() {
                return Some(Err(e));
            }
            let head = self.in_flight.pop_front()?;
            match head.get_list() {
                Ok(list) => self.ready.extend(list),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The iterator of [`Pool::imap_unordered`] (and of the cluster pool's), over results `R` of
/// the input iterator `I`; `Send` when `I` is, as [`IMap`].
#[must_use = "iterators are lazy: no chunk is sent until `next` is called"]
pub struct IMapUnordered<'p, R, I> {
    input: Input<'p, I>,
    in_flight: HashMap<u64, AsyncResult<Vec<R>>>,
    next_index: u64,
    done_tx: mpsc::Sender<u64>,
    /// Indices of finished chunks, in the order they finished.
    done: mpsc::Receiver<u64>,
    ready: VecDeque<R>,
}

impl<R, I> std::fmt::Debug for IMapUnordered<'_, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.input
            .debug(f, "IMapUnordered", self.in_flight.len(), self.ready.len())
    }
}

impl<'p, R, I> IMapUnordered<'p, R, I> {
    /// An iterator over the chunks of `items` that `feed` sends.
    pub(crate) fn new(items: I, feed: BoxedFeed<'p, I>) -> Self {
        let (done_tx, done) = mpsc::channel();
        IMapUnordered {
            input: Input::new(items, feed),
            in_flight: HashMap::new(),
            next_index: 0,
            done_tx,
            done,
            ready: VecDeque::new(),
        }
    }
}

impl<R: DeserializeOwned, I> IMapUnordered<'_, R, I> {
    fn fill(&mut self) -> Result<()> {
        let (first, tx) = (self.next_index, &self.done_tx);
        let sent = self.input.top_up(self.in_flight.len(), &mut |k| {
            let (index, tx) = (first + k as u64, tx.clone());
            let finisher: Finisher = Box::new(move |_| {
                let _ = tx.send(index);
            });
            Some(finisher)
        })?;
        for slot in sent {
            self.in_flight
                .insert(self.next_index, AsyncResult::new(slot));
            self.next_index += 1;
        }
        Ok(())
    }

    /// Takes the finished chunk `index` into `ready`, then gives the next result.
    fn take(&mut self, index: u64) -> Option<Result<R>> {
        let finished = self.in_flight.remove(&index)?;
        match finished.get_list() {
            Ok(list) => self.ready.extend(list),
            Err(e) => return Some(Err(e)),
        }
        self.next()
    }

    /// The next result to finish, waiting at most `timeout` for one ([`Error::Timeout`] after
    /// that; the iterator can go on).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        if let Some(r) = self.ready.pop_front() {
            return Some(Ok(r));
        }
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        if self.in_flight.is_empty() {
            return None;
        }
        match self.done.recv_timeout(timeout) {
            Ok(index) => self.take(index),
            Err(_) => Some(Err(Error::Timeout)),
        }
    }
}

impl<R: DeserializeOwned, I> Iterator for IMapUnordered<'_, R, I> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if let Some(r) = self.ready.pop_front() {
            return Some(Ok(r));
        }
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        if self.in_flight.is_empty() {
            return None;
        }
        let index = self.done.recv().ok()?;
        self.take(index)
    }
}
