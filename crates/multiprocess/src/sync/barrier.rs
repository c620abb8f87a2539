//! [`Barrier`].
//!
//! Python's algorithm: a generation *fills* as parties arrive; the last arrival switches it to
//! *draining*, and the waiters leave one by one; the last to leave switches back to filling, so
//! a new generation cannot start (nor end) while an old waiter is still inside. `reset` turns a
//! filling or broken barrier with waiters inside into *resetting*, which drains the same way;
//! `abort`, a timeout or a dead party make it *broken* until `reset`.
//!
//! The phase and the number of parties inside share one word (`count << 8 | phase`), and each
//! party inside has a slot holding its pid (the slot index is its arrival index). Arrival and
//! departure change a slot and the word together, through a journal, under an internal pid
//! lock; whoever takes that lock over from a dead owner first replays an interrupted commit.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::PidLock;
use super::{owner_is_dead, sleep, wake, Deadline, Handle};
use crate::error::{Error, Result};
use crate::shm::{Journal, ShmState, MAX_SLEEP};
use crate::sys;

const FILLING: u64 = 0;
const DRAINING: u64 = 1;
const RESETTING: u64 = 2;
const BROKEN: u64 = 3;

/// The most parties a barrier may have (each takes 8 bytes of shared memory).
const MAX_PARTIES: usize = 1 << 24;

fn pack(phase: u64, count: u64) -> u64 {
    count << 8 | phase
}

fn unpack(word: u64) -> (u64, u64) {
    (word & 0xff, word >> 8)
}

/// The state of a barrier; `parties` pid slots (`AtomicU64`) follow it in the region.
#[repr(C)]
pub(crate) struct BarrierState {
    lock: PidLock,
    /// Bumped at every change of phase; the futex word waiters sleep on.
    seq: AtomicU32,
    waiters: AtomicU32,
    /// Set before the barrier is shared, never changed.
    parties: AtomicU64,
    /// `count << 8 | phase`; changed only under `lock`.
    word: AtomicU64,
    journal: Journal,
}

// SAFETY: atomics only (the journal too); all-zero bytes are a filling barrier with nobody
// inside (its creator sets `parties` before sharing it).
unsafe impl ShmState for BarrierState {}

// The slots follow the state: they must be 8-byte aligned.
const _: () = assert!(std::mem::size_of::<BarrierState>() % 8 == 0);

/// A meeting point for a fixed number of parties, shared between processes, as Python's
/// `multiprocessing.Barrier`: each party's [`wait`](Self::wait) returns once all `parties` have
/// called it, with a distinct index in `0..parties`.
///
/// A wait that times out, an [`abort`](Self::abort), or a party that dies while waiting
/// *breaks* the barrier: every waiting and later call fails with [`Error::BrokenBarrier`] until
/// [`reset`](Self::reset).
///
/// ```
/// use multiprocess::{Barrier, Error};
/// use std::time::Duration;
/// let barrier = Barrier::new(2)?;
/// let b = barrier.clone();
/// let other = std::thread::spawn(move || b.wait().unwrap());
/// let mine = barrier.wait()?;
/// let theirs = other.join().unwrap();
/// assert_eq!(mine + theirs, 1); // indices 0 and 1
///
/// // Alone, a timed wait breaks the barrier.
/// assert!(matches!(barrier.wait_timeout(Duration::from_millis(10)), Err(Error::BrokenBarrier)));
/// assert!(barrier.broken());
/// barrier.reset();
/// assert!(!barrier.broken());
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    state: Handle<BarrierState>,
    parties: usize,
}

