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
///
/// Each misuse has a variant of its own, to match on instead of reading text:
///
/// ```
/// use multiprocess::{BoundedSemaphore, Error};
/// let sem = BoundedSemaphore::new(1)?;
/// assert!(matches!(sem.release(), Err(Error::ReleasedTooOften)));
/// # Ok::<(), Error>(())
/// ```
///
/// Waiting and running out of time are told apart: [`Error::Timeout`] means a wait gave up (what
/// it waited for goes on, and may be waited for again), [`Error::TimeLimit`] that a pool task
/// was stopped for running too long.
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
    /// A wait with a time limit ran out (`join_timeout`, `get_timeout`, `next_timeout`,
    /// `Barrier::wait_timeout`, …). Nothing was stopped: the process or task goes on and can be
    /// waited for again. See [`is_timeout`](Self::is_timeout).
    Timeout,
    /// A pool task ran past its time limit
    /// ([`PoolBuilder::task_timeout`](crate::PoolBuilder::task_timeout) or
    /// [`Pool::apply_async_timeout`](crate::Pool::apply_async_timeout)): its worker was killed
    /// and replaced, and the task has no result. See [`is_time_limit`](Self::is_time_limit).
    TimeLimit,
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
    /// A value passed to a call is outside what it accepts (a pool of 0 processes, a bounded
    /// queue of size 0, a barrier of 0 parties, a byte range past the buffer's end, …); the
    /// text says which. Nothing was changed.
    InvalidArgument(String),
    /// An index past the end of a shared [`Array`](crate::Array) or [`List`](crate::List),
    /// or a byte range past the end of a [`SharedMemory`](crate::SharedMemory) block (Python's
    /// `IndexError`).
    IndexOutOfRange {
        /// The index asked for (for a byte range, its end).
        index: usize,
        /// The length it must stay below (within, for a byte range).
        len: usize,
    },
    /// A start method's name is none of `fork`, `spawn` and `forkserver` (parsing a
    /// [`StartMethod`](crate::StartMethod)); here is the name.
    UnknownStartMethod(String),
    /// [`set_start_method`](crate::set_start_method) was called when the default start method
    /// had already been set (to this one); Python's "context has already been set".
    StartMethodAlreadySet(crate::StartMethod),
    /// This start method re-executes the program, and [`init`](crate::init) was not called
    /// first in `main` (nor [`init_on_load!`](crate::init_on_load) in a test file): the child
    /// would run `main` again. Nothing was started.
    InitMissing(crate::StartMethod),
    /// The process target lives in another loaded object than the library (is `multiprocess`
    /// linked as a dylib?): a re-executed copy cannot find it, so only
    /// [`StartMethod::Fork`](crate::StartMethod::Fork) can run it.
    ForkOnly,
    /// The child process could not start running its target (it could not read what it was
    /// sent, or it is another binary than its parent's); the text says why.
    StartFailed(String),
    /// [`JoinHandle::join`](crate::JoinHandle::join) was called again after it had returned the
    /// result.
    AlreadyJoined,
    /// The pool was closed with [`Pool::close`](crate::Pool::close): it takes no new tasks
    /// (those queued before still run). See [`is_pool_not_running`](Self::is_pool_not_running).
    PoolClosed,
    /// The pool was terminated ([`Pool::terminate`](crate::Pool::terminate), or dropped): it
    /// takes no new tasks, and the tasks not done by then fail with this.
    PoolTerminated,
    /// The pool cannot run tasks any more (its workers keep dying before they run anything,
    /// or its supervisor failed): queued tasks fail and new ones are refused; the text says
    /// why.
    PoolBroken(String),
    /// [`Pool::join`](crate::Pool::join) needs [`close`](crate::Pool::close) or
    /// [`terminate`](crate::Pool::terminate) first (Python's "Pool is still running").
    PoolStillRunning,
    /// A lock was released more times than it was acquired, or a (bounded) semaphore past its
    /// limit (Python's "semaphore or lock released too many times").
    ReleasedTooOften,
    /// A lock was released, or a condition waited on or notified, by a thread that does not
    /// hold its lock.
    LockNotHeld,
    /// [`JoinableQueue::task_done`](crate::JoinableQueue::task_done) was called more times than
    /// items were taken.
    TaskDoneTooOften,
    /// This end of the connection only receives (the reading end of `pipe_simplex`).
    ReadOnly,
    /// This end of the connection only sends (the writing end of `pipe_simplex`).
    WriteOnly,
    /// A queue was full: a `*_nowait` call, or a timeout that ran out (Python's `queue.Full`).
    Full,
    /// A queue was empty: a `*_nowait` call, or a timeout that ran out (Python's `queue.Empty`).
    Empty,
    /// The handle was closed with `close()` in this process.
    Closed,
    /// The queue was shut down (`shutdown()`, through any handle, in any process): it takes no
    /// more items, and has given out every item it held (Python 3.13's `queue.ShutDown`).
    ShutDown,
    /// A barrier was broken (aborted, reset, or a wait timed out) while waiting on it (Python's
    /// `BrokenBarrierError`).
    BrokenBarrier,
    /// The other end of a connection is closed and no message is left (Python's `EOFError`).
    Eof,
    /// A message was longer than the buffer given to receive it; here it is, whole.
    BufferTooShort(Vec<u8>),
    /// An operating-system call failed. The text is the [`io::Error`]'s own, and
    /// [`source`](std::error::Error::source) goes on with *its* source, so no text is repeated
    /// along the chain.
    Io(io::Error),
    /// A cluster node stopped heartbeating (it died, or was cut off from the broker) while it
    /// held the task: the task may or may not have run, and its result, if it comes, is
    /// discarded (`multiprocess::cluster`, behind the `cluster` feature).
    NodeLost {
        /// The lost node's id (`host:pid:nonce`).
        node: String,
    },
    /// No live cluster node runs this program's build under this cluster key, so the task
    /// could never run: the client says so instead of waiting for ever.
    NoLiveNode {
        /// This program's build identity (the first hex digits of its ELF build-id).
        build: String,
        /// What the live nodes run instead, e.g. `"2 nodes run build 3f09a1c2d4e5b6a7"`, or
        /// `"no node is live"`.
        seen: String,
    },
    /// The Redis broker of a cluster failed, could not be reached in time, or answered
    /// something unexpected.
    Broker(String),
    /// Authentication failed: the broker refused the password or ACL user, or a cluster task
    /// or result did not carry a valid HMAC under the cluster key.
    Auth(String),
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
            Error::TimeLimit => write!(
                f,
                "the task ran past its time limit; its worker was killed and replaced"
            ),
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
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::IndexOutOfRange { index, len } => {
                write!(f, "index {index} out of range for a length of {len}")
            }
            Error::UnknownStartMethod(name) => write!(
                f,
                "unknown start method {name:?}: expected fork, spawn or forkserver"
            ),
            Error::StartMethodAlreadySet(method) => {
                write!(f, "the start method has already been set (to {method})")
            }
            Error::InitMissing(method) => write!(
                f,
                "the {method} start method re-executes this program, which needs \
                 multiprocess::init() as the first line of main (or \
                 multiprocess::init_on_load!() in a test file); without it the child would \
                 run main again"
            ),
            Error::ForkOnly => write!(
                f,
                "the process target and the multiprocess library are in different loaded \
                 objects (is multiprocess linked as a dylib?): only the fork start method can \
                 run it"
            ),
            Error::StartFailed(why) => write!(f, "the child process could not start: {why}"),
            Error::AlreadyJoined => write!(f, "the process was already joined"),
            Error::PoolClosed => write!(f, "the pool is closed: it takes no new tasks"),
            Error::PoolTerminated => write!(f, "the pool was terminated"),
            Error::PoolBroken(why) => write!(f, "the pool is broken: {why}"),
            Error::PoolStillRunning => {
                write!(
                    f,
                    "the pool is still running: join() needs close() or terminate() first"
                )
            }
            Error::ReleasedTooOften => write!(f, "semaphore or lock released too many times"),
            Error::LockNotHeld => write!(f, "the lock is not held by this thread"),
            Error::TaskDoneTooOften => write!(f, "task_done() called too many times"),
            Error::ReadOnly => write!(f, "the connection is read-only"),
            Error::WriteOnly => write!(f, "the connection is write-only"),
            Error::Full => write!(f, "the queue is full"),
            Error::Empty => write!(f, "the queue is empty"),
            Error::Closed => write!(f, "the queue is closed"),
            Error::ShutDown => write!(f, "the queue was shut down"),
            Error::BrokenBarrier => write!(f, "the barrier is broken"),
            Error::Eof => write!(f, "the other end of the connection is closed"),
            Error::BufferTooShort(msg) => write!(
                f,
                "the buffer is too short for the message of {} bytes",
                msg.len()
            ),
            Error::Io(err) => write!(f, "I/O error: {err}"),
            Error::NodeLost { node } => write!(
                f,
                "the cluster node {node} that held the task was lost (its heartbeat expired)"
            ),
            Error::NoLiveNode { build, seen } => {
                write!(f, "no live node runs build {build}; {seen}")
            }
            Error::Broker(why) => write!(f, "the Redis broker failed: {why}"),
            Error::Auth(why) => write!(f, "authentication failed: {why}"),
        }
    }
}

