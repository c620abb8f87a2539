//! What a copy does about what it finds at its destination: it never replaces the source
//! itself (GNU `cp`'s "are the same file" rule), and it leaves alone what `--update` or
//! `--resume` say to keep.
//!
//! The rule, as `cp -a` applies it (coreutils' `same_file_ok`, without following links):
//! the source and what is at its destination are one file when they lead to one inode, a
//! symbolic link on either side followed to what it points to. Then replacing the
//! destination would destroy the source (`mp copy link file`, where `link -> file`, would
//! leave `file -> file`), and the entry is refused. Two links are the exception: a link may
//! replace another link to the same file; and two names of one hard-linked link are left as
//! they are, which is nothing to do. Under `-L` the source is already followed.
//!
//! The look costs nothing on the usual paths: the stat of the destination is taken anyway
//! to replace it, and a link is followed only when one side is a link and the other is not.
//!
//! Then `--update` (`cp -u`) keeps a destination that is not older than its source, and
//! `--resume` one whose size and modification time match; with both, what either keeps. A
//! file this process may not write (mode 0, another's) is not replaced: `cp` opens it to
//! write and is refused, "Permission denied".

use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags};
use rustix::io::Errno;

use super::config::Config;
use super::failure::{Doing, Op};
use super::ids::FileId;
use super::meta::{Kind, Meta};
use super::quote::quote;

/// How a source and what is at its destination relate (see the module's rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Same {
    /// Two files: the destination may be replaced.
    Distinct,
    /// One file (or one leads to the other): replacing the destination destroys the source.
    OneFile,
    /// Two names of one hard-linked symbolic link (or the same name): nothing to copy.
    LinkedLinks,
}

/// What to do about what is at a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Replace it with the copy.
    Replace,
    /// Leave it: it already is a copy of the source (`--resume`'s match, or `--update` with
    /// the same size and time), or the same hard-linked link.
    UpToDate,
    /// Leave it: `--update`, and it is not older than the source (a later edit, perhaps).
    Newer,
    /// Leave it: `--no-clobber`, and something is there (of any kind, a copy or not).
    Exists,
    /// Refuse: it is the source itself.
    SameFile,
}

impl Verdict {
    /// Whether the destination is left as it is.
    pub fn keeps(self) -> bool {
        matches!(self, Verdict::UpToDate | Verdict::Newer | Verdict::Exists)
    }

    /// Whether the destination is left as it is, though it may not be a copy of the
    /// source: nothing else is linked to it.
    pub fn keeps_another(self) -> bool {
        matches!(self, Verdict::Newer | Verdict::Exists)
    }
}

/// How `src` (as listed: not followed, except under `-L`) and `old` (what is at its
/// destination, not followed) relate. `src_target` and `old_target` follow a link on each
/// side to the device and inode it leads to (`None` if it leads nowhere); each is called
/// only when its side is a link and the other is not.
///
/// ```ignore
/// let same = same_file(&link, &file, || Some(file.id()), || None);
/// assert_eq!(same, Same::OneFile);
/// ```
pub fn same_file(
    src: &Meta,
    old: &Meta,
    src_target: impl FnOnce() -> Option<FileId>,
    old_target: impl FnOnce() -> Option<FileId>,
) -> Same {
    let one_inode = src.id() == old.id();
    if src.kind == Kind::Symlink && old.kind == Kind::Symlink {
        return match one_inode {
            true => Same::LinkedLinks,
            false => Same::Distinct,
        };
    }
    let src_id = match src.kind {
        Kind::Symlink => src_target(),
        _ => Some(src.id()),
    };
    let old_id = match old.kind {
        Kind::Symlink => old_target(),
        _ => Some(old.id()),
    };
    match src_id.zip(old_id) {
        Some((a, b)) if a == b => Same::OneFile,
        _ => Same::Distinct,
    }
}

