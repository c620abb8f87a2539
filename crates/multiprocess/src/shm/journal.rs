//! A redo log for all-or-nothing updates of shared state.
//!
//! The holder of a region's lock never changes two words of shared state one after the other:
//! it writes the new values into the journal, marks the journal valid (one store), applies the
//! values, and marks it empty again. If it dies before the mark, nothing was changed; if it dies
//! after, the next lock holder (told by the robust mutex that the previous owner died) replays
//! the journal, which is idempotent. Readers that peek without the lock (e.g. `qsize`) see each
//! word change atomically.
//!
//! Invariant: while `valid` is 0, the state words hold a consistent state; while it is 1, the
//! entries hold a consistent state, and applying them makes the words hold it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The most words one commit may change.
pub(crate) const MAX_ENTRIES: usize = 48;

#[repr(C)]
struct Entry {
    /// Byte offset of the target word from the journal's `base`.
    offset: AtomicU64,
    value: AtomicU64,
}

/// A journal in shared memory. All-zero bytes are a valid, empty journal.
#[repr(C)]
pub(crate) struct Journal {
    valid: AtomicU32,
    len: AtomicU32,
    entries: [Entry; MAX_ENTRIES],
}

impl Journal {
    /// Atomically (across crashes) sets each `(word, value)`. Every word must lie in the same
    /// mapping as `base` (the region's start), and the caller must hold the region's lock.
    pub(crate) fn commit(&self, base: *const u8, writes: &[(&AtomicU64, u64)]) {
        assert!(writes.len() <= MAX_ENTRIES, "journal commit too large");
        for (entry, (word, value)) in self.entries.iter().zip(writes) {
            let offset = (*word as *const AtomicU64 as usize) - base as usize;
            entry.offset.store(offset as u64, Ordering::Relaxed);
            entry.value.store(*value, Ordering::Relaxed);
        }
        self.len.store(writes.len() as u32, Ordering::Relaxed);
        self.valid.store(1, Ordering::Release);
        for (word, value) in writes {
            word.store(*value, Ordering::Release);
        }
        self.valid.store(0, Ordering::Release);
    }

    /// Replays an interrupted commit, if any. Call after taking over the lock from a dead
    /// owner, before looking at the state.
    ///
    /// # Safety
    /// `base` must be the start of the mapping the journal's offsets were taken from, and every
    /// journaled offset must lie inside it.
    pub(crate) unsafe fn recover(&self, base: *const u8) {
        if self.valid.load(Ordering::Acquire) == 0 {
            return;
        }
        let len = (self.len.load(Ordering::Relaxed) as usize).min(MAX_ENTRIES);
        for entry in &self.entries[..len] {
            let offset = entry.offset.load(Ordering::Relaxed) as usize;
            // SAFETY: by the contract, base + offset is a journaled AtomicU64 in the mapping.
            let word = unsafe { &*(base.add(offset) as *const AtomicU64) };
            word.store(entry.value.load(Ordering::Relaxed), Ordering::Release);
        }
        self.valid.store(0, Ordering::Release);
    }
}
