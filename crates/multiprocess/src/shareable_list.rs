//! [`ShareableList`]: a fixed-length list of plain values in a [`SharedMemory`] block, as
//! Python's `multiprocessing.shared_memory.ShareableList`.
//!
//! ## Layout
//!
//! The block starts with a header of five words: a magic word marking a list, the number of
//! items, the size and the alignment of one item, and a tag the creator chose (0 unless it
//! chose one). The items follow, from the first offset past the header aligned for the item
//! type. The creator writes the items and then the magic word (last, with release ordering),
//! so a process that opens the block by name sees either a whole list or an error.
//!
//! The item type is known by its layout (size and alignment), not by its name: a name
//! (`std::any::type_name`) is not stable between compilers and includes the module path, so
//! two programs defining the same `#[repr(C)]` struct could not open each other's lists. A
//! list opened with an item type of another layout, or with another tag, is an error instead
//! of garbage; types of the same layout tell themselves apart by a tag.
//!
//! Names and their removal are the block's: see [`SharedMemory`].

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::shared::Plain;
use crate::shared_memory::SharedMemory;

/// Marks a block that holds a list, and the header's layout version.
const MAGIC: u64 = u64::from_le_bytes(*b"mplist02");

/// Words in the header: magic, length, item size, item alignment, tag.
const HEADER_WORDS: usize = 5;
const HEADER: usize = HEADER_WORDS * 8;

/// The largest alignment an item may ask for: the block starts on a page, so items aligned
/// beyond it could not be placed at their alignment in every process.
const MAX_ALIGN: usize = 4096;

/// A fixed-length list of plain values in shared memory that any process can open by name, as
/// Python's `ShareableList`. Items are [`Plain`] values (numbers, `bool`, arrays of them such as
/// `[u8; 32]` for a fixed-capacity byte string, or your own `Plain` types).
///
/// Each [`get`](Self::get) and [`set`](Self::set) copies one item; an item another process
/// writes at the same moment may come out as a mix of old and new (as in Python): pair the
/// list with a [`Lock`](crate::Lock) when processes write while others read. The handle that
/// created the list owns its name, as with [`SharedMemory`]: dropping it, or a normal exit of
/// its process, removes the name; processes that have the list open keep it.
///
/// ```
/// use multiprocess::ShareableList;
///
/// let list = ShareableList::new([1.5f64, 2.5, 3.5])?;
/// // Another process opens it by name (here the same one).
/// let other = ShareableList::<f64>::open(list.name())?;
/// other.set(1, 20.0)?;
/// assert_eq!(list.get(1)?, 20.0);
/// assert_eq!(list.iter().collect::<Vec<_>>(), [1.5, 20.0, 3.5]);
/// assert_eq!(list.len(), 3);
///
/// // Fixed-capacity byte strings: arrays of bytes.
/// let names = ShareableList::new([*b"alice\0\0\0", *b"bob\0\0\0\0\0"])?;
/// assert_eq!(&names.get(1)?[..3], b"bob");
///
/// // Opening it with an item type of another size or alignment is an error, not a misreading.
/// assert!(ShareableList::<u32>::open(list.name()).is_err());
/// # Ok::<(), multiprocess::Error>(())
/// ```
///
/// The item type is checked by its layout, so another program with its own copy of a
/// `#[repr(C)]` struct opens the list; types of the same layout (`u64` and `f64`, say) are
/// told apart by a tag chosen at creation (see [`new_named_tagged`](Self::new_named_tagged)).
pub struct ShareableList<T: Plain> {
    block: SharedMemory,
    len: usize,
    _items: PhantomData<T>,
}

impl<T: Plain> ShareableList<T> {
    /// A list holding `items`, in a block under a fresh random name, as Python's
    /// `ShareableList(sequence)`. This handle owns the name.
    pub fn new(items: impl IntoIterator<Item = T>) -> Result<Self> {
        Self::new_tagged(0, items)
    }

    /// As [`new`](Self::new), with a `tag` that those who [`open_tagged`](Self::open_tagged)
    /// the list must give too.
    pub fn new_tagged(tag: u64, items: impl IntoIterator<Item = T>) -> Result<Self> {
        let items: Vec<T> = items.into_iter().collect();
        let block = SharedMemory::create(block_size::<T>(items.len())?)?;
        Ok(Self::fill(block, &items, tag))
    }

