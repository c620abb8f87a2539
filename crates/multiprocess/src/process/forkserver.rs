//! `StartMethod::ForkServer`: a single-threaded server process forks children on request.
//!
//! The server is started once per process, on first use, by re-executing the binary (so it
//! starts clean: one thread, no inherited locks, nothing of the program's state), and then only
//! forks. Forking from it is safe however many threads the program runs, and far cheaper than an
//! `exec` per child.
//!
//! Protocol on the control socket (a Unix stream socket pair; the program holds one end, the
//! server the other):
//! - request: an 8-byte header `[body length: u32 LE, has report: u32 LE]` carrying, as
//!   `SCM_RIGHTS`, `[status socket, parent pidfd, report socket (if any), argument fds…]`; then
//!   the body, an encoded `Bootstrap`.
//! - reply: 8 bytes `[pid: i32 LE, errno: i32 LE]` carrying the child's pidfd; pid 0 means the
//!   fork failed with `errno`.
//!
//! The server is the children's real parent: it reaps them (SIGCHLD through a signalfd) and
//! writes each raw wait status (4 bytes) to that child's status socket, which the program polls
//! as the child's sentinel. The server exits when the control socket closes (the program exited
//! or died). It ignores SIGINT, so a Ctrl-C meant for the program's process group does not take
//! it down; children get the default disposition back. If the server dies anyway, the next start
//! notices and starts a new one; the children it had report exit code 255, as in Python.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use crate::codec;
use crate::error::Result;
use crate::per_process::PerProcess;
use crate::process::bootstrap::{self, Bootstrap, ChildFds};
use crate::process::child::ExitSource;
use crate::process::spawn::reexec_command;
use crate::process::{fork_gate_shared, Launch, Launched, ROLE_FORKSERVER};
use crate::sys;

/// The program's connection to its fork server.
struct Client {
    control: UnixStream,
    server: Child,
}

static CLIENT: PerProcess<Mutex<Option<Client>>> = PerProcess::new(|| Mutex::new(None));

/// The control socket's number, readable without the lock, so a forked child can close it.
static CONTROL_FD: AtomicI32 = AtomicI32::new(-1);

/// In a freshly forked child: closes the inherited control socket (so the server still sees the
/// program's exit) and forgets the connection.
pub(crate) fn reset_after_fork() {
    let fd = CONTROL_FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // SAFETY: the descriptor was the parent's control socket, inherited by this child and
        // used by nothing else here; closing our copy is all we do with it.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    CLIENT.reset_after_fork();
}

fn start_server() -> Result<Client> {
    let _gate = fork_gate_shared(); // `theirs` must not leak into a forked child
    let (control, theirs) = sys::socketpair()?;
    CONTROL_FD.store(sys::raw(&control), Ordering::Release);
    let server = match reexec_command(ROLE_FORKSERVER, vec![sys::raw(&theirs)]).spawn() {
        Ok(server) => server,
        Err(err) => {
            CONTROL_FD.store(-1, Ordering::Release);
            return Err(err.into());
        }
    };
    Ok(Client { control, server })
}

/// Forgets a dead server (reaping it) so that the next start makes a new one.
fn discard(client: &mut Option<Client>) {
    if let Some(mut old) = client.take() {
        let _ = old.server.kill();
        let _ = old.server.wait();
        CONTROL_FD.store(-1, Ordering::Release);
    }
}

