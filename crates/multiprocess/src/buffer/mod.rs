//! Zero-copy byte buffers: [`ShmBufMut`] (written by one process) and [`ShmBuf`] (read-only,
//! shared by any number of processes), whose bytes cross to another process as a descriptor.
//!
//! ## Design
//!
//! A buffer's bytes live in an anonymous memory file of their own (`memfd`), mapped into the
//! process that writes them. A [`ShmBuf`] travels (in a pipe message, a FIFO queue item, a
//! `Process`/`spawn` argument or result, a pool task's argument or result) as a descriptor of
//! that file; the receiver maps the same pages read-only. No byte is copied, whatever the size.
//!
//! Where no descriptor can travel (a value encoded with [`codec::encode`](crate::codec::encode),
//! an item of a `LifoQueue`, `PriorityQueue`, `Dict` or `List`), a buffer travels as its bytes
//! instead, and the receiver gets a new buffer holding a copy: slower, never wrong.
//!
//! Fresh pages are costly (the kernel allocates, zeroes and maps each 4 KiB page; measured here
//! that is 20 times the cost of copying it), so each process keeps the files it made and
//! writes a new buffer into one that no handle uses any more, and keeps its mappings of the
//! files it received; a stream of buffers between two processes then runs at the speed of
//! writing and reading the bytes. `memory.rs` says how reuse stays safe: the kernel seals each
//! file against every writer but its maker's first mapping, and tells the maker, through file
//! locks that travel with every handle sent, when no handle is left anywhere.
//!
//! ## Writability, before and after sending
//!
//! - Before: a [`ShmBufMut`] belongs to one process and is written through `&mut [u8]`. It
//!   cannot be sent; [`freeze`](ShmBufMut::freeze) turns it into a [`ShmBuf`] (no system call).
//! - After: a [`ShmBuf`] is read-only everywhere, in its maker too. The kernel refuses every
//!   write but its maker's, and the maker writes the pages again only for a new buffer, once no
//!   handle to the old one exists in any process or in transit. To change the bytes, copy them
//!   into a new buffer.
//!
//! ## Lifetime
//!
//! The memory is freed when the last process that holds the file lets go of it or dies (the
//! kernel closes a dead process's descriptors and unmaps its memory); a buffer in transit is
//! held by the channel (a queue's or pipe's socket) and freed with it. Each process keeps up to
//! 256 MiB of its own idle buffers for reuse, and mappings of up to 256 MiB of received ones;
//! [`ShmBuf::release_unused`] gives them back at once (a pool worker with a memory ceiling does
//! so before it measures itself). Nothing has a name in any file system,
//! so nothing can be left behind.

mod memory;
mod payload;

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::codec::{self, FdIn, FdOut};
use crate::error::{Error, Result};
use crate::shared::Plain;
use memory::Memory;

pub(crate) use memory::{release_unused, reset_after_fork};
pub(crate) use payload::{Measured, Payload};

/// A byte buffer in shared memory that this process is writing. Freeze it into a [`ShmBuf`] to
/// send it.
///
/// ```
/// use multiprocess::ShmBufMut;
/// let mut buf = ShmBufMut::new(4096)?;
/// buf[..5].copy_from_slice(b"hello");
/// let frozen = buf.freeze(); // read-only from now on, in every process
/// assert_eq!(&frozen[..5], b"hello");
/// assert_eq!(frozen.len(), 4096);
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub struct ShmBufMut {
    /// Memory no other handle uses, mapped writable.
    mem: Arc<Memory>,
    /// The bytes in use (at most the mapping's length).
    len: usize,
}

impl ShmBufMut {
    /// A buffer of `len` zero bytes.
    pub fn new(len: usize) -> Result<ShmBufMut> {
        let (mem, reused) = memory::for_writing(len)?;
        let mut buf = ShmBufMut { mem, len };
        if reused {
            buf.fill(0);
        }
        Ok(buf)
    }

    /// A buffer of `len` bytes whose contents are unspecified (those of a buffer that no one
    /// uses any more), for a writer that fills every byte.
    pub(crate) fn for_overwrite(len: usize) -> Result<ShmBufMut> {
        let (mem, _) = memory::for_writing(len)?;
        Ok(ShmBufMut { mem, len })
    }

