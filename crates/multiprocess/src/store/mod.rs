//! Shared containers: [`Dict`] and [`List`], the `Manager().dict()` and `Manager().list()` of
//! Python, without a manager process. Both are thin layers over one engine, the [`Store`]: an
//! index of slots pointing into a heap of immutable records, in one shared-memory region.
//!
//! ## Layout
//!
//! One [`Region`]: a [`Header`] in the first page, then the *area*, `[heap_start, heap_top)`,
//! where records and the index live. A record is `[hash: u64][seq: u64][klen: u32][vlen: u32]
//! [key][value]`, padded to 8 bytes (a list's records have no key; `seq` orders a dict's
//! entries by first insertion, as Python's dicts are ordered). The index is an array of
//! `index_cap` 64-bit slots (itself a blob in the area): a slot holds a record's file offset,
//! [`EMPTY`], or (for the dict) [`TOMBSTONE`]. The dict's index is a hash table with linear
//! probing; the list's holds its items in order.
//!
//! ## Algorithm
//!
//! Every operation takes the region's robust mutex. A change never touches a byte that anything
//! published references: new records (and new index arrays) are appended after `heap_top`,
//! and then **one** [`Journal`] commit changes the few words that publish them (a slot, `len`,
//! `heap_top`, the garbage count, ...). Records that are replaced or removed become garbage.
//! When the garbage outweighs the live records, or the dict's table fills, the store is
//! *rebuilt*: the live records and a fresh index are copied into a new area (at the start of
//! the region if they fit before the current area, else right after it), one commit switches
//! to it, and the pages of the old area are given back to the system. So the region's used
//! span stays within a few times the live data, whatever the history of updates.
//!
//! ## Crash safety
//!
//! A process killed at any instant leaves either the old state or the new one: what it wrote
//! before its commit is unreferenced (the next writer overwrites it), and an interrupted commit
//! is replayed by the next locker, whom the robust mutex tells that the owner died. Readers
//! take the lock too, so they never see a half-built area, and `len` is one word, always exact
//! between operations.

mod dict;
mod list;

pub use dict::Dict;
pub use list::List;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::shm::{Journal, Region, RobustMutex, RobustMutexGuard};

/// Marks a region as a store of this layout version.
const MAGIC: u64 = u64::from_le_bytes(*b"mpstore1");

/// File offset of the first area (the header has the first page).
const FIRST_AREA: u64 = 4096;

/// Address space reserved per store: the live data may grow to about a third of it.
const RESERVE: usize = 16 << 30;

/// The file grows in steps of at least this much (fewer `ftruncate` calls).
const GROW_STEP: u64 = 256 << 10;

/// A slot that holds nothing.
pub(crate) const EMPTY: u64 = 0;
/// A slot whose record was removed (dict): probing goes on past it.
pub(crate) const TOMBSTONE: u64 = 1;

/// Bytes before a record's key.
const RECORD_HEADER: u64 = 24;

/// Garbage below this many bytes never triggers a rebuild.
const MIN_GARBAGE: u64 = 64 << 10;

fn round8(n: u64) -> u64 {
    (n + 7) & !7
}

fn round_page(n: u64) -> u64 {
    n.next_multiple_of(4096)
}

/// The shared state of a store, at the start of its region.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    /// Names the container type and its element types; checked when a handle is received.
    type_tag: AtomicU64,
    lock: RobustMutex,
    journal: Journal,
    /// Live entries.
    len: AtomicU64,
    index_off: AtomicU64,
    index_cap: AtomicU64,
    /// Dict slots holding [`TOMBSTONE`].
    tombstones: AtomicU64,
    heap_start: AtomicU64,
    heap_top: AtomicU64,
    /// Bytes of dead records and index arrays in the area.
    garbage: AtomicU64,
    /// The region file's length, as far as this store has grown it (it only grows).
    file_len: AtomicU64,
    /// The `seq` of the next dict entry inserted.
    next_seq: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Header>() as u64 <= FIRST_AREA);

/// A record in the heap.
pub(crate) struct Record<'a> {
    pub hash: u64,
    pub seq: u64,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// Bytes it takes in the heap.
    pub size: u64,
}

/// The engine under [`Dict`] and [`List`] (see the module docs).
pub(crate) struct Store {
    region: Region,
}

