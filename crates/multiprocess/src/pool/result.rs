//! [`AsyncResult`]: the result of a task submitted to a pool, set once by the supervisor; and
//! [`MapResult`], the results of a map's chunk tasks together, with the gathering of their
//! callbacks. (The lazy map iterators are in `imap.rs`.)
//!
//! Both are also [`Future`]s, with no runtime behind them: a poll that finds the outcome
//! missing leaves its [`Waker`] in the slot, and the thread that sets the outcome (the pool's
//! supervisor) wakes it. So `pool.apply_async(f, args)?.await` works under tokio, async-std or
//! any `block_on`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::buffer::Payload;
use crate::codec;
use crate::error::{Error, Result};

/// What a finished task left: its encoded result (a list, one per item of its chunk), or why
/// it failed.
pub(crate) type Outcome = std::result::Result<Payload, Error>;

/// Called by the supervisor when the task ends, before the result becomes ready.
pub(crate) type Finisher = Box<dyn FnOnce(&Outcome) + Send>;

/// The shared slot a task's outcome lands in.
pub(crate) struct Slot {
    /// Set (after `outcome`) once the outcome is there: lets a waiter spin without the lock.
    done: AtomicBool,
    outcome: Mutex<Filled>,
    ready: Condvar,
    /// Threads asleep on `ready` (changed and read with `outcome` locked): without any, the
    /// outcome is set without a wake-up call.
    sleepers: AtomicUsize,
    finisher: Mutex<Option<Finisher>>,
}

/// What a slot's lock guards: the outcome, and the tasks polling for it until it comes.
#[derive(Default)]
struct Filled {
    outcome: Option<Outcome>,
    /// The wakers of futures polled before the outcome was there (one per clone polled).
    wakers: Vec<Waker>,
}

impl Slot {
    pub(crate) fn new(finisher: Option<Finisher>) -> Arc<Slot> {
        Arc::new(Slot {
            done: AtomicBool::new(false),
            outcome: Mutex::new(Filled::default()),
            ready: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            finisher: Mutex::new(finisher),
        })
    }

