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

impl<S: ShmState> ShmCell<S> {
    /// A fresh, zeroed state, with room for `extra` more bytes after it.
    pub(crate) fn create(name: &str, extra: usize) -> Result<Self> {
        let len = (std::mem::size_of::<S>() + extra).max(1);
        let region = Region::create(name, len as u64, len.next_multiple_of(4096))?;
        Ok(ShmCell {
            region,
            _state: PhantomData,
        })
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

    /// How many bytes follow the state.
    pub(crate) fn extra_len(&self) -> usize {
        self.region.reserve() - std::mem::size_of::<S>()
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
        if region.reserve() < std::mem::size_of::<S>() {
            return Err(serde::de::Error::custom("shared state too small"));
        }
        Ok(ShmCell {
            region,
            _state: PhantomData,
        })
    }
}
