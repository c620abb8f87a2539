//! Plain data in shared memory: [`Value`], [`Array`] (each with an [`RLock`]) and their
//! lock-free, racy counterparts [`RawValue`], [`RawArray`], as Python's `multiprocessing.Value`,
//! `Array`, `RawValue`, `RawArray`.
//!
//! The data lives after a small header (length, element size, a tag of the element type) in a
//! region of its own; a handle travels to a child as an argument, and a handle received as the
//! wrong type (another element type or length) is refused when it is decoded. Elements are read
//! and written whole with volatile accesses of their stored form ([`Plain::Bits`]), which is
//! valid for every bit pattern: a read racing with a write (only possible with the raw types, or
//! by bypassing the lock) may see a mix of old and new bytes, never an invalid value.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::shm::ShmState;
use crate::sync::{Handle, RLock, RLockAlone};

/// Plain data that can live in shared memory: copied bit for bit, no pointers, no drop.
///
/// Implemented for the integer types, `f32`, `f64`, `bool` (stored as a `u8`, read back as
/// `byte != 0`), and arrays `[T; N]` of them. `char` is not: not every `u32` is a `char`.
///
/// # Safety
///
/// `Bits` must be valid for every bit pattern of its size (the bytes may have been written by
/// another process, or torn by a racing write) and contain no pointers; `Self` must be
/// meaningful in any process (no addresses, no handles).
///
/// A struct of plain fields gets its impl from `#[derive(Plain)]`, which checks at compile
/// time what makes it sound (`#[repr(C)]` or `#[repr(transparent)]`, every field stored as
/// itself, no padding), so no `unsafe` is written:
///
/// ```
/// use multiprocess::{Plain, Value};
///
/// #[derive(Clone, Copy, Debug, PartialEq, Plain)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// let v = Value::new(Point { x: 1.0, y: 2.0 })?;
/// v.update(|p| Point { x: p.x + 1.0, ..p });
/// assert_eq!(v.get(), Point { x: 2.0, y: 2.0 });
/// # Ok::<(), multiprocess::Error>(())
/// ```
///
/// Each of these is a compile error: no `repr(C)`, padding, a field not valid for every bit
/// pattern.
///
/// ```compile_fail
/// #[derive(Clone, Copy, multiprocess::Plain)]
/// struct NoRepr { x: u32 }
/// ```
///
/// ```compile_fail
/// #[derive(Clone, Copy, multiprocess::Plain)]
/// #[repr(C)]
/// struct Padded { small: u8, big: u64 }
/// ```
///
/// ```compile_fail
/// #[derive(Clone, Copy, multiprocess::Plain)]
/// #[repr(C)]
/// struct WithBool { flag: bool, pad: [u8; 7] }
/// ```
///
/// By hand, the impl says how the value is stored:
///
/// ```
/// use multiprocess::Plain;
///
/// #[derive(Clone, Copy)]
/// struct Flag(bool);
///
/// // SAFETY: stored as a u8, valid for every bit pattern, read back as `byte != 0`.
/// unsafe impl Plain for Flag {
///     type Bits = u8;
///     fn to_bits(self) -> u8 { u8::from(self.0) }
///     fn from_bits(bits: u8) -> Flag { Flag(bits != 0) }
/// }
/// ```
pub unsafe trait Plain: Copy + Send + Sync + 'static {
    /// The stored form: valid for every bit pattern.
    type Bits: Copy + Send + Sync + 'static;
    /// The stored form of a value.
    fn to_bits(self) -> Self::Bits;
    /// The value of a stored form (any bit pattern).
    fn from_bits(bits: Self::Bits) -> Self;
}

macro_rules! plain_as_itself {
    ($($t:ty),*) => {
        $(
            // SAFETY: a primitive number: every bit pattern is a valid value.
            unsafe impl Plain for $t {
                type Bits = $t;
                fn to_bits(self) -> $t {
                    self
                }
                fn from_bits(bits: $t) -> $t {
                    bits
                }
            }
        )*
    };
}

