//! Unix sockets: stream socket pairs, sending without SIGPIPE, descriptors passed with
//! `SCM_RIGHTS`, the single non-blocking sends and receives of a pipe's doorbell, and the
//! datagram socket, connected to itself, that carries a queue's descriptors (non-blocking,
//! peeking).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};

/// Makes a socket pair whose ends are close-on-exec.
pub fn socketpair() -> io::Result<(UnixStream, UnixStream)> {
    UnixStream::pair()
}

/// Writes all of `buf` to a socket without raising SIGPIPE when the peer is gone (the error comes
/// back as `BrokenPipe` instead).
pub fn send_all(sock: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid readable slice for the duration of the call.
        let n = unsafe {
            libc::send(
                sock.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Sends `bytes` (at least one byte) with `fds` attached as `SCM_RIGHTS`. The receiver gets its
/// own copies of the descriptors; ours stay open.
pub fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(
        !bytes.is_empty(),
        "descriptors must ride on at least one byte"
    );
    let sent = loop {
        match sendmsg_fds(sock.as_raw_fd(), bytes, fds, libc::MSG_NOSIGNAL) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    send_all(sock.as_fd(), &bytes[sent..])
}

/// One `sendmsg` of `bytes` with `fds` attached (none: no control message), with `flags`.
fn sendmsg_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd], flags: libc::c_int) -> io::Result<usize> {
    let payload = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call, and the
    // control buffer is 8-byte aligned and CMSG_SPACE(payload) long, as CMSG_* require.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        }
        libc::sendmsg(sock, &msg, flags)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `recvmsg` into `buf` with `flags` (plus close-on-exec for received descriptors): the
/// bytes received, the descriptors that came with them, and the message flags.
fn recvmsg_fds(
    sock: RawFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, Vec<OwnedFd>, libc::c_int)> {
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS_PER_MESSAGE * 4) as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data and its pointers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg describes valid buffers; MSG_CMSG_CLOEXEC marks received fds close-on-exec.
    let n = unsafe { libc::recvmsg(sock, &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled the control buffer; CMSG_* walk it within msg_controllen, and
    // each SCM_RIGHTS entry holds descriptors just installed in our table for us to own.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, fds, msg.msg_flags))
}

/// The most descriptors one [`recv_with_fds`] accepts.
pub const MAX_FDS_PER_MESSAGE: usize = 253; // the kernel's SCM_MAX_FD

/// Receives exactly `buf.len()` bytes and the descriptors sent with them by [`send_with_fds`].
/// `Ok(None)` means the peer closed the socket before sending anything.
pub fn recv_with_fds(sock: &UnixStream, buf: &mut [u8]) -> io::Result<Option<Vec<OwnedFd>>> {
    let (n, fds, flags) = loop {
        match recvmsg_fds(sock.as_raw_fd(), buf, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    if n == 0 {
        return Ok(None);
    }
    io::Read::read_exact(&mut &*sock, &mut buf[n..])?;
    if flags & libc::MSG_CTRUNC != 0 {
        // `buf` is complete, so the stream stays in step; the descriptors that did arrive
        // are closed with `fds`.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors were truncated in transit",
        ));
    }
    Ok(Some(fds))
}

/// Makes a datagram socket connected to itself, close-on-exec: a message sent on it arrives
/// whole in its own receive queue, for whoever holds it (any process it was passed to). It is
/// bound to a random abstract name (nothing in any file system), and a socket connected to a
/// peer accepts datagrams from that peer only: no other socket can send to it.
pub fn self_datagram() -> io::Result<UnixDatagram> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let name = format!(
        "multiprocess-{:016x}{:016x}",
        super::random_u64()?,
        super::random_u64()?
    );
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let sock = UnixDatagram::bind_addr(&addr)?;
    sock.connect_addr(&addr)?;
    Ok(sock)
}

/// Sends one datagram of `bytes` with `fds` attached, without blocking: `Ok(false)` when the
/// socket has no room now.
pub fn send_datagram(sock: &UnixDatagram, bytes: &[u8], fds: &[RawFd]) -> io::Result<bool> {
    loop {
        match sendmsg_fds(
            sock.as_raw_fd(),
            bytes,
            fds,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        ) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Receives the next datagram into `buf` (the rest of a longer one is lost) with its
/// descriptors, without blocking: `Ok(None)` when none is waiting. With `peek`, the datagram
/// stays queued, and the descriptors received are new copies of its own.
pub fn recv_datagram(
    sock: &UnixDatagram,
    buf: &mut [u8],
    peek: bool,
) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let flags = libc::MSG_DONTWAIT | if peek { libc::MSG_PEEK } else { 0 };
    loop {
        match recvmsg_fds(sock.as_raw_fd(), buf, flags) {
            Ok((n, fds, _)) => return Ok(Some((n, fds))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Waits until `sock` can take a send, at most `timeout`.
pub fn wait_writable(sock: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: pfd is a valid pollfd for the duration of the call.
    if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(())
}

/// Sends what of `bytes` fits now, without blocking or raising SIGPIPE; how many bytes went
/// (a full socket buffer is a `WouldBlock` error).
#[inline]
pub fn send_nonblocking(sock: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: bytes is a valid readable slice for the duration of the call.
    let n = unsafe {
        libc::send(
            sock.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Receives what is waiting, up to `buf.len()` bytes, without blocking: `Ok(0)` at the end of
/// the stream, a `WouldBlock` error when nothing is waiting.
#[inline]
pub fn recv_nonblocking(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length for the duration of the call.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
