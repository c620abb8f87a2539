//! Processes started from a function: [`Process`], [`spawn`], their handles, and who-am-I.
//!
//! A start encodes the arguments once (`codec`), makes a [`Bootstrap`](bootstrap::Bootstrap)
//! that names the target and the child's identity, and hands both to one of the start methods
//! (`fork.rs`, `spawn.rs`, `forkserver.rs`), which differ only in how the child comes to exist.
//! The child runs `bootstrap::run_child`; the parent keeps a [`ProcessHandle`] over the shared
//! `child::ChildState`.

pub(crate) mod bootstrap;
mod child;
mod current;
mod fork;
mod forkserver;
mod join;
mod panics;
mod spawn;
pub(crate) mod target;

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use current::{current_process, parent_pid, parent_process, ParentProcess, ProcessInfo};
pub use join::JoinHandle;
pub use panics::{get_panic_output, set_panic_output, PanicOutput};
pub use target::Target;

use crate::codec;
use crate::context::{self, get_start_method, StartMethod};
use crate::error::{Error, Result};
use crate::per_process::PerProcess;
use crate::sys;
use bootstrap::Bootstrap;
use child::{ChildState, ExitSource};

/// Environment variable naming the role of a re-executed copy of the binary.
pub(crate) const ROLE_ENV: &str = "MULTIPROCESS_ROLE";
/// Environment variable listing the descriptors a re-executed copy inherits.
pub(crate) const FDS_ENV: &str = "MULTIPROCESS_FDS";
pub(crate) const ROLE_CHILD: &str = "child";
pub(crate) const ROLE_FORKSERVER: &str = "forkserver";

/// What a start method needs to make a child.
pub(crate) struct Launch<'a> {
    pub boot: &'a Bootstrap,
    /// The child's end of the report socket, when there is one. The start method hands it to
    /// the child and then drops this copy, so a child that dies early is seen as EOF.
    pub report_child_end: Option<UnixStream>,
    /// Our end of the report socket (`Spawn` sends the bootstrap on it).
    pub report_parent_end: Option<&'a UnixStream>,
    /// This process's pidfd, which the child watches.
    pub parent_pidfd: BorrowedFd<'a>,
    /// Descriptors of handles among the arguments.
    pub arg_fds: &'a [OwnedFd],
}

/// What a start method gives back.
pub(crate) struct Launched {
    pub pid: u32,
    pub pidfd: OwnedFd,
    pub exit_source: ExitSource,
}

/// A pidfd of this process, handed to every child (it is how a child sees its parent die).
static SELF_PIDFD: PerProcess<Option<OwnedFd>> =
    PerProcess::new(|| sys::pidfd_open(sys::getpid()).ok());

/// Keeps descriptors that one thread holds only for a moment (a fork-server request's sockets)
/// out of a child that another thread forks at that moment: such work holds the gate shared,
/// `fork` holds it exclusively.
static FORK_GATE: PerProcess<RwLock<()>> = PerProcess::new(|| RwLock::new(()));

/// Holds the fork gate shared (see [`FORK_GATE`]).
pub(crate) fn fork_gate_shared() -> RwLockReadGuard<'static, ()> {
    FORK_GATE.get().read().unwrap_or_else(|e| e.into_inner())
}

/// Holds the fork gate exclusively, around a `fork` (see [`FORK_GATE`]).
pub(crate) fn fork_gate_exclusive() -> RwLockWriteGuard<'static, ()> {
    FORK_GATE.get().write().unwrap_or_else(|e| e.into_inner())
}

/// Forgets, in a freshly forked child, all the parent's process-wide state. Touches no lock.
pub(crate) fn after_fork_in_child() {
    child::reset_after_fork();
    forkserver::reset_after_fork();
    SELF_PIDFD.reset_after_fork();
    FORK_GATE.reset_after_fork();
    crate::buffer::reset_after_fork();
}

/// In a copy of the binary re-executed by `Spawn` or `ForkServer`, runs what it was started for
/// and exits; in the program itself, returns at once.
pub(crate) fn dispatch_reexecuted_role() {
    let Some(role) = std::env::var_os(ROLE_ENV) else {
        return;
    };
    let fds: Vec<RawFd> = std::env::var(FDS_ENV)
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    // Our own children must not mistake themselves for re-executed copies.
    std::env::remove_var(ROLE_ENV);
    std::env::remove_var(FDS_ENV);
    match role.to_str() {
        Some(ROLE_CHILD) => spawn::child_main(fds),
        Some(ROLE_FORKSERVER) => forkserver::serve(fds),
        _ => {
            eprintln!("multiprocess: unknown {ROLE_ENV}={role:?}");
            sys::exit_now(1)
        }
    }
}

