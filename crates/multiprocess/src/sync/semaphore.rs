//! [`Semaphore`] and [`BoundedSemaphore`].

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{sleep, wake, Deadline, Handle};
use crate::error::{Error, Result};
use crate::shm::ShmState;

/// The state of a semaphore: the futex word is the value.
#[repr(C)]
pub(crate) struct SemState {
    value: AtomicU32,
    waiters: AtomicU32,
    /// The most `value` may reach: `u32::MAX`, or the initial value of a bounded semaphore. Set
    /// before the semaphore is shared, never changed.
    max: AtomicU32,
    _pad: AtomicU32,
}

// SAFETY: atomics only; all-zero bytes are a semaphore of value 0 (its creator sets the value
// and bound before sharing it).
unsafe impl ShmState for SemState {}

impl SemState {
    fn create(value: u32, max: u32) -> Result<Handle<SemState>> {
        let state = Handle::<SemState>::create("multiprocess-semaphore", 0)?;
        state.value.store(value, Ordering::Relaxed);
        state.max.store(max, Ordering::Relaxed);
        Ok(state)
    }

    fn try_acquire(&self) -> bool {
        let mut value = self.value.load(Ordering::Relaxed);
        while value > 0 {
            match self.value.compare_exchange_weak(
                value,
                value - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => value = now,
            }
        }
        false
    }

    fn acquire(&self, deadline: Deadline) -> bool {
        loop {
            if self.try_acquire() {
                return true;
            }
            if deadline.passed() {
                // A release may have woken us just as we gave up: pass the wake-up on.
                if self.value.load(Ordering::SeqCst) > 0 {
                    wake(&self.value, &self.waiters, 1);
                }
                return false;
            }
            sleep(&self.value, 0, &self.waiters, deadline);
        }
    }

    fn release(&self) -> Result<()> {
        let max = self.max.load(Ordering::Relaxed);
        let mut value = self.value.load(Ordering::Relaxed);
        loop {
            if value >= max {
                return Err(Error::ReleasedTooOften);
            }
            match self.value.compare_exchange_weak(
                value,
                value + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => value = now,
            }
        }
        wake(&self.value, &self.waiters, 1);
        Ok(())
    }
}

/// Defines a semaphore type with the methods both kinds have.
macro_rules! semaphore_type {
    ($(#[$doc:meta])* $name:ident, max = |$v:ident| $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name {
            state: Handle<SemState>,
        }

        impl $name {
            /// A semaphore whose counter starts at `value`.
            pub fn new(value: u32) -> Result<$name> {
                let $v = value;
                Ok($name {
                    state: SemState::create(value, $max)?,
                })
            }

            /// Decrements the counter, waiting while it is zero.
            pub fn acquire(&self) -> Result<()> {
                self.state.acquire(Deadline::NEVER);
                Ok(())
            }

            /// Decrements the counter, waiting at most `timeout` while it is zero; `false` if it
            /// stayed zero (Python's `acquire(True, timeout)`).
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                Ok(self.state.acquire(Deadline::after(timeout)))
            }

            /// Decrements the counter if it is positive now; never waits (Python's
            /// `acquire(False)`, which ignores any timeout given with it).
            pub fn try_acquire(&self) -> Result<bool> {
                Ok(self.state.try_acquire())
            }

            /// Increments the counter and wakes one waiter.
            pub fn release(&self) -> Result<()> {
                self.state.release()
            }

            /// The counter's current value.
            pub fn get_value(&self) -> u32 {
                self.state.value.load(Ordering::Relaxed)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("value", &self.get_value())
                    .finish()
            }
        }
    };
}

semaphore_type!(
    /// A counter shared between processes, as Python's `multiprocessing.Semaphore`: `acquire`
    /// decrements it, waiting while it is zero; `release` increments it (it may rise above its
    /// initial value, up to `u32::MAX`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let sem = multiprocess::Semaphore::new(2)?;
    /// sem.acquire()?;
    /// assert!(sem.try_acquire()?);
    /// assert_eq!(sem.get_value(), 0);
    /// assert!(!sem.try_acquire()?);
    /// assert!(!sem.acquire_timeout(Duration::from_millis(10))?);
    /// for _ in 0..3 {
    ///     sem.release()?;
    /// }
    /// assert_eq!(sem.get_value(), 3);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    Semaphore,
    max = |_value| u32::MAX
);

semaphore_type!(
    /// A [`Semaphore`] that refuses to rise above its initial value, as Python's
    /// `multiprocessing.BoundedSemaphore`: a release too many is an [`Error::ReleasedTooOften`].
    ///
    /// ```
    /// let sem = multiprocess::BoundedSemaphore::new(1)?;
    /// assert!(sem.release().is_err()); // would exceed 1
    /// sem.acquire()?;
    /// sem.release()?;
    /// assert_eq!(sem.get_value(), 1);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    BoundedSemaphore,
    max = |value| value
);
