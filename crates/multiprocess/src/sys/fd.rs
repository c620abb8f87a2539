//! Descriptors: the close-on-exec and non-blocking flags, closing all but a few descriptors
//! between `fork` and `exec`, the size and limit of the descriptor table, and waiting until
//! descriptors are readable (`poll` with a deadline, resumed after signals), and writing to
//! stderr without Rust's lock.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::{check, deadline_after};

/// The raw number of anything that holds a descriptor.
pub fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

/// Duplicates a descriptor; the copy is close-on-exec.
pub fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// Marks a descriptor to be inherited across `exec` (clears `FD_CLOEXEC`). Only calls `fcntl`,
/// so it is async-signal-safe and may run between `fork` and `exec`.
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer descriptor has no memory-safety preconditions.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(drop)
}

/// Marks a descriptor close-on-exec.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer descriptor has no memory-safety preconditions.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// Puts a descriptor in or out of non-blocking mode.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a valid descriptor has no memory-safety preconditions.
    let flags = check(unsafe { libc::fcntl(raw, libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    check(unsafe { libc::fcntl(raw, libc::F_SETFL, flags) }).map(drop)
}

/// What [`close_all_except`] does with the descriptors it does not keep.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unkept {
    /// Close them (in a forked child that will not `exec`).
    Close,
    /// Mark them close-on-exec (between `fork` and `exec`: the `exec` closes them, while a
    /// descriptor the exec machinery itself needs until then, such as `std`'s error pipe, stays
    /// usable).
    CloseOnExec,
}

/// Closes (or marks close-on-exec) every descriptor from 3 upward except those in `keep`, which
/// must be sorted in ascending order. Allocates nothing and only makes `close_range` calls, so
/// it may run between `fork` and `exec`: a child then holds exactly the descriptors meant for it.
pub fn close_all_except(keep: &[RawFd], unkept: Unkept) {
    let flags: libc::c_uint = match unkept {
        Unkept::Close => 0,
        Unkept::CloseOnExec => libc::CLOSE_RANGE_CLOEXEC,
    };
    let mut next: u32 = 3;
    for &fd in keep {
        if fd < next as RawFd {
            continue;
        }
        if fd as u32 > next {
            // SAFETY: close_range only closes (or flags) descriptors, none of the kept ones;
            // with Unkept::Close the caller owns every descriptor in the range.
            unsafe { libc::syscall(libc::SYS_close_range, next, fd as u32 - 1, flags) };
        }
        next = fd as u32 + 1;
    }
    // SAFETY: as above, for everything above the last kept descriptor.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, flags) };
}

/// Replaces standard input with `/dev/null`.
pub fn stdin_from_dev_null() {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: dup2 onto descriptor 0 with a valid open descriptor; `null` is closed after.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
}

/// Writes `buf` to stderr (descriptor 2) with as few `write` calls as it takes (one, for a
/// line: lines from several processes never mix), without taking the lock of Rust's `Stderr`,
/// which a forked child may have inherited held. Errors are dropped: there is nowhere to report
/// them.
pub fn write_stderr(mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a valid readable slice for the duration of the call.
        let n = unsafe { libc::write(2, buf.as_ptr().cast(), buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// Makes room in this process's descriptor table for `fds` descriptors (fewer if its limit
/// is lower), by opening one that high and closing it: the table never shrinks. Call it
/// while the process has one thread: with more, each growth of the table waits for an RCU
/// grace period (14–27 ms measured here), with the process doing nothing.
pub fn reserve_fd_table(fds: usize) {
    let soft = fd_limit().map(|rlim| rlim.rlim_cur);
    let room = soft.map_or(fds, |n| fds.min(usize::try_from(n).unwrap_or(usize::MAX)));
    let Some(highest) = room.checked_sub(1).and_then(|n| RawFd::try_from(n).ok()) else {
        return;
    };
    // SAFETY: F_DUPFD_CLOEXEC only adds a descriptor, which is closed at once (ours alone).
    unsafe {
        let fd = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, highest);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

/// Whether `fd` is an open descriptor of this process.
pub fn is_open_fd(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1
}

/// Raises the soft limit on open descriptors to the hard limit (for the fork server, which
/// holds one socket per live child).
pub fn raise_fd_limit() {
    if let Some(mut rlim) = fd_limit().filter(|rlim| rlim.rlim_cur < rlim.rlim_max) {
        rlim.rlim_cur = rlim.rlim_max;
        // SAFETY: rlim is a valid, initialised rlimit struct.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) };
    }
}

/// This process's limits on open descriptors (soft and hard), if they can be read.
fn fd_limit() -> Option<libc::rlimit> {
    // SAFETY: rlim is a valid out struct for getrlimit.
    unsafe {
        let mut rlim: libc::rlimit = std::mem::zeroed();
        (libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) == 0).then_some(rlim)
    }
}

/// Waits until at least one of `fds` is readable (or hung up), or the timeout passes.
/// `None` waits without limit. Returns one flag per descriptor, all false on timeout.
/// Interrupted waits resume with the time that is left.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let deadline = timeout.and_then(deadline_after);
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a wait never ends before its deadline.
                left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: pollfds is a valid, correctly sized array for the duration of the call.
        let ret = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
        if ret >= 0 {
            if ret == 0 && deadline.is_some_and(|d| Instant::now() < d) {
                continue;
            }
            return Ok(pollfds.iter().map(|p| p.revents != 0).collect());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether `fd` is readable right now (a poll with a zero timeout).
pub fn is_readable(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(poll_readable(&[fd], Some(Duration::ZERO))?[0])
}
