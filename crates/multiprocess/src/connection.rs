//! Pipes between processes: Python's `Pipe()`, `Connection` and `connection.wait`.
//!
//! ## Design
//!
//! Each direction of a pipe is a [`SharedDeque`] (the shared-memory ring under the queues too,
//! see `shm/deque.rs`): a message is one record, so messages are never merged or split, an empty
//! message is a message, and a message is delivered whole or not at all even if its sender is
//! killed while sending. Sending costs no system call while the receiver is busy.
//!
//! A Unix socket pair links the two ends too, for two things the shared memory cannot do:
//! - **EOF**: when every copy of one end is closed (or its processes died), the other end's
//!   socket reports it; a receiver then gets the messages still queued, then [`Error::Eof`].
//! - **a doorbell for blocking**: a receiver with nothing to read *arms* its direction's
//!   doorbell, re-checks, and sleeps in `poll` on its socket; a sender that finds the doorbell
//!   armed after a push writes one byte on the socket. So blocking receives, [`Connection::poll`]
//!   and [`wait`] sleep in the kernel on a file descriptor, together with process sentinels.
//!   Every sleep is capped at `MAX_SLEEP` and re-checks, so a sender killed between its push and
//!   its doorbell cannot strand the receiver.
//!
//! A connection can be passed to a child as an argument under every start method (its socket
//! and shared memory travel with it); both processes then hold the end, as in Python. A message
//! may itself carry handles (a queue, another connection, a zero-copy buffer) to a process that
//! is already running: their descriptors go ahead of the message over a second socket pair,
//! with `SCM_RIGHTS`, under an id that the message's record names (see `shm/deque.rs`); the
//! receiver matches them up.
//!
//! A message is encoded straight into its record and decoded straight out of it: a large byte
//! string costs one copy in and one copy out. Each direction holds at most [`PIPE_CAPACITY`]
//! messages: a sender to a receiver that does not keep up waits, as with an OS pipe, and gets a
//! `BrokenPipe` error if the other end is closed.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, FdIn, FdOut};
use crate::error::{Error, Result};
use crate::items::Items;
use crate::shm::deque::{
    decode_value, spin_until, Encode, End, FdChannel, Parts, SharedDeque, Value, Wait,
};
use crate::shm::{Region, MAX_SLEEP};
use crate::sys;

/// The most messages one direction of a pipe holds before `send` waits.
pub const PIPE_CAPACITY: usize = 1 << 16;

/// One end of a pipe.
///
/// ```
/// let (a, b) = multiprocess::pipe().unwrap();
/// a.send(&(1, 2.25, None::<u8>)).unwrap();
/// assert_eq!(b.recv::<(i32, f64, Option<u8>)>().unwrap(), (1, 2.25, None));
/// b.send_bytes(b"raw").unwrap();
/// assert_eq!(a.recv_bytes().unwrap(), b"raw");
/// assert!(!a.poll(std::time::Duration::ZERO).unwrap());
/// ```
#[derive(Debug)]
pub struct Connection {
    /// Our end of the socket pair: EOF and doorbells arrive here.
    sock: UnixStream,
    /// Our end of the socket pair that carries the descriptors of handles sent in messages.
    handles: UnixStream,
    /// Descriptors that arrived for messages not yet received, by message id.
    pending: Arc<Mutex<HashMap<u64, Vec<OwnedFd>>>>,
    /// Messages to us (`None`: a write-only end).
    inbox: Option<Arc<SharedDeque>>,
    /// Messages from us (`None`: a read-only end).
    outbox: Option<Arc<SharedDeque>>,
}

fn channel() -> Result<Arc<SharedDeque>> {
    Ok(Arc::new(SharedDeque::create(PIPE_CAPACITY as u64)?))
}

/// The handle socket of a connection, as the channel that carries the descriptors of the
/// handles inside its messages.
struct HandleSocket<'a>(&'a Connection);