impl Store {
    /// A new, empty store with an index of `cap` slots, tagged with `type_tag`.
    pub(crate) fn create(type_tag: u64, cap: u64) -> Result<Store> {
        let index_bytes = cap * 8;
        let file_len = round_page(FIRST_AREA + index_bytes).max(FIRST_AREA + GROW_STEP);
        let region = Region::create("multiprocess-store", file_len, RESERVE)?;
        let header = region.base().cast::<Header>();
        // SAFETY: the region is fresh, zeroed and not shared yet; all-zero bytes are a valid
        // Header except for the mutex, initialised here before first use.
        unsafe {
            RobustMutex::init(std::ptr::addr_of_mut!((*header).lock))?;
            let h = &*header;
            h.type_tag.store(type_tag, Ordering::Relaxed);
            h.index_off.store(FIRST_AREA, Ordering::Relaxed);
            h.index_cap.store(cap, Ordering::Relaxed);
            h.heap_start.store(FIRST_AREA, Ordering::Relaxed);
            h.heap_top
                .store(FIRST_AREA + index_bytes, Ordering::Relaxed);
            h.file_len.store(file_len, Ordering::Relaxed);
            h.magic.store(MAGIC, Ordering::Release);
        }
        Ok(Store { region })
    }

    /// A store over a region received from another process, if it is one of type `type_tag`.
    pub(crate) fn from_region(region: Region, type_tag: u64, what: &str) -> Result<Store> {
        if region.file_len()? < FIRST_AREA {
            return Err(Error::Decode(format!(
                "the shared memory received is not a {what}"
            )));
        }
        let store = Store { region };
        let h = store.header();
        if h.magic.load(Ordering::Acquire) != MAGIC
            || h.type_tag.load(Ordering::Relaxed) != type_tag
        {
            return Err(Error::Decode(format!(
                "the shared memory received is not a {what} of these types"
            )));
        }
        Ok(store)
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    fn header(&self) -> &Header {
        // SAFETY: the region starts with a Header (written by `create`, checked by
        // `from_region`) and stays mapped as long as self.
        unsafe { &*self.region.base().cast::<Header>() }
    }

    /// The number of entries (exact whenever no operation is under way).
    pub(crate) fn len(&self) -> u64 {
        self.header().len.load(Ordering::Acquire)
    }

    /// Takes the lock, first repairing what a dead holder left.
    pub(crate) fn lock(&self) -> Result<Txn<'_>> {
        let h = self.header();
        let (guard, owner_died) = h.lock.lock()?;
        if owner_died {
            // SAFETY: journal offsets are taken from this region's base; all lie in the header.
            unsafe { h.journal.recover(self.region.base()) };
            guard.mark_consistent();
        }
        Ok(Txn {
            store: self,
            _guard: guard,
            top: Cell::new(h.heap_top.load(Ordering::Acquire)),
        })
    }
}

/// A tag naming a container type and its element types (both ends run the same binary).
pub(crate) fn type_tag<T: ?Sized>() -> u64 {
    fnv(std::any::type_name::<T>().as_bytes())
}

/// FNV-1a.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The hash of an encoded key: 8 bytes at a time, then mixed so that every bit of the result
/// depends on every input bit (the table uses the low bits).
pub(crate) fn hash_key(key: &[u8]) -> u64 {
    let mut h: u64 = key.len() as u64;
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(0x517c_c1b7_2722_0a95);
    // MurmurHash3's finaliser.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Enters a record copied by [`Txn::rebuild`] into the new index: `(index, ordinal, hash,
/// new offset)`.
pub(crate) type Place<'p> = dyn FnMut(&[AtomicU64], usize, u64, u64) + 'p;

/// The store, locked: reads see a consistent state, and changes are made as the module docs
/// say (append, then one commit).
pub(crate) struct Txn<'a> {
    store: &'a Store,
    _guard: RobustMutexGuard<'a>,
    /// The heap's end including what this transaction appended and has not committed.
    top: Cell<u64>,
}

