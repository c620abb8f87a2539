//! What runs in the copier's pool workers: list a directory and copy what it holds, copy a
//! batch of entries, copy one span of a large file, compare two files.
//!
//! Each worker gets, once at start ([`setup`]), the queue it reports progress on, the event
//! that asks it to stop, and the options. Tasks return what the coordinator must do next:
//! subdirectories to walk, entries it must place itself (hard links, large files), failures.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiprocess::{Event, Queue};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::claims::{Claim, Claims};
use super::fsops::{self, Options, Staged};
use super::meta::{Entry, Failure, Kind, Meta, RawPath};
use super::replace::{self, Same, Verdict};

/// Progress as workers report it: files and bytes finished since the last report.
pub type Tick = (u64, u64);

/// A directory with more than one task's worth of entries hands the rest back in batches of
/// at most this many entries...
const BATCH_ENTRIES: usize = 1000;

/// ... and at most this many bytes, so that the files of one directory are copied by every
/// worker at once.
const BATCH_BYTES: u64 = 8 << 20;

/// Files at least this large (with more than one worker) are copied in spans by several
/// workers at once.
pub const LARGE_FILE: u64 = 256 << 20;

struct WorkerState {
    /// Where progress goes, when it is shown.
    progress: Option<Queue<Tick>>,
    stop: Event,
    options: Options,
    /// Whether large files go back to the coordinator to be split.
    split_large: bool,
    /// The most files a listing opens as it looks at them (see [`look`]).
    open_as_listed: usize,
    /// Under `-L`: the files some name has claimed to copy (see [`Claims`]).
    claims: Option<Claims>,
}

static STATE: OnceLock<WorkerState> = OnceLock::new();

/// The pool initializer: keeps the progress queue (`None`: progress is not shown), the stop
/// event, the options and, under `-L`, the claims; lets Ctrl-C reach only the coordinator,
/// which stops the workers cleanly through `stop`.
pub fn setup(
    progress: Option<Queue<Tick>>,
    stop: Event,
    options: Options,
    split_large: bool,
    claims: Option<Claims>,
) {
    // SAFETY: ignoring SIGINT installs no handler code; the coordinator asks workers to stop.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    rustix::process::umask(Mode::empty());
    // A quarter of the descriptors this process may hold at most, for the files a listing
    // keeps open: the rest is for the directories, the copies and the pool.
    let fd_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let open_as_listed = fd_limit
        .map_or(OPEN_AS_LISTED, |n| (n / 4) as usize)
        .min(OPEN_AS_LISTED);
    let _ = STATE.set(WorkerState {
        progress,
        stop,
        options,
        split_large,
        open_as_listed,
        claims,
    });
}

fn state() -> &'static WorkerState {
    STATE
        .get()
        .expect("copier workers are set up by their initializer")
}

/// Sums progress and sends it every 50 ms, and when dropped; does nothing when progress is
/// not shown.
struct Reporter {
    progress: Option<&'static Queue<Tick>>,
    files: u64,
    bytes: u64,
    last: Instant,
}

impl Reporter {
    fn new() -> Reporter {
        Reporter {
            progress: state().progress.as_ref(),
            files: 0,
            bytes: 0,
            last: Instant::now(),
        }
    }

    fn bytes(&mut self, n: u64) {
        self.bytes += n;
        self.maybe_flush();
    }

    fn file(&mut self) {
        self.files += 1;
        self.maybe_flush();
    }

    fn maybe_flush(&mut self) {
        if self.progress.is_some() && self.last.elapsed() >= Duration::from_millis(50) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(progress) = self.progress.filter(|_| self.files + self.bytes > 0) {
            let _ = progress.put((self.files, self.bytes));
        }
        self.files = 0;
        self.bytes = 0;
        self.last = Instant::now();
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What a task counted.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Counts {
    pub files: u64,
    pub bytes: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub specials: u64,
    pub hard_links: u64,
    /// Left alone by `--update` or `--resume` (see [`Verdict`]).
    pub skipped: u64,
}

impl Counts {
    /// Adds another task's counts.
    pub fn add(&mut self, other: &Counts) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.dirs += other.dirs;
        self.symlinks += other.symlinks;
        self.specials += other.specials;
        self.hard_links += other.hard_links;
        self.skipped += other.skipped;
    }
}

/// What ended a task early for every file after it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Stop {
    /// The coordinator asked to stop.
    Interrupted,
    /// The destination is full: nothing more can be written.
    DiskFull(Failure),
}

/// Copy one source directory into its destination.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirTask {
    pub src: RawPath,
    pub dst: RawPath,
    pub meta: Meta,
    /// `(dev, ino)` of the directories above, to notice loops under `-L`.
    pub ancestors: Vec<(u64, u64)>,
    /// The name, beside `dst`, the directory is written under while hidden (see
    /// [`copy_dir`]).
    pub hidden: RawPath,
    /// The directory `dst` goes into was made by this copy: nothing is there yet under
    /// `dst`'s name, so nobody needs to look.
    pub parent_made: bool,
    /// The task may copy small trees below it itself (see [`SmallTree`]); not while the
    /// other workers wait for the subdirectories it finds.
    pub small_trees: bool,
}