/// Registers, once per process, the clean-up Python runs at exit (daemonic children are
/// terminated, the others joined), and the reset of the library's state in forked children.
pub(crate) fn register_exit_cleanup() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    extern "C" fn at_exit() {
        child::exit_cleanup();
    }
    extern "C" fn in_forked_child() {
        after_fork_in_child();
    }
    if !REGISTERED.swap(true, Ordering::AcqRel) {
        sys::at_exit(at_exit);
        // The fork handler also covers forks the library does not make (a bare `fork`,
        // daemonising crates): such a copy must not wait on, or steal the exit statuses of,
        // its parent's children.
        // SAFETY: `after_fork_in_child` only stores atomics and closes an inherited
        // descriptor: no allocation, no lock another thread may have held.
        unsafe { sys::at_fork_in_child(in_forked_child) };
    }
}

/// A process to be started: a target function, its arguments, and options. Python's
/// `multiprocessing.Process`, split the Rust way into a builder and a [`ProcessHandle`].
///
/// The target is a function item or a closure that captures nothing; the arguments are a tuple
/// matching its parameters, as Python's `args=`: `()` for none, `(x,)` for one.
///
/// ```no_run
/// fn work(name: String, times: u32) {
///     for _ in 0..times {
///         println!("{name} is working in {}", multiprocess::current_process().name());
///     }
/// }
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     let p = multiprocess::Process::new(work, ("xiaoming".to_string(), 3))
///         .name("MyProcess")
///         .start()?;
///     assert_eq!(p.join()?, 0);
///     Ok(())
/// }
/// ```
#[must_use = "a Process does nothing until it is started"]
pub struct Process<F, Args> {
    /// The target is a zero-sized type: only its type travels (see `target.rs`).
    target: PhantomData<F>,
    args: Args,
    name: Option<String>,
    daemon: Option<bool>,
    start_method: Option<StartMethod>,
    /// A pool worker: named `ForkPoolWorker-N` and the like, as in Python.
    pool_worker: bool,
    panic_output: Option<PanicOutput>,
}

impl<F, Args> std::fmt::Debug for Process<F, Args> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("target", &std::any::type_name::<F>())
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("start_method", &self.start_method)
            .finish_non_exhaustive()
    }
}

impl<F: Target<Args>, Args> Process<F, Args> {
    /// A process that will run `target` with `args` (a tuple of its parameters).
    pub fn new(target: F, args: Args) -> Self {
        target::assert_zero_sized::<F>();
        let _ = target;
        Process {
            target: PhantomData,
            args,
            name: None,
            daemon: None,
            start_method: None,
            pool_worker: false,
            panic_output: None,
        }
    }

    /// Marks the process as a pool worker (for its default name).
    pub(crate) fn pool_worker(mut self) -> Self {
        self.pool_worker = true;
        self
    }

    /// Names the process (default: `Process-N`, or `Process-N:M` for a grandchild).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes the process daemonic or not (default: the creator's own flag, false in `main`).
    /// A daemonic process is terminated when its parent exits, and killed if the parent dies.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// Chooses how the process is started (default: [`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// Chooses what the process prints on stderr if its target panics (default:
    /// [`get_panic_output`], one line); it also becomes the setting of the process's own
    /// children. The parent receives the panic as [`Error::Panic`] either way.
    ///
    /// ```no_run
    /// fn fail() -> u8 { panic!("look closer") }
    ///
    /// fn main() -> multiprocess::Result<()> {
    ///     multiprocess::init();
    ///     let child = multiprocess::Process::new(fail, ())
    ///         .panic_output(multiprocess::PanicOutput::Full) // with a backtrace under RUST_BACKTRACE=1
    ///         .spawn()?;
    ///     assert!(matches!(child.join(), Err(multiprocess::Error::Panic { .. })));
    ///     Ok(())
    /// }
    /// ```
    pub fn panic_output(mut self, output: PanicOutput) -> Self {
        self.panic_output = Some(output);
        self
    }
}