impl<'a> Txn<'a> {
    fn header(&self) -> &'a Header {
        self.store.header()
    }

    pub(crate) fn len(&self) -> u64 {
        self.header().len.load(Ordering::Relaxed)
    }

    pub(crate) fn cap(&self) -> u64 {
        self.header().index_cap.load(Ordering::Relaxed)
    }

    pub(crate) fn tombstones(&self) -> u64 {
        self.header().tombstones.load(Ordering::Relaxed)
    }

    /// The header words a layer may change in a commit.
    pub(crate) fn len_word(&self) -> &'a AtomicU64 {
        &self.header().len
    }
    pub(crate) fn tombstones_word(&self) -> &'a AtomicU64 {
        &self.header().tombstones
    }
    pub(crate) fn garbage_word(&self) -> &'a AtomicU64 {
        &self.header().garbage
    }
    pub(crate) fn index_words(&self) -> (&'a AtomicU64, &'a AtomicU64) {
        (&self.header().index_off, &self.header().index_cap)
    }

    pub(crate) fn next_seq_word(&self) -> &'a AtomicU64 {
        &self.header().next_seq
    }

    pub(crate) fn garbage(&self) -> u64 {
        self.header().garbage.load(Ordering::Relaxed)
    }

    /// The index: `cap` slots.
    pub(crate) fn index(&self) -> Result<&'a [AtomicU64]> {
        let h = self.header();
        let (off, cap) = (
            h.index_off.load(Ordering::Relaxed),
            h.index_cap.load(Ordering::Relaxed),
        );
        self.slots_at(off, cap)
    }

    /// The first `len` slots of the index (a list's items).
    pub(crate) fn items(&self) -> Result<&'a [AtomicU64]> {
        self.index()?.get(..self.len() as usize).ok_or_else(corrupt)
    }

    /// `cap` slots at file offset `off`, which must lie in the area (or in space appended by
    /// this transaction).
    fn slots_at(&self, off: u64, cap: u64) -> Result<&'a [AtomicU64]> {
        let start = self.header().heap_start.load(Ordering::Relaxed);
        let end = cap.checked_mul(8).and_then(|b| b.checked_add(off));
        if off < start || off % 8 != 0 || !matches!(end, Some(e) if e <= self.top.get()) {
            return Err(corrupt());
        }
        // SAFETY: [off, off + 8 * cap) lies inside the file (below the heap's top), 8-aligned;
        // AtomicU64 is valid for any bits, and all access happens under the store's lock.
        Ok(unsafe {
            std::slice::from_raw_parts(
                self.store
                    .region
                    .base()
                    .add(off as usize)
                    .cast::<AtomicU64>(),
                cap as usize,
            )
        })
    }

    /// The record at file offset `off` (checked to lie in the area).
    pub(crate) fn record(&self, off: u64) -> Result<Record<'a>> {
        let start = self.header().heap_start.load(Ordering::Relaxed);
        let top = self.top.get();
        if off < start || off % 8 != 0 || off + RECORD_HEADER > top {
            return Err(corrupt());
        }
        let base = self.store.region.base();
        // SAFETY: the record header lies below the heap's top, inside the file.
        let (hash, seq, klen, vlen) = unsafe {
            let at = base.add(off as usize);
            (
                at.cast::<u64>().read(),
                at.add(8).cast::<u64>().read(),
                at.add(16).cast::<u32>().read(),
                at.add(20).cast::<u32>().read(),
            )
        };
        let body = u64::from(klen) + u64::from(vlen);
        let size = RECORD_HEADER + round8(body);
        if off + size > top {
            return Err(corrupt());
        }
        // SAFETY: the whole record lies below the heap's top; published records never change
        // (every change appends), so the bytes are stable while the lock is held.
        let (key, value) = unsafe {
            let k = base.add((off + RECORD_HEADER) as usize);
            (
                std::slice::from_raw_parts(k, klen as usize),
                std::slice::from_raw_parts(k.add(klen as usize), vlen as usize),
            )
        };
        Ok(Record {
            hash,
            seq,
            key,
            value,
            size,
        })
    }

    /// Makes sure the file reaches `end`.
    fn ensure_file(&self, end: u64) -> Result<()> {
        let h = self.header();
        let len = h.file_len.load(Ordering::Relaxed);
        if end <= len {
            return Ok(());
        }
        let new_len = round_page(end.max(len + GROW_STEP).max(len + len / 4));
        if new_len > RESERVE as u64 {
            return Err(Error::Encode(
                "a shared container holds at most about 5 GiB of encoded entries".into(),
            ));
        }
        self.store.region.grow_to(new_len)?;
        h.file_len.store(new_len, Ordering::Relaxed);
        Ok(())
    }

    /// Writes a record after the heap's top (unpublished until a commit) and returns its offset.
    pub(crate) fn append_record(
        &self,
        hash: u64,
        seq: u64,
        key: &[u8],
        value: &[u8],
    ) -> Result<u64> {
        let (klen, vlen) = match (u32::try_from(key.len()), u32::try_from(value.len())) {
            (Ok(k), Ok(v)) => (k, v),
            _ => return Err(Error::Encode("an entry over 4 GiB does not fit".into())),
        };
        let off = self.top.get();
        let size = RECORD_HEADER + round8(key.len() as u64 + value.len() as u64);
        self.ensure_file(off + size)?;
        // SAFETY: [off, off + size) lies inside the file, past the heap's published top, so
        // nothing references it; the lock excludes every other writer.
        unsafe {
            let at = self.store.region.base().add(off as usize);
            at.cast::<u64>().write(hash);
            at.add(8).cast::<u64>().write(seq);
            at.add(16).cast::<u32>().write(klen);
            at.add(20).cast::<u32>().write(vlen);
            let k = at.add(RECORD_HEADER as usize);
            std::ptr::copy_nonoverlapping(key.as_ptr(), k, key.len());
            std::ptr::copy_nonoverlapping(value.as_ptr(), k.add(key.len()), value.len());
        }
        self.top.set(off + size);
        Ok(off)
    }

    /// Writes an index array of `cap` slots after the heap's top, filled by `slot(i)` (unpublished
    /// until a commit), and returns its offset.
    pub(crate) fn append_index(&self, cap: u64, slot: impl Fn(u64) -> u64) -> Result<u64> {
        let off = self.top.get();
        let bytes = cap
            .checked_mul(8)
            .ok_or_else(|| Error::Encode("too many entries".into()))?;
        self.ensure_file(off + bytes)?;
        self.top.set(off + bytes);
        let slots = self.slots_at(off, cap)?;
        for (i, s) in slots.iter().enumerate() {
            s.store(slot(i as u64), Ordering::Relaxed);
        }
        Ok(off)
    }

    /// Publishes `writes` and everything appended so far, all at once.
    pub(crate) fn commit(&self, writes: &[(&AtomicU64, u64)]) {
        let h = self.header();
        let mut all = Vec::with_capacity(writes.len() + 1);
        all.extend_from_slice(writes);
        all.push((&h.heap_top, self.top.get()));
        h.journal.commit(self.store.region.base(), &all);
    }

    /// Whether the garbage is worth a rebuild.
    pub(crate) fn wants_compaction(&self) -> bool {
        let h = self.header();
        let garbage = h.garbage.load(Ordering::Relaxed);
        let used = h.heap_top.load(Ordering::Relaxed) - h.heap_start.load(Ordering::Relaxed);
        garbage > MIN_GARBAGE && garbage * 2 > used
    }

    /// Copies the records at offsets `live` (in order) and a fresh index of `cap` slots into a
    /// new area, lets `place` enter each copy (its ordinal, hash and new offset) into the new
    /// index, switches to the new area with one commit (together with `extra` writes), and
    /// gives the old area's pages back.
    pub(crate) fn rebuild(
        &self,
        cap: u64,
        live: &[u64],
        place: &mut Place<'_>,
        extra: &[(&AtomicU64, u64)],
    ) -> Result<()> {
        let h = self.header();
        let mut records = Vec::with_capacity(live.len());
        let mut needed = cap * 8;
        for &off in live {
            let r = self.record(off)?;
            needed += r.size;
            records.push(r);
        }
        let (start, top) = (h.heap_start.load(Ordering::Relaxed), self.top.get());
        let new_start = if FIRST_AREA + needed <= start {
            FIRST_AREA
        } else {
            round_page(top)
        };
        self.ensure_file(new_start + needed)?;
        let base = self.store.region.base();
        // SAFETY: the new area lies inside the file and overlaps neither the current area nor
        // anything appended by this transaction (it ends before `start` or begins after `top`).
        let index = unsafe {
            std::ptr::write_bytes(base.add(new_start as usize), 0, (cap * 8) as usize);
            std::slice::from_raw_parts(
                base.add(new_start as usize).cast::<AtomicU64>(),
                cap as usize,
            )
        };
        let mut at = new_start + cap * 8;
        for (i, r) in records.iter().enumerate() {
            // SAFETY: as above; the record's bytes are contiguous from its header.
            unsafe {
                let from = r.key.as_ptr().sub(RECORD_HEADER as usize);
                std::ptr::copy_nonoverlapping(from, base.add(at as usize), r.size as usize);
            }
            place(index, i, r.hash, at);
            at += r.size;
        }
        let mut writes = vec![
            (&h.index_off, new_start),
            (&h.index_cap, cap),
            (&h.heap_start, new_start),
            (&h.heap_top, at),
            (&h.tombstones, 0),
            (&h.garbage, 0),
        ];
        writes.extend_from_slice(extra);
        h.journal.commit(base, &writes);
        self.top.set(at);
        let file_len = h.file_len.load(Ordering::Relaxed);
        if new_start > FIRST_AREA {
            self.store
                .region
                .release(FIRST_AREA, new_start - FIRST_AREA);
        }
        let live_end = round_page(at);
        if file_len > live_end {
            self.store.region.release(live_end, file_len - live_end);
        }
        Ok(())
    }
}

fn corrupt() -> Error {
    Error::Decode("a shared container's memory is corrupt".into())
}
