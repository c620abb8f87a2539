//! The file-system work for one entry: the copy ladder (reflink, `copy_file_range`, read and
//! write), holes, metadata, extended attributes, and placing a finished file under its name.
//!
//! Every function here works relative to open directory descriptors, so a worker resolves a
//! directory's path once and not once per file.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, SeekFrom};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::meta::{Kind, Meta};

/// How to use copy-on-write clones (`--reflink`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Reflink {
    /// Clone where the file system can, copy elsewhere.
    Auto,
    /// Clone or fail.
    Always,
    /// Always copy the bytes.
    Never,
}

/// The options every copying process needs.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Options {
    pub reflink: Reflink,
    /// Follow symbolic links in the source (`-L`).
    pub dereference: bool,
    /// Keep a destination that is not older than its source (`-u/--update`, as `cp -u`).
    pub update: bool,
    /// Keep a destination whose size and modification time match its source's (`--resume`),
    /// and remove what a killed copy left.
    pub resume: bool,
    /// Re-read both sides of every copied file and compare checksums (`--verify`).
    pub verify: bool,
}

/// How many bytes one `copy_file_range` or read/write round moves at most: small enough to
/// notice a stop request and report progress often.
const ROUND: usize = 16 << 20;

/// The read/write fallback's buffer.
const BUFFER: usize = 1 << 20;

/// Set once FICLONE has failed as unsupported: no more attempts in this process.
static NO_REFLINK: AtomicBool = AtomicBool::new(false);
/// Set once `copy_file_range` has failed as unsupported.
static NO_COPY_FILE_RANGE: AtomicBool = AtomicBool::new(false);
/// Set once `O_TMPFILE` has failed as unsupported.
static NO_TMPFILE: AtomicBool = AtomicBool::new(false);
/// Set once `linkat(AT_EMPTY_PATH)` was refused (it needs CAP_DAC_READ_SEARCH).
static NO_EMPTY_PATH_LINK: AtomicBool = AtomicBool::new(false);
/// Set once `O_NOATIME` was refused (the source is not ours and we are not root).
static NO_NOATIME: AtomicBool = AtomicBool::new(false);

