//! [`List`]: a list shared by processes, as Python's `Manager().list()`, over the [`Store`]
//! engine: the index holds the items' record offsets in order, with room to grow (a fuller
//! list gets a new index of twice the room, written beside the old one and switched to in one
//! commit; inserting or removing in the middle writes a new index the same way).

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{type_tag, Store, Txn};
use crate::codec;
use crate::error::{Error, Result};
use crate::shm::Region;

/// A list shared by processes, as Python's `Manager().list()`, without a manager process:
/// items live in shared memory, `len` is exact, and a process killed in the middle of an update
/// leaves the list as it was before the update or as it is after it, never torn. Pass it to a
/// child process or a pool task as an argument, e.g. for workers to gather results.
///
/// ```
/// let results = multiprocess::List::<String>::new()?;
/// results.push("first".to_string())?;
/// results.extend(["second".to_string(), "third".to_string()])?;
/// assert_eq!(results.len(), 3);
/// assert_eq!(results.get(1)?, "second");
/// results.set(1, "2nd".to_string())?;
/// results.insert(0, "zeroth".to_string())?;
/// assert_eq!(results.remove(2)?, "2nd");
/// assert_eq!(results.pop()?, Some("third".to_string()));
/// assert_eq!(results.to_vec()?, ["zeroth", "first"]);
/// assert!(matches!(results.get(5), Err(multiprocess::Error::IndexOutOfRange { index: 5, len: 2 })));
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub struct List<T> {
    store: Arc<Store>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        List {
            store: Arc::clone(&self.store),
            _items: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for List<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("List")
            .field("len", &self.store.len())
            .finish()
    }
}

fn out_of_range(index: usize, len: u64) -> Error {
    Error::IndexOutOfRange {
        index,
        len: len as usize,
    }
}

/// Compacts the heap when garbage outweighs the items (keeping the index's room).
fn compact_if_needed(txn: &Txn<'_>) -> Result<()> {
    if !txn.wants_compaction() {
        return Ok(());
    }
    let live: Vec<u64> = txn
        .items()?
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect();
    txn.rebuild(
        txn.cap(),
        &live,
        &mut |index, i, _, off| index[i].store(off, Ordering::Relaxed),
        &[],
    )
}

