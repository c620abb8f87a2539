//! Small leaves, small trees and bundles: subdirectories small enough to be copied by the task
//! of their parent (or, past its room, by one task per bundle of them), so that a tree of many
//! small directories takes a task per parent, not per directory.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags};

use super::dir::copy_dir_as;
use super::entries::Dirs;
use super::listing::{beyond_file_system, look, open_as_listed, read_names};
use super::{config, state, BATCH_BYTES, BATCH_ENTRIES};
use crate::copy::exclude::below_source;
use crate::copy::fsops;
use crate::copy::ids::FileId;
use crate::copy::meta::{Entry, Failure, Kind, Meta, RawPath};
use crate::copy::protocol::{for_coordinator, DirReport, DirTask, LeavesTask};

/// Copies, within the task of their parent, the subdirectories that are small leaves (no
/// subdirectories of their own: a directory's link count is 2 then, on the file systems that
/// count them) or small trees (see [`SmallTree`]): one batch of entries, nothing for the
/// coordinator; up to one batch's worth of files in all. A tree of many small directories
/// then takes a task per parent, not per directory. The others are handed back as usual
/// (`report.subdirs`); so is one that turns out not to be small. Leaves left untried for lack
/// of room go to `report.leaves`.
/// Such a subdirectory is written inside the task's directory while that is still hidden,
/// or else hidden under the task's hidden name plus `.N` while it is written.
pub(super) fn copy_small_leaves(task: &DirTask, dirs: &Dirs, report: &mut DirReport) {
    let (mut files, mut bytes) = (0, 0);
    let mut handed_back = Vec::new();
    for (n, sub) in std::mem::take(&mut report.subdirs).into_iter().enumerate() {
        let room =
            files < BATCH_ENTRIES as u64 && bytes < BATCH_BYTES && report.tally.stopped.is_none();
        let leaf = may_be_leaf(&sub.meta);
        if !room {
            if leaf {
                report.leaves.push(sub);
            } else {
                handed_back.push(sub);
            }
            continue;
        }
        let planned = if leaf {
            None
        } else if !may_copy_trees(task) {
            handed_back.push(sub);
            continue;
        } else {
            match plan_tree(dirs.src.as_fd(), &sub, task, !dirs.existed) {
                Some(tree) => Some(tree),
                None => {
                    handed_back.push(sub);
                    continue;
                }
            }
        };
        let hidden = format!("{}.{n}", task.hidden.path().display());
        let child = inline_task(task, dirs, &sub, hidden.into());
        let Some(done) = copy_dir_as(&child, Some(dirs), planned) else {
            handed_back.push(sub);
            continue;
        };
        let counts = &done.tally.counts;
        files += counts.files + counts.symlinks + counts.specials;
        bytes += counts.bytes;
        report.tally.add_below(done.tally, sub.name.path());
    }
    report.subdirs = handed_back;
}

/// Copies the subdirectories of a small tree (see [`SmallTree`]), which the task copying the
/// tree's directory (working in `dirs`) has listed already. A stop leaves the rest uncopied.
pub(super) fn copy_small_trees(
    task: &DirTask,
    dirs: &Dirs,
    trees: Vec<(Entry, SmallTree)>,
    report: &mut DirReport,
) {
    for (sub, tree) in trees {
        if report.tally.stopped.is_some() {
            return;
        }
        // Hidden only inside a directory that existed (a resume): a temporary name that a
        // later resume removes if this copy cannot.
        let child = inline_task(task, dirs, &sub, fsops::temp_name());
        // A planned tree is always copied: only a leaf may turn out not to be one.
        if let Some(done) = copy_dir_as(&child, Some(dirs), Some(tree)) {
            report.tally.add_below(done.tally, sub.name.path());
        }
    }
}

/// The task of the subdirectory `sub` of `task`'s directory, copied within it (working in
/// `dirs`), under the name `hidden` while hidden (if it needs to be).
pub(super) fn inline_task(task: &DirTask, dirs: &Dirs, sub: &Entry, hidden: PathBuf) -> DirTask {
    let mut ancestors = task.ancestors.clone();
    ancestors.push(task.meta.id());
    DirTask {
        src: RawPath::new(task.src.path().join(sub.name.path())),
        dst: RawPath::new(task.dst.path().join(sub.name.path())),
        meta: sub.meta,
        ancestors,
        hidden: RawPath(hidden),
        parent_made: !dirs.existed,
        small_trees: false,
    }
}

/// Whether `task` may copy small trees below its directory (see [`SmallTree`]): when the
/// coordinator says so, and not under `-L`, where links to directories are walked too.
pub(super) fn may_copy_trees(task: &DirTask) -> bool {
    task.small_trees && !config().dereference
}

/// Whether a subdirectory may be a leaf: no subdirectories of its own, as its link count
/// says on the file systems that count them (2: its name and its `.`).
pub(super) fn may_be_leaf(meta: &Meta) -> bool {
    meta.nlink == 2
}

/// Copies a bundle of subdirectories that may be small leaves, as [`copy_small_leaves`] does
/// within a directory's own task. Those that are not, or do not fit, come back in the
/// report's `subdirs` and `leaves`.
pub fn copy_leaves(task: LeavesTask) -> DirReport {
    let mut report = DirReport::default();
    let src_dir = task.parent.src.path();
    let dst_dir = task.parent.dst.path();
    match Dirs::open(src_dir, dst_dir, task.existed, false) {
        Ok(dirs) => {
            report.subdirs = task.leaves;
            copy_small_leaves(&task.parent, &dirs, &mut report);
        }
        Err(e) => {
            for leaf in &task.leaves {
                let path = src_dir.join(leaf.name.path());
                report.tally.failures.push(Failure::new(&path, &e));
            }
        }
    }
    report
}

