//! The feed of a cluster pool's `imap` and `imap_unordered`: the iterators are the local
//! pool's ([`IMap`](crate::IMap), [`IMapUnordered`](crate::IMapUnordered)); only how their chunks
//! are sent differs.
//!
//! The feed keeps at most the pool's `imap_window` chunks in flight and tops the window up
//! only once it is half empty, half a window at a time: those chunks go out in one submission
//! (one round trip to the broker) instead of one each, and an endless input is still read
//! lazily. The input is not held here but beside the feed, in the iterator: see
//! [`crate::pool`]'s `imap` module.

use std::sync::Arc;

use super::pool::Pool;
use crate::error::{Error, Result};
use crate::pool::{ChunkFeed, Finisher, Slot};

/// Encodes the next chunk (of at most the given size) of the input, or says it is exhausted. A
/// function pointer (the item type fixed in it), so a feed is `Send` whatever the input.
pub(super) type NextChunk<I> = fn(&mut I, usize) -> Option<Result<Vec<u8>>>;

/// The input side of a cluster `imap` over the input `I`: the pool, the entry, the encoder of
/// the next chunk.
pub(super) struct Feed<'p, I> {
    pool: &'p Pool,
    entry: Result<i64>,
    next: NextChunk<I>,
    chunksize: usize,
    /// An item that could not be encoded after others were: reported on the next call.
    failed: Option<Error>,
    /// The pool was already closed when the iterator began: it sends nothing.
    closed: bool,
}

impl<'p, I> Feed<'p, I> {
    /// A feed of chunks of `chunksize` items; counts as an open iterator of the pool until
    /// dropped.
    pub(super) fn new(
        pool: &'p Pool,
        entry: Result<i64>,
        next: NextChunk<I>,
        chunksize: usize,
    ) -> Self {
        let mut state = pool.client().lock();
        state.open_iterators += 1;
        let closed = state.closing;
        drop(state);
        Feed {
            pool,
            entry,
            next,
            chunksize: chunksize.max(1),
            failed: None,
            closed,
        }
    }
}

impl<I> ChunkFeed<I> for Feed<'_, I> {
    fn send(
        &mut self,
        items: &mut I,
        in_flight: usize,
        finisher: &mut dyn FnMut(usize) -> Option<Finisher>,
    ) -> Result<Option<Vec<Arc<Slot>>>> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.closed {
            // Only an iterator begun before `close` is still served, as in Python.
            return Err(Error::PoolClosed);
        }
        let window = self.pool.imap_window();
        if in_flight > window / 2 {
            return Ok(Some(Vec::new()));
        }
        let entry = match &self.entry {
            Ok(entry) => *entry,
            Err(e) => return Err(e.clone_for_caller()),
        };
        let mut tasks = Vec::new();
        while in_flight + tasks.len() < window {
            match (self.next)(items, self.chunksize) {
                Some(Ok(bytes)) => tasks.push((bytes, finisher(tasks.len()))),
                Some(Err(e)) if tasks.is_empty() => return Err(e),
                Some(Err(e)) => {
                    self.failed = Some(e); // after the chunks before it
                    break;
                }
                None => break,
            }
        }
        if tasks.is_empty() {
            return Ok(None);
        }
        self.pool.send_encoded(entry, tasks).map(Some)
    }
}

impl<I> Drop for Feed<'_, I> {
    fn drop(&mut self) {
        let client = self.pool.client();
        let mut state = client.lock();
        state.open_iterators = state.open_iterators.saturating_sub(1);
        drop(state);
        client.notify();
    }
}
