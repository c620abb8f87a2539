//! The one place that talks to the Unix kernel directly.
//!
//! Everything that is Linux- or Unix-specific lives here, behind small safe wrappers, so that a
//! port (macOS first) changes this file and nothing else: pidfds, `poll` with a deadline,
//! `fork`, socket pairs, file descriptors passed with `SCM_RIGHTS`, wait statuses and signals.

pub mod mem;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Turns a `-1` return into the thread's `errno` as an [`io::Error`].
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The id of the calling process.
pub fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// The id of the calling process's real (kernel) parent.
pub fn getppid() -> u32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Opens a pidfd for `pid`: a file descriptor that refers to that very process (never to a later
/// one that reuses the number), becomes readable when it exits, and can be signalled race-free.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process a pidfd refers to. A process that has already exited is not an
/// error (the signal has nowhere to go), so this returns `Ok(false)` then.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<bool> {
    // SAFETY: the descriptor is valid for the call; a null siginfo means "as kill(2) would".
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    signal_sent(ret as libc::c_int)
}

/// A signal call's result: delivered (`true`), or no such process any more (`false`).
fn signal_sent(ret: libc::c_int) -> io::Result<bool> {
    if ret == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(err)
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

/// Reaps the child `pid` if it has exited; `Ok(None)` while it is still running.
/// The value is the raw wait status, to be read with [`exitcode_from_status`].
pub fn try_wait(pid: u32) -> io::Result<Option<i32>> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer; WNOHANG makes the call non-blocking.
        let ret = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        match ret {
            0 => return Ok(None),
            -1 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            _ => return Ok(Some(status)),
        }
    }
}

/// Reaps the child `pid`, waiting for it to exit.
pub fn wait_blocking(pid: u32) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        if unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) } != -1 {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Python's exit-code convention for a raw wait status: the exit code, or `-N` for death by
/// signal N.
pub fn exitcode_from_status(status: i32) -> i32 {
    if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
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

/// Duplicates a descriptor; the copy is close-on-exec.
pub fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
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

/// `now + d`, or `None` (no deadline) when that is too far to represent.
pub fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// Whether the process `pid` has exited (a zombie counts as exited) or never existed.
pub fn process_is_dead(pid: u32) -> bool {
    match pidfd_open(pid) {
        // Only "no such process" means dead: running out of descriptors or memory says
        // nothing about the process, and taking its lock then would let two hold it.
        Err(e) => e.raw_os_error() == Some(libc::ESRCH),
        Ok(fd) => is_readable(fd.as_fd()).unwrap_or(false),
    }
}

/// When process `pid` started (clock ticks since boot, field 22 of `/proc/<pid>/stat`): with the
/// pid, it names one process for good, even after the kernel reuses the pid.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// [`process_start_time`] of the calling process (whose pid is `me`), read once per process.
pub fn own_start_time(me: u32) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    // pid << 32 | low bits of the start time would not fit: keep both words, pid last.
    static START: AtomicU64 = AtomicU64::new(0);
    static FOR_PID: AtomicU64 = AtomicU64::new(0);
    if FOR_PID.load(Ordering::Acquire) == u64::from(me) {
        return START.load(Ordering::Acquire);
    }
    let start = process_start_time(me).unwrap_or(0);
    START.store(start, Ordering::Release);
    FOR_PID.store(u64::from(me), Ordering::Release);
    start
}

/// The calling thread's id, unique across all processes of the system (its pid namespace).
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// Sends `signal` to `pid` with kill(2); `Ok(false)` if no such process exists any more.
pub fn kill(pid: u32, signal: i32) -> io::Result<bool> {
    // SAFETY: kill has no memory-safety preconditions.
    signal_sent(unsafe { libc::kill(pid as libc::pid_t, signal) })
}

/// Writes all of `buf` to a socket without raising SIGPIPE when the peer is gone (the error comes
/// back as `BrokenPipe` instead).
pub fn send_all(sock: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid readable slice for the duration of the call.
        let n = unsafe {
            libc::send(
                sock.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Sends `bytes` (at least one byte) with `fds` attached as `SCM_RIGHTS`. The receiver gets its
/// own copies of the descriptors; ours stay open.
pub fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(
        !bytes.is_empty(),
        "descriptors must ride on at least one byte"
    );
    let payload = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call, and the
    // control buffer is 8-byte aligned and CMSG_SPACE(payload) long, as CMSG_* require.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        }
        loop {
            let n = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    };
    send_all(sock.as_fd(), &bytes[sent..])
}

/// The most descriptors one [`recv_with_fds`] accepts.
pub const MAX_FDS_PER_MESSAGE: usize = 253; // the kernel's SCM_MAX_FD

/// Receives exactly `buf.len()` bytes and the descriptors sent with them by [`send_with_fds`].
/// `Ok(None)` means the peer closed the socket before sending anything.
pub fn recv_with_fds(sock: &UnixStream, buf: &mut [u8]) -> io::Result<Option<Vec<OwnedFd>>> {
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS_PER_MESSAGE * 4) as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data and its pointers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg describes valid buffers; MSG_CMSG_CLOEXEC marks received fds close-on-exec.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled the control buffer; CMSG_* walk it within msg_controllen, and
    // each SCM_RIGHTS entry holds descriptors just installed in our table for us to own.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if n == 0 {
        return Ok(None);
    }
    io::Read::read_exact(&mut &*sock, &mut buf[n..])?;
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // `buf` is complete, so the stream stays in step; the descriptors that did arrive
        // are closed with `fds`.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors were truncated in transit",
        ));
    }
    Ok(Some(fds))
}

