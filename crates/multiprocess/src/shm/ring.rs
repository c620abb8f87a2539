//! The byte ring inside a deque's region: the layout of a record, and the writer and reader
//! that encode a value straight into a record and decode it straight out of one.
//!
//! ## Records
//!
//! A record is `[head: u64][payload][id: u64, if it carries descriptors][padding][tail: u64]`,
//! its size a multiple of 16. `head` and `tail` are the same word: the payload's length (low 40
//! bits) and two flags, [`PAD`] and [`FDS`]. Both ends hold it so that a record can be taken
//! from the front (FIFO) or the back (LIFO).
//!
//! A record never wraps around the ring's end: its payload is one contiguous slice of shared
//! memory, so a value is encoded into it and decoded from it in place, with no copy between.
//! When a record does not fit before the end but would after it, a *pad* record (flag [`PAD`],
//! counted by no one) fills the space up to the end, and the record starts at the ring's start.
//! Sizes being multiples of 16, the space up to the end is always at least a pad's 16 bytes.

use std::io;
use std::marker::PhantomData;

/// The flag of a pad record: skipped by readers, never counted as an item.
pub(crate) const PAD: u64 = 1 << 63;
/// The flag of a record that carries descriptors: the 8 bytes after its payload hold the id
/// they travel under.
pub(crate) const FDS: u64 = 1 << 62;
/// The bits of a record word that hold the payload's length.
const LEN_MASK: u64 = (1 << 40) - 1;

/// Bytes a record takes around its payload (its two length words).
pub(crate) const OVERHEAD: u64 = 16;

/// The largest payload a record may hold.
pub(crate) const MAX_PAYLOAD: u64 = LEN_MASK;

fn round16(n: u64) -> u64 {
    (n + 15) & !15
}

/// The bytes a record with `len` payload bytes takes in the ring.
pub(crate) fn record_size(len: u64, fds: bool) -> u64 {
    round16(OVERHEAD + len + if fds { 8 } else { 0 })
}

/// A record's length word, read back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Word(pub u64);

impl Word {
    pub(crate) fn len(self) -> u64 {
        self.0 & LEN_MASK
    }
    pub(crate) fn is_pad(self) -> bool {
        self.0 & PAD != 0
    }
    pub(crate) fn has_fds(self) -> bool {
        self.0 & FDS != 0
    }
    /// The bytes the record takes in the ring.
    pub(crate) fn size(self) -> u64 {
        if self.is_pad() {
            OVERHEAD + self.len()
        } else {
            record_size(self.len(), self.has_fds())
        }
    }
}

/// The ring as one process maps it: `cap` bytes (a power of two) from `base`. Positions are
/// the deque's byte counters, taken modulo `cap`.
#[derive(Clone, Copy)]
pub(crate) struct Ring {
    pub base: *mut u8,
    pub cap: u64,
}

impl Ring {
    fn at(self, counter: u64) -> *mut u8 {
        // SAFETY: the position is below cap, and the ring's cap bytes lie inside the mapping
        // (the deque keeps them inside the region's file).
        unsafe { self.base.add((counter & (self.cap - 1)) as usize) }
    }

    /// Bytes from `counter`'s position to the ring's end.
    pub(crate) fn to_end(self, counter: u64) -> u64 {
        self.cap - (counter & (self.cap - 1))
    }

    /// The 8-byte word at `counter` (8-aligned, never split by the ring's end).
    pub(crate) fn word(self, counter: u64) -> Word {
        // SAFETY: record words are 8-aligned inside the ring.
        Word(unsafe { self.at(counter).cast::<u64>().read() })
    }

    /// Writes the 8-byte word at `counter`, in space no published record uses.
    pub(crate) fn set_word(self, counter: u64, word: u64) {
        // SAFETY: as in `word`; the caller writes only free space.
        unsafe { self.at(counter).cast::<u64>().write(word) }
    }