plain_as_itself!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);

// SAFETY: stored as a u8 (every bit pattern valid), read back as `byte != 0`.
unsafe impl Plain for bool {
    type Bits = u8;
    fn to_bits(self) -> u8 {
        u8::from(self)
    }
    fn from_bits(bits: u8) -> bool {
        bits != 0
    }
}

// SAFETY: an array of valid-for-every-pattern elements is valid for every pattern.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {
    type Bits = [T::Bits; N];
    fn to_bits(self) -> Self::Bits {
        self.map(T::to_bits)
    }
    fn from_bits(bits: Self::Bits) -> Self {
        bits.map(T::from_bits)
    }
}

/// The header before the data.
#[repr(C)]
pub(crate) struct DataHeader {
    len: AtomicU64,
    elem_size: AtomicU64,
    type_tag: AtomicU64,
}

// SAFETY: atomics only; all-zero bytes are an empty array (its creator fills the header in
// before sharing it).
unsafe impl ShmState for DataHeader {}

/// The largest data a value or array may hold.
const MAX_BYTES: usize = 1 << 40;

/// Identifies the element type (both ends run the same binary).
fn type_tag<T>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<T>().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// `len` elements of `T` in shared memory (with room for at least one, so that element 0 can
/// always be read).
struct Data<T: Plain> {
    header: Handle<DataHeader>,
    len: usize,
    _elems: PhantomData<T>,
}

impl<T: Plain> Data<T> {
    /// Bytes from the end of the header to the first element: the region is page-aligned, so
    /// this is the same in every process.
    fn pad() -> usize {
        let header = size_of::<DataHeader>();
        header.next_multiple_of(align_of::<T::Bits>()) - header
    }

    /// Bytes needed after the header for `len` elements, if that is allowed.
    fn room(len: usize) -> Option<usize> {
        if align_of::<T::Bits>() > 4096 {
            return None;
        }
        let bytes = len.max(1).checked_mul(size_of::<T::Bits>())?;
        Some(Self::pad() + bytes).filter(|&n| n <= MAX_BYTES)
    }

    /// `len` elements whose bytes are all zero (fresh shared memory is zeroed).
    fn zeroed(name: &str, len: usize) -> Result<Self> {
        let room = Self::room(len).ok_or_else(|| {
            Error::InvalidArgument(format!("cannot keep {len} such elements in shared memory"))
        })?;
        let header = Handle::<DataHeader>::create(name, room)?;
        header.len.store(len as u64, Ordering::Relaxed);
        header
            .elem_size
            .store(size_of::<T::Bits>() as u64, Ordering::Relaxed);
        header.type_tag.store(type_tag::<T>(), Ordering::Relaxed);
        Ok(Data {
            header,
            len,
            _elems: PhantomData,
        })
    }

    /// A copy of `values`.
    fn from_slice(name: &str, values: &[T]) -> Result<Self> {
        let data = Self::zeroed(name, values.len())?;
        for (i, &v) in values.iter().enumerate() {
            // SAFETY: i < values.len() = len.
            unsafe { data.store(i, v) };
        }
        Ok(data)
    }

    /// The address of element `i`.
    ///
    /// # Safety
    /// `i < max(len, 1)`.
    unsafe fn ptr(&self, i: usize) -> *mut T::Bits {
        debug_assert!(i < self.len.max(1));
        // SAFETY: the region holds `room(len)` bytes after the header (checked at creation and
        // when received), so element `i < max(len, 1)` lies inside it (the caller's promise).
        unsafe {
            self.header
                .cell()
                .extra_ptr()
                .add(Self::pad())
                .cast::<T::Bits>()
                .add(i)
        }
    }

    /// Element `i`.
    ///
    /// # Safety
    /// `i < max(len, 1)`.
    unsafe fn load(&self, i: usize) -> T {
        // SAFETY: in bounds (the caller's promise), aligned (`pad`), and valid for every bit
        // pattern (`Plain`); only raw pointers ever touch the data.
        T::from_bits(unsafe { self.ptr(i).read_volatile() })
    }

