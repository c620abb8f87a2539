//! Copying the entries of one directory (a batch, or what a directory's task copies
//! itself): each file through a staged copy placed whole under its name, links and special
//! files made anew, what is at a destination judged first (`replace.rs`), and under `-L` the
//! claims of files reached by several names (`dereference.rs`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode};
use rustix::io::Errno;

use super::{config, state, stop_asked, Reporter, BATCH_BYTES, BATCH_ENTRIES};
use crate::copy::dereference::{self, Claim};
use crate::copy::failure::{Doing, Op};
use crate::copy::fsops::{self, Staged};
use crate::copy::ids::CopyId;
use crate::copy::meta::{Entry, Failure, Kind, Meta, RawPath};
use crate::copy::protocol::{BatchTask, ClaimedTask, Counts, Tally};
use crate::copy::quote::quote;
use crate::copy::replace::{self, Verdict};
use crate::copy::stop::Stop;

/// What is at the destination `dst_name` (in `dirs.dst`) of `entry`, and what to do about
/// it (see [`replace::judge_at`]): `None` when nothing is there. Also what is there before
/// a name another claimed is linked there later (see `dereference.rs`).
pub(super) fn judge(
    dirs: &Dirs,
    entry: &Entry,
    dst_name: &Path,
) -> io::Result<Option<(Meta, Verdict)>> {
    replace::judge_at(
        (dirs.dst.as_fd(), dst_name),
        (dirs.src.as_fd(), entry.name.path()),
        &entry.meta,
        config(),
        || {
            let src = dirs.src_path.join(entry.name.path());
            (src, dirs.dst_path.join(dst_name))
        },
    )
}

/// The open directories a task works in.
pub(super) struct Dirs {
    pub(super) src: OwnedFd,
    pub(super) dst: OwnedFd,
    pub(super) src_path: PathBuf,
    /// Where `dst` is now (under a hidden name, while it is hidden).
    pub(super) dst_path: PathBuf,
    pub(super) existed: bool,
    /// `dst` is a hidden directory this copy made, or inside one: files are created under
    /// their own names.
    pub(super) direct: bool,
    /// `dst` was opened to be read (not `O_PATH`): its metadata can be set through it.
    pub(super) dst_readable: bool,
    /// What a file created in `dst` with a given mode is...
    pub(super) created: Box<dyn Fn(u32) -> fsops::Created>,
    /// ... and what `dst` itself is.
    pub(super) itself: fsops::Created,
}

impl Dirs {
    /// Works in the open destination directory `dst` (at `dst_path`) beside the open source
    /// `src`.
    pub(super) fn new(
        src: OwnedFd,
        src_path: &Path,
        dst: OwnedFd,
        dst_path: &Path,
        existed: bool,
        direct: bool,
    ) -> io::Result<Dirs> {
        let (itself, created) = fsops::Created::in_dir(dst.as_fd(), dst_path)?;
        Ok(Dirs {
            src,
            dst,
            src_path: src_path.to_path_buf(),
            dst_path: dst_path.to_path_buf(),
            existed,
            direct,
            dst_readable: false,
            created: Box::new(created),
            itself,
        })
    }

    /// Gives the link or special file `dst_name` just made here the metadata of its source
    /// `entry` (see [`fsops::apply_node_meta`]).
    fn apply_node_meta(&self, entry: &Entry, dst_name: &Path) -> io::Result<()> {
        let src = self.src_path.join(entry.name.path());
        let dst = self.dst_path.join(dst_name);
        let owner = (self.created)(0).owner;
        let at = (self.dst.as_fd(), dst_name);
        let from = (src.as_path(), config().dereference);
        fsops::apply_node_meta(at, from, &dst, &entry.meta, owner)
    }

    /// Opens the source directory `src` and the destination directory `dst` by path (as a
    /// batch or a bundle of leaves does) and works in them.
    pub(super) fn open(src: &Path, dst: &Path, existed: bool, direct: bool) -> io::Result<Dirs> {
        let src_fd = fsops::open_dir(src, false)?;
        let dst_fd = fsops::open_dir(dst, false).map_err(cannot_open)?;
        Dirs::new(src_fd, src, dst_fd, dst, existed, direct)
    }
}

/// Tells an error opening a destination directory what it was (see [`Op::OpenDest`]): the
/// message names the user's path, not the one opened (which may be hidden).
pub(super) fn cannot_open(e: io::Error) -> io::Error {
    Err::<(), _>(e).doing(Op::OpenDest).unwrap_err()
}