/// What a directory task found and did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DirReport {
    pub counts: Counts,
    pub subdirs: Vec<Entry>,
    /// Subdirectories that may be small leaves, left untried for lack of room (see
    /// [`copy_small_leaves`]): the coordinator hands them out in bundles ([`LeavesTask`]).
    pub leaves: Vec<Entry>,
    /// Entries the coordinator places itself: hard-link groups and large files.
    pub deferred: Vec<Entry>,
    /// Entries left for batch tasks (a directory with more than one batch of work).
    pub spill: Vec<Vec<Entry>>,
    pub failures: Vec<Failure>,
    pub warnings: Vec<String>,
    /// The directory's own metadata is already applied (nothing was left to do inside it),
    /// or must not be (the destination could not be made).
    pub finished: bool,
    /// The destination directory existed before.
    pub existed: bool,
    /// The destination is still at its hidden name (the coordinator finishes it).
    pub hidden: bool,
    pub stopped: Option<Stop>,
    /// Under `-L`: the files of one link it copied or found up to date, below it.
    pub reached: Vec<Reached>,
}

/// Subdirectories of one directory that may be small leaves, for one task to try together
/// (see [`copy_leaves`]): a tree of many small directories takes a task per bundle of them,
/// not per directory.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeavesTask {
    /// Their directory, as its own task was given it; `parent.hidden` is this bundle's own
    /// temporary name (each leaf is hidden under it plus `.N` while it is written).
    pub parent: DirTask,
    /// The destination directory existed before this copy.
    pub existed: bool,
    pub leaves: Vec<Entry>,
}

/// Where a batch's entries come from and go to.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchTask {
    pub src_dir: RawPath,
    pub dst_dir: RawPath,
    pub entries: Vec<Entry>,
    /// The destination name when it differs from the source's (a single file copied to a
    /// new name).
    pub rename: Option<RawPath>,
    /// The destination directory existed before (its entries may exist).
    pub existed: bool,
    /// The destination directory is a hidden one this copy made (see [`copy_dir`]).
    pub hidden: bool,
}

/// What a batch did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BatchReport {
    pub counts: Counts,
    pub failures: Vec<Failure>,
    pub warnings: Vec<String>,
    pub stopped: Option<Stop>,
    /// Under `-L`: the files of one link it copied or found up to date.
    pub reached: Vec<Reached>,
}

/// Under `-L`, a regular file of one link that a task reached: its source's device and
/// inode, and the path below the task's directory of the name that reached it. Names that
/// lead to one file (the file and links to it, followed) reach one inode: the first to
/// claim it copies it (see [`Claims`]), the others are not copied, and the coordinator makes
/// them hard links of that copy once the copy is done, as `cp -aL` does. (Files of several
/// links are kept together by their groups as they are copied.)
#[derive(Debug, Serialize, Deserialize)]
pub struct Reached {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Found up to date (`--resume`, or `--update` with the same size and time), not copied.
    pub skipped: bool,
    pub path: RawPath,
    pub holds: Holds,
}

/// What a name under `-L` holds once its task is done (see [`Reached`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Holds {
    /// A copy (or an up-to-date one): its device and inode. A name that no longer holds it
    /// when the links are made is not linked over.
    Copy(u64, u64),
    /// Nothing of this copy yet: another name claimed the file. The source's path is kept
    /// should that name's copy fail; `found` is what was at the name then (a copy from
    /// before, in a resume): a name that holds anything else by the time the links are
    /// made was written by another source of this copy, and is left alone.
    Claimed {
        source: RawPath,
        found: Option<(u64, u64)>,
    },
}

/// What is at the destination `dst_name` (in `dirs.dst`) of `entry`, and what to do about
/// it (see [`replace::judge_at`]): `None` when nothing is there. Also what is there before
/// a name another claimed is linked there later (see [`Holds::Claimed`]).
fn judge(dirs: &Dirs, entry: &Entry, dst_name: &Path) -> io::Result<Option<(Meta, Verdict)>> {
    replace::judge_at(
        (dirs.dst.as_fd(), dst_name),
        (dirs.src.as_fd(), entry.name.path()),
        &entry.meta,
        &state().options,
        || {
            let src = dirs.src_path.join(entry.name.path());
            (src, dirs.dst_path.join(dst_name))
        },
    )
}

/// One span of a large file, copied into a temporary file the coordinator made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpanTask {
    pub src: RawPath,
    pub temp: RawPath,
    pub start: u64,
    pub end: u64,
    pub sparse: bool,
}

/// The open directories a task works in.
struct Dirs {
    src: OwnedFd,
    dst: OwnedFd,
    src_path: PathBuf,
    /// Where `dst` is now (under a hidden name, while it is hidden).
    dst_path: PathBuf,
    existed: bool,
    /// `dst` is a hidden directory this copy made, or inside one: files are created under
    /// their own names.
    direct: bool,
    /// `dst` was opened to be read (not `O_PATH`): its metadata can be set through it.
    dst_readable: bool,
    /// What a file created in `dst` with a given mode is...
    created: Box<dyn Fn(u32) -> fsops::Created>,
    /// ... and what `dst` itself is.
    itself: fsops::Created,
}