impl FdChannel for HandleSocket<'_> {
    fn send(&self, id: u64, fds: Vec<OwnedFd>, _wait: Wait) -> Result<()> {
        if fds.len() > sys::MAX_FDS_PER_MESSAGE {
            return Err(Error::Encode(format!(
                "a message holds {} OS handles; at most {} fit in one",
                fds.len(),
                sys::MAX_FDS_PER_MESSAGE
            )));
        }
        let raw: Vec<_> = fds.iter().map(sys::raw).collect();
        Ok(sys::send_with_fds(
            &self.0.handles,
            &id.to_le_bytes(),
            &raw,
        )?)
    }

    fn take(&self, id: u64) -> Result<Vec<OwnedFd>> {
        self.0.take_handles(id)
    }
}

/// The two ends, before they are given their directions.
fn ends() -> Result<(Connection, Connection)> {
    let (a, b) = sys::socketpair()?;
    let (ha, hb) = sys::socketpair()?;
    let end = |sock, handles| Connection {
        sock,
        handles,
        pending: Arc::default(),
        inbox: None,
        outbox: None,
    };
    Ok((end(a, ha), end(b, hb)))
}

/// A duplex pipe: both ends can send and receive, as Python's `Pipe()`.
pub fn pipe() -> Result<(Connection, Connection)> {
    let (mut a, mut b) = ends()?;
    let (a_to_b, b_to_a) = (channel()?, channel()?);
    a.inbox = Some(Arc::clone(&b_to_a));
    a.outbox = Some(Arc::clone(&a_to_b));
    b.inbox = Some(a_to_b);
    b.outbox = Some(b_to_a);
    Ok((a, b))
}

/// A one-way pipe: `(reader, writer)`, as Python's `Pipe(duplex=False)`.
///
/// ```
/// let (reader, writer) = multiprocess::pipe_simplex().unwrap();
/// writer.send(&1u8).unwrap();
/// assert_eq!(reader.recv::<u8>().unwrap(), 1);
/// assert!(reader.send(&1u8).is_err());
/// assert!(writer.recv::<u8>().is_err());
/// ```
pub fn pipe_simplex() -> Result<(Connection, Connection)> {
    let (mut r, mut w) = ends()?;
    let ch = channel()?;
    r.inbox = Some(Arc::clone(&ch));
    w.outbox = Some(ch);
    Ok((r, w))
}

/// What the socket says when asked without blocking.
enum SockState {
    Quiet,
    /// Doorbell bytes were waiting (now drained).
    Rang,
    /// The other end is closed.
    Closed,
}

impl Connection {
    /// Another handle to the same end (a duplicated descriptor), e.g. to hand to a child while
    /// keeping this one.
    pub fn try_clone(&self) -> Result<Connection> {
        Ok(Connection {
            sock: self.sock.try_clone()?,
            handles: self.handles.try_clone()?,
            pending: Arc::clone(&self.pending),
            inbox: self.inbox.clone(),
            outbox: self.outbox.clone(),
        })
    }

    /// Takes back the newest message sent from this end that the other end has not taken, if
    /// more than `keep` are waiting (the pool moves unstarted tasks to an idle worker this way).
    /// Handles it carried stay with the other end's pending table, unused.
    pub(crate) fn take_back_unread<T: DeserializeOwned>(&self, keep: usize) -> Result<Option<T>> {
        self.outbox()?.take_back(keep as u64, &mut |payload, _| {
            codec::decode_with_fds(payload, Vec::new())
        })
    }

    /// How many messages sent from this end the other end has not taken yet.
    pub(crate) fn unread_sent(&self) -> usize {
        self.outbox.as_ref().map_or(0, |d| d.len() as usize)
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.inbox.is_some()
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.outbox.is_some()
    }

    fn outbox(&self) -> Result<&SharedDeque> {
        self.outbox.as_deref().ok_or(Error::ReadOnly)
    }

    fn inbox(&self) -> Result<&SharedDeque> {
        self.inbox.as_deref().ok_or(Error::WriteOnly)
    }