    /// Sets the outcome once: runs the callbacks first (a panicking one is reported, never
    /// stops anything), then makes the result ready.
    pub(crate) fn set(&self, outcome: Outcome) {
        let finisher = self
            .finisher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(f) = finisher {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&outcome)));
            if run.is_err() {
                use std::io::Write;
                // Never panic here (stderr may be a closed pipe): the supervisor must go on.
                let _ = writeln!(
                    std::io::stderr(),
                    "multiprocess: a pool callback panicked; later results go on"
                );
            }
        }
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if slot.outcome.is_none() {
            slot.outcome = Some(outcome);
            self.done.store(true, Ordering::Release);
            if self.sleepers.load(Ordering::Relaxed) > 0 {
                self.ready.notify_all();
            }
            let wakers = std::mem::take(&mut slot.wakers);
            drop(slot);
            // Woken without the lock held: a waker may poll at once, on this very thread.
            wakers.into_iter().for_each(Waker::wake);
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// What `look` makes of the outcome if it is there; otherwise leaves `waker` to be woken
    /// when it is set.
    fn poll_with<T>(&self, waker: &Waker, look: impl FnOnce(&Outcome) -> T) -> Poll<T> {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        match slot.outcome.as_ref() {
            Some(outcome) => Poll::Ready(look(outcome)),
            None => {
                if !slot.wakers.iter().any(|w| w.will_wake(waker)) {
                    slot.wakers.push(waker.clone());
                }
                Poll::Pending
            }
        }
    }

    /// Waits up to `timeout` (`None`: no limit) and clones the outcome if it is there. On the
    /// supervisor thread (inside a callback) it only looks: waiting there would wait for the
    /// very thread that delivers results.
    fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        let timeout = if super::supervisor::ON_SUPERVISOR.with(|f| f.get()) {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let deadline = timeout.and_then(crate::sys::deadline_after);
        if timeout != Some(Duration::ZERO) {
            // Results of small tasks follow each other within microseconds: look a little
            // before sleeping on the condition variable (and being woken costs a switch).
            crate::shm::deque::spin_until(|| self.done.load(Ordering::Acquire));
        }
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = slot.outcome.as_ref() {
                return Some(clone_outcome(outcome));
            }
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                return None;
            }
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            slot = match left {
                None => self.ready.wait(slot).unwrap_or_else(|e| e.into_inner()),
                Some(left) => {
                    self.ready
                        .wait_timeout(slot, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A copy of an outcome for one more reader.
fn clone_outcome(outcome: &Outcome) -> Outcome {
    match outcome {
        Ok(bytes) => Ok(bytes.clone()),
        Err(e) => Err(e.clone_for_caller()),
    }
}

/// The result of [`Pool::apply_async`](super::Pool::apply_async), as Python's `AsyncResult`.
///
/// Besides the blocking [`get`](Self::get), it is a [`Future`] of the same result, woken by the
/// pool when the task ends (no runtime needed):
///
/// ```no_run
/// fn square(x: u64) -> u64 { x * x }
///
/// async fn twice(pool: &multiprocess::Pool) -> multiprocess::Result<u64> {
///     let (a, b) = (pool.apply_async(square, (3,))?, pool.apply_async(square, (4,))?);
///     Ok(a.await? + b.await?)
/// }
/// ```
#[must_use = "a task's result is lost unless waited for (`get`, `.await`); `drop` it if callbacks take it"]
pub struct AsyncResult<R> {
    slot: Arc<Slot>,
    /// Which item of the task's result list is ours (`None`: the whole list).
    _result: PhantomData<fn() -> R>,
}

impl<R> Clone for AsyncResult<R> {
    fn clone(&self) -> Self {
        AsyncResult {
            slot: Arc::clone(&self.slot),
            _result: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.slot.is_set())
            .finish()
    }
}

impl<R> AsyncResult<R> {
    pub(crate) fn new(slot: Arc<Slot>) -> Self {
        AsyncResult {
            slot,
            _result: PhantomData,
        }
    }

    /// Whether the task has finished (its callbacks have run).
    pub fn ready(&self) -> bool {
        self.slot.is_set()
    }

    /// Waits for the task to finish.
    pub fn wait(&self) {
        let _ = self.slot.wait(None);
    }

    /// Waits up to `timeout`; whether the task has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.slot.wait(Some(timeout)).is_some()
    }

    /// Waits for the task and decodes its whole result list as `T`.
    pub(crate) fn get_raw<T: DeserializeOwned>(&self) -> Result<T> {
        match self.slot.wait(None) {
            Some(outcome) => codec::decode(&outcome?),
            None => Err(Error::Timeout),
        }
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    /// Whether the task finished without an error; `None` while it runs.
    pub fn successful(&self) -> Option<bool> {
        self.slot
            .wait(Some(Duration::ZERO))
            .map(|o| o.is_ok_and(|b| decode_one::<R>(&b).is_ok()))
    }

    /// Waits for the task and returns its result, or the error that ended it.
    pub fn get(&self) -> Result<R> {
        match self.slot.wait(None) {
            Some(outcome) => decode_one(&outcome?),
            None => Err(Error::Timeout),
        }
    }

    /// As [`get`](Self::get), giving up with [`Error::Timeout`] after `timeout` (the task goes on).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        match self.slot.wait(Some(timeout)) {
            Some(outcome) => decode_one(&outcome?),
            None => Err(Error::Timeout),
        }
    }
}

impl<R: DeserializeOwned> Future for AsyncResult<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        self.slot
            .poll_with(cx.waker(), clone_outcome)
            .map(|outcome| decode_one(&outcome?))
    }
}

/// The results of [`Pool::map_async`](super::Pool::map_async): one per input, in order.
///
/// A [`Future`] too, of the same `Vec` as [`get`](Self::get) (`pool.map_async(f, items,
/// 1)?.await`).
#[must_use = "a map's results are lost unless they are waited for (`get` or `.await`)"]
pub struct MapResult<R> {
    chunks: Vec<AsyncResult<Vec<R>>>,
    /// Polled as a future: the chunks before this one have finished.
    polled: usize,
}

impl<R> std::fmt::Debug for MapResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapResult")
            .field("chunks", &self.chunks.len())
            .field("ready", &self.chunks.iter().all(|c| c.slot.is_set()))
            .finish()
    }
}

impl<R: DeserializeOwned> Future for MapResult<R> {
    type Output = Result<Vec<R>>;

    /// Ready once every chunk is, or at the first failed one (as [`get`](Self::get) returns):
    /// waits on the first unfinished chunk, then on the next.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Vec<R>>> {
        while let Some(chunk) = self.chunks.get(self.polled) {
            // Only whether the chunk failed: its outcome is not copied until `get`.
            match chunk.slot.poll_with(cx.waker(), Outcome::is_err) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(true) => break,
                Poll::Ready(false) => self.polled += 1,
            }
        }
        Poll::Ready(self.get())
    }
}

