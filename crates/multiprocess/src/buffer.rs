//! Zero-copy byte buffers: [`ShmBufMut`] (written by one process) and [`ShmBuf`] (sealed,
//! shared by any number of processes), whose bytes cross to another process as a descriptor.
//!
//! ## Design
//!
//! A buffer's bytes live in an anonymous memory file of their own (`memfd`), mapped into the
//! process that writes them. [`ShmBufMut::freeze`] unmaps the writable mapping and *seals* the
//! file (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`): from then on the kernel
//! refuses every write, resize or writable shared mapping, in every process, so the bytes are
//! final and a `&[u8]` over them is sound anywhere. A [`ShmBuf`] travels (in a pipe message, a
//! `Process`/`spawn` argument or result, a pool task's argument or result, a FIFO queue item) as
//! its descriptor; the receiver checks the seals and maps the same pages read-only. No byte is
//! copied, whatever the size.
//!
//! Where no descriptor can travel (a value encoded with [`codec::encode`](crate::codec::encode),
//! a `LifoQueue` or `PriorityQueue` item), a buffer travels as its bytes instead and the receiver
//! gets a fresh sealed buffer holding a copy: slower, never wrong.
//!
//! ## Writability, before and after sending
//!
//! - Before: a [`ShmBufMut`] belongs to one process and is written through `&mut [u8]`. It
//!   cannot be sent; [`freeze`](ShmBufMut::freeze) turns it into a [`ShmBuf`].
//! - After: a [`ShmBuf`] is read-only everywhere, in the sender too (the kernel enforces it, not
//!   only the type system). To change the bytes, copy them into a new buffer.
//!
//! ## Lifetime
//!
//! The memory is freed when the last process that holds the buffer drops it (or dies: the
//! kernel closes a dead process's descriptors and unmaps its memory). A buffer in transit is
//! held by the channel itself (a queue's or pipe's socket) and freed with it. Nothing has a name
//! in any file system, so nothing can be left behind.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::codec::{self, FdIn, FdOut};
use crate::error::{Error, Result};
use crate::shared::Plain;
use crate::sys::mem::{self, Access, Mapping};

/// The name a buffer's memory file shows in `/proc/<pid>/fd` (as `memfd:multiprocess-buf`).
pub(crate) const MEMFD_NAME: &str = "multiprocess-buf";

/// Bytes from which a receiver maps a buffer with all its pages at once (`MAP_POPULATE`)
/// rather than one page fault at a time.
const POPULATE_FROM: usize = 64 * 1024;

/// A byte buffer in shared memory that this process is writing. Freeze it into a [`ShmBuf`] to
/// send it.
///
/// ```
/// use multiprocess::ShmBufMut;
/// let mut buf = ShmBufMut::new(4096)?;
/// buf[..5].copy_from_slice(b"hello");
/// let frozen = buf.freeze()?; // read-only from now on, in every process
/// assert_eq!(&frozen[..5], b"hello");
/// assert_eq!(frozen.len(), 4096);
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub struct ShmBufMut {
    fd: OwnedFd,
    map: Mapping,
    /// The bytes in use (at most the mapping's length).
    len: usize,
}

impl ShmBufMut {
    /// A buffer of `len` zero bytes.
    pub fn new(len: usize) -> Result<ShmBufMut> {
        let fd = mem::memfd_create(MEMFD_NAME, true)?;
        mem::set_len(fd.as_fd(), len as u64)?;
        // The writer is about to fill it: every page at once is cheaper than a fault per page.
        let map = Mapping::new(fd.as_fd(), len, Access::ReadWrite, true)?;
        Ok(ShmBufMut { fd, map, len })
    }