    /// Sets element `i`.
    ///
    /// # Safety
    /// `i < max(len, 1)`.
    unsafe fn store(&self, i: usize, value: T) {
        // SAFETY: as in `load`; the region is mapped writable.
        unsafe { self.ptr(i).write_volatile(value.to_bits()) }
    }

    /// Element 0 (always in memory, even for an empty array).
    fn first(&self) -> T {
        // SAFETY: 0 < max(len, 1).
        unsafe { self.load(0) }
    }

    /// Sets element 0.
    fn set_first(&self, value: T) {
        // SAFETY: 0 < max(len, 1).
        unsafe { self.store(0, value) }
    }

    /// Element `i`, or an error if `i` is out of range.
    fn get(&self, i: usize) -> Result<T> {
        self.check(i)?;
        // SAFETY: i < len.
        Ok(unsafe { self.load(i) })
    }

    /// Sets element `i`, or fails if `i` is out of range.
    fn set(&self, i: usize, value: T) -> Result<()> {
        self.check(i)?;
        // SAFETY: i < len.
        unsafe { self.store(i, value) };
        Ok(())
    }

    fn check(&self, i: usize) -> Result<()> {
        if i < self.len {
            Ok(())
        } else {
            Err(Error::IndexOutOfRange {
                index: i,
                len: self.len,
            })
        }
    }

    fn to_vec(&self) -> Vec<T> {
        // SAFETY: every i < len.
        (0..self.len).map(|i| unsafe { self.load(i) }).collect()
    }
}

impl<T: Plain> Clone for Data<T> {
    fn clone(&self) -> Self {
        Data {
            header: self.header.clone(),
            len: self.len,
            _elems: PhantomData,
        }
    }
}

impl<T: Plain> Serialize for Data<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.header.serialize(s)
    }
}

impl<'de, T: Plain> Deserialize<'de> for Data<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let header = Handle::<DataHeader>::deserialize(d)?;
        let len = usize::try_from(header.len.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let fits = Self::room(len).is_some_and(|room| room <= header.cell().extra_len());
        if !fits
            || header.elem_size.load(Ordering::Relaxed) != size_of::<T::Bits>() as u64
            || header.type_tag.load(Ordering::Relaxed) != type_tag::<T>()
        {
            return Err(serde::de::Error::custom(format!(
                "not shared memory of {}",
                std::any::type_name::<T>()
            )));
        }
        Ok(Data {
            header,
            len,
            _elems: PhantomData,
        })
    }
}

/// A value of plain data shared between processes, with a lock, as Python's
/// `multiprocessing.Value`. `get` and `set` take the lock; so does `update`, which makes a
/// read-modify-write atomic. The lock is an [`RLock`] (Python's default), so these also work
/// while the caller holds [`get_lock`](Self::get_lock), to make several steps atomic.
///
/// ```
/// use multiprocess::Value;
/// let counter = Value::new(0i64)?;
/// counter.set(41);
/// assert_eq!(counter.update(|x| x + 1), 42);
/// {
///     let _guard = counter.get_lock().lock()?; // Python's `with v.get_lock():`
///     counter.set(counter.get() * 2);
/// }
/// assert_eq!(counter.get(), 84);
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Value<T: Plain> {
    data: Data<T>,
    lock: RLock,
}

impl<T: Plain> Value<T> {
    /// A shared value with a lock of its own.
    pub fn new(value: T) -> Result<Value<T>> {
        Value::with_lock(value, RLock::new()?)
    }

    /// A shared value guarded by an existing lock (Python's `Value(t, v, lock=lock)`).
    pub fn with_lock(value: T, lock: RLock) -> Result<Value<T>> {
        Ok(Value {
            data: Data::from_slice("multiprocess-value", &[value])?,
            lock,
        })
    }

    /// The value.
    pub fn get(&self) -> T {
        let _guard = self.lock.hold();
        self.data.first()
    }