impl Dirs {
    /// Works in the open destination directory `dst` (at `dst_path`) beside the open source
    /// `src`.
    fn new(
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

    /// Opens the source directory `src` and the destination directory `dst` by path (as a
    /// batch or a bundle of leaves does) and works in them.
    fn open(src: &Path, dst: &Path, existed: bool, direct: bool) -> io::Result<Dirs> {
        let src_fd = fsops::open_dir(src, false)?;
        let dst_fd = fsops::open_dir(dst, false).map_err(cannot_open(dst))?;
        Dirs::new(src_fd, src, dst_fd, dst, existed, direct)
    }
}

/// Sets the metadata of the directory a task made or worked in (`dirs.dst`), through it if
/// it could be read; a failure goes in the report.
fn apply_meta(dirs: &Dirs, task: &DirTask, report: &mut DirReport) {
    let applied = if dirs.dst_readable {
        fsops::apply_open_dir_meta(dirs.src.as_fd(), dirs.dst.as_fd(), &task.meta, dirs.itself)
    } else {
        fsops::apply_dir_meta(&dirs.src_path, &dirs.dst_path, &task.meta)
    };
    if let Err(e) = applied {
        report.failures.push(Failure::new(
            &dirs.src_path,
            format!("cannot set directory attributes: {e}"),
        ));
    }
}

/// Names the destination directory `path` in an error opening it.
fn cannot_open(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
}

/// Where a directory task makes its copy: a directory open in the worker and the names in
/// it, so that the calls on the copy look up one name, not its whole path each time.
struct Site<'p> {
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

/// Lists a directory, copies its entries, and reports what is left for the coordinator.
///
/// A new directory is written under its hidden name (`task.hidden`) when it has files and
/// no subdirectories, files in one batch, or no files but subdirectories that may be small
/// leaves: its files are created directly under their own names inside it, and none can be
/// seen under its final path until all are complete and the directory renamed. The worker
/// renames it once its files and small leaves are written (with other subdirectories:
/// before the walk goes on below them); a directory whose files went to several tasks is
/// still hidden in the report, and the coordinator renames it. Small leaf subdirectories,
/// and small trees while the other workers have work enough, are copied by the same task
/// (see [`copy_small_leaves`]), inside the hidden directory if there is one, so that they need
/// no hiding of their own; the others are handed back.
pub fn copy_dir(task: DirTask) -> DirReport {
    copy_dir_as(&task, None, None).expect("a task always reports")
}

/// [`copy_dir`]'s body. `parent`: the directory is a subdirectory the task of its parent
/// (working in `parent`) copies if it turns out to be a small leaf (see
/// [`copy_small_leaves`]); `None` (and nothing done) if it is not. `planned`: it is a small
/// tree, listed already, that this task copies whole (see [`SmallTree`]).
fn copy_dir_as(
    task: &DirTask,
    parent: Option<&Dirs>,
    planned: Option<SmallTree>,
) -> Option<DirReport> {
    let inline = parent.is_some();
    // A small leaf going into a directory that is still hidden is made under its own name.
    let in_hidden = parent.is_some_and(|p| p.direct);
    let mut report = DirReport::default();
    if state().stop.is_set() {
        report.stopped = Some(Stop::Interrupted);
        report.finished = true;
        return Some(report);
    }
    let src_path = task.src.path();
    let dst_path = task.dst.path();
    let (src, entries, trees) = match planned {
        Some(tree) => (tree.src, tree.entries, tree.subdirs),
        None => match open_and_list(task, parent, &mut report) {
            Opened::Listed(src, entries) => (src, entries, Vec::new()),
            Opened::NotALeaf => return None,
            Opened::Failed => return Some(report),
        },
    };
    let mut here = Vec::new();
    for entry in entries {
        match entry.meta.kind {
            Kind::Dir => report.subdirs.push(entry),
            _ if for_coordinator(&entry.meta) => report.deferred.push(entry),
            _ => here.push(entry),
        }
    }
    let mut batches = batches(here);
    if inline && !(report.subdirs.is_empty() && report.deferred.is_empty() && batches.len() <= 1) {
        return None;
    }
    let site = Site::of(task, parent);
    let hidden_path = dst_path.with_file_name(task.hidden.path());
    // Hidden while its files are written, if new and if this task writes them all before
    // the walk goes on below (no subdirectories, only one batch of files, or no files but
    // maybe small leaves or trees; or a small tree, written whole).
    let shape = if !trees.is_empty() {
        true
    } else if batches.is_empty() {
        let may_be_small = |d: &Entry| may_be_leaf(&d.meta) || may_copy_trees(task);
        report.subdirs.iter().any(may_be_small)
    } else {
        report.subdirs.is_empty() || batches.len() == 1
    };
    let hide = !in_hidden && shape && (task.parent_made || !exists(site.dir(), &site.name));
    let (work_name, work_path) = match parent {
        _ if hide => (site.hidden.as_path(), hidden_path.clone()),
        Some(p) if in_hidden => (site.name.as_path(), p.dst_path.join(&site.name)),
        _ => (site.name.as_path(), dst_path.to_path_buf()),
    };
    let work = work_path.as_path();
    let made = make_dir(
        (site.dir(), work_name),
        (src_path, &task.meta),
        work,
        &mut report,
    );
    if let Some(failure) = made {
        report.failures.push(failure);
    }
    if report.finished || report.stopped.is_some() {
        report.subdirs.clear();
        report.deferred.clear();
        return Some(report);
    }
    report.hidden = hide;
    report.counts.dirs = u64::from(!report.existed);
    // A directory this task made is readable by it: its metadata is then set through it.
    let readable = !report.existed;
    let dirs = fsops::open_dir_at(site.dir(), work_name, readable, false)
        .map_err(cannot_open(work))
        .and_then(|dst| Dirs::new(src, src_path, dst, work, report.existed, hide || in_hidden))
        .map(|d| Dirs {
            dst_readable: readable,
            ..d
        });
    let dirs = match dirs {
        Ok(d) => d,
        Err(e) => {
            report.failures.push(Failure::new(src_path, e));
            report.subdirs.clear();
            report.deferred.clear();
            if hide {
                publish_unfinished(&site, &hidden_path, dst_path, &mut report);
                report.finished = true;
            }
            return Some(report);
        }
    };
    if report.existed && (state().options.resume || state().options.update) {
        // A resume: what a copy killed before it could finish left here goes.
        fsops::remove_stale_temps(dirs.dst.as_fd(), work);
    }
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
    let mut batch = BatchReport::default();
    copy_entries(&dirs, here, None, &mut batch, &mut Reporter::new());
    report.counts.add(&batch.counts);
    report.failures.append(&mut batch.failures);
    report.warnings.append(&mut batch.warnings);
    report.stopped = batch.stopped;
    report.reached.append(&mut batch.reached);
    copy_small_trees(task, &dirs, trees, &mut report);
    if report.stopped.is_some() {
        // What is there is complete (a file cut short was removed): keep it for a resume.
        if hide {
            publish_unfinished(&site, &hidden_path, dst_path, &mut report);
        }
        report.finished = true;
    } else if hide && !report.subdirs.is_empty() {
        // Its files are complete; so are its small leaves once copied into it. It takes its
        // name before the walk goes on below it (its metadata comes once everything inside
        // is written). A stop among the leaves leaves only complete files: they are kept.
        // When all were copied here, nothing is left inside: its metadata comes now.
        copy_small_leaves(task, &dirs, &mut report);
        let all_here = report.subdirs.is_empty()
            && report.leaves.is_empty()
            && report.deferred.is_empty()
            && report.stopped.is_none();
        if all_here {
            apply_meta(&dirs, task, &mut report);
            report.finished = true;
        }
        match publish_at(&site, &hidden_path, dst_path) {
            Ok(()) => {}
            Err(failure) => {
                report.failures.push(failure);
                report.subdirs.clear();
                report.deferred.clear();
                report.leaves.clear();
                report.finished = true;
            }
        }
        report.hidden = false;
    } else if report.deferred.is_empty() {
        apply_meta(&dirs, task, &mut report);
        if hide {
            if let Err(failure) = publish_at(&site, &hidden_path, dst_path) {
                report.failures.push(failure);
            }
            report.hidden = false;
        }
        report.finished = true;
    }
    Some(report)
}

/// What [`open_and_list`] found.
enum Opened {
    /// The source directory, open, and its entries.
    Listed(OwnedFd, Vec<Entry>),
    /// A directory tried as a small leaf is not one: nothing was done.
    NotALeaf,
    /// It cannot be opened: the report says why (and the copy was made all the same).
    Failed,
}

/// Opens and lists the source directory of `task`: as a small leaf of the task working in
/// `parent` if there is one (see [`copy_small_leaves`]), else whole.
fn open_and_list(task: &DirTask, parent: Option<&Dirs>, report: &mut DirReport) -> Opened {
    let inline = parent.is_some();
    let src_path = task.src.path();
    let dst_path = task.dst.path();
    let opened = match parent {
        Some(p) => fsops::open_dir_at(
            p.src.as_fd(),
            Path::new(src_path.file_name().unwrap_or_default()),
            true,
            state().options.dereference,
        ),
        None => fsops::open_dir(src_path, true),
    };
    let src = match opened {
        Ok(fd) => fd,
        Err(_) if inline => return Opened::NotALeaf,
        Err(e) => {
            // Made all the same, as `cp -a` makes it, with the source's metadata.
            let site = Site::of(task, None);
            let site_name = (site.dir(), site.name.as_path());
            let made = make_dir(site_name, (src_path, &task.meta), dst_path, report);
            if let Some(failure) = made {
                report.failures.push(failure);
            }
            report.failures.push(Failure::new(src_path, e));
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
            report
                .failures
                .push(Failure::new(src_path, format!("cannot list: {e}")));
            Opened::Listed(src, Vec::new())
        }
    }
}

/// Copies, within the task of their parent, the subdirectories that are small leaves (no
/// subdirectories of their own: a directory's link count is 2 then, on the file systems that
/// count them) or small trees (see [`SmallTree`]): one batch of entries, nothing for the
/// coordinator; up to one batch's worth of files in all. A tree of many small directories
/// then takes a task per parent, not per directory. The others are handed back as usual
/// (`report.subdirs`); so is one that turns out not to be small. Leaves left untried for lack
/// of room go to `report.leaves`.
/// Such a subdirectory is written inside the task's directory while that is still hidden,
/// or else hidden under the task's hidden name plus `.N` while it is written.
fn copy_small_leaves(task: &DirTask, dirs: &Dirs, report: &mut DirReport) {
    let (mut files, mut bytes) = (0, 0);
    let mut handed_back = Vec::new();
    for (n, sub) in std::mem::take(&mut report.subdirs).into_iter().enumerate() {
        let room = files < BATCH_ENTRIES as u64 && bytes < BATCH_BYTES && report.stopped.is_none();
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
        files += done.counts.files + done.counts.symlinks + done.counts.specials;
        bytes += done.counts.bytes;
        merge_inline(report, done, sub.name.path());
    }
    report.subdirs = handed_back;
}

/// Copies the subdirectories of a small tree (see [`SmallTree`]), which the task copying the
/// tree's directory (working in `dirs`) has listed already. A stop leaves the rest uncopied.
fn copy_small_trees(
    task: &DirTask,
    dirs: &Dirs,
    trees: Vec<(Entry, SmallTree)>,
    report: &mut DirReport,
) {
    for (sub, tree) in trees {
        if report.stopped.is_some() {
            return;
        }
        // Hidden only inside a directory that existed (a resume): a temporary name that a
        // later resume removes if this copy cannot.
        let child = inline_task(task, dirs, &sub, fsops::temp_name());
        // A planned tree is always copied: only a leaf may turn out not to be one.
        if let Some(done) = copy_dir_as(&child, Some(dirs), Some(tree)) {
            merge_inline(report, done, sub.name.path());
        }
    }
}

/// The task of the subdirectory `sub` of `task`'s directory, copied within it (working in
/// `dirs`), under the name `hidden` while hidden (if it needs to be).
fn inline_task(task: &DirTask, dirs: &Dirs, sub: &Entry, hidden: PathBuf) -> DirTask {
    let mut ancestors = task.ancestors.clone();
    ancestors.push((task.meta.dev, task.meta.ino));
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

/// Adds what a subdirectory (`name`) copied within a task did to the task's report.
fn merge_inline(report: &mut DirReport, mut done: DirReport, name: &Path) {
    report.counts.add(&done.counts);
    report.failures.append(&mut done.failures);
    report.warnings.append(&mut done.warnings);
    report
        .reached
        .extend(done.reached.into_iter().map(|r| Reached {
            path: RawPath(name.join(r.path.path())),
            ..r
        }));
    report.stopped = report.stopped.take().or(done.stopped);
}

/// Whether `task` may copy small trees below its directory (see [`SmallTree`]): when the
/// coordinator says so, and not under `-L`, where links to directories are walked too.
fn may_copy_trees(task: &DirTask) -> bool {
    task.small_trees && !state().options.dereference
}

/// Whether a subdirectory may be a leaf: no subdirectories of its own, as its link count
/// says on the file systems that count them (2: its name and its `.`).
fn may_be_leaf(meta: &Meta) -> bool {
    meta.nlink == 2
}

/// Whether anything is at `name` in `dir` (not followed).
fn exists(dir: BorrowedFd<'_>, name: &Path) -> bool {
    !matches!(
        rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
        Err(Errno::NOENT)
    )
}

/// Makes the destination directory `name` in `dir` (at `dst`; 0700 until its metadata is
/// applied) for the source directory `src` (of metadata `meta`), or finds a real directory
/// there (`report.existed`) other than the source itself. A full disk stops the task
/// (`report.stopped`); anything else that prevents it is returned as `src`'s failure, and
/// the directory is not ours to finish.
fn make_dir(
    (dir, name): (BorrowedFd<'_>, &Path),
    (src, meta): (&Path, &Meta),
    dst: &Path,
    report: &mut DirReport,
) -> Option<Failure> {
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => None,
        Err(Errno::EXIST) => {
            let found = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW);
            let old = found.ok().map(|st| Meta::from_stat(&st));
            let same = old.is_some_and(|old| {
                let followed = || replace::followed_at(dir, name);
                replace::same_file(meta, &old, || None, followed) == Same::OneFile
            });
            // A real directory only: never write through a link to somewhere else.
            if !same && old.is_some_and(|old| old.kind == Kind::Dir) {
                report.existed = true;
                return None;
            }
            report.finished = true;
            if same {
                return Some(Failure::new(src, replace::same_file_message(src, dst)));
            }
            Some(Failure::new(
                src,
                format!(
                    "cannot overwrite non-directory '{}' with a directory",
                    dst.display()
                ),
            ))
        }
        Err(e) => {
            report.finished = true;
            let failure = Failure::io(dst, &io::Error::from(e));
            if failure.disk_full {
                report.stopped = Some(Stop::DiskFull(failure));
                return None;
            }
            Some(Failure::new(
                src,
                format!("cannot create {}: {e}", dst.display()),
            ))
        }
    }
}

/// Gives a hidden directory its final name, unless something took that name meanwhile.
pub fn publish(hidden: &Path, dst: &Path) -> Result<(), Failure> {
    publish_named(rfs::CWD, hidden, dst, hidden, dst)
}

/// [`publish`] of a task's copy at its site (`hidden` and `dst` are its paths, for messages).
fn publish_at(site: &Site<'_>, hidden: &Path, dst: &Path) -> Result<(), Failure> {
    publish_named(site.dir(), &site.hidden, &site.name, hidden, dst)
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
                hidden.display()
            ),
        )
    })
}

