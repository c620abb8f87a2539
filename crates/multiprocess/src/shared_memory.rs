//! [`SharedMemory`]: a block of memory with a name that unrelated processes can open, as
//! Python's `multiprocessing.shared_memory.SharedMemory`.
//!
//! ## Design
//!
//! A block is a POSIX shared-memory object (a file in `/dev/shm`, made with `shm_open`, mode
//! `0600`): the user's bytes from offset 0, page-aligned, then one page with a trailer that
//! marks the block as ours and records its size and its owner (the creating process's pid and
//! start time, which together name that process for good).
//!
//! A block appears under its name whole: it is made under a temporary name, sized, its trailer
//! written, and only then renamed to its final name with `RENAME_NOREPLACE` (which also makes
//! creating an existing name fail, as `O_EXCL` would). So a process that opens the name never
//! sees a half-made block.
//!
//! ## Who removes the name
//!
//! The creating handle *owns* the name: dropping it removes the name (processes that have the
//! block open keep their mapping; the memory is freed when the last of them closes it), and a
//! process that exits normally (`main` returns, or `std::process::exit`) removes the names it
//! still owns. Handles made by [`SharedMemory::open`] or received from another process never
//! remove the name, unless [`unlink`](SharedMemory::unlink) is called explicitly (as in Python,
//! any handle may). [`persist`](SharedMemory::persist) gives up ownership: the block then stays
//! until someone unlinks it.
//!
//! A creator killed by a signal cannot remove its names. Its blocks are *orphans*: owned by a
//! process that no longer exists. [`SharedMemory::orphans`] lists them (for the calling user)
//! and [`SharedMemory::remove_orphans`] removes them; a persisted block is never an orphan.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, FdIn, FdOut};
use crate::error::{Error, Result};
use crate::shared::Plain;
use crate::sys;

/// Marks a block made by this library, and the trailer's layout version.
const MAGIC: u64 = u64::from_le_bytes(*b"mpshm\0v1");

/// Bytes of the trailer page after the data.
const PAGE: usize = 4096;

/// Temporary names of blocks being made start with this.
const TMP_PREFIX: &str = ".mp-tmp-";

/// The page after the data.
#[repr(C)]
struct Trailer {
    magic: AtomicU64,
    /// The size the block was created with.
    size: AtomicU64,
    /// The owning process (0: none, the block was persisted).
    owner_pid: AtomicU64,
    /// When the owning process started (see `sys::process_start_time`).
    owner_start: AtomicU64,
}

/// The file length of a block of `size` bytes: the data rounded up to pages, then the trailer.
fn file_len(size: usize) -> Option<usize> {
    size.checked_next_multiple_of(PAGE)?.checked_add(PAGE)
}

/// A named block of shared memory, as Python's `SharedMemory`: create it by name and size in
/// one process, open it by name in any other (related or not), read and write its bytes.
///
/// Reads and writes from several processes at once are not ordered: pair the block with a
/// [`Lock`](crate::Lock) (or another synchronisation) when processes write while others read,
/// as in Python. The copying accessors ([`read`](Self::read), [`write`](Self::write),
/// [`get`](Self::get), [`set`](Self::set)) are safe; the slice views are `unsafe` because
/// Rust's `&[u8]` promises that no one writes the bytes while it lives.
///
/// ```
/// use multiprocess::SharedMemory;
/// let name = format!("doc-example-{}", std::process::id());
/// let block = SharedMemory::create_named(&name, 1024)?; // this handle owns the name
/// block.write(0, b"hello")?;
///
/// // Any process (here the same one) opens it by name.
/// let other = SharedMemory::open(&name)?;
/// let mut five = [0u8; 5];
/// other.read(0, &mut five)?;
/// assert_eq!(&five, b"hello");
/// assert_eq!(other.size(), 1024);
///
/// other.set::<u32>(10, 7)?; // element 10 of the block seen as u32s
/// assert_eq!(block.get::<u32>(10)?, 7);
///
/// drop(block); // the owner goes: the name is removed; `other` keeps its mapping
/// assert!(SharedMemory::open(&name).is_err());
/// assert_eq!(other.get::<u32>(10)?, 7);
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub struct SharedMemory {
    name: String,
    fd: OwnedFd,
    map: sys::Mapping,
    size: usize,
    /// This handle removes the name when dropped.
    owner: AtomicBool,
}

