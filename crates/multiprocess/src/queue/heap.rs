//! The shared binary heap under [`PriorityQueue`](super::PriorityQueue).
//!
//! ## Layout
//!
//! One [`Region`]: a [`Header`] in the first page, then the current *area*, at `area_start`:
//! `slots_cap` slots (one `u64` each: a record's offset in the arena) followed by the *arena*,
//! `arena_cap` bytes where records `[len: u64][bytes, padded to 8]` are appended at
//! `arena_used`. Slots `0..n` form a binary min-heap ordered by the records' decoded values.
//!
//! ## Algorithm (everything under one robust mutex)
//!
//! - `push`: append the record in the arena's free space (nothing references it yet); sift the
//!   new slot up, collecting the slot writes; commit them with `{n + 1, arena_used}` in one
//!   [`Journal`] commit.
//! - `pop`: copy the root record out; sift the last slot down from the root, collecting the slot
//!   writes; commit them with `{n - 1}` (and `arena_used = 0` when the heap is left empty, which
//!   frees the arena at no cost).
//! - shutdown: one release store of `shut_down`, then a wake-up of every sleeper; a `push`
//!   that sees it (under the mutex) fails with [`Error::ShutDown`], and a `pop` that finds the
//!   heap empty fails the same way instead of waiting. A sleeper reads it after its `prepare`,
//!   so the wake-up cannot be lost.
//! - A popped record stays in the arena as garbage until the heap empties or the arena (or the
//!   slot array) is full; then the heap is *compacted*: the live records and their slots are
//!   copied into a fresh area of twice the needed size, and one journal commit switches to it.
//!   The fresh area goes before the current one when there is room, else after it, so areas never
//!   wander past twice the largest size.
//!
//! ## Invariants (whenever the mutex is free, after journal recovery)
//!
//! Slots `0..n` hold offsets of whole records below `arena_used`, in heap order; the area lies
//! inside the region's file. As in the deque, a process killed at any instant leaves the state
//! before or after its operation, and the next locker recovers the mutex.

use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::shm::deque::Wait;
use crate::shm::{EventCount, Journal, Region, RobustMutex, RobustMutexGuard};

const MAGIC: u64 = 0x6d70_6865_6170_3032; // "mpheap02"
const FIRST_AREA: u64 = 4096;
const INITIAL_SLOTS: u64 = 64;
const INITIAL_ARENA: u64 = 64 * 1024;
const RESERVE: usize = 8 << 30;

/// Orders two encoded items.
pub(crate) type Compare<'a> = &'a dyn Fn(&[u8], &[u8]) -> CmpOrdering;

#[repr(C)]
struct Header {
    magic: AtomicU64,
    /// The most items; 0 for no limit. Set at creation.
    maxsize: AtomicU64,
    /// Nonzero once [`SharedHeap::shutdown`] was called, by any process; never cleared.
    shut_down: AtomicU64,
    mutex: RobustMutex,
    journal: Journal,
    // Journaled state.
    area_start: AtomicU64,
    slots_cap: AtomicU64,
    arena_cap: AtomicU64,
    n: AtomicU64,
    arena_used: AtomicU64,
    not_empty: EventCount,
    not_full: EventCount,
}

const _: () = assert!(std::mem::size_of::<Header>() as u64 <= FIRST_AREA);

fn round8(n: u64) -> u64 {
    (n + 7) & !7
}

/// A binary heap of byte records in shared memory, as described in the module docs.
pub(crate) struct SharedHeap {
    region: Region,
}

impl SharedHeap {
    pub(crate) fn create(maxsize: u64) -> Result<SharedHeap> {
        let area = INITIAL_SLOTS * 8 + INITIAL_ARENA;
        let region = Region::create("multiprocess-heap", FIRST_AREA + area, RESERVE)?;
        let header = region.base().cast::<Header>();
        // SAFETY: the region is fresh, zeroed and not yet shared; all-zero bytes are a valid
        // Header except for the mutex, initialised here before first use.
        unsafe {
            RobustMutex::init(std::ptr::addr_of_mut!((*header).mutex))?;
            let h = &*header;
            h.maxsize.store(maxsize, Ordering::Relaxed);
            h.area_start.store(FIRST_AREA, Ordering::Relaxed);
            h.slots_cap.store(INITIAL_SLOTS, Ordering::Relaxed);
            h.arena_cap.store(INITIAL_ARENA, Ordering::Relaxed);
            h.magic.store(MAGIC, Ordering::Release);
        }
        Ok(SharedHeap { region })
    }

