//! Names in `/dev/shm` (POSIX shared memory, Python's `shared_memory`): opening, creating and
//! removing them, renaming without replacing, and what makes and checks them (random bits,
//! the user's id).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A name for the kernel, refused if it holds a NUL byte.
fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a name must not contain NUL bytes",
        )
    })
}

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
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

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