    /// A buffer holding a copy of `bytes` (written once: no zeroing first).
    ///
    /// ```
    /// let buf = multiprocess::ShmBufMut::from_slice(b"abc")?;
    /// assert_eq!(&buf[..], b"abc");
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn from_slice(bytes: &[u8]) -> Result<ShmBufMut> {
        let mut buf = ShmBufMut::for_overwrite(bytes.len())?;
        buf.copy_from_slice(bytes);
        Ok(buf)
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens it to `len` bytes (no effect if it is not longer), e.g. after writing fewer
    /// bytes than planned.
    ///
    /// ```
    /// let mut buf = multiprocess::ShmBufMut::new(100)?;
    /// buf.truncate(10);
    /// assert_eq!(buf.freeze().len(), 10);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The bytes as whole elements of a plain type (trailing bytes that do not fill an element
    /// are not part of the view), to fill numeric data in place.
    ///
    /// ```
    /// let mut buf = multiprocess::ShmBufMut::new(8 * 3)?;
    /// buf.as_mut_slice_of::<f64>().copy_from_slice(&[1.0, 2.5, 4.0]);
    /// assert_eq!(buf.freeze().as_slice_of::<f64>(), [1.0, 2.5, 4.0]);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn as_mut_slice_of<T: Plain<Bits = T>>(&mut self) -> &mut [T] {
        let n = self.len / std::mem::size_of::<T>().max(1);
        // SAFETY: the mapping is page-aligned (so aligned for any plain type), holds at least
        // n * size_of::<T>() bytes, and only this handle uses it (borrowed mutably through
        // self); T (its own bit storage) is valid for every bit pattern.
        unsafe { std::slice::from_raw_parts_mut(self.mem.ptr().cast::<T>(), n) }
    }

    /// Makes the bytes final and returns the shareable, read-only buffer (no system call).
    pub fn freeze(self) -> ShmBuf {
        ShmBuf {
            inner: Arc::new(Held {
                mem: self.mem,
                len: self.len,
                _lock: None,
            }),
        }
    }
}

impl Deref for ShmBufMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping holds at least `len` bytes, mapped as long as self; no other
        // handle to this memory exists (see `memory::for_writing`), and writes need `&mut self`.
        unsafe { std::slice::from_raw_parts(self.mem.ptr(), self.len) }
    }
}

impl DerefMut for ShmBufMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, borrowed mutably through self; the mapping is writable.
        unsafe { std::slice::from_raw_parts_mut(self.mem.ptr(), self.len) }
    }
}

impl fmt::Debug for ShmBufMut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmBufMut").field("len", &self.len).finish()
    }
}

/// A buffer's bytes, as this process holds them.
struct Held {
    mem: Arc<Memory>,
    len: usize,
    /// For a buffer received from another process: the descriptor it came with, whose read
    /// lock keeps its maker from reusing the memory while this process holds the buffer.
    _lock: Option<OwnedFd>,
}

/// A read-only byte buffer in shared memory that crosses to other processes without being
/// copied: its pages are handed over as a descriptor. Cloning it is cheap (the clones share the
/// mapping). Make one with [`ShmBufMut::freeze`] or [`ShmBuf::copy_from_slice`].
///
/// ```no_run
/// use multiprocess::{ShmBuf, ShmBufMut};
///
/// fn checksum(buf: ShmBuf) -> u64 {
///     buf.iter().map(|&b| u64::from(b)).sum() // reads the sender's pages, no copy made
/// }
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     let mut buf = ShmBufMut::new(64 << 20)?; // 64 MiB
///     buf.fill(1);
///     let h = multiprocess::spawn(checksum, (buf.freeze(),))?;
///     assert_eq!(h.join()?, 64 << 20);
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct ShmBuf {
    inner: Arc<Held>,
}

impl ShmBuf {
    /// A sealed buffer holding a copy of `bytes`.
    ///
    /// ```
    /// let buf = multiprocess::ShmBuf::copy_from_slice(b"xyz")?;
    /// assert_eq!(&buf[..], b"xyz");
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn copy_from_slice(bytes: &[u8]) -> Result<ShmBuf> {
        Ok(ShmBufMut::from_slice(bytes)?.freeze())
    }

