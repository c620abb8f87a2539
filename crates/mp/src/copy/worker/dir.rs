//! Copying a directory: list it, make its copy, copy its entries, and report what is left
//! for the coordinator.
//!
//! A new directory is written under its hidden name (`task.hidden`) when it has files and
//! no subdirectories, files in one batch, or no files but subdirectories that may be small
//! leaves: its files are created directly under their own names inside it, and none can be
//! seen under its final path until all are complete and the directory renamed. The worker
//! renames it once its files and small leaves are written (with other subdirectories:
//! before the walk goes on below them); a directory whose files went to several tasks is
//! still hidden in the report, and the coordinator renames it. Small leaf subdirectories,
//! and small trees while the other workers have work enough, are copied by the same task
//! (see `leaves.rs`), inside the hidden directory if there is one, so that they need no
//! hiding of their own; the others are handed back.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode};
use rustix::io::Errno;

use super::entries::{batches, cannot_open, copy_entries, Dirs};
use super::leaves::{copy_small_leaves, copy_small_trees, may_be_leaf, may_copy_trees, SmallTree};
use super::listing::{list, Listing};
use super::{config, stop_asked, Reporter};
use crate::copy::failure::Op;
use crate::copy::fsops;
use crate::copy::meta::{Entry, Failure, Kind, Meta};
use crate::copy::protocol::{for_coordinator, DirReport, DirTask, FinishTask};
use crate::copy::quote::quote;
use crate::copy::replace;
use crate::copy::stop::Stop;

/// Where a directory task makes its copy: a directory open in the worker and the names in
/// it, so that the calls on the copy look up one name, not its whole path each time.
pub(super) struct Site<'p> {
    /// The directory the copy is made in, opened for this task...
    owned: Option<OwnedFd>,
    /// ... or the one the task of its parent works in (a small leaf).
    parent: Option<BorrowedFd<'p>>,
    name: PathBuf,
    hidden: PathBuf,
}

impl<'p> Site<'p> {
    /// The site of `task`'s copy: in `parent`'s destination for a small leaf; otherwise in
    /// the directory above `task.dst`, opened now. Where that cannot be opened (or `dst` has
    /// no name, as `.`), names are whole paths from the current directory.
    fn of(task: &DirTask, parent: Option<&'p Dirs>) -> Site<'p> {
        let dst = task.dst.path();
        let Some(name) = dst.file_name() else {
            return Site::whole_paths(task);
        };
        let site = |owned, parent| Site {
            owned,
            parent,
            name: PathBuf::from(name),
            hidden: task.hidden.path().to_path_buf(),
        };
        if let Some(p) = parent {
            return site(None, Some(p.dst.as_fd()));
        }
        match fsops::open_dir(fsops::dir_above(dst), false) {
            Ok(fd) => site(Some(fd), None),
            Err(_) => Site::whole_paths(task),
        }
    }

    fn whole_paths(task: &DirTask) -> Site<'p> {
        let dst = task.dst.path();
        Site {
            owned: None,
            parent: None,
            name: dst.to_path_buf(),
            hidden: dst.with_file_name(task.hidden.path()),
        }
    }

    fn dir(&self) -> BorrowedFd<'_> {
        match (&self.owned, self.parent) {
            (Some(fd), _) => fd.as_fd(),
            (None, Some(fd)) => fd,
            (None, None) => rfs::CWD,
        }
    }
}

/// Lists a directory, copies its entries, and reports what is left for the coordinator (see
/// the module's doc for when it is hidden while written).
pub fn copy_dir(task: DirTask) -> DirReport {
    copy_dir_as(&task, None, None).expect("a directory's own task always reports")
}

