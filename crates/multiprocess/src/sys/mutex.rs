//! A robust, process-shared mutex: glibc's `PTHREAD_MUTEX_ROBUST` + `PTHREAD_PROCESS_SHARED`.
//!
//! The kernel keeps, per thread, a list of the robust mutexes it holds; when a thread dies (its
//! process killed by SIGKILL included), the kernel marks each such mutex "owner died" and wakes
//! a waiter. The next locker gets `EOWNERDEAD`: it holds the lock, repairs the protected state
//! (see [`Journal`](crate::shm::Journal)), and marks the mutex consistent. So a lock held by a dead
//! process is recovered, never a deadlock.

use std::cell::UnsafeCell;
use std::io;

/// A robust mutex living in shared memory. Initialise it once with [`RobustMutex::init`] in the
/// process that creates the region, before any other process can see it.
#[repr(C)]
pub(crate) struct RobustMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a process-shared pthread mutex is designed to be used from many threads and
// processes at once; all access goes through the pthread functions.
unsafe impl Sync for RobustMutex {}

/// How many times `lock` tries before it sleeps.
const LOCK_SPINS: u32 = 100;

/// Proof that the lock is held; unlocks on drop.
pub(crate) struct RobustMutexGuard<'a> {
    mutex: &'a RobustMutex,
}

impl RobustMutex {
    /// Initialises the mutex in place.
    ///
    /// # Safety
    /// `this` must point to writable memory for a `RobustMutex` that no other thread or process
    /// uses yet.
    pub(crate) unsafe fn init(this: *mut RobustMutex) -> io::Result<()> {
        // SAFETY: attr is initialised by pthread_mutexattr_init before use and destroyed after;
        // `this` is valid and unused per the contract.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            check(libc::pthread_mutexattr_init(&mut attr))?;
            let result = (|| {
                check(libc::pthread_mutexattr_setpshared(
                    &mut attr,
                    libc::PTHREAD_PROCESS_SHARED,
                ))?;
                check(libc::pthread_mutexattr_setrobust(
                    &mut attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))?;
                check(libc::pthread_mutex_init((*this).inner.get(), &attr))
            })();
            libc::pthread_mutexattr_destroy(&mut attr);
            result
        }
    }

    /// Takes the lock. The flag is true when the previous owner died holding it: the caller
    /// must repair the protected state and then call [`RobustMutexGuard::mark_consistent`].
    pub(crate) fn lock(&self) -> io::Result<(RobustMutexGuard<'_>, bool)> {
        // Robust mutexes do not spin in glibc: a holder on another core usually lets go within
        // a few hundred nanoseconds, so try a little before sleeping in the kernel.
        let mut rc = libc::EBUSY;
        for _ in 0..LOCK_SPINS {
            // SAFETY: the mutex was initialised by `init` before the region was shared.
            rc = unsafe { libc::pthread_mutex_trylock(self.inner.get()) };
            if rc != libc::EBUSY {
                break;
            }
            std::hint::spin_loop();
        }
        if rc == libc::EBUSY {
            // SAFETY: as above.
            rc = unsafe { libc::pthread_mutex_lock(self.inner.get()) };
        }
        match rc {
            0 => Ok((RobustMutexGuard { mutex: self }, false)),
            libc::EOWNERDEAD => Ok((RobustMutexGuard { mutex: self }, true)),
            err => Err(io::Error::from_raw_os_error(err)),
        }
    }
}

impl RobustMutexGuard<'_> {
    /// Declares the protected state repaired after `EOWNERDEAD`.
    pub(crate) fn mark_consistent(&self) {
        // SAFETY: we hold the mutex, which is in the owner-died state.
        unsafe { libc::pthread_mutex_consistent(self.mutex.inner.get()) };
    }
}

impl Drop for RobustMutexGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { libc::pthread_mutex_unlock(self.mutex.inner.get()) };
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}