/// Publishes a hidden directory the task could not finish (stopped, or its destination
/// could not be opened): what it holds is complete, so a resume keeps it.
fn publish_unfinished(site: &Site<'_>, hidden: &Path, dst: &Path, report: &mut DirReport) {
    if let Err(failure) = publish_at(site, hidden, dst) {
        report.failures.push(failure);
    }
    report.hidden = false;
}

/// Splits entries into batches of at most [`BATCH_ENTRIES`] entries and [`BATCH_BYTES`]
/// bytes (a larger file alone).
fn batches(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
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
pub fn copy_batch(task: BatchTask) -> BatchReport {
    let mut report = BatchReport::default();
    let src_dir = task.src_dir.path();
    let dst_dir = task.dst_dir.path();
    let dirs = match Dirs::open(src_dir, dst_dir, task.existed, task.hidden) {
        Ok(d) => d,
        Err(e) => {
            for entry in &task.entries {
                let path = task.src_dir.path().join(entry.name.path());
                report.failures.push(Failure::new(&path, &e));
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
                report
                    .failures
                    .push(Failure::new(&src_dir.join(leaf.name.path()), &e));
            }
        }
    }
    report
}

/// Copies one span of a large file into the coordinator's temporary file.
pub fn copy_span(task: SpanTask) -> Result<u64, Failure> {
    let fail = |e: io::Error| Failure::io(task.src.path(), &e);
    let src = fsops::open_source(rfs::CWD, task.src.path(), true).map_err(|e| fail(e.into()))?;
    let dst = rfs::open(
        task.temp.path(),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(e.into()))?;
    let mut reporter = Reporter::new();
    let stop = || state().stop.is_set();
    fsops::copy_span(
        src.as_fd(),
        dst.as_fd(),
        task.start,
        task.end,
        task.sparse,
        &mut |n| reporter.bytes(n),
        &stop,
    )
    .map_err(fail)?;
    Ok(task.end - task.start)
}

/// Compares a source file with its copy by checksums (`--verify` for large files).
pub fn verify_pair(src: RawPath, copy: RawPath) -> Result<(), Failure> {
    let open = |p: &Path| fsops::open_source(rfs::CWD, p, true);
    let fail = |e: io::Error| Failure::new(src.path(), e);
    let a = open(src.path()).map_err(|e| fail(e.into()))?;
    let b = open(copy.path()).map_err(|e| fail(e.into()))?;
    match fsops::same_contents(a.as_fd(), b.as_fd()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::new(
            src.path(),
            "verification failed: the copy differs",
        )),
        Err(e) => Err(fail(e)),
    }
}

