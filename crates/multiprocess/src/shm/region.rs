//! [`Region`]: an anonymous shared-memory file (`memfd`) mapped into this process.
//!
//! A region reserves a fixed range of address space when it is mapped and may grow inside it
//! (`ftruncate`), so it never moves: pointers into it stay valid for the mapping's life, in every
//! process, whatever another process grows. Only the file's length decides which pages exist;
//! touching a page beyond it would fault, so users keep to offsets they know are inside.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{FdIn, FdOut};

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
        let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: cname is a valid C string; MFD_CLOEXEC keeps it out of exec'd programs.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create just returned this descriptor to us alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let region = Region::map(fd, reserve)?;
        region.grow_to(len)?;
        Ok(region)
    }

    /// Maps an existing region's descriptor.
    pub(crate) fn map(fd: OwnedFd, reserve: usize) -> io::Result<Region> {
        // SAFETY: a fresh shared mapping of a valid descriptor at an address of the kernel's
        // choosing; MAP_NORESERVE because most of the range is not backed until the file grows.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
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
        let mut st: libc::stat = unsafe_zeroed_stat();
        // SAFETY: st is a valid out-pointer.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_size as u64)
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
            // SAFETY: ftruncate on our descriptor has no memory-safety preconditions.
            if unsafe { libc::ftruncate(self.fd.as_raw_fd(), len as libc::off_t) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Gives the pages of `[offset, offset + len)` back to the system (they read as zeros).
    pub(crate) fn release(&self, offset: u64, len: u64) {
        // SAFETY: fallocate only changes the file's allocation; nothing in that range is used.
        unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
    }
}

fn unsafe_zeroed_stat() -> libc::stat {
    // SAFETY: `stat` is plain data for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range in `map` and nothing refers to it any more.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.reserve) };
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
