//! The memory under zero-copy buffers: one memory file (`memfd`) per buffer, this process's
//! pool of the files it made (reused once no handle to them is left anywhere), and its cache of
//! mappings of the files it received.
//!
//! ## Why reuse, and how it stays safe
//!
//! Fresh pages are expensive: the kernel allocates and zeroes each one on its first touch, and
//! maps each one on every new mapping (measured here, in a virtual machine: about 8 µs to fault
//! a fresh 4 KiB page in and 1 µs to map an existing one, so a fresh 16 MiB buffer costs some
//! 35 ms, a memory copy of it under 2 ms). So a process keeps the files it made, mapped, and
//! writes new buffers into one that no handle uses any more; a receiver keeps its mappings of
//! the files it was sent, so a file that comes back costs no new mapping.
//!
//! A file is sealed at birth (`F_SEAL_FUTURE_WRITE | SHRINK | GROW | SEAL`): from then on only
//! its creator's original mapping can write it; no other mapping, process or `write(2)` can.
//! The creator writes only while it holds the only handle to it, and "no handle elsewhere" is
//! the kernel's to say: every handle outside the creating process holds a *read lock* on an
//! open file description of its own (an OFD lock), made when the buffer is sent and travelling
//! with it (as the descriptor passed over a socket or inherited), and released when the last
//! handle of that process goes, or the process dies. The creator reuses a file only if it can
//! take the write lock, i.e. when no such read lock exists; a buffer still in a queue or a pipe
//! holds its lock in transit. So no process ever sees a buffer's bytes change while it holds a
//! handle, and a receiver that dies frees its hold with its descriptors.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::per_process::PerProcess;
use crate::sys;

/// The name a buffer's memory file shows in `/proc/<pid>/fd` (as `memfd:multiprocess-buf`).
const MEMFD_NAME: &str = "multiprocess-buf";

/// Files are made in whole pages.
const PAGE: usize = 4096;

/// The most files (and bytes) this process keeps for reuse.
const POOL_ENTRIES: usize = 32;
const POOL_BYTES: usize = 256 << 20;

/// The most mappings of received files this process keeps (they keep the files alive).
const CACHE_ENTRIES: usize = 32;
const CACHE_BYTES: usize = 256 << 20;

/// One buffer's memory file, mapped into this process.
pub(super) struct Memory {
    /// A description of the file that never holds a lock.
    fd: OwnedFd,
    map: sys::Mapping,
    /// The file's device and inode.
    id: (u64, u64),
}

impl Memory {
    /// A new file of `cap` bytes (a multiple of the page), mapped writable, sealed for every
    /// other writer.
    fn create(cap: usize) -> Result<Memory> {
        let fd = sys::memfd_create_sealable(MEMFD_NAME)?;
        sys::set_file_len(fd.as_fd(), cap as u64)?;
        // No MAP_POPULATE: measured here, it costs as much as faulting the pages one by one.
        let map = sys::Mapping::new(fd.as_fd(), cap, sys::Access::ReadWrite, false)?;
        sys::seal_writers(fd.as_fd())?;
        let id = sys::file_id(fd.as_fd())?;
        Ok(Memory { fd, map, id })
    }

    /// Maps a file received from another process, read-only, through a description of its own
    /// (a mapping keeps the description it was made through alive, and with it its locks).
    fn map_received(received: BorrowedFd<'_>) -> Result<Memory> {
        if !sys::sealed_for_readers(received)? {
            return Err(Error::Decode(
                "the buffer received is not sealed against changes".into(),
            ));
        }
        let fd = sys::reopen_read_only(received)?;
        let id = sys::file_id(fd.as_fd())?;
        let cap = usize::try_from(sys::file_len(fd.as_fd())?)
            .map_err(|_| Error::Decode("the buffer received is too large to map".into()))?;
        let map = sys::Mapping::new(fd.as_fd(), cap, sys::Access::Read, false)?;
        Ok(Memory { fd, map, id })
    }

    /// The first byte (page-aligned).
    pub(super) fn ptr(&self) -> *mut u8 {
        self.map.ptr()
    }

    /// The bytes mapped.
    pub(super) fn cap(&self) -> usize {
        self.map.len()
    }

    /// The file's inode number.
    pub(super) fn inode(&self) -> u64 {
        self.id.1
    }

    /// A new description of the file holding a read lock, to travel with a handle sent to
    /// another process: while it exists, the creator does not reuse the file.
    pub(super) fn locked_description(&self) -> Result<OwnedFd> {
        let fd = sys::reopen_read_only(self.fd.as_fd())?;
        if !sys::ofd_lock(fd.as_fd(), sys::FileLock::Read)? {
            return Err(Error::Encode("could not lock a buffer for sending".into()));
        }
        Ok(fd)
    }

