//! [`Items`]: the iterator of the queues' and [`Connection`](crate::Connection)'s `iter()` and
//! `try_iter()`: each `next` is one `get` (or `recv`), and the iteration ends where the source
//! says there is no more.

use std::fmt;

use crate::error::{Error, Result};

/// The items of a queue, or the messages of a [`Connection`](crate::Connection), one `get`
/// (`recv`) per step; made by their `iter()` and `try_iter()` (and `for item in &queue`).
///
/// - `iter()` waits for each next item. It ends when the source is closed: a connection whose
///   other end is closed (once the messages still queued are read), a queue
///   [`shutdown`](crate::Queue::shutdown) by any process (once the items it held are taken), a
///   queue handle [`close`](crate::Queue::close)d in this process.
/// - `try_iter()` yields what is there now, and ends when nothing is (a later call may find
///   more), or as `iter()` does.
///
/// Any other error (an item that cannot be decoded, a failed read) is yielded once, and ends
/// the iteration.
///
/// ```
/// let q = multiprocess::Queue::<u32>::new()?;
/// for i in 0..3 {
///     q.put(i)?;
/// }
/// let got: Vec<u32> = q.try_iter().collect::<multiprocess::Result<_>>()?;
/// assert_eq!(got, [0, 1, 2]);
/// assert_eq!(q.try_iter().count(), 0);
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct Items<'a, T> {
    /// One `get` or `recv`.
    next: Box<dyn FnMut() -> Result<T> + 'a>,
    /// What the source's type is, for `Debug`.
    source: &'static str,
    /// `try_iter`: an empty source ends this round.
    now_only: bool,
    /// An error ended the iteration.
    done: bool,
}

impl<'a, T> Items<'a, T> {
    /// Items of `source` (its type's name), taken by `next`; `now_only` for `try_iter`.
    pub(crate) fn new(
        source: &'static str,
        now_only: bool,
        next: impl FnMut() -> Result<T> + 'a,
    ) -> Self {
        Items {
            next: Box::new(next),
            source,
            now_only,
            done: false,
        }
    }
}

impl<T> Iterator for Items<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        match (self.next)() {
            Ok(item) => Some(Ok(item)),
            Err(Error::Empty) if self.now_only => None,
            Err(Error::Closed | Error::ShutDown | Error::Eof) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<T> fmt::Debug for Items<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Items")
            .field("source", &self.source)
            .field("try_iter", &self.now_only)
            .field("done", &self.done)
            .finish()
    }
}
