//! The child's side of every start method: what it is told, how it runs the target, what it
//! reports back, and how it exits.
//!
//! Start methods differ only in how the child comes to exist and how it receives its
//! [`Bootstrap`] and descriptors; from [`run_child`] on, every child runs the same code:
//! 1. record who it is (name, identity, parent) and, if daemonic, watch for the parent's death;
//! 2. decode the arguments and call the target, catching a panic (`panics.rs`: what the child
//!    prints about it is its `PanicOutput`);
//! 3. send a [`Report`] (the result, the panic, or why it could not run) if the parent wants one;
//! 4. join its own children as Python does at exit, flush stdio, and `_exit` with 0 after a
//!    return, 1 after a panic or a failure to start.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::buffer::Payload;
use crate::codec;
use crate::context;
use crate::error::Error;
use crate::process::panics::{self, PanicOutput};
use crate::process::{child, current, target};
use crate::sys;

/// Everything a child is told by its parent.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    /// `sys::exe_identity()` of the parent: a re-executed child must match it.
    pub exe: [u64; 4],
    /// The entry function, as `target::entry_offset` gave it.
    pub entry: i64,
    /// The encoded arguments (one byte string on the wire).
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    /// Whether the parent waits for a [`Report`].
    pub wants_report: bool,
    /// Who the child is.
    pub id: current::ChildIdentity,
    /// The parent's working directory (a fork-server child starts in the server's).
    pub cwd: Option<Vec<u8>>,
    /// What the child prints when its target panics (it becomes the child's own setting).
    pub panic_output: PanicOutput,
}

/// The descriptors a child starts with.
pub(crate) struct ChildFds {
    /// Where the [`Report`] goes (if the parent wants one).
    pub report: Option<UnixStream>,
    /// A pidfd of the parent.
    pub parent_pidfd: OwnedFd,
    /// The descriptors of handles among the arguments, in encoding order.
    pub args: Vec<OwnedFd>,
}

/// What a child tells its parent about the target's run.
#[derive(Serialize, Deserialize)]
pub(crate) enum Report {
    /// The target returned; here is its encoded result (one byte string on the wire, or a
    /// zero-copy buffer's descriptor where the transport moves descriptors).
    Returned(Payload),
    /// The target panicked.
    Panicked {
        message: String,
        location: Option<String>,
    },
    /// The arguments could not be decoded in the child.
    DecodeFailed(String),
    /// The result could not be encoded in the child.
    EncodeFailed(String),
    /// The child could not start the target at all.
    StartFailed(String),
}

impl Report {
    /// The error a parent sees for a report that is not a result.
    pub fn into_error(self) -> Error {
        match self {
            Report::Returned(_) => {
                Error::Decode("a result came where a failure was expected".into())
            }
            Report::Panicked { message, location } => Error::Panic { message, location },
            Report::DecodeFailed(why) => Error::Decode(why),
            Report::EncodeFailed(why) => Error::Encode(why),
            Report::StartFailed(why) => Error::StartFailed(why),
        }
    }
}

/// Writes one length-prefixed frame (never raising SIGPIPE).
pub(crate) fn write_frame(sock: &UnixStream, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::other("a message over 4 GiB cannot be framed"))?;
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(bytes);
    sys::send_all(sock.as_fd(), &frame)
}

/// Reads one length-prefixed frame.
pub(crate) fn read_frame(mut sock: &UnixStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    sock.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    sock.read_exact(&mut buf)?;
    Ok(buf)
}

/// Splits a complete frame off the front of `buf`, if one is there.
pub(crate) fn take_frame(buf: &[u8]) -> Option<&[u8]> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    buf.get(4..4 + len)
}

/// This process's executable identity, read once.
pub(crate) fn exe_identity() -> io::Result<[u64; 4]> {
    static EXE: std::sync::OnceLock<[u64; 4]> = std::sync::OnceLock::new();
    if let Some(id) = EXE.get() {
        return Ok(*id);
    }
    let id = sys::exe_identity()?;
    Ok(*EXE.get_or_init(|| id))
}

/// Checks that a re-executed child runs the same binary as the parent that sent `boot`, so that
/// the entry offset names the same function in both.
pub(crate) fn check_same_binary(boot: &Bootstrap) -> Result<(), String> {
    match exe_identity() {
        Ok(mine) if mine == boot.exe => Ok(()),
        Ok(_) => Err(
            "the child runs a different executable than its parent (was the binary \
                      replaced while the program ran?): refusing to start the target"
                .into(),
        ),
        Err(err) => Err(format!("could not identify the child's executable: {err}")),
    }
}

