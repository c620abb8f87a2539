//! Helpers shared by the integration tests: deadlines on every blocking step, and one test per
//! start method.
#![allow(dead_code)]

use std::time::Duration;

use multiprocess::{Connection, ProcessHandle};
use serde::de::DeserializeOwned;

/// The longest any single blocking step of a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Joins `p` within [`DEADLINE`], killing it and failing the test otherwise.
pub fn join(p: &ProcessHandle) -> i32 {
    match p.join_timeout(DEADLINE).expect("join failed") {
        Some(code) => code,
        None => {
            let _ = p.kill();
            let _ = p.join_timeout(DEADLINE);
            panic!("{} did not exit within {DEADLINE:?}", p.name());
        }
    }
}

/// Receives one value within [`DEADLINE`].
pub fn recv<T: DeserializeOwned>(c: &Connection) -> T {
    assert!(
        c.poll(DEADLINE).expect("poll failed"),
        "no message within {DEADLINE:?}"
    );
    c.recv().expect("recv failed")
}

/// Whether a process with this pid still exists (not yet reaped) anywhere.
pub fn pid_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Waits up to `timeout` for the process `pid` (not necessarily our child) to exit.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if fd < 0 {
        return true; // no such process any more
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for the call; fd is closed right after.
    let ready = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) } == 1;
    // SAFETY: we own fd.
    unsafe { libc::close(fd) };
    ready
}

/// Defines, for each named function `fn name(method: StartMethod)`, a module with one test per
/// start method: `name::fork`, `name::spawn`, `name::forkserver`.
#[macro_export]
macro_rules! per_method {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use multiprocess::StartMethod;
                #[test]
                fn fork() {
                    super::$name(StartMethod::Fork)
                }
                #[test]
                fn spawn() {
                    super::$name(StartMethod::Spawn)
                }
                #[test]
                fn forkserver() {
                    super::$name(StartMethod::ForkServer)
                }
            }
        )*
    };
}
