//! How values cross process boundaries: one encoding for arguments, results and items.
//!
//! The format is [MessagePack](https://msgpack.org) through
//! [`rmp-serde`](https://docs.rs/rmp-serde): maintained, fast (a `u64` item encodes in a few
//! nanoseconds), compact (structs as arrays, small integers in one byte), and, unlike the
//! non-self-describing formats (postcard, bincode), it decodes everything serde can express:
//! untagged and internally tagged enums, `#[serde(flatten)]`, `serde_json::Value`. It also keeps
//! the message of a custom serde error (postcard replaces it with a fixed string), so a value
//! that refuses to encode says why. Both ends are always the same binary, so the format's
//! cross-version stability matters less here than its breadth and speed.
//!
//! Values that hold OS handles (a [`Connection`](crate::Connection), later queues and locks)
//! travel by *descriptor passing*: while a value is encoded with [`encode_with_fds`], each handle
//! records a duplicate of its descriptor in a side table and writes only its index; the transport
//! moves the table (inheritance across `fork`/`exec`, or `SCM_RIGHTS` to the fork server), and
//! [`decode_with_fds`] gives each handle its descriptor back by index.
//!
//! ```
//! let bytes = multiprocess::codec::encode(&(1u8, "two".to_string())).unwrap();
//! let back: (u8, String) = multiprocess::codec::decode(&bytes).unwrap();
//! assert_eq!(back, (1, "two".to_string()));
//! ```

use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

thread_local! {
    /// Descriptors collected while a value is being encoded with [`encode_with_fds`].
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// Descriptors available to handles while a value is being decoded with [`decode_with_fds`].
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Encodes a value onto the end of `buf` (which keeps what it held).
pub fn encode_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<()> {
    let before = buf.len();
    rmp_serde::encode::write(buf, value).map_err(|e| {
        buf.truncate(before);
        Error::Encode(e.to_string())
    })
}

/// Encodes a value that holds no OS handles.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec(value).map_err(|e| Error::Encode(e.to_string()))
}

/// Decodes a value that holds no OS handles.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Decode(e.to_string()))
}

/// Encodes a value together with the descriptors its handles carry.
pub fn encode_with_fds<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut bytes = Vec::new();
    let fds = encode_to_with_fds(&mut bytes, value)?;
    Ok((bytes, fds))
}

/// Encodes a value that holds no OS handles into `w` (a queue's record, say).
pub(crate) fn encode_to<W: std::io::Write + ?Sized, T: Serialize + ?Sized>(
    w: &mut W,
    value: &T,
) -> Result<()> {
    rmp_serde::encode::write(w, value).map_err(|e| Error::Encode(e.to_string()))
}

/// Encodes a value into `w`, returning the descriptors its handles carry (see
/// [`encode_with_fds`]).
pub(crate) fn encode_to_with_fds<W: std::io::Write + ?Sized, T: Serialize + ?Sized>(
    w: &mut W,
    value: &T,
) -> Result<Vec<OwnedFd>> {
    /// Puts the side table back as it was even if encoding panics.
    struct Restore(Option<Vec<OwnedFd>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            OUTGOING.with(|t| *t.borrow_mut() = previous);
        }
    }
    let mut restore = Restore(OUTGOING.with(|t| t.borrow_mut().replace(Vec::new())));
    let written = encode_to(w, value);
    let fds = OUTGOING
        .with(|t| std::mem::replace(&mut *t.borrow_mut(), restore.0.take()))
        .unwrap_or_default();
    written.map(|()| fds)
}

/// Decodes a value whose handles take their descriptors from `fds`.
pub fn decode_with_fds<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    let table = fds.into_iter().map(Some).collect();
    let previous = INCOMING.with(|t| t.borrow_mut().replace(table));
    let value = decode(bytes);
    INCOMING.with(|t| *t.borrow_mut() = previous);
    value
}

