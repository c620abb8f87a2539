//! Synchronisation primitives between processes: [`Lock`], [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`], as Python's
//! `multiprocessing.synchronize`.
//!
//! Each primitive is a small `#[repr(C)]` struct of atomics alone in its own shared-memory
//! region (a `ShmCell`). A handle travels to a child as an argument under every start method
//! (the region's descriptor goes with it) and can be cloned; every handle refers to the same
//! primitive.
//!
//! ## Waiting
//!
//! A waiter sleeps with a futex on a 32-bit word of the state (the lock's owner, the
//! semaphore's value, the event's flag, a sequence number), counted in a `waiters` word while it
//! sleeps. Whoever changes the word makes the wake-up system call only when that count is not
//! zero: an uncontended acquire and release cost a few atomic operations and no futex call. The
//! count is raised before the sleeper's last look at the word and the word is changed before the
//! waker reads the count (both sequentially consistent), so a wake-up is never lost. Every
//! sleep is capped at `MAX_SLEEP` (100 ms): a waker that dies between changing the word and
//! waking cannot strand a sleeper, who re-checks its condition at the end of each nap.
//!
//! ## Algorithms
//!
//! - **Lock**: the word holds the owner's pid, 0 when free; acquire is a CAS `0 → pid`, release
//!   a swap to 0 (by any process, as Python allows). **RLock** uses the same word, plus the
//!   owner's thread id and a recursion count, which only the owner touches; the thread id is
//!   cleared before the word is, so no thread ever mistakes a stale id for its own.
//! - **Semaphore**: the word is the value; acquire is a CAS decrement of a positive value,
//!   release an increment (refused above the initial value for a `BoundedSemaphore`).
//! - **Event**: the word is `sets << 1 | flag`. A waiter returns as soon as the flag is up or the
//!   number of sets has moved since it started, so a `set` quickly followed by a `clear` still
//!   releases everyone who was waiting.
//! - **Condition**: a [`Lock`] (`wait` and `notify` check that *this process* holds it: a pid
//!   lock cannot tell threads apart) plus one 64-bit word `sleepers << 32 | budget`. A waiter
//!   registers as a sleeper (with the lock held), releases the lock, and sleeps on a sequence
//!   number until it can take a unit of budget. `notify(n)` moves `k = min(n, sleepers)` units
//!   from sleepers to budget in one CAS, bumps the sequence number, wakes `k` sleepers, and (as
//!   Python's `notify` does) waits until they have taken their units, at most a second (a dead
//!   waiter cannot take its own). So exactly `k` waiters return as notified, and the notifier,
//!   who still holds the lock, cannot take a unit back by waiting next. A waiter whose timeout ends leaves by removing its
//!   registration, or, if every remaining registration was already moved to budget (it was
//!   selected), by taking a unit of budget and reporting itself notified.
//! - **Barrier**: Python's design (filling, draining, resetting, broken), kept in one 64-bit
//!   word `count << 8 | phase` under an internal pid lock, with the pid of each party that has
//!   arrived and not yet left in a slot of its own. Waiters sleep on a sequence number bumped at
//!   every change of phase.
//!
//! ## Crash safety
//!
//! A process may be killed at any instant, holding anything:
//!
//! - **A lock held by a dead process is recovered.** A waiter that finds the same owner after a
//!   nap asks the kernel whether that process still exists (a pidfd; at most one check per owner
//!   per nap); if it has died, the waiter takes the lock over with a CAS `dead pid → own pid`
//!   (one winner). So a sleeping waiter recovers the lock within about 100 ms of the death. The
//!   protected data is the user's to check, as after a panic. The lock also records the owner's
//!   start time (from `/proc/<pid>/stat`), so a pid the kernel has since given to a new process
//!   (which takes seconds on a busy machine) does not keep a dead owner's lock held. (Barrier
//!   party slots record pids only.)
//! - Every other update of shared state is one atomic operation, except the barrier's, which
//!   change a slot and the state word together through a [`Journal`](crate::shm::Journal): a
//!   process that takes the barrier's internal lock over from a dead owner replays any
//!   interrupted commit first, so it sees the old state or the new one, never a mix.
//! - A dead sleeper leaves its `waiters` count raised: that costs later wakers a spare system
//!   call, nothing else. A condition waiter killed while waiting leaves its registration (or a
//!   unit of budget) behind: a later notify may wake one waiter too many (a spurious wake-up,
//!   which condition users must tolerate anyway), never one too few.
//! - A barrier party that dies after arriving can never leave: the waiters notice it at their
//!   next nap, break the barrier (everyone gets [`Error::BrokenBarrier`](crate::Error)) and
//!   remove the dead party, so the barrier can be [`reset`](Barrier::reset) and used again.
//! - A semaphore has no owner, in Python as here: units taken by a process that dies are not
//!   given back.

