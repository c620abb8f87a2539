//! Processes: ids, pidfds (a descriptor that names one process for good), `fork` and `_exit`,
//! reaping children and reading wait statuses, a process's start time, the running binary's
//! identity and which loaded object an address belongs to, and the process-wide hooks run at
//! exit and in a forked child.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::check;
use super::fd::is_readable;
use super::signal::signal_sent;

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

/// The calling thread's id, unique across all processes of the system (its pid namespace).
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
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

/// Reaps any exited child; `Some((pid, status))` for one, `None` when none is left to reap.
pub fn reap_any() -> Option<(u32, i32)> {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer; WNOHANG keeps the call non-blocking.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid as u32, status))
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

/// Runs `hook` when the process exits through `exit` (a return from `main` included), after
/// hooks registered later. The hook may not unwind.
pub fn at_exit(hook: extern "C" fn()) {
    // SAFETY: a plain function that lives as long as the program.
    unsafe { libc::atexit(hook) };
}

/// Runs `hook` in the child of every `fork` of this process, including forks made by other
/// code than this crate.
///
/// # Safety
/// The hook runs in the child before `fork` returns there, while only the forking thread
/// exists: it must do only what is safe in a forked copy of a multi-threaded process (no
/// allocation, no lock another thread may have held).
pub unsafe fn at_fork_in_child(hook: unsafe extern "C" fn()) {
    // SAFETY: a plain function that lives as long as the program; the caller vouches for it.
    unsafe { libc::pthread_atfork(None, None, Some(hook)) };
}

/// The base address of the loaded object (the executable or a shared library) that `addr`
/// lies in; `None` when no loaded object holds it.
pub fn loaded_object_base(addr: *const ()) -> Option<usize> {
    // SAFETY: dladdr only reads the loader's tables; info is a valid out-pointer.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        (libc::dladdr(addr.cast(), &mut info) != 0).then_some(info.dli_fbase as usize)
    }
}