    /// Sets the value.
    pub fn set(&self, value: T) {
        let _guard = self.lock.hold();
        self.data.set_first(value);
    }

    /// Replaces the value with `f(value)` under the lock; returns the new value.
    pub fn update(&self, f: impl FnOnce(T) -> T) -> T {
        let _guard = self.lock.hold();
        let new = f(self.data.first());
        self.data.set_first(new);
        new
    }

    /// The lock that guards the value.
    pub fn get_lock(&self) -> &RLock {
        &self.lock
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Value").field(&self.get()).finish()
    }
}

/// A value of plain data shared between processes, without a lock, as Python's
/// `multiprocessing.RawValue`: racy by design (a read racing with a write of a value larger
/// than a machine word may see a mix of both, though always a valid `T`).
///
/// ```
/// let v = multiprocess::RawValue::new(1.5f64)?;
/// v.set(v.get() * 2.0);
/// assert_eq!(v.get(), 3.0);
/// # Ok::<(), multiprocess::Error>(())
/// ```
///
/// It has no lock:
///
/// ```compile_fail,E0599
/// let v = multiprocess::RawValue::new(1u8).unwrap();
/// v.get_lock();
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "", transparent)]
pub struct RawValue<T: Plain> {
    data: Data<T>,
}

impl<T: Plain> RawValue<T> {
    /// A shared value.
    pub fn new(value: T) -> Result<RawValue<T>> {
        Ok(RawValue {
            data: Data::from_slice("multiprocess-value", &[value])?,
        })
    }

    /// The value.
    pub fn get(&self) -> T {
        self.data.first()
    }

    /// Sets the value.
    pub fn set(&self, value: T) {
        self.data.set_first(value);
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

/// A fixed-length array of plain data shared between processes, with a lock, as Python's
/// `multiprocessing.Array`. Each access takes the [`RLock`]; hold
/// [`get_lock`](Self::get_lock) to make several accesses atomic. An index out of range is an
/// [`Error::IndexOutOfRange`], never a panic.
///
/// ```
/// use multiprocess::Array;
/// let a = Array::new(&[1i32, 2, 3])?;
/// {
///     let _guard = a.get_lock().lock()?;
///     for i in 1..a.len() {
///         a.set(i, a.get(i)? + a.get(i - 1)?)?; // prefix sums, atomically
///     }
/// }
/// assert_eq!(a.to_vec(), [1, 3, 6]);
/// assert!(a.get(3).is_err());
/// assert_eq!(Array::<f64>::zeroed(2)?.to_vec(), [0.0, 0.0]);
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Array<T: Plain> {
    data: Data<T>,
    lock: RLock,
}

impl<T: Plain> Array<T> {
    /// A shared array holding a copy of `values`, with a lock of its own.
    pub fn new(values: &[T]) -> Result<Array<T>> {
        Array::with_lock(values, RLock::new()?)
    }

    /// A shared array of `len` elements whose bytes are all zero (Python's `Array('i', 10)`).
    pub fn zeroed(len: usize) -> Result<Array<T>> {
        Ok(Array {
            data: Data::zeroed("multiprocess-array", len)?,
            lock: RLock::new()?,
        })
    }

    /// A shared array holding a copy of `values`, guarded by an existing lock.
    pub fn with_lock(values: &[T], lock: RLock) -> Result<Array<T>> {
        Ok(Array {
            data: Data::from_slice("multiprocess-array", values)?,
            lock,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len
    }

    /// Whether the array has no element.
    pub fn is_empty(&self) -> bool {
        self.data.len == 0
    }

    /// Element `i`.
    pub fn get(&self, i: usize) -> Result<T> {
        let _guard = self.lock.hold();
        self.data.get(i)
    }

    /// Sets element `i`.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        let _guard = self.lock.hold();
        self.data.set(i, value)
    }

    /// A copy of all elements, taken under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        let _guard = self.lock.hold();
        self.data.to_vec()
    }

    /// The lock that guards the array.
    pub fn get_lock(&self) -> &RLock {
        &self.lock
    }

    /// Takes the array's lock and lends the elements out as a slice (`&[T]` through `Deref`,
    /// `&mut [T]` through `DerefMut`) until the guard is dropped. For element types stored as
    /// themselves (`Plain<Bits = T>`: numbers, arrays of them, `#[derive(Plain)]` structs).
    ///
    /// The lock is held by this thread alone, not re-entrantly: this handle is borrowed
    /// mutably, and, as with [`std::sync::Mutex`], touching the array through a clone (or
    /// anything else guarded by the same lock) from this thread meanwhile waits for ever.
    /// Fails at once with [`Error::InvalidArgument`] if this thread holds the lock already.
    ///
    /// ```
    /// let mut a = multiprocess::Array::new(&[3u32, 1, 2])?;
    /// {
    ///     let mut view = a.lock()?;
    ///     view.sort_unstable();
    ///     view[0] += 10;
    ///     assert_eq!(view.iter().sum::<u32>(), 16);
    /// }
    /// assert_eq!(a.to_vec(), [11, 2, 3]);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn lock(&mut self) -> Result<ArrayGuard<'_, T>>
    where
        T: Plain<Bits = T>,
    {
        let held = self.lock.hold_alone()?;
        Ok(ArrayGuard {
            data: &self.data,
            _held: held,
        })
    }
}

/// The elements of an [`Array`] as a slice, with the array's lock held: made by
/// [`Array::lock`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Plain<Bits = T>> {
    data: &'a Data<T>,
    _held: RLockAlone<'a>,
}

impl<T: Plain<Bits = T>> std::ops::Deref for ArrayGuard<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements (room for at least one) lie at `ptr(0)`, aligned (`pad`), each
        // valid for every bit pattern (`Bits = T`). The lock is held by this thread alone, so
        // no other process or thread writes them meanwhile, and the array is borrowed mutably,
        // so this handle does not either.
        unsafe { std::slice::from_raw_parts(self.data.ptr(0), self.data.len) }
    }
}

