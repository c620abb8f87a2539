//! The shared byte deque under every queue and pipe: variable-size records in a ring of shared
//! memory, with one lock for the producers' end and one for the consumers' end (the two-lock
//! queue of Michael and Scott, over a byte ring), so a producer and a consumer never wait for
//! each other.
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
//! once). Records (see `ring.rs`) carry their length at both ends, so they can be taken from the
//! front (FIFO) or the back (LIFO), and never wrap around the ring's end (a pad record fills the
//! end when needed), so a payload is one contiguous slice.
//!
//! ## Algorithm
//!
//! - `push` (under `tail_lock`): **encode the value straight into the free space after
//!   `tail`**, which nothing references. If it does not fit there, count its size, and either
//!   pad to the ring's end and encode at its start, or grow the ring (below) and encode again.
//!   Then write the record's length words, publish it with **one** release store of
//!   `tail_word`, and notify `not_empty`. A large byte string costs one copy in.
//! - `pop` from the front (under `head_lock`): skip a pad, **decode the record in place**,
//!   release it with one store of `head_word`, notify `not_full`. From the back (LIFO, under
//!   `tail_lock`): the same with the record that ends at `tail` (and the pad before it),
//!   storing `tail_word`. A large byte string costs one copy out.
//! - growing (under both locks, tail first): make a ring of at least twice the needed size in
//!   fresh space after the current one, copy the live bytes to its start, commit
//!   `{data_start, cap, head_word, tail_word}` in one [`Journal`] commit, and give the old ring's
//!   pages back to the system.
//! - shutdown (`Queue::shutdown`): one release store of `shut_down`, then a wake-up of every
//!   sleeper on `not_empty` and `not_full`. A `push` that sees it under the tail lock fails
//!   with [`Error::ShutDown`]; a `pop` that finds the deque empty reads it (then the length
//!   again, so a record published before the store is never missed) and fails the same way
//!   instead of waiting. A sleeper reads it after its `prepare`, so the wake-up cannot be lost.
//!   The record-taking path reads nothing more; a push reads the flag once.
//! - `JoinableQueue`: a joinable push commits `{tail_word, unfinished}` through the tail journal;
//!   `task_done` commits `{unfinished}` there too (both under `tail_lock`).
//! - Descriptors (OS handles inside a value, e.g. a zero-copy buffer) travel beside the ring
//!   through an [`FdChannel`] (a queue's or a pipe's socket): the producer takes a fresh id,
//!   sends the descriptors under it, and publishes the record with the id in it; the consumer
//!   asks the channel for that id's descriptors before it decodes the record, and tells it the
//!   record is taken after releasing it.
//!
//! ## Crash safety
//!
//! Each end's state changes with one atomic store, after the data it publishes or releases has
//! been written or read; multi-word changes go through a journal. So a process killed at any
//! instant leaves the old state or the new one: a record is delivered whole or not at all (a
//! producer killed while encoding publishes nothing; a consumer killed while decoding leaves the
//! record for the next one). A lock whose holder died is taken over by the next locker (robust
//! mutex), which first replays any interrupted journal commit. The grow journal may be replayed
//! by a holder of either lock, since growing needs both; the tail journal only under
//! `tail_lock`. Sleepers wait on [`EventCount`]s, whose sleeps are capped, so a notifier that
//! dies cannot strand them. A value whose encoding fails (or panics) under the lock publishes
//! nothing; a record whose decoding fails or panics is still taken, so it cannot block the
//! queue for ever.

use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub(crate) use super::items::{decode_value, Encode, FdChannel, Parts, Value};
use super::ring::{self, Counter, Ring};
pub(crate) use super::wait::{spin_until, End, Wait};
use crate::error::{Error, Result};
use crate::shm::{EventCount, Journal, Region, RobustMutex, RobustMutexGuard};

/// Marks a region as a queue region of this layout version.
const MAGIC: u64 = 0x6d70_7175_6575_6535; // "mpqueue5"

/// File offset of the first ring (the header fits in the first page).
const FIRST_DATA_START: u64 = 4096;

/// The first ring's size.
const INITIAL_CAP: u64 = 64 * 1024;

/// Address space reserved per queue: the ring can grow until its successive copies fill it
/// (items up to about 1 GiB).
const RESERVE: usize = 8 << 30;

