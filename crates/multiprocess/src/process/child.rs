//! The parent's view of one child: how to learn that it exited, with which code, and how to
//! signal it, whichever start method made it.
//!
//! A child made by `Fork` or `Spawn` is a real child of this process: its pidfd becomes readable
//! when it exits, and `waitpid` reaps it. A child of the fork server is the server's child: the
//! server reaps it and writes the raw wait status to a socket kept for that child (the
//! *status socket*), which is then this side's sentinel. Either way signals go through a pidfd,
//! so they can never reach an unrelated process that reused the pid.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::context::StartMethod;
use crate::per_process::PerProcess;
use crate::sys;

/// The exit code Python reports for a fork-server child whose status was lost with the server.
pub(crate) const LOST_STATUS_EXITCODE: i32 = 255;

/// How the exit status of a child reaches us.
pub(crate) enum ExitSource {
    /// A real child: reap it with `waitpid`; its pidfd is the sentinel.
    Waitpid,
    /// A fork-server child: the server writes its status here. `lost` is set when the server
    /// died first; the child's pidfd then tells when it exits, and its code is unknown (255).
    StatusSocket { sock: UnixStream, lost: AtomicBool },
}

/// Shared state of one started child.
pub(crate) struct ChildState {
    pub pid: u32,
    pub name: String,
    pub daemon: bool,
    pub start_method: StartMethod,
    pub pidfd: OwnedFd,
    pub exit_source: ExitSource,
    /// `Some(code)` once the exit has been collected (Python's convention: `-N` for signal N).
    pub exitcode: Mutex<Option<i32>>,
    /// Our end of the socket the child reports its result on (children of `spawn`).
    pub report: Option<Arc<UnixStream>>,
}

impl ChildState {
    /// The descriptor that becomes readable when the child has exited.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        match &self.exit_source {
            ExitSource::StatusSocket { sock, lost } if !lost.load(Ordering::Acquire) => {
                sock.as_fd()
            }
            _ => self.pidfd.as_fd(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<i32>> {
        self.exitcode.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exit code if it has been collected already: no system call.
    pub fn collected_exit(&self) -> Option<i32> {
        *self.lock()
    }

    /// The exit code if the child has exited (collecting it if needed), without blocking.
    pub fn poll_exit(&self) -> io::Result<Option<i32>> {
        let mut code = self.lock();
        if code.is_none() && sys::is_readable(self.sentinel())? {
            *code = self.collect()?;
        }
        Ok(*code)
    }

    /// Reads the exit status once the sentinel is readable; `None` if the child still runs
    /// (its fork server died before it did).
    fn collect(&self) -> io::Result<Option<i32>> {
        match &self.exit_source {
            ExitSource::Waitpid => loop {
                // The pidfd is readable, so the child is a zombie and this does not block for
                // long; loop in case the kernel reports readiness a moment before waitpid agrees.
                if let Some(status) = sys::try_wait(self.pid)? {
                    return Ok(Some(sys::exitcode_from_status(status)));
                }
                sys::poll_readable(&[self.pidfd.as_fd()], Some(Duration::from_millis(1)))?;
            },
            ExitSource::StatusSocket { lost, .. } if lost.load(Ordering::Acquire) => {
                // The pidfd is readable: the child has exited, with a code only the dead
                // server could have read. Python reports 255 here too.
                Ok(Some(LOST_STATUS_EXITCODE))
            }
            ExitSource::StatusSocket { sock, lost } => {
                let mut raw = [0u8; 4];
                match (&*sock).read_exact(&mut raw) {
                    Ok(()) => Ok(Some(sys::exitcode_from_status(i32::from_le_bytes(raw)))),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        // The server died before it could report: watch the child itself.
                        lost.store(true, Ordering::Release);
                        if sys::is_readable(self.pidfd.as_fd())? {
                            Ok(Some(LOST_STATUS_EXITCODE))
                        } else {
                            Ok(None)
                        }
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits up to `timeout` (`None`: for ever) for the child to exit.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        let deadline = timeout.and_then(sys::deadline_after);
        loop {
            if let Some(code) = self.poll_exit()? {
                return Ok(Some(code));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            // The sentinel may change (a lost fork server hands over to the pidfd): poll again.
            sys::poll_readable(&[self.sentinel()], left)?;
        }
    }

    /// Sends `signal` unless the child is known to have exited.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        let code = self.lock();
        if code.is_none() {
            sys::pidfd_send_signal(self.pidfd.as_fd(), signal)?;
        }
        Ok(())
    }
}

/// The children this process has started and not yet seen exit: joined or terminated at exit,
/// listed by `active_children()`.
static CHILDREN: PerProcess<Mutex<Vec<Arc<ChildState>>>> =
    PerProcess::new(|| Mutex::new(Vec::new()));

fn children() -> MutexGuard<'static, Vec<Arc<ChildState>>> {
    CHILDREN.get().lock().unwrap_or_else(|e| e.into_inner())
}

/// Tracks a newly started child, forgetting those that have exited (and reaping them, so that
/// no zombie is left behind by a handle that was dropped without a join).
pub(crate) fn track(child: Arc<ChildState>) {
    let mut list = children();
    list.retain(|c| !matches!(c.poll_exit(), Ok(Some(_))));
    list.push(child);
}

/// The tracked children that are still running.
pub(crate) fn running() -> Vec<Arc<ChildState>> {
    let mut list = children();
    list.retain(|c| !matches!(c.poll_exit(), Ok(Some(_))));
    list.clone()
}

/// What Python does at exit: terminate the daemonic children, then join every child.
pub(crate) fn exit_cleanup() {
    let list = running();
    for child in list.iter().filter(|c| c.daemon) {
        let _ = child.signal(sys::SIGTERM);
    }
    // Nobody will read a result any more: a child blocked writing a large one gets EPIPE
    // instead of waiting for ever (and this process with it).
    for report in list.iter().filter_map(|c| c.report.as_ref()) {
        let _ = report.shutdown(std::net::Shutdown::Read);
    }
    for child in &list {
        let _ = child.wait(None);
    }
}

/// Forgets the parent's children in a freshly forked child (they are not ours).
pub(crate) fn reset_after_fork() {
    CHILDREN.reset_after_fork();
}