/// What to do about `old`, found at the destination of `src`, which relate as `same` says:
/// `--no-clobber` keeps whatever is there (even the source itself, as `cp -n`, and a
/// directory where a file was to go), but directories are merged into; a source is never
/// copied onto itself; then what `--resume` and `--update` keep is kept. `same_target`:
/// whether two links point to the same path (asked of `--resume` only).
pub fn verdict(
    config: &Config,
    src: &Meta,
    old: &Meta,
    same: Same,
    same_target: impl FnOnce() -> bool,
) -> Verdict {
    if config.no_clobber && src.kind != Kind::Dir {
        return Verdict::Exists;
    }
    match same {
        Same::OneFile => return Verdict::SameFile,
        Same::LinkedLinks => return Verdict::UpToDate,
        Same::Distinct => {}
    }
    if config.resume && resumed(src, old, same_target) {
        return Verdict::UpToDate;
    }
    // As `cp -u`: directories are always merged into, whatever their times.
    if config.update && src.kind != Kind::Dir && !older(old, src) {
        return match src.kind == Kind::File && file_up_to_date(old, src) {
            true => Verdict::UpToDate,
            false => Verdict::Newer,
        };
    }
    Verdict::Replace
}

/// Whether `old` is older than `src` (`--update` replaces it then). Like `cp -u`, equal
/// times are not older; and a destination that keeps whole seconds only (no nanoseconds)
/// is compared with the source's time cut to the second, so that a copy made there is not
/// taken for older than its source.
pub fn older(old: &Meta, src: &Meta) -> bool {
    if old.mtime.1 == 0 {
        old.mtime.0 < src.mtime.0
    } else {
        old.mtime < src.mtime
    }
}

/// Whether `old` already is a finished copy of `src` (`--resume`): a regular file of the
/// same size and modification time; a link to the same path; any other entry of its kind.
fn resumed(src: &Meta, old: &Meta, same_target: impl FnOnce() -> bool) -> bool {
    match src.kind {
        Kind::File => file_up_to_date(old, src),
        Kind::Symlink => old.kind == Kind::Symlink && same_target(),
        other => old.kind == other,
    }
}

/// Whether an existing copy of a regular file is up to date (`--resume`): a regular file of
/// the same size and modification time, allowing for destinations that keep whole seconds
/// only (FAT rounds to 2 s): such a copy has no nanoseconds.
pub fn file_up_to_date(copy: &Meta, source: &Meta) -> bool {
    let same_mtime = copy.mtime == source.mtime
        || (copy.mtime.1 == 0 && (copy.mtime.0 - source.mtime.0).abs() <= 2);
    copy.kind == Kind::File && copy.size == source.size && same_mtime
}

