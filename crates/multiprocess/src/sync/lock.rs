//! [`Lock`] and [`RLock`], and the pid-owned lock under both (and under the barrier).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{owner_is_dead, sleep, wake, Deadline, Handle, Watch};
use crate::error::{Error, Result};
use crate::shm::ShmState;
use crate::sys;

/// How many times an acquire retries before it sleeps: a holder on another core usually lets
/// go within a few hundred nanoseconds.
const SPINS: u32 = 64;

/// A lock owned by a process: the futex word holds the owner's pid, 0 when free.
#[repr(C)]
pub(crate) struct PidLock {
    owner: AtomicU32,
    waiters: AtomicU32,
    /// The owner process's start time (see `sys::process_start_time`), written just after it
    /// takes the lock and cleared just before it frees it; 0 while unknown. With the pid it
    /// names the owner for good: a pid the kernel has given to a new process no longer matches.
    owner_start: AtomicU64,
}

// SAFETY: atomics only; all-zero bytes are a free lock with no sleepers.
unsafe impl ShmState for PidLock {}

/// How an acquisition went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Acquired {
    /// The deadline passed first.
    No,
    /// Taken.
    Yes,
    /// Taken over from an owner that died holding it.
    FromDead,
}

impl PidLock {
    /// The owner's pid, 0 when free.
    pub(crate) fn owner(&self) -> u32 {
        self.owner.load(Ordering::Acquire)
    }

    /// Takes the lock for `me` if it is free.
    pub(crate) fn try_lock(&self, me: u32) -> bool {
        let taken = self
            .owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if taken {
            self.note_owner_start(me);
        }
        taken
    }

    fn note_owner_start(&self, me: u32) {
        self.owner_start
            .store(sys::own_start_time(me), Ordering::Release);
    }

    /// Whether `owner` (the pid read from the word) is dead: gone, or its pid now names a
    /// process that started after it took the lock.
    fn owner_died(&self, owner: u32) -> bool {
        if owner_is_dead(owner) {
            return true;
        }
        let recorded = self.owner_start.load(Ordering::Acquire);
        recorded != 0
            && self.owner.load(Ordering::Acquire) == owner
            && sys::process_start_time(owner).is_some_and(|now| now != recorded)
    }

    /// Takes the lock for `me`, waiting until `deadline`; takes it over from a dead owner.
    pub(crate) fn lock(&self, me: u32, deadline: Deadline) -> Acquired {
        let mut spins = 0;
        let mut watch = Watch::new();
        // The owner when we last went to sleep: still the owner after a nap, it is checked.
        let mut slept_on = None;
        loop {
            let owner = self.owner.load(Ordering::Relaxed);
            if owner == 0 {
                if self.try_lock(me) {
                    return Acquired::Yes;
                }
                continue;
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            if slept_on == Some(owner) && watch.due(owner) && self.owner_died(owner) {
                if self
                    .owner
                    .compare_exchange(owner, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.note_owner_start(me);
                    return Acquired::FromDead;
                }
                continue;
            }
            if deadline.passed() {
                // A release may have woken us just as we gave up: pass the wake-up on.
                if self.owner.load(Ordering::SeqCst) == 0 {
                    wake(&self.owner, &self.waiters, 1);
                }
                return Acquired::No;
            }
            sleep(&self.owner, owner, &self.waiters, deadline);
            slept_on = Some(owner);
        }
    }

    /// Frees the lock, whoever holds it, and wakes one sleeper. False if it was free.
    pub(crate) fn unlock(&self) -> bool {
        // Cleared first: the next owner's start time is never overwritten.
        self.owner_start.store(0, Ordering::Release);
        if self.owner.swap(0, Ordering::SeqCst) == 0 {
            return false;
        }
        wake(&self.owner, &self.waiters, 1);
        true
    }
}

fn released_too_often() -> Error {
    Error::ReleasedTooOften
}

/// A lock shared between processes, as Python's `multiprocessing.Lock`: not recursive (a second
/// acquire by the holder waits), and any process may release it, not only the one that
/// acquired it.
///
/// If the process holding the lock dies, a waiter takes it over within about 100 ms (it checks
/// that the owner still exists whenever the owner has not changed during one of its naps): a
/// lock held by a dead process never deadlocks the survivors.
///
/// ```
/// use multiprocess::Lock;
/// let lock = Lock::new()?;
/// lock.acquire()?;
/// assert!(lock.locked());
/// assert!(!lock.try_acquire()?); // not recursive
/// lock.release()?;
/// assert!(lock.release().is_err()); // already unlocked
/// {
///     let _guard = lock.lock()?; // Python's `with lock:`
///     assert!(lock.locked());
/// }
/// assert!(!lock.locked());
/// # Ok::<(), multiprocess::Error>(())
/// ```
///
/// Handed to a child process, it is the same lock there:
///
/// ```no_run
/// use multiprocess::{Lock, Process};
///
/// fn work(lock: Lock, id: u32) {
///     let _guard = lock.lock().unwrap();
///     println!("{id} has the lock");
/// }
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     let lock = Lock::new()?;
///     let children = (0..3)
///         .map(|id| Process::new(work, (lock.clone(), id)).start())
///         .collect::<multiprocess::Result<Vec<_>>>()?;
///     for child in children {
///         child.join()?;
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lock {
    state: Handle<PidLock>,
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            state: Handle::create("multiprocess-lock", 0)?,
        })
    }

    /// Takes the lock, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.state.lock(sys::getpid(), Deadline::NEVER);
        Ok(())
    }

    /// Takes the lock, waiting at most `timeout`; `false` if it stayed held.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.state.lock(sys::getpid(), Deadline::after(timeout)) != Acquired::No)
    }

    /// Takes the lock if it is free now (Python's `acquire(False)`).
    pub fn try_acquire(&self) -> Result<bool> {
        Ok(self.state.try_lock(sys::getpid()))
    }

    /// Frees the lock. Any process may free it; freeing an unlocked lock is an
    /// [`Error::ReleasedTooOften`].
    pub fn release(&self) -> Result<()> {
        if self.state.unlock() {
            Ok(())
        } else {
            Err(released_too_often())
        }
    }

    /// Whether some process holds the lock.
    pub fn locked(&self) -> bool {
        self.state.owner() != 0
    }

    /// Takes the lock until the guard is dropped (Python's `with lock:`).
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        self.acquire()?;
        Ok(LockGuard { lock: self })
    }

    /// Whether this process holds the lock.
    pub(crate) fn held_here(&self) -> bool {
        self.state.owner() == sys::getpid()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owner = self.state.owner();
        f.debug_struct("Lock")
            .field("owner_pid", &(owner != 0).then_some(owner))
            .finish()
    }
}