impl<T: Plain<Bits = T>> std::ops::DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; the region is mapped writable, and `&mut self` makes this the
        // only reference the guard lends.
        unsafe { std::slice::from_raw_parts_mut(self.data.ptr(0), self.data.len) }
    }
}

impl<T: Plain<Bits = T> + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Array").field(&self.to_vec()).finish()
    }
}

/// A fixed-length array of plain data shared between processes, without a lock, as Python's
/// `multiprocessing.RawArray`: racy by design (see [`RawValue`]).
///
/// ```
/// let a = multiprocess::RawArray::<u8>::zeroed(3)?;
/// a.set(1, b'x')?;
/// assert_eq!(a.to_vec(), [0, b'x', 0]);
/// assert!(a.set(3, 0).is_err());
/// # Ok::<(), multiprocess::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "", transparent)]
pub struct RawArray<T: Plain> {
    data: Data<T>,
}

impl<T: Plain> RawArray<T> {
    /// A shared array holding a copy of `values`.
    pub fn new(values: &[T]) -> Result<RawArray<T>> {
        Ok(RawArray {
            data: Data::from_slice("multiprocess-array", values)?,
        })
    }

    /// A shared array of `len` elements whose bytes are all zero.
    pub fn zeroed(len: usize) -> Result<RawArray<T>> {
        Ok(RawArray {
            data: Data::zeroed("multiprocess-array", len)?,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len
    }

    /// Whether the array has no element.
    pub fn is_empty(&self) -> bool {
        self.data.len == 0
    }

    /// Element `i`.
    pub fn get(&self, i: usize) -> Result<T> {
        self.data.get(i)
    }

    /// Sets element `i`.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.data.set(i, value)
    }

    /// A copy of all elements.
    pub fn to_vec(&self) -> Vec<T> {
        self.data.to_vec()
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&self.to_vec()).finish()
    }
}