    /// A list holding `items`, in a block named `name` (see
    /// [`SharedMemory::create_named`]: fails if the name is taken). This handle owns the name.
    ///
    /// ```
    /// let name = format!("doc-list-{}", std::process::id());
    /// let list = multiprocess::ShareableList::new_named(&name, [0u64; 8])?;
    /// assert_eq!(list.name(), name);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn new_named(name: &str, items: impl IntoIterator<Item = T>) -> Result<Self> {
        Self::new_named_tagged(name, 0, items)
    }

    /// As [`new_named`](Self::new_named), with a `tag` that those who
    /// [`open_tagged`](Self::open_tagged) the list must give too: for item types that share a
    /// layout, or a version of the data, say.
    ///
    /// ```
    /// use multiprocess::ShareableList;
    ///
    /// const CELSIUS: u64 = u64::from_le_bytes(*b"celsius\0");
    /// let name = format!("doc-tagged-{}", std::process::id());
    /// let list = ShareableList::new_named_tagged(&name, CELSIUS, [21.5f64, 19.0])?;
    /// assert_eq!(ShareableList::<f64>::open_tagged(&name, CELSIUS)?.get(1)?, 19.0);
    /// assert!(ShareableList::<f64>::open(&name).is_err()); // no tag: not the same list
    /// assert!(ShareableList::<u64>::open_tagged(&name, 0).is_err());
    /// # drop(list);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn new_named_tagged(
        name: &str,
        tag: u64,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Self> {
        let items: Vec<T> = items.into_iter().collect();
        let block = SharedMemory::create_named(name, block_size::<T>(items.len())?)?;
        Ok(Self::fill(block, &items, tag))
    }

    /// Opens the list named `name`, made by any process, as Python's
    /// `ShareableList(name=name)`. Fails if the block holds no list, a list of items of
    /// another size or alignment, or one made with a tag.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_tagged(name, 0)
    }

    /// As [`open`](Self::open), for a list made with `tag`
    /// ([`new_named_tagged`](Self::new_named_tagged)): fails if it was made with another.
    pub fn open_tagged(name: &str, tag: u64) -> Result<Self> {
        Self::attach(SharedMemory::open(name)?, Some(tag))
    }

    /// Writes the items, then the header (the magic word last).
    fn fill(block: SharedMemory, items: &[T], tag: u64) -> Self {
        let list = Self {
            block,
            len: items.len(),
            _items: PhantomData,
        };
        for (i, item) in items.iter().enumerate() {
            // SAFETY: i < len, whose items the block was sized for.
            unsafe { list.slot(i).write_volatile(item.to_bits()) };
        }
        let header = list.header();
        header[1].store(items.len() as u64, Ordering::Relaxed);
        header[2].store(item_size::<T>() as u64, Ordering::Relaxed);
        header[3].store(item_align::<T>() as u64, Ordering::Relaxed);
        header[4].store(tag, Ordering::Relaxed);
        header[0].store(MAGIC, Ordering::Release);
        list
    }

    /// Checks the header of an opened block and makes it a list: its items' layout, and its
    /// tag if one is expected.
    fn attach(block: SharedMemory, tag: Option<u64>) -> Result<Self> {
        check_align::<T>()?;
        let name = block.name().to_string();
        let invalid = |why: &str| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("shared memory block {name:?}: {why}"),
            ))
        };
        if block.size() < HEADER {
            return Err(invalid("too small to hold a list"));
        }
        let list = Self {
            len: 0,
            block,
            _items: PhantomData,
        };
        let header = list.header();
        if header[0].load(Ordering::Acquire) != MAGIC {
            return Err(invalid("holds no list (or not yet)"));
        }
        let (len, size, align, found) = (
            header[1].load(Ordering::Relaxed),
            header[2].load(Ordering::Relaxed),
            header[3].load(Ordering::Relaxed),
            header[4].load(Ordering::Relaxed),
        );
        if (size, align) != (item_size::<T>() as u64, item_align::<T>() as u64) {
            return Err(invalid(&format!(
                "holds a list of items of {size} bytes aligned to {align}, not {} ({} bytes \
                 aligned to {})",
                std::any::type_name::<T>(),
                item_size::<T>(),
                item_align::<T>()
            )));
        }
        if tag.is_some_and(|tag| tag != found) {
            return Err(invalid(&format!("holds a list tagged {found:#x}")));
        }
        let len = usize::try_from(len).map_err(|_| invalid("a list too long"))?;
        if block_size::<T>(len).map_or(true, |need| need > list.block.size()) {
            return Err(invalid("its list does not fit in it"));
        }
        Ok(Self { len, ..list })
    }

    /// The header's words.
    fn header(&self) -> &[AtomicU64; HEADER_WORDS] {
        // SAFETY: the block holds at least HEADER bytes from a page-aligned start (checked at
        // attach, sized so at creation); atomics may alias memory other processes access.
        unsafe { &*self.block.as_ptr().cast::<[AtomicU64; HEADER_WORDS]>() }
    }

    /// Where item `i` lives.
    ///
    /// # Safety
    /// `i < self.len`.
    unsafe fn slot(&self, i: usize) -> *mut T::Bits {
        // SAFETY: the block holds `len` items from `data_offset`, aligned (page-aligned base,
        // aligned offset, items of their own size), per the caller's `i < len`.
        unsafe {
            self.block
                .as_ptr()
                .add(data_offset::<T>() + i * item_size::<T>())
                .cast::<T::Bits>()
        }
    }

    fn check(&self, index: usize) -> Result<()> {
        if index >= self.len {
            return Err(Error::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        Ok(())
    }

    /// The block's name, for other processes to [`open`](Self::open).
    pub fn name(&self) -> &str {
        self.block.name()
    }

    /// The tag the list was made with (0 if none).
    pub fn tag(&self) -> u64 {
        self.header()[4].load(Ordering::Relaxed)
    }

    /// How many items it holds (fixed at creation).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Item `index` (a copy).
    pub fn get(&self, index: usize) -> Result<T> {
        self.check(index)?;
        // SAFETY: index < len (checked); every bit pattern of T::Bits is valid.
        Ok(T::from_bits(unsafe { self.slot(index).read_volatile() }))
    }

    /// Sets item `index`.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.check(index)?;
        // SAFETY: index < len (checked); shared memory is written by value.
        unsafe { self.slot(index).write_volatile(value.to_bits()) };
        Ok(())
    }

    /// The items in order, each read when the iterator reaches it.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        // SAFETY: i < len.
        (0..self.len).map(|i| T::from_bits(unsafe { self.slot(i).read_volatile() }))
    }

    /// A copy of every item.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }

    /// The block under the list (Python's `.shm`): to [`unlink`](SharedMemory::unlink) or
    /// [`persist`](SharedMemory::persist) it, say.
    pub fn shm(&self) -> &SharedMemory {
        &self.block
    }
}

