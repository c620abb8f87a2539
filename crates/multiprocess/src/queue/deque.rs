//! The shared byte deque under every queue: variable-size records in a ring of shared memory.
//!
//! ## Layout
//!
//! One [`Region`]: a [`Header`] in the first page, then the ring, `cap` bytes (a power of two)
//! starting at file offset `data_start`. `head` and `tail` are byte *counters* that only move
//! forward (a position in the ring is `counter % cap`); the live records are `[head, tail)`.
//! A record is `[len: u64][bytes, padded to 8][len: u64]`: the length at both ends lets a record
//! be taken from the front (FIFO) or from the back (LIFO), and records may wrap around the
//! ring's end.
//!
//! ## Algorithm
//!
//! Every operation takes the region's [`RobustMutex`] and:
//! - `push`: if the ring lacks room, *grows* it (below); copies the record into the free space
//!   after `tail` (which nothing references yet); then publishes it with one journal commit of
//!   `{tail, count}`; then notifies `not_empty`.
//! - `pop`: copies the front (or back) record out; then commits `{head (or tail), count}`; then
//!   notifies `not_full`.
//! - growing: makes a ring of twice the needed size in fresh space after the current ring,
//!   copies the live bytes to its start, commits `{data_start, cap, head, tail}`, and gives the
//!   old ring's pages back to the system.
//!
//! ## Invariants (hold whenever the mutex is free or its owner died, after journal recovery)
//!
//! - `head <= tail`, `tail - head <= cap`, and `[head, tail)` holds exactly `count` whole,
//!   committed records.
//! - Bytes outside `[head, tail)` are never read as records.
//! - `count <= maxsize` when `maxsize > 0`.
//!
//! So a process killed at any instant leaves either the state before its operation or the state
//! after it: a record is delivered whole or not at all (a consumer killed while copying leaves
//! the record in place for the next one), and the next locker recovers the lock. Sleepers wait on
//! [`EventCount`]s, whose sleeps are capped, so a notifier that dies cannot strand them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::{EventCount, Journal, Region, RobustMutex, RobustMutexGuard};

/// Marks a region as a queue region of this layout version.
const MAGIC: u64 = 0x6d70_7175_6575_6531; // "mpqueue1"

/// File offset of the first ring (the header fits in the first page).
const FIRST_DATA_START: u64 = 4096;

/// The first ring's size.
const INITIAL_CAP: u64 = 64 * 1024;

/// Address space reserved per queue: the ring can grow until its successive copies fill it
/// (items up to about 1 GiB).
const RESERVE: usize = 8 << 30;

/// Bytes a record takes around its payload.
const RECORD_OVERHEAD: u64 = 16;

/// The shared state of a queue, at the start of its region.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    /// The most records the queue holds; 0 for no limit. Set at creation, never changed.
    maxsize: AtomicU64,
    mutex: RobustMutex,
    journal: Journal,
    // Journaled state: changed only through `journal.commit`.
    head: AtomicU64,
    tail: AtomicU64,
    count: AtomicU64,
    cap: AtomicU64,
    data_start: AtomicU64,
    /// Items put and not yet marked done (`JoinableQueue`).
    unfinished: AtomicU64,
    // Notifications.
    not_empty: EventCount,
    not_full: EventCount,
    all_done: EventCount,
}

const _: () = assert!(std::mem::size_of::<Header>() as u64 <= FIRST_DATA_START);

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
        Wait::Until(Some(Instant::now() + timeout))
    }

    /// The time left, or `None` when the wait is over.
    fn left(self) -> Option<Option<Duration>> {
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

/// A byte deque in shared memory, as described in the module docs.
pub(crate) struct SharedDeque {
    region: Region,
}

/// The lock, held, with the header it guards.
struct Locked<'a> {
    h: &'a Header,
    _guard: RobustMutexGuard<'a>,
}

fn round8(n: u64) -> u64 {
    (n + 7) & !7
}

impl SharedDeque {
    /// A new, empty deque holding at most `maxsize` records (0: no limit).
    pub(crate) fn create(maxsize: u64) -> Result<SharedDeque> {
        let region = Region::create(
            "multiprocess-queue",
            FIRST_DATA_START + INITIAL_CAP,
            RESERVE,
        )?;
        let header = region.base().cast::<Header>();
        // SAFETY: the region is fresh, zeroed, at least a page long and not yet shared; all-zero
        // bytes are a valid Header except for the mutex, initialised here before first use.
        unsafe {
            RobustMutex::init(std::ptr::addr_of_mut!((*header).mutex))?;
            let h = &*header;
            h.maxsize.store(maxsize, Ordering::Relaxed);
            h.cap.store(INITIAL_CAP, Ordering::Relaxed);
            h.data_start.store(FIRST_DATA_START, Ordering::Relaxed);
            h.magic.store(MAGIC, Ordering::Release);
        }
        Ok(SharedDeque { region })
    }

