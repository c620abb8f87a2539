//! Signals: sending them (`kill`, and `sigqueue` with a value), dispositions (default,
//! ignored, a handler that receives the sent value), the clean signal state of a new child,
//! and SIGCHLD as a descriptor (`signalfd`). The signal numbers the rest of the crate names
//! are re-exported from here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::check;

pub use libc::{
    SIGABRT, SIGALRM, SIGBUS, SIGFPE, SIGHUP, SIGILL, SIGINT, SIGKILL, SIGPIPE, SIGQUIT, SIGSEGV,
    SIGTERM, SIGUSR1, SIGUSR2,
};

/// Sends `signal` to `pid` with kill(2); `Ok(false)` if no such process exists any more.
pub fn kill(pid: u32, signal: i32) -> io::Result<bool> {
    // SAFETY: kill has no memory-safety preconditions.
    signal_sent(unsafe { libc::kill(pid as libc::pid_t, signal) })
}

/// A signal call's result: delivered (`true`), or no such process any more (`false`).
pub(super) fn signal_sent(ret: libc::c_int) -> io::Result<bool> {
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

/// Sends `signal` to `pid` with `value` attached (`sigqueue`), for a handler installed with
/// [`on_signal_with_value`]; `Ok(false)` if no such process exists any more.
pub fn queue_signal(pid: u32, signal: i32, value: usize) -> io::Result<bool> {
    let value = libc::sigval {
        sival_ptr: value as *mut libc::c_void,
    };
    // SAFETY: sigqueue only sends a signal with a value; it has no memory-safety preconditions.
    signal_sent(unsafe { libc::sigqueue(pid as libc::pid_t, signal, value) })
}

/// The handler of each signal installed by [`on_signal_with_value`] (0: none), by number.
static VALUE_HANDLERS: [AtomicUsize; 65] = [const { AtomicUsize::new(0) }; 65];

/// The handler the kernel calls: passes the value that came with the signal to the handler
/// registered for it. Only an atomic load and a call: async-signal-safe.
extern "C" fn value_trampoline(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
    let Some(slot) = usize::try_from(signal)
        .ok()
        .and_then(|s| VALUE_HANDLERS.get(s))
    else {
        return;
    };
    let handler = slot.load(Ordering::Acquire);
    if handler == 0 || info.is_null() {
        return;
    }
    // SAFETY: only `on_signal_with_value` stores into VALUE_HANDLERS, and it stores `fn(usize)`
    // pointers; the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (handler, value) = unsafe {
        (
            std::mem::transmute::<usize, fn(usize)>(handler),
            (*info).si_value().sival_ptr as usize,
        )
    };
    handler(value);
}

/// Calls `handler` with the value sent by [`queue_signal`] whenever this process receives
/// `signal` (a signal sent by `kill` carries 0 on Linux); interrupted system calls restart.
///
/// # Safety
/// `handler` runs inside a signal handler: it must be async-signal-safe (atomics only: no
/// allocation, no lock, no I/O through `std`).
pub unsafe fn on_signal_with_value(signal: i32, handler: fn(usize)) -> io::Result<()> {
    let slot = usize::try_from(signal)
        .ok()
        .and_then(|s| VALUE_HANDLERS.get(s))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    slot.store(handler as usize, Ordering::Release);
    // SAFETY: a zeroed sigaction with our handler, an empty mask and SA_SIGINFO is a valid
    // argument; the trampoline only loads an atomic and calls the async-signal-safe handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = value_trampoline as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        check(libc::sigaction(signal, &action, std::ptr::null_mut())).map(drop)
    }
}
