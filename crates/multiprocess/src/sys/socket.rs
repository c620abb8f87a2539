//! Unix stream sockets: socket pairs, sending without SIGPIPE, descriptors passed with
//! `SCM_RIGHTS`, and the single non-blocking sends and receives of a pipe's doorbell.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

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
    let sent = unsafe {
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
        loop {
            let n = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    };
    send_all(sock.as_fd(), &bytes[sent..])
}

/// The most descriptors one [`recv_with_fds`] accepts.
pub const MAX_FDS_PER_MESSAGE: usize = 253; // the kernel's SCM_MAX_FD

/// Receives exactly `buf.len()` bytes and the descriptors sent with them by [`send_with_fds`].
/// `Ok(None)` means the peer closed the socket before sending anything.
pub fn recv_with_fds(sock: &UnixStream, buf: &mut [u8]) -> io::Result<Option<Vec<OwnedFd>>> {
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
    let n = loop {
        // SAFETY: msg describes valid buffers; MSG_CMSG_CLOEXEC marks received fds close-on-exec.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
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
    if n == 0 {
        return Ok(None);
    }
    io::Read::read_exact(&mut &*sock, &mut buf[n..])?;
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // `buf` is complete, so the stream stays in step; the descriptors that did arrive
        // are closed with `fds`.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors were truncated in transit",
        ));
    }
    Ok(Some(fds))
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
