//! Memory: anonymous shared-memory files (`memfd`) and their mappings (map, unmap, grow, give
//! pages back by punching holes), the page size, and this process's resident memory.

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