/// Decodes a sequence of `T` whose handles take their descriptors from `fds`, handing each
/// element to `each` as soon as it is decoded (before the next is read). A pool worker runs a
/// chunk of tasks this way: only one argument is alive at a time, so a chunk of large byte
/// strings reuses the memory the allocator freed for the one before, instead of faulting in
/// fresh pages for the whole chunk (see BENCHMARKS.md, `pool-bytes`). `each` runs with no
/// descriptor table installed, as after [`decode_with_fds`] returns.
pub(crate) fn decode_each_with_fds<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
    each: impl FnMut(T),
) -> Result<()> {
    use serde::de::{DeserializeSeed, SeqAccess, Visitor};
    use std::marker::PhantomData;

    /// Puts a descriptor table back as it was, even if a step panics.
    struct Swap(Option<Vec<Option<OwnedFd>>>);
    impl Swap {
        /// Installs `table`, keeping the one it replaces.
        fn install(table: Option<Vec<Option<OwnedFd>>>) -> Swap {
            Swap(INCOMING.with(|t| std::mem::replace(&mut *t.borrow_mut(), table)))
        }
    }
    impl Drop for Swap {
        fn drop(&mut self) {
            let previous = self.0.take();
            INCOMING.with(|t| *t.borrow_mut() = previous);
        }
    }

    struct Each<T, E>(E, PhantomData<T>);
    impl<'de, T: DeserializeOwned, E: FnMut(T)> Visitor<'de> for Each<T, E> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            while let Some(item) = seq.next_element::<T>()? {
                // `each` runs without our table (as after decoding); ours again for the next.
                let ours = INCOMING.with(|t| t.borrow_mut().take());
                (self.0)(item);
                INCOMING.with(|t| *t.borrow_mut() = ours);
            }
            Ok(())
        }
    }
    impl<'de, T: DeserializeOwned, E: FnMut(T)> DeserializeSeed<'de> for Each<T, E> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    let _outer = Swap::install(Some(fds.into_iter().map(Some).collect()));
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    Each(each, PhantomData)
        .deserialize(&mut de)
        .map_err(|e| Error::Decode(e.to_string()))
}

/// Whether the value being encoded now can carry descriptors (it is encoded with
/// [`encode_with_fds`], so a transport will move them): a zero-copy buffer then travels as its
/// descriptor, otherwise as its bytes.
pub(crate) fn sending_fds() -> bool {
    OUTGOING.with(|t| t.borrow().is_some())
}

/// Serializes a descriptor as its index in the outgoing side table. For `Serialize`
/// implementations of handle types.
pub(crate) fn serialize_fd<S: Serializer>(
    fd: BorrowedFd<'_>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    let index = OUTGOING.with(|t| {
        let mut table = t.borrow_mut();
        let table = table.as_mut().ok_or_else(|| {
            S::Error::custom(
                "a value holding an OS handle can only be sent as an argument to a process",
            )
        })?;
        let copy = fd
            .try_clone_to_owned()
            .map_err(|e| S::Error::custom(format!("could not duplicate a descriptor: {e}")))?;
        table.push(copy);
        Ok(table.len() - 1)
    })?;
    (index as u32).serialize(serializer)
}

/// Takes the descriptor a handle was serialized with. For `Deserialize` implementations of
/// handle types.
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<OwnedFd, D::Error> {
    use serde::de::Error as _;
    let index = u32::deserialize(deserializer)? as usize;
    INCOMING.with(|t| {
        t.borrow_mut()
            .as_mut()
            .and_then(|table| table.get_mut(index))
            .and_then(Option::take)
            .ok_or_else(|| D::Error::custom(format!("no descriptor was sent for handle {index}")))
    })
}

/// A descriptor as a serde value: serialized through the side table of [`encode_with_fds`].
pub(crate) struct FdOut<'a>(pub BorrowedFd<'a>);

impl Serialize for FdOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fd(self.0, s)
    }
}

/// A descriptor taken from the side table of [`decode_with_fds`].
pub(crate) struct FdIn(pub OwnedFd);

impl<'de> Deserialize<'de> for FdIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_fd(d).map(FdIn)
    }
}