/// Writes a new index of `cap` slots whose slot `i` holds `slot(i)` for `i < len`, and returns
/// the commit writes that switch to it (the old index becomes garbage).
fn new_index<'a>(
    txn: &Txn<'a>,
    cap: u64,
    slot: impl Fn(u64) -> u64,
) -> Result<[(&'a std::sync::atomic::AtomicU64, u64); 3]> {
    let off = txn.append_index(cap, slot)?;
    let (off_word, cap_word) = txn.index_words();
    Ok([
        (off_word, off),
        (cap_word, cap),
        (txn.garbage_word(), txn.garbage() + txn.cap() * 8),
    ])
}

/// Removes item `index` (one commit: a new index without it, or for the last item only `len`).
fn remove_locked<T: DeserializeOwned>(txn: &Txn<'_>, index: usize) -> Result<T> {
    let len = txn.len();
    if index as u64 >= len {
        return Err(out_of_range(index, len));
    }
    let old = txn.items()?;
    let r = txn.record(old[index].load(Ordering::Relaxed))?;
    let item = codec::decode(r.value);
    let i0 = index as u64;
    let mut writes = if i0 + 1 == len {
        vec![(txn.garbage_word(), txn.garbage() + r.size)]
    } else {
        let mut w = new_index(txn, txn.cap(), |i| {
            if i < i0 {
                old[i as usize].load(Ordering::Relaxed)
            } else if i + 1 < len {
                old[i as usize + 1].load(Ordering::Relaxed)
            } else {
                0
            }
        })?;
        w[2].1 += r.size; // the garbage word
        w.to_vec()
    };
    writes.push((txn.len_word(), len - 1));
    txn.commit(&writes);
    item
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// A new, empty list.
    pub fn new() -> Result<Self> {
        Ok(List {
            store: Arc::new(Store::create(type_tag::<Self>(), 8)?),
            _items: PhantomData,
        })
    }

    /// The exact number of items.
    pub fn len(&self) -> usize {
        self.store.len() as usize
    }

    /// Whether it holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends an item (Python's `append`).
    pub fn push(&self, item: impl Borrow<T>) -> Result<()> {
        let bytes = codec::encode(item.borrow())?;
        let txn = self.store.lock()?;
        compact_if_needed(&txn)?;
        let len = txn.len();
        let at = txn.append_record(0, 0, &[], &bytes)?;
        if len < txn.cap() {
            // The slot past the end is referenced by nothing until `len` moves.
            txn.index()?[len as usize].store(at, Ordering::Relaxed);
            txn.commit(&[(txn.len_word(), len + 1)]);
        } else {
            let old = txn.index()?;
            let grow = new_index(&txn, (len + 1).next_power_of_two().max(8), |i| {
                if i < len {
                    old[i as usize].load(Ordering::Relaxed)
                } else {
                    at
                }
            })?;
            let mut writes = grow.to_vec();
            writes.push((txn.len_word(), len + 1));
            txn.commit(&writes);
        }
        Ok(())
    }

    /// Appends every item (Python's `extend`), each as its own step.
    pub fn extend<I: IntoIterator>(&self, items: I) -> Result<()>
    where
        I::Item: Borrow<T>,
    {
        for item in items {
            self.push(item)?;
        }
        Ok(())
    }

    /// Item `index` (Python's `l[index]`); [`Error::IndexOutOfRange`] past the end.
    pub fn get(&self, index: usize) -> Result<T> {
        let txn = self.store.lock()?;
        let len = txn.len();
        if index as u64 >= len {
            return Err(out_of_range(index, len));
        }
        let off = txn.items()?[index].load(Ordering::Relaxed);
        codec::decode(txn.record(off)?.value)
    }

    /// Replaces item `index` (Python's `l[index] = item`).
    pub fn set(&self, index: usize, item: impl Borrow<T>) -> Result<()> {
        let bytes = codec::encode(item.borrow())?;
        let txn = self.store.lock()?;
        compact_if_needed(&txn)?;
        let len = txn.len();
        if index as u64 >= len {
            return Err(out_of_range(index, len));
        }
        let slot = &txn.items()?[index];
        let old = txn.record(slot.load(Ordering::Relaxed))?.size;
        let at = txn.append_record(0, 0, &[], &bytes)?;
        txn.commit(&[(slot, at), (txn.garbage_word(), txn.garbage() + old)]);
        Ok(())
    }

    /// Inserts an item before position `index` (at the end when `index == len`), as Python's
    /// `insert` (which clamps a larger index; this is an error instead).
    pub fn insert(&self, index: usize, item: impl Borrow<T>) -> Result<()> {
        let bytes = codec::encode(item.borrow())?;
        let txn = self.store.lock()?;
        compact_if_needed(&txn)?;
        let len = txn.len();
        if index as u64 > len {
            return Err(out_of_range(index, len));
        }
        let at = txn.append_record(0, 0, &[], &bytes)?;
        let old = txn.items()?;
        let i0 = index as u64;
        let cap = txn.cap().max((len + 1).next_power_of_two());
        let switch = new_index(&txn, cap, |i| match i.cmp(&i0) {
            std::cmp::Ordering::Less => old[i as usize].load(Ordering::Relaxed),
            std::cmp::Ordering::Equal => at,
            std::cmp::Ordering::Greater if i <= len => old[i as usize - 1].load(Ordering::Relaxed),
            std::cmp::Ordering::Greater => 0,
        })?;
        let mut writes = switch.to_vec();
        writes.push((txn.len_word(), len + 1));
        txn.commit(&writes);
        Ok(())
    }

    /// Removes item `index` and returns it (Python's `l.pop(index)`).
    pub fn remove(&self, index: usize) -> Result<T> {
        let txn = self.store.lock()?;
        remove_locked(&txn, index)
    }

    /// Removes the last item and returns it, or `None` when empty (Python's `pop()`).
    pub fn pop(&self) -> Result<Option<T>> {
        let txn = self.store.lock()?;
        match txn.len() {
            0 => Ok(None),
            n => remove_locked(&txn, n as usize - 1).map(Some),
        }
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        let txn = self.store.lock()?;
        txn.rebuild(8, &[], &mut |_, _, _, _| {}, &[(txn.len_word(), 0)])
    }

    /// All items, in order (a snapshot; Python's `l[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let txn = self.store.lock()?;
        txn.items()?
            .iter()
            .map(|s| codec::decode(txn.record(s.load(Ordering::Relaxed))?.value))
            .collect()
    }
}

/// How a list travels to another process: its shared memory.
impl<T> Serialize for List<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.store.region().serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize(d)?;
        let store = Store::from_region(region, type_tag::<List<T>>(), "List")
            .map_err(serde::de::Error::custom)?;
        Ok(List {
            store: Arc::new(store),
            _items: PhantomData,
        })
    }
}
