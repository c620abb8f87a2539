//! [`ShmCell`]: one fixed-size state struct alone in a small shared-memory region, the home of
//! each synchronisation primitive.

use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Region;
use crate::error::Result;

/// State that may live in a [`ShmCell`].
///
/// # Safety
/// All-zero bytes must be a valid value, and every field must be safe to access from many
/// processes at once (atomics, or plain data guarded by a lock kept in the state).
pub(crate) unsafe trait ShmState: Sized + 'static {}

/// A `S` in its own shared-memory region, zero-initialised.
pub(crate) struct ShmCell<S: ShmState> {
    region: Region,
    _state: PhantomData<S>,
}

/// Bytes at the end of a cell's region that hold its type tag.
const TAG_LEN: usize = 8;

/// A tag naming the state type `S` (its name and size), so that a handle received as the wrong
/// primitive is refused instead of misread.
fn type_tag<S>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<S>().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h ^ std::mem::size_of::<S>() as u64
}

impl<S: ShmState> ShmCell<S> {
    /// A fresh, zeroed state, with room for `extra` more bytes after it.
    pub(crate) fn create(name: &str, extra: usize) -> Result<Self> {
        // The file fills the whole mapping (whole pages), so no byte of it can fault, and the
        // type tag sits in its last 8 bytes.
        let len = (std::mem::size_of::<S>() + extra + TAG_LEN).next_multiple_of(4096);
        let region = Region::create(name, len as u64, len)?;
        let cell = ShmCell {
            region,
            _state: PhantomData,
        };
        // SAFETY: the tag's 8 bytes lie at the end of the region, after the state and the extra
        // bytes, and nothing else uses them; the region is not shared yet.
        unsafe {
            let at = cell.region.base().add(len - TAG_LEN);
            std::ptr::write_unaligned(at.cast::<u64>(), type_tag::<S>());
        }
        Ok(cell)
    }

    /// The state.
    pub(crate) fn get(&self) -> &S {
        // SAFETY: the region is at least size_of::<S>() bytes, page-aligned, zero-initialised
        // (a valid S by the ShmState contract), and mapped as long as self lives.
        unsafe { &*self.region.base().cast::<S>() }
    }

    /// The bytes after the state (`extra` of them, as given to `create`).
    pub(crate) fn extra_ptr(&self) -> *mut u8 {
        // SAFETY: the region holds size_of::<S>() + extra bytes.
        unsafe { self.region.base().add(std::mem::size_of::<S>()) }
    }

    /// How many bytes follow the state (before the type tag).
    pub(crate) fn extra_len(&self) -> usize {
        self.region.reserve() - std::mem::size_of::<S>() - TAG_LEN
    }
}

impl<S: ShmState> Serialize for ShmCell<S> {
    fn serialize<Z: Serializer>(&self, s: Z) -> std::result::Result<Z::Ok, Z::Error> {
        self.region.serialize(s)
    }
}

impl<'de, S: ShmState> Deserialize<'de> for ShmCell<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize(d)?;
        let len = region.reserve();
        let whole = region.file_len().ok() == Some(len as u64);
        if !whole || len < std::mem::size_of::<S>() + TAG_LEN {
            return Err(serde::de::Error::custom(
                "the shared state received is malformed",
            ));
        }
        // SAFETY: the file covers the whole mapping (checked above), so its last 8 bytes exist.
        let tag =
            unsafe { std::ptr::read_unaligned(region.base().add(len - TAG_LEN).cast::<u64>()) };
        if tag != type_tag::<S>() {
            return Err(serde::de::Error::custom(format!(
                "the shared state received is not a {}",
                std::any::type_name::<S>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("handle of this type")
            )));
        }
        Ok(ShmCell {
            region,
            _state: PhantomData,
        })
    }
}