pub(crate) fn launch(req: Launch<'_>) -> Result<Launched> {
    let mut client = CLIENT.get().lock().unwrap_or_else(|e| e.into_inner());
    let body = codec::encode(req.boot)?;
    // A server that has exited (killed, or crashed) is replaced before it is asked anything,
    // as Python's `ensure_running` does.
    if let Some(current) = client.as_mut() {
        if !matches!(current.server.try_wait(), Ok(None)) {
            discard(&mut client);
        }
    }
    let mut retried = false;
    loop {
        if client.is_none() {
            *client = Some(start_server()?);
        }
        let Some(current) = client.as_mut() else {
            unreachable!("a client was just set");
        };
        match request(&current.control, &req, &body) {
            Ok(launched) => return Ok(launched),
            // The request never reached a server (it died since the check above): no child
            // can exist, so asking a new server once is safe. After a request was sent, a
            // retry could run the target twice, so other failures are final.
            Err(Failure::NotSent(err)) if !retried && server_gone(&err) => {
                retried = true;
                discard(&mut client);
            }
            Err(Failure::NotSent(err) | Failure::Sent(err)) => {
                if server_gone(&err) {
                    discard(&mut client);
                }
                return Err(err.into());
            }
        }
    }
}

fn server_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
    )
}

/// Why a request failed: before the server could have acted on it, or after.
enum Failure {
    NotSent(io::Error),
    Sent(io::Error),
}

fn request(control: &UnixStream, req: &Launch<'_>, body: &[u8]) -> Result<Launched, Failure> {
    let _gate = fork_gate_shared(); // `status_server` must not leak into a forked child
    let (status_mine, status_server) = sys::socketpair().map_err(Failure::NotSent)?;
    let mut fds = vec![sys::raw(&status_server), sys::raw(&req.parent_pidfd)];
    fds.extend(req.report_child_end.as_ref().map(sys::raw));
    fds.extend(req.arg_fds.iter().map(sys::raw));
    let len = u32::try_from(body.len())
        .map_err(|_| Failure::NotSent(io::Error::other("arguments over 4 GiB")))?;
    let mut header = [0u8; 8];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&u32::from(req.report_child_end.is_some()).to_le_bytes());
    sys::send_with_fds(control, &header, &fds).map_err(Failure::NotSent)?;
    sys::send_all(control.as_fd(), body).map_err(Failure::Sent)?;
    drop(status_server);
    receive_reply(control, status_mine).map_err(Failure::Sent)
}

fn receive_reply(control: &UnixStream, status_mine: UnixStream) -> io::Result<Launched> {
    let mut reply = [0u8; 8];
    let Some(mut got) = sys::recv_with_fds(control, &mut reply)? else {
        return Err(io::ErrorKind::UnexpectedEof.into());
    };
    let pid = i32::from_le_bytes(reply[..4].try_into().unwrap_or_default());
    let errno = i32::from_le_bytes(reply[4..].try_into().unwrap_or_default());
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(errno));
    }
    let pidfd = got
        .pop()
        .ok_or_else(|| io::Error::other("the fork server sent no pidfd"))?;
    Ok(Launched {
        pid: pid as u32,
        pidfd,
        exit_source: ExitSource::StatusSocket {
            sock: status_mine,
            lost: Default::default(),
        },
    })
}

/// The server's main loop. Never returns.
pub(crate) fn serve(fds: Vec<RawFd>) -> ! {
    let Some(&fd) = fds.first() else {
        eprintln!("multiprocess: fork server started without its control socket");
        sys::exit_now(1)
    };
    // SAFETY: the program passed this descriptor for the server alone to own.
    let control = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let _ = sys::set_cloexec(fd);
    sys::ignore_signal(sys::SIGINT);
    sys::raise_fd_limit(); // one status socket per live child
    let sigchld = match sys::sigchld_fd() {
        Ok(fd) => fd,
        Err(err) => {
            eprintln!("multiprocess: fork server could not watch its children: {err}");
            sys::exit_now(1)
        }
    };
    // Computed once here, inherited by every child for its binary check.
    let _ = bootstrap::exe_identity();
    let mut statuses: HashMap<u32, UnixStream> = HashMap::new();
    loop {
        let ready = match sys::poll_readable(&[control.as_fd(), sigchld.as_fd()], None) {
            Ok(r) => r,
            Err(_) => sys::exit_now(1),
        };
        if ready[1] {
            sys::drain_signalfd(sigchld.as_fd());
            while let Some((pid, status)) = sys::reap_any() {
                if let Some(sock) = statuses.remove(&pid) {
                    let _ = sys::send_all(sock.as_fd(), &status.to_le_bytes());
                }
            }
        }
        if ready[0] {
            serve_one(&control, &mut statuses);
        }
    }
}