/// Looks at `name` in `dir`, the destination of the source `src_name` in `src_dir` (of
/// metadata `src`), and says what to do about it: `None` when nothing is there. Refusals are
/// errors: the source itself (the message names the paths `shown` gives: the source's and
/// the destination's), and a directory in the way of a non-directory to be copied.
pub fn judge_at(
    (dir, name): (BorrowedFd<'_>, &Path),
    (src_dir, src_name): (BorrowedFd<'_>, &Path),
    src: &Meta,
    config: &Config,
    shown: impl FnOnce() -> (PathBuf, PathBuf),
) -> io::Result<Option<(Meta, Verdict)>> {
    let old = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Meta::from_stat(&st),
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let same = same_file(
        src,
        &old,
        || followed_at(src_dir, src_name),
        || followed_at(dir, name),
    );
    let same_target = || {
        let target = |d: BorrowedFd<'_>, n: &Path| rfs::readlinkat(d, n, Vec::new()).ok();
        target(src_dir, src_name) == target(dir, name)
    };
    match verdict(config, src, &old, same, same_target) {
        Verdict::SameFile => {
            let (src, dst) = shown();
            Err(io::Error::other(same_file_message(&src, &dst))).doing(Op::Refused)
        }
        // Worded as `cp` words it: "cannot create regular file 'dst/f': Permission denied",
        // the destination's path, errno EACCES in `--json`.
        Verdict::Replace if is_locked(src, &old, (dir, name)) => {
            Err(io::Error::from(Errno::ACCESS)).doing(Op::Create)
        }
        Verdict::Replace if old.kind == Kind::Dir && src.kind != Kind::Dir => {
            let (_, dst) = shown();
            let why = format!(
                "cannot overwrite directory {} with non-directory",
                quote(&dst)
            );
            Err(io::Error::other(why)).doing(Op::Refused)
        }
        verdict => Ok(Some((old, verdict))),
    }
}

/// Whether the regular file `old`, at `name` in `dir`, where the regular file `src` is to be
/// copied, is one this process may not write: `cp` opens such a destination to write it and
/// is refused ("Permission denied"), so the copy (which would replace it through its
/// directory) refuses too. Never for root, who may write anything: no extra call then.
fn is_locked(src: &Meta, old: &Meta, (dir, name): (BorrowedFd<'_>, &Path)) -> bool {
    src.kind == Kind::File
        && old.kind == Kind::File
        && !crate::copy::fsops::is_root()
        && rfs::accessat(dir, name, rfs::Access::WRITE_OK, AtFlags::EACCESS) == Err(Errno::ACCESS)
}

/// Looks at `name` in `dir`, where the source directory of metadata `src` is to be made
/// (`shown` gives the source's and the destination's paths, for the messages), as `cp -r`
/// judges it: `Ok(false)` when nothing is there, `Ok(true)` when a real directory is there,
/// to be merged into; otherwise the refusal's words: the source itself (a link to it), or
/// anything else, a link to a directory too (never written through).
///
/// ```ignore
/// // `d/s/sub` is a file: "cannot overwrite non-directory 'd/s/sub' with directory 's/sub'".
/// assert!(judge_dir_at((rfs::CWD, Path::new("d/s/sub")), &dir, shown).is_err());
/// ```
pub fn judge_dir_at(
    (dir, name): (BorrowedFd<'_>, &Path),
    src: &Meta,
    shown: impl FnOnce() -> (PathBuf, PathBuf),
) -> Result<bool, String> {
    let old = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Some(Meta::from_stat(&st)),
        Err(Errno::NOENT) => return Ok(false),
        Err(_) => None,
    };
    let same = old.is_some_and(|old| {
        same_file(src, &old, || None, || followed_at(dir, name)) == Same::OneFile
    });
    if !same && old.is_some_and(|old| old.kind == Kind::Dir) {
        return Ok(true);
    }
    let (src, dst) = shown();
    Err(match same {
        true => same_file_message(&src, &dst),
        false => format!(
            "cannot overwrite non-directory {} with directory {}",
            quote(&dst),
            quote(&src)
        ),
    })
}

/// [`judge_at`] by paths (from the current directory): what is at `dst`, the destination of
/// `src` (of metadata `meta`), and what to do about it.
pub fn judge_paths(
    src: &Path,
    dst: &Path,
    meta: &Meta,
    config: &Config,
) -> io::Result<Option<(Meta, Verdict)>> {
    let shown = || (src.to_path_buf(), dst.to_path_buf());
    judge_at((rfs::CWD, dst), (rfs::CWD, src), meta, config, shown)
}

/// The device and inode that `name` in `dir` leads to, links followed; `None` if nothing.
pub fn followed_at(dir: BorrowedFd<'_>, name: &Path) -> Option<FileId> {
    let st = rfs::statat(dir, name, AtFlags::empty()).ok()?;
    Some(FileId::of_stat(&st))
}

/// `cp`'s message for a source refused because its destination is the source itself.
pub fn same_file_message(src: &Path, dst: &Path) -> String {
    format!("{} and {} are the same file", quote(src), quote(dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: Kind, ino: u64, mtime: (i64, u32), size: u64) -> Meta {
        Meta {
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size,
            blocks: 0,
            nlink: 1,
            dev: 1,
            ino,
            rdev: 0,
            atime: mtime,
            mtime,
        }
    }

    fn config(update: bool, resume: bool) -> Config {
        Config {
            update,
            resume,
            ..Config::default()
        }
    }

    const T: (i64, u32) = (1_000, 500);

    #[test]
    fn a_link_onto_what_it_points_to_is_one_file() {
        let (file, link) = (meta(Kind::File, 1, T, 4), meta(Kind::Symlink, 2, T, 3));
        let to_file = || Some(FileId { dev: 1, ino: 1 });
        let never = || -> Option<FileId> { panic!("not to be followed") };
        // `mp copy link file` and `mp copy file link`.
        assert_eq!(same_file(&link, &file, to_file, never), Same::OneFile);
        assert_eq!(same_file(&file, &link, never, to_file), Same::OneFile);
        // A file onto itself, or onto another name of it (a hard link).
        assert_eq!(same_file(&file, &file, never, never), Same::OneFile);
        // A link that leads elsewhere, or nowhere.
        assert_eq!(
            same_file(&link, &file, || Some(FileId { dev: 1, ino: 9 }), never),
            Same::Distinct
        );
        assert_eq!(same_file(&link, &file, || None, never), Same::Distinct);
        // Two links: never followed; one hard-linked link is nothing to copy.
        let other = meta(Kind::Symlink, 3, T, 3);
        assert_eq!(same_file(&link, &other, never, never), Same::Distinct);
        assert_eq!(same_file(&link, &link, never, never), Same::LinkedLinks);
    }

    #[test]
    fn update_keeps_what_is_not_older_and_resume_what_matches() {
        let src = meta(Kind::File, 1, T, 4);
        let at = |mtime, size| meta(Kind::File, 2, mtime, size);
        let judge = |o: &Config, old: &Meta| verdict(o, &src, old, Same::Distinct, || true);
        let (update, resume, both) = (config(true, false), config(false, true), config(true, true));
        let plain = config(false, false);
        let newer = at((1_001, 0), 9);
        let older = at((999, 999), 4);
        let same_time_other_size = at(T, 9);
        let copy = at(T, 4);
        // A plain copy replaces whatever is there.
        assert_eq!(judge(&plain, &newer), Verdict::Replace);
        // -u: a newer file is kept, an older one replaced; equal times are not older.
        assert_eq!(judge(&update, &newer), Verdict::Newer);
        assert_eq!(judge(&update, &older), Verdict::Replace);
        assert_eq!(judge(&update, &same_time_other_size), Verdict::Newer);
        assert_eq!(judge(&update, &copy), Verdict::UpToDate);
        // Whole seconds at the destination: the source's time is cut to the second (and a
        // copy there of the same size is up to date).
        assert_eq!(judge(&update, &at((1_000, 0), 5)), Verdict::Newer);
        assert_eq!(judge(&update, &at((1_000, 0), 4)), Verdict::UpToDate);
        assert_eq!(judge(&update, &at((999, 0), 4)), Verdict::Replace);
        // --resume: only a match is kept; a newer file that differs is replaced.
        assert_eq!(judge(&resume, &copy), Verdict::UpToDate);
        assert_eq!(judge(&resume, &newer), Verdict::Replace);
        assert_eq!(judge(&resume, &same_time_other_size), Verdict::Replace);
        // Both: what either keeps.
        assert_eq!(judge(&both, &newer), Verdict::Newer);
        assert_eq!(judge(&both, &copy), Verdict::UpToDate);
        assert_eq!(judge(&both, &older), Verdict::Replace);
        // One file is refused whatever the config.
        for o in [&plain, &update, &resume, &both] {
            assert_eq!(
                verdict(o, &src, &copy, Same::OneFile, || true),
                Verdict::SameFile
            );
        }
    }

    #[test]
    fn no_clobber_keeps_whatever_is_there_but_merges_directories() {
        let no_clobber = Config {
            no_clobber: true,
            update: true,
            ..Config::default()
        };
        let src = meta(Kind::File, 1, T, 4);
        let judge = |old: &Meta, same| verdict(&no_clobber, &src, old, same, || true);
        let older = meta(Kind::File, 2, (1, 0), 4);
        assert_eq!(judge(&older, Same::Distinct), Verdict::Exists);
        assert_eq!(judge(&src, Same::OneFile), Verdict::Exists, "as cp -n");
        assert!(Verdict::Exists.keeps() && Verdict::Exists.keeps_another());
        let dir = meta(Kind::Dir, 1, T, 0);
        let old_dir = meta(Kind::Dir, 2, T, 0);
        assert_eq!(
            verdict(&no_clobber, &dir, &old_dir, Same::Distinct, || true),
            Verdict::Replace,
            "merged into"
        );
    }

    #[test]
    fn update_merges_directories_and_compares_links_by_their_own_times() {
        let dir = meta(Kind::Dir, 1, T, 0);
        let newer_dir = meta(Kind::Dir, 2, (2_000, 0), 0);
        let update = config(true, false);
        let judge = |src: &Meta, old: &Meta| verdict(&update, src, old, Same::Distinct, || true);
        assert_eq!(judge(&dir, &newer_dir), Verdict::Replace, "merged into");
        let link = meta(Kind::Symlink, 3, T, 1);
        assert!(judge(&link, &meta(Kind::Symlink, 4, (2_000, 1), 1)).keeps());
        assert_eq!(
            judge(&link, &meta(Kind::Symlink, 4, (999, 1), 1)),
            Verdict::Replace
        );
        // --resume compares a link's target.
        let resume = config(false, true);
        let old_link = meta(Kind::Symlink, 4, (2_000, 1), 1);
        assert!(verdict(&resume, &link, &old_link, Same::Distinct, || true).keeps());
        assert_eq!(
            verdict(&resume, &link, &old_link, Same::Distinct, || false),
            Verdict::Replace
        );
    }
}