impl<F, Args> Process<F, Args>
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
{
    /// Starts the process. What the target returns is dropped in the child; see
    /// [`spawn`](Self::spawn) to get it back.
    ///
    /// Fails, without starting anything, if the arguments cannot be encoded, or if a
    /// re-executing start method is used before [`init`](crate::init).
    pub fn start(self) -> Result<ProcessHandle> {
        let entry: target::EntryFn = target::run_discarding::<F, Args>;
        self.launch(entry, false).map(|(handle, _)| handle)
    }

    /// Starts the process and returns a [`JoinHandle`] whose `join` gives the target's return
    /// value, as `std::thread::spawn` does.
    pub fn spawn(self) -> Result<JoinHandle<F::Output>>
    where
        F::Output: Serialize + DeserializeOwned,
    {
        let entry: target::EntryFn = target::run_returning::<F, Args>;
        let (process, report) = self.launch(entry, true)?;
        // `launch` makes one when asked to.
        let report = report.ok_or_else(|| io::Error::other("internal error: no report channel"))?;
        Ok(JoinHandle::new(process, report))
    }

    fn launch(
        self,
        entry: target::EntryFn,
        wants_report: bool,
    ) -> Result<(ProcessHandle, Option<Arc<UnixStream>>)> {
        let method = self.start_method.unwrap_or_else(get_start_method);
        if method.reexecutes() && !context::init_done() {
            return Err(Error::InitMissing(method));
        }
        if method.reexecutes() {
            target::check_same_object(entry)?;
        }
        panics::install_hook();
        register_exit_cleanup();
        let (args, arg_fds) = codec::encode_with_fds(&self.args)?;
        if arg_fds.len() > sys::MAX_FDS_PER_MESSAGE - 3 {
            return Err(Error::Encode(format!(
                "the arguments hold {} OS handles; at most {} can be passed to one process",
                arg_fds.len(),
                sys::MAX_FDS_PER_MESSAGE - 3
            )));
        }
        let (identity, default_name) = current::next_child_identity();
        let default_name = if self.pool_worker {
            let prefix = match method {
                StartMethod::Fork => "ForkPoolWorker",
                StartMethod::Spawn => "SpawnPoolWorker",
                StartMethod::ForkServer => "ForkServerPoolWorker",
            };
            default_name.replacen("Process", prefix, 1)
        } else {
            default_name
        };
        let name = self.name.unwrap_or(default_name);
        let daemon = self.daemon.unwrap_or_else(current::inherited_daemon_flag);
        let me = current_process();
        let boot = Bootstrap {
            exe: bootstrap::exe_identity()?,
            entry: target::entry_offset(entry),
            args,
            wants_report,
            id: current::ChildIdentity {
                name: name.clone(),
                identity,
                daemon,
                start_method: method,
                parent_pid: me.pid(),
                parent_name: me.name().to_string(),
            },
            // Fork and Spawn children inherit it; only a fork-server child needs telling.
            cwd: (method == StartMethod::ForkServer)
                .then(std::env::current_dir)
                .and_then(|d| d.ok())
                .map(|p| std::os::unix::ffi::OsStringExt::into_vec(p.into_os_string())),
            panic_output: self.panic_output.unwrap_or_else(get_panic_output),
        };
        let (report_mine, report_child) = if wants_report || method == StartMethod::Spawn {
            let (mine, child) = sys::socketpair()?;
            (Some(mine), Some(child))
        } else {
            (None, None)
        };
        let parent_pidfd = SELF_PIDFD
            .get()
            .as_ref()
            .ok_or_else(|| Error::Io(io::Error::other("could not open a pidfd of this process")))?;
        let req = Launch {
            boot: &boot,
            report_child_end: report_child,
            report_parent_end: report_mine.as_ref(),
            parent_pidfd: parent_pidfd.as_fd(),
            arg_fds: &arg_fds,
        };
        // What the parent has buffered must not be written again by a forked child.
        let _ = io::Write::flush(&mut io::stdout());
        let _ = io::Write::flush(&mut io::stderr());
        let launched = match method {
            StartMethod::Fork => fork::launch(req)?,
            StartMethod::Spawn => spawn::launch(req)?,
            StartMethod::ForkServer => forkserver::launch(req)?,
        };
        // The arguments (and their handles) were only needed until the child had its copies.
        drop(self.args);
        let report = report_mine.filter(|_| wants_report).map(Arc::new);
        let state = Arc::new(ChildState {
            pid: launched.pid,
            name,
            daemon,
            start_method: method,
            pidfd: launched.pidfd,
            exit_source: launched.exit_source,
            exitcode: Default::default(),
            report: report.clone(),
        });
        child::track(Arc::clone(&state));
        Ok((ProcessHandle { state }, report))
    }
}

