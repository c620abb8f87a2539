//! [`JoinHandle`]: a process started by [`spawn`](super::spawn) whose return value comes back,
//! joined by blocking or awaited as a [`Future`].
//!
//! The child writes its [`Report`] on a socket; joining reads it while waiting for the exit
//! (so that a large result never blocks the child's exit), then decodes it. Awaiting does the
//! same blocking wait on a thread of its own (one per awaited process, started by the first
//! poll that finds the process running), which wakes the task when the process has exited: no
//! runtime is needed.

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::bootstrap::{self, Report};
use super::ProcessHandle;
use crate::codec;
use crate::error::{Error, Result};
use crate::sys;

/// A process whose target's return value can be joined, from [`spawn`](super::spawn).
///
/// [`join`](Self::join) gives `Ok(value)` when the target returned, and otherwise an error that
/// says why not: [`Error::Panic`] with the panic's message and location, [`Error::Exited`] when
/// the child exited before returning, [`Error::Signaled`] when a signal killed it.
///
/// It is also a [`Future`] of the same result, for async code (any runtime, or none). The
/// first poll that finds the process running starts a thread that waits for it and wakes the
/// task; a handle dropped before the end leaves that thread to finish when the process exits.
///
/// ```no_run
/// fn square(x: u64) -> u64 { x * x }
///
/// async fn run() -> multiprocess::Result<u64> {
///     multiprocess::spawn(square, (12,))?.await
/// }
/// ```
#[must_use = "a process's return value is lost unless it is joined (`join` or `.await`)"]
pub struct JoinHandle<R> {
    process: ProcessHandle,
    /// The report being read; `None` while a watcher thread has it (see `watch`).
    reader: Option<ReportReader>,
    /// The watcher thread of an awaited handle, once a poll has started one.
    watch: Option<Arc<Watch>>,
    /// The result was already taken.
    joined: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for JoinHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("process", &self.process)
            .field("joined", &self.joined)
            .finish()
    }
}

impl<R> JoinHandle<R> {
    /// A handle on `process`, whose result comes on `report`.
    pub(super) fn new(process: ProcessHandle, report: Arc<UnixStream>) -> Self {
        JoinHandle {
            process,
            reader: Some(ReportReader {
                report,
                received: Vec::new(),
                closed: false,
            }),
            watch: None,
            joined: false,
            _result: PhantomData,
        }
    }

    /// The process behind the handle (pid, name, `kill`, …).
    pub fn process(&self) -> &ProcessHandle {
        &self.process
    }
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
    /// Whether the process is still running.
    pub fn is_alive(&self) -> bool {
        self.process.is_alive()
    }
}

impl<R: DeserializeOwned> JoinHandle<R> {
    /// Waits for the process to end and returns what the target returned.
    pub fn join(mut self) -> Result<R> {
        self.join_deadline(None)
    }

    /// As [`join`](Self::join), but gives up with [`Error::Timeout`] after `timeout`; the handle
    /// can be joined again later. Once it has returned the result, a further call is
    /// [`Error::AlreadyJoined`].
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R> {
        self.join_deadline(sys::deadline_after(timeout))
    }

    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<R> {
        if self.joined {
            return Err(Error::AlreadyJoined);
        }
        let code = match self.watch.take() {
            Some(watch) => match watch.wait(deadline) {
                Some(exit) => self.take_exit(exit)?,
                None => {
                    self.watch = Some(watch);
                    return Err(Error::Timeout);
                }
            },
            None => match self.reader.as_mut() {
                Some(reader) => reader.wait_exit(&self.process, deadline)?,
                None => return Err(Error::AlreadyJoined),
            },
        };
        self.decode(code)
    }

    /// Takes back the reader from a watcher that has finished; the exit code it saw.
    fn take_exit(&mut self, (code, reader): Exit) -> Result<i32> {
        self.reader = Some(reader);
        code
    }

    /// The result, from the report read and the exit `code`.
    fn decode(&mut self, code: i32) -> Result<R> {
        self.joined = true;
        let received = self.reader.as_ref().map_or(&[][..], |r| &r.received);
        let report =
            bootstrap::take_frame(received).and_then(|frame| codec::decode::<Report>(frame).ok());
        match report {
            Some(Report::Returned(bytes)) => codec::decode(&bytes),
            Some(other) => Err(other.into_error()),
            None if code < 0 => Err(Error::Signaled(-code)),
            None => Err(Error::Exited(code)),
        }
    }
}

