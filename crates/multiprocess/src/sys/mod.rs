//! Every call the crate makes into the kernel, or into libc's thin wrappers around it, behind
//! small safe functions, one file per kind:
//!
//! | file | owns |
//! | --- | --- |
//! | `fd.rs` | descriptors: close-on-exec and non-blocking flags, closing all but some before `exec`, the table's size and limit, `poll` with a deadline, a lock-free write to stderr |
//! | `socket.rs` | Unix socket pairs: sends without SIGPIPE, descriptors passed with `SCM_RIGHTS`, non-blocking single sends and receives, a datagram socket connected to itself (peeking receives) |
//! | `signal.rs` | `kill`, `sigqueue`, dispositions and handlers, a child's clean signal state, `signalfd`; the signal numbers |
//! | `process.rs` | ids, pidfds, `fork`, `_exit`, reaping and wait statuses, start times, the binary's identity, `dladdr`, `atexit` and `pthread_atfork` |
//! | `memory.rs` | `memfd` files: mapping, growing, hole punching, sealing, reopening and OFD locks; the page size and resident memory |
//! | `named.rs` | names in `/dev/shm`: `shm_open`, `shm_unlink`, renaming without replacing, random bits, the user's id |
//! | `futex.rs` | futex wait and wake on a word of shared memory, across processes |
//! | `mutex.rs` | the robust, process-shared pthread mutex |
//! | `host.rs` | the host name and the main program's ELF build-id (for the `cluster` feature) |
//!
//! Outside this folder no file of the library names `libc` (the `layering` test checks it):
//! a port to another Unix (macOS first) changes these files and nothing else. Plain file reads
//! of `/proc` that stand in for a system call (a process's start time, resident memory) live
//! here too; what `std` offers safely (files, `UnixStream`, threads) is used everywhere.
//! The `mp` command-line tool is a crate of its own and makes its own file-system calls.

mod fd;
pub(crate) mod futex;
#[cfg(feature = "cluster")]
mod host;
mod memory;
mod mutex;
mod named;
mod process;
mod signal;
mod socket;

use std::io;
use std::time::{Duration, Instant};

pub use fd::{
    clear_cloexec, close_all_except, dup, is_open_fd, is_readable, poll_readable, raise_fd_limit,
    raw, reserve_fd_table, set_cloexec, set_nonblocking, stdin_from_dev_null, write_stderr, Unkept,
};
#[cfg(feature = "cluster")]
pub use host::{hostname, main_program_build_id};
pub use memory::{
    file_id, file_len, map_shared, memfd_create, memfd_create_sealable, ofd_lock, open_file_key,
    punch_hole, reopen_read_only, resident_bytes, seal_writers, sealed_for_readers, set_file_len,
    unmap, Access, FileLock, Mapping,
};
pub(crate) use mutex::{RobustMutex, RobustMutexGuard};
pub use named::{effective_uid, random_u64, rename_noreplace, shm_open, shm_unlink, SHM_DIR};
pub use process::{
    at_exit, at_fork_in_child, exe_identity, exit_now, exitcode_from_status, fork, getpid, getppid,
    gettid, loaded_object_base, own_start_time, pidfd_open, pidfd_send_signal, process_is_dead,
    process_start_time, reap_any, try_wait, wait_blocking,
};
pub use signal::{
    drain_signalfd, ignore_signal, kill, on_signal_with_value, queue_signal,
    reset_signals_for_child, sigchld_fd, SIGABRT, SIGALRM, SIGBUS, SIGFPE, SIGHUP, SIGILL, SIGINT,
    SIGKILL, SIGPIPE, SIGQUIT, SIGSEGV, SIGTERM, SIGUSR1, SIGUSR2,
};
pub use socket::{
    recv_datagram, recv_nonblocking, recv_with_fds, self_datagram, send_all, send_datagram,
    send_nonblocking, send_with_fds, socketpair, wait_writable, MAX_FDS_PER_MESSAGE,
};

/// `errno` values the crate passes on as they are (the fork server's replies).
pub use libc::{EINVAL, EIO, EMFILE};

/// Turns a `-1` return into the thread's `errno` as an [`io::Error`].
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `now + d`, or `None` (no deadline) when that is too far to represent.
pub fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}
