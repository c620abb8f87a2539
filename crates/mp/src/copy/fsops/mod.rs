//! File-system primitives both sides of a copy call, each relative to open directory
//! descriptors where it can (a worker resolves a directory's path once, not once per file):
//!
//! - `contents.rs`: the copy ladder for a file's bytes (reflink, `copy_file_range`, read and
//!   write), holes, checksums;
//! - `attrs.rs`: owners, modes, extended attributes and times;
//! - `staged.rs`: a file written where nobody sees it, then placed under its name whole;
//! - `temp.rs`: the copier's temporary names, and removing a killed copy's leftovers;
//! - here: opening sources and directories, and paths.
//!
//! Nothing here decides anything about a copy (what to replace, what to skip): that is the
//! engine's (`replace.rs`, the coordinator, the workers).

mod attrs;
mod contents;
mod staged;
mod temp;

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

pub use attrs::{
    apply_dir_meta, apply_file_meta, apply_node_meta, apply_open_dir_meta, is_root, Created,
};
pub use contents::{copy_contents, copy_span, same_contents, trim_to_source, try_reflink};
pub use staged::{
    copy_file_to, fill_and_place, link_over, make_and_rename, rename_no_replace_at, Staged,
};
pub use temp::{remove_inline_leaves, remove_stale_temps, remove_unfinished, temp_name};

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