/// A subdirectory with subdirectories of its own that is small enough to be copied whole by
/// the task of its parent (see [`copy_small_leaves`]): one batch of entries and bytes in all,
/// its directories included, in at most [`TREE_DIRS`] directories, and nothing for the
/// coordinator. It is listed through before any of it is copied.
pub(super) struct SmallTree {
    /// The source directory, open.
    pub(super) src: OwnedFd,
    /// Its entries that are not directories.
    pub(super) entries: Vec<Entry>,
    /// Its subdirectories.
    pub(super) subdirs: Vec<(Entry, SmallTree)>,
}

/// The most directories a [`SmallTree`] holds (each is open while it is planned).
pub(super) const TREE_DIRS: usize = 64;

/// The names in a directory, before any is statted (see [`plan_tree`]).
pub(super) struct Names {
    pub(super) dir: OwnedFd,
    /// Names of entries that are not directories, with their types (as the listing says).
    pub(super) others: Vec<(PathBuf, rfs::FileType)>,
    pub(super) subdirs: Vec<(PathBuf, Names)>,
}

/// Plans the subdirectory `sub` of the directory `src` (the source of `task`) as a
/// [`SmallTree`]: `None` if it is not one, or cannot be read (its own task then reports
/// why). Its names are gathered first, so that a tree too large is given up before any stat
/// (its own task lists it again). `new`: `task`'s destination was made by this copy.
pub(super) fn plan_tree(
    src: BorrowedFd<'_>,
    sub: &Entry,
    task: &DirTask,
    new: bool,
) -> Option<SmallTree> {
    if beyond_file_system(Some(&task.meta.id()), &sub.meta) {
        return None;
    }
    let mut entries = BATCH_ENTRIES;
    let mut dirs = TREE_DIRS;
    let names = gather_names(src, sub.name.path(), &mut entries, &mut dirs)?;
    let mut seen = task.ancestors.clone();
    seen.push(task.meta.id());
    seen.push(sub.meta.id());
    let mut bytes = BATCH_BYTES;
    let open = open_as_listed(BATCH_ENTRIES - entries, new);
    let below = below_source(task.src.path(), task.ancestors.len()).join(sub.name.path());
    stat_names(names, &mut bytes, &mut seen, (open, &below))
}

/// Gathers the names below `name` in `dir`, as long as they take no more than `entries`
/// entries in `dirs` directories.
pub(super) fn gather_names(
    dir: BorrowedFd<'_>,
    name: &Path,
    entries: &mut usize,
    dirs: &mut usize,
) -> Option<Names> {
    *dirs = dirs.checked_sub(1)?;
    let fd = fsops::open_dir_at(dir, name, true, false).ok()?;
    let names = read_names(&fd, *entries).ok()??;
    *entries -= names.len();
    let (mut others, mut subdirs) = (Vec::new(), Vec::new());
    for (name, file_type) in names {
        let is_dir = match file_type {
            rfs::FileType::Directory => true,
            rfs::FileType::Unknown => rfs::statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| rfs::FileType::from_raw_mode(st.st_mode).is_dir()),
            _ => false,
        };
        if is_dir {
            subdirs.push(name);
        } else {
            others.push((name, file_type));
        }
    }
    let subdirs = subdirs
        .into_iter()
        .map(|sub| {
            let names = gather_names(fd.as_fd(), &sub, entries, dirs)?;
            Some((sub, names))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Names {
        dir: fd,
        others,
        subdirs,
    })
}

/// Stats what [`gather_names`] found: `None` if it is not a small tree after all (more than
/// `bytes` bytes, an entry for the coordinator, a directory met twice, or anything changed
/// meanwhile). `seen`: the directories above, by device and inode. `open`: its files are
/// opened as they are looked at (see [`look`]). `below`: the directory's path below its
/// SOURCE, for `--exclude`, which leaves out what it matches.
pub(super) fn stat_names(
    names: Names,
    bytes: &mut u64,
    seen: &mut Vec<FileId>,
    (open, below): (bool, &Path),
) -> Option<SmallTree> {
    let dir = names.dir.as_fd();
    let exclude = &state().exclude;
    let left_out =
        |name: &Path, is_dir| exclude.any() && exclude.excludes(&below.join(name), is_dir);
    let mut entries = Vec::with_capacity(names.others.len());
    for (name, file_type) in names.others {
        if left_out(&name, false) {
            continue;
        }
        let (meta, source) = look(dir, &name, file_type, open, false).ok()?;
        if meta.kind == Kind::Dir || for_coordinator(&meta, config()) {
            return None;
        }
        *bytes = bytes.checked_sub(meta.size)?;
        entries.push(Entry {
            name: RawPath(name),
            meta,
            source,
        });
    }
    let mut subdirs = Vec::with_capacity(names.subdirs.len());
    for (name, names_below) in names.subdirs {
        if left_out(&name, true) {
            continue;
        }
        let (meta, _) = look(dir, &name, rfs::FileType::Directory, false, false).ok()?;
        let beyond = beyond_file_system(seen.last(), &meta);
        if meta.kind != Kind::Dir || seen.contains(&meta.id()) || beyond {
            return None;
        }
        seen.push(meta.id());
        let tree = stat_names(names_below, bytes, seen, (open, &below.join(&name)))?;
        seen.pop();
        subdirs.push((Entry::new(RawPath(name), meta), tree));
    }
    Some(SmallTree {
        src: names.dir,
        entries,
        subdirs,
    })
}
