//! The shared byte deque under every queue: variable-size records in a ring of shared memory,
//! with one lock for the producers' end and one for the consumers' end (the two-lock queue of
//! Michael and Scott, over a byte ring), so a producer and a consumer never wait for each other.
//!
//! ## Layout
//!
//! One [`Region`]: a [`Header`] in the first page, then the ring, `cap` bytes (a power of two)
//! starting at file offset `data_start`. The state of each end is **one 64-bit word**:
//! - `tail_word` = `tail` (a byte counter, 40 bits) | `puts` (records pushed, 24 bits), written
//!   only under `tail_lock`;
//! - `head_word` = `head` (40 bits) | `gets` (records taken from the front, 24 bits), written
//!   only under `head_lock`.
//!
//! Counters only move forward (modulo 2^40 and 2^24); a ring position is `counter % cap`, the
//! live records are `[head, tail)` and there are `puts - gets` of them (so at most 2^24 - 1 at
//! once). A record is `[len: u64][bytes, padded to 8][len: u64]`: the length at both ends lets a
//! record be taken from the front (FIFO) or from the back (LIFO), and records may wrap around the
//! ring's end.
//!
//! ## Algorithm
//!
//! - `push` (under `tail_lock`): if the ring lacks room, grow it (below); copy the record into
//!   the free space after `tail`, which nothing references; publish it with **one** release
//!   store of `tail_word`; notify `not_empty`.
//! - `pop` from the front (under `head_lock`): copy the record at `head` out; release it with one
//!   store of `head_word`; notify `not_full`. From the back (LIFO, under `tail_lock`): the same
//!   with the record that ends at `tail`, storing `tail_word`.
//! - growing (under both locks, tail first): make a ring of twice the needed size in fresh space
//!   after the current one, copy the live bytes to its start, commit
//!   `{data_start, cap, head_word, tail_word}` in one [`Journal`] commit, and give the old ring's
//!   pages back to the system.
//! - `JoinableQueue`: a joinable push commits `{tail_word, unfinished}` through the tail journal;
//!   `task_done` commits `{unfinished}` there too (both under `tail_lock`).
//!
//! ## Crash safety
//!
//! Each end's state changes with one atomic store, after the data it publishes or releases has
//! been copied; multi-word changes go through a journal. So a process killed at any instant
//! leaves the old state or the new one: a record is delivered whole or not at all (a consumer
//! killed while copying leaves the record for the next one). A lock whose holder died is taken
//! over by the next locker (robust mutex), which first replays any interrupted journal commit.
//! The grow journal may be replayed by a holder of either lock, since growing needs both; the
//! tail journal only under `tail_lock`. Sleepers wait on [`EventCount`]s, whose sleeps are
//! capped, so a notifier that dies cannot strand them.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::{EventCount, Journal, Region, RobustMutex, RobustMutexGuard};

/// Marks a region as a queue region of this layout version.
const MAGIC: u64 = 0x6d70_7175_6575_6533; // "mpqueue3"

/// File offset of the first ring (the header fits in the first page).
const FIRST_DATA_START: u64 = 4096;

/// The first ring's size.
const INITIAL_CAP: u64 = 64 * 1024;

/// Address space reserved per queue: the ring can grow until its successive copies fill it
/// (items up to about 1 GiB).
const RESERVE: usize = 8 << 30;

/// Bytes a record takes around its payload.
const RECORD_OVERHEAD: u64 = 16;

/// Bits of a state word that hold the byte counter; the rest hold the record counter.
const BYTE_BITS: u32 = 40;
const BYTE_MASK: u64 = (1 << BYTE_BITS) - 1;
const RECORD_MASK: u64 = (1 << (64 - BYTE_BITS)) - 1;

/// The most records a queue holds at once.
pub(crate) const MAX_ITEMS: u64 = RECORD_MASK;

fn pack(bytes: u64, records: u64) -> u64 {
    (bytes & BYTE_MASK) | ((records & RECORD_MASK) << BYTE_BITS)
}

fn unpack(word: u64) -> (u64, u64) {
    (word & BYTE_MASK, word >> BYTE_BITS)
}

/// Pads to a cache line so that the two ends do not share one.
#[repr(C, align(64))]
struct Line<T>(T);

/// The producers' end.
#[repr(C)]
struct TailEnd {
    lock: RobustMutex,
    journal: Journal,
    word: AtomicU64,
    /// Items put and not yet marked done (`JoinableQueue`); journaled with `word`.
    unfinished: AtomicU64,
}

/// The consumers' end.
#[repr(C)]
struct HeadEnd {
    lock: RobustMutex,
    word: AtomicU64,
}