/// Payload bytes kept free in a run of free space for a record's descriptor id and length
/// words.
const RECORD_SLACK: u64 = 24;

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
    /// The id of the descriptors last sent with a record (ids only grow: one is taken before
    /// its descriptors are sent, so a producer that dies never leaves two of one id).
    fd_seq: AtomicU64,
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
    /// Nonzero once [`SharedDeque::shutdown`] was called, by any process; never cleared.
    shut_down: AtomicU64,
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
            return Err(Error::InvalidArgument(format!(
                "a queue holds at most {MAX_ITEMS} items, not {maxsize}"
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

    /// The ring as it is now (stable while either lock is held: growing takes both).
    fn ring(&self) -> Ring {
        let h = self.header();
        let (cap, start) = (
            h.cap.load(Ordering::Acquire),
            h.data_start.load(Ordering::Acquire),
        );
        // SAFETY: data_start + cap lies inside the region's file (kept so by `grow`).
        let base = unsafe { self.region.base().add(start as usize) };
        Ring { base, cap }
    }

    /// The free bytes in one run after `tail` (up to the ring's end or to `head`).
    fn free_run(&self, tail: u64) -> u64 {
        let ring = self.ring();
        let (_, (head, _)) = self.ends();
        let used = tail.wrapping_sub(head) & BYTE_MASK;
        (ring.cap - used).min(ring.to_end(tail))
    }

    /// Makes a free run of at least `size` bytes for a record at `tail` and returns where the
    /// record starts: after a pad to the ring's end if it fits at the ring's start, else in a
    /// grown ring. Call holding the tail lock; the pad is published with the record.
    fn make_room(&self, tail: u64, size: u64) -> Result<u64> {
        let ring = self.ring();
        let (_, (head, _)) = self.ends();
        let free = ring.cap - (tail.wrapping_sub(head) & BYTE_MASK);
        let to_end = ring.to_end(tail);
        if free.min(to_end) >= size {
            return Ok(tail);
        }
        if to_end < size && free >= to_end + size {
            ring.write_pad(tail, to_end);
            return Ok(tail + to_end);
        }
        self.grow(size)?;
        Ok(unpack(self.header().tail.0.word.load(Ordering::Relaxed)).0)
    }

    /// Makes room for `needed` more contiguous bytes (see "growing" in the module docs). Call
    /// holding the tail lock; takes the head lock.
    fn grow(&self, needed: u64) -> Result<()> {
        let _head_guard = self.lock_head()?;
        let h = self.header();
        let ((tail, puts), (head, gets)) = self.ends();
        let old = self.ring();
        let start = h.data_start.load(Ordering::Relaxed);
        let used = tail.wrapping_sub(head) & BYTE_MASK;
        let new_cap = ((used + needed) * 2).next_power_of_two().max(INITIAL_CAP);
        let new_start = start + old.cap;
        if new_cap > 1 << BYTE_BITS || new_start + new_cap > self.region.reserve() as u64 {
            return Err(Error::Encode(format!(
                "an item of {needed} bytes does not fit in a queue's shared memory"
            )));
        }
        self.region.grow_to(new_start + new_cap)?;
        // SAFETY: the new ring lies inside the grown file, past every byte in use.
        old.copy_out(head, used, unsafe {
            self.region.base().add(new_start as usize)
        });
        h.grow_journal.commit(
            self.region.base(),
            &[
                (&h.data_start, new_start),
                (&h.cap, new_cap),
                (&h.head.0.word, pack(0, gets)),
                (&h.tail.0.word, pack(used, puts)),
            ],
        );
        self.region.release(start, old.cap);
        Ok(())
    }

    /// Appends a record holding what `item` encodes. While the deque holds `maxsize` records,
    /// waits per `wait`, and fails with [`Error::Full`] when the wait ends first. `joinable`
    /// also counts the item as unfinished. Descriptors the item carries go through `fds`.
    pub(crate) fn push<E: Encode>(
        &self,
        item: &mut E,
        wait: Wait,
        joinable: bool,
        fds: Option<&dyn FdChannel>,
    ) -> Result<()> {
        let h = self.header();
        let maxsize = h.maxsize.load(Ordering::Relaxed);
        let mut spun = false;
        loop {
            let guard = self.lock_tail()?;
            if self.is_shut_down() {
                return Err(Error::ShutDown);
            }
            if self.len() < maxsize {
                let written = self.write_record(item, wait, joinable, fds);
                drop(guard);
                if written.is_ok() {
                    h.not_empty.0.notify(1);
                }
                return written;
            }
            let Some(left) = wait.left() else {
                return Err(Error::Full);
            };
            if !spun {
                drop(guard);
                spun = true;
                spin_until(|| self.len() < maxsize || self.is_shut_down());
                continue;
            }
            spun = false;
            let ticket = h.not_full.0.prepare();
            drop(guard);
            // A consumer that frees a slot (or a shutdown) after our check notifies after our
            // `prepare`.
            if self.len() >= maxsize && !self.is_shut_down() {
                ticket.sleep(left);
            }
        }
    }

    /// Encodes `item` into a new record after `tail` and publishes it (see "push" in the module
    /// docs). Call holding the tail lock.
    fn write_record<E: Encode>(
        &self,
        item: &mut E,
        wait: Wait,
        joinable: bool,
        chan: Option<&dyn FdChannel>,
    ) -> Result<()> {
        let h = self.header();
        let tail = unpack(h.tail.0.word.load(Ordering::Relaxed)).0;
        let free = self.free_run(tail);
        let mut w = self.ring().writer(tail, free.saturating_sub(RECORD_SLACK));
        let (start, len, fds) = match item.encode(&mut w) {
            // A record fits when its payload does, except a tiny one in a run shorter than
            // the slack (an empty record into a ring full to the byte): that one goes the
            // long way, after a pad or into a grown ring, never over the oldest record.
            Ok(fds) if ring::record_size(w.len(), !fds.is_empty()) <= free => (tail, w.len(), fds),
            Err(e) if !w.overflow => return Err(e),
            _ => {
                let mut count = Counter::default();
                let probe = item.encode(&mut count)?;
                if count.0 > ring::MAX_PAYLOAD {
                    return Err(Error::Encode(format!(
                        "an item of {} bytes is too large for a queue",
                        count.0
                    )));
                }
                drop(probe);
                // The writer's room is a run less the slack: ask for a run that leaves it.
                let start =
                    self.make_room(tail, ring::record_size(count.0 + RECORD_SLACK, false))?;
                let room = self.free_run(start).saturating_sub(RECORD_SLACK);
                let mut w = self.ring().writer(start, room);
                match item.encode(&mut w) {
                    Ok(fds) => (start, w.len(), fds),
                    Err(_) if w.overflow => {
                        return Err(Error::Encode(
                            "the value encoded to more bytes the second time".into(),
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let fd_id = match (fds.is_empty(), chan) {
            (true, _) => None,
            (false, None) => {
                return Err(Error::Encode(
                    "a value holding an OS handle cannot travel through this queue".into(),
                ))
            }
            (false, Some(chan)) => {
                let id = h.tail.0.fd_seq.load(Ordering::Relaxed) + 1;
                h.tail.0.fd_seq.store(id, Ordering::Relaxed);
                chan.send(id, fds, wait)?;
                Some(id)
            }
        };
        let size = self.ring().seal_record(start, len, fd_id);
        let puts = unpack(h.tail.0.word.load(Ordering::Relaxed)).1;
        let published = pack(start + size, puts + 1);
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
        Ok(())
    }

    /// Takes the record at `end` and returns what `decode` makes of its payload and
    /// descriptors (taken from `fds`). While the deque is empty, waits per `wait`, and fails
    /// with [`Error::Empty`] when the wait ends first.
    pub(crate) fn pop<R, F: FnMut(&[u8], Vec<OwnedFd>) -> Result<R>>(
        &self,
        end: End,
        wait: Wait,
        fds: Option<&dyn FdChannel>,
        decode: &mut F,
    ) -> Result<R> {
        let h = self.header();
        let mut spun = false;
        loop {
            let guard = match end {
                End::Front => self.lock_head()?,
                End::Back => self.lock_tail()?,
            };
            if self.len() > 0 {
                let out = self.remove(end, fds, decode);
                drop(guard);
                h.not_full.0.notify(1);
                return out;
            }
            // The flag first, then the length: a record published before the shutdown is seen.
            if self.is_shut_down() && self.len() == 0 {
                return Err(Error::ShutDown);
            }
            let Some(left) = wait.left() else {
                return Err(Error::Empty);
            };
            if !spun {
                drop(guard);
                spun = true;
                spin_until(|| self.len() > 0 || self.is_shut_down());
                continue;
            }
            spun = false;
            let ticket = h.not_empty.0.prepare();
            drop(guard);
            // A producer that publishes (or a shutdown) after our check notifies after our
            // `prepare`.
            if self.len() == 0 && !self.is_shut_down() {
                ticket.sleep(left);
            }
        }
    }

    /// Decodes and removes the record at `end`. The caller holds the lock of that end and has
    /// seen at least one record. The record is removed even if decoding fails or panics.
    fn remove<R, F: FnMut(&[u8], Vec<OwnedFd>) -> Result<R>>(
        &self,
        end: End,
        chan: Option<&dyn FdChannel>,
        decode: &mut F,
    ) -> Result<R> {
        let h = self.header();
        let ring = self.ring();
        let ((tail, puts), (head, gets)) = self.ends();
        let live = tail.wrapping_sub(head) & BYTE_MASK;
        let (start, word) = match end {
            End::Front => {
                let first = ring.word(head);
                if first.is_pad() && first.size() < live {
                    (head + first.size(), ring.word(head + first.size()))
                } else {
                    (head, first)
                }
            }
            End::Back => {
                let last = ring.word(tail.wrapping_sub(8));
                (tail.wrapping_sub(last.size()), last)
            }
        };
        let span = start.wrapping_sub(head) & BYTE_MASK;
        if word.is_pad() || span + word.size() > live {
            return Err(Error::Decode("a queue record is corrupt".into()));
        }
        // SAFETY: a published record starts at `start`; we hold the lock of the end it is taken
        // from, so no one releases or overwrites it while the payload is decoded.
        let (payload, id) = unsafe { ring.payload(start, word) };
        let fds = match (id, chan) {
            (Some(id), Some(chan)) => chan.take(id),
            _ => Ok(Vec::new()),
        };
        let took = id.is_some() && chan.is_some() && fds.is_ok();
        let decoded = panic::catch_unwind(AssertUnwindSafe(|| decode(payload, fds?)));
        match end {
            End::Front => h
                .head
                .0
                .word
                .store(pack(start + word.size(), gets + 1), Ordering::Release),
            End::Back => {
                let mut new_tail = start;
                if new_tail != head {
                    let before = ring.word(new_tail.wrapping_sub(8));
                    if before.is_pad() {
                        new_tail = new_tail.wrapping_sub(before.size());
                    }
                }
                h.tail
                    .0
                    .word
                    .store(pack(new_tail, puts - 1), Ordering::Release)
            }
        }
        if let (Some(id), Some(chan), true) = (id, chan, took) {
            chan.taken(id);
        }
        decoded.unwrap_or_else(|payload| panic::resume_unwind(payload))
    }

    /// Takes back the newest record of a FIFO deque that a consumer may be taking from at the
    /// same moment: holds both locks, so the two can never take the same record. `None` when
    /// it holds fewer than `keep + 1` records (the oldest `keep` stay). Descriptors the record
    /// carries stay with its channel.
    pub(crate) fn take_back<R, F: FnMut(&[u8], Vec<OwnedFd>) -> Result<R>>(
        &self,
        keep: u64,
        decode: &mut F,
    ) -> Result<Option<R>> {
        let _tail = self.lock_tail()?;
        let _head = self.lock_head()?;
        if self.len() <= keep {
            return Ok(None);
        }
        let out = self.remove(End::Back, None, decode);
        self.header().not_full.0.notify(1);
        out.map(Some)
    }

    /// Shuts the deque down for every process (see "shutdown" in the module docs): later pushes
    /// fail with [`Error::ShutDown`], pops take what is left and then fail the same way, and
    /// every push or pop asleep now wakes up. Idempotent.
    pub(crate) fn shutdown(&self) {
        let h = self.header();
        h.shut_down.store(1, Ordering::Release);
        h.not_empty.0.notify(i32::MAX);
        h.not_full.0.notify(i32::MAX);
    }

    /// Whether [`shutdown`](Self::shutdown) was called, by any process.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.header().shut_down.load(Ordering::Acquire) != 0
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
            return Err(Error::TaskDoneTooOften);
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

#[cfg(test)]
#[path = "deque_tests.rs"]
mod tests;
