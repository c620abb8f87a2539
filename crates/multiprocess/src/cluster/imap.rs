//! The lazy map iterators of a cluster [`Pool`]: [`IMap`] (results in input order) and
//! [`IMapUnordered`] (results as their chunks finish), as the local pool's.
//!
//! Both keep at most the pool's `imap_window` chunks in flight, and top the window up only
//! once it is half empty, half a window at a time: the chunks go out in one submission (one
//! round trip to the broker) instead of one each, and an endless input is still read lazily.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::pool::Pool;
use crate::error::{Error, Result};
use crate::pool::{AsyncResult, Finisher, Slot};

/// Encodes the next chunk of the input, or says it is exhausted.
type NextChunk<'p> = Box<dyn FnMut() -> Option<Result<Vec<u8>>> + 'p>;

/// The input side of an `imap`: the pool, the entry, the encoder of the next chunk.
pub(super) struct Feed<'p> {
    pool: &'p Pool,
    entry: Result<i64>,
    next: NextChunk<'p>,
    exhausted: bool,
    /// An item that could not be encoded: reported after the chunks before it.
    failed: Option<Error>,
}

impl<'p> Feed<'p> {
    /// A feed; counts as an open iterator of the pool until dropped.
    pub(super) fn new(pool: &'p Pool, entry: Result<i64>, next: NextChunk<'p>) -> Self {
        pool.client().lock().open_iterators += 1;
        Feed {
            pool,
            entry,
            next,
            exhausted: false,
            failed: None,
        }
    }

    /// Tops up `in_flight` chunks to the window once half of it is free: encodes and sends
    /// the next chunks in one submission, each with `finisher(k)` (k counts from 0 per call).
    fn top_up(
        &mut self,
        in_flight: usize,
        mut finisher: impl FnMut(usize) -> Option<Finisher>,
    ) -> Result<Vec<Arc<Slot>>> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let window = self.pool.imap_window();
        if self.exhausted || in_flight > window / 2 {
            return Ok(Vec::new());
        }
        let entry = match &self.entry {
            Ok(entry) => *entry,
            Err(e) => {
                self.exhausted = true;
                return Err(e.clone_for_caller());
            }
        };
        let mut tasks = Vec::new();
        while tasks.len() < window - in_flight {
            match (self.next)() {
                Some(Ok(bytes)) => tasks.push((bytes, finisher(tasks.len()))),
                Some(Err(e)) => {
                    self.exhausted = true; // what is in flight still comes; nothing more
                    self.failed = Some(e);
                    break;
                }
                None => {
                    self.exhausted = true;
                    break;
                }
            }
        }
        if tasks.is_empty() {
            return self.failed.take().map_or(Ok(Vec::new()), Err);
        }
        self.pool.send_encoded(entry, tasks).inspect_err(|_| {
            self.exhausted = true;
        })
    }
}

impl Drop for Feed<'_> {
    fn drop(&mut self) {
        let client = self.pool.client();
        let mut state = client.lock();
        state.open_iterators = state.open_iterators.saturating_sub(1);
        drop(state);
        client.notify();
    }
}

/// The iterator of [`Pool::imap`].
pub struct IMap<'p, R> {
    feed: Feed<'p>,
    in_flight: VecDeque<AsyncResult<Vec<R>>>,
    ready: VecDeque<R>,
}

impl<'p, R: DeserializeOwned> IMap<'p, R> {
    pub(super) fn new(feed: Feed<'p>) -> Self {
        IMap {
            feed,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
        }
    }

    fn fill(&mut self) -> Result<()> {
        let sent = self.feed.top_up(self.in_flight.len(), |_| None)?;
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

impl<R: DeserializeOwned> Iterator for IMap<'_, R> {
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

/// The iterator of [`Pool::imap_unordered`].
pub struct IMapUnordered<'p, R> {
    feed: Feed<'p>,
    in_flight: HashMap<u64, AsyncResult<Vec<R>>>,
    next_index: u64,
    done_tx: mpsc::Sender<u64>,
    /// Indices of finished chunks, in the order they finished.
    done: mpsc::Receiver<u64>,
    ready: VecDeque<R>,
}

impl<'p, R: DeserializeOwned> IMapUnordered<'p, R> {
    pub(super) fn new(feed: Feed<'p>) -> Self {
        let (done_tx, done) = mpsc::channel();
        IMapUnordered {
            feed,
            in_flight: HashMap::new(),
            next_index: 0,
            done_tx,
            done,
            ready: VecDeque::new(),
        }
    }

    fn fill(&mut self) -> Result<()> {
        let first = self.next_index;
        let tx = &self.done_tx;
        let sent = self.feed.top_up(self.in_flight.len(), |k| {
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

    /// Takes the finished chunk `index` into `ready`.
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

impl<R: DeserializeOwned> Iterator for IMapUnordered<'_, R> {
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