    /// The bytes as whole elements of a plain type (trailing bytes that do not fill an element
    /// are not part of the view).
    ///
    /// ```
    /// let buf = multiprocess::ShmBuf::copy_from_slice(&[1, 0, 2, 0, 9])?;
    /// assert_eq!(buf.as_slice_of::<u16>(), [1, 2]); // little-endian, the odd byte left out
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn as_slice_of<T: Plain<Bits = T>>(&self) -> &[T] {
        let n = self.inner.len / std::mem::size_of::<T>().max(1);
        // SAFETY: the mapping is page-aligned and holds n * size_of::<T>() bytes, which no
        // process writes while a handle to them exists; T is valid for every bit pattern.
        unsafe { std::slice::from_raw_parts(self.inner.mem.ptr().cast::<T>(), n) }
    }

    /// Gives back the memory this process keeps for faster buffers (its own idle buffers and
    /// its mappings of buffers it received), as far as no handle in this process uses it.
    ///
    /// ```
    /// drop(multiprocess::ShmBuf::copy_from_slice(&[0; 1 << 20])?);
    /// multiprocess::ShmBuf::release_unused(); // the megabyte goes back to the system
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn release_unused() {
        memory::release_unused();
    }

    /// The inode of its memory file: the same in every process that holds this buffer (for
    /// tests that check which memory a buffer uses).
    #[doc(hidden)]
    pub fn inode(&self) -> u64 {
        self.inner.mem.inode()
    }
}

impl ShmBuf {
    /// A buffer over a received descriptor (which carries the sender's read lock).
    fn received(fd: OwnedFd, len: u64) -> Result<ShmBuf> {
        let mem = memory::received(fd.as_fd())?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= mem.cap())
            .ok_or_else(|| Error::Decode("a buffer received is longer than its memory".into()))?;
        Ok(ShmBuf {
            inner: Arc::new(Held {
                mem,
                len,
                _lock: Some(fd),
            }),
        })
    }
}

impl Deref for ShmBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping holds at least `len` bytes and stays mapped as long as self; no
        // process writes them while a handle to this buffer exists (see `memory.rs`).
        unsafe { std::slice::from_raw_parts(self.inner.mem.ptr(), self.inner.len) }
    }
}

impl AsRef<[u8]> for ShmBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for ShmBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmBuf").field("len", &self.len()).finish()
    }
}

impl PartialEq for ShmBuf {
    fn eq(&self, other: &ShmBuf) -> bool {
        self[..] == other[..]
    }
}

impl Eq for ShmBuf {}

/// How a buffer travels: its descriptor when the transport moves descriptors, else its bytes.
#[derive(Serialize)]
enum WireOut<'a> {
    Fd(FdOut<'a>, u64),
    Bytes(#[serde(with = "serde_bytes")] &'a [u8]),
}

#[derive(Deserialize)]
enum WireIn {
    Fd(FdIn, u64),
    Bytes(BytesIn),
}

impl Serialize for ShmBuf {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if codec::sending_fds() {
            // A description of its own, read-locked, travels with the handle (see `memory.rs`);
            // the side table keeps it open once this one is closed.
            let locked = self
                .inner
                .mem
                .locked_description()
                .map_err(serde::ser::Error::custom)?;
            WireOut::Fd(FdOut(locked.as_fd()), self.inner.len as u64).serialize(s)
        } else {
            WireOut::Bytes(self).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ShmBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match WireIn::deserialize(d)? {
            WireIn::Fd(FdIn(fd), len) => ShmBuf::received(fd, len).map_err(de::Error::custom),
            WireIn::Bytes(BytesIn(buf)) => Ok(buf),
        }
    }
}

/// Bytes received inline, copied once, straight into a new sealed buffer.
struct BytesIn(ShmBuf);

impl<'de> Deserialize<'de> for BytesIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BytesIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the bytes of a buffer")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<BytesIn, E> {
                ShmBuf::copy_from_slice(v).map(BytesIn).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<BytesIn, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                self.visit_bytes(&bytes)
            }
        }
        d.deserialize_bytes(V)
    }
}