impl<R: DeserializeOwned> Future for JoinHandle<R> {
    type Output = Result<R>;

    /// Ready when the process has exited: the first poll that finds it running hands the
    /// waiting to a watcher thread, which wakes the task.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let this = self.get_mut();
        let watch = match this.watch.clone() {
            Some(watch) => watch,
            None => {
                match this.join_deadline(Some(Instant::now())) {
                    Err(Error::Timeout) => {}
                    done => return Poll::Ready(done),
                }
                let Some(reader) = this.reader.take() else {
                    return Poll::Ready(Err(Error::AlreadyJoined));
                };
                let watch = Watch::start(this.process.clone(), reader)?;
                this.watch = Some(Arc::clone(&watch));
                watch
            }
        };
        match watch.poll(cx.waker()) {
            Some(exit) => {
                this.watch = None;
                Poll::Ready(this.take_exit(exit).and_then(|code| this.decode(code)))
            }
            None => Poll::Pending,
        }
    }
}

/// Our end of the report socket and what has arrived on it.
struct ReportReader {
    /// Non-blocking once reading starts. Shared with the child's state, so that the exit
    /// clean-up can shut it (see `child::exit_cleanup`).
    report: Arc<UnixStream>,
    received: Vec<u8>,
    /// The child's end is closed (EOF seen).
    closed: bool,
}

impl ReportReader {
    /// Waits until `deadline` ([`Error::Timeout`] after it) for `process` to exit, reading the
    /// report meanwhile; its exit code.
    fn wait_exit(&mut self, process: &ProcessHandle, deadline: Option<Instant>) -> Result<i32> {
        sys::set_nonblocking(self.report.as_fd(), true)?;
        let code = loop {
            if let Some(code) = process.state.poll_exit()? {
                break code;
            }
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if timeout == Some(Duration::ZERO) {
                return Err(Error::Timeout);
            }
            let sentinel = process.sentinel();
            let ready = if self.closed {
                sys::poll_readable(&[sentinel], timeout)?
            } else {
                sys::poll_readable(&[self.report.as_fd(), sentinel], timeout)?
            };
            if !self.closed && ready[0] {
                self.drain()?;
            }
        };
        self.drain()?;
        Ok(code)
    }

    /// Reads whatever the report socket holds now.
    fn drain(&mut self) -> Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        while !self.closed {
            match io::Read::read(&mut &*self.report, &mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.closed = true,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// What a watcher thread hands back: the exit code (or why it could not wait), and the reader.
type Exit = (Result<i32>, ReportReader);

/// The thread that waits for an awaited process, and what it leaves.
struct Watch {
    state: Mutex<WatchState>,
    /// For a blocking join after a poll.
    done: Condvar,
}

#[derive(Default)]
struct WatchState {
    exit: Option<Exit>,
    waker: Option<Waker>,
}

/// Room for the watcher's 64 KiB read buffer and little else.
const WATCH_STACK: usize = 256 * 1024;

impl Watch {
    /// Starts a thread that waits for `process` to exit, reading its report with `reader`.
    fn start(process: ProcessHandle, mut reader: ReportReader) -> Result<Arc<Watch>> {
        let watch = Arc::new(Watch {
            state: Mutex::new(WatchState::default()),
            done: Condvar::new(),
        });
        let for_thread = Arc::clone(&watch);
        std::thread::Builder::new()
            .name("multiprocess-join".into())
            .stack_size(WATCH_STACK)
            .spawn(move || {
                let code = reader.wait_exit(&process, None);
                for_thread.finish((code, reader));
            })?;
        Ok(watch)
    }

    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves the exit and wakes whoever waits for it.
    fn finish(&self, exit: Exit) {
        let mut state = self.lock();
        state.exit = Some(exit);
        let waker = state.waker.take();
        drop(state);
        self.done.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The exit if it is there; otherwise keeps `waker` to wake.
    fn poll(&self, waker: &Waker) -> Option<Exit> {
        let mut state = self.lock();
        let exit = state.exit.take();
        if exit.is_none() && !state.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            state.waker = Some(waker.clone());
        }
        exit
    }

    /// Waits until `deadline` (`None`: no limit) for the exit.
    fn wait(&self, deadline: Option<Instant>) -> Option<Exit> {
        let mut state = self.lock();
        loop {
            if let Some(exit) = state.exit.take() {
                return Some(exit);
            }
            state = match deadline {
                None => self.done.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.done
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}