mod barrier;
mod condition;
mod event;
mod lock;
mod semaphore;

pub use barrier::Barrier;
pub use condition::Condition;
pub use event::Event;
pub(crate) use lock::RLockAlone;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore};

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::shm::{ShmCell, ShmState, MAX_SLEEP};
use crate::sys;
use crate::sys::futex;

/// A handle on a state in shared memory: cheap to clone, sent to other processes as its region.
pub(crate) struct Handle<S: ShmState>(Arc<ShmCell<S>>);

impl<S: ShmState> Handle<S> {
    /// A fresh, zeroed state with `extra` bytes after it, in a region named `name`.
    pub(crate) fn create(name: &str, extra: usize) -> Result<Self> {
        Ok(Handle(Arc::new(ShmCell::create(name, extra)?)))
    }

    /// The shared-memory cell.
    pub(crate) fn cell(&self) -> &ShmCell<S> {
        &self.0
    }
}

impl<S: ShmState> Deref for Handle<S> {
    type Target = S;

    fn deref(&self) -> &S {
        self.0.get()
    }
}

impl<S: ShmState> Clone for Handle<S> {
    fn clone(&self) -> Self {
        Handle(Arc::clone(&self.0))
    }
}

impl<S: ShmState> Serialize for Handle<S> {
    fn serialize<Z: Serializer>(&self, s: Z) -> std::result::Result<Z::Ok, Z::Error> {
        self.0.serialize(s)
    }
}

impl<'de, S: ShmState> Deserialize<'de> for Handle<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Handle(Arc::new(ShmCell::deserialize(d)?)))
    }
}

/// When a wait must end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// A wait without limit.
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// A wait of at most `timeout` from now (without limit if that is beyond representation).
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// Whether the time is up.
    pub(crate) fn passed(self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }

    /// How long the next sleep may last: what is left, capped at [`MAX_SLEEP`].
    fn nap(self) -> Duration {
        self.0.map_or(MAX_SLEEP, |d| {
            d.saturating_duration_since(Instant::now()).min(MAX_SLEEP)
        })
    }
}

/// Sleeps while `word` holds `expected`, for at most one nap before `deadline`, counted in
/// `waiters` meanwhile. Returns early on a wake-up, a signal, or a change of the word; callers
/// re-check their condition in every case.
pub(crate) fn sleep(word: &AtomicU32, expected: u32, waiters: &AtomicU32, deadline: Deadline) {
    waiters.fetch_add(1, Ordering::SeqCst);
    if word.load(Ordering::SeqCst) == expected {
        futex::wait(word, expected, Some(deadline.nap()));
    }
    waiters.fetch_sub(1, Ordering::SeqCst);
}

/// Wakes up to `count` sleepers on `word` (`i32::MAX`: all), if any sleeps. Call after changing
/// the word.
pub(crate) fn wake(word: &AtomicU32, waiters: &AtomicU32, count: i32) {
    if waiters.load(Ordering::SeqCst) > 0 {
        futex::wake(word, count);
    }
}

/// Whether the process `pid` (a lock's owner) has exited, or never existed.
pub(crate) fn owner_is_dead(pid: u32) -> bool {
    sys::process_is_dead(pid)
}

/// Rate-limits death checks: at most one per value per [`MAX_SLEEP`].
pub(crate) struct Watch {
    checked: Option<(u32, Instant)>,
}

impl Watch {
    pub(crate) fn new() -> Watch {
        Watch { checked: None }
    }

    /// Whether `value` is due for a check (and if so, records the check as made now).
    pub(crate) fn due(&mut self, value: u32) -> bool {
        let now = Instant::now();
        match self.checked {
            Some((v, at)) if v == value && now.duration_since(at) < MAX_SLEEP => false,
            _ => {
                self.checked = Some((value, now));
                true
            }
        }
    }
}