    /// Sends a value. A value that cannot be encoded is an error and sends nothing.
    ///
    /// The value may hold handles (a [`Queue`](crate::Queue), a `Connection`, …), which then
    /// work in the receiving process, even one that was already running. Messages with handles
    /// must all be received by one process (as with Python, one end is not for sharing between
    /// concurrent readers).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let out = self.outbox()?;
        self.push(
            out,
            &mut Value {
                value,
                handles: true,
            },
        )
    }

    /// Receives a value sent with [`send`](Self::send). [`Error::Eof`] when the other end is
    /// closed and nothing is left.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.recv_with(&mut decode_value::<T>)
    }

    /// Sends raw bytes as one message.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        let out = self.outbox()?;
        self.push(out, &mut Parts(&[bytes]))
    }

    /// The descriptors sent ahead of message `id`, reading the handle socket as far as needed.
    fn take_handles(&self, id: u64) -> Result<Vec<OwnedFd>> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(fds) = pending.remove(&id) {
                return Ok(fds);
            }
            let mut got = [0u8; 8];
            match sys::recv_with_fds(&self.handles, &mut got)? {
                Some(fds) => {
                    pending.insert(u64::from_le_bytes(got), fds);
                }
                None => {
                    return Err(Error::Decode(
                        "the handles sent with a message were lost".into(),
                    ))
                }
            }
        }
    }

    /// Sends `bytes[offset..offset + size]` (`size` `None`: to the end), as Python's
    /// `send_bytes(buf, offset, size)`; a range outside `bytes` is an error.
    pub fn send_bytes_range(&self, bytes: &[u8], offset: usize, size: Option<usize>) -> Result<()> {
        let end = match size {
            Some(size) => offset.checked_add(size),
            None => Some(bytes.len()),
        };
        match end {
            Some(end) if offset <= bytes.len() && end <= bytes.len() => {
                self.send_bytes(&bytes[offset..end])
            }
            _ => Err(Error::InvalidArgument(format!(
                "offset {offset} and size {size:?} are out of range for a buffer of {} bytes",
                bytes.len()
            ))),
        }
    }

    /// Pushes one message, waiting while the direction is full (and failing with `BrokenPipe`
    /// if the other end is closed meanwhile), then rings the doorbell if a receiver sleeps.
    fn push<E: Encode>(&self, out: &SharedDeque, item: &mut E) -> Result<()> {
        let chan = HandleSocket(self);
        loop {
            match out.push(item, Wait::No, false, Some(&chan)) {
                Ok(()) => break,
                Err(Error::Full) => {
                    if matches!(self.peek_socket()?, SockState::Closed) {
                        return Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
                    }
                    match out.push(item, Wait::timeout(MAX_SLEEP), false, Some(&chan)) {
                        Err(Error::Full) => continue,
                        other => return other.map(|()| self.ring(out)),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.ring(out);
        Ok(())
    }

    /// Wakes a receiver sleeping on the other end's socket.
    fn ring(&self, out: &SharedDeque) {
        if out.doorbell_armed() {
            // A full socket buffer means doorbells are pending already: nothing is lost.
            let _ = sys::send_nonblocking(self.sock.as_fd(), b"!");
        }
    }

    /// Checks the socket without blocking, draining doorbell bytes; never consumes anything
    /// else (the socket carries nothing else).
    fn peek_socket(&self) -> Result<SockState> {
        let mut buf = [0u8; 64];
        let mut state = SockState::Quiet;
        loop {
            match sys::recv_nonblocking(self.sock.as_fd(), &mut buf) {
                Ok(0) => return Ok(SockState::Closed),
                // A stream socket gives all it holds, up to the buffer: a short read drained
                // it (an end of file behind it shows at the next look).
                Ok(n) if n < buf.len() => return Ok(SockState::Rang),
                Ok(_) => state = SockState::Rang,
                Err(err) => {
                    return match err.kind() {
                        io::ErrorKind::WouldBlock => Ok(state),
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::ConnectionReset => Ok(SockState::Closed),
                        _ => Err(err.into()),
                    };
                }
            }
        }
    }

    /// Receives one message's bytes (the handles of a message sent with them are closed).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_with(&mut |payload, _| Ok(payload.to_vec()))
    }

    /// Receives one message, which `decode` reads in place (with the descriptors of its
    /// handles), waiting for one as long as the other end is open.
    fn recv_with<R, F: FnMut(&[u8], Vec<OwnedFd>) -> Result<R>>(
        &self,
        decode: &mut F,
    ) -> Result<R> {
        let inbox = self.inbox()?;
        let chan = HandleSocket(self);
        loop {
            match inbox.pop(End::Front, Wait::No, Some(&chan), decode) {
                Err(Error::Empty) => {}
                other => return other,
            }
            if !self.wait_readable(inbox, None)? {
                return Err(Error::Eof);
            }
        }
    }

    /// Waits until the inbox has a message (true) or the other end is closed with nothing left
    /// (false), or `deadline` passes (true: the caller re-checks).
    fn wait_readable(&self, inbox: &SharedDeque, deadline: Option<Instant>) -> Result<bool> {
        spin_until(|| inbox.len() > 0);
        if inbox.len() > 0 {
            return Ok(true);
        }
        inbox.arm_doorbell();
        let result = (|| loop {
            if inbox.len() > 0 {
                return Ok(true);
            }
            if matches!(self.peek_socket()?, SockState::Closed) {
                // Messages sent before the close are delivered first.
                return Ok(inbox.len() > 0);
            }
            let left = match deadline {
                None => MAX_SLEEP,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(true);
                    }
                    left.min(MAX_SLEEP)
                }
            };
            sys::poll_readable(&[self.sock.as_fd()], Some(left))?;
        })();
        inbox.disarm_doorbell();
        result
    }

    /// Receives one message into `buf` and returns its length. A message longer than `buf` is
    /// still consumed, and comes back whole in [`Error::BufferTooShort`].
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_with(&mut |message, _| match buf.get_mut(..message.len()) {
            Some(dst) => {
                dst.copy_from_slice(message);
                Ok(message.len())
            }
            None => Err(Error::BufferTooShort(message.to_vec())),
        })
    }

    /// Whether a message (or EOF) can be read now, waiting up to `timeout` for one. Consumes
    /// nothing.
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        let inbox = self.inbox()?;
        if inbox.len() > 0 {
            return Ok(true);
        }
        if timeout.is_zero() {
            // Only look: no spinning, no sleeping.
            let closed = matches!(self.peek_socket()?, SockState::Closed);
            return Ok(inbox.len() > 0 || closed);
        }
        let deadline = sys::deadline_after(timeout);
        loop {
            // `wait_readable` says true at the deadline too: tell the cases apart.
            let open = self.wait_readable(inbox, deadline)?;
            if inbox.len() > 0 || !open {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// The messages, each received with [`recv`](Self::recv) as `T` (waiting for it), until
    /// the other end is closed and nothing is left: see [`Items`].
    ///
    /// ```
    /// let (a, b) = multiprocess::pipe()?;
    /// for i in 0..3u32 {
    ///     a.send(&i)?;
    /// }
    /// drop(a);
    /// let got: Vec<u32> = b.iter().collect::<multiprocess::Result<_>>()?;
    /// assert_eq!(got, [0, 1, 2]);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn iter<T: DeserializeOwned>(&self) -> Items<'_, T> {
        Items::new("Connection", false, move || self.recv())
    }

    /// The messages there now, each received as `T`: see [`Items`].
    pub fn try_iter<T: DeserializeOwned>(&self) -> Items<'_, T> {
        Items::new("Connection", true, move || {
            if self.poll(Duration::ZERO)? {
                self.recv()
            } else {
                Err(Error::Empty)
            }
        })
    }
}