/// The descriptors a daemonic child has room for from its start (a table of 1024 takes 8 KiB).
const CHILD_FD_ROOM: usize = 1000;

/// Starts a thread that kills this process as soon as the parent exits, so that a daemonic
/// child never outlives its parent, even when the parent dies by SIGKILL.
fn watch_parent_death(parent_pidfd: Arc<OwnedFd>) {
    let spawned = std::thread::Builder::new()
        .name("multiprocess-parent-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            if sys::poll_readable(&[parent_pidfd.as_fd()], None).is_ok_and(|r| r[0]) {
                let _ = sys::kill(sys::getpid(), sys::SIGKILL);
            }
        });
    if let Err(err) = spawned {
        eprintln!("multiprocess: could not watch the parent process: {err}");
    }
}

/// Runs the target in a child and exits. Never returns.
pub(crate) fn run_child(boot: Bootstrap, fds: ChildFds) -> ! {
    let (daemon, start_method) = (boot.id.daemon, boot.id.start_method);
    current::become_child(boot.id, fds.parent_pidfd);
    context::inherit_start_method(start_method);
    if let Some(cwd) = &boot.cwd {
        let cwd = std::path::Path::new(std::ffi::OsStr::from_bytes(cwd));
        if let Err(err) = std::env::set_current_dir(cwd) {
            eprintln!("multiprocess: could not enter {}: {err}", cwd.display());
        }
    }
    // As Python does: a child does not compete with its parent for the terminal's input.
    sys::stdin_from_dev_null();
    if daemon {
        // Before the watch thread starts: with it, a table that must grow later stalls the
        // child (see `reserve_fd_table`).
        sys::reserve_fd_table(CHILD_FD_ROOM);
        if let Some(parent) = current::parent_process() {
            watch_parent_death(parent.pidfd());
        }
    }
    crate::process::register_exit_cleanup();
    panics::set_panic_output(boot.panic_output);
    panics::install_hook();

    // SAFETY: the offset came from our parent, which runs this very binary: a forked child
    // shares its memory image, a re-executed child checked `exe` before calling us.
    let entry = unsafe { target::entry_from_offset(boot.entry) };
    let report = call_entry(entry, &boot.args, fds.args);
    let code = match report {
        None | Some(Report::Returned(_)) => 0,
        Some(_) => 1,
    };
    finish(code, report, fds.report.as_ref())
}

/// Calls an entry function, catching a panic: `None` when it returned nothing to report,
/// otherwise what to tell the parent. Also used by pool workers, once per task.
pub(crate) fn call_entry(entry: target::EntryFn, args: &[u8], fds: Vec<OwnedFd>) -> Option<Report> {
    match panics::catch_target(|| entry(args, fds)) {
        Ok(Ok(Some(bytes))) => Some(Report::Returned(bytes)),
        Ok(Ok(None)) => None,
        Ok(Err(Error::Decode(why))) => Some(Report::DecodeFailed(why)),
        Ok(Err(Error::Encode(why))) => Some(Report::EncodeFailed(why)),
        Ok(Err(other)) => Some(Report::StartFailed(other.to_string())),
        Err(panics::Caught { message, location }) => Some(Report::Panicked { message, location }),
    }
}

/// Reports (to the parent if it listens, else on stderr for failures), cleans up as Python does
/// at exit, and ends the process.
pub(crate) fn finish(code: i32, report: Option<Report>, to: Option<&UnixStream>) -> ! {
    match (report, to) {
        (Some(report), Some(sock)) => {
            if let Ok(bytes) = codec::encode(&report) {
                let _ = write_frame(sock, &bytes);
            }
        }
        (Some(Report::Panicked { .. }), None) | (Some(Report::Returned(_)), None) | (None, _) => {}
        (Some(failure), None) => {
            eprintln!(
                "multiprocess: child process failed: {}",
                failure.into_error()
            );
        }
    }
    child::exit_cleanup();
    // `std::process::exit` flushes stdout with a *try*-lock (so a lock a forked child inherited
    // held cannot hang it) and runs the at-exit clean-up again, which finds nothing left to do.
    std::process::exit(code)
}
