//! [`Dict`]: a hash map shared by processes, as Python's `Manager().dict()`, over the
//! [`Store`] engine: the index is a hash table (linear probing, at most 3/4 full counting
//! tombstones), keyed by the encoded key.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{hash_key, type_tag, Store, Txn, EMPTY, TOMBSTONE};
use crate::codec;
use crate::error::{Error, Result};
use crate::shm::Region;

/// A dictionary shared by processes, as Python's `Manager().dict()`, without a manager process:
/// the entries live in shared memory, every operation is a few atomic steps under a robust
/// lock, `len` is exact, and a process killed in the middle of an update leaves the dictionary
/// as it was before the update or as it is after it, never torn.
///
/// Keys are compared by their encoded form: two keys are the same key when they encode to the
/// same bytes, as is the case for integers, strings, tuples, structs and enums of them (and
/// lookups may use a borrowed form, e.g. `&str` for `String` keys). Iteration order is the
/// order of first insertion, as in Python. Pass a `Dict` to a child process or a pool task as
/// an argument; every clone and every received handle refers to the same dictionary.
///
/// ```
/// use multiprocess::Dict;
/// let d = Dict::<String, u64>::new()?;
/// d.insert("apples".to_string(), 3)?;
/// d.insert("pears".to_string(), 5)?;
/// assert_eq!(d.get("apples")?, Some(3));
/// assert_eq!(d.len(), 2);
/// // An atomic read-modify-write (Python's `d[k] += 1` is not atomic through a manager).
/// d.update("apples", |v| *v.get_or_insert(0) += 1)?;
/// assert_eq!(d.items()?, [("apples".to_string(), 4), ("pears".to_string(), 5)]);
/// assert_eq!(d.remove("pears")?, Some(5));
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub struct Dict<K, V> {
    store: Arc<Store>,
    _types: PhantomData<Types<K, V>>,
}

/// What a `Dict` takes and gives (for its variance and auto traits: it holds no `K` or `V`).
type Types<K, V> = fn(K, V) -> (K, V);

