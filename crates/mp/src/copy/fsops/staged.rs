//! Placing a file under its name only once it is complete: a [`Staged`] file is written where
//! nobody sees it (an `O_TMPFILE` inode, a temporary name, or its own name in a hidden
//! directory), then linked or renamed into place; and replacing an entry at once
//! ([`make_and_rename`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::temp::temp_name;
use super::{
    apply_file_meta, copy_contents, dir_above, open_dir, open_source, same_contents, Created,
};
use crate::copy::config::Config;
use crate::copy::failure::{Doing, Op};
use crate::copy::meta::{Kind, Meta};

/// Set once `O_TMPFILE` has failed as unsupported.
static NO_TMPFILE: AtomicBool = AtomicBool::new(false);
/// Set once `linkat(AT_EMPTY_PATH)` was refused (it needs CAP_DAC_READ_SEARCH).
static NO_EMPTY_PATH_LINK: AtomicBool = AtomicBool::new(false);

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

/// Replaces `dst` by a hard link to `first`: linked under a temporary name beside it, then
/// renamed over it.
pub fn link_over(first: &Path, dst: &Path) -> io::Result<()> {
    let Some(name) = dst.file_name() else {
        return Err(io::Error::other("no directory to link in"));
    };
    let dir = open_dir(dir_above(dst), false)?;
    make_and_rename(dir.as_fd(), Path::new(name), |d, temp| {
        rfs::linkat(rfs::CWD, first, d, temp, AtFlags::empty())
    })
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
    config: &Config,
    created: Option<Created>,
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    let result = (|| {
        copy_contents(src, staged.fd.as_fd(), meta, config, progress, stop).doing(Op::Copy)?;
        if config.verify && !same_contents(src, staged.fd.as_fd()).doing(Op::Verify)? {
            let differs = io::Error::other("the copy differs from its source");
            return Err(differs).doing(Op::Verify);
        }
        apply_file_meta(staged.fd.as_fd(), Some(src), meta, created).doing(Op::Attrs)
    })();
    match result {
        Ok(()) => staged.place(dir, name).doing(Op::Place),
        Err(e) => {
            staged.discard(dir);
            Err(e)
        }
    }
}

/// Copies the regular file `src` (a link is followed) to `dst`, replacing what is there,
/// from paths rather than open directories: for the rare copies of the `-L` link pass (see
/// `dereference.rs`). `stop` is asked between rounds. Gives the bytes copied.
pub fn copy_file_to(
    src: &Path,
    dst: &Path,
    config: &Config,
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
    let staged = Staged::create(dir.as_fd(), meta.mode, config.verify)?;
    let (name, no_progress) = (Path::new(name), &mut |_| {});
    fill_and_place(
        staged,
        src.as_fd(),
        dir.as_fd(),
        name,
        &meta,
        config,
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
