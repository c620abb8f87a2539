//! [`Payload`]: encoded arguments or results that wait before they cross (a pool task waits
//! for a worker, a result for its caller), kept so that a large one is copied once in and once
//! out.
//!
//! A value is encoded into a `Vec` while it is small. One that passes [`SPILL`] bytes is
//! counted and encoded again, straight into a zero-copy buffer: it then crosses a pipe as a
//! descriptor, and the receiver decodes it from the shared pages. Cloning a payload (to send a
//! task again after its worker died, say) copies nothing.

use std::io;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ShmBuf, ShmBufMut};
use crate::codec;
use crate::error::{Error, Result};

/// Encoded bytes from which a payload moves to a zero-copy buffer (below, a copy costs less
/// than a descriptor's round of system calls).
pub(crate) const SPILL: usize = 128 << 10;

/// Encoded bytes, inline or in a zero-copy buffer (see the module docs).
#[derive(Clone, Debug)]
pub(crate) enum Payload {
    Inline(Arc<Vec<u8>>),
    Shared(ShmBuf),
}

impl Payload {
    /// Encodes `value`, collecting the descriptors of its handles.
    pub(crate) fn encode_with_fds<T: Serialize + ?Sized>(
        value: &T,
    ) -> Result<(Payload, Vec<OwnedFd>)> {
        Payload::encode_as(value, true)
    }

    /// Encodes a value for a transport that moves no descriptors (a zero-copy buffer in it
    /// goes as its bytes; another handle is an error).
    pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Payload> {
        Payload::encode_as(value, false).map(|(payload, _)| payload)
    }

    fn encode_as<T: Serialize + ?Sized>(value: &T, fds: bool) -> Result<(Payload, Vec<OwnedFd>)> {
        match Payload::measure_as(value, fds)? {
            Measured::Done(payload, fds) => Ok((payload, fds)),
            Measured::Large { len, .. } => Payload::write_large_as(value, len, fds),
        }
    }

    /// Encodes a small value, or only counts the bytes of a large one (to be written by
    /// [`write_large_with_fds`](Self::write_large_with_fds)); either way an error says the
    /// value cannot be encoded.
    pub(crate) fn measure_with_fds<T: Serialize + ?Sized>(value: &T) -> Result<Measured> {
        Payload::measure_as(value, true)
    }

    /// Encodes a value that [`measure_with_fds`](Self::measure_with_fds) found to be `len`
    /// bytes long into a zero-copy buffer.
    pub(crate) fn write_large_with_fds<T: Serialize + ?Sized>(
        value: &T,
        len: usize,
    ) -> Result<(Payload, Vec<OwnedFd>)> {
        Payload::write_large_as(value, len, true)
    }

    fn measure_as<T: Serialize + ?Sized>(value: &T, fds: bool) -> Result<Measured> {
        let mut first = Bounded {
            bytes: Vec::new(),
            full: false,
        };
        match encode(value, fds, &mut first) {
            Ok(fds) => return Ok(Measured::Done(Payload::Inline(Arc::new(first.bytes)), fds)),
            Err(e) if !first.full => return Err(e),
            Err(_) => {}
        }
        drop(first);
        let mut count = Counter(0);
        let handles = encode(value, fds, &mut count)?.len();
        Ok(Measured::Large {
            len: count.0,
            handles,
        })
    }

    fn write_large_as<T: Serialize + ?Sized>(
        value: &T,
        len: usize,
        fds: bool,
    ) -> Result<(Payload, Vec<OwnedFd>)> {
        let mut buf = ShmBufMut::for_overwrite(len)?;
        let mut into = Filler {
            bytes: &mut buf[..],
            at: 0,
        };
        let fds = encode(value, fds, &mut into)?;
        if into.at != len {
            return Err(Error::Encode(
                "the value encoded to a different length the second time".into(),
            ));
        }
        Ok((Payload::Shared(buf.freeze()), fds))
    }
}

/// A value measured for encoding (see [`Payload::measure_with_fds`]).
pub(crate) enum Measured {
    /// Small: encoded already, with the descriptors of its handles.
    Done(Payload, Vec<OwnedFd>),
    /// Large: `len` bytes once encoded, holding `handles` descriptors; not written yet.
    Large { len: usize, handles: usize },
}

impl Measured {
    /// How many descriptors the encoded value carries.
    pub(crate) fn handles(&self) -> usize {
        match self {
            Measured::Done(_, fds) => fds.len(),
            Measured::Large { handles, .. } => *handles,
        }
    }
}

/// Encodes `value` into `w`, collecting the descriptors of its handles if `fds` (else a
/// zero-copy buffer in it goes as its bytes, and another handle is an error).
fn encode<T: Serialize + ?Sized>(
    value: &T,
    fds: bool,
    w: &mut dyn io::Write,
) -> Result<Vec<OwnedFd>> {
    if fds {
        codec::encode_to_with_fds(w, value)
    } else {
        codec::encode_to(w, value).map(|()| Vec::new())
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Inline(v) => v,
            Payload::Shared(b) => b,
        }
    }
}

/// A `Vec` that refuses to grow past [`SPILL`] bytes (and says so in `full`).
struct Bounded {
    bytes: Vec<u8>,
    full: bool,
}

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > SPILL {
            self.full = true;
            return Err(io::Error::other("large: spill to shared memory"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts bytes.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes into a buffer of the exact size.
struct Filler<'a> {
    bytes: &'a mut [u8],
    at: usize,
}

impl io::Write for Filler<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.at + buf.len();
        let Some(to) = self.bytes.get_mut(self.at..end) else {
            return Err(io::Error::other("the value grew while it was encoded"));
        };
        to.copy_from_slice(buf);
        self.at = end;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// On the wire: the bytes, or the buffer (its descriptor where the transport moves
/// descriptors, else its bytes).
#[derive(Serialize, Deserialize)]
enum Wire<I, S> {
    Inline(I),
    Shared(S),
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Payload::Inline(v) => {
                Wire::<_, &ShmBuf>::Inline(serde_bytes::Bytes::new(v)).serialize(s)
            }
            Payload::Shared(b) => Wire::<&serde_bytes::Bytes, _>::Shared(b).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(
            match Wire::<serde_bytes::ByteBuf, ShmBuf>::deserialize(d)? {
                Wire::Inline(v) => Payload::Inline(Arc::new(v.into_vec())),
                Wire::Shared(b) => Payload::Shared(b),
            },
        )
    }
}