/// Python's "subclass `Process` and override `run()`" style: a value that carries its own data
/// and knows how to run.
///
/// ```no_run
/// use multiprocess::Run;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct SubProcess { interval: u64 }
///
/// impl Run for SubProcess {
///     fn run(self) {
///         println!("child {} sleeps {} s", std::process::id(), self.interval);
///     }
/// }
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     let p = SubProcess { interval: 1 }.into_process().name("mrsoft").start()?;
///     p.join()?;
///     Ok(())
/// }
/// ```
pub trait Run: Serialize + DeserializeOwned + Sized + 'static {
    /// The work the process does.
    fn run(self);

    /// A [`Process`] that will call [`run`](Self::run) on this value.
    fn into_process(self) -> Process<impl Target<(Self,), Output = ()>, (Self,)> {
        Process::new(Self::run, (self,))
    }
}

/// A started process, as Python's `Process` object after `start()`. Cloning gives another
/// handle to the same process.
#[derive(Clone)]
#[must_use = "the process runs on without its handle, which `join` needs (drop it explicitly)"]
pub struct ProcessHandle {
    state: Arc<ChildState>,
}

impl std::fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("name", &self.state.name)
            .field("pid", &self.state.pid)
            .field("daemon", &self.state.daemon)
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

impl ProcessHandle {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.state.pid
    }
    /// The process's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }
    /// Whether the process is daemonic.
    pub fn daemon(&self) -> bool {
        self.state.daemon
    }
    /// How the process was started.
    pub fn start_method(&self) -> StartMethod {
        self.state.start_method
    }
    /// Whether the process is still running.
    pub fn is_alive(&self) -> bool {
        self.exitcode().is_none()
    }
    /// Whether the exit has been collected already (asks nothing of the system).
    pub(crate) fn exit_collected(&self) -> bool {
        self.state.collected_exit().is_some()
    }
    /// `None` while running; then the exit code, or `-N` if a signal N killed it.
    pub fn exitcode(&self) -> Option<i32> {
        self.state.poll_exit().ok().flatten()
    }
    /// Waits for the process to exit and returns its exit code.
    pub fn join(&self) -> Result<i32> {
        self.state
            .wait(None)?
            .ok_or_else(|| Error::Io(io::Error::other("the process did not exit")))
    }
    /// Waits up to `timeout`; `Some(code)` if the process has exited, `None` if it still runs.
    /// A zero timeout only checks.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>> {
        Ok(self.state.wait(Some(timeout))?)
    }
    /// Asks the process to stop (SIGTERM). Does nothing if it has already exited.
    pub fn terminate(&self) -> Result<()> {
        Ok(self.state.signal(sys::SIGTERM)?)
    }
    /// Stops the process at once (SIGKILL). Does nothing if it has already exited.
    pub fn kill(&self) -> Result<()> {
        Ok(self.state.signal(sys::SIGKILL)?)
    }
    /// Sends SIGINT, as Python's `interrupt()`.
    pub fn interrupt(&self) -> Result<()> {
        Ok(self.state.signal(sys::SIGINT)?)
    }
    /// A descriptor that becomes readable when the process exits (Python's `sentinel`), to wait
    /// on together with others.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.state.sentinel()
    }
}

/// The children of this process that are still running, as Python's `active_children()`
/// (which also reaps the ones that have exited).
pub fn active_children() -> Vec<ProcessHandle> {
    child::running()
        .into_iter()
        .map(|state| ProcessHandle { state })
        .collect()
}

/// Runs `target(args...)` in a new process with the default start method, and returns a handle
/// whose [`join`](JoinHandle::join) gives back what it returned, as `std::thread::spawn` does.
///
/// ```no_run
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     let handle = multiprocess::spawn(square, (12,))?;
///     assert_eq!(handle.join()?, 144);
///     Ok(())
/// }
/// ```
pub fn spawn<F, Args>(target: F, args: Args) -> Result<JoinHandle<F::Output>>
where
    F: Target<Args>,
    Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    Process::new(target, args).spawn()
}