/// [`copy_dir`]'s body. `parent`: the directory is a subdirectory the task of its parent
/// (working in `parent`) copies if it turns out to be a small leaf (see `leaves.rs`); `None`
/// (and nothing done) if it is not. `planned`: it is a small tree, listed already, that this
/// task copies whole.
pub(super) fn copy_dir_as(
    task: &DirTask,
    parent: Option<&Dirs>,
    planned: Option<SmallTree>,
) -> Option<DirReport> {
    let mut report = DirReport::default();
    if stop_asked() {
        report.tally.stopped = Some(Stop::Interrupted);
        report.finished = true;
        return Some(report);
    }
    let (src, entries, trees) = match planned {
        Some(tree) => (tree.src, tree.entries, tree.subdirs),
        None => match open_and_list(task, parent, &mut report) {
            Opened::Listed(src, entries) => (src, entries, Vec::new()),
            Opened::NotALeaf => return None,
            Opened::Failed => return Some(report),
        },
    };
    let mut batches = sort_entries(entries, &mut report);
    let small = report.subdirs.is_empty() && report.deferred.is_empty() && batches.len() <= 1;
    if parent.is_some() && !small {
        return None;
    }
    let site = Site::of(task, parent);
    // A small leaf going into a directory that is still hidden is made under its own name.
    let in_hidden = parent.is_some_and(|p| p.direct);
    let hide = !in_hidden
        && hides(task, &report, &batches, !trees.is_empty())
        && (task.parent_made || !exists(site.dir(), &site.name));
    let work = Work {
        site,
        hide,
        hidden_path: task.dst.path().with_file_name(task.hidden.path()),
        dst_path: task.dst.path().to_path_buf(),
    };
    let Some(dirs) = make_and_open(task, parent, &work, src, &mut report) else {
        return Some(report);
    };
    if batches.len() > 1 || (!report.subdirs.is_empty() && !hide) {
        // More work than this task should do alone: hand it all back at once, so that the
        // walk goes on below and every worker copies this directory's files (each opens
        // them again: this task closes them now).
        for entry in batches.iter_mut().flatten() {
            entry.source = None;
        }
        report.spill = batches;
        if !hide {
            copy_small_leaves(task, &dirs, &mut report);
        }
        return Some(report);
    }
    let here = batches.pop().unwrap_or_default();
    copy_here(task, &dirs, &work, (here, trees), &mut report);
    Some(report)
}

/// Where a directory task writes its copy.
struct Work<'p> {
    site: Site<'p>,
    /// Written under its hidden name, renamed once complete (see the module's doc).
    hide: bool,
    /// The paths of its hidden name and of its final one (for messages).
    hidden_path: PathBuf,
    dst_path: PathBuf,
}

/// Sorts a directory's entries: subdirectories and entries for the coordinator go in the
/// report; the others, returned, in batches.
fn sort_entries(entries: Vec<Entry>, report: &mut DirReport) -> Vec<Vec<Entry>> {
    let mut here = Vec::new();
    for entry in entries {
        match entry.meta.kind {
            Kind::Dir => report.subdirs.push(entry),
            _ if for_coordinator(&entry.meta, config()) => report.deferred.push(entry),
            _ => here.push(entry),
        }
    }
    batches(here)
}

/// Whether a new directory of this shape is hidden while its files are written: when this
/// task writes them all before the walk goes on below (no subdirectories, only one batch of
/// files, or no files but maybe small leaves or trees; or a small tree, written whole).
fn hides(task: &DirTask, report: &DirReport, batches: &[Vec<Entry>], trees: bool) -> bool {
    if trees {
        true
    } else if batches.is_empty() {
        let may_be_small = |d: &Entry| may_be_leaf(&d.meta) || may_copy_trees(task);
        report.subdirs.iter().any(may_be_small)
    } else {
        report.subdirs.is_empty() || batches.len() == 1
    }
}

/// Makes the copy of `task`'s directory (or finds it there) where `work` says, and opens it
/// beside the source `src`; `None` when there is nothing more to do in it (it could not be
/// made or opened, or the task stops): the report says why.
fn make_and_open(
    task: &DirTask,
    parent: Option<&Dirs>,
    work: &Work<'_>,
    src: OwnedFd,
    report: &mut DirReport,
) -> Option<Dirs> {
    let in_hidden = parent.is_some_and(|p| p.direct);
    let site = &work.site;
    let (work_name, work_path) = match parent {
        _ if work.hide => (site.hidden.as_path(), work.hidden_path.clone()),
        Some(p) if in_hidden => (site.name.as_path(), p.dst_path.join(&site.name)),
        _ => (site.name.as_path(), work.dst_path.clone()),
    };
    let src_path = task.src.path();
    let made = make_dir(
        (site.dir(), work_name),
        (src_path, &task.meta),
        &work_path,
        report,
    );
    if let Some(failure) = made {
        report.tally.failures.push(failure);
    }
    if report.finished || report.tally.stopped.is_some() {
        report.subdirs.clear();
        report.deferred.clear();
        return None;
    }
    report.hidden = work.hide;
    report.tally.counts.dirs = u64::from(!report.existed);
    if config().verbose {
        report.tally.copied.push(task.src.clone());
    }
    // A directory this task made is readable by it: its metadata is then set through it.
    let readable = !report.existed;
    let direct = work.hide || in_hidden;
    let dirs = fsops::open_dir_at(site.dir(), work_name, readable, false)
        .map_err(cannot_open)
        .and_then(|dst| Dirs::new(src, src_path, dst, &work_path, report.existed, direct))
        .map(|d| Dirs {
            dst_readable: readable,
            ..d
        });
    match dirs {
        Ok(dirs) => {
            if report.existed && config().keeps_existing() {
                // A resume: what a copy killed before it could finish left here goes.
                fsops::remove_stale_temps(dirs.dst.as_fd(), &work_path);
            }
            Some(dirs)
        }
        Err(e) => {
            report.tally.failures.push(Failure::io(src_path, &e));
            report.subdirs.clear();
            report.deferred.clear();
            if work.hide {
                publish_unfinished(work, report);
                report.finished = true;
            }
            None
        }
    }
}