/// Splits entries into batches of at most [`BATCH_ENTRIES`] entries and [`BATCH_BYTES`]
/// bytes (a larger file alone).
pub(super) fn batches(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut out: Vec<Vec<Entry>> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = entry.meta.size;
        match out.last_mut() {
            Some(batch) if batch.len() < BATCH_ENTRIES && bytes + size <= BATCH_BYTES => {
                bytes += size;
                batch.push(entry);
            }
            _ => {
                bytes = size;
                out.push(vec![entry]);
            }
        }
    }
    out
}

/// Copies a batch of entries of one directory.
pub fn copy_batch(task: BatchTask) -> Tally {
    let mut report = Tally::default();
    let src_dir = task.src_dir.path();
    let dst_dir = task.dst_dir.path();
    let dirs = match Dirs::open(src_dir, dst_dir, task.existed, task.hidden) {
        Ok(d) => d,
        Err(e) => {
            for entry in &task.entries {
                let path = task.src_dir.path().join(entry.name.path());
                report.failures.push(Failure::io(&path, &e));
            }
            return report;
        }
    };
    let mut reporter = Reporter::new();
    copy_entries(
        &dirs,
        task.entries,
        task.rename.as_ref(),
        &mut report,
        &mut reporter,
    );
    report
}

/// Copies entries of one directory, stopping at a stop request or a full disk. Each entry
/// goes (its file closed, if the listing opened it) once copied.
pub(super) fn copy_entries(
    dirs: &Dirs,
    entries: Vec<Entry>,
    rename: Option<&RawPath>,
    report: &mut Tally,
    reporter: &mut Reporter,
) {
    let claims = state().claims.as_ref();
    for entry in entries {
        if stop_asked() {
            report.stopped = Some(Stop::Interrupted);
            return;
        }
        let dst_name = rename.unwrap_or(&entry.name).path();
        let meta = &entry.meta;
        // Under `-L`, a file of one link may be reached by several names: only the first
        // copies it.
        let claim = dereference::claim(claims, meta);
        if claim == Some(Claim::Taken) {
            let source = dirs.src_path.join(entry.name.path());
            // In a new directory nothing was there before this copy.
            let found = match dirs.existed {
                true => judge(dirs, &entry, dst_name),
                false => Ok(None),
            };
            dereference::leave_to_claimer(found, source, meta, dst_name, report);
            reporter.file();
            continue;
        }
        match copy_entry(dirs, &entry, dst_name, &mut report.counts, reporter) {
            // `--update`: a later file is kept, and never linked over; nor is what
            // `--no-clobber` keeps.
            Ok(EntryDone::Kept(verdict)) if verdict.keeps_another() => {}
            Ok(done @ (EntryDone::Copied | EntryDone::Kept(_))) => {
                if done == EntryDone::Copied && config().verbose {
                    report
                        .copied
                        .push(RawPath::new(dirs.src_path.join(entry.name.path())));
                }
                if claim.is_some() {
                    let copy = rfs::statat(&dirs.dst, dst_name, AtFlags::SYMLINK_NOFOLLOW);
                    let copy = copy.map(|st| Meta::from_stat(&st)).map_err(io::Error::from);
                    let skipped = done != EntryDone::Copied;
                    dereference::note_copy(copy, meta, dst_name, skipped, report);
                }
            }
            Ok(EntryDone::Warning(warning)) => report.warnings.push(warning),
            Err(e) if e.kind() == io::ErrorKind::Interrupted && stop_asked() => {
                report.stopped = Some(Stop::Interrupted);
                return;
            }
            Err(e) => {
                let failure = Failure::io(&dirs.src_path.join(entry.name.path()), &e);
                if failure.disk_full {
                    report.stopped = Some(Stop::DiskFull(failure));
                    return;
                }
                report.failures.push(failure);
            }
        }
    }
}

/// What became of one entry (see [`copy_entry`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EntryDone {
    Copied,
    /// Left as it was: [`Verdict::UpToDate`], [`Verdict::Newer`] or [`Verdict::Exists`].
    Kept(Verdict),
    /// Skipped for a reason that is not a failure (a device without the right to create it).
    Warning(String),
}

