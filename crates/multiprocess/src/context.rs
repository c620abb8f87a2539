//! Start methods, the process-wide default, and [`init`]: the one line a program needs.
//!
//! `Spawn` and `ForkServer` re-execute the program's own binary. The re-executed copy must run
//! the requested function, never the program's `main` logic: [`init`], first in `main`, is where
//! it turns off. Test binaries, whose `main` belongs to the test harness, use
//! [`init_on_load!`](crate::init_on_load) instead, which runs the same check when the binary is
//! loaded, before any `main`.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::process::{self, Process, Target};

/// How a child process comes to exist.
///
/// | method | how | cost here | notes |
/// | --- | --- | --- | --- |
/// | `Fork` | `fork()` of the calling process | fastest | the child is a copy of one thread: **unsafe with threads** (a lock another thread held stays held in the child), as in Python |
/// | `Spawn` | `fork()` + `exec` of the same binary | slowest | a clean process; arguments cross as bytes |
/// | `ForkServer` | a single-threaded server process, started once by `exec`, forks children on request | fast | the default: safe with threads, and close to `Fork` in speed |
///
/// ```
/// use multiprocess::StartMethod;
/// assert_eq!("forkserver".parse::<StartMethod>().unwrap(), StartMethod::ForkServer);
/// assert_eq!(StartMethod::Spawn.to_string(), "spawn");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartMethod {
    /// Fork the calling process.
    Fork,
    /// Re-execute the current binary.
    Spawn,
    /// Ask a single-threaded fork server to fork a child.
    ForkServer,
}

impl StartMethod {
    /// Every start method, in Python's order.
    pub const ALL: [StartMethod; 3] = [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ];

    /// Python's name for the method: `fork`, `spawn` or `forkserver`.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }

    /// Whether the method re-executes the binary (and so needs [`init`]).
    pub(crate) fn reexecutes(self) -> bool {
        self != StartMethod::Fork
    }

    fn to_u8(self) -> u8 {
        self as u8 + 1
    }

    fn from_u8(v: u8) -> Option<StartMethod> {
        StartMethod::ALL.get((v as usize).checked_sub(1)?).copied()
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StartMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        StartMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| Error::UnknownStartMethod(s.to_string()))
    }
}

/// The default start method when none was set: `ForkServer`, as in Python 3.14 on Linux.
pub const DEFAULT_START_METHOD: StartMethod = StartMethod::ForkServer;

/// 0 while unset, otherwise `StartMethod::to_u8`.
static START_METHOD: AtomicU8 = AtomicU8::new(0);

/// Set by [`init`] (or [`init_on_load!`](crate::init_on_load)) in this process.
static INIT_DONE: AtomicBool = AtomicBool::new(false);

/// The start method used when a [`Process`] names none: the one set with
/// [`set_start_method`], else [`DEFAULT_START_METHOD`].
///
/// ```
/// assert_eq!(multiprocess::get_start_method(), multiprocess::StartMethod::ForkServer);
/// ```
pub fn get_start_method() -> StartMethod {
    StartMethod::from_u8(START_METHOD.load(Ordering::Acquire)).unwrap_or(DEFAULT_START_METHOD)
}

/// Sets the default start method once, as Python's `set_start_method`: a second call fails with
/// [`Error::StartMethodAlreadySet`] (use [`set_start_method_force`] to change it anyway).
///
/// ```
/// use multiprocess::{set_start_method, StartMethod};
/// set_start_method(StartMethod::Spawn).unwrap();
/// assert!(set_start_method(StartMethod::Fork).is_err());
/// ```
pub fn set_start_method(method: StartMethod) -> Result<()> {
    START_METHOD
        .compare_exchange(0, method.to_u8(), Ordering::AcqRel, Ordering::Acquire)
        .map(drop)
        .map_err(|_| Error::StartMethodAlreadySet(get_start_method()))
}

/// Sets the default start method even if it was set before.
pub fn set_start_method_force(method: StartMethod) {
    START_METHOD.store(method.to_u8(), Ordering::Release);
}

/// How many CPUs this process may run on: the default number of a [`Pool`](crate::Pool)'s
/// workers. As Python 3.13's `process_cpu_count()`, it heeds the CPU affinity (and a cgroup's
/// CPU quota, too); Python's `cpu_count()` counts every CPU of the machine. At least 1.
///
/// ```
/// assert!(multiprocess::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The start methods this platform offers: on Linux all three.
pub fn get_all_start_methods() -> &'static [StartMethod] {
    &StartMethod::ALL
}

/// A start method bound to a value, as Python's `get_context(method)`: processes made from it
/// use that method whatever the default is.
///
/// ```no_run
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() {
///     multiprocess::init();
///     let ctx = multiprocess::get_context(multiprocess::StartMethod::Spawn);
///     assert_eq!(ctx.spawn(square, (7,)).unwrap().join().unwrap(), 49);
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// A [`Context`] for `method`.
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

impl Context {
    /// The context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A [`Process`] that will start with this context's method.
    pub fn process<F, Args>(&self, target: F, args: Args) -> Process<F, Args>
    where
        F: Target<Args>,
    {
        Process::new(target, args).start_method(self.method)
    }

    /// Runs `target(args...)` in a new process with this context's method and returns a handle
    /// whose `join` gives back the result (see [`spawn`](crate::spawn)).
    pub fn spawn<F, Args>(&self, target: F, args: Args) -> Result<process::JoinHandle<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + serde::de::DeserializeOwned,
        F::Output: Serialize + serde::de::DeserializeOwned,
    {
        self.process(target, args).spawn()
    }
}

/// Makes the program ready for child processes. Call it first in `main`.
///
/// In the program itself it only records that it ran and arranges the clean-up at exit (daemonic
/// children terminated, the others joined, as Python does). In a copy of the program that
/// `Spawn` or `ForkServer` started, it never returns: it runs the requested function (or the fork
/// server) and exits, so the program's own `main` logic never runs twice. With the `cluster`
/// feature and `MULTIPROCESS_NODE=redis://…` set, it serves as a cluster node until SIGTERM and
/// exits (see `multiprocess::cluster`).
///
/// ```no_run
/// fn main() {
///     multiprocess::init();
///     // ... the program ...
/// }
/// ```
pub fn init() {
    if INIT_DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    process::dispatch_reexecuted_role();
    process::register_exit_cleanup();
    #[cfg(feature = "cluster")]
    crate::cluster::serve_if_asked();
}

/// Whether [`init`] ran in this process.
pub(crate) fn init_done() -> bool {
    INIT_DONE.load(Ordering::Acquire)
}

/// Records the start method a child was started with, as its own default (Python does the same).
pub(crate) fn inherit_start_method(method: StartMethod) {
    set_start_method_force(method);
}

/// Calls [`init`] when the binary is loaded, before `main` runs: for test binaries (`cargo test`,
/// `cargo nextest`), whose `main` belongs to the test harness. One line at the top of each test
/// file that starts processes:
///
/// ```ignore
/// multiprocess::init_on_load!();
/// ```
///
/// It places a function pointer in the ELF `.init_array` section of the crate that invokes it,
/// which the loader runs at start-up.
#[macro_export]
macro_rules! init_on_load {
    () => {
        const _: () = {
            extern "C" fn __multiprocess_init_on_load() {
                $crate::init();
            }
            #[used]
            #[link_section = ".init_array"]
            static __MULTIPROCESS_INIT_ON_LOAD: extern "C" fn() = __multiprocess_init_on_load;
        };
    };
}
