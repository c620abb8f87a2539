//! An event count: "the state changed" notifications across processes.
//!
//! A waiter reads [`EventCount::prepare`] (the sequence number and a registration as sleeper)
//! while it still holds the lock that guards the condition it waits for, releases the lock, and
//! sleeps until the sequence number moves. A notifier bumps the number while holding that lock
//! and makes the wake-up system call only if someone is registered: a busy consumer costs its
//! producer no system call at all.
//!
//! Crash safety: a sleeper that dies while registered leaves the count of sleepers too high,
//! which only costs spare wake-up calls. A notifier that dies between bumping the number and
//! waking leaves sleepers asleep; so that they cannot sleep for ever, every sleep is capped at
//! [`MAX_SLEEP`], after which the sleeper re-checks its condition.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sys::futex;

/// The longest one sleep lasts before the sleeper re-checks its condition (the bound on a
/// wake-up lost with a crashed notifier).
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(100);

/// An event count in shared memory. All-zero bytes are a valid initial state.
#[repr(C)]
pub(crate) struct EventCount {
    /// Bumped by every notification; sleepers wait for it to move.
    seq: AtomicU32,
    /// How many are registered as sleeping.
    sleepers: AtomicU32,
}

/// A registration to sleep on an [`EventCount`], made under the condition's lock.
pub(crate) struct Ticket<'a> {
    ec: &'a EventCount,
    seq: u32,
}

impl EventCount {
    /// Registers as a sleeper; call with the condition's lock held, then release it and
    /// [`Ticket::sleep`].
    pub(crate) fn prepare(&self) -> Ticket<'_> {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        Ticket {
            ec: self,
            seq: self.seq.load(Ordering::SeqCst),
        }
    }

    /// Notifies up to `count` sleepers (`i32::MAX`: all). Call with the condition's lock held.
    pub(crate) fn notify(&self, count: i32) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.seq, count);
        }
    }
}

impl Ticket<'_> {
    /// Sleeps until notified, or at most `timeout` (capped at [`MAX_SLEEP`]).
    pub(crate) fn sleep(self, timeout: Option<Duration>) {
        let limit = timeout.map_or(MAX_SLEEP, |t| t.min(MAX_SLEEP));
        futex::wait(&self.ec.seq, self.seq, Some(limit));
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.ec.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}