    /// An unaligned 8-byte value at `counter` (a record's descriptor id).
    pub(crate) fn read_u64(self, counter: u64) -> u64 {
        // SAFETY: the caller names 8 bytes inside one record, which never wraps.
        unsafe { self.at(counter).cast::<u64>().read_unaligned() }
    }

    /// Writes an unaligned 8-byte value at `counter`, in free space inside one record.
    pub(crate) fn write_u64(self, counter: u64, value: u64) {
        // SAFETY: as in `read_u64`.
        unsafe { self.at(counter).cast::<u64>().write_unaligned(value) }
    }

    /// Writes a pad record over `[counter, counter + size)` (free space up to the ring's end).
    pub(crate) fn write_pad(self, counter: u64, size: u64) {
        let word = PAD | (size - OVERHEAD);
        self.set_word(counter, word);
        self.set_word(counter + size - 8, word);
    }

    /// Writes a record's two length words around a payload of `len` bytes written at
    /// `counter + 8`, and its descriptor id if any.
    pub(crate) fn seal_record(self, counter: u64, len: u64, fd_id: Option<u64>) -> u64 {
        let mut word = len;
        if let Some(id) = fd_id {
            word |= FDS;
            self.write_u64(counter + 8 + len, id);
        }
        let size = record_size(len, fd_id.is_some());
        self.set_word(counter, word);
        self.set_word(counter + size - 8, word);
        size
    }

    /// The payload of the record whose head word is at `counter`, and its descriptor id.
    ///
    /// # Safety
    /// A published record starts at `counter`, and no one may write it while the slice lives
    /// (the caller holds the lock of the end it takes it from).
    pub(crate) unsafe fn payload<'a>(self, counter: u64, word: Word) -> (&'a [u8], Option<u64>) {
        let start = counter + 8;
        let id = word.has_fds().then(|| self.read_u64(start + word.len()));
        // SAFETY: a record never wraps, so its payload is contiguous; per the contract it is
        // published and stable.
        let bytes = unsafe { std::slice::from_raw_parts(self.at(start), word.len() as usize) };
        (bytes, id)
    }

    /// Copies `len` ring bytes from `counter` (which may wrap around the end) to `to`.
    pub(crate) fn copy_out(self, counter: u64, len: u64, to: *mut u8) {
        let first = len.min(self.to_end(counter));
        // SAFETY: both parts lie inside the ring; `to` has room for `len` bytes and does not
        // overlap the ring (the caller's fresh space).
        unsafe {
            std::ptr::copy_nonoverlapping(self.at(counter), to, first as usize);
            std::ptr::copy_nonoverlapping(
                self.at(counter + first),
                to.add(first as usize),
                (len - first) as usize,
            );
        }
    }

    /// A writer over the free, contiguous space of `room` bytes at `counter + 8`.
    pub(crate) fn writer<'a>(self, counter: u64, room: u64) -> RecordWriter<'a> {
        RecordWriter {
            at: self.at(counter + 8),
            room: room as usize,
            len: 0,
            overflow: false,
            _ring: PhantomData,
        }
    }
}

/// An `io::Write` into a record's payload space: fails (and says so in `overflow`) at the first
/// write that does not fit, having written only what did.
pub(crate) struct RecordWriter<'a> {
    at: *mut u8,
    room: usize,
    len: usize,
    pub overflow: bool,
    _ring: PhantomData<&'a mut [u8]>,
}

impl RecordWriter<'_> {
    /// Bytes written.
    pub(crate) fn len(&self) -> u64 {
        self.len as u64
    }
}

impl io::Write for RecordWriter<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.room - self.len {
            self.overflow = true;
            return Err(io::Error::other("the record is full"));
        }
        // SAFETY: [len, len + buf.len()) lies inside the free space this writer was made over,
        // which nothing references and no other process writes (the tail lock is held).
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.at.add(self.len), buf.len()) };
        self.len += buf.len();
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(drop)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An `io::Write` that only counts (to learn a payload's size before making room for it).
#[derive(Default)]
pub(crate) struct Counter(pub u64);

impl io::Write for Counter {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