    /// A deque over a region received from another process.
    pub(crate) fn from_region(region: Region) -> Result<SharedDeque> {
        let deque = SharedDeque { region };
        if deque.header().magic.load(Ordering::Acquire) != MAGIC {
            return Err(Error::Decode(
                "the shared memory received is not a queue".into(),
            ));
        }
        Ok(deque)
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    fn header(&self) -> &Header {
        // SAFETY: the region starts with a Header (written by `create`, checked by
        // `from_region`) and stays mapped as long as self.
        unsafe { &*self.region.base().cast::<Header>() }
    }

    fn lock(&self) -> Result<Locked<'_>> {
        let h = self.header();
        let (guard, owner_died) = h.mutex.lock()?;
        if owner_died {
            // SAFETY: the journal's offsets were taken from this region's base in some process;
            // offsets are position-independent, and all of them lie in the header.
            unsafe { h.journal.recover(self.region.base()) };
            guard.mark_consistent();
        }
        Ok(Locked { h, _guard: guard })
    }

    /// The number of records (exact; no lock needed).
    pub(crate) fn len(&self) -> u64 {
        self.header().count.load(Ordering::Acquire)
    }

    /// The most records it holds (0: no limit).
    pub(crate) fn maxsize(&self) -> u64 {
        self.header().maxsize.load(Ordering::Relaxed)
    }

    /// Items put and not yet marked done.
    pub(crate) fn unfinished(&self) -> u64 {
        self.header().unfinished.load(Ordering::Acquire)
    }

    /// A pointer to ring position `counter`.
    fn ring_ptr(&self, h: &Header, counter: u64) -> *mut u8 {
        let cap = h.cap.load(Ordering::Relaxed);
        let offset = h.data_start.load(Ordering::Relaxed) + (counter & (cap - 1));
        // SAFETY: data_start + cap lies inside the region's file (kept so by `grow`), and the
        // position is below cap.
        unsafe { self.region.base().add(offset as usize) }
    }