    pub(crate) fn from_region(region: Region) -> Result<SharedHeap> {
        let heap = SharedHeap { region };
        if heap.header().magic.load(Ordering::Acquire) != MAGIC {
            return Err(Error::Decode(
                "the shared memory received is not a priority queue".into(),
            ));
        }
        Ok(heap)
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    fn header(&self) -> &Header {
        // SAFETY: the region starts with a Header (written by `create`, checked by
        // `from_region`) and stays mapped as long as self.
        unsafe { &*self.region.base().cast::<Header>() }
    }

    fn lock(&self) -> Result<RobustMutexGuard<'_>> {
        let h = self.header();
        let (guard, owner_died) = h.mutex.lock()?;
        if owner_died {
            // SAFETY: journal offsets are taken from this region's base; all lie in the region.
            unsafe { h.journal.recover(self.region.base()) };
            guard.mark_consistent();
        }
        Ok(guard)
    }

    pub(crate) fn len(&self) -> u64 {
        self.header().n.load(Ordering::Acquire)
    }

    pub(crate) fn maxsize(&self) -> u64 {
        self.header().maxsize.load(Ordering::Relaxed)
    }

    /// Slot `i` of the current area.
    fn slot(&self, i: u64) -> &AtomicU64 {
        let start = self.header().area_start.load(Ordering::Acquire);
        // SAFETY: slots 0..slots_cap lie at the start of the current area, inside the file;
        // callers pass i < slots_cap; the area start is 8-byte aligned.
        unsafe { &*(self.region.base().add((start + i * 8) as usize) as *const AtomicU64) }
    }

    /// A pointer into the current arena at `offset`.
    fn arena(&self, offset: u64) -> *mut u8 {
        let h = self.header();
        let arena = h.area_start.load(Ordering::Acquire) + h.slots_cap.load(Ordering::Acquire) * 8;
        // SAFETY: callers pass offsets of records (or free space) below arena_cap.
        unsafe { self.region.base().add((arena + offset) as usize) }
    }

    /// The bytes of the record at `offset`.
    fn record(&self, offset: u64) -> Vec<u8> {
        let mut len = [0u8; 8];
        // SAFETY: a record starts with its 8-byte length, inside the arena.
        unsafe { std::ptr::copy_nonoverlapping(self.arena(offset), len.as_mut_ptr(), 8) };
        let len = u64::from_le_bytes(len).min(self.header().arena_cap.load(Ordering::Relaxed));
        let mut out = vec![0u8; len as usize];
        // SAFETY: the record's bytes follow its length, inside the arena.
        unsafe {
            std::ptr::copy_nonoverlapping(self.arena(offset + 8), out.as_mut_ptr(), out.len())
        };
        out
    }

    /// Copies the live records and their slots into a fresh area with room for one more item
    /// of `needed` bytes (see "compacted" in the module docs).
    fn compact(&self, needed: u64) -> Result<()> {
        let h = self.header();
        let n = h.n.load(Ordering::Relaxed);
        let records: Vec<Vec<u8>> = (0..n)
            .map(|i| self.record(self.slot(i).load(Ordering::Relaxed)))
            .collect();
        let live: u64 = records.iter().map(|r| 8 + round8(r.len() as u64)).sum();
        let slots_cap = ((n + 1) * 2).next_power_of_two().max(INITIAL_SLOTS);
        let arena_cap = ((live + needed) * 2).next_power_of_two().max(INITIAL_ARENA);
        let size = slots_cap * 8 + arena_cap;
        let start = h.area_start.load(Ordering::Relaxed);
        let new_start = if FIRST_AREA + size <= start {
            FIRST_AREA
        } else {
            start + h.slots_cap.load(Ordering::Relaxed) * 8 + h.arena_cap.load(Ordering::Relaxed)
        };
        if new_start + size > self.region.reserve() as u64 {
            return Err(Error::Encode(format!(
                "an item of {needed} bytes does not fit in a priority queue's shared memory"
            )));
        }
        self.region.grow_to(new_start + size)?;
        let base = self.region.base();
        let mut used = 0u64;
        for (i, r) in records.iter().enumerate() {
            // SAFETY: the new area lies inside the grown file and overlaps no live byte (it is
            // before the current area, or after its end); slot i < slots_cap, record fits.
            unsafe {
                let slot = base.add((new_start + i as u64 * 8) as usize);
                std::ptr::copy_nonoverlapping(used.to_le_bytes().as_ptr(), slot, 8);
                let at = base.add((new_start + slots_cap * 8 + used) as usize);
                std::ptr::copy_nonoverlapping((r.len() as u64).to_le_bytes().as_ptr(), at, 8);
                std::ptr::copy_nonoverlapping(r.as_ptr(), at.add(8), r.len());
            }
            used += 8 + round8(r.len() as u64);
        }
        let old_size =
            h.slots_cap.load(Ordering::Relaxed) * 8 + h.arena_cap.load(Ordering::Relaxed);
        h.journal.commit(
            base,
            &[
                (&h.area_start, new_start),
                (&h.slots_cap, slots_cap),
                (&h.arena_cap, arena_cap),
                (&h.arena_used, used),
            ],
        );
        self.region.release(start, old_size);
        Ok(())
    }

