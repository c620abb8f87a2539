//! Under `-L`: which source files some name has already claimed, shared by every process of
//! a copy, so that a file reached by several names (the file and links to it, followed) is
//! copied once. The first name to reach a file copies it; a later one is not copied but
//! becomes a hard link of that copy once everything is copied, as `cp -aL` links them
//! (everything `-L` decides is in `dereference.rs`).
//!
//! The table is a fixed number of slots in shared memory ([`multiprocess::Array`]), probed
//! from a hash of the device and inode under the array's lock. It only saves work: when a
//! file's slots are all taken by others, [`Claim::Unknown`] says to copy the file anyway,
//! and the linking after the copy still makes that copy a link.

use multiprocess::Array;
use serde::{Deserialize, Serialize};

use super::meta::{Kind, Meta};

/// Slots of a table: 4 MiB of shared memory, of which only the pages touched are used.
pub const SLOTS: usize = 1 << 18;

/// How many slots a look-up tries, from the file's own, before it gives up.
const PROBES: usize = 32;

/// What [`Claims::claim`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The file is this name's to copy: no name reached it before.
    First,
    /// Another name reached the file first: link to its copy, do not copy.
    Taken,
    /// The table could not say (its slots near the file are taken, or it failed): copy.
    Unknown,
}

/// The shared table of claimed files (device, inode); a handle travels to the workers as an
/// argument of their initializer.
///
/// ```ignore
/// let claims = Claims::new(1024)?;
/// assert_eq!(claims.claim(1, 42), Claim::First);
/// assert_eq!(claims.claim(1, 42), Claim::Taken);
/// assert_eq!(claims.claim(2, 42), Claim::First);
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Each slot `[device + 1, inode]`; `[0, _]` is free.
    slots: Array<[u64; 2]>,
}

impl Claims {
    /// A table of `slots` free slots.
    pub fn new(slots: usize) -> multiprocess::Result<Claims> {
        Ok(Claims {
            slots: Array::zeroed(slots.max(1))?,
        })
    }

    /// Claims the file `meta` describes for the caller's name, if it is one that names may
    /// share under `-L`: a regular file of one link (files of several links are kept
    /// together by their groups). `None` for any other file.
    pub fn claim_file(&self, meta: &Meta) -> Option<Claim> {
        let shared = meta.kind == Kind::File && !meta.is_multiply_linked();
        shared.then(|| self.claim(meta.dev, meta.ino))
    }

    /// Claims the file `(dev, ino)` for the caller's name, unless another name has.
    pub fn claim(&self, dev: u64, ino: u64) -> Claim {
        let key = [dev.wrapping_add(1), ino];
        if key[0] == 0 {
            return Claim::Unknown;
        }
        let Ok(_guard) = self.slots.get_lock().lock() else {
            return Claim::Unknown;
        };
        let len = self.slots.len();
        let start = slot_of(dev, ino, len);
        for i in (0..PROBES.min(len)).map(|k| (start + k) % len) {
            match self.slots.get(i) {
                Ok(slot) if slot == key => return Claim::Taken,
                Ok([0, _]) => {
                    return match self.slots.set(i, key) {
                        Ok(()) => Claim::First,
                        Err(_) => Claim::Unknown,
                    }
                }
                Ok(_) => continue,
                Err(_) => return Claim::Unknown,
            }
        }
        Claim::Unknown
    }
}

/// The slot a file's probing starts at: its inode and device mixed (Fibonacci hashing), so
/// that the consecutive inodes of one directory spread over the table.
fn slot_of(dev: u64, ino: u64, len: usize) -> usize {
    let mixed = (ino ^ dev.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((mixed >> 32) as usize) % len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_name_of_a_file_claims_it_and_later_ones_find_it_taken() {
        let claims = Claims::new(64).unwrap();
        assert_eq!(claims.claim(1, 42), Claim::First);
        assert_eq!(claims.claim(1, 42), Claim::Taken);
        assert_eq!(claims.claim(2, 42), Claim::First, "another device");
        assert_eq!(claims.claim(1, 43), Claim::First, "another inode");
        assert_eq!(claims.claim(0, 42), Claim::First, "device 0 is a device");
        assert_eq!(claims.claim(0, 42), Claim::Taken);
    }

    #[test]
    fn a_full_table_says_unknown_and_never_taken() {
        let claims = Claims::new(4).unwrap();
        for ino in 0..4 {
            assert_eq!(claims.claim(7, ino), Claim::First);
        }
        assert_eq!(claims.claim(7, 99), Claim::Unknown);
        assert_eq!(claims.claim(7, 99), Claim::Unknown, "still not claimed");
        assert_eq!(claims.claim(7, 3), Claim::Taken);
        assert_eq!(claims.claim(u64::MAX, 1), Claim::Unknown);
    }

    /// What a child process finds: the claim made before it started, and a new one.
    fn claim_in_child(claims: Claims) -> (bool, bool) {
        (
            claims.claim(3, 1000) == Claim::Taken,
            claims.claim(3, 1001) == Claim::First,
        )
    }

    #[test]
    fn claims_are_shared_with_a_child_process() {
        let claims = Claims::new(SLOTS).unwrap();
        assert_eq!(claims.claim(3, 1000), Claim::First);
        let mut child = multiprocess::spawn(claim_in_child, (claims.clone(),)).unwrap();
        let found = child.join_timeout(std::time::Duration::from_secs(30));
        assert_eq!(found.unwrap(), (true, true));
        assert_eq!(claims.claim(3, 1001), Claim::Taken);
    }
}
