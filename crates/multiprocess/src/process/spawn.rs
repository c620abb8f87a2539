//! `StartMethod::Spawn`: the child is a fresh `exec` of the same binary.
//!
//! The parent runs `/proc/self/exe` (the very file it was started from, even if the path has
//! since been replaced) with two environment variables: the role (`child`) and the numbers of
//! the descriptors it inherits (the report socket, the parent's pidfd, then the arguments'
//! descriptors). Only those descriptors lose close-on-exec, in the forked child just before
//! `exec`, so siblings never inherit each other's. The [`Bootstrap`] then travels as one frame
//! on the report socket; `init()` in the child's `main` picks all this up.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::codec;
use crate::error::{Error, Result};
use crate::process::bootstrap::{self, Bootstrap, ChildFds, Report};
use crate::process::child::ExitSource;
use crate::process::{Launch, Launched, FDS_ENV, ROLE_CHILD, ROLE_ENV};
use crate::sys;

/// A command that re-executes this binary in `role`, inheriting exactly `fds` (and stdio):
/// every other descriptor is marked close-on-exec in the child before `exec`, even one the
/// program opened without it, so siblings never see each other's.
pub(crate) fn reexec_command(role: &str, fds: Vec<RawFd>) -> Command {
    let list: Vec<String> = fds.iter().map(RawFd::to_string).collect();
    let mut sorted = fds.clone();
    sorted.sort_unstable();
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.env(ROLE_ENV, role).env(FDS_ENV, list.join(","));
    // SAFETY: the hook runs between fork and exec and only calls fcntl and close_range
    // (async-signal-safe) on descriptor numbers captured before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                sys::clear_cloexec(fd)?;
            }
            sys::close_all_except(&sorted, sys::Unkept::CloseOnExec);
            Ok(())
        });
    }
    cmd
}

pub(crate) fn launch(req: Launch<'_>) -> Result<Launched> {
    let (Some(report_parent), Some(report_child)) = (req.report_parent_end, req.report_child_end)
    else {
        // `Process::launch` always makes one for Spawn.
        return Err(io::Error::other("internal error: spawn needs a report channel").into());
    };
    let mut fds = vec![sys::raw(&report_child), sys::raw(&req.parent_pidfd)];
    fds.extend(req.arg_fds.iter().map(sys::raw));
    let child = reexec_command(ROLE_CHILD, fds).spawn()?;
    // Only the child holds its end now: if it dies before reading the bootstrap, writing it
    // fails with EPIPE instead of blocking for ever.
    drop(report_child);
    let pid = child.id();
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(err) => {
            let _ = sys::kill(pid, sys::SIGKILL);
            let _ = sys::wait_blocking(pid);
            return Err(err.into());
        }
    };
    let launched = Launched {
        pid,
        pidfd,
        exit_source: ExitSource::Waitpid,
    };
    // A child that died before reading its bootstrap is still a child: its exit code says why.
    if let Err(err) = bootstrap::write_frame(report_parent, &codec::encode(req.boot)?) {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(err.into());
        }
    }
    Ok(launched)
}

/// The child's side: takes the inherited descriptors, reads the bootstrap, runs the target.
pub(crate) fn child_main(fds: Vec<RawFd>) -> ! {
    let mut sorted = fds.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != fds.len() || fds.iter().any(|&fd| !sys::is_open_fd(fd)) {
        eprintln!("multiprocess: a spawned child was given invalid descriptors {fds:?}");
        sys::exit_now(1)
    }
    let mut owned = fds.into_iter().map(|fd| {
        // SAFETY: the parent passed these numbers for us alone to own; they are open.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Keep them from leaking into anything this child executes in turn.
        let _ = sys::set_cloexec(sys::raw(&fd));
        fd
    });
    let (Some(report), Some(parent_pidfd)) = (owned.next(), owned.next()) else {
        eprintln!("multiprocess: a spawned child was started without its descriptors");
        sys::exit_now(1)
    };
    let report = UnixStream::from(report);
    let boot = match bootstrap::read_frame(&report)
        .map_err(Error::from)
        .and_then(|b| codec::decode::<Bootstrap>(&b))
    {
        Ok(boot) => boot,
        Err(err) => bootstrap::finish(
            1,
            Some(Report::StartFailed(format!(
                "could not read the bootstrap: {err}"
            ))),
            Some(&report),
        ),
    };
    if let Err(why) = bootstrap::check_same_binary(&boot) {
        bootstrap::finish(1, Some(Report::StartFailed(why)), Some(&report));
    }
    let report = boot.wants_report.then_some(report);
    bootstrap::run_child(
        boot,
        ChildFds {
            report,
            parent_pidfd,
            args: owned.collect(),
        },
    )
}
