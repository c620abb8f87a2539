//! [`Event`].

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{sleep, wake, Deadline, Handle};
use crate::error::Result;
use crate::shm::ShmState;

/// The state of an event. The futex word is `sets << 1 | flag`: the flag, and how many times
/// (modulo 2^31) it went from clear to set.
#[repr(C)]
pub(crate) struct EventState {
    word: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: atomics only; all-zero bytes are a clear event with no sleepers.
unsafe impl ShmState for EventState {}

/// A flag shared between processes that processes can wait for, as Python's
/// `multiprocessing.Event`.
///
/// A `set` releases every process waiting at that moment, even if the flag is cleared again
/// before they run.
///
/// ```
/// use std::time::Duration;
/// let event = multiprocess::Event::new()?;
/// assert!(!event.is_set());
/// assert!(!event.wait_timeout(Duration::from_millis(10))?);
/// event.set();
/// event.wait()?;
/// assert!(event.wait_timeout(Duration::ZERO)?);
/// event.clear();
/// assert!(!event.is_set());
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Event {
    state: Handle<EventState>,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event> {
        Ok(Event {
            state: Handle::create("multiprocess-event", 0)?,
        })
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.state.word.load(Ordering::Acquire) & 1 == 1
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let s = &*self.state;
        let mut word = s.word.load(Ordering::Relaxed);
        loop {
            if word & 1 == 1 {
                return; // already set: whoever waits has been woken by that set
            }
            let next = (word | 1).wrapping_add(2);
            match s
                .word
                .compare_exchange_weak(word, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        wake(&s.word, &s.waiters, i32::MAX);
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.state.word.fetch_and(!1, Ordering::SeqCst);
    }

    /// Waits until the flag is set (Python's `wait()`, which then returns `True`).
    pub fn wait(&self) -> Result<()> {
        self.wait_until(Deadline::NEVER);
        Ok(())
    }

    /// Waits at most `timeout` for the flag; `false` if it was not set in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.wait_until(Deadline::after(timeout)))
    }

    fn wait_until(&self, deadline: Deadline) -> bool {
        let s = &*self.state;
        let start = s.word.load(Ordering::Acquire);
        if start & 1 == 1 {
            return true;
        }
        loop {
            let word = s.word.load(Ordering::Acquire);
            if word != start {
                // Set (and maybe cleared again) since we started: released.
                return true;
            }
            if deadline.passed() {
                return false;
            }
            sleep(&s.word, word, &s.waiters, deadline);
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `sleeping`: processes or threads asleep in `wait` now (a dead one stays counted).
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .field("sleeping", &self.state.waiters.load(Ordering::Relaxed))
            .finish()
    }
}