    /// Shuts the heap down for every process (see the module docs); idempotent.
    pub(crate) fn shutdown(&self) {
        let h = self.header();
        h.shut_down.store(1, Ordering::Release);
        h.not_empty.notify(i32::MAX);
        h.not_full.notify(i32::MAX);
    }

    /// Whether [`shutdown`](Self::shutdown) was called, by any process.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.header().shut_down.load(Ordering::Acquire) != 0
    }

    /// Adds an item, waiting per `wait` while the heap holds `maxsize` items.
    pub(crate) fn push(&self, bytes: &[u8], wait: Wait, cmp: Compare<'_>) -> Result<()> {
        let h = self.header();
        let need = 8 + round8(bytes.len() as u64);
        loop {
            let guard = self.lock()?;
            if self.is_shut_down() {
                return Err(Error::ShutDown);
            }
            let n = h.n.load(Ordering::Relaxed);
            let maxsize = h.maxsize.load(Ordering::Relaxed);
            if maxsize == 0 || n < maxsize {
                if n + 1 > h.slots_cap.load(Ordering::Relaxed)
                    || h.arena_used.load(Ordering::Relaxed) + need
                        > h.arena_cap.load(Ordering::Relaxed)
                {
                    self.compact(need)?;
                }
                let at = h.arena_used.load(Ordering::Relaxed);
                // SAFETY: [at, at + need) is free arena space (checked above); nothing
                // references it until the commit below.
                unsafe {
                    let p = self.arena(at);
                    std::ptr::copy_nonoverlapping(
                        (bytes.len() as u64).to_le_bytes().as_ptr(),
                        p,
                        8,
                    );
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(8), bytes.len());
                }
                let mut writes: Vec<(&AtomicU64, u64)> = Vec::new();
                let mut pos = n;
                while pos > 0 {
                    let parent = (pos - 1) / 2;
                    let parent_off = self.slot(parent).load(Ordering::Relaxed);
                    if cmp(bytes, &self.record(parent_off)) != CmpOrdering::Less {
                        break;
                    }
                    writes.push((self.slot(pos), parent_off));
                    pos = parent;
                }
                writes.push((self.slot(pos), at));
                writes.push((&h.n, n + 1));
                writes.push((&h.arena_used, at + need));
                h.journal.commit(self.region.base(), &writes);
                h.not_empty.notify(1);
                return Ok(());
            }
            let Some(left) = wait.left() else {
                return Err(Error::Full);
            };
            let ticket = h.not_full.prepare();
            drop(guard);
            // A shutdown after our check notifies after our `prepare`.
            if !self.is_shut_down() {
                ticket.sleep(left);
            }
        }
    }

    /// Takes the smallest item, waiting per `wait` while the heap is empty.
    pub(crate) fn pop(&self, wait: Wait, cmp: Compare<'_>) -> Result<Vec<u8>> {
        let h = self.header();
        loop {
            let guard = self.lock()?;
            let n = h.n.load(Ordering::Relaxed);
            if n > 0 {
                let out = self.record(self.slot(0).load(Ordering::Relaxed));
                let last_off = self.slot(n - 1).load(Ordering::Relaxed);
                let last = self.record(last_off);
                let m = n - 1;
                let mut writes: Vec<(&AtomicU64, u64)> = Vec::new();
                if m > 0 {
                    let mut pos = 0;
                    loop {
                        let left = 2 * pos + 1;
                        if left >= m {
                            break;
                        }
                        let mut child = left;
                        let mut child_rec = self.record(self.slot(left).load(Ordering::Relaxed));
                        if left + 1 < m {
                            let right = self.record(self.slot(left + 1).load(Ordering::Relaxed));
                            if cmp(&right, &child_rec) == CmpOrdering::Less {
                                child = left + 1;
                                child_rec = right;
                            }
                        }
                        if cmp(&child_rec, &last) != CmpOrdering::Less {
                            break;
                        }
                        writes.push((self.slot(pos), self.slot(child).load(Ordering::Relaxed)));
                        pos = child;
                    }
                    writes.push((self.slot(pos), last_off));
                } else {
                    writes.push((&h.arena_used, 0));
                }
                writes.push((&h.n, m));
                h.journal.commit(self.region.base(), &writes);
                h.not_full.notify(1);
                return Ok(out);
            }
            if self.is_shut_down() {
                return Err(Error::ShutDown);
            }
            let Some(left) = wait.left() else {
                return Err(Error::Empty);
            };
            let ticket = h.not_empty.prepare();
            drop(guard);
            // A shutdown after our check notifies after our `prepare`.
            if !self.is_shut_down() {
                ticket.sleep(left);
            }
        }
    }
}
