//! [`Condition`].

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{sleep, wake, Deadline, Handle, Lock, LockGuard};
use crate::error::{Error, Result};
use crate::shm::ShmState;

/// The longest [`Condition::notify`] waits for the woken waiters to take their notification
/// (only a waiter that died can make it wait that long).
pub(crate) const NOTIFY_HANDOVER_LIMIT: Duration = Duration::from_secs(1);

/// One unit of `sleepers` in [`CondState::counts`].
const SLEEPER: u64 = 1 << 32;
/// One unit of `budget` in [`CondState::counts`].
const BUDGET: u64 = 1;

/// The state of a condition (its lock lives in a region of its own).
#[repr(C)]
pub(crate) struct CondState {
    /// Bumped by every notify that selects someone; the futex word sleepers wait on.
    seq: AtomicU32,
    waiters: AtomicU32,
    /// `sleepers << 32 | budget`: waiters registered and not yet selected by a notify, and
    /// selections not yet taken by a waiter. One word, so that every change is one atomic step.
    counts: AtomicU64,
}

// SAFETY: atomics only; all-zero bytes are a condition nobody waits on.
unsafe impl ShmState for CondState {}

impl CondState {
    /// Applies `f` to `counts` atomically if it returns `Some`; whether it did.
    fn update(&self, mut f: impl FnMut(u64, u64) -> Option<(u64, u64)>) -> bool {
        self.counts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                f(c >> 32, c & 0xffff_ffff).map(|(s, b)| s << 32 | b)
            })
            .is_ok()
    }

    /// Takes a unit of budget if there is one: a notify selected us.
    fn take_budget(&self) -> bool {
        self.update(|s, b| (b > 0).then(|| (s, b - BUDGET)))
    }

    /// Leaves after a timeout: unregisters, or, if every remaining registration has been
    /// selected (so ours was), takes a unit of budget. Whether we were notified.
    fn leave(&self) -> bool {
        loop {
            if self.update(|s, b| (s > 0).then(|| (s - 1, b))) {
                return false;
            }
            if self.take_budget() {
                return true;
            }
            // Both zero: only possible with phantom counts gone wrong; nothing to undo.
            if self.counts.load(Ordering::SeqCst) == 0 {
                return false;
            }
        }
    }
}

/// A condition variable shared between processes, as Python's `multiprocessing.Condition`:
/// a [`Lock`] plus waiting for a notification. [`wait`](Self::wait) must be called with the
/// lock held; it releases the lock while it waits and takes it again before returning.
///
/// `notify(n)` wakes exactly `min(n, waiting)` waiters. As with every condition variable, a
/// waiter should re-check what it waits for when it wakes ([`wait_for`](Self::wait_for) does).
/// Unlike Python's default (an `RLock`), the lock is a [`Lock`]: `wait` needs it held once.
///
/// ```
/// use std::time::Duration;
/// use multiprocess::{Condition, Value};
/// let cond = Condition::new()?;
/// let ready = Value::new(false)?;
/// let (c, r) = (cond.clone(), ready.clone());
/// let notifier = std::thread::spawn(move || {
///     let _guard = c.lock().unwrap();
///     r.set(true);
///     c.notify_all().unwrap();
/// });
/// let guard = cond.lock()?;
/// assert!(cond.wait_for(|| ready.get(), Some(Duration::from_secs(10)))?);
/// drop(guard);
/// notifier.join().unwrap();
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    lock: Lock,
    state: Handle<CondState>,
}

impl Condition {
    /// A condition with a lock of its own.
    pub fn new() -> Result<Condition> {
        Condition::with_lock(Lock::new()?)
    }

    /// A condition over an existing lock (Python's `Condition(lock)`).
    pub fn with_lock(lock: Lock) -> Result<Condition> {
        Ok(Condition {
            lock,
            state: Handle::create("multiprocess-condition", 0)?,
        })
    }

    /// The condition's lock.
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Takes the lock ([`Lock::acquire`]).
    pub fn acquire(&self) -> Result<()> {
        self.lock.acquire()
    }

    /// Takes the lock, waiting at most `timeout` ([`Lock::acquire_timeout`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.lock.acquire_timeout(timeout)
    }

    /// Releases the lock ([`Lock::release`]).
    pub fn release(&self) -> Result<()> {
        self.lock.release()
    }

    /// Takes the lock until the guard is dropped (Python's `with cond:`).
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        self.lock.lock()
    }

    /// Waits for a notification. The lock must be held by this process.
    pub fn wait(&self) -> Result<()> {
        self.wait_until(Deadline::NEVER).map(drop)
    }

    /// Waits at most `timeout` for a notification; `false` if none came in time. The lock must
    /// be held by this process; it is held again when this returns, whatever the outcome.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Waits until `predicate` is true, re-checking it after every notification, for at most
    /// `timeout` (`None`: no limit). Returns the predicate's last value. The lock must be held.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let end = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if predicate() {
                return Ok(true);
            }
            match end {
                None => self.wait()?,
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.wait_timeout(left)?;
                }
            }
        }
    }

    /// Wakes up to `n` waiters (exactly `min(n, waiting)`). The lock must be held.
    ///
    /// As in Python, it returns once the woken waiters have taken their notification, so that
    /// the caller (who still holds the lock, and may wait on the condition next) can never take
    /// one meant for them. A waiter that died cannot take its own: after
    /// a second the call returns anyway.
    pub fn notify(&self, n: usize) -> Result<()> {
        self.check_held()?;
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let s = &*self.state;
        let mut selected = 0;
        let mut budget_before = 0;
        s.update(|sleepers, budget| {
            selected = n.min(sleepers);
            budget_before = budget;
            Some((sleepers - selected, budget + selected))
        });
        if selected > 0 {
            s.seq.fetch_add(1, Ordering::SeqCst);
            wake(
                &s.seq,
                &s.waiters,
                i32::try_from(selected).unwrap_or(i32::MAX),
            );
            let started = Instant::now();
            let budget = || s.counts.load(Ordering::SeqCst) & 0xffff_ffff;
            while budget() > budget_before && started.elapsed() < NOTIFY_HANDOVER_LIMIT {
                // The woken waiters run on other cores or after us: give them the CPU.
                std::thread::yield_now();
                if started.elapsed() > Duration::from_millis(1) {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        Ok(())
    }

    /// Wakes every waiter. The lock must be held.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }

    fn check_held(&self) -> Result<()> {
        if self.lock.held_here() {
            Ok(())
        } else {
            Err(Error::LockNotHeld)
        }
    }

    fn wait_until(&self, deadline: Deadline) -> Result<bool> {
        self.check_held()?;
        let s = &*self.state;
        s.counts.fetch_add(SLEEPER, Ordering::SeqCst);
        if let Err(err) = self.lock.release() {
            s.leave();
            return Err(err);
        }
        let notified = loop {
            let seq = s.seq.load(Ordering::SeqCst);
            if s.take_budget() {
                break true;
            }
            if deadline.passed() {
                break s.leave();
            }
            sleep(&s.seq, seq, &s.waiters, deadline);
        };
        self.lock.acquire()?;
        Ok(notified)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = self.state.counts.load(Ordering::Relaxed);
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("sleepers", &(counts >> 32))
            .field("selected", &(counts & 0xffff_ffff))
            .finish()
    }
}