impl<R> MapResult<R> {
    /// The result of the chunk tasks that `slots` belong to, in input order.
    pub(crate) fn new(slots: Vec<Arc<Slot>>) -> Self {
        MapResult {
            chunks: slots.into_iter().map(AsyncResult::new).collect(),
            polled: 0,
        }
    }
}

impl<R: DeserializeOwned> MapResult<R> {
    /// Waits for every chunk and returns all results in input order; the first error if any.
    pub fn get(&self) -> Result<Vec<R>> {
        let mut out = Vec::new();
        for chunk in &self.chunks {
            out.extend(chunk.get_list()?);
        }
        Ok(out)
    }

    /// As [`get`](Self::get), giving up with [`Error::Timeout`] after `timeout` (the tasks go
    /// on).
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<R>> {
        if !self.wait_timeout(timeout) {
            return Err(Error::Timeout);
        }
        self.get()
    }

    /// Waits for every chunk to finish.
    pub fn wait(&self) {
        for chunk in &self.chunks {
            chunk.wait();
        }
    }

    /// Waits up to `timeout` for every chunk; whether all have finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = crate::sys::deadline_after(timeout);
        self.chunks.iter().all(|c| match deadline {
            None => {
                c.wait();
                true
            }
            Some(d) => c.wait_timeout(d.saturating_duration_since(std::time::Instant::now())),
        })
    }

    /// Whether every chunk has finished.
    pub fn ready(&self) -> bool {
        self.chunks.iter().all(AsyncResult::ready)
    }

    /// Whether every chunk finished without an error; `None` while some still run.
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        Some(self.chunks.iter().all(|c| c.get_list().is_ok()))
    }
}

impl<R: DeserializeOwned> AsyncResult<Vec<R>> {
    /// The whole result list of a chunk task.
    pub(crate) fn get_list(&self) -> Result<Vec<R>> {
        self.wait();
        self.get_raw()
    }
}

/// Decodes the only item of a one-item result list.
pub(crate) fn decode_one<R: DeserializeOwned>(bytes: &[u8]) -> Result<R> {
    let mut items: Vec<R> = codec::decode(bytes)?;
    match (items.pop(), items.is_empty()) {
        (Some(r), true) => Ok(r),
        _ => Err(Error::Decode(
            "a task gave back the wrong number of results".into(),
        )),
    }
}

/// What `map_async_with` collects until its last chunk is done.
struct Gather<C, E> {
    outcomes: Vec<Option<Outcome>>,
    left: usize,
    callbacks: Option<(C, E)>,
}

/// One finisher per chunk of a `map_async_with` (the local pool's and the cluster's): the last
/// one to run decodes every chunk's result list, in order, and calls `callback` with all the
/// results, or `error_callback` with the first error.
pub(crate) fn gather_finishers<R, C, E>(
    chunks: usize,
    callback: C,
    error_callback: E,
) -> Vec<Finisher>
where
    R: DeserializeOwned,
    C: FnOnce(Vec<R>) + Send + 'static,
    E: FnOnce(Error) + Send + 'static,
{
    let gather = Arc::new(Mutex::new(Gather::<C, E> {
        outcomes: (0..chunks).map(|_| None).collect(),
        left: chunks,
        callbacks: Some((callback, error_callback)),
    }));
    (0..chunks)
        .map(|i| {
            let gather = Arc::clone(&gather);
            let finisher: Finisher = Box::new(move |outcome: &Outcome| {
                let done = {
                    let mut g = gather.lock().unwrap_or_else(|e| e.into_inner());
                    g.outcomes[i] = Some(match outcome {
                        Ok(bytes) => Ok(bytes.clone()),
                        Err(e) => Err(e.clone_for_caller()),
                    });
                    g.left -= 1;
                    if g.left == 0 {
                        g.callbacks
                            .take()
                            .map(|cb| (cb, std::mem::take(&mut g.outcomes)))
                    } else {
                        None
                    }
                };
                if let Some(((callback, error_callback), outcomes)) = done {
                    // `left` reached 0: every chunk's finisher has stored its outcome.
                    let all: Result<Vec<R>> =
                        outcomes
                            .into_iter()
                            .flatten()
                            .try_fold(Vec::new(), |mut all, o| {
                                all.extend(codec::decode::<Vec<R>>(&o?)?);
                                Ok(all)
                            });
                    match all {
                        Ok(all) => callback(all),
                        Err(e) => error_callback(e),
                    }
                }
            });
            finisher
        })
        .collect()
}
