//! How long a deque call waits, which end it takes from, and the brief spin before a sleep.

use std::time::{Duration, Instant};

/// Which end a record is taken from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum End {
    /// The oldest record (FIFO).
    Front,
    /// The newest record (LIFO).
    Back,
}

/// How long a call may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all (`*_nowait`).
    No,
    /// Until the deadline, or for ever (`None`).
    Until(Option<Instant>),
}

impl Wait {
    pub(crate) fn timeout(timeout: Duration) -> Wait {
        Wait::Until(crate::sys::deadline_after(timeout))
    }

    /// The time left, or `None` when the wait is over.
    pub(crate) fn left(self) -> Option<Option<Duration>> {
        match self {
            Wait::No => None,
            Wait::Until(None) => Some(None),
            Wait::Until(Some(d)) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then_some(Some(left))
            }
        }
    }
}

/// Busy-waits a few microseconds for `ready`, checked without a lock: when the other side is
/// busy on another core, this saves the two system calls of a sleep and a wake-up.
pub(crate) fn spin_until(ready: impl Fn() -> bool) {
    for i in 0..SPINS {
        if ready() {
            return;
        }
        if i < SPINS / 2 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// How many times [`spin_until`] checks before giving up.
const SPINS: u32 = 200;