/// Something [`wait`] can wait for: a [`Connection`] (a message or EOF to read) or a
/// [`ProcessHandle`](crate::ProcessHandle) (the process has exited).
pub trait Waitable {
    /// The descriptor to sleep on.
    #[doc(hidden)]
    fn wait_fd(&self) -> BorrowedFd<'_>;
    /// Starts a wait; true if the object is ready already (checked without system calls).
    #[doc(hidden)]
    fn begin_wait(&self) -> bool;
    /// Whether the object is ready now, after a sleep in which its descriptor did (or did not)
    /// become readable.
    #[doc(hidden)]
    fn ready(&self, fd_readable: bool) -> bool;
    /// Ends a wait started by `begin_wait`.
    #[doc(hidden)]
    fn end_wait(&self) {}
}

impl Waitable for Connection {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
    fn begin_wait(&self) -> bool {
        match &self.inbox {
            None => false,
            Some(inbox) => {
                inbox.arm_doorbell();
                inbox.len() > 0
            }
        }
    }
    fn ready(&self, fd_readable: bool) -> bool {
        let Some(inbox) = &self.inbox else {
            return false;
        };
        if inbox.len() > 0 {
            return true;
        }
        // The socket only speaks for doorbells (drained here) and EOF.
        fd_readable && matches!(self.peek_socket(), Ok(SockState::Closed) | Err(_))
    }
    fn end_wait(&self) {
        if let Some(inbox) = &self.inbox {
            inbox.disarm_doorbell();
        }
    }
}