impl SharedMemory {
    /// Creates a block of `size` zero bytes under a fresh random name (see [`name`](Self::name)),
    /// as Python's `SharedMemory(create=True, size=size)`. The handle owns the name.
    ///
    /// ```
    /// let block = multiprocess::SharedMemory::create(4096)?;
    /// assert!(block.name().starts_with("mp_"));
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn create(size: usize) -> Result<SharedMemory> {
        loop {
            let name = format!("mp_{:016x}", sys::random_u64()?);
            match SharedMemory::create_named(&name, size) {
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                other => return other,
            }
        }
    }

    /// Creates a block of `size` zero bytes named `name` (with or without a leading `/`; no
    /// other `/`), readable and writable by this user only (mode `0600`). Fails with an I/O
    /// error of kind `AlreadyExists` if the name is taken. The handle owns the name.
    pub fn create_named(name: &str, size: usize) -> Result<SharedMemory> {
        let name = check_name(name)?;
        let len = file_len(size).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "a shared memory block of {size} bytes is too large"
            ))
        })?;
        let pid = sys::getpid();
        let tmp = format!("{TMP_PREFIX}{pid}-{:016x}", sys::random_u64()?);
        let fd = sys::shm_open(&format!("/{tmp}"), true, 0o600)?;
        let made = (|| {
            sys::set_file_len(fd.as_fd(), len as u64)?;
            let map = sys::Mapping::new(fd.as_fd(), len, sys::Access::ReadWrite, false)?;
            let block = SharedMemory {
                name: name.to_string(),
                fd,
                map,
                size,
                owner: AtomicBool::new(true),
            };
            let t = block.trailer();
            t.size.store(size as u64, Ordering::Relaxed);
            t.owner_pid.store(u64::from(pid), Ordering::Relaxed);
            t.owner_start
                .store(sys::own_start_time(pid), Ordering::Relaxed);
            t.magic.store(MAGIC, Ordering::Release);
            sys::rename_noreplace(&shm_path(&tmp), &shm_path(name))?;
            Ok(block)
        })();
        match made {
            Ok(block) => {
                exit_registry::add(name, block.inode());
                Ok(block)
            }
            Err(e) => {
                let _ = sys::shm_unlink(&format!("/{tmp}"));
                Err(e)
            }
        }
    }

    /// Opens the block named `name`, made by [`create_named`](Self::create_named) or
    /// [`create`](Self::create) in any process of this user, as Python's
    /// `SharedMemory(name)`. Dropping this handle never removes the name.
    pub fn open(name: &str) -> Result<SharedMemory> {
        let name = check_name(name)?;
        let fd = sys::shm_open(&format!("/{name}"), false, 0)?;
        SharedMemory::map_existing(name.to_string(), fd)
    }

    /// Maps an existing block's file and checks its trailer.
    fn map_existing(name: String, fd: OwnedFd) -> Result<SharedMemory> {
        let len = usize::try_from(sys::file_len(fd.as_fd())?).unwrap_or(0);
        let not_ours = || {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("shared memory {name:?} was not made by multiprocess::SharedMemory"),
            ))
        };
        if len < PAGE || len % PAGE != 0 {
            return Err(not_ours());
        }
        let map = sys::Mapping::new(fd.as_fd(), len, sys::Access::ReadWrite, false)?;
        let mut block = SharedMemory {
            name: name.clone(),
            fd,
            map,
            size: 0,
            owner: AtomicBool::new(false),
        };
        let t = block.trailer();
        let size = t.size.load(Ordering::Relaxed);
        if t.magic.load(Ordering::Acquire) != MAGIC || file_len(size as usize) != Some(len) {
            return Err(not_ours());
        }
        block.size = size as usize;
        Ok(block)
    }

    fn trailer(&self) -> &Trailer {
        let at = self.map.len() - PAGE;
        // SAFETY: the mapping is at least one page long (checked when made) and page-aligned;
        // its last page holds the trailer, whose fields are atomics valid for any bits.
        unsafe { &*self.map.ptr().add(at).cast::<Trailer>() }
    }

    fn inode(&self) -> u64 {
        sys::file_id(self.fd.as_fd()).map_or(0, |id| id.1)
    }

    /// The block's name, without a leading `/` (pass it to [`open`](Self::open) elsewhere).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its size in bytes, as created.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this handle removes the name when dropped.
    pub fn is_owner(&self) -> bool {
        self.owner.load(Ordering::Acquire)
    }

    /// The first byte (page-aligned). Writing through it races with other processes as any
    /// shared memory does.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.ptr()
    }

    /// Checks that `[offset, offset + len)` lies in the block.
    fn range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::IndexOutOfRange {
                index: offset.saturating_add(len),
                len: self.size,
            }),
        }
    }

    /// Copies bytes from `offset` into `out`. Bytes another process writes meanwhile may come
    /// out as a mix of old and new.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.range(offset, out.len())?;
        // SAFETY: the range lies in the mapping (checked); `out` is our own memory.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), out.as_mut_ptr(), out.len())
        };
        Ok(())
    }

    /// Copies `bytes` into the block at `offset`.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.range(offset, bytes.len())?;
        // SAFETY: the range lies in the mapping (checked); shared memory is written by value.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.as_ptr().add(offset), bytes.len())
        };
        Ok(())
    }

    /// A copy of all its bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.size];
        // The range is the whole block: it cannot be out of range.
        let _ = self.read(0, &mut v);
        v
    }

    /// Element `index` of the block seen as an array of `T` (read whole, as a `Value` is).
    pub fn get<T: Plain>(&self, index: usize) -> Result<T> {
        let at = self.element(index, std::mem::size_of::<T::Bits>())?;
        // SAFETY: the element lies in the mapping (checked) at a multiple of its size from a
        // page-aligned base, so it is aligned; T::Bits is valid for every bit pattern.
        Ok(T::from_bits(unsafe {
            at.cast::<T::Bits>().read_volatile()
        }))
    }

    /// Sets element `index` of the block seen as an array of `T`.
    pub fn set<T: Plain>(&self, index: usize, value: T) -> Result<()> {
        let at = self.element(index, std::mem::size_of::<T::Bits>())?;
        // SAFETY: as in `get`.
        unsafe { at.cast::<T::Bits>().write_volatile(value.to_bits()) };
        Ok(())
    }

    fn element(&self, index: usize, size: usize) -> Result<*mut u8> {
        let len = self.size / size.max(1);
        if index >= len {
            return Err(Error::IndexOutOfRange { index, len });
        }
        // SAFETY: index * size + size <= self.size, inside the mapping.
        Ok(unsafe { self.as_ptr().add(index * size) })
    }

    /// The bytes, as a slice.
    ///
    /// # Safety
    /// No process may write the block while the slice lives (e.g. every writer holds a lock
    /// that the caller holds too, or the block is written once before it is shared).
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping holds `size` bytes as long as self; the caller rules out writers.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.size) }
    }

    /// The bytes, as a mutable slice.
    ///
    /// # Safety
    /// No other process may read or write the block while the slice lives.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above; `&mut self` excludes other borrows in this process.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.size) }
    }

    /// The bytes as whole elements of a plain type (trailing bytes that do not fill one are
    /// left out), e.g. an `f64` array shared by name.
    ///
    /// # Safety
    /// As [`as_slice`](Self::as_slice).
    pub unsafe fn as_slice_of<T: Plain<Bits = T>>(&self) -> &[T] {
        let n = self.size / std::mem::size_of::<T>().max(1);
        // SAFETY: page-aligned, n elements fit, T is valid for every bit pattern; the caller
        // rules out writers.
        unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<T>(), n) }
    }

    /// The bytes as whole elements of a plain type, mutably.
    ///
    /// # Safety
    /// As [`as_mut_slice`](Self::as_mut_slice).
    pub unsafe fn as_mut_slice_of<T: Plain<Bits = T>>(&mut self) -> &mut [T] {
        let n = self.size / std::mem::size_of::<T>().max(1);
        // SAFETY: as in `as_slice_of`, and `&mut self` excludes other borrows here.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr().cast::<T>(), n) }
    }

    /// Removes the name now, as Python's `unlink()`: no process can open the block any more;
    /// those that have it keep it. Any handle may call it.
    pub fn unlink(&self) -> Result<()> {
        self.owner.store(false, Ordering::Release);
        exit_registry::remove(&self.name, self.inode());
        unlink_if_same(&self.name, self.inode())
    }

    /// Gives up the ownership of the name: the block stays in `/dev/shm` after this handle and
    /// this process are gone, until some process unlinks it (e.g. with
    /// [`unlink_name`](Self::unlink_name)). It is then never counted as an orphan.
    pub fn persist(&self) {
        self.trailer().owner_pid.store(0, Ordering::Release);
        self.owner.store(false, Ordering::Release);
        exit_registry::remove(&self.name, self.inode());
    }

    /// Removes the name `name`, whoever made it.
    ///
    /// ```
    /// let block = multiprocess::SharedMemory::create(10)?;
    /// block.persist();
    /// let name = block.name().to_string();
    /// drop(block);
    /// multiprocess::SharedMemory::unlink_name(&name)?; // the block is gone for good
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn unlink_name(name: &str) -> Result<()> {
        Ok(sys::shm_unlink(&format!("/{}", check_name(name)?))?)
    }

    /// The names of this user's blocks whose owner died without removing them (killed by a
    /// signal, say), including blocks that were being made when their creator died.
    ///
    /// ```
    /// for name in multiprocess::SharedMemory::orphans()? {
    ///     println!("left behind by a crash: /dev/shm/{name}");
    /// }
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn orphans() -> Result<Vec<String>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(sys::SHM_DIR)?.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if orphaned(&entry.path()) {
                found.push(name);
            }
        }
        found.sort();
        Ok(found)
    }

    /// Removes every block [`orphans`](Self::orphans) lists; returns their names.
    pub fn remove_orphans() -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for name in SharedMemory::orphans()? {
            // Look again right before: the list may be stale.
            if orphaned(&shm_path(&name)) && sys::shm_unlink(&format!("/{name}")).is_ok() {
                removed.push(name);
            }
        }
        Ok(removed)
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.owner.load(Ordering::Acquire) {
            exit_registry::remove(&self.name, self.inode());
            let _ = unlink_if_same(&self.name, self.inode());
        }
    }
}

