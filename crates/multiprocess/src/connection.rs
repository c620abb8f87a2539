//! Pipes between processes: Python's `Pipe()`, `Connection` and `connection.wait`.
//!
//! A [`Connection`] is one end of a Unix stream socket pair carrying length-prefixed messages:
//! a 4-byte little-endian length, then the bytes (an encoded value for `send`/`recv`, raw bytes
//! for `send_bytes`/`recv_bytes`). Messages are never merged or split, an empty message is a
//! message, and [`Connection::poll`] never consumes anything. A connection can be passed to a
//! child as an argument under every start method (its descriptor travels with it); both
//! processes then hold an end, as in Python.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, FdIn, FdOut};
use crate::error::{Error, Result};
use crate::sys;

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
    sock: UnixStream,
    readable: bool,
    writable: bool,
    /// Serialises whole-message writes from several threads.
    send_lock: Mutex<()>,
    /// Serialises whole-message reads from several threads.
    recv_lock: Mutex<()>,
}

/// A duplex pipe: both ends can send and receive, as Python's `Pipe()`.
pub fn pipe() -> Result<(Connection, Connection)> {
    let (a, b) = sys::socketpair()?;
    Ok((
        Connection::new(a, true, true),
        Connection::new(b, true, true),
    ))
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
    let (r, w) = sys::socketpair()?;
    r.shutdown(std::net::Shutdown::Write)?;
    w.shutdown(std::net::Shutdown::Read)?;
    Ok((
        Connection::new(r, true, false),
        Connection::new(w, false, true),
    ))
}

impl Connection {
    fn new(sock: UnixStream, readable: bool, writable: bool) -> Self {
        Connection {
            sock,
            readable,
            writable,
            send_lock: Mutex::new(()),
            recv_lock: Mutex::new(()),
        }
    }

    /// Another handle to the same end (a duplicated descriptor), e.g. to hand to a child while
    /// keeping this one.
    pub fn try_clone(&self) -> Result<Connection> {
        Ok(Connection::new(
            self.sock.try_clone()?,
            self.readable,
            self.writable,
        ))
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::InvalidState("connection is read-only".into()))
        }
    }

    fn check_readable(&self) -> Result<()> {
        if self.readable {
            Ok(())
        } else {
            Err(Error::InvalidState("connection is write-only".into()))
        }
    }

    /// Sends a value. A value that cannot be encoded is an error and sends nothing.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.check_writable()?;
        let mut frame = vec![0u8; 4];
        codec::encode_into(&mut frame, value)?;
        self.send_frame(frame)
    }

    /// Receives a value sent with [`send`](Self::send). [`Error::Eof`] when the other end is
    /// closed and nothing is left.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        codec::decode(&self.recv_bytes()?)
    }

    /// Sends raw bytes as one message.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.check_writable()?;
        let mut frame = Vec::with_capacity(4 + bytes.len());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(bytes);
        self.send_frame(frame)
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
            _ => Err(Error::InvalidState(format!(
                "offset {offset} and size {size:?} are out of range for a buffer of {} bytes",
                bytes.len()
            ))),
        }
    }

    /// Patches the length into `frame` (whose first 4 bytes are reserved) and writes it whole.
    fn send_frame(&self, mut frame: Vec<u8>) -> Result<()> {
        let len = u32::try_from(frame.len() - 4)
            .map_err(|_| Error::Encode("a message must be under 4 GiB".into()))?;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        let _guard = self.send_lock.lock().unwrap_or_else(|e| e.into_inner());
        sys::send_all(self.sock.as_fd(), &frame)?;
        Ok(())
    }

    /// Receives one message's bytes.
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.check_readable()?;
        let _guard = self.recv_lock.lock().unwrap_or_else(|e| e.into_inner());
        let len = self.read_len()?;
        let mut buf = vec![0u8; len];
        self.read_body(&mut buf)?;
        Ok(buf)
    }

    /// Receives one message into `buf` and returns its length. A message longer than `buf` is
    /// still consumed, and comes back whole in [`Error::BufferTooShort`].
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let message = self.recv_bytes()?;
        match buf.get_mut(..message.len()) {
            Some(dst) => {
                dst.copy_from_slice(&message);
                Ok(message.len())
            }
            None => Err(Error::BufferTooShort(message)),
        }
    }

    fn read_len(&self) -> Result<usize> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match (&self.sock).read(&mut len[got..]) {
                Ok(0) if got == 0 => return Err(Error::Eof),
                Ok(0) => return Err(torn()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(Error::Eof),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(u32::from_le_bytes(len) as usize)
    }

    fn read_body(&self, buf: &mut [u8]) -> Result<()> {
        (&self.sock).read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => torn(),
            _ => e.into(),
        })
    }

    /// Whether a message (or EOF) can be read now, waiting up to `timeout` for one. Consumes
    /// nothing.
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        self.check_readable()?;
        Ok(sys::poll_readable(&[self.sock.as_fd()], Some(timeout))?[0])
    }
}

fn torn() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the connection closed in the middle of a message",
    ))
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsFd for crate::ProcessHandle {
    /// The process's sentinel: readable once it has exited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sentinel()
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
pub fn wait<T: AsFd>(objects: &[T], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let fds: Vec<BorrowedFd<'_>> = objects.iter().map(AsFd::as_fd).collect();
    let ready = sys::poll_readable(&fds, timeout)?;
    Ok(ready
        .iter()
        .enumerate()
        .filter_map(|(i, &r)| r.then_some(i))
        .collect())
}

/// How a connection travels as an argument: its descriptor (by index in the side table) and
/// its direction.
#[derive(Serialize, Deserialize)]
struct ConnectionWire<Fd> {
    fd: Fd,
    readable: bool,
    writable: bool,
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ConnectionWire {
            fd: FdOut(self.sock.as_fd()),
            readable: self.readable,
            writable: self.writable,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let wire = ConnectionWire::<FdIn>::deserialize(d)?;
        Ok(Connection::new(
            UnixStream::from(wire.fd.0),
            wire.readable,
            wire.writable,
        ))
    }
}