/// The shared state of a queue, at the start of its region.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    /// The most records the queue holds. Set at creation, never changed.
    maxsize: AtomicU64,
    /// Changed only by growing, under both locks, through `grow_journal`.
    cap: AtomicU64,
    data_start: AtomicU64,
    grow_journal: Journal,
    tail: Line<TailEnd>,
    head: Line<HeadEnd>,
    not_empty: Line<EventCount>,
    not_full: Line<EventCount>,
    all_done: Line<EventCount>,
    /// How many readers wait through a file descriptor (see [`SharedDeque::arm_doorbell`]).
    doorbell: Line<AtomicU32>,
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

fn round8(n: u64) -> u64 {
    (n + 7) & !7
}

/// A byte deque in shared memory, as described in the module docs.
pub(crate) struct SharedDeque {
    region: Region,
}

impl std::fmt::Debug for SharedDeque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDeque")
            .field("len", &self.len())
            .finish()
    }
}

impl SharedDeque {
    /// A new, empty deque holding at most `maxsize` records (0: no limit but [`MAX_ITEMS`]).
    pub(crate) fn create(maxsize: u64) -> Result<SharedDeque> {
        if maxsize > MAX_ITEMS {
            return Err(Error::InvalidState(format!(
                "a queue holds at most {MAX_ITEMS} items"
            )));
        }
        let region = Region::create(
            "multiprocess-queue",
            FIRST_DATA_START + INITIAL_CAP,
            RESERVE,
        )?;
        let header = region.base().cast::<Header>();
        // SAFETY: the region is fresh, zeroed, at least a page long and not yet shared; all-zero
        // bytes are a valid Header except for the mutexes, initialised here before first use.
        unsafe {
            RobustMutex::init(std::ptr::addr_of_mut!((*header).tail.0.lock))?;
            RobustMutex::init(std::ptr::addr_of_mut!((*header).head.0.lock))?;
            let h = &*header;
            h.maxsize.store(
                if maxsize == 0 { MAX_ITEMS } else { maxsize },
                Ordering::Relaxed,
            );
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

    /// Replays an interrupted grow. Call holding either lock (growing needs both, so nobody is
    /// growing now).
    fn recover_grow(&self) {
        // SAFETY: journal offsets are taken from this region's base; all lie in the header.
        unsafe { self.header().grow_journal.recover(self.region.base()) };
    }

    fn lock_tail(&self) -> Result<RobustMutexGuard<'_>> {
        let h = self.header();
        let (guard, owner_died) = h.tail.0.lock.lock()?;
        if owner_died {
            self.recover_grow();
            // SAFETY: as in `recover_grow`; we hold the tail lock that guards this journal.
            unsafe { h.tail.0.journal.recover(self.region.base()) };
            guard.mark_consistent();
        }
        Ok(guard)
    }

    fn lock_head(&self) -> Result<RobustMutexGuard<'_>> {
        let (guard, owner_died) = self.header().head.0.lock.lock()?;
        if owner_died {
            self.recover_grow();
            guard.mark_consistent();
        }
        Ok(guard)
    }

    /// `(tail, puts)` and `(head, gets)`.
    fn ends(&self) -> ((u64, u64), (u64, u64)) {
        let h = self.header();
        (
            unpack(h.tail.0.word.load(Ordering::Acquire)),
            unpack(h.head.0.word.load(Ordering::Acquire)),
        )
    }

    /// The number of records: exact whenever no operation is under way.
    pub(crate) fn len(&self) -> u64 {
        let h = self.header();
        let gets = unpack(h.head.0.word.load(Ordering::Acquire)).1;
        let puts = unpack(h.tail.0.word.load(Ordering::Acquire)).1;
        puts.wrapping_sub(gets) & RECORD_MASK
    }

    /// The most records it holds, or 0 for no limit.
    pub(crate) fn maxsize(&self) -> u64 {
        match self.header().maxsize.load(Ordering::Relaxed) {
            MAX_ITEMS => 0,
            n => n,
        }
    }

    /// Items put and not yet marked done.
    pub(crate) fn unfinished(&self) -> u64 {
        self.header().tail.0.unfinished.load(Ordering::Acquire)
    }

    /// A pointer to ring position `counter`.
    fn ring_ptr(&self, counter: u64) -> *mut u8 {
        let h = self.header();
        let cap = h.cap.load(Ordering::Acquire);
        let offset = h.data_start.load(Ordering::Acquire) + (counter & (cap - 1));
        // SAFETY: data_start + cap lies inside the region's file (kept so by `grow`), and the
        // position is below cap.
        unsafe { self.region.base().add(offset as usize) }
    }

