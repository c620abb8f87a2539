//! What goes into a deque's records and comes out of them: the [`Encode`] trait (raw
//! [`Parts`], or a [`Value`] encoded with `codec`), and the [`FdChannel`] that carries the
//! descriptors of a value's OS handles beside the ring.

use std::io;
use std::os::fd::OwnedFd;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wait::Wait;
use crate::codec;
use crate::error::{Error, Result};

/// What a record's payload is made from: a value to encode, or raw bytes.
pub(crate) trait Encode {
    /// Writes the payload to `w`; returns the descriptors that must travel with it. May be
    /// called more than once (each call must write the same bytes); only the last call's
    /// descriptors are sent.
    fn encode<W: io::Write>(&mut self, w: &mut W) -> Result<Vec<OwnedFd>>;
}

/// Raw bytes, written one part after another (a small header needs no copy of the payload).
pub(crate) struct Parts<'a>(pub &'a [&'a [u8]]);

impl Encode for Parts<'_> {
    fn encode<W: io::Write>(&mut self, w: &mut W) -> Result<Vec<OwnedFd>> {
        for part in self.0 {
            w.write_all(part)
                .map_err(|e| Error::Encode(e.to_string()))?;
        }
        Ok(Vec::new())
    }
}

/// Where the descriptors of records travel beside the ring.
pub(crate) trait FdChannel {
    /// Sends `fds` under `id`, before the record that names it is published (the tail lock is
    /// held). Waits per `wait` if the channel is full, then fails with [`Error::Full`].
    fn send(&self, id: u64, fds: Vec<OwnedFd>, wait: Wait) -> Result<()>;
    /// The descriptors sent under `id`, for a record about to be taken (its end's lock is
    /// held); the channel may keep its own copies until [`taken`](Self::taken).
    fn take(&self, id: u64) -> Result<Vec<OwnedFd>>;
    /// The record of `id` has been taken (its end's lock is still held).
    fn taken(&self, _id: u64) {}
}

/// A value, encoded with [`codec`] straight into a record; with `handles`, the descriptors of
/// the OS handles it holds are collected to travel beside it.
pub(crate) struct Value<'a, T: ?Sized> {
    pub value: &'a T,
    pub handles: bool,
}

impl<T: Serialize + ?Sized> Encode for Value<'_, T> {
    #[inline]
    fn encode<W: io::Write>(&mut self, w: &mut W) -> Result<Vec<OwnedFd>> {
        if self.handles {
            codec::encode_to_with_fds(w, self.value)
        } else {
            codec::encode_to(w, self.value).map(|()| Vec::new())
        }
    }
}

/// Decodes a value from a record's payload and the descriptors that came with it.
pub(crate) fn decode_value<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    if fds.is_empty() {
        codec::decode(bytes)
    } else {
        codec::decode_with_fds(bytes, fds)
    }
}