impl std::error::Error for Error {
    /// For [`Error::Io`], the source of the [`io::Error`] (whose own text is in this error's);
    /// `None` for every other variant.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => err.source(),
            _ => None,
        }
    }
}

impl Error {
    /// Whether a wait ran out of time ([`Error::Timeout`]): what it waited for goes on.
    ///
    /// ```
    /// assert!(multiprocess::Error::Timeout.is_timeout());
    /// assert!(!multiprocess::Error::TimeLimit.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }

    /// Whether a pool task was stopped for running past its time limit ([`Error::TimeLimit`]).
    ///
    /// ```
    /// assert!(multiprocess::Error::TimeLimit.is_time_limit());
    /// ```
    pub fn is_time_limit(&self) -> bool {
        matches!(self, Error::TimeLimit)
    }

    /// Whether the pool refused or dropped the task because it no longer runs tasks: closed,
    /// terminated or broken (Python's "Pool not running").
    ///
    /// ```
    /// use multiprocess::Error;
    /// assert!(Error::PoolTerminated.is_pool_not_running());
    /// assert!(!Error::WorkerLost { exitcode: -9 }.is_pool_not_running());
    /// ```
    pub fn is_pool_not_running(&self) -> bool {
        matches!(
            self,
            Error::PoolClosed | Error::PoolTerminated | Error::PoolBroken(_)
        )
    }

