//! Futex wait and wake on a word of shared memory, across processes (no `FUTEX_PRIVATE_FLAG`:
//! the kernel keys the word by its physical page, so every mapping of a region meets the same
//! waiters).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, at most `timeout` (`None`: no limit). Returns early on a
/// wake-up, a signal, or when the word no longer holds `expected`; callers re-check their
/// condition in every case.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned 32-bit word for the duration of the call; a relative
    // timeout pointer is either null or points to a live timespec.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0,
        );
    }
}

/// Wakes up to `count` processes or threads sleeping on `word`.
pub(crate) fn wake(word: &AtomicU32, count: i32) {
    // SAFETY: `word` is a valid, aligned 32-bit word; FUTEX_WAKE only reads its address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0,
        );
    }
}
