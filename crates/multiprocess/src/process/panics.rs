//! A child's panics: how the target's panic is caught for the parent, and what the child prints
//! about it on stderr ([`PanicOutput`]).
//!
//! One panic hook per process, installed before the first child starts (the parent installs it
//! before it forks, so a forked child never has to take the panic-hook lock, which another
//! parent thread may have held at the fork). For a panic on the thread that runs a target
//! (`IN_TARGET`, set by [`catch_target`]) the hook:
//! 1. records the message and location, which [`catch_target`] hands back so the parent
//!    receives them as [`Error::Panic`](crate::Error::Panic);
//! 2. prints what the process's [`PanicOutput`] says: the hook that was there before (Rust's
//!    default: `thread 'main' panicked at …` and, under `RUST_BACKTRACE`, a backtrace), one
//!    line of its own written with a single `write` (so lines of several workers never mix), or
//!    nothing.
//!
//! Any other panic (another thread of the child, the parent's own) goes to the previous hook
//! unchanged. The setting is process-wide; a child receives its parent's (or its `Process`'s or
//! `Pool`'s) in its bootstrap and makes it its own, so it holds under every start method and for
//! the child's own children.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, Once};

use serde::{Deserialize, Serialize};

use crate::process::current_process;
use crate::sys;

/// What a child process prints on stderr when its target panics. Whatever the choice, the
/// parent receives the panic as [`Error::Panic`](crate::Error::Panic), with its message and
/// location, from [`JoinHandle::join`](crate::JoinHandle::join) or from the pool task's result.
///
/// Set it for every child with [`set_panic_output`], for one process with
/// [`Process::panic_output`](crate::Process::panic_output), or for a pool's workers with
/// [`PoolBuilder::panic_output`](crate::PoolBuilder::panic_output).
///
/// ```no_run
/// use multiprocess::{Error, PanicOutput};
///
/// fn fail(why: String) -> u32 {
///     panic!("{why}")
/// }
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     // The default: the child prints one line on stderr,
///     // multiprocess: Process-1 (pid 4242) panicked with "no input" at src/main.rs:4:5
///     let err = multiprocess::spawn(fail, ("no input".to_string(),))?.join().unwrap_err();
///     assert!(matches!(err, Error::Panic { ref message, .. } if message == "no input"));
///
///     // Rust's own output, with a backtrace when RUST_BACKTRACE=1, for this process only.
///     let h = multiprocess::Process::new(fail, ("look closer".to_string(),))
///         .panic_output(PanicOutput::Full)
///         .spawn()?;
///     assert!(h.join().is_err());
///
///     // Nothing at all, from every child started from now on (pool workers too).
///     multiprocess::set_panic_output(PanicOutput::Silent);
///     let pool = multiprocess::Pool::new(2)?;
///     assert!(matches!(pool.apply(fail, ("quiet".to_string(),)), Err(Error::Panic { .. })));
///     Ok(())
/// }
/// ```
///
/// Python prints a child's traceback (`Process Process-1:` and the traceback) and nothing for a
/// pool task, whose exception goes back to the caller. Here a panic is printed, as Rust prints a
/// thread's, but on one line by default: the parent has the whole story in the error, and a
/// backtrace on every failed task would bury a program's own output. Choose
/// [`Full`](Self::Full) to debug a child's panic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PanicOutput {
    /// What Rust prints for a panic: `thread 'main' panicked at src/main.rs:4:5:` and the
    /// message, then a backtrace when `RUST_BACKTRACE` is set (or whatever panic hook the
    /// program installed before its first child started).
    Full,
    /// One line (the default):
    /// `multiprocess: Process-1 (pid 4242) panicked with "no input" at src/main.rs:4:5`.
    #[default]
    OneLine,
    /// Nothing. A process started with [`Process::start`](crate::Process::start) (which sends
    /// no result back) then says only its exit code, 1.
    Silent,
}

impl PanicOutput {
    fn to_u8(self) -> u8 {
        match self {
            PanicOutput::Full => 1,
            PanicOutput::OneLine => 2,
            PanicOutput::Silent => 3,
        }
    }