/// The identity of the running executable (device, inode, size, modification time), to check
/// that a re-executed child runs the very same binary as its parent before it trusts any code
/// offset the parent sent.
pub fn exe_identity() -> io::Result<[u64; 4]> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/self/exe")?;
    Ok([
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime_nsec() as u64 ^ m.mtime() as u64,
    ])
}

/// Forks the calling process. Returns 0 in the child and the child's pid in the parent.
///
/// # Safety
/// In a multi-threaded process the child may only rely on state that no other thread could have
/// held locked at the instant of the fork (the classic fork-with-threads hazard).
pub unsafe fn fork() -> io::Result<u32> {
    // SAFETY: the caller upholds the contract above.
    let pid = check(unsafe { libc::fork() })?;
    Ok(pid as u32)
}

/// Ends the calling process at once with `code`, without running `atexit` handlers or
/// destructors (the child-side counterpart of `os._exit`).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
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

/// Restores the default disposition of the signals a parent may have changed and unblocks all
/// signals: a child starts with a clean signal state.
pub fn reset_signals_for_child() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD, libc::SIGHUP] {
        // SAFETY: SIG_DFL is always a valid disposition for these catchable signals.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty, initialised set; sigprocmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Ignores `signal` in this process.
pub fn ignore_signal(signal: i32) {
    // SAFETY: SIG_IGN is a valid disposition for catchable signals.
    unsafe { libc::signal(signal, libc::SIG_IGN) };
}

/// A descriptor that waits for SIGCHLD (blocked for normal delivery): readable when a child
/// has changed state.
pub fn sigchld_fd() -> io::Result<OwnedFd> {
    // SAFETY: the set is initialised before use; the calls only read it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        check(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        let fd = check(libc::signalfd(
            -1,
            &set,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Empties a non-blocking signalfd.
pub fn drain_signalfd(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>() * 8];
    // SAFETY: buf is valid for writes of its length; the fd is non-blocking.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// Reaps any exited child; `Some((pid, status))` for one, `None` when none is left to reap.
pub fn reap_any() -> Option<(u32, i32)> {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer; WNOHANG keeps the call non-blocking.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid as u32, status))
}

/// Makes a socket pair whose ends are close-on-exec.
pub fn socketpair() -> io::Result<(UnixStream, UnixStream)> {
    UnixStream::pair()
}

/// The raw number of anything that holds a descriptor.
pub fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}
