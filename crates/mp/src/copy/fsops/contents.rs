//! The copy ladder for a file's bytes: a reflink (FICLONE) first, then `copy_file_range`, then
//! `pread`/`pwrite` with a large buffer; holes kept (SEEK_DATA/SEEK_HOLE); and the checksums
//! `--verify` compares. Each rung that the kernel refuses as unsupported is not tried again in
//! this process. `--reflink=never` skips `copy_file_range` too: on XFS, btrfs and NFS it may
//! share extents, which `never` promises not to. A file that says it is empty is read to its
//! end all the same (`/proc` and `/sys` files say so and have contents), as `cp` reads it.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, SeekFrom};
use rustix::io::Errno;

use crate::copy::config::{Config, Reflink};
use crate::copy::meta::Meta;

/// How many bytes one `copy_file_range` or read/write round moves at most: small enough to
/// notice a stop request and report progress often.
const ROUND: usize = 16 << 20;

/// The read/write fallback's buffer.
const BUFFER: usize = 1 << 20;

/// Set once FICLONE has failed as unsupported: no more attempts in this process.
static NO_REFLINK: AtomicBool = AtomicBool::new(false);
/// Set once `copy_file_range` has failed as unsupported.
static NO_COPY_FILE_RANGE: AtomicBool = AtomicBool::new(false);

fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::OPNOTSUPP | Errno::NOSYS | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::BADF
    )
}

/// Copies the bytes of `src` into the empty file `dst`, whole, keeping holes: reflink first,
/// then `copy_file_range`, then read/write. `progress` hears of every round's bytes; `stop`
/// is asked between rounds.
pub fn copy_contents(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    meta: &Meta,
    config: &Config,
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    if meta.size == 0 {
        return copy_unsized(src, dst, progress, stop);
    }
    if try_reflink(src, dst, config.reflink)? {
        progress(meta.size);
        return Ok(());
    }
    // Setting the size first spares every write the cost of growing the file, and leaves
    // a sparse file's holes (a trailing one too) as holes.
    let sized_first = meta.size >= SIZE_FIRST || meta.is_sparse();
    if sized_first {
        rfs::ftruncate(dst, meta.size)?;
    }
    let share = config.reflink != Reflink::Never;
    copy_span(
        src,
        dst,
        (0, meta.size),
        (meta.is_sparse(), share),
        progress,
        stop,
    )?;
    if sized_first {
        trim_to_source(src, dst, meta.size)?;
    }
    Ok(())
}

/// Files at least this large get their size before their bytes.
const SIZE_FIRST: u64 = 1 << 20;

/// Cuts a copy that was given its size first back to its source's length, should the source
/// have shrunk meanwhile.
pub fn trim_to_source(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    let now = rfs::fstat(src)?.st_size.max(0) as u64;
    if now < size {
        rfs::ftruncate(dst, now)?;
    }
    Ok(())
}

/// Clones `src` into `dst` if allowed and possible: `Ok(true)` when done.
pub fn try_reflink(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, mode: Reflink) -> io::Result<bool> {
    if mode == Reflink::Never || (mode == Reflink::Auto && NO_REFLINK.load(Ordering::Relaxed)) {
        return Ok(false);
    }
    match rfs::ioctl_ficlone(dst, src) {
        Ok(()) => Ok(true),
        Err(e) if mode == Reflink::Always => Err(io::Error::other(format!(
            "--reflink=always: cannot clone: {}",
            io::Error::from(e)
        ))),
        Err(e) if unsupported(e) => {
            NO_REFLINK.store(true, Ordering::Relaxed);
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Copies the bytes in `[start, end)` of `src` to the same offsets of `dst`. With `sparse`,
/// only the data segments are copied (SEEK_DATA/SEEK_HOLE), so holes stay holes. With
/// `share`, through `copy_file_range` where it works (which may share extents: not under
/// `--reflink=never`).
pub fn copy_span(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    (start, end): (u64, u64),
    (sparse, share): (bool, bool),
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    let range = |from, to, progress: &mut dyn FnMut(u64)| match share {
        true => copy_range(src, dst, from, to, progress, stop),
        false => read_write(src, dst, from, to, progress, stop),
    };
    if !sparse {
        return range(start, end, progress);
    }
    let mut at = start;
    while at < end {
        let data = match rfs::seek(src, SeekFrom::Data(at)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break, // only a hole is left
            Err(e) if unsupported(e) => return range(at, end, progress),
            Err(e) => return Err(e.into()),
        };
        if data >= end {
            break;
        }
        let hole = rfs::seek(src, SeekFrom::Hole(data))?.min(end);
        range(data, hole, progress)?;
        at = hole;
    }
    Ok(())
}

/// Copies `[start, end)` with `copy_file_range`, or read/write where that is not supported.
/// A source that ends early (it shrank) ends the copy there.
fn copy_range(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    start: u64,
    end: u64,
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut at = start;
    if !NO_COPY_FILE_RANGE.load(Ordering::Relaxed) {
        while at < end {
            if stop() {
                return Err(interrupted());
            }
            let want = ((end - at) as usize).min(ROUND);
            let (mut off_in, mut off_out) = (at, at);
            match rfs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
                Ok(0) if at == start => break, // some files lie about their size: read them
                Ok(0) => return Ok(()),
                Ok(n) => {
                    at += n as u64;
                    progress(n as u64);
                }
                Err(Errno::INTR) => {}
                Err(e) if unsupported(e) && at == start => {
                    NO_COPY_FILE_RANGE.store(e != Errno::XDEV, Ordering::Relaxed);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if at >= end {
            return Ok(());
        }
    }
    read_write(src, dst, at, end, progress, stop)
}

/// Copies a file that says it is empty: whatever it holds, read until its end (one small
/// read for a file that is empty indeed).
fn copy_unsized(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut first = [0u8; 4096];
    let n = loop {
        match rustix::io::pread(src, &mut first, 0) {
            Err(Errno::INTR) => {}
            other => break other?,
        }
    };
    if n == 0 {
        return Ok(());
    }
    write_all_at(dst, &first[..n], 0)?;
    progress(n as u64);
    read_write(src, dst, n as u64, u64::MAX, progress, stop)
}

/// Writes all of `buf` at `at`.
fn write_all_at(dst: BorrowedFd<'_>, buf: &[u8], at: u64) -> io::Result<()> {
    let mut written = 0;
    while written < buf.len() {
        match rustix::io::pwrite(dst, &buf[written..], at + written as u64) {
            Ok(w) => written += w,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The last rung of the ladder: `pread` into a large buffer, `pwrite` out, until `end` or
/// the end of the source.
fn read_write(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    mut at: u64,
    end: u64,
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER.min((end - at) as usize).max(1)];
    while at < end {
        if stop() {
            return Err(interrupted());
        }
        let want = ((end - at) as usize).min(buf.len());
        let n = match rustix::io::pread(src, &mut buf[..want], at) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        write_all_at(dst, &buf[..n], at)?;
        at += n as u64;
        progress(n as u64);
    }
    Ok(())
}

/// The error a stop request turns into.
pub fn interrupted() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "interrupted")
}

/// Whether two open files hold the same bytes, by xxh3-128 checksums of both, read back.
pub fn same_contents(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(checksum(a)? == checksum(b)?)
}

fn checksum(fd: BorrowedFd<'_>) -> io::Result<u128> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; BUFFER];
    let mut at = 0u64;
    loop {
        match rustix::io::pread(fd, &mut buf, at) {
            Ok(0) => return Ok(hasher.digest128()),
            Ok(n) => {
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