/// Opens a source file to read its bytes, in `dir` (or [`rfs::CWD`]). Where allowed, its
/// access time is left as it was (`O_NOATIME`): a copy does not change its source, and the
/// copy gets the source's times as they were. `follow`: the last component may be a link.
pub fn open_source(dir: BorrowedFd<'_>, path: &Path, follow: bool) -> rustix::io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    if !NO_NOATIME.load(Ordering::Relaxed) {
        match rfs::openat(dir, path, flags | OFlags::NOATIME, Mode::empty()) {
            Err(Errno::PERM) => NO_NOATIME.store(true, Ordering::Relaxed),
            other => return other,
        }
    }
    rfs::openat(dir, path, flags, Mode::empty())
}

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
    options: &Options,
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    if meta.size == 0 {
        return Ok(());
    }
    if try_reflink(src, dst, options.reflink)? {
        progress(meta.size);
        return Ok(());
    }
    // Setting the size first spares every write the cost of growing the file, and leaves
    // a sparse file's holes (a trailing one too) as holes.
    let sized_first = meta.size >= SIZE_FIRST || meta.is_sparse();
    if sized_first {
        rfs::ftruncate(dst, meta.size)?;
    }
    copy_span(src, dst, 0, meta.size, meta.is_sparse(), progress, stop)?;
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
/// only the data segments are copied (SEEK_DATA/SEEK_HOLE), so holes stay holes.
pub fn copy_span(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    start: u64,
    end: u64,
    sparse: bool,
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    if !sparse {
        return copy_range(src, dst, start, end, progress, stop);
    }
    let mut at = start;
    while at < end {
        let data = match rfs::seek(src, SeekFrom::Data(at)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break, // only a hole is left
            Err(e) if unsupported(e) => return copy_range(src, dst, at, end, progress, stop),
            Err(e) => return Err(e.into()),
        };
        if data >= end {
            break;
        }
        let hole = rfs::seek(src, SeekFrom::Hole(data))?.min(end);
        copy_range(src, dst, data, hole, progress, stop)?;
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

/// The last rung of the ladder: `pread` into a large buffer, `pwrite` out.
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
        let mut written = 0;
        while written < n {
            match rustix::io::pwrite(dst, &buf[written..n], at + written as u64) {
                Ok(w) => written += w,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
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

/// This process's effective user and group, asked once.
fn identity() -> (rfs::Uid, rfs::Gid) {
    static IDS: std::sync::OnceLock<(rfs::Uid, rfs::Gid)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| (rustix::process::geteuid(), rustix::process::getegid()))
}

/// Whether this process may give files away (`chown` to any owner).
pub fn is_root() -> bool {
    identity().0.is_root()
}

/// Sets owner, mode, extended attributes and times of an open copy, in the order that keeps
/// each: owner first (it clears setuid bits), mode (unless `created` vouches for it: a
/// default ACL on the destination may mask the mode a file is created with), attributes,
/// times last. Owner and attributes are kept where permitted, as `cp -a` does. Without
/// `created`, the copy is asked what it is.
pub fn apply_file_meta(
    dst: BorrowedFd<'_>,
    src: Option<BorrowedFd<'_>>,
    meta: &Meta,
    created: Option<Created>,
) -> io::Result<()> {
    let created = match created {
        Some(c) => c,
        None => {
            let st = rfs::fstat(dst)?;
            Created {
                owner: (st.st_uid, st.st_gid),
                mode: None,
            }
        }
    };
    let mode = set_owner(|uid, gid| rfs::fchown(dst, uid, gid), created.owner, meta)?;
    if created.mode != Some(mode) {
        rfs::fchmod(dst, Mode::from_raw_mode(mode))?;
    }
    if let Some(src) = src {
        copy_xattrs_fd(src, dst);
    }
    rfs::futimens(dst, &meta.timestamps())?;
    Ok(())
}

/// What a file just created in a directory is known to be, without asking (see
/// [`Created::in_dir`]).
#[derive(Clone, Copy, Debug)]
pub struct Created {
    /// Its owner and group.
    pub owner: (u32, u32),
    /// Its mode, if certain (no default ACL in the directory to mask it).
    pub mode: Option<u32>,
}

impl Created {
    /// What a file created with `mode` (under umask 0) in the directory `dir` (at `path`) is:
    /// ours, of the directory's group if it is setgid, with its mode unless the directory has
    /// a default ACL. Asked once per directory, not once per file. Also returns what `dir`
    /// itself is (its owner; its mode is not vouched for).
    pub fn in_dir(
        dir: BorrowedFd<'_>,
        path: &Path,
    ) -> io::Result<(Created, impl Fn(u32) -> Created)> {
        let st = rfs::fstat(dir)?;
        let itself = Created {
            owner: (st.st_uid, st.st_gid),
            mode: None,
        };
        let (euid, egid) = identity();
        let gid = if st.st_mode & libc::S_ISGID != 0 {
            st.st_gid
        } else {
            egid.as_raw()
        };
        let name = c"system.posix_acl_default";
        // An `O_PATH` descriptor cannot be asked: the path is, then.
        let acl = match rfs::fgetxattr(dir, name, &mut [0u8; 0][..]) {
            Err(Errno::BADF) => rfs::lgetxattr(path, name, &mut [0u8; 0][..]),
            other => other,
        };
        let plain = matches!(acl, Err(Errno::NODATA | Errno::OPNOTSUPP));
        let owner = (euid.as_raw(), gid);
        let created = move |mode: u32| Created {
            owner,
            mode: plain.then_some(mode),
        };
        Ok((itself, created))
    }
}

/// Gives a copy owned by `now` (uid, gid) its source's owner and group where permitted, and
/// returns the mode it may then have: without the source's owner no setuid bit, without its
/// group no setgid bit (as `cp -a`: a copy must not gain powers under another owner).
fn set_owner(
    chown: impl Fn(Option<rfs::Uid>, Option<rfs::Gid>) -> rustix::io::Result<()>,
    now: (u32, u32),
    meta: &Meta,
) -> io::Result<u32> {
    let root = identity().0.is_root();
    let want_uid = (root && meta.uid != now.0).then(|| rfs::Uid::from_raw(meta.uid));
    let want_gid = (meta.gid != now.1).then(|| rfs::Gid::from_raw(meta.gid));
    let (mut uid_kept, mut gid_kept) = (meta.uid == now.0, meta.gid == now.1);
    if want_uid.is_some() || want_gid.is_some() {
        match chown(want_uid, want_gid) {
            Ok(()) => (uid_kept, gid_kept) = (uid_kept || root, true),
            Err(Errno::PERM | Errno::ACCESS) => {
                // The group alone may still be allowed (one of ours).
                if want_uid.is_some() && want_gid.is_some() && chown(None, want_gid).is_ok() {
                    gid_kept = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut mode = meta.mode;
    if !uid_kept {
        mode &= !libc::S_ISUID;
    }
    if !gid_kept {
        mode &= !libc::S_ISGID;
    }
    Ok(mode)
}

/// Copies the extended attributes (ACLs included) an open file has, ignoring those this
/// process or the destination's file system may not set.
fn copy_xattrs_fd(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) {
    copy_xattrs(
        || rfs::flistxattr_query(src),
        |buf| rfs::flistxattr(src, buf),
        |name, buf| rfs::fgetxattr(src, name, buf),
        |name, value| rfs::fsetxattr(dst, name, value, rfs::XattrFlags::empty()),
    );
}

/// Copies the extended attributes of `src` (a path, not followed) onto `dst`.
fn copy_xattrs_path(src: &Path, dst: &Path) {
    copy_xattrs(
        || rfs::llistxattr_query(src),
        |buf| rfs::llistxattr(src, buf),
        |name, buf| rfs::lgetxattr(src, name, buf),
        |name, value| rfs::lsetxattr(dst, name, value, rfs::XattrFlags::empty()),
    );
}

/// Reads with `read` into a buffer of `size` bytes, grown while the answer does not fit
/// (ERANGE).
fn read_growing(
    size: usize,
    mut read: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size.max(1)];
    loop {
        match read(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < 64 << 20 => {
                let bigger = buf.len() * 4;
                buf.resize(bigger, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The attribute copy itself, over sizing, listing, reading and setting functions.
/// Attributes that cannot be read or set (no permission, not supported there) are skipped,
/// as `cp -a` does. The list's size is asked first: most files have no attributes, and then
/// nothing is allocated, not even by the kernel.
fn copy_xattrs(
    list_size: impl FnOnce() -> rustix::io::Result<usize>,
    list: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    mut get: impl FnMut(&CStr, &mut [u8]) -> rustix::io::Result<usize>,
    mut set: impl FnMut(&CStr, &[u8]) -> rustix::io::Result<()>,
) {
    let size = match list_size() {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    let Ok(names) = read_growing(size, list) else {
        return;
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = CString::new(name) else {
            continue;
        };
        if let Ok(value) = read_growing(256, |buf| get(&name, buf)) {
            let _ = set(&name, &value);
        }
    }
}

/// Sets a directory's owner, mode, attributes and times, once everything inside it is
/// written (a read-only directory can then still be filled).
pub fn apply_dir_meta(src: &Path, dst: &Path, meta: &Meta) -> io::Result<()> {
    let now = rfs::lstat(dst)?;
    if FileType::from_raw_mode(now.st_mode) != FileType::Directory {
        return Err(io::Error::other("no longer a directory"));
    }
    let mode = set_owner(|u, g| rfs::chown(dst, u, g), (now.st_uid, now.st_gid), meta)?;
    copy_xattrs_path(src, dst);
    rfs::chmod(dst, Mode::from_raw_mode(mode))?;
    rfs::utimensat(rfs::CWD, dst, &meta.timestamps(), AtFlags::empty())?;
    Ok(())
}

/// [`apply_dir_meta`] through open descriptors of both directories (`dst` readable, not
/// `O_PATH`; `itself` what it is, as [`Created::in_dir`] found): nothing is looked up by path.
pub fn apply_open_dir_meta(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    meta: &Meta,
    itself: Created,
) -> io::Result<()> {
    apply_file_meta(dst, Some(src), meta, Some(itself))
}

/// Sets owner, mode and times of a link or special file by name (not followed), which this
/// process has just made: `owner` is its owner and group (see [`Created`]).
pub fn apply_node_meta(
    dir: BorrowedFd<'_>,
    name: &Path,
    meta: &Meta,
    owner: (u32, u32),
) -> io::Result<()> {
    let mode = set_owner(
        |u, g| rfs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW),
        owner,
        meta,
    )?;
    if meta.kind != Kind::Symlink {
        rfs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())?;
    }
    rfs::utimensat(dir, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// A file being written where nobody sees it yet: an anonymous `O_TMPFILE` inode, a hidden
/// temporary name (where the file system has no `O_TMPFILE`), or its own name inside a
/// directory that is itself still hidden. [`Staged::discard`] removes a name it made.
pub struct Staged<'n> {
    pub fd: OwnedFd,
    name: StagedName<'n>,
}

/// Where a [`Staged`] file is.
enum StagedName<'n> {
    /// Nowhere yet: an `O_TMPFILE` inode.
    Anonymous,
    /// Under a temporary name, renamed into place.
    Temporary(PathBuf),
    /// Under its own name in a hidden directory: in place already.
    Final(&'n Path),
}

/// Counts temporary names made by this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden name for a temporary file or directory, unique to this process.
pub fn temp_name() -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(format!(".mp-copy-{}-{n}.tmp", std::process::id()))
}

/// The process a temporary name of this copier belongs to: `.mp-copy-PID-N.tmp`, or a small
/// leaf's `.mp-copy-PID-N.tmp.K`. `None` for any other name.
pub fn temp_name_owner(name: &[u8]) -> Option<i32> {
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let rest = name.strip_prefix(b".mp-copy-")?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let (pid, rest) = (&rest[..dash], &rest[dash + 1..]);
    let dot = rest.iter().position(|&b| b == b'.')?;
    let (n, rest) = (&rest[..dot], &rest[dot..]);
    let tail = rest.strip_prefix(b".tmp")?;
    let leaf_ok = tail.is_empty() || tail.strip_prefix(b".").is_some_and(digits);
    if !(digits(pid) && digits(n) && leaf_ok) {
        return None;
    }
    std::str::from_utf8(pid).ok()?.parse().ok()
}

/// Removes from the directory `dir` (at `path`) what copies killed before they could finish
/// left there: entries under this copier's temporary names whose process is gone. A
/// directory it cannot read is left alone.
pub fn remove_stale_temps(dir: BorrowedFd<'_>, path: &Path) {
    let Ok(listing) = open_dir_at(dir, Path::new("."), true, true) else {
        return;
    };
    let mut stale = Vec::new();
    let mut buf = Vec::with_capacity(8 << 10);
    let mut entries = rfs::RawDir::new(&listing, buf.spare_capacity_mut());
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name().to_bytes();
        let Some(pid) = temp_name_owner(name) else {
            continue;
        };
        let gone = pid > 0
            && rustix::process::Pid::from_raw(pid)
                .is_some_and(|p| rustix::process::test_kill_process(p) == Err(Errno::SRCH));
        if gone {
            stale.push(PathBuf::from(std::ffi::OsStr::from_bytes(name)));
        }
    }
    for name in stale {
        if let Err(Errno::ISDIR | Errno::PERM) = rfs::unlinkat(dir, &name, AtFlags::empty()) {
            let _ = std::fs::remove_dir_all(path.join(&name));
        }
    }
}

/// Makes an entry with `make` under a fresh temporary name in `dir`, then renames it over
/// `name`: whatever `name` was is replaced at once, never missing or half made.
pub fn make_and_rename(
    dir: BorrowedFd<'_>,
    name: &Path,
    make: impl FnOnce(BorrowedFd<'_>, &Path) -> rustix::io::Result<()>,
) -> io::Result<()> {
    let temp = temp_name();
    make(dir, &temp)?;
    rename_into_place(dir, &temp, name)
}

/// Renames `temp` over `name` in `dir`; if that fails, `temp` is removed.
fn rename_into_place(dir: BorrowedFd<'_>, temp: &Path, name: &Path) -> io::Result<()> {
    rfs::renameat(dir, temp, dir, name).map_err(|e| {
        let _ = rfs::unlinkat(dir, temp, AtFlags::empty());
        e.into()
    })
}

/// Renames `from` to `to` in `dir` (or [`rfs::CWD`]) unless `to` exists
/// (`ErrorKind::AlreadyExists` then). Where the file system cannot promise that, a plain
/// rename, which still never replaces a directory that holds anything.
pub fn rename_no_replace_at(dir: BorrowedFd<'_>, from: &Path, to: &Path) -> io::Result<()> {
    match rfs::renameat_with(dir, from, dir, to, rfs::RenameFlags::NOREPLACE) {
        Err(Errno::INVAL | Errno::NOSYS) => Ok(rfs::renameat(dir, from, dir, to)?),
        other => Ok(other?),
    }
}

impl<'n> Staged<'n> {
    /// Creates an empty file in `dir` with `mode`, readable back when `readable`.
    pub fn create(dir: BorrowedFd<'_>, mode: u32, readable: bool) -> io::Result<Staged<'n>> {
        let access = access(readable);
        let mode = Mode::from_raw_mode(mode & 0o777);
        if !NO_TMPFILE.load(Ordering::Relaxed) {
            match rfs::openat(dir, c".", OFlags::TMPFILE | access | OFlags::CLOEXEC, mode) {
                Ok(fd) => {
                    return Ok(Staged {
                        fd,
                        name: StagedName::Anonymous,
                    })
                }
                Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {
                    NO_TMPFILE.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let name = temp_name();
        let fd = create_new(dir, &name, access, mode)?;
        Ok(Staged {
            fd,
            name: StagedName::Temporary(name),
        })
    }

    /// Creates the empty file `name` in `dir`, a hidden directory that nobody sees yet.
    pub fn create_in_hidden(
        dir: BorrowedFd<'_>,
        name: &'n Path,
        mode: u32,
        readable: bool,
    ) -> io::Result<Staged<'n>> {
        let mode = Mode::from_raw_mode(mode & 0o777);
        let fd = create_new(dir, name, access(readable), mode)?;
        Ok(Staged {
            fd,
            name: StagedName::Final(name),
        })
    }

    /// Gives the finished file its name in `dir`, replacing what was there. Nobody ever sees
    /// a partial file under `name`.
    pub fn place(mut self, dir: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
        match std::mem::replace(&mut self.name, StagedName::Anonymous) {
            StagedName::Final(_) => Ok(()),
            StagedName::Temporary(temp) => rename_into_place(dir, &temp, name),
            StagedName::Anonymous => match link_anonymous(self.fd.as_fd(), dir, name) {
                // Replace: link under a temporary name, then rename over the old file.
                Err(Errno::EXIST) => make_and_rename(dir, name, |d, temp| {
                    link_anonymous(self.fd.as_fd(), d, temp)
                }),
                other => Ok(other?),
            },
        }
    }

    /// Throws the unfinished file away.
    pub fn discard(self, dir: BorrowedFd<'_>) {
        let name = match &self.name {
            StagedName::Temporary(name) => name.as_path(),
            StagedName::Final(name) => name,
            StagedName::Anonymous => return,
        };
        let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    }
}

/// Fills the staged copy `staged` of the open source `src` (of metadata `meta`): its bytes,
/// a check of them under `--verify`, then its metadata (see [`apply_file_meta`]); then gives
/// it `name` in `dir`. A copy that fails leaves nothing behind.
#[allow(clippy::too_many_arguments)]
pub fn fill_and_place(
    staged: Staged<'_>,
    src: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &Path,
    meta: &Meta,
    options: &Options,
    created: Option<Created>,
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    let result = (|| {
        copy_contents(src, staged.fd.as_fd(), meta, options, progress, stop)?;
        if options.verify && !same_contents(src, staged.fd.as_fd())? {
            return Err(io::Error::other("verification failed: the copy differs"));
        }
        apply_file_meta(staged.fd.as_fd(), Some(src), meta, created)
    })();
    match result {
        Ok(()) => staged.place(dir, name),
        Err(e) => {
            staged.discard(dir);
            Err(e)
        }
    }
}

/// Copies the regular file `src` (a link is followed) to `dst`, replacing what is there,
/// from paths rather than open directories: for the coordinator's rare copies (see
/// `Coordinator::link_reached`). `stop` is asked between rounds. Gives the bytes copied.
pub fn copy_file_to(
    src: &Path,
    dst: &Path,
    options: &Options,
    stop: &dyn Fn() -> bool,
) -> io::Result<u64> {
    let Some(name) = dst.file_name() else {
        return Err(io::Error::other("no file name to copy to"));
    };
    let dir = open_dir(dir_above(dst), false)?;
    let src = open_source(rfs::CWD, src, true)?;
    let meta = Meta::from_stat(&rfs::fstat(&src)?);
    if meta.kind != Kind::File {
        return Err(io::Error::other("not a regular file any more"));
    }
    let staged = Staged::create(dir.as_fd(), meta.mode, options.verify)?;
    let (name, no_progress) = (Path::new(name), &mut |_| {});
    fill_and_place(
        staged,
        src.as_fd(),
        dir.as_fd(),
        name,
        &meta,
        options,
        None,
        no_progress,
        stop,
    )?;
    Ok(meta.size)
}

/// Write access, and read access too when `readable`.
fn access(readable: bool) -> OFlags {
    if readable {
        OFlags::RDWR
    } else {
        OFlags::WRONLY
    }
}

/// Creates the file `name` in `dir`, which must not exist yet.
fn create_new(dir: BorrowedFd<'_>, name: &Path, access: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let flags = OFlags::CREATE | OFlags::EXCL | access | OFlags::CLOEXEC;
    Ok(rfs::openat(dir, name, flags, mode)?)
}

/// Links an `O_TMPFILE` inode into `dir` as `name`.
fn link_anonymous(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &Path) -> rustix::io::Result<()> {
    if !NO_EMPTY_PATH_LINK.load(Ordering::Relaxed) {
        match rfs::linkat(fd, c"", dir, name, AtFlags::EMPTY_PATH) {
            Err(Errno::PERM | Errno::NOENT | Errno::ACCESS) => {
                NO_EMPTY_PATH_LINK.store(true, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    rfs::linkat(
        rfs::CWD,
        proc_path.as_str(),
        dir,
        name,
        AtFlags::SYMLINK_FOLLOW,
    )
}

/// The directory `path` is in: its parent, or `.` for a bare name.
pub fn dir_above(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether `path` is a real directory (not a link to one).
pub fn is_real_dir(path: &Path) -> bool {
    is_real_dir_at(rfs::CWD, path)
}

/// Whether `name` in `dir` is a real directory (not a link to one).
pub fn is_real_dir_at(dir: BorrowedFd<'_>, name: &Path) -> bool {
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// Opens a directory for `*at` calls: to be listed (`readable`, which needs read permission)
/// or only to be worked in (`O_PATH`: search permission is enough, as for `cp`).
pub fn open_dir(path: &Path, readable: bool) -> io::Result<OwnedFd> {
    open_dir_at(rfs::CWD, path, readable, true)
}

/// [`open_dir`] of `name` in `dir`; `follow`: `name` may be a link to a directory.
pub fn open_dir_at(
    dir: BorrowedFd<'_>,
    name: &Path,
    readable: bool,
    follow: bool,
) -> io::Result<OwnedFd> {
    let access = if readable {
        OFlags::RDONLY
    } else {
        OFlags::PATH
    };
    let follow = if follow {
        OFlags::empty()
    } else {
        OFlags::NOFOLLOW
    };
    Ok(rfs::openat(
        dir,
        name,
        access | follow | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_tell_their_process() {
        let mine = temp_name();
        let me = std::process::id() as i32;
        assert_eq!(temp_name_owner(mine.as_os_str().as_bytes()), Some(me));
        assert_eq!(temp_name_owner(b".mp-copy-12-3.tmp"), Some(12));
        assert_eq!(temp_name_owner(b".mp-copy-12-3.tmp.40"), Some(12));
        for other in [
            &b"file"[..],
            b".mp-copy-12-3.tmp.",
            b".mp-copy-12-3.tmpx",
            b".mp-copy-12-3.tmp.4x",
            b".mp-copy--3.tmp",
            b".mp-copy-12-.tmp",
            b".mp-copy-1a-3.tmp",
            b".mp-copy-12.tmp",
            b".mp-copy-99999999999999999999-3.tmp",
        ] {
            assert_eq!(temp_name_owner(other), None, "{}", other.escape_ascii());
        }
    }
}