/// Holds a [`Lock`] until dropped; made by [`Lock::lock`].
///
/// ```
/// let lock = multiprocess::Lock::new()?;
/// drop(lock.lock()?);
/// assert!(!lock.locked());
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Fails only if someone else released the lock meanwhile (allowed for a Lock).
        let _ = self.lock.release();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", self.lock)
            .finish()
    }
}

/// The state of an [`RLock`].
#[repr(C)]
pub(crate) struct RLockState {
    lock: PidLock,
    /// The owning thread's id, 0 when free: written after `lock` is taken, cleared before it is
    /// freed, so a thread that reads its own id here holds the lock.
    tid: AtomicU32,
    _pad: AtomicU32,
    /// How many times the owner holds the lock; only the owner reads or writes it.
    count: AtomicU64,
}

// SAFETY: atomics only; all-zero bytes are a free lock.
unsafe impl ShmState for RLockState {}

/// A recursive lock shared between processes, as Python's `multiprocessing.RLock`: the thread
/// that holds it may acquire it again, and must release it as many times; only that thread may
/// release it.
///
/// The owner is a thread (its kernel thread id, unique in the system), and the lock records the
/// owning process too: if that process dies, a waiter takes the lock over within about 100 ms.
///
/// ```
/// use multiprocess::RLock;
/// let lock = RLock::new()?;
/// for _ in 0..3 {
///     lock.acquire()?;
/// }
/// for _ in 0..3 {
///     lock.release()?;
/// }
/// assert!(lock.release().is_err()); // not held any more
/// let guard = lock.lock()?;
/// let again = lock.lock()?; // recursive
/// drop((again, guard));
/// assert!(!lock.locked());
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RLock {
    state: Handle<RLockState>,
}