    /// Whether some description other than ours holds a lock: a handle exists in another
    /// process, or travels to one.
    fn held_elsewhere(&self) -> bool {
        match sys::ofd_lock(self.fd.as_fd(), sys::FileLock::Write) {
            Ok(true) => {
                let _ = sys::ofd_lock(self.fd.as_fd(), sys::FileLock::Unlock);
                false
            }
            _ => true,
        }
    }
}

/// This process's files: those it made (`pool`) and mappings of those it received (`cache`),
/// oldest first. A forked child starts with empty tables (the parent's are leaked there, never
/// used: their locks may be held for ever, and their files are the parent's to reuse).
#[derive(Default)]
struct Lists {
    pool: VecDeque<Arc<Memory>>,
    cache: VecDeque<Arc<Memory>>,
}

/// The lists, and the process they belong to.
struct Tables {
    pid: u32,
    lists: Mutex<Lists>,
}

static TABLES: PerProcess<Tables> = PerProcess::new(|| Tables {
    pid: sys::getpid(),
    lists: Mutex::default(),
});

/// Forgets the parent's tables in a freshly forked child (see `after_fork_in_child`).
pub(crate) fn reset_after_fork() {
    TABLES.reset_after_fork();
}

/// This process's lists; `None` in a copy made by a `fork` that the library did not see (it
/// then neither reuses nor keeps anything: the lists are the parent's).
fn tables() -> Option<std::sync::MutexGuard<'static, Lists>> {
    let t = TABLES.get();
    (t.pid == sys::getpid()).then(|| t.lists.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Moves entry `i` to the back (most recently used) and returns it.
fn touch(files: &mut VecDeque<Arc<Memory>>, i: usize) -> Option<Arc<Memory>> {
    let m = files.remove(i)?;
    files.push_back(Arc::clone(&m));
    Some(m)
}

/// Memory for a buffer of `len` bytes, writable by this process alone: a file of the pool that
/// no handle uses any more, or a new one.
pub(super) fn for_writing(len: usize) -> Result<(Arc<Memory>, bool)> {
    let cap = len.next_multiple_of(PAGE);
    let fits = |m: &Memory| m.cap() >= cap && m.cap() <= cap + (cap / 4).max(64 << 10);
    if let Some(mut t) = tables() {
        let reusable = t
            .pool
            .iter()
            .position(|m| Arc::strong_count(m) == 1 && fits(m) && !m.held_elsewhere());
        if let Some(m) = reusable.and_then(|i| touch(&mut t.pool, i)) {
            return Ok((m, true));
        }
    }
    let m = Arc::new(Memory::create(cap)?);
    if cap > 0 && cap <= POOL_BYTES / 2 {
        if let Some(mut t) = tables() {
            t.pool.push_back(Arc::clone(&m));
            trim(&mut t.pool, POOL_ENTRIES, POOL_BYTES);
        }
    }
    Ok((m, false))
}

/// The mapping of a received file (this process's cached one if it has seen the file before).
pub(super) fn received(fd: BorrowedFd<'_>) -> Result<Arc<Memory>> {
    let id = sys::file_id(fd)?;
    if let Some(mut t) = tables() {
        let seen = t.cache.iter().position(|m| m.id == id);
        if let Some(m) = seen.and_then(|i| touch(&mut t.cache, i)) {
            return Ok(m);
        }
    }
    let m = Arc::new(Memory::map_received(fd)?);
    if let Some(mut t) = tables() {
        t.cache.push_back(Arc::clone(&m));
        trim(&mut t.cache, CACHE_ENTRIES, CACHE_BYTES);
    }
    Ok(m)
}

/// Forgets the oldest files beyond `entries` or `bytes` (those in use stay alive with their
/// handles).
fn trim(files: &mut VecDeque<Arc<Memory>>, entries: usize, bytes: usize) {
    let mut total: usize = files.iter().map(|m| m.cap()).sum();
    while files.len() > entries || (total > bytes && !files.is_empty()) {
        if let Some(m) = files.pop_front() {
            total -= m.cap();
        }
    }
}

/// Gives back the memory this process keeps for reuse: files it made and mappings of files it
/// received, as far as no handle in this process uses them.
pub(crate) fn release_unused() {
    if let Some(mut t) = tables() {
        t.pool.retain(|m| Arc::strong_count(m) > 1);
        t.cache.retain(|m| Arc::strong_count(m) > 1);
    }
}