impl<T: Plain + std::fmt::Debug> std::fmt::Debug for ShareableList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.name())
            .field("items", &self.to_vec())
            .finish()
    }
}

/// A list travels as its block (by descriptor where the transport moves descriptors, else by
/// name); the receiver's handle never owns the name. The receiver checks the items' layout; the
/// tag travels with the block (the list's sender had it).
impl<T: Plain> Serialize for ShareableList<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.block.serialize(s)
    }
}

impl<'de, T: Plain> Deserialize<'de> for ShareableList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::attach(SharedMemory::deserialize(d)?, None).map_err(serde::de::Error::custom)
    }
}

fn item_size<T: Plain>() -> usize {
    std::mem::size_of::<T::Bits>()
}

fn item_align<T: Plain>() -> usize {
    std::mem::align_of::<T::Bits>()
}

/// Refuses item types aligned beyond a page (the block's start): they would be misaligned.
fn check_align<T: Plain>() -> Result<()> {
    if item_align::<T>() > MAX_ALIGN {
        return Err(Error::InvalidArgument(format!(
            "items of {} are aligned to {} bytes; a shared list holds items aligned to at most \
             {MAX_ALIGN}",
            std::any::type_name::<T>(),
            item_align::<T>()
        )));
    }
    Ok(())
}

/// The offset of the first item: past the header, aligned for the items.
fn data_offset<T: Plain>() -> usize {
    HEADER.next_multiple_of(item_align::<T>())
}

/// The bytes a list of `len` items needs.
fn block_size<T: Plain>(len: usize) -> Result<usize> {
    check_align::<T>()?;
    len.checked_mul(item_size::<T>())
        .and_then(|items| items.checked_add(data_offset::<T>()))
        .ok_or_else(|| Error::InvalidArgument(format!("a list of {len} items is too large")))
}