    /// A buffer holding a copy of `bytes`.
    ///
    /// ```
    /// let buf = multiprocess::ShmBufMut::from_slice(b"abc")?;
    /// assert_eq!(&buf[..], b"abc");
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn from_slice(bytes: &[u8]) -> Result<ShmBufMut> {
        let mut buf = ShmBufMut::new(bytes.len())?;
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
    /// bytes than planned. The memory of the bytes cut off is given back when it is frozen.
    ///
    /// ```
    /// let mut buf = multiprocess::ShmBufMut::new(100)?;
    /// buf.truncate(10);
    /// assert_eq!(buf.freeze()?.len(), 10);
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
    /// assert_eq!(buf.freeze()?.as_slice_of::<f64>(), [1.0, 2.5, 4.0]);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn as_mut_slice_of<T: Plain<Bits = T>>(&mut self) -> &mut [T] {
        let n = self.len / std::mem::size_of::<T>().max(1);
        // SAFETY: the mapping is page-aligned (so aligned for any plain type), holds at least
        // n * size_of::<T>() bytes, and is borrowed mutably through self; T (its own bit
        // storage) is valid for every bit pattern.
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr().cast::<T>(), n) }
    }

    /// Seals the bytes for good and returns the shareable, read-only buffer.
    pub fn freeze(self) -> Result<ShmBuf> {
        let ShmBufMut { fd, map, len } = self;
        // F_SEAL_WRITE needs every writable shared mapping gone: ours is the only one, unless
        // a thread forked this process while the buffer was being written (the child inherited
        // the mapping). Then the bytes move to a fresh file, made after that fork.
        drop(map);
        if (len as u64) < mem::file_stat(fd.as_fd())?.len {
            mem::set_len(fd.as_fd(), len as u64)?;
        }
        match mem::add_seals(fd.as_fd(), mem::FINAL_SEALS) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let old = Mapping::new(fd.as_fd(), len, Access::Read, true)?;
                // SAFETY: the mapping holds `len` bytes; only a forked copy of this process
                // could still write them, and such a copy's writes are not ours to order.
                let bytes = unsafe { std::slice::from_raw_parts(old.ptr(), len) };
                let copy = ShmBufMut::from_slice(bytes)?;
                drop(old);
                let ShmBufMut { fd, map, .. } = copy;
                drop(map);
                mem::add_seals(fd.as_fd(), mem::FINAL_SEALS)?;
                return ShmBuf::sealed(fd, len);
            }
            Err(e) => return Err(e.into()),
        }
        ShmBuf::sealed(fd, len)
    }
}

impl Deref for ShmBufMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping holds at least `len` bytes, mapped as long as self; only this
        // process maps the file writably, and writes need `&mut self`.
        unsafe { std::slice::from_raw_parts(self.map.ptr(), self.len) }
    }
}

impl DerefMut for ShmBufMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, borrowed mutably through self.
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr(), self.len) }
    }
}

impl fmt::Debug for ShmBufMut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmBufMut").field("len", &self.len).finish()
    }
}

/// A sealed file and its read-only mapping.
struct Sealed {
    fd: OwnedFd,
    map: Mapping,
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
///     let h = multiprocess::spawn(checksum, (buf.freeze()?,))?;
///     assert_eq!(h.join()?, 64 << 20);
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct ShmBuf {
    inner: Arc<Sealed>,
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
        ShmBufMut::from_slice(bytes)?.freeze()
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
        let n = self.inner.map.len() / std::mem::size_of::<T>().max(1);
        // SAFETY: the mapping is page-aligned and holds n * size_of::<T>() bytes, sealed
        // against every write; T (its own bit storage) is valid for every bit pattern.
        unsafe { std::slice::from_raw_parts(self.inner.map.ptr().cast::<T>(), n) }
    }

    /// The inode of its memory file: the same in every process that holds this buffer (for
    /// tests that check nothing keeps it alive).
    #[doc(hidden)]
    pub fn inode(&self) -> u64 {
        mem::file_stat(self.inner.fd.as_fd()).map_or(0, |st| st.ino)
    }

    /// The buffer of a file this process just sealed.
    fn sealed(fd: OwnedFd, len: usize) -> Result<ShmBuf> {
        // The sender rarely reads its buffer again: no populating here.
        let map = Mapping::new(fd.as_fd(), len, Access::Read, false)?;
        Ok(ShmBuf {
            inner: Arc::new(Sealed { fd, map }),
        })
    }

    /// A buffer over a received descriptor, after checking that its bytes are final.
    fn from_received(fd: OwnedFd) -> Result<ShmBuf> {
        let required = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if mem::seals(fd.as_fd())? & required != required {
            return Err(Error::Decode(
                "the buffer received is not sealed against changes".into(),
            ));
        }
        let len = usize::try_from(mem::file_stat(fd.as_fd())?.len)
            .map_err(|_| Error::Decode("the buffer received is too large to map".into()))?;
        let map = Mapping::new(fd.as_fd(), len, Access::Read, len >= POPULATE_FROM)?;
        Ok(ShmBuf {
            inner: Arc::new(Sealed { fd, map }),
        })
    }
}

impl Deref for ShmBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the whole mapping is the file's sealed contents: no process can write or
        // shrink it, and it stays mapped as long as self.
        unsafe { std::slice::from_raw_parts(self.inner.map.ptr(), self.inner.map.len()) }
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
    Fd(FdOut<'a>),
    Bytes(#[serde(with = "serde_bytes")] &'a [u8]),
}

#[derive(Deserialize)]
enum WireIn {
    Fd(FdIn),
    Bytes(BytesIn),
}

impl Serialize for ShmBuf {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if codec::sending_fds() {
            WireOut::Fd(FdOut(self.inner.fd.as_fd())).serialize(s)
        } else {
            WireOut::Bytes(self).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ShmBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match WireIn::deserialize(d)? {
            WireIn::Fd(FdIn(fd)) => ShmBuf::from_received(fd).map_err(de::Error::custom),
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