/// Copies a directory's entries (`here`, one batch at most) and small trees (`trees`, listed
/// already) within its own task, then its small leaves; and finishes it as far as it can:
/// its metadata once nothing is left inside, its final name once its own files are written.
fn copy_here(
    task: &DirTask,
    dirs: &Dirs,
    work: &Work<'_>,
    (here, trees): (Vec<Entry>, Vec<(Entry, SmallTree)>),
    report: &mut DirReport,
) {
    copy_entries(dirs, here, None, &mut report.tally, &mut Reporter::new());
    copy_small_trees(task, dirs, trees, report);
    if report.tally.stopped.is_some() {
        // What is there is complete (a file cut short was removed): keep it for a resume.
        if work.hide {
            publish_unfinished(work, report);
        }
        report.finished = true;
    } else if work.hide && !report.subdirs.is_empty() {
        // Its files are complete; so are its small leaves once copied into it. It takes its
        // name before the walk goes on below it (its metadata comes once everything inside
        // is written). A stop among the leaves leaves only complete files: they are kept.
        // When all were copied here, nothing is left inside: its metadata comes now.
        copy_small_leaves(task, dirs, report);
        let all_here = report.subdirs.is_empty()
            && report.leaves.is_empty()
            && report.deferred.is_empty()
            && report.tally.stopped.is_none();
        if all_here {
            apply_meta(dirs, task, report);
            report.finished = true;
        }
        if let Err(failure) = publish_at(work) {
            report.tally.failures.push(failure);
            report.subdirs.clear();
            report.deferred.clear();
            report.leaves.clear();
            report.finished = true;
        }
        report.hidden = false;
    } else if report.deferred.is_empty() {
        apply_meta(dirs, task, report);
        if work.hide {
            if let Err(failure) = publish_at(work) {
                report.tally.failures.push(failure);
            }
            report.hidden = false;
        }
        report.finished = true;
    }
}

/// What [`open_and_list`] found.
pub(super) enum Opened {
    /// The source directory, open, and its entries.
    Listed(OwnedFd, Vec<Entry>),
    /// A directory tried as a small leaf is not one: nothing was done.
    NotALeaf,
    /// It cannot be opened: the report says why (and the copy was made all the same).
    Failed,
}

/// Opens and lists the source directory of `task`: as a small leaf of the task working in
/// `parent` if there is one (see [`copy_small_leaves`]), else whole.
pub(super) fn open_and_list(
    task: &DirTask,
    parent: Option<&Dirs>,
    report: &mut DirReport,
) -> Opened {
    let inline = parent.is_some();
    let src_path = task.src.path();
    let dst_path = task.dst.path();
    let opened = match parent {
        Some(p) => fsops::open_dir_at(
            p.src.as_fd(),
            Path::new(src_path.file_name().unwrap_or_default()),
            true,
            config().dereference,
        ),
        None => fsops::open_dir(src_path, true),
    };
    let src = match opened {
        Ok(fd) => fd,
        Err(_) if inline => return Opened::NotALeaf,
        Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
            // Its path is beyond PATH_MAX: `cp` cannot stat it, and makes nothing for it.
            report
                .tally
                .failures
                .push(Failure::cannot_stat(src_path, e));
            report.finished = true;
            return Opened::Failed;
        }
        Err(e) => {
            // Made all the same, as `cp -a` makes it, with the source's metadata.
            let site = Site::of(task, None);
            let site_name = (site.dir(), site.name.as_path());
            let made = make_dir(site_name, (src_path, &task.meta), dst_path, report);
            if let Some(failure) = made {
                report.tally.failures.push(failure);
            }
            let failure = Failure::during(src_path, Op::OpenDir, &e);
            report.tally.failures.push(failure);
            return Opened::Failed;
        }
    };
    let listing = if inline {
        Listing::SmallLeaf
    } else {
        Listing::All
    };
    match list(&src, src_path, task, listing, report) {
        Ok(Some(entries)) => Opened::Listed(src, entries),
        Ok(None) => Opened::NotALeaf,
        Err(_) if inline => Opened::NotALeaf,
        Err(e) => {
            let failure = Failure::during(src_path, Op::ReadDir, &e);
            report.tally.failures.push(failure);
            Opened::Listed(src, Vec::new())
        }
    }
}