    /// Copies `bytes` into the ring at `counter`, wrapping at the end.
    fn write_ring(&self, h: &Header, counter: u64, bytes: &[u8]) {
        let cap = h.cap.load(Ordering::Relaxed);
        let pos = counter & (cap - 1);
        let first = bytes.len().min((cap - pos) as usize);
        // SAFETY: both parts lie inside the ring (first <= cap - pos, the rest < cap), which is
        // shared memory no committed record occupies (the caller writes past `tail`).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ring_ptr(h, counter), first);
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr().add(first),
                self.ring_ptr(h, counter + first as u64),
                bytes.len() - first,
            );
        }
    }

    /// Copies ring bytes at `counter` into `out`, wrapping at the end.
    fn read_ring(&self, h: &Header, counter: u64, out: &mut [u8]) {
        let cap = h.cap.load(Ordering::Relaxed);
        let pos = counter & (cap - 1);
        let first = out.len().min((cap - pos) as usize);
        // SAFETY: both parts lie inside the ring, in committed records `[head, tail)`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ring_ptr(h, counter), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(
                self.ring_ptr(h, counter + first as u64),
                out.as_mut_ptr().add(first),
                out.len() - first,
            );
        }
    }

    fn read_u64(&self, h: &Header, counter: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read_ring(h, counter, &mut b);
        u64::from_le_bytes(b)
    }

    /// Makes room for `needed` more bytes (see "growing" in the module docs).
    fn grow(&self, h: &Header, needed: u64) -> Result<()> {
        let (head, tail) = (
            h.head.load(Ordering::Relaxed),
            h.tail.load(Ordering::Relaxed),
        );
        let (cap, start) = (
            h.cap.load(Ordering::Relaxed),
            h.data_start.load(Ordering::Relaxed),
        );
        let used = tail - head;
        let new_cap = ((used + needed) * 2).next_power_of_two().max(INITIAL_CAP);
        let new_start = start + cap;
        if new_start + new_cap > self.region.reserve() as u64 {
            return Err(Error::Encode(format!(
                "an item of {needed} bytes does not fit in a queue's shared memory"
            )));
        }
        self.region.grow_to(new_start + new_cap)?;
        let mut live = vec![0u8; used as usize];
        self.read_ring(h, head, &mut live);
        // SAFETY: the new ring lies inside the grown file, past every byte in use.
        unsafe {
            std::ptr::copy_nonoverlapping(
                live.as_ptr(),
                self.region.base().add(new_start as usize),
                live.len(),
            );
        }
        h.journal.commit(
            self.region.base(),
            &[
                (&h.data_start, new_start),
                (&h.cap, new_cap),
                (&h.head, 0),
                (&h.tail, used),
            ],
        );
        self.region.release(start, cap);
        Ok(())
    }

    /// Appends a record. With a limit and a full deque, waits per `wait`; fails with
    /// [`Error::Full`] when the wait ends first. `joinable` also counts the item as unfinished.
    pub(crate) fn push(&self, bytes: &[u8], wait: Wait, joinable: bool) -> Result<()> {
        let len = bytes.len() as u64;
        let size = RECORD_OVERHEAD + round8(len);
        loop {
            let l = self.lock()?;
            let h = l.h;
            let maxsize = h.maxsize.load(Ordering::Relaxed);
            let count = h.count.load(Ordering::Relaxed);
            if maxsize == 0 || count < maxsize {
                let (head, tail) = (
                    h.head.load(Ordering::Relaxed),
                    h.tail.load(Ordering::Relaxed),
                );
                if h.cap.load(Ordering::Relaxed) - (tail - head) < size {
                    self.grow(h, size)?;
                }
                let tail = h.tail.load(Ordering::Relaxed);
                self.write_ring(h, tail, &len.to_le_bytes());
                self.write_ring(h, tail + 8, bytes);
                self.write_ring(h, tail + size - 8, &len.to_le_bytes());
                let unfinished = h.unfinished.load(Ordering::Relaxed) + u64::from(joinable);
                h.journal.commit(
                    self.region.base(),
                    &[
                        (&h.tail, tail + size),
                        (&h.count, count + 1),
                        (&h.unfinished, unfinished),
                    ],
                );
                h.not_empty.notify(1);
                return Ok(());
            }
            let Some(left) = wait.left() else {
                return Err(Error::Full);
            };
            let ticket = h.not_full.prepare();
            drop(l);
            ticket.sleep(left);
        }
    }

    /// Takes the record at `end`. Waits per `wait` while the deque is empty; fails with
    /// [`Error::Empty`] when the wait ends first.
    pub(crate) fn pop(&self, end: End, wait: Wait) -> Result<Vec<u8>> {
        loop {
            let l = self.lock()?;
            let h = l.h;
            let count = h.count.load(Ordering::Relaxed);
            if count > 0 {
                let (head, tail) = (
                    h.head.load(Ordering::Relaxed),
                    h.tail.load(Ordering::Relaxed),
                );
                let (start, len) = match end {
                    End::Front => (head, self.read_u64(h, head)),
                    End::Back => {
                        let len = self.read_u64(h, tail - 8);
                        (tail - RECORD_OVERHEAD - round8(len), len)
                    }
                };
                let size = RECORD_OVERHEAD + round8(len);
                if len > tail - head || size > tail - head {
                    return Err(Error::Decode("a queue record is corrupt".into()));
                }
                let mut out = vec![0u8; len as usize];
                self.read_ring(h, start + 8, &mut out);
                let moved = match end {
                    End::Front => (&h.head, head + size),
                    End::Back => (&h.tail, start),
                };
                h.journal
                    .commit(self.region.base(), &[moved, (&h.count, count - 1)]);
                h.not_full.notify(1);
                return Ok(out);
            }
            let Some(left) = wait.left() else {
                return Err(Error::Empty);
            };
            let ticket = h.not_empty.prepare();
            drop(l);
            ticket.sleep(left);
        }
    }

    /// Marks one item done (`JoinableQueue::task_done`).
    pub(crate) fn task_done(&self) -> Result<()> {
        let l = self.lock()?;
        let h = l.h;
        let unfinished = h.unfinished.load(Ordering::Relaxed);
        if unfinished == 0 {
            return Err(Error::InvalidState(
                "task_done() called too many times".into(),
            ));
        }
        h.journal
            .commit(self.region.base(), &[(&h.unfinished, unfinished - 1)]);
        if unfinished == 1 {
            h.all_done.notify(i32::MAX);
        }
        Ok(())
    }

    /// Waits until every item put has been marked done; `false` if `wait` ended first.
    pub(crate) fn join(&self, wait: Wait) -> Result<bool> {
        loop {
            let l = self.lock()?;
            if l.h.unfinished.load(Ordering::Relaxed) == 0 {
                return Ok(true);
            }
            let Some(left) = wait.left() else {
                return Ok(false);
            };
            let ticket = l.h.all_done.prepare();
            drop(l);
            ticket.sleep(left);
        }
    }
}