    /// Whether the other side of a connection is gone: nothing more will come
    /// ([`Error::Eof`]), or nothing more can be sent (a broken pipe or a reset connection).
    ///
    /// ```
    /// use multiprocess::Error;
    /// assert!(Error::Eof.is_disconnected());
    /// assert!(Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).is_disconnected());
    /// ```
    pub fn is_disconnected(&self) -> bool {
        match self {
            Error::Eof => true,
            Error::Io(err) => matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            _ => false,
        }
    }

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
            Error::TimeLimit => Error::TimeLimit,
            Error::WorkerLost { exitcode } => Error::WorkerLost {
                exitcode: *exitcode,
            },
            Error::Encode(m) => Error::Encode(m.clone()),
            Error::Decode(m) => Error::Decode(m.clone()),
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::IndexOutOfRange { index, len } => Error::IndexOutOfRange {
                index: *index,
                len: *len,
            },
            Error::UnknownStartMethod(m) => Error::UnknownStartMethod(m.clone()),
            Error::StartMethodAlreadySet(m) => Error::StartMethodAlreadySet(*m),
            Error::InitMissing(m) => Error::InitMissing(*m),
            Error::ForkOnly => Error::ForkOnly,
            Error::StartFailed(m) => Error::StartFailed(m.clone()),
            Error::AlreadyJoined => Error::AlreadyJoined,
            Error::PoolClosed => Error::PoolClosed,
            Error::PoolTerminated => Error::PoolTerminated,
            Error::PoolBroken(m) => Error::PoolBroken(m.clone()),
            Error::PoolStillRunning => Error::PoolStillRunning,
            Error::ReleasedTooOften => Error::ReleasedTooOften,
            Error::LockNotHeld => Error::LockNotHeld,
            Error::TaskDoneTooOften => Error::TaskDoneTooOften,
            Error::ReadOnly => Error::ReadOnly,
            Error::WriteOnly => Error::WriteOnly,
            Error::Full => Error::Full,
            Error::Empty => Error::Empty,
            Error::Closed => Error::Closed,
            Error::ShutDown => Error::ShutDown,
            Error::BrokenBarrier => Error::BrokenBarrier,
            Error::Eof => Error::Eof,
            Error::BufferTooShort(b) => Error::BufferTooShort(b.clone()),
            Error::Io(e) => Error::Io(io::Error::new(e.kind(), e.to_string())),
            Error::NodeLost { node } => Error::NodeLost { node: node.clone() },
            Error::NoLiveNode { build, seen } => Error::NoLiveNode {
                build: build.clone(),
                seen: seen.clone(),
            },
            Error::Broker(m) => Error::Broker(m.clone()),
            Error::Auth(m) => Error::Auth(m.clone()),
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
