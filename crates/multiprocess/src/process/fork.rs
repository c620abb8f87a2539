//! `StartMethod::Fork`: the child is a `fork()` of the calling process.
//!
//! Fast, and the child inherits everything in memory, but it is a copy of the *calling thread
//! only*: a lock that another thread held at the instant of the fork stays held in the child.
//! The library's own state is safe (see `per_process.rs`); the program's is not, which is why
//! Python and this crate default to the fork server.

use std::os::fd::AsFd;

use crate::error::Result;
use crate::process::bootstrap::{self, ChildFds};
use crate::process::child::ExitSource;
use crate::process::{after_fork_in_child, fork_gate_exclusive, Launch, Launched};
use crate::sys;

pub(crate) fn launch(req: Launch<'_>) -> Result<Launched> {
    let gate = fork_gate_exclusive();
    // SAFETY: the child first forgets the library's lock-holding state (after_fork_in_child) and
    // then only runs the target; the remaining hazard (locks of the program's own other threads)
    // is the documented contract of the Fork method.
    let pid = unsafe { sys::fork() }?;
    if pid == 0 {
        std::mem::forget(gate); // the child's copy of the gate is forgotten with the rest
        after_fork_in_child();
        let fds = (|| -> std::io::Result<ChildFds> {
            Ok(ChildFds {
                report: req.report_child_end,
                parent_pidfd: sys::dup(req.parent_pidfd)?,
                args: req
                    .arg_fds
                    .iter()
                    .map(|fd| sys::dup(fd.as_fd()))
                    .collect::<std::io::Result<_>>()?,
            })
        })();
        match fds {
            Ok(fds) => bootstrap::run_child(req.boot.clone(), fds),
            Err(err) => {
                eprintln!("multiprocess: forked child could not take its descriptors: {err}");
                sys::exit_now(1)
            }
        }
    }
    drop(gate);
    match sys::pidfd_open(pid) {
        Ok(pidfd) => Ok(Launched {
            pid,
            pidfd,
            exit_source: ExitSource::Waitpid,
        }),
        Err(err) => {
            // A child we could not track must not run on unseen.
            let _ = sys::kill(pid, sys::SIGKILL);
            let _ = sys::wait_blocking(pid);
            Err(err.into())
        }
    }
}
