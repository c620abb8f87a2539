//! [`Completions`]: the results of a pool's tasks as one stream, in the order the tasks finish
//! (Python's `concurrent.futures.as_completed`, for a loop that reacts to each result).
//!
//! Each task is submitted with a function that wraps its result (a value, or the error that
//! ended it) into the stream's item type, so tasks of different kinds, returning different
//! types, share one stream. The wrapper runs in the pool's supervisor thread when the task
//! ends (as an `apply_async_with` callback would) and sends the item into a channel; the
//! stream counts the tasks not yet received, so it knows when it has seen them all.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::result::{self, Finisher, Outcome};
use super::Pool;
use crate::error::{Error, Result};
use crate::process::target::Target;

/// The results of tasks submitted through it, in the order they finish, each wrapped into a
/// `T`. Every task delivers exactly one item: its result, or the error that ended it (a
/// worker lost, a time limit, the pool terminated).
///
/// ```no_run
/// use multiprocess::{Completions, Pool};
///
/// fn square(x: u64) -> u64 { x * x }
/// fn shout(s: String) -> String { s.to_uppercase() }
///
/// /// What finished: the tasks' kinds, with what they were given.
/// enum Done {
///     Square(u64, multiprocess::Result<u64>),
///     Shout(multiprocess::Result<String>),
/// }
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     let pool = Pool::new(2)?;
///     let mut done = Completions::new();
///     for x in 1..=3 {
///         done.apply_async(&pool, square, (x,), move |r| Done::Square(x, r))?;
///     }
///     done.apply_async(&pool, shout, ("hi".to_string(),), Done::Shout)?;
///     let mut sum = 0;
///     for item in &mut done {
///         match item {
///             Done::Square(x, r) => sum += r? - x,
///             Done::Shout(r) => assert_eq!(r?, "HI"),
///         }
///     }
///     assert_eq!((sum, done.pending()), (8, 0));
///     Ok(())
/// }
/// ```
pub struct Completions<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    /// Tasks submitted whose item has not been received yet.
    pending: usize,
}

impl<T> std::fmt::Debug for Completions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completions")
            .field("pending", &self.pending)
            .finish()
    }
}

impl<T: Send + 'static> Default for Completions<T> {
    fn default() -> Self {
        Completions::new()
    }
}

impl<T: Send + 'static> Completions<T> {
    /// An empty stream.
    pub fn new() -> Completions<T> {
        let (tx, rx) = channel();
        Completions { tx, rx, pending: 0 }
    }

    /// Submits `f(args...)` to `pool`; once it ends, `wrap` turns its result into the
    /// stream's next item. An error here (the pool closed or terminated, arguments that
    /// cannot be encoded) means nothing was submitted and no item will come for it.
    pub fn apply_async<F, Args, W>(&mut self, pool: &Pool, f: F, args: Args, wrap: W) -> Result<()>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
        W: FnOnce(Result<F::Output>) -> T + Send + 'static,
    {
        let _ = f;
        let tx = self.tx.clone();
        let finisher: Finisher = Box::new(move |outcome: &Outcome| {
            let value = outcome
                .as_ref()
                .map_err(Error::clone_for_caller)
                .and_then(|bytes| result::decode_one::<F::Output>(bytes));
            // The receiving end may be gone (the stream dropped): nobody wants the item.
            let _ = tx.send(wrap(value));
        });
        pool.submit::<F, Args>(&[args], None, Some(finisher), false)?;
        self.pending += 1;
        Ok(())
    }

    /// How many submitted tasks have not been received yet (running, queued, or finished
    /// and waiting in the stream).
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The next item, waiting up to `timeout` for a task to finish; `None` if none did in
    /// time, or if no task is pending.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<T> {
        if self.pending == 0 {
            return None;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(item) => Some(self.received(item)),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => unreachable!("the stream holds a sender"),
        }
    }

    /// The next item if a task has finished already, without waiting.
    pub fn try_next(&mut self) -> Option<T> {
        let item = self.rx.try_recv().ok()?;
        Some(self.received(item))
    }

    fn received(&mut self, item: T) -> T {
        self.pending -= 1;
        item
    }
}

/// Waits for each task in turn; ends once every task submitted so far has been received.
impl<T: Send + 'static> Iterator for Completions<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.pending == 0 {
            return None;
        }
        let item = self.rx.recv().ok()?;
        Some(self.received(item))
    }
}