/// A subdirectory with subdirectories of its own that is small enough to be copied whole by
/// the task of its parent (see [`copy_small_leaves`]): one batch of entries and bytes in all,
/// its directories included, in at most [`TREE_DIRS`] directories, and nothing for the
/// coordinator. It is listed through before any of it is copied.
struct SmallTree {
    /// The source directory, open.
    src: OwnedFd,
    /// Its entries that are not directories.
    entries: Vec<Entry>,
    /// Its subdirectories.
    subdirs: Vec<(Entry, SmallTree)>,
}

/// The most directories a [`SmallTree`] holds (each is open while it is planned).
const TREE_DIRS: usize = 64;

/// The names in a directory, before any is statted (see [`plan_tree`]).
struct Names {
    dir: OwnedFd,
    /// Names of entries that are not directories, with their types (as the listing says).
    others: Vec<(PathBuf, rfs::FileType)>,
    subdirs: Vec<(PathBuf, Names)>,
}

/// Plans the subdirectory `sub` of the directory `src` (the source of `task`) as a
/// [`SmallTree`]: `None` if it is not one, or cannot be read (its own task then reports
/// why). Its names are gathered first, so that a tree too large is given up before any stat
/// (its own task lists it again). `new`: `task`'s destination was made by this copy.
fn plan_tree(src: BorrowedFd<'_>, sub: &Entry, task: &DirTask, new: bool) -> Option<SmallTree> {
    let mut entries = BATCH_ENTRIES;
    let mut dirs = TREE_DIRS;
    let names = gather_names(src, sub.name.path(), &mut entries, &mut dirs)?;
    let mut seen = task.ancestors.clone();
    seen.push((task.meta.dev, task.meta.ino));
    seen.push((sub.meta.dev, sub.meta.ino));
    let mut bytes = BATCH_BYTES;
    let open = open_as_listed(BATCH_ENTRIES - entries, new);
    stat_names(names, &mut bytes, &mut seen, open)
}

