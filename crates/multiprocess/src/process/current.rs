//! Who this process is: its name, identity, daemon flag and parent, as Python's
//! `current_process()` and `parent_process()` report them.
//!
//! Names follow Python: the main process is `MainProcess`; its children are `Process-1`,
//! `Process-2`, …; the first child of `Process-2` is `Process-2:1`. The numbers come from a
//! per-process counter (`identity`), which a new child starts afresh.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::context::StartMethod;
use crate::sys;

/// What a child knows about itself, set once at its start.
struct Current {
    name: String,
    identity: Vec<u32>,
    daemon: bool,
    start_method: StartMethod,
    parent: ParentProcess,
}

/// Null in the main process; in a child, a leaked `Current` set at start-up and never freed.
static CURRENT: AtomicPtr<Current> = AtomicPtr::new(std::ptr::null_mut());

/// The number of children this process has named so far.
static CHILD_COUNTER: AtomicU32 = AtomicU32::new(0);

fn current() -> Option<&'static Current> {
    let p = CURRENT.load(Ordering::Acquire);
    // SAFETY: a non-null pointer is a leaked Box that is never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// A snapshot of a process's attributes, as Python's `current_process()` gives them.
///
/// ```
/// let me = multiprocess::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// assert!(!me.daemon());
/// assert_eq!(me.to_string(), "<_MainProcess name='MainProcess' parent=None started>");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
    identity: Vec<u32>,
    parent_pid: Option<u32>,
    start_method: Option<StartMethod>,
}

impl ProcessInfo {
    /// The process's name (`MainProcess`, `Process-1`, or the name it was given).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Python's `ident`: the same as [`pid`](Self::pid).
    pub fn ident(&self) -> u32 {
        self.pid
    }
    /// Whether the process is daemonic.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
    /// The position in the process tree: empty for the main process, `[2, 1]` for `Process-2:1`.
    pub fn identity(&self) -> &[u32] {
        &self.identity
    }
    /// The pid of the process that started this one (`None` for the main process).
    pub fn parent_pid(&self) -> Option<u32> {
        self.parent_pid
    }
    /// How this process was started (`None` for the main process).
    pub fn start_method(&self) -> Option<StartMethod> {
        self.start_method
    }
    /// Always true: the current process is running.
    pub fn is_alive(&self) -> bool {
        true
    }
    /// Always `None`: the current process has not exited.
    pub fn exitcode(&self) -> Option<i32> {
        None
    }
}

impl fmt::Display for ProcessInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parent_pid {
            None => write!(f, "<_MainProcess name='{}' parent=None started>", self.name),
            Some(ppid) => write!(
                f,
                "<Process name='{}' parent={ppid} started{}>",
                self.name,
                if self.daemon { " daemon" } else { "" }
            ),
        }
    }
}

/// The calling process, as Python's `multiprocessing.current_process()`.
///
/// ```
/// println!("{}", multiprocess::current_process()); // <_MainProcess name='MainProcess' parent=None started>
/// ```
pub fn current_process() -> ProcessInfo {
    match current() {
        None => ProcessInfo {
            name: "MainProcess".into(),
            pid: sys::getpid(),
            daemon: false,
            identity: Vec::new(),
            parent_pid: None,
            start_method: None,
        },
        Some(c) => ProcessInfo {
            name: c.name.clone(),
            pid: sys::getpid(),
            daemon: c.daemon,
            identity: c.identity.clone(),
            parent_pid: Some(c.parent.pid),
            start_method: Some(c.start_method),
        },
    }
}

/// The process that started this one, as Python's `parent_process()`: `None` in the main
/// process.
///
/// ```
/// assert!(multiprocess::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    current().map(|c| c.parent.clone())
}

/// The pid of the process that started this one, as `os.getppid()` in the seeds' programs.
///
/// This is the *logical* parent: for a child of the fork server it is the process that asked for
/// the child, not the server. In the main process it is the kernel's parent pid.
pub fn parent_pid() -> u32 {
    current().map_or_else(sys::getppid, |c| c.parent.pid)
}

/// The process that started this one, seen from the child.
#[derive(Clone, Debug)]
pub struct ParentProcess {
    pid: u32,
    name: String,
    /// A pidfd of the parent: readable once it has exited, whatever pid it had.
    pidfd: Arc<OwnedFd>,
}

impl ParentProcess {
    /// The parent's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// The parent's name (`MainProcess` for the program's main process).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Whether the parent is still running.
    pub fn is_alive(&self) -> bool {
        !sys::is_readable(self.pidfd.as_fd()).unwrap_or(true)
    }
    /// Waits up to `timeout` for the parent to exit; true if it has.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        sys::poll_readable(&[self.pidfd.as_fd()], Some(timeout)).is_ok_and(|r| r[0])
    }
    /// The parent's pidfd, for the daemon watcher.
    pub(crate) fn pidfd(&self) -> Arc<OwnedFd> {
        Arc::clone(&self.pidfd)
    }
}

/// The identity and name for the next child of this process.
pub(crate) fn next_child_identity() -> (Vec<u32>, String) {
    let n = CHILD_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let mut identity = current().map(|c| c.identity.clone()).unwrap_or_default();
    identity.push(n);
    let digits: Vec<String> = identity.iter().map(u32::to_string).collect();
    (identity, format!("Process-{}", digits.join(":")))
}

/// The daemon flag a new child gets when none is given: its creator's, as in Python.
pub(crate) fn inherited_daemon_flag() -> bool {
    current().is_some_and(|c| c.daemon)
}

/// What a new child needs to know about itself, as the parent sends it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ChildIdentity {
    pub name: String,
    pub identity: Vec<u32>,
    pub daemon: bool,
    pub start_method: StartMethod,
    pub parent_pid: u32,
    pub parent_name: String,
}

/// Records, in a just-started child, who it is. Called once, before the target runs.
pub(crate) fn become_child(id: ChildIdentity, parent_pidfd: OwnedFd) {
    let me = Box::new(Current {
        name: id.name,
        identity: id.identity,
        daemon: id.daemon,
        start_method: id.start_method,
        parent: ParentProcess {
            pid: id.parent_pid,
            name: id.parent_name,
            pidfd: Arc::new(parent_pidfd),
        },
    });
    CHILD_COUNTER.store(0, Ordering::Relaxed);
    // The previous value (a forked child's parent's) is leaked on purpose: see per_process.rs.
    CURRENT.store(Box::into_raw(me), Ordering::Release);
}