/// Sets the metadata of the directory a task made or worked in (`dirs.dst`), through it if
/// it could be read; a failure goes in the report.
pub(super) fn apply_meta(dirs: &Dirs, task: &DirTask, report: &mut DirReport) {
    let applied = if dirs.dst_readable {
        fsops::apply_open_dir_meta(dirs.src.as_fd(), dirs.dst.as_fd(), &task.meta, dirs.itself)
    } else {
        fsops::apply_dir_meta(&dirs.src_path, &dirs.dst_path, &task.meta)
    };
    if let Err(e) = applied {
        let failure = Failure::during(&dirs.src_path, Op::Attrs, &e);
        report.tally.failures.push(failure);
    }
}

/// Whether anything is at `name` in `dir` (not followed).
pub(super) fn exists(dir: BorrowedFd<'_>, name: &Path) -> bool {
    !matches!(
        rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
        Err(Errno::NOENT)
    )
}

/// Makes the destination directory `name` in `dir` (at `dst`; 0700 until its metadata is
/// applied) for the source directory `src` (of metadata `meta`), or finds a real directory
/// there (`report.existed`) other than the source itself. A full disk stops the task
/// (`report.tally.stopped`); anything else that prevents it is returned as `src`'s failure, and
/// the directory is not ours to finish.
pub(super) fn make_dir(
    (dir, name): (BorrowedFd<'_>, &Path),
    (src, meta): (&Path, &Meta),
    dst: &Path,
    report: &mut DirReport,
) -> Option<Failure> {
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => None,
        Err(Errno::EXIST) => {
            let shown = || (src.to_path_buf(), dst.to_path_buf());
            match replace::judge_dir_at((dir, name), meta, shown) {
                Ok(true) => {
                    report.existed = true;
                    None
                }
                // Gone since it was found: not ours to make now.
                Ok(false) => {
                    report.finished = true;
                    let exists = io::Error::from(Errno::EXIST);
                    Some(Failure::during(src, Op::Mkdir, &exists))
                }
                Err(why) => {
                    report.finished = true;
                    Some(Failure::refused(src, why))
                }
            }
        }
        Err(e) => {
            report.finished = true;
            let failure = Failure::io(dst, &io::Error::from(e));
            if failure.disk_full {
                report.tally.stopped = Some(Stop::DiskFull(failure));
                return None;
            }
            Some(Failure::during(src, Op::Mkdir, &io::Error::from(e)))
        }
    }
}

/// Finishes a directory the coordinator finishes, once everything inside it is written (see
/// [`FinishTask`]). Gives what failed.
pub fn finish_dir(task: FinishTask) -> Vec<Failure> {
    let (src, work) = (task.src.path(), task.work.path());
    let dst = task.publish.as_ref().map_or(work, |dst| dst.path());
    for hidden in &task.leftovers {
        fsops::remove_inline_leaves(dst, hidden.path());
    }
    if task.unfinished {
        let follow = config().dereference;
        fsops::remove_unfinished(src, work, follow, &replace::file_up_to_date);
    }
    let mut failures = Vec::new();
    if let Some(meta) = task.meta {
        if let Err(e) = fsops::apply_dir_meta(src, work, &meta) {
            failures.push(Failure::during(src, Op::Attrs, &e));
        }
    }
    if let Some(dst) = &task.publish {
        failures.extend(publish(work, dst.path()).err());
    }
    failures
}

/// Gives a hidden directory its final name, unless something took that name meanwhile.
pub fn publish(hidden: &Path, dst: &Path) -> Result<(), Failure> {
    publish_named(rfs::CWD, hidden, dst, hidden, dst)
}

/// [`publish`] of a task's copy where `work` says it is.
fn publish_at(work: &Work<'_>) -> Result<(), Failure> {
    let site = &work.site;
    publish_named(
        site.dir(),
        &site.hidden,
        &site.name,
        &work.hidden_path,
        &work.dst_path,
    )
}

/// Renames `from` to `to` in `dir` without replacing anything; the failure names the paths
/// `hidden` and `dst`.
fn publish_named(
    dir: BorrowedFd<'_>,
    from: &Path,
    to: &Path,
    hidden: &Path,
    dst: &Path,
) -> Result<(), Failure> {
    fsops::rename_no_replace_at(dir, from, to).map_err(|e| {
        let why = if e.kind() == io::ErrorKind::AlreadyExists {
            "it appeared during the copy".to_string()
        } else {
            e.to_string()
        };
        Failure::new(
            dst,
            format!(
                "cannot put the copy in place ({why}); it is left at {}",
                quote(hidden)
            ),
        )
    })
}

/// Publishes a hidden directory the task could not finish (stopped, or its destination
/// could not be opened): what it holds is complete, so a resume keeps it.
fn publish_unfinished(work: &Work<'_>, report: &mut DirReport) {
    if let Err(failure) = publish_at(work) {
        report.tally.failures.push(failure);
    }
    report.hidden = false;
}