    /// Copies `bytes` into the ring at `counter`, wrapping at the end.
    fn write_ring(&self, counter: u64, bytes: &[u8]) {
        let cap = self.header().cap.load(Ordering::Acquire);
        let first = bytes.len().min((cap - (counter & (cap - 1))) as usize);
        // SAFETY: both parts lie inside the ring (first <= cap - pos, the rest < cap), in free
        // space that no published record occupies (the caller writes past `tail`).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ring_ptr(counter), first);
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr().add(first),
                self.ring_ptr(counter + first as u64),
                bytes.len() - first,
            );
        }
    }

    /// Copies ring bytes at `counter` into `out`, wrapping at the end.
    fn read_ring(&self, counter: u64, out: &mut [u8]) {
        let cap = self.header().cap.load(Ordering::Acquire);
        let first = out.len().min((cap - (counter & (cap - 1))) as usize);
        // SAFETY: both parts lie inside the ring, in published records `[head, tail)`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ring_ptr(counter), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(
                self.ring_ptr(counter + first as u64),
                out.as_mut_ptr().add(first),
                out.len() - first,
            );
        }
    }

    fn read_len(&self, counter: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read_ring(counter, &mut b);
        u64::from_le_bytes(b)
    }

    /// Makes room for `needed` more bytes (see "growing" in the module docs). Call holding the
    /// tail lock; takes the head lock.
    fn grow(&self, needed: u64) -> Result<()> {
        let _head_guard = self.lock_head()?;
        let h = self.header();
        let ((tail, puts), (head, gets)) = self.ends();
        let (cap, start) = (
            h.cap.load(Ordering::Relaxed),
            h.data_start.load(Ordering::Relaxed),
        );
        let used = tail.wrapping_sub(head) & BYTE_MASK;
        let new_cap = ((used + needed) * 2).next_power_of_two().max(INITIAL_CAP);
        let new_start = start + cap;
        if new_cap > 1 << BYTE_BITS || new_start + new_cap > self.region.reserve() as u64 {
            return Err(Error::Encode(format!(
                "an item of {needed} bytes does not fit in a queue's shared memory"
            )));
        }
        self.region.grow_to(new_start + new_cap)?;
        let mut live = vec![0u8; used as usize];
        self.read_ring(head, &mut live);
        // SAFETY: the new ring lies inside the grown file, past every byte in use.
        unsafe {
            std::ptr::copy_nonoverlapping(
                live.as_ptr(),
                self.region.base().add(new_start as usize),
                live.len(),
            );
        }
        h.grow_journal.commit(
            self.region.base(),
            &[
                (&h.data_start, new_start),
                (&h.cap, new_cap),
                (&h.head.0.word, pack(0, gets)),
                (&h.tail.0.word, pack(used, puts)),
            ],
        );
        self.region.release(start, cap);
        Ok(())
    }

    /// Appends a record. While the deque holds `maxsize` records, waits per `wait`, and fails
    /// with [`Error::Full`] when the wait ends first. `joinable` also counts the item as
    /// unfinished.
    pub(crate) fn push(&self, bytes: &[u8], wait: Wait, joinable: bool) -> Result<()> {
        self.push_parts(&[bytes], wait, joinable)
    }

    /// As [`push`](Self::push), for a record made of several parts written one after another
    /// (so a small header needs no copy of the payload).
    pub(crate) fn push_parts(&self, parts: &[&[u8]], wait: Wait, joinable: bool) -> Result<()> {
        let h = self.header();
        let len = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let size = RECORD_OVERHEAD + round8(len);
        let maxsize = h.maxsize.load(Ordering::Relaxed);
        let mut spun = false;
        loop {
            let guard = self.lock_tail()?;
            if self.len() < maxsize {
                let ((tail, _), (head, _)) = self.ends();
                let used = tail.wrapping_sub(head) & BYTE_MASK;
                if h.cap.load(Ordering::Relaxed) - used < size {
                    self.grow(size)?;
                }
                let (tail, puts) = unpack(h.tail.0.word.load(Ordering::Relaxed));
                self.write_ring(tail, &len.to_le_bytes());
                let mut at = tail + 8;
                for part in parts {
                    self.write_ring(at, part);
                    at += part.len() as u64;
                }
                self.write_ring(tail + size - 8, &len.to_le_bytes());
                let published = pack(tail + size, puts + 1);
                if joinable {
                    let unfinished = h.tail.0.unfinished.load(Ordering::Relaxed) + 1;
                    h.tail.0.journal.commit(
                        self.region.base(),
                        &[
                            (&h.tail.0.word, published),
                            (&h.tail.0.unfinished, unfinished),
                        ],
                    );
                } else {
                    h.tail.0.word.store(published, Ordering::Release);
                }
                drop(guard);
                h.not_empty.0.notify(1);
                return Ok(());
            }
            let Some(left) = wait.left() else {
                return Err(Error::Full);
            };
            if !spun {
                drop(guard);
                spun = true;
                spin_until(|| self.len() < maxsize);
                continue;
            }
            spun = false;
            let ticket = h.not_full.0.prepare();
            drop(guard);
            // A consumer that frees a slot after our check notifies after our `prepare`.
            if self.len() >= maxsize {
                ticket.sleep(left);
            }
        }
    }

    /// Takes the record at `end`. While the deque is empty, waits per `wait`, and fails with
    /// [`Error::Empty`] when the wait ends first.
    pub(crate) fn pop(&self, end: End, wait: Wait) -> Result<Vec<u8>> {
        let h = self.header();
        let mut spun = false;
        loop {
            let guard = match end {
                End::Front => self.lock_head()?,
                End::Back => self.lock_tail()?,
            };
            if self.len() > 0 {
                let out = self.remove(end)?;
                drop(guard);
                h.not_full.0.notify(1);
                return Ok(out);
            }
            let Some(left) = wait.left() else {
                return Err(Error::Empty);
            };
            if !spun {
                drop(guard);
                spun = true;
                spin_until(|| self.len() > 0);
                continue;
            }
            spun = false;
            let ticket = h.not_empty.0.prepare();
            drop(guard);
            // A producer that publishes after our check notifies after our `prepare`.
            if self.len() == 0 {
                ticket.sleep(left);
            }
        }
    }

    /// Removes and returns the record at `end`. The caller holds the lock of that end and has
    /// seen at least one record.
    fn remove(&self, end: End) -> Result<Vec<u8>> {
        let h = self.header();
        let ((tail, puts), (head, gets)) = self.ends();
        let (start, len) = match end {
            End::Front => (head, self.read_len(head)),
            End::Back => {
                let len = self.read_len(tail - 8);
                (tail.wrapping_sub(RECORD_OVERHEAD + round8(len)), len)
            }
        };
        let size = RECORD_OVERHEAD + round8(len);
        if size > tail.wrapping_sub(head) & BYTE_MASK {
            return Err(Error::Decode("a queue record is corrupt".into()));
        }
        let mut out = vec![0u8; len as usize];
        self.read_ring(start + 8, &mut out);
        match end {
            End::Front => h
                .head
                .0
                .word
                .store(pack(head + size, gets + 1), Ordering::Release),
            End::Back => h
                .tail
                .0
                .word
                .store(pack(start, puts - 1), Ordering::Release),
        }
        Ok(out)
    }

    /// Takes back the newest record of a FIFO deque that a consumer may be taking from at the
    /// same moment: holds both locks, so the two can never take the same record. `None` when
    /// it holds fewer than `keep + 1` records (the oldest `keep` stay).
    pub(crate) fn take_back(&self, keep: u64) -> Result<Option<Vec<u8>>> {
        let _tail = self.lock_tail()?;
        let _head = self.lock_head()?;
        if self.len() <= keep {
            return Ok(None);
        }
        let out = self.remove(End::Back)?;
        self.header().not_full.0.notify(1);
        Ok(Some(out))
    }

    /// Registers a reader that waits on a file descriptor (a pipe's doorbell) rather than on
    /// the futex: a writer that sees [`doorbell_armed`](Self::doorbell_armed) rings it. Pair
    /// with [`disarm_doorbell`](Self::disarm_doorbell); re-check for records after arming.
    pub(crate) fn arm_doorbell(&self) {
        self.header().doorbell.0.fetch_add(1, Ordering::SeqCst);
    }

    /// Ends a registration made by [`arm_doorbell`](Self::arm_doorbell).
    pub(crate) fn disarm_doorbell(&self) {
        let _ = self
            .header()
            .doorbell
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Whether some reader waits on the doorbell (checked by a writer after each push).
    pub(crate) fn doorbell_armed(&self) -> bool {
        self.header().doorbell.0.load(Ordering::SeqCst) > 0
    }

    /// Marks one item done (`JoinableQueue::task_done`).
    pub(crate) fn task_done(&self) -> Result<()> {
        let h = self.header();
        let guard = self.lock_tail()?;
        let unfinished = h.tail.0.unfinished.load(Ordering::Relaxed);
        if unfinished == 0 {
            return Err(Error::InvalidState(
                "task_done() called too many times".into(),
            ));
        }
        h.tail.0.journal.commit(
            self.region.base(),
            &[(&h.tail.0.unfinished, unfinished - 1)],
        );
        drop(guard);
        if unfinished == 1 {
            h.all_done.0.notify(i32::MAX);
        }
        Ok(())
    }

    /// Waits until every item put has been marked done; `false` if `wait` ended first.
    pub(crate) fn join(&self, wait: Wait) -> Result<bool> {
        let h = self.header();
        loop {
            let ticket = h.all_done.0.prepare();
            if self.unfinished() == 0 {
                return Ok(true);
            }
            let Some(left) = wait.left() else {
                return Ok(false);
            };
            ticket.sleep(left);
        }
    }
}
