//! State that belongs to one process and must start fresh in a forked child.
//!
//! A forked child is a copy of one thread of its parent. Any lock in the copied memory may have
//! been held by another parent thread at the instant of the fork, and then it stays locked in the
//! child for ever. So the library keeps its process-wide state (the children registry, the fork
//! server connection, the pidfd of this process) behind a [`PerProcess`] cell: a pointer that the
//! child simply forgets after `fork`, without touching any lock, so that its first use builds a
//! fresh value. The parent's value is leaked in the child, which is harmless: the child's copy of
//! it is never used again.

use std::sync::atomic::{AtomicPtr, Ordering};

/// A lazily built, process-wide value that a forked child rebuilds instead of inheriting.
pub(crate) struct PerProcess<T: 'static> {
    /// Null until first use in this process; then a leaked `Box<T>` that lives for ever.
    ptr: AtomicPtr<T>,
    /// Builds the value on first use.
    make: fn() -> T,
}

impl<T: 'static> PerProcess<T> {
    pub(crate) const fn new(make: fn() -> T) -> Self {
        PerProcess {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
            make,
        }
    }

    /// This process's value, built on first use.
    pub(crate) fn get(&self) -> &'static T {
        let current = self.ptr.load(Ordering::Acquire);
        if !current.is_null() {
            // SAFETY: a non-null pointer is a leaked Box that is never freed.
            return unsafe { &*current };
        }
        let fresh = Box::into_raw(Box::new((self.make)()));
        match self.ptr.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: we just published our leaked Box; it is never freed.
            Ok(_) => unsafe { &*fresh },
            Err(winner) => {
                // SAFETY: `fresh` was never published, so we still own it alone.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: the winner's pointer is a leaked Box that is never freed.
                unsafe { &*winner }
            }
        }
    }

    /// Forgets the inherited value (it is leaked, never dropped). Call only in a freshly forked
    /// child, before any other use: it touches no lock.
    pub(crate) fn reset_after_fork(&self) {
        self.ptr.store(std::ptr::null_mut(), Ordering::Release);
    }
}