impl Barrier {
    /// A barrier for `parties` parties (at least 1).
    pub fn new(parties: usize) -> Result<Barrier> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::InvalidArgument(format!(
                "a barrier needs between 1 and {MAX_PARTIES} parties, not {parties}"
            )));
        }
        let state = Handle::<BarrierState>::create("multiprocess-barrier", parties * 8)?;
        state.parties.store(parties as u64, Ordering::Relaxed);
        Ok(Barrier { state, parties })
    }

    /// Waits until all parties have arrived; returns this party's arrival index.
    pub fn wait(&self) -> Result<usize> {
        self.wait_until(Deadline::NEVER)
    }

    /// As [`wait`](Self::wait), for at most `timeout`: then the barrier breaks, and this and
    /// every other waiter get [`Error::BrokenBarrier`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Breaks the barrier: every waiting and later `wait` fails until [`reset`](Self::reset).
    pub fn abort(&self) {
        let inside = self.inside();
        let (_, count) = inside.read();
        inside.publish(pack(BROKEN, count));
    }

    /// Returns the barrier to its initial state. Parties waiting at that moment fail with
    /// [`Error::BrokenBarrier`]; new ones wait for them to leave first.
    pub fn reset(&self) {
        let inside = self.inside();
        inside.remove_dead();
        let (phase, count) = inside.read();
        let phase = match phase {
            _ if count == 0 => FILLING,
            FILLING | BROKEN => RESETTING,
            other => other,
        };
        inside.publish(pack(phase, count));
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        unpack(self.state.word.load(Ordering::Acquire)).0 == BROKEN
    }

    /// The number of parties needed to pass.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// The number of parties currently waiting for the others.
    pub fn n_waiting(&self) -> usize {
        match unpack(self.state.word.load(Ordering::Acquire)) {
            (FILLING, count) => count as usize,
            _ => 0,
        }
    }

    fn wait_until(&self, deadline: Deadline) -> Result<usize> {
        let me = u64::from(sys::getpid());
        let mut inside = self.inside();
        let mut checked = Instant::now();
        // Wait for a previous generation to leave (dead parties are removed, so this ends);
        // unlike Python, within the caller's deadline: on timeout nothing was joined.
        loop {
            match inside.read().0 {
                FILLING => break,
                BROKEN => return Err(Error::BrokenBarrier),
                _ => {}
            }
            if due(&mut checked) && inside.remove_dead() {
                continue;
            }
            if deadline.passed() {
                return Err(Error::Timeout);
            }
            inside.nap(deadline);
        }
        let (_, count) = inside.read();
        let index = count as usize;
        let Some(slot) = self.slots().get(index) else {
            inside.publish(pack(BROKEN, count)); // cannot happen in a consistent state
            return Err(Error::BrokenBarrier);
        };
        inside.commit(&[(slot, me)], pack(FILLING, count + 1));
        let outcome = if index + 1 == self.parties {
            inside.publish(pack(DRAINING, count + 1));
            DRAINING
        } else {
            loop {
                let (phase, count) = inside.read();
                if phase != FILLING {
                    break phase;
                }
                if deadline.passed() {
                    inside.publish(pack(BROKEN, count));
                    break BROKEN;
                }
                if due(&mut checked) && inside.remove_dead() {
                    continue;
                }
                inside.nap(deadline);
            }
        };
        // Leave; the last to leave a drained or reset generation opens the next one.
        let (phase, count) = inside.read();
        let count = count.saturating_sub(1);
        let after = match phase {
            DRAINING | RESETTING if count == 0 => FILLING,
            other => other,
        };
        inside.commit(&[(slot, 0)], pack(after, count));
        if after != phase {
            inside.notify();
        }
        drop(inside);
        if outcome == DRAINING {
            Ok(index)
        } else {
            Err(Error::BrokenBarrier)
        }
    }

    /// The pid slots.
    fn slots(&self) -> &[AtomicU64] {
        // SAFETY: the region holds `parties` 8-byte slots after the state (checked at creation
        // and when received), 8-byte aligned (the region is page-aligned and the state's size
        // a multiple of 8), zero-initialised (a valid AtomicU64), and mapped while self lives.
        unsafe {
            std::slice::from_raw_parts(
                self.state.cell().extra_ptr().cast::<AtomicU64>(),
                self.parties,
            )
        }
    }

    /// Takes the internal lock.
    fn inside(&self) -> Inside<'_> {
        let inside = Inside { barrier: self };
        inside.lock();
        inside
    }
}

/// Whether a death check is due (at most one per [`MAX_SLEEP`]), recording it if so.
fn due(checked: &mut Instant) -> bool {
    let now = Instant::now();
    if now.duration_since(*checked) >= MAX_SLEEP {
        *checked = now;
        true
    } else {
        false
    }
}

/// The internal lock, held; released on drop.
struct Inside<'a> {
    barrier: &'a Barrier,
}

impl Inside<'_> {
    fn state(&self) -> &BarrierState {
        &self.barrier.state
    }

    /// The start of the region (the state is at its start), for the journal.
    fn base(&self) -> *const u8 {
        (self.state() as *const BarrierState).cast()
    }

    fn lock(&self) {
        self.state().lock.lock(sys::getpid(), Deadline::NEVER);
        // SAFETY: `base` is the start of the region, and every word ever journaled (the state
        // word and the slots) lies inside it.
        unsafe { self.state().journal.recover(self.base()) };
    }

    /// `(phase, count)`.
    fn read(&self) -> (u64, u64) {
        unpack(self.state().word.load(Ordering::Acquire))
    }

    /// Sets the slots and the state word, all or nothing.
    fn commit(&self, slots: &[(&AtomicU64, u64)], word: u64) {
        let mut writes = slots.to_vec();
        writes.push((&self.state().word, word));
        self.state().journal.commit(self.base(), &writes);
    }

    /// Sets the state word and wakes every waiter.
    fn publish(&self, word: u64) {
        self.state().word.store(word, Ordering::Release);
        self.notify();
    }

    fn notify(&self) {
        let s = self.state();
        s.seq.fetch_add(1, Ordering::SeqCst);
        wake(&s.seq, &s.waiters, i32::MAX);
    }

    /// Releases the lock for one nap (or until a change of phase), then takes it again.
    fn nap(&mut self, deadline: Deadline) {
        let s = self.state();
        let seq = s.seq.load(Ordering::SeqCst);
        s.lock.unlock();
        sleep(&s.seq, seq, &s.waiters, deadline);
        self.lock();
    }

    /// Removes the parties inside that have died; a generation still filling breaks, as it
    /// can never complete. Whether any was removed.
    fn remove_dead(&self) -> bool {
        let me = u64::from(sys::getpid());
        let mut removed = false;
        for slot in self.barrier.slots() {
            let pid = slot.load(Ordering::Relaxed);
            let dead = pid != 0 && pid != me && u32::try_from(pid).map_or(true, owner_is_dead);
            if !dead {
                continue;
            }
            let (phase, count) = self.read();
            let count = count.saturating_sub(1);
            let phase = match phase {
                FILLING => BROKEN,
                DRAINING | RESETTING if count == 0 => FILLING,
                other => other,
            };
            self.commit(&[(slot, 0)], pack(phase, count));
            removed = true;
        }
        if removed {
            self.notify();
        }
        removed
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.state().lock.unlock();
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

/// How a barrier travels to another process: its shared memory.
impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.state.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let state = Handle::<BarrierState>::deserialize(d)?;
        let parties = usize::try_from(state.parties.load(Ordering::Relaxed)).unwrap_or(0);
        if parties == 0 || parties > MAX_PARTIES || state.cell().extra_len() < parties * 8 {
            return Err(serde::de::Error::custom("not a barrier's shared memory"));
        }
        Ok(Barrier { state, parties })
    }
}