impl Waitable for crate::ProcessHandle {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.sentinel()
    }
    fn begin_wait(&self) -> bool {
        // Once its exit is collected, a process is ready for good (the sentinel of a fork
        // server's child may not stay readable); otherwise the sentinel, polled, tells.
        self.exit_collected()
    }
    fn ready(&self, fd_readable: bool) -> bool {
        fd_readable && !self.is_alive()
    }
}

impl<T: Waitable + ?Sized> Waitable for &T {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        (**self).wait_fd()
    }
    fn begin_wait(&self) -> bool {
        (**self).begin_wait()
    }
    fn ready(&self, fd_readable: bool) -> bool {
        (**self).ready(fd_readable)
    }
    fn end_wait(&self) {
        (**self).end_wait()
    }
}

/// Waits until at least one of `objects` is ready (a connection has a message or EOF, a process
/// has exited) or `timeout` passes (`None`: no limit). Returns the indices of the ready ones,
/// empty on timeout. Python's `multiprocessing.connection.wait`.
///
/// ```
/// use std::time::Duration;
/// let (a, b) = multiprocess::pipe().unwrap();
/// let (c, d) = multiprocess::pipe().unwrap();
/// d.send(&"hi").unwrap();
/// assert_eq!(multiprocess::wait(&[&a, &c], Some(Duration::from_secs(5))).unwrap(), vec![1]);
/// # drop(b);
/// ```
pub fn wait<T: Waitable>(objects: &[T], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.and_then(sys::deadline_after);
    let mut ready: Vec<usize> = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        if o.begin_wait() {
            ready.push(i);
        }
    }
    let fds: Vec<BorrowedFd<'_>> = objects.iter().map(Waitable::wait_fd).collect();
    let result = (|| {
        // At least one look, even with no time to wait.
        let mut first = true;
        while ready.is_empty() {
            let left = match deadline {
                None => MAX_SLEEP,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() && !first {
                        break;
                    }
                    left.min(MAX_SLEEP)
                }
            };
            first = false;
            let readable = sys::poll_readable(&fds, Some(left))?;
            ready = (0..objects.len())
                .filter(|&i| objects[i].ready(readable[i]))
                .collect();
        }
        Ok(())
    })();
    for o in objects {
        o.end_wait();
    }
    result.map(|()| ready)
}

/// How a connection travels as an argument: its socket and its directions' shared memory.
#[derive(Serialize, Deserialize)]
struct ConnectionWire<Fd, Shm> {
    sock: Fd,
    handles: Fd,
    inbox: Option<Shm>,
    outbox: Option<Shm>,
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ConnectionWire {
            sock: FdOut(self.sock.as_fd()),
            handles: FdOut(self.handles.as_fd()),
            inbox: self.inbox.as_ref().map(|d| d.region()),
            outbox: self.outbox.as_ref().map(|d| d.region()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let wire = ConnectionWire::<FdIn, Region>::deserialize(d)?;
        let deque = |r: Option<Region>| -> std::result::Result<_, D::Error> {
            r.map(|r| SharedDeque::from_region(r).map(Arc::new))
                .transpose()
                .map_err(serde::de::Error::custom)
        };
        Ok(Connection {
            sock: UnixStream::from(wire.sock.0),
            handles: UnixStream::from(wire.handles.0),
            pending: Arc::default(),
            inbox: deque(wire.inbox)?,
            outbox: deque(wire.outbox)?,
        })
    }
}
