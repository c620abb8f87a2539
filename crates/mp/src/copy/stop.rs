//! Why a copy stops early ([`Stop`]: one reason, the first), and the signals that ask it to
//! (Ctrl-C, SIGTERM, SIGHUP: the first stops cleanly, a second at once).
//!
//! A stop is the coordinator's to decide: it sets an [`multiprocess::Event`] that every worker
//! looks at between files and between rounds of a file's bytes; a worker that sees it (or
//! finds the disk full) says so in its report ([`crate::copy::protocol::Tally::stopped`]).
//! Workers ignore SIGINT: only the coordinator hears the signals.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::meta::Failure;

/// What ends a copy (or a task) early, for every file after it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Stop {
    /// Asked to stop (a signal; in a task, the coordinator's stop event).
    Interrupted,
    /// The destination is full: nothing more can be written.
    DiskFull(Failure),
    /// The worker pool cannot run tasks any more (its failure is listed too).
    PoolBroken(Failure),
}

/// Stop signals received so far (the first stops cleanly, the second at once).
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
}

/// Routes SIGINT, SIGTERM and SIGHUP to a count of stop requests (see [`interrupts`]): each
/// stops the copy cleanly.
pub fn catch_interrupts() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only increments an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// How many times this process was asked to stop.
pub fn interrupts() -> usize {
    INTERRUPTS.load(Ordering::SeqCst)
}

/// Whether this process was asked to stop.
pub fn interrupted() -> bool {
    interrupts() > 0
}