impl std::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("owner", &self.is_owner())
            .finish()
    }
}

/// Checks a name as `shm_open` wants it (without its leading `/`).
fn check_name(name: &str) -> Result<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let bad = bare.is_empty()
        || bare.len() > 250
        || bare.contains(['/', '\0'])
        || bare == "."
        || bare == "..";
    if bad {
        return Err(Error::InvalidArgument(format!(
            "{name:?} is not a valid shared memory name (1 to 250 bytes, no '/' after the first)"
        )));
    }
    Ok(bare)
}

fn shm_path(name: &str) -> PathBuf {
    Path::new(sys::SHM_DIR).join(name)
}

/// Removes `name` if it still names the file with inode `ino` (and not a block someone made
/// under the same name since).
fn unlink_if_same(name: &str, ino: u64) -> Result<()> {
    match std::fs::symlink_metadata(shm_path(name)) {
        Ok(m) if m.ino() == ino => Ok(sys::shm_unlink(&format!("/{name}"))?),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the file at `path` is one of this user's blocks whose owner no longer exists.
fn orphaned(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let me = sys::effective_uid();
    let len = meta.len();
    if !meta.is_file() || meta.uid() != me || len < PAGE as u64 || len % PAGE as u64 != 0 {
        return false;
    }
    let mut t = [0u8; 32];
    if file.read_exact_at(&mut t, len - PAGE as u64).is_err() {
        return false;
    }
    let word = |i: usize| u64::from_le_bytes(t[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let (magic, pid, start) = (word(0), word(2), word(3));
    if magic != MAGIC || pid == 0 {
        return false;
    }
    let Ok(pid) = u32::try_from(pid) else {
        return true;
    };
    sys::process_start_time(pid) != Some(start)
}

/// The names this process owns, removed when it exits normally (a forked copy of the process
/// leaves its parent's names alone).
mod exit_registry {
    use super::*;

    static OWNED: Mutex<Vec<(u32, String, u64)>> = Mutex::new(Vec::new());

    pub(super) fn add(name: &str, ino: u64) {
        static AT_EXIT: Once = Once::new();
        AT_EXIT.call_once(|| sys::at_exit(at_exit));
        let mut owned = OWNED.lock().unwrap_or_else(|e| e.into_inner());
        owned.push((sys::getpid(), name.to_string(), ino));
    }

    pub(super) fn remove(name: &str, ino: u64) {
        let mut owned = OWNED.lock().unwrap_or_else(|e| e.into_inner());
        owned.retain(|(_, n, i)| (n.as_str(), *i) != (name, ino));
    }

    extern "C" fn at_exit() {
        // try_lock: in a forked child the lock may be held by a thread that does not exist
        // there; its list is the parent's anyway.
        let Ok(owned) = OWNED.try_lock() else {
            return;
        };
        let me = sys::getpid();
        for (pid, name, ino) in owned.iter() {
            if *pid == me {
                let _ = unlink_if_same(name, *ino);
            }
        }
    }
}

/// How a block travels to another process: its name, and its descriptor when the transport
/// moves descriptors (then the receiver needs no name lookup, and the block may even have been
/// unlinked). The receiver's handle never owns the name.
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let fd = codec::sending_fds().then(|| FdOut(self.fd.as_fd()));
        (&self.name, fd).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (name, fd) = <(String, Option<FdIn>)>::deserialize(d)?;
        let block = match fd {
            Some(FdIn(fd)) => SharedMemory::map_existing(name, fd),
            None => SharedMemory::open(&name),
        };
        block.map_err(serde::de::Error::custom)
    }
}
