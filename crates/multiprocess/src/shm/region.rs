//! [`Region`]: an anonymous shared-memory file (`memfd`) mapped into this process.
//!
//! A region reserves a fixed range of address space when it is mapped and may grow inside it
//! (`ftruncate`), so it never moves: pointers into it stay valid for the mapping's life, in every
//! process, whatever another process grows. Only the file's length decides which pages exist;
//! touching a page beyond it would fault, so users keep to offsets they know are inside.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{FdIn, FdOut};
use crate::sys;

/// A shared-memory region mapped into this process.
pub(crate) struct Region {
    fd: OwnedFd,
    base: NonNull<u8>,
    /// Bytes of address space reserved for the mapping (the most the region can grow to).
    reserve: usize,
}

// SAFETY: the mapping is shared memory that every user accesses through atomics or under a
// process-shared lock; the pointer itself is never mutated after creation.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// Creates a region of `len` zeroed bytes that may grow to `reserve` bytes.
    pub(crate) fn create(name: &str, len: u64, reserve: usize) -> io::Result<Region> {
        let region = Region::map(sys::memfd_create(name)?, reserve)?;
        region.grow_to(len)?;
        Ok(region)
    }

    /// Maps an existing region's descriptor.
    pub(crate) fn map(fd: OwnedFd, reserve: usize) -> io::Result<Region> {
        let base = sys::map_shared(fd.as_fd(), reserve)?;
        Ok(Region { fd, base, reserve })
    }

    /// The start of the mapping.
    pub(crate) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The most bytes the region can grow to.
    pub(crate) fn reserve(&self) -> usize {
        self.reserve
    }

    /// The file's length now.
    pub(crate) fn file_len(&self) -> io::Result<u64> {
        sys::file_len(self.fd.as_fd())
    }

    /// Grows the file to at least `len` bytes (never shrinks it).
    pub(crate) fn grow_to(&self, len: u64) -> io::Result<()> {
        if len > self.reserve as u64 {
            return Err(io::Error::other(format!(
                "shared memory region cannot grow to {len} bytes (limit {})",
                self.reserve
            )));
        }
        if self.file_len()? < len {
            sys::set_file_len(self.fd.as_fd(), len)?;
        }
        Ok(())
    }

    /// Gives the pages of `[offset, offset + len)` back to the system (they read as zeros).
    /// Best effort: pages that stay only cost memory.
    pub(crate) fn release(&self, offset: u64, len: u64) {
        let _ = sys::punch_hole(self.fd.as_fd(), offset, len);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `map` mapped exactly this range and nothing refers to it any more.
        unsafe { sys::unmap(self.base, self.reserve) };
    }
}

impl AsFd for Region {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// How a region travels to another process: its descriptor and its reservation.
impl Serialize for Region {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&FdOut(self.fd.as_fd()))?;
        t.serialize_element(&(self.reserve as u64))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (FdIn(fd), reserve) = <(FdIn, u64)>::deserialize(d)?;
        Region::map(fd, reserve as usize).map_err(serde::de::Error::custom)
    }
}
