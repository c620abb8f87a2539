//! Memory the kernel shares between processes: anonymous files (`memfd`) and their seals, POSIX
//! shared-memory names (`/dev/shm`), and mappings of either.
//!
//! - [`memfd_create`] makes an anonymous file; [`add_seals`] / [`seals`] fix its size and
//!   contents for good (`F_SEAL_*`), so that a receiver can map it knowing nobody can change it.
//! - [`shm_open`] / [`shm_unlink`] give a file a name under `/dev/shm` that unrelated processes
//!   can open.
//! - [`Mapping`] is one `mmap` of a file, unmapped when dropped.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A name for the kernel, refused if it holds a NUL byte.
fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a name must not contain NUL bytes",
        )
    })
}

/// Creates an anonymous, close-on-exec file in memory. `sealable` allows [`add_seals`] on it.
/// `name` only shows in `/proc/<pid>/fd` (as `memfd:<name>`).
pub fn memfd_create(name: &str, sealable: bool) -> io::Result<OwnedFd> {
    let cname = c_name(name)?;
    let mut flags = libc::MFD_CLOEXEC;
    if sealable {
        flags |= libc::MFD_ALLOW_SEALING;
    }
    // SAFETY: cname is a valid C string for the duration of the call.
    let fd = check(unsafe { libc::memfd_create(cname.as_ptr(), flags) })?;
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The seals that leave a file writable only through the writable mappings that exist when
/// they are added: no new writable mapping, no `write(2)`, no resize, no change of seals.
pub const WRITERS_SEALED: libc::c_int =
    libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Adds `seals` to a file made by [`memfd_create`] with `sealable`. `F_SEAL_WRITE` fails with
/// `EBUSY` while any writable shared mapping of the file exists.
pub fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl on a valid descriptor has no memory-safety preconditions.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// The seals a file carries (0 for a file that cannot be sealed).
pub fn seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: as above.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if ret == -1 {
        let err = io::Error::last_os_error();
        // Files that do not support sealing at all say EINVAL.
        return if err.raw_os_error() == Some(libc::EINVAL) {
            Ok(0)
        } else {
            Err(err)
        };
    }
    Ok(ret)
}

/// Opens the file of `fd` again, read-only: a new *open file description*, with locks of its
/// own (`fcntl` OFD locks belong to a description, not to a process or a descriptor number).
pub fn reopen_read_only(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let path =
        CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io::Error::other)?;
    // SAFETY: path is a valid C string; the result is a new descriptor or -1.
    let new = check(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: open just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A lock on a whole file, held by an open file description.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lock {
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
pub fn ofd_lock(fd: BorrowedFd<'_>, lock: Lock) -> io::Result<bool> {
    // SAFETY: `flock` is plain data; every field is set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = match lock {
        Lock::Read => libc::F_RDLCK,
        Lock::Write => libc::F_WRLCK,
        Lock::Unlock => libc::F_UNLCK,
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

/// Sets a file's length (its new bytes read as zeros).
pub fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
    // SAFETY: ftruncate on a valid descriptor has no memory-safety preconditions.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
}

/// What [`file_stat`] tells about a file.
#[derive(Clone, Copy, Debug)]
pub struct FileStat {
    /// Its length in bytes.
    pub len: u64,
    /// The device of its file system and its inode number: together they name the file.
    pub id: (u64, u64),
}

/// A file's length and inode.
pub fn file_stat(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    // SAFETY: `stat` is plain data; fstat fills it in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(FileStat {
        len: st.st_size as u64,
        id: (st.st_dev, st.st_ino),
    })
}

/// Opens (with `create`: creates, failing if it exists) the POSIX shared-memory object `name`
/// (`/name`, as `shm_open(3)` wants), read-write, close-on-exec, with permission bits `mode`
/// when created.
pub fn shm_open(name: &str, create: bool, mode: u32) -> io::Result<OwnedFd> {
    let cname = c_name(name)?;
    let mut flags = libc::O_RDWR | libc::O_CLOEXEC;
    if create {
        flags |= libc::O_CREAT | libc::O_EXCL;
    }
    // SAFETY: cname is a valid C string; the mode is only used when creating.
    let fd = check(unsafe { libc::shm_open(cname.as_ptr(), flags, mode as libc::mode_t) })?;
    // SAFETY: the kernel just returned this descriptor to us alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if create {
        // The umask may have taken bits away; a created object gets exactly `mode`.
        // SAFETY: fchmod on our own descriptor has no memory-safety preconditions.
        check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    }
    Ok(fd)
}

/// Removes the POSIX shared-memory name `name`; processes that have it open or mapped keep it.
pub fn shm_unlink(name: &str) -> io::Result<()> {
    let cname = c_name(name)?;
    // SAFETY: cname is a valid C string.
    check(unsafe { libc::shm_unlink(cname.as_ptr()) }).map(drop)
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

/// Where the system keeps POSIX shared-memory names.
pub const SHM_DIR: &str = "/dev/shm";

/// Renames `from` to `to` in the same file system, failing with `AlreadyExists` instead of
/// replacing an existing `to` (`renameat2(RENAME_NOREPLACE)`): a name appears whole, at once.
pub fn rename_noreplace(from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let from = CString::new(from.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let to = CString::new(to.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both are valid C strings for the duration of the call.
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    })
    .map(drop)
}

/// 64 random bits from the kernel (for names nobody can guess or collide with).
pub fn random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    let mut got = 0;
    while got < bytes.len() {
        // SAFETY: the buffer is valid for writes of the remaining length.
        let n = unsafe { libc::getrandom(bytes[got..].as_mut_ptr().cast(), bytes.len() - got, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            continue;
        }
        got += n as usize;
    }
    Ok(u64::from_le_bytes(bytes))
}
