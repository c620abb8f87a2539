//! The lazy map iterators of a pool: [`IMap`] (results in input order) and [`IMapUnordered`]
//! (results as their chunks finish), Python's `Pool.imap` and `Pool.imap_unordered`.
//!
//! Both keep at most [`imap_window`] chunks in flight: each `next` first tops the window up
//! from the input (so an endless input is read lazily), then waits for the chunk it needs: the
//! oldest (`IMap`), or whichever finishes first, named by its finisher on a channel
//! (`IMapUnordered`). A live iterator counts in `open_iterators`, so a closed pool keeps its
//! workers until the iterator is dropped.

use std::collections::VecDeque;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{AsyncResult, Pool};
use crate::error::{Error, Result};

/// How many chunks an `imap` keeps in flight: enough to keep every worker busy while results
/// travel back, bounded so that an endless input is read lazily.
fn imap_window(pool: &Pool) -> usize {
    pool.inner.processes * IMAP_CHUNKS_PER_WORKER
}

/// See [`imap_window`].
const IMAP_CHUNKS_PER_WORKER: usize = 64;

/// Submits the next chunk of an [`IMap`], or says the input is exhausted.
type Submitter<'p, R> = Box<dyn FnMut(&Pool) -> Option<Result<AsyncResult<Vec<R>>>> + 'p>;

/// The iterator of [`Pool::imap`].
pub struct IMap<'p, R> {
    pool: &'p Pool,
    submit: Submitter<'p, R>,
    in_flight: VecDeque<AsyncResult<Vec<R>>>,
    ready: VecDeque<R>,
    exhausted: bool,
}

impl<'p, R> IMap<'p, R> {
    /// An iterator that submits its chunks with `submit`; counts as an open iterator of `pool`.
    pub(super) fn new(pool: &'p Pool, submit: Submitter<'p, R>) -> Self {
        pool.inner.lock().open_iterators += 1;
        IMap {
            pool,
            submit,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            exhausted: false,
        }
    }
}

impl<R: DeserializeOwned> IMap<'_, R> {
    /// How many chunks may be in flight at once.
    fn window(&self) -> usize {
        imap_window(self.pool)
    }

    fn fill(&mut self) -> Result<()> {
        while !self.exhausted && self.in_flight.len() < self.window() {
            match (self.submit)(self.pool) {
                Some(Ok(r)) => self.in_flight.push_back(r),
                Some(Err(e)) => {
                    self.exhausted = true; // what is in flight still comes; nothing more
                    return Err(e);
                }
                None => self.exhausted = true,
            }
        }
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

/// A chunk's result under the chunk's index.
pub(super) type Indexed<R> = (u64, AsyncResult<Vec<R>>);

/// Submits the next chunk of an [`IMapUnordered`] under its index.
type IndexedSubmitter<'p, R> = Box<dyn FnMut(&Pool) -> Option<Result<Indexed<R>>> + 'p>;

/// The iterator of [`Pool::imap_unordered`].
pub struct IMapUnordered<'p, R> {
    pool: &'p Pool,
    submit: IndexedSubmitter<'p, R>,
    in_flight: std::collections::HashMap<u64, AsyncResult<Vec<R>>>,
    /// Indices of finished chunks, in the order they finished.
    done: std::sync::mpsc::Receiver<u64>,
    ready: VecDeque<R>,
    exhausted: bool,
}

impl<'p, R> IMapUnordered<'p, R> {
    /// An iterator that submits its chunks with `submit` and learns from `done` which chunk
    /// finished; counts as an open iterator of `pool`.
    pub(super) fn new(
        pool: &'p Pool,
        submit: IndexedSubmitter<'p, R>,
        done: std::sync::mpsc::Receiver<u64>,
    ) -> Self {
        pool.inner.lock().open_iterators += 1;
        IMapUnordered {
            pool,
            submit,
            in_flight: std::collections::HashMap::new(),
            done,
            ready: VecDeque::new(),
            exhausted: false,
        }
    }
}

impl<R: DeserializeOwned> IMapUnordered<'_, R> {
    /// The next result to finish, waiting at most `timeout` for one ([`Error::Timeout`] after
    /// that; the iterator can go on).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        if let Some(r) = self.ready.pop_front() {
            return Some(Ok(r));
        }
        if self.in_flight.is_empty() && self.exhausted {
            return None;
        }
        if self.in_flight.is_empty() {
            return self.next();
        }
        match self.done.recv_timeout(timeout) {
            Ok(index) => {
                let finished = self.in_flight.remove(&index)?;
                match finished.get_list() {
                    Ok(list) => self.ready.extend(list),
                    Err(e) => return Some(Err(e)),
                }
                self.next()
            }
            Err(_) => Some(Err(Error::Timeout)),
        }
    }
}

impl<R: DeserializeOwned> Iterator for IMapUnordered<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(Ok(r));
            }
            let window = imap_window(self.pool);
            while !self.exhausted && self.in_flight.len() < window {
                match (self.submit)(self.pool) {
                    Some(Ok((index, r))) => {
                        self.in_flight.insert(index, r);
                    }
                    Some(Err(e)) => {
                        self.exhausted = true; // what is in flight still comes; nothing more
                        return Some(Err(e));
                    }
                    None => self.exhausted = true,
                }
            }
            if self.in_flight.is_empty() {
                return None;
            }
            let index = self.done.recv().ok()?;
            let finished = self.in_flight.remove(&index)?;
            match finished.get_list() {
                Ok(list) => self.ready.extend(list),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// An `imap` iterator that goes away lets a closed pool finish.
fn iterator_dropped(pool: &Pool) {
    let mut state = pool.inner.lock();
    state.open_iterators = state.open_iterators.saturating_sub(1);
    drop(state);
    pool.inner.wake();
}

impl<R> Drop for IMap<'_, R> {
    fn drop(&mut self) {
        iterator_dropped(self.pool);
    }
}

impl<R> Drop for IMapUnordered<'_, R> {
    fn drop(&mut self) {
        iterator_dropped(self.pool);
    }
}