/// Copies one entry, unless what is at its destination is to be kept; never onto the source
/// itself (see [`replace`]).
pub(super) fn copy_entry(
    dirs: &Dirs,
    entry: &Entry,
    dst_name: &Path,
    counts: &mut Counts,
    reporter: &mut Reporter,
) -> io::Result<EntryDone> {
    let meta = &entry.meta;
    let existing = match dirs.existed {
        true => judge(dirs, entry, dst_name)?,
        false => None,
    };
    let existing = match existing {
        Some((_, verdict)) if verdict.keeps() => {
            counts.skipped += 1;
            reporter.file();
            return Ok(EntryDone::Kept(verdict));
        }
        found => found.map(|(old, _)| old),
    };
    match meta.kind {
        Kind::File => {
            let bytes = copy_file(dirs, entry, dst_name, reporter)?;
            counts.files += 1;
            counts.bytes += bytes;
            reporter.file();
        }
        Kind::Symlink => {
            let target =
                rfs::readlinkat(&dirs.src, entry.name.path(), Vec::new()).doing(Op::ReadLink)?;
            replace_node(
                dirs.dst.as_fd(),
                dst_name,
                existing.is_some(),
                |dir, name| rfs::symlinkat(target.as_c_str(), dir, name),
            )
            .doing(Op::Symlink)?;
            dirs.apply_node_meta(entry, dst_name).doing(Op::Attrs)?;
            counts.symlinks += 1;
            reporter.file();
        }
        Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
            if matches!(meta.kind, Kind::CharDevice | Kind::BlockDevice) && !fsops::is_root() {
                return Ok(EntryDone::Warning(format!(
                    "skipped device {} (creating devices needs root)",
                    quote(&dirs.src_path.join(entry.name.path()))
                )));
            }
            let file_type = rfs::FileType::from_raw_mode(match meta.kind {
                Kind::Fifo => libc::S_IFIFO,
                Kind::Socket => libc::S_IFSOCK,
                Kind::CharDevice => libc::S_IFCHR,
                _ => libc::S_IFBLK,
            });
            replace_node(
                dirs.dst.as_fd(),
                dst_name,
                existing.is_some(),
                |dir, name| {
                    rfs::mknodat(
                        dir,
                        name,
                        file_type,
                        Mode::from_raw_mode(meta.mode & 0o777),
                        meta.rdev,
                    )
                },
            )
            .doing(Op::Special)?;
            dirs.apply_node_meta(entry, dst_name).doing(Op::Attrs)?;
            counts.specials += 1;
            reporter.file();
        }
        Kind::Dir => unreachable!("directories are walked, not copied as entries"),
    }
    Ok(EntryDone::Copied)
}

/// Creates a link or special file; over an existing entry, creates it under a temporary
/// name and renames it into place.
pub(super) fn replace_node(
    dir: BorrowedFd<'_>,
    name: &Path,
    exists: bool,
    make: impl Fn(BorrowedFd<'_>, &Path) -> rustix::io::Result<()>,
) -> io::Result<()> {
    if !exists {
        match make(dir, name) {
            Err(Errno::EXIST) => {}
            other => return Ok(other?),
        }
    }
    fsops::make_and_rename(dir, name, make)
}

/// Copies a regular file through a staged file: the name only ever shows a complete copy.
pub(super) fn copy_file(
    dirs: &Dirs,
    entry: &Entry,
    dst_name: &Path,
    reporter: &mut Reporter,
) -> io::Result<u64> {
    let config = config();
    let opened;
    let src = match &entry.source {
        Some(fd) => fd.as_fd(),
        None => {
            // Under -L the entry may be a link to a file.
            opened = fsops::open_source(dirs.src.as_fd(), entry.name.path(), config.dereference)
                .doing(Op::Open)?;
            opened.as_fd()
        }
    };
    let staged = if dirs.direct {
        Staged::create_in_hidden(dirs.dst.as_fd(), dst_name, entry.meta.mode, config.verify)
    } else {
        Staged::create(dirs.dst.as_fd(), entry.meta.mode, config.verify)
    }
    .doing(Op::Create)?;
    fsops::fill_and_place(
        staged,
        src,
        dirs.dst.as_fd(),
        dst_name,
        &entry.meta,
        config,
        Some((dirs.created)(entry.meta.mode & 0o777)),
        &mut |n| reporter.bytes(n),
        &stop_asked,
    )?;
    Ok(entry.meta.size)
}

/// Copies a file by path, for a name under `-L` whose claimer has no copy (see
/// [`ClaimedTask`]): its bytes count in the progress, not the name (counted when it was
/// left to the claimer). Gives the bytes copied and the copy.
pub fn copy_claimed(task: ClaimedTask) -> Result<(u64, CopyId), Failure> {
    let (source, name) = (task.source.path(), task.name.path());
    let fail = |e: io::Error| Failure::io(source, &e);
    let bytes = fsops::copy_file_to(source, name, config(), &stop_asked).map_err(fail)?;
    Reporter::new().bytes(bytes);
    let copy = CopyId::of(name).map_err(|e| fail(e.into()))?;
    let copy = copy.ok_or_else(|| fail(io::Error::from(io::ErrorKind::NotFound)))?;
    Ok((bytes, copy))
}