    fn from_u8(v: u8) -> PanicOutput {
        match v {
            1 => PanicOutput::Full,
            3 => PanicOutput::Silent,
            _ => PanicOutput::OneLine,
        }
    }
}

/// This process's setting: 0 while unset (the default), otherwise `PanicOutput::to_u8`.
static OUTPUT: AtomicU8 = AtomicU8::new(0);

/// Sets what children started from now on print when their target panics (default:
/// [`PanicOutput::OneLine`]). A [`Process`](crate::Process) or a
/// [`PoolBuilder`](crate::PoolBuilder) that chose its own keeps it. In a child, the setting
/// also covers the child's own panicking target, and is what its children inherit.
///
/// ```
/// use multiprocess::{get_panic_output, set_panic_output, PanicOutput};
/// assert_eq!(get_panic_output(), PanicOutput::OneLine);
/// set_panic_output(PanicOutput::Full);
/// assert_eq!(get_panic_output(), PanicOutput::Full);
/// ```
pub fn set_panic_output(output: PanicOutput) {
    OUTPUT.store(output.to_u8(), Ordering::Release);
}

/// The setting [`set_panic_output`] made, else [`PanicOutput::OneLine`].
pub fn get_panic_output() -> PanicOutput {
    PanicOutput::from_u8(OUTPUT.load(Ordering::Acquire))
}

/// A panic caught in a target: its message and `file:line:column`.
pub(crate) struct Caught {
    pub message: String,
    pub location: Option<String>,
}

thread_local! {
    /// True on the thread that runs a target while it runs: only its panics are handled here.
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
}

/// The target's panic, as the hook saw it.
static CAUGHT: Mutex<Option<Caught>> = Mutex::new(None);

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// The [`PanicOutput::OneLine`] text, newline included: the message is quoted, so that one
/// with line breaks still takes one line.
fn one_line(message: &str, location: Option<&str>) -> String {
    let me = current_process();
    let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
    format!(
        "multiprocess: {} (pid {}) panicked with {message:?}{at}\n",
        me.name(),
        me.pid()
    )
}

/// Installs the hook (once per process); see the module doc.
pub(crate) fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_TARGET.with(Cell::get) {
                return previous(info);
            }
            let message = payload_text(info.payload());
            let location = info.location().map(|l| l.to_string());
            match get_panic_output() {
                PanicOutput::Full => previous(info),
                PanicOutput::OneLine => {
                    sys::write_stderr(one_line(&message, location.as_deref()).as_bytes());
                }
                PanicOutput::Silent => {}
            }
            *CAUGHT.lock().unwrap_or_else(|e| e.into_inner()) = Some(Caught { message, location });
        }));
    });
}

/// Runs a target, catching its panic (which the hook reports as the process's setting says).
pub(crate) fn catch_target<R>(target: impl FnOnce() -> R) -> Result<R, Caught> {
    install_hook();
    // A panic the target caught itself must not pass for this one.
    CAUGHT.lock().unwrap_or_else(|e| e.into_inner()).take();
    // A pool worker's loop is a target that runs its tasks as targets: restore, not clear.
    let outer = IN_TARGET.with(|t| t.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(target));
    IN_TARGET.with(|t| t.set(outer));
    outcome.map_err(|payload| {
        CAUGHT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            // The program replaced our panic hook: the payload still has the message.
            .unwrap_or_else(|| Caught {
                message: payload_text(payload.as_ref()),
                location: None,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_quotes_the_message_and_ends_the_line() {
        let line = one_line("two\nlines \"quoted\" 消息", Some("src/x.rs:3:5"));
        assert!(
            line.ends_with(" panicked with \"two\\nlines \\\"quoted\\\" 消息\" at src/x.rs:3:5\n")
        );
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.starts_with("multiprocess: MainProcess (pid "));
        assert!(!one_line("m", None).contains(" at "));
    }

    #[test]
    fn settings_round_trip() {
        for output in [PanicOutput::Full, PanicOutput::OneLine, PanicOutput::Silent] {
            assert_eq!(PanicOutput::from_u8(output.to_u8()), output);
        }
        assert_eq!(PanicOutput::from_u8(0), PanicOutput::OneLine);
    }
}
