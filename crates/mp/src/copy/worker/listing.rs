//! Listing a source directory: its names (`getdents`), then a snapshot of each entry, taken
//! through the file itself when the listing opens it for the copy to read.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags};
use rustix::io::Errno;

use super::{config, state, BATCH_BYTES, BATCH_ENTRIES};
use crate::copy::exclude::below_source;
use crate::copy::fsops;
use crate::copy::ids::FileId;
use crate::copy::meta::{Entry, Failure, Kind, Meta, RawPath};
use crate::copy::protocol::{for_coordinator, DirReport, DirTask};

/// The names in the open directory `dir` (freshly opened, at offset 0: read through it, not
/// a reopened copy), with their types as the listing gives them; `None` past `most` names.
pub(super) fn read_names(
    dir: &OwnedFd,
    most: usize,
) -> io::Result<Option<Vec<(PathBuf, rfs::FileType)>>> {
    let mut names = Vec::new();
    let mut buf = [std::mem::MaybeUninit::uninit(); 32 << 10];
    let mut raw = rfs::RawDir::new(dir, &mut buf);
    while let Some(item) = raw.next() {
        let item = item?;
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if names.len() == most {
            return Ok(None);
        }
        let name = PathBuf::from(std::ffi::OsStr::from_bytes(name));
        names.push((name, item.file_type()));
    }
    Ok(Some(names))
}

/// How much of a directory [`list`] is to read.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Listing {
    /// Every entry.
    All,
    /// Every entry of a small leaf, or nothing as soon as the directory is not one (see
    /// `leaves.rs`): more entries or bytes than one batch, a subdirectory, an entry
    /// for the coordinator. A huge leaf is not looked at twice, then: its names are counted
    /// before any is statted.
    SmallLeaf,
}

/// Reads a directory's entries with their metadata; `None` if it is not what `listing` asks
/// for.
pub(super) fn list(
    src: &OwnedFd,
    src_path: &Path,
    task: &DirTask,
    listing: Listing,
    report: &mut DirReport,
) -> io::Result<Option<Vec<Entry>>> {
    if beyond_file_system(task.ancestors.last(), &task.meta) {
        return Ok(Some(Vec::new()));
    }
    let small_only = listing == Listing::SmallLeaf;
    let most = if small_only {
        BATCH_ENTRIES
    } else {
        usize::MAX
    };
    let Some(names) = read_names(src, most)? else {
        return Ok(None);
    };
    let open = open_as_listed(names.len(), task.parent_made);
    let follow = config().dereference;
    let left_out = left_out(task);
    let mut entries = Vec::with_capacity(names.len());
    let mut bytes = 0;
    for (name, file_type) in names {
        // Whether it is a directory, where the listing says (not for a link followed).
        let listed_dir = match file_type {
            rfs::FileType::Directory => Some(true),
            rfs::FileType::Unknown => None,
            rfs::FileType::Symlink if follow => None,
            _ => Some(false),
        };
        if listed_dir.is_some_and(|is_dir| left_out(&name, is_dir)) {
            continue;
        }
        let (meta, source) = match look(src.as_fd(), &name, file_type, open, follow) {
            Ok(found) => found,
            Err(e) => {
                report
                    .tally
                    .failures
                    .push(Failure::new(&src_path.join(&name), io::Error::from(e)));
                continue;
            }
        };
        if listed_dir.is_none() && left_out(&name, meta.kind == Kind::Dir) {
            continue;
        }
        if small_only {
            bytes += meta.size;
            // Two entries or more over BATCH_BYTES never fit in one batch.
            let too_big = !entries.is_empty() && bytes > BATCH_BYTES;
            if meta.kind == Kind::Dir || for_coordinator(&meta, config()) || too_big {
                return Ok(None);
            }
        }
        if meta.kind == Kind::Dir
            && (task.ancestors.contains(&meta.id()) || task.meta.id() == meta.id())
        {
            report.tally.failures.push(Failure::new(
                &src_path.join(&name),
                "a symbolic link loop: not followed again",
            ));
            continue;
        }
        entries.push(Entry {
            name: RawPath(name),
            meta,
            source,
        });
    }
    Ok(Some(entries))
}

/// Whether `--exclude` leaves out the entry `name` (a directory if `is_dir`) of the
/// directory of `task`: matched by its path below its SOURCE, which is as many levels
/// down as the directory has ancestors (see `exclude.rs`).
pub(super) fn left_out(task: &DirTask) -> impl Fn(&Path, bool) -> bool + '_ {
    let exclude = &state().exclude;
    let below = exclude
        .any()
        .then(|| below_source(task.src.path(), task.ancestors.len()));
    move |name, is_dir| {
        below
            .as_ref()
            .is_some_and(|below| exclude.excludes(&below.join(name), is_dir))
    }
}

/// Whether the directory `dir`, in `parent`, is on another file system under
/// `-x/--one-file-system`: its copy is made, empty, as `cp -x` makes it. A top-level source
/// (no parent) is always copied whole.
pub(super) fn beyond_file_system(parent: Option<&FileId>, dir: &Meta) -> bool {
    config().one_file_system && parent.is_some_and(|p| p.dev != dir.dev)
}

/// Listings of at most this many names (in a directory, or in a small tree) open their
/// regular files as they look at them, for the copy to read (see [`look`]). A larger
/// directory's files are mostly copied by other tasks; and this bounds the descriptors a
/// task holds (less where the process may hold fewer than four times this many). The pool's
/// workers, daemonic processes, have room for 1000 descriptors from their start: holding
/// these never makes their table grow, which would stall them.
pub(super) const OPEN_AS_LISTED: usize = 512;

/// Whether a listing of `count` names (a directory's, or a small tree's) opens its files as
/// it looks at them (see [`look`]): not past [`OPEN_AS_LISTED`], nor where the copies may
/// exist already and `--update` or `--resume` skip them (`new`: nothing can be there yet).
pub(super) fn open_as_listed(count: usize, new: bool) -> bool {
    count <= state().open_as_listed && (new || !config().keeps_existing())
}

/// Looks at `name` in `dir` (a `file_type`, as the listing says) for its snapshot. When
/// `open`, a regular file is opened and its snapshot taken through the descriptor, which is
/// returned for the copy to read (unless the entry goes to the coordinator): its name is
/// looked up once, not twice (a stat by name, then an open). Anything else, or a file that
/// cannot be opened (its copy then says why), is statted by name: followed under `follow`,
/// where a dangling link is taken as the link it is.
pub(super) fn look(
    dir: BorrowedFd<'_>,
    name: &Path,
    file_type: rfs::FileType,
    open: bool,
    follow: bool,
) -> rustix::io::Result<(Meta, Option<OwnedFd>)> {
    if open && file_type == rfs::FileType::RegularFile {
        let opened = fsops::open_source(dir, name, false)
            .and_then(|fd| rfs::fstat(&fd).map(|st| (Meta::from_stat(&st), fd)));
        match opened {
            Ok((meta, _)) if for_coordinator(&meta, config()) => return Ok((meta, None)),
            Ok((meta, fd)) => return Ok((meta, Some(fd))),
            Err(_) => {}
        }
    }
    let flags = if follow {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let stat = rfs::statat(dir, name, flags).or_else(|e| match e {
        Errno::NOENT if follow => rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
        e => Err(e),
    })?;
    Ok((Meta::from_stat(&stat), None))
}