/// Gathers the names below `name` in `dir`, as long as they take no more than `entries`
/// entries in `dirs` directories.
fn gather_names(
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
/// opened as they are looked at (see [`look`]).
fn stat_names(
    names: Names,
    bytes: &mut u64,
    seen: &mut Vec<(u64, u64)>,
    open: bool,
) -> Option<SmallTree> {
    let dir = names.dir.as_fd();
    let mut entries = Vec::with_capacity(names.others.len());
    for (name, file_type) in names.others {
        let (meta, source) = look(dir, &name, file_type, open, false).ok()?;
        if meta.kind == Kind::Dir || for_coordinator(&meta) {
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
    for (name, below) in names.subdirs {
        let (meta, _) = look(dir, &name, rfs::FileType::Directory, false, false).ok()?;
        if meta.kind != Kind::Dir || seen.contains(&(meta.dev, meta.ino)) {
            return None;
        }
        seen.push((meta.dev, meta.ino));
        let tree = stat_names(below, bytes, seen, open)?;
        seen.pop();
        subdirs.push((Entry::new(RawPath(name), meta), tree));
    }
    Some(SmallTree {
        src: names.dir,
        entries,
        subdirs,
    })
}

/// The names in the open directory `dir` (freshly opened, at offset 0: read through it, not
/// a reopened copy), with their types as the listing gives them; `None` past `most` names.
fn read_names(dir: &OwnedFd, most: usize) -> io::Result<Option<Vec<(PathBuf, rfs::FileType)>>> {
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
enum Listing {
    /// Every entry.
    All,
    /// Every entry of a small leaf, or nothing as soon as the directory is not one (see
    /// [`copy_small_leaves`]): more entries or bytes than one batch, a subdirectory, an entry
    /// for the coordinator. A huge leaf is not looked at twice, then: its names are counted
    /// before any is statted.
    SmallLeaf,
}

/// Reads a directory's entries with their metadata; `None` if it is not what `listing` asks
/// for.
fn list(
    src: &OwnedFd,
    src_path: &Path,
    task: &DirTask,
    listing: Listing,
    report: &mut DirReport,
) -> io::Result<Option<Vec<Entry>>> {
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
    let follow = state().options.dereference;
    let mut entries = Vec::with_capacity(names.len());
    let mut bytes = 0;
    for (name, file_type) in names {
        let (meta, source) = match look(src.as_fd(), &name, file_type, open, follow) {
            Ok(found) => found,
            Err(e) => {
                report
                    .failures
                    .push(Failure::new(&src_path.join(&name), io::Error::from(e)));
                continue;
            }
        };
        if small_only {
            bytes += meta.size;
            // Two entries or more over BATCH_BYTES never fit in one batch.
            let too_big = !entries.is_empty() && bytes > BATCH_BYTES;
            if meta.kind == Kind::Dir || for_coordinator(&meta) || too_big {
                return Ok(None);
            }
        }
        if meta.kind == Kind::Dir
            && (task.ancestors.contains(&(meta.dev, meta.ino))
                || (task.meta.dev, task.meta.ino) == (meta.dev, meta.ino))
        {
            report.failures.push(Failure::new(
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

/// Listings of at most this many names (in a directory, or in a small tree) open their
/// regular files as they look at them, for the copy to read (see [`look`]). A larger
/// directory's files are mostly copied by other tasks; and this bounds the descriptors a
/// task holds (less where the process may hold fewer than four times this many). The pool's
/// workers, daemonic processes, have room for 1000 descriptors from their start: holding
/// these never makes their table grow, which would stall them.
const OPEN_AS_LISTED: usize = 512;

/// Whether a listing of `count` names (a directory's, or a small tree's) opens its files as
/// it looks at them (see [`look`]): not past [`OPEN_AS_LISTED`], nor where the copies may
/// exist already and `--update` or `--resume` skip them (`new`: nothing can be there yet).
fn open_as_listed(count: usize, new: bool) -> bool {
    let options = &state().options;
    count <= state().open_as_listed && (new || !(options.update || options.resume))
}

/// Looks at `name` in `dir` (a `file_type`, as the listing says) for its snapshot. When
/// `open`, a regular file is opened and its snapshot taken through the descriptor, which is
/// returned for the copy to read (unless the entry goes to the coordinator): its name is
/// looked up once, not twice (a stat by name, then an open). Anything else, or a file that
/// cannot be opened (its copy then says why), is statted by name: followed under `follow`,
/// where a dangling link is taken as the link it is.
fn look(
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
            Ok((meta, _)) if for_coordinator(&meta) => return Ok((meta, None)),
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

/// Whether an entry that is not a directory goes back to the coordinator rather than being
/// copied with its directory's files: a member of a hard-link group, or a file large enough
/// to be split.
fn for_coordinator(meta: &Meta) -> bool {
    meta.is_multiply_linked()
        || (meta.kind == Kind::File && state().split_large && meta.size >= LARGE_FILE)
}

/// Copies entries of one directory, stopping at a stop request or a full disk. Each entry
/// goes (its file closed, if the listing opened it) once copied.
fn copy_entries(
    dirs: &Dirs,
    entries: Vec<Entry>,
    rename: Option<&RawPath>,
    report: &mut BatchReport,
    reporter: &mut Reporter,
) {
    let stop = || state().stop.is_set();
    let claims = state().claims.as_ref();
    for entry in entries {
        if stop() {
            report.stopped = Some(Stop::Interrupted);
            return;
        }
        let dst_name = rename.unwrap_or(&entry.name).path();
        let meta = &entry.meta;
        // Under `-L` (only then are there claims), a file of one link may be reached by
        // several names: only the first copies it.
        let claim = claims.and_then(|c| c.claim_file(meta));
        let reached = |holds| Reached {
            dev: meta.dev,
            ino: meta.ino,
            size: meta.size,
            skipped: false,
            path: RawPath::new(dst_name),
            holds,
        };
        if claim == Some(Claim::Taken) {
            let source = dirs.src_path.join(entry.name.path());
            // In a new directory nothing was there before this copy.
            let found = match dirs.existed {
                true => judge(dirs, &entry, dst_name),
                false => Ok(None),
            };
            match found {
                // `--update`: a later file is kept, and never linked over.
                Ok(Some((_, Verdict::Newer))) => report.counts.skipped += 1,
                Ok(found) => {
                    let found = found.map(|(old, _)| (old.dev, old.ino));
                    let source = RawPath(source);
                    report
                        .reached
                        .push(reached(Holds::Claimed { source, found }));
                }
                Err(e) => report.failures.push(Failure::io(&source, &e)),
            }
            reporter.file();
            continue;
        }
        match copy_entry(dirs, &entry, dst_name, &mut report.counts, reporter, &stop) {
            // `--update`: a later file is kept, and never linked over.
            Ok(EntryDone::Kept(Verdict::Newer)) => {}
            Ok(done @ (EntryDone::Copied | EntryDone::Kept(_))) => {
                if claim.is_some() {
                    let copy = rfs::statat(&dirs.dst, dst_name, AtFlags::SYMLINK_NOFOLLOW);
                    if let Ok(copy) = copy.map(|st| Meta::from_stat(&st)) {
                        report.reached.push(Reached {
                            skipped: done != EntryDone::Copied,
                            ..reached(Holds::Copy(copy.dev, copy.ino))
                        });
                    }
                }
            }
            Ok(EntryDone::Warning(warning)) => report.warnings.push(warning),
            Err(e) if e.kind() == io::ErrorKind::Interrupted && stop() => {
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
enum EntryDone {
    Copied,
    /// Left as it was: [`Verdict::UpToDate`] or [`Verdict::Newer`].
    Kept(Verdict),
    /// Skipped for a reason that is not a failure (a device without the right to create it).
    Warning(String),
}

/// Copies one entry, unless what is at its destination is to be kept; never onto the source
/// itself (see [`replace`]).
fn copy_entry(
    dirs: &Dirs,
    entry: &Entry,
    dst_name: &Path,
    counts: &mut Counts,
    reporter: &mut Reporter,
    stop: &dyn Fn() -> bool,
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
            let bytes = copy_file(dirs, entry, dst_name, reporter, stop)?;
            counts.files += 1;
            counts.bytes += bytes;
            reporter.file();
        }
        Kind::Symlink => {
            let target = rfs::readlinkat(&dirs.src, entry.name.path(), Vec::new())?;
            replace_node(
                dirs.dst.as_fd(),
                dst_name,
                existing.is_some(),
                |dir, name| rfs::symlinkat(target.as_c_str(), dir, name),
            )?;
            fsops::apply_node_meta(dirs.dst.as_fd(), dst_name, meta, (dirs.created)(0).owner)?;
            counts.symlinks += 1;
            reporter.file();
        }
        Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
            if matches!(meta.kind, Kind::CharDevice | Kind::BlockDevice) && !fsops::is_root() {
                return Ok(EntryDone::Warning(format!(
                    "skipped device {} (creating devices needs root)",
                    dirs.src_path.join(entry.name.path()).display()
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
            )?;
            fsops::apply_node_meta(dirs.dst.as_fd(), dst_name, meta, (dirs.created)(0).owner)?;
            counts.specials += 1;
            reporter.file();
        }
        Kind::Dir => unreachable!("directories are walked, not copied as entries"),
    }
    Ok(EntryDone::Copied)
}

/// Creates a link or special file; over an existing entry, creates it under a temporary
/// name and renames it into place.
fn replace_node(
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
fn copy_file(
    dirs: &Dirs,
    entry: &Entry,
    dst_name: &Path,
    reporter: &mut Reporter,
    stop: &dyn Fn() -> bool,
) -> io::Result<u64> {
    let options = &state().options;
    let opened;
    let src = match &entry.source {
        Some(fd) => fd.as_fd(),
        None => {
            // Under -L the entry may be a link to a file.
            opened = fsops::open_source(dirs.src.as_fd(), entry.name.path(), options.dereference)?;
            opened.as_fd()
        }
    };
    let staged = if dirs.direct {
        Staged::create_in_hidden(dirs.dst.as_fd(), dst_name, entry.meta.mode, options.verify)?
    } else {
        Staged::create(dirs.dst.as_fd(), entry.meta.mode, options.verify)?
    };
    fsops::fill_and_place(
        staged,
        src,
        dirs.dst.as_fd(),
        dst_name,
        &entry.meta,
        options,
        Some((dirs.created)(entry.meta.mode & 0o777)),
        &mut |n| reporter.bytes(n),
        stop,
    )?;
    Ok(entry.meta.size)
}
