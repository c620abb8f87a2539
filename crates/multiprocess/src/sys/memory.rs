//! Memory: anonymous shared-memory files (`memfd`) and their mappings (map, unmap, grow, give
//! pages back by punching holes; seal, lock and reopen for zero-copy buffers), the page size,
//! and this process's resident memory.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// Creates an empty anonymous shared-memory file, close-on-exec. `name` only shows in
/// `/proc/<pid>/fd` and `/proc/<pid>/maps`; no file system holds it.
pub fn memfd_create(name: &str) -> io::Result<OwnedFd> {
    let cname = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: cname is a valid C string; MFD_CLOEXEC keeps it out of exec'd programs.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Maps `len` bytes of the file `fd`, shared and writable, at an address of the kernel's
/// choosing. Address space is reserved for all of `len` (`MAP_NORESERVE`: no memory is
/// committed); only the pages inside the file's length may be touched.
pub fn map_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh shared mapping of a valid descriptor at an address of the kernel's
    // choosing overlaps nothing that exists.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))
}

/// Unmaps a mapping made by [`map_shared`].
///
/// # Safety
/// `base` and `len` are exactly a mapping returned by [`map_shared`], and nothing uses any
/// address in it any more.
pub unsafe fn unmap(base: NonNull<u8>, len: usize) {
    // SAFETY: per the contract, the range is our mapping and unused.
    unsafe { libc::munmap(base.as_ptr().cast(), len) };
}

/// The length of the file `fd`.
pub fn file_len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: `stat` is plain data for which all-zero bytes are valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_size as u64)
}

/// Sets the length of the file `fd` (`ftruncate`); new bytes read as zeros.
pub fn set_file_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: ftruncate on a valid descriptor has no memory-safety preconditions.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the pages of `[offset, offset + len)` of the file `fd` back to the system, keeping
/// the file's length: they read as zeros afterwards.
pub fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: fallocate only changes the file's allocation; it touches no memory of ours.
    let ret = unsafe {
        libc::fallocate(
            fd.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The size of a memory page, in bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64
}

/// The resident memory of this process, in bytes (0 if `/proc` cannot tell).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

/// Creates an empty anonymous shared-memory file that can be sealed (see [`seal_writers`]),
/// close-on-exec.
pub fn memfd_create_sealable(name: &str) -> io::Result<OwnedFd> {
    let cname = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: cname is a valid C string for the duration of the call.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Seals a file made by [`memfd_create_sealable`] so that it stays writable only through the
/// writable mappings that exist now: no new writable mapping, no `write(2)`, no resize, no
/// change of seals (`F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`).
pub fn seal_writers(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals =
        libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a valid descriptor has no memory-safety preconditions.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a file is sealed against resizing and against writes through new mappings or
/// `write(2)` (`F_SEAL_WRITE` or `F_SEAL_FUTURE_WRITE`): a reader's mapping of it cannot shrink
/// under it, and only mappings that existed before the seal can write.
pub fn sealed_for_readers(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: as above.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals == -1 {
        let err = io::Error::last_os_error();
        // A file that cannot be sealed at all says EINVAL.
        return if err.raw_os_error() == Some(libc::EINVAL) {
            Ok(false)
        } else {
            Err(err)
        };
    }
    let resize = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    let writes = libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE;
    Ok(seals & resize == resize && seals & writes != 0)
}

/// The device and inode of the file `fd`: together they name the file.
pub fn file_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    // SAFETY: `stat` is plain data for which all-zero bytes are valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino))
}

/// What tells two open files apart: device, inode and access mode (`O_RDONLY`, `O_WRONLY`,
/// `O_RDWR`). Descriptors with the same key can stand in for each other.
pub fn open_file_key(fd: BorrowedFd<'_>) -> io::Result<(u64, u64, i32)> {
    let (dev, ino) = file_id(fd)?;
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((dev, ino, flags & libc::O_ACCMODE))
}

/// Opens the file of `fd` again, read-only: a new *open file description*, with locks of its
/// own (`fcntl` OFD locks belong to a description, not to a process or a descriptor number).
pub fn reopen_read_only(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let path =
        CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io::Error::other)?;
    // SAFETY: path is a valid C string; the result is a new descriptor or -1.
    let new = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A lock on a whole file, held by an open file description.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FileLock {
    /// Shared: many descriptions may hold it.
    Read,
    /// Exclusive.
    Write,
    /// Release what this description holds.
    Unlock,
}

/// Sets the OFD lock of `fd`'s open file description on the whole file, without waiting.
/// `Ok(false)` when another description holds a conflicting lock. The lock lasts until it is
/// changed or the description is closed everywhere (also when its holders die); descriptors
/// made by `dup`, inherited, or passed with `SCM_RIGHTS` share their description and its lock.
pub fn ofd_lock(fd: BorrowedFd<'_>, lock: FileLock) -> io::Result<bool> {
    // SAFETY: `flock` is plain data; every field that matters is set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = match lock {
        FileLock::Read => libc::F_RDLCK,
        FileLock::Write => libc::F_WRLCK,
        FileLock::Unlock => libc::F_UNLCK,
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fl is a valid flock for the call; F_OFD_SETLK does not block.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

/// How a [`Mapping`] may be accessed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// Read only: the process cannot write through it.
    Read,
    /// Read and write, shared with every other mapping of the file.
    ReadWrite,
}

/// One shared mapping of a file, unmapped when dropped. A mapping of 0 bytes maps nothing.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; who may access it and how is decided by its owners
// (sealed buffers are read-only, shared blocks are documented as racy).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd` (which must be at least that long) shared, with
    /// `access`. `populate` faults every page in at once (`MAP_POPULATE`): one system call
    /// instead of one fault per page, for memory that is about to be read or written whole.
    pub fn new(fd: BorrowedFd<'_>, len: usize, access: Access, populate: bool) -> io::Result<Self> {
        if len == 0 {
            return Ok(Mapping {
                ptr: NonNull::dangling(),
                len: 0,
            });
        }
        let prot = match access {
            Access::Read => libc::PROT_READ,
            Access::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        };
        let mut flags = libc::MAP_SHARED;
        if populate {
            flags |= libc::MAP_POPULATE;
        }
        // SAFETY: a fresh mapping at an address of the kernel's choosing; it overlaps nothing.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }

    /// The first byte (page-aligned; dangling for an empty mapping).
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: we mapped exactly this range in `new`, and nothing borrows it any more
            // (borrows of the bytes are tied to the owner of this mapping).
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}