/// Reads one request, forks the child, replies. Exits the server when the program is gone.
fn serve_one(control: &UnixStream, statuses: &mut HashMap<u32, UnixStream>) {
    let mut header = [0u8; 8];
    let received = sys::recv_with_fds(control, &mut header);
    let len = u32::from_le_bytes(header[..4].try_into().unwrap_or_default()) as usize;
    let has_report = header[4] != 0;
    let fds = match received {
        Ok(Some(fds)) => Some(fds),
        // Descriptors lost in transit (e.g. this process ran out of them): refuse this one
        // request, keep the stream in step, keep serving.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => None,
        _ => sys::exit_now(0),
    };
    let mut body = vec![0u8; len];
    if (&*control).read_exact(&mut body).is_err() {
        sys::exit_now(0);
    }
    let Some(fds) = fds else {
        reply(control, 0, sys::EMFILE, None);
        return;
    };
    let mut fds = fds.into_iter();
    let (Some(status), Some(parent_pidfd)) = (fds.next(), fds.next()) else {
        reply(control, 0, sys::EINVAL, None);
        return;
    };
    let report = if has_report { fds.next() } else { None };
    let args: Vec<OwnedFd> = fds.collect();

    // SAFETY: the server is single-threaded, so the child inherits no lock held elsewhere.
    match unsafe { sys::fork() } {
        Ok(0) => {
            let mut keep = vec![sys::raw(&parent_pidfd)];
            keep.extend(report.iter().map(sys::raw));
            keep.extend(args.iter().map(sys::raw));
            keep.sort_unstable();
            sys::close_all_except(&keep, sys::Unkept::Close);
            sys::reset_signals_for_child();
            run_forked_child(&body, report, parent_pidfd, args)
        }
        Ok(pid) => {
            statuses.insert(pid, UnixStream::from(status));
            match sys::pidfd_open(pid) {
                Ok(pidfd) => reply(control, pid as i32, 0, Some(pidfd)),
                Err(err) => reply(control, 0, err.raw_os_error().unwrap_or(sys::EIO), None),
            }
        }
        Err(err) => reply(control, 0, err.raw_os_error().unwrap_or(sys::EIO), None),
    }
}

fn reply(control: &UnixStream, pid: i32, errno: i32, pidfd: Option<OwnedFd>) {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&pid.to_le_bytes());
    msg[4..].copy_from_slice(&errno.to_le_bytes());
    let fds: Vec<RawFd> = pidfd.iter().map(sys::raw).collect();
    if sys::send_with_fds(control, &msg, &fds).is_err() {
        sys::exit_now(0);
    }
}

fn run_forked_child(
    body: &[u8],
    report: Option<OwnedFd>,
    parent_pidfd: OwnedFd,
    args: Vec<OwnedFd>,
) -> ! {
    let report = report.map(UnixStream::from);
    let boot = match codec::decode::<Bootstrap>(body) {
        Ok(boot) => boot,
        Err(err) => {
            let why = format!("could not read the bootstrap: {err}");
            bootstrap::finish(
                1,
                Some(bootstrap::Report::StartFailed(why)),
                report.as_ref(),
            )
        }
    };
    if let Err(why) = bootstrap::check_same_binary(&boot) {
        bootstrap::finish(
            1,
            Some(bootstrap::Report::StartFailed(why)),
            report.as_ref(),
        );
    }
    bootstrap::run_child(
        boot,
        ChildFds {
            report,
            parent_pidfd,
            args,
        },
    )
}