impl<K, V> Clone for Dict<K, V> {
    fn clone(&self) -> Self {
        Dict {
            store: Arc::clone(&self.store),
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for Dict<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dict")
            .field("len", &self.store.len())
            .finish()
    }
}

/// Where a key is, or where it would go.
struct Probe {
    /// The slot holding the key, and its record's offset.
    found: Option<(usize, u64)>,
    /// The first slot where the key could be inserted (a tombstone or the empty slot that
    /// ended the search), and whether it holds a tombstone.
    free: Option<(usize, bool)>,
}

/// The slot where probing for `hash` starts in an index of `cap` slots (a power of two).
fn home(hash: u64, cap: u64) -> usize {
    (hash & (cap - 1)) as usize
}

/// Looks `key` up in the index.
fn probe(txn: &Txn<'_>, key: &[u8], hash: u64) -> Result<Probe> {
    let index = txn.index()?;
    let cap = index.len() as u64;
    let mut free = None;
    let mut i = home(hash, cap);
    for _ in 0..cap {
        match index[i].load(Ordering::Relaxed) {
            EMPTY => {
                return Ok(Probe {
                    found: None,
                    free: free.or(Some((i, false))),
                })
            }
            TOMBSTONE => {
                free.get_or_insert((i, true));
            }
            off => {
                let r = txn.record(off)?;
                if r.hash == hash && r.key == key {
                    return Ok(Probe {
                        found: Some((i, off)),
                        free,
                    });
                }
            }
        }
        i = (i + 1) & (cap as usize - 1);
    }
    Ok(Probe { found: None, free })
}

/// Makes room for one more entry: rebuilds the table when it would pass 3/4 full (counting
/// tombstones) or when garbage outweighs the live records.
fn make_room(txn: &Txn<'_>) -> Result<()> {
    let (len, cap) = (txn.len(), txn.cap());
    if (len + txn.tombstones() + 1) * 4 <= cap * 3 && !txn.wants_compaction() {
        return Ok(());
    }
    rebuild(txn, (len + 1).saturating_mul(2).max(8).next_power_of_two())
}

/// Rebuilds with `cap` slots (more than the entries), keeping them in insertion order.
fn rebuild(txn: &Txn<'_>, cap: u64) -> Result<()> {
    let live = live_in_order(txn)?;
    txn.rebuild(
        cap,
        &live,
        &mut |index, _, hash, off| {
            let mut i = home(hash, cap);
            while index[i].load(Ordering::Relaxed) != EMPTY {
                i = (i + 1) & (cap as usize - 1);
            }
            index[i].store(off, Ordering::Relaxed);
        },
        &[],
    )
}

/// The offsets of the live records, in the order their keys were first inserted.
fn live_in_order(txn: &Txn<'_>) -> Result<Vec<u64>> {
    let mut live = Vec::with_capacity(txn.len() as usize);
    for slot in txn.index()? {
        let off = slot.load(Ordering::Relaxed);
        if off != EMPTY && off != TOMBSTONE {
            live.push((txn.record(off)?.seq, off));
        }
    }
    live.sort_unstable();
    Ok(live.into_iter().map(|(_, off)| off).collect())
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Dict<K, V> {
    /// A new, empty dictionary.
    pub fn new() -> Result<Self> {
        Ok(Dict {
            store: Arc::new(Store::create(type_tag::<Self>(), 8)?),
            _types: PhantomData,
        })
    }

    /// The exact number of entries.
    pub fn len(&self) -> usize {
        self.store.len() as usize
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `value` under the encoded `key` (appended, then published with one commit). With
    /// `old`, decodes the value it replaces.
    fn write(&self, txn: &Txn<'_>, key: &[u8], value: &[u8], old: bool) -> Result<Option<V>> {
        make_room(txn)?;
        let hash = hash_key(key);
        let p = probe(txn, key, hash)?;
        match p.found {
            Some((slot, prev)) => {
                let r = txn.record(prev)?;
                let before = if old {
                    Some(codec::decode(r.value)?)
                } else {
                    None
                };
                let at = txn.append_record(hash, r.seq, key, value)?;
                let index = txn.index()?;
                txn.commit(&[
                    (&index[slot], at),
                    (txn.garbage_word(), txn.garbage() + r.size),
                ]);
                Ok(before)
            }
            None => {
                let (slot, tomb) = p.free.ok_or_else(full)?;
                let seq = txn.next_seq_word().load(Ordering::Relaxed);
                let at = txn.append_record(hash, seq, key, value)?;
                let index = txn.index()?;
                txn.commit(&[
                    (&index[slot], at),
                    (txn.len_word(), txn.len() + 1),
                    (txn.tombstones_word(), txn.tombstones() - u64::from(tomb)),
                    (txn.next_seq_word(), seq + 1),
                ]);
                Ok(None)
            }
        }
    }

    /// Removes the entry of the encoded `key`, returning its record's value bytes decoded.
    fn delete(&self, txn: &Txn<'_>, key: &[u8]) -> Result<Option<V>> {
        let p = probe(txn, key, hash_key(key))?;
        let Some((slot, off)) = p.found else {
            return Ok(None);
        };
        let r = txn.record(off)?;
        let value = codec::decode(r.value);
        let index = txn.index()?;
        txn.commit(&[
            (&index[slot], TOMBSTONE),
            (txn.len_word(), txn.len() - 1),
            (txn.tombstones_word(), txn.tombstones() + 1),
            (txn.garbage_word(), txn.garbage() + r.size),
        ]);
        value.map(Some)
    }

    /// Sets `key` to `value`; returns the value it replaces, if any (as `HashMap::insert`).
    pub fn insert(&self, key: impl Borrow<K>, value: impl Borrow<V>) -> Result<Option<V>> {
        let (k, v) = (codec::encode(key.borrow())?, codec::encode(value.borrow())?);
        self.write(&self.store.lock()?, &k, &v, true)
    }

    /// Sets `key` to `value` (Python's `d[key] = value`), without decoding the value it
    /// replaces.
    pub fn set(&self, key: impl Borrow<K>, value: impl Borrow<V>) -> Result<()> {
        let (k, v) = (codec::encode(key.borrow())?, codec::encode(value.borrow())?);
        self.write(&self.store.lock()?, &k, &v, false).map(drop)
    }

    /// The value of `key`, if present (Python's `d.get(key)`).
    pub fn get<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        let k = codec::encode(key)?;
        let txn = self.store.lock()?;
        match probe(&txn, &k, hash_key(&k))?.found {
            Some((_, off)) => codec::decode(txn.record(off)?.value).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `key` is present (Python's `key in d`).
    pub fn contains_key<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
    {
        let k = codec::encode(key)?;
        let txn = self.store.lock()?;
        Ok(probe(&txn, &k, hash_key(&k))?.found.is_some())
    }

    /// Removes `key`; returns its value, if it was present (Python's `d.pop(key, None)`).
    pub fn remove<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        let k = codec::encode(key)?;
        self.delete(&self.store.lock()?, &k)
    }

    /// Reads, changes and writes back the entry of `key` as one atomic step: `f` gets the value
    /// (`None` when absent) and may change it, set it, or take it (then the key is removed).
    /// Returns what `f` returns.
    ///
    /// `f` runs while the dictionary is locked: it must not use this dictionary (it would wait
    /// for itself). If `f` panics, nothing changes.
    ///
    /// ```
    /// let hits = multiprocess::Dict::<String, u32>::new()?;
    /// for _ in 0..3 {
    ///     hits.update("/index.html", |n| *n.get_or_insert(0) += 1)?;
    /// }
    /// assert_eq!(hits.get("/index.html")?, Some(3));
    /// hits.update("/index.html", |n| n.take())?; // removes it
    /// assert!(hits.is_empty());
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn update<Q: Serialize + ?Sized, R>(
        &self,
        key: &Q,
        f: impl FnOnce(&mut Option<V>) -> R,
    ) -> Result<R>
    where
        K: Borrow<Q>,
    {
        let k = codec::encode(key)?;
        let txn = self.store.lock()?;
        let (mut value, before) = match probe(&txn, &k, hash_key(&k))?.found {
            Some((_, off)) => {
                let bytes = txn.record(off)?.value;
                (Some(codec::decode::<V>(bytes)?), Some(bytes))
            }
            None => (None, None),
        };
        let out = f(&mut value);
        match (value, before) {
            (Some(v), before) => {
                let v = codec::encode(&v)?;
                if before != Some(&v[..]) {
                    self.write(&txn, &k, &v, false)?;
                }
            }
            (None, Some(_)) => {
                self.delete(&txn, &k)?;
            }
            (None, None) => {}
        }
        Ok(out)
    }

    /// The value of `key`; if absent, first inserts `default` (Python's `d.setdefault`).
    pub fn setdefault(&self, key: impl Borrow<K>, default: V) -> Result<V> {
        let k = codec::encode(key.borrow())?;
        let txn = self.store.lock()?;
        if let Some((_, off)) = probe(&txn, &k, hash_key(&k))?.found {
            return codec::decode(txn.record(off)?.value);
        }
        self.write(&txn, &k, &codec::encode(&default)?, false)?;
        Ok(default)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        let txn = self.store.lock()?;
        txn.rebuild(8, &[], &mut |_, _, _, _| {}, &[(txn.len_word(), 0)])
    }

    /// Calls `f` on each entry's encoded key and value, in insertion order, under one lock.
    fn each(&self, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        let txn = self.store.lock()?;
        for off in live_in_order(&txn)? {
            let r = txn.record(off)?;
            f(r.key, r.value)?;
        }
        Ok(())
    }

    /// The keys, in insertion order (a snapshot).
    pub fn keys(&self) -> Result<Vec<K>> {
        let mut out = Vec::with_capacity(self.len());
        self.each(|k, _| {
            out.push(codec::decode(k)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The values, in insertion order (a snapshot).
    pub fn values(&self) -> Result<Vec<V>> {
        let mut out = Vec::with_capacity(self.len());
        self.each(|_, v| {
            out.push(codec::decode(v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The entries, in insertion order (a snapshot; Python's `d.items()`, or `d.copy()`).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        let mut out = Vec::with_capacity(self.len());
        self.each(|k, v| {
            out.push((codec::decode(k)?, codec::decode(v)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// Inserts every entry of `entries` (Python's `d.update(...)`), each as its own step.
    pub fn extend<I: IntoIterator<Item = (K, V)>>(&self, entries: I) -> Result<()> {
        for (k, v) in entries {
            self.set(k, v)?;
        }
        Ok(())
    }
}

fn full() -> Error {
    Error::Decode("a shared dictionary's table is full (its memory is corrupt)".into())
}

/// How a dictionary travels to another process: its shared memory.
impl<K, V> Serialize for Dict<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.store.region().serialize(s)
    }
}

impl<'de, K, V> Deserialize<'de> for Dict<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize(d)?;
        let store = Store::from_region(region, type_tag::<Dict<K, V>>(), "Dict")
            .map_err(serde::de::Error::custom)?;
        Ok(Dict {
            store: Arc::new(store),
            _types: PhantomData,
        })
    }
}