impl RLock {
    /// A new, unlocked recursive lock.
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            state: Handle::create("multiprocess-rlock", 0)?,
        })
    }

    /// Takes the lock (again, if this thread holds it), waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_until(Deadline::NEVER);
        Ok(())
    }

    /// Takes the lock, waiting at most `timeout`; `false` if another thread kept it.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.acquire_until(Deadline::after(timeout)))
    }

    /// Takes the lock if it is free or already this thread's (Python's `acquire(False)`).
    pub fn try_acquire(&self) -> Result<bool> {
        if self.again() {
            return Ok(true);
        }
        let taken = self.state.lock.try_lock(sys::getpid());
        if taken {
            self.became_owner();
        }
        Ok(taken)
    }

    /// Releases one level of the lock. Only the owning thread may; otherwise an
    /// [`Error::LockNotHeld`].
    pub fn release(&self) -> Result<()> {
        if !self.is_mine() {
            return Err(Error::LockNotHeld);
        }
        let s = &*self.state;
        let count = s.count.load(Ordering::Relaxed);
        if count > 1 {
            s.count.store(count - 1, Ordering::Relaxed);
        } else {
            s.count.store(0, Ordering::Relaxed);
            s.tid.store(0, Ordering::Relaxed);
            s.lock.unlock();
        }
        Ok(())
    }

    /// Whether some thread holds the lock.
    pub fn locked(&self) -> bool {
        self.state.lock.owner() != 0
    }

    /// Takes the lock until the guard is dropped (Python's `with lock:`).
    pub fn lock(&self) -> Result<RLockGuard<'_>> {
        self.acquire()?;
        Ok(RLockGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    /// Takes the lock until the guard is dropped; cannot fail.
    pub(crate) fn hold(&self) -> RLockGuard<'_> {
        self.acquire_until(Deadline::NEVER);
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock for the calling thread alone, not re-entrant: until the guard is
    /// dropped every other acquire waits, even one from this thread (so nothing else can
    /// touch what the lock guards: an [`ArrayGuard`](crate::ArrayGuard) lends it out as a
    /// slice). Fails at once if this thread holds the lock already.
    pub(crate) fn hold_alone(&self) -> Result<RLockAlone<'_>> {
        if self.is_mine() {
            return Err(Error::InvalidArgument(
                "this thread holds the lock already: a view of what it guards needs it alone"
                    .into(),
            ));
        }
        // Without a deadline this only returns once the lock is taken.
        let _ = self.state.lock.lock(sys::getpid(), Deadline::NEVER);
        // No thread is recorded as owner, so no thread re-enters (a dead owner's leftovers are
        // cleared too).
        let s = &*self.state;
        s.tid.store(0, Ordering::Relaxed);
        s.count.store(0, Ordering::Relaxed);
        Ok(RLockAlone {
            lock: self,
            _not_send: PhantomData,
        })
    }

    fn acquire_until(&self, deadline: Deadline) -> bool {
        if self.again() {
            return true;
        }
        if self.state.lock.lock(sys::getpid(), deadline) == Acquired::No {
            return false;
        }
        self.became_owner();
        true
    }

    /// Whether the calling thread holds the lock.
    fn is_mine(&self) -> bool {
        let s = &*self.state;
        s.lock.owner() == sys::getpid() && s.tid.load(Ordering::Relaxed) == sys::gettid()
    }

    /// Acquires once more if the calling thread holds the lock.
    fn again(&self) -> bool {
        if !self.is_mine() {
            return false;
        }
        // Only the owner touches the count; 2^64 levels cannot be reached.
        self.state.count.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Records the calling thread as owner, once the pid lock is taken.
    fn became_owner(&self) {
        let s = &*self.state;
        s.tid.store(sys::gettid(), Ordering::Relaxed);
        s.count.store(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &*self.state;
        let owner = s.lock.owner();
        f.debug_struct("RLock")
            .field("owner_pid", &(owner != 0).then_some(owner))
            .field("owner_tid", &s.tid.load(Ordering::Relaxed))
            .finish()
    }
}

/// Holds one level of an [`RLock`] until dropped; made by [`RLock::lock`].
///
/// ```
/// let lock = multiprocess::RLock::new()?;
/// let guard = lock.lock()?;
/// assert!(lock.locked());
/// drop(guard);
/// assert!(!lock.locked());
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    /// The lock belongs to the thread that took it: the guard stays in that thread.
    _not_send: PhantomData<*const ()>,
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // The guard's thread holds the lock (a guard is not Send), so this cannot fail.
        let _ = self.lock.release();
    }
}

/// Holds an [`RLock`] taken with `hold_alone` (no thread may re-enter) until dropped.
pub(crate) struct RLockAlone<'a> {
    lock: &'a RLock,
    /// Held by the thread that took it.
    _not_send: PhantomData<*const ()>,
}

impl Drop for RLockAlone<'_> {
    fn drop(&mut self) {
        self.lock.state.lock.unlock();
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("lock", self.lock)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zeroed lock state in ordinary memory (atomics only, so zero is a free lock).
    fn fresh() -> Box<PidLock> {
        Box::new(PidLock {
            owner: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            owner_start: AtomicU64::new(0),
        })
    }

    /// A lock whose recorded owner's pid now names another process (here: pid 1, with a start
    /// time that is not its own) is taken over; one held by a live owner is not.
    #[test]
    fn a_reused_pid_does_not_keep_a_dead_owners_lock() {
        let me = sys::getpid();
        let init_start = sys::process_start_time(1).expect("pid 1 exists");

        let stale = fresh();
        stale.owner.store(1, Ordering::SeqCst);
        stale
            .owner_start
            .store(init_start + 12_345, Ordering::SeqCst);
        assert_eq!(
            stale.lock(me, Deadline::after(Duration::from_secs(5))),
            Acquired::FromDead
        );

        let live = fresh();
        live.owner.store(1, Ordering::SeqCst);
        live.owner_start.store(init_start, Ordering::SeqCst);
        assert_eq!(
            live.lock(me, Deadline::after(Duration::from_millis(300))),
            Acquired::No
        );
    }
}
