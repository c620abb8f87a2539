//! The crate's one error type.

use std::fmt;
use std::io;

use crate::sys;

/// Everything that can go wrong in `multiprocess`, as one enum so callers can match on the cause.
///
/// A panic in a child keeps its message and location, so `err.to_string()` reads like the panic
/// itself:
///
/// ```
/// use multiprocess::Error;
/// let err = Error::Panic { message: "boom".into(), location: Some("src/main.rs:3:5".into()) };
/// assert_eq!(err.to_string(), "the child process panicked at src/main.rs:3:5: boom");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The function running in the child panicked.
    Panic {
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The child exited with this code before it produced a result (e.g. it called
    /// `std::process::exit`).
    Exited(i32),
    /// The child was killed by this signal before it produced a result.
    Signaled(i32),
    /// A wait with a time limit ran out, or a pool task ran past its time limit (its worker
    /// was killed and replaced).
    Timeout,
    /// The pool worker running the task died (killed by a signal, `abort`, out of memory, or an
    /// exit): Python's pool would hang here. `exitcode` follows Python's convention (`-N` for
    /// signal N).
    WorkerLost {
        /// The worker's exit code, or `-N` if signal N killed it.
        exitcode: i32,
    },
    /// A value could not be encoded to cross to another process; nothing was sent.
    Encode(String),
    /// Bytes from another process could not be decoded into the expected type.
    Decode(String),
    /// A call was made in a state that does not allow it (e.g. the start method was already
    /// set, or `init()` was not called before a re-executing start method was used).
    InvalidState(String),
    /// A queue was full: a `*_nowait` call, or a timeout that ran out (Python's `queue.Full`).
    Full,
    /// A queue was empty: a `*_nowait` call, or a timeout that ran out (Python's `queue.Empty`).
    Empty,
    /// The handle was closed with `close()` in this process.
    Closed,
    /// A barrier was broken (aborted, reset, or a wait timed out) while waiting on it (Python's
    /// `BrokenBarrierError`).
    BrokenBarrier,
    /// The other end of a connection is closed and no message is left (Python's `EOFError`).
    Eof,
    /// A message was longer than the buffer given to receive it; here it is, whole.
    BufferTooShort(Vec<u8>),
    /// An index, or the end of a byte range, lies outside a container or a block of shared
    /// memory (Python's `IndexError`).
    OutOfRange {
        /// The index, or the end of the byte range, asked for.
        index: u64,
        /// The length it must stay within.
        len: u64,
    },
    /// An operating-system call failed.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Panic {
                message,
                location: Some(loc),
            } => write!(f, "the child process panicked at {loc}: {message}"),
            Error::Panic {
                message,
                location: None,
            } => write!(f, "the child process panicked: {message}"),
            Error::Exited(code) => write!(
                f,
                "the child process exited with code {code} before returning a result"
            ),
            Error::Signaled(sig) => write!(
                f,
                "the child process was killed by signal {sig} ({}) before returning a result",
                signal_name(*sig)
            ),
            Error::Timeout => write!(f, "timed out"),
            Error::WorkerLost { exitcode } if *exitcode < 0 => write!(
                f,
                "the pool worker running the task was killed by signal {} ({})",
                -exitcode,
                signal_name(-exitcode)
            ),
            Error::WorkerLost { exitcode } => write!(
                f,
                "the pool worker running the task exited with code {exitcode}"
            ),
            Error::Encode(why) => write!(f, "could not encode the value: {why}"),
            Error::Decode(why) => write!(f, "could not decode the value: {why}"),
            Error::InvalidState(why) => write!(f, "{why}"),
            Error::Full => write!(f, "the queue is full"),
            Error::Empty => write!(f, "the queue is empty"),
            Error::Closed => write!(f, "the queue is closed"),
            Error::BrokenBarrier => write!(f, "the barrier is broken"),
            Error::Eof => write!(f, "the other end of the connection is closed"),
            Error::BufferTooShort(msg) => write!(
                f,
                "the buffer is too short for the message of {} bytes",
                msg.len()
            ),
            Error::OutOfRange { index, len } => {
                write!(f, "index {index} is out of range for a length of {len}")
            }
            Error::Io(err) => write!(f, "I/O error: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl Error {
    /// A copy for another caller of the same result (an I/O error keeps its kind and text).
    pub(crate) fn clone_for_caller(&self) -> Error {
        match self {
            Error::Panic { message, location } => Error::Panic {
                message: message.clone(),
                location: location.clone(),
            },
            Error::Exited(c) => Error::Exited(*c),
            Error::Signaled(s) => Error::Signaled(*s),
            Error::Timeout => Error::Timeout,
            Error::WorkerLost { exitcode } => Error::WorkerLost {
                exitcode: *exitcode,
            },
            Error::Encode(m) => Error::Encode(m.clone()),
            Error::Decode(m) => Error::Decode(m.clone()),
            Error::InvalidState(m) => Error::InvalidState(m.clone()),
            Error::Full => Error::Full,
            Error::Empty => Error::Empty,
            Error::Closed => Error::Closed,
            Error::BrokenBarrier => Error::BrokenBarrier,
            Error::Eof => Error::Eof,
            Error::BufferTooShort(b) => Error::BufferTooShort(b.clone()),
            Error::OutOfRange { index, len } => Error::OutOfRange {
                index: *index,
                len: *len,
            },
            Error::Io(e) => Error::Io(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::Io(err)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The conventional name of a signal number, e.g. `SIGKILL` for 9.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        sys::SIGHUP => "SIGHUP",
        sys::SIGINT => "SIGINT",
        sys::SIGQUIT => "SIGQUIT",
        sys::SIGILL => "SIGILL",
        sys::SIGABRT => "SIGABRT",
        sys::SIGBUS => "SIGBUS",
        sys::SIGFPE => "SIGFPE",
        sys::SIGKILL => "SIGKILL",
        sys::SIGSEGV => "SIGSEGV",
        sys::SIGPIPE => "SIGPIPE",
        sys::SIGALRM => "SIGALRM",
        sys::SIGTERM => "SIGTERM",
        sys::SIGUSR1 => "SIGUSR1",
        sys::SIGUSR2 => "SIGUSR2",
        _ => "signal",
    }
}
