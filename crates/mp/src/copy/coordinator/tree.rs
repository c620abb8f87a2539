//! The directory tree as the coordinator sees it: a node per directory still being copied
//! (not per file), each in one [`Phase`]; what a directory's report turns into (batches of
//! its files, bundles of small leaves, a task per other subdirectory, entries the coordinator
//! places itself); and finishing a directory once nothing inside it is pending: its metadata,
//! then its final name if it is still hidden.
//!
//! A new directory is written under a hidden name while its files are (see `worker/dir.rs`);
//! the coordinator gives it its name when the worker could not (its files were spread over
//! several tasks), and when the copy stops publishes what such directories hold, minus any
//! file a worker was cut short in (`stopping.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use multiprocess::Error;

use super::dispatch::{Batch, BatchDone, Job};
use super::Coordinator;
use crate::copy::fsops;
use crate::copy::ids::{DirId, FileId};
use crate::copy::meta::{Entry, Failure, Meta, RawPath};
use crate::copy::protocol::{BatchTask, DirReport, DirTask, FinishTask, LeavesTask};
use crate::copy::worker;

/// How many subdirectories that may be small leaves one task is given to try (see
/// `worker/leaves.rs`).
const LEAVES_PER_TASK: usize = 32;

/// Where a directory's copy stands. Later phases win: a lost task makes a directory
/// [`Phase::Damaged`] whatever it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    /// Its own task lists it, makes its copy and copies what it can.
    Listing,
    /// Its copy is made (or was there); what is inside is still being copied: its metadata
    /// comes once all of it is written.
    Filling,
    /// Its own task set its metadata (nothing was left inside), or its copy could not be made:
    /// nothing more to set.
    Settled,
    /// Some of its subdirectories may be missing (a bundle's task was lost): its metadata is
    /// withheld, not to make a partial copy look finished.
    Incomplete,
    /// A task inside it was lost (its worker died): a file may be cut short. Its metadata is
    /// withheld, and a file that does not match its source is removed before it is published.
    Damaged,
}

/// A directory being copied.
pub(super) struct DirNode {
    pub(super) parent: Option<DirId>,
    pub(super) src: PathBuf,
    pub(super) dst: PathBuf,
    /// Where it is written while hidden (see `worker/dir.rs`).
    pub(super) hidden: PathBuf,
    /// It is at `hidden` now, to be renamed to `dst` when finished.
    pub(super) at_hidden: bool,
    /// The task that renames it is out: until it reports, a name in it may be at either
    /// path, and the names that need one wait in `held`.
    pub(super) renaming: bool,
    /// Members of hard-link groups whose copy is in it, met while it is renamed: placed
    /// once it is (see `groups.rs`).
    pub(super) held: Vec<Placement>,
    pub(super) phase: Phase,
    /// The source's metadata (none for the top level, which is not a copy of anything).
    pub(super) meta: Option<Meta>,
    ancestors: Vec<FileId>,
    /// Tasks and entries inside it still being copied (and, at the end, its finishing).
    pub(super) pending: usize,
    /// The hidden names of lost tasks that were copying small leaves into it: their `.N`
    /// directories go when it is finished (or the copy stops).
    pub(super) leftovers: Vec<PathBuf>,
    /// Its copy was there before this one (merged into).
    pub(super) existed: bool,
}

impl DirNode {
    /// Where it is written now: its hidden name while hidden, else its destination.
    pub(super) fn work(&self) -> &Path {
        match self.at_hidden {
            true => &self.hidden,
            false => &self.dst,
        }
    }
}

/// An entry the coordinator places itself (a top-level copy, a member of a hard-link group,
/// a large file): into which directory, from where, to where, and its metadata.
#[derive(Debug)]
pub(super) struct Placement {
    pub(super) dir: DirId,
    pub(super) src: PathBuf,
    pub(super) dst: PathBuf,
    pub(super) meta: Meta,
}

/// A name written in a directory of the copy: the directory, and the name's path while the
/// directory is hidden and once it is not (see [`Coordinator::placed`]).
pub(super) struct Placed {
    pub(super) dir: DirId,
    pub(super) hidden: PathBuf,
    pub(super) last: PathBuf,
}

/// The directories being copied.
pub(super) struct Tree {
    pub(super) nodes: HashMap<DirId, DirNode>,
    next: DirId,
}

impl Tree {
    /// The top level alone: it stays until the end (copies that wait for a destination are
    /// added to it later).
    pub(super) fn new() -> Tree {
        let top = DirNode {
            parent: None,
            src: PathBuf::new(),
            dst: PathBuf::new(),
            hidden: PathBuf::new(),
            at_hidden: false,
            renaming: false,
            held: Vec::new(),
            phase: Phase::Settled,
            meta: None,
            ancestors: Vec::new(),
            pending: 0,
            leftovers: Vec::new(),
            existed: true,
        };
        Tree {
            nodes: HashMap::from([(DirId::TOP, top)]),
            next: DirId::TOP.next(),
        }
    }

    /// The directory `id`, which is being copied.
    pub(super) fn node(&mut self, id: DirId) -> &mut DirNode {
        self.nodes.get_mut(&id).expect("a directory in progress")
    }

    /// Moves a directory to a later phase (see [`Phase`]).
    pub(super) fn worsen(&mut self, id: DirId, phase: Phase) {
        let node = self.node(id);
        node.phase = node.phase.max(phase);
    }
}

impl Coordinator<'_> {
    /// Starts copying the directory `src` (of metadata `meta`) to `dst`, in `parent`.
    pub(super) fn add_dir(&mut self, parent: DirId, src: PathBuf, dst: PathBuf, meta: Meta) {
        let id = self.tree.next;
        self.tree.next = id.next();
        let above = &self.tree.nodes[&parent];
        let mut ancestors = above.ancestors.clone();
        ancestors.extend(above.meta.map(|m| m.id()));
        let hidden_name = fsops::temp_name();
        let task = DirTask {
            src: RawPath::new(&src),
            dst: RawPath::new(&dst),
            meta,
            ancestors: ancestors.clone(),
            hidden: RawPath::new(&hidden_name),
            parent_made: !above.existed,
            small_trees: false,
        };
        let hidden = dst.with_file_name(hidden_name);
        let node = DirNode {
            parent: Some(parent),
            src,
            dst,
            hidden,
            at_hidden: false,
            renaming: false,
            held: Vec::new(),
            phase: Phase::Listing,
            meta: Some(meta),
            ancestors,
            pending: 1,
            leftovers: Vec::new(),
            existed: false,
        };
        self.tree.nodes.insert(id, node);
        self.dispatch.push(Job::Dir(id, task));
    }

    /// A directory's own task is done: its files are copied or spilled into batches, and
    /// its subdirectories and the entries the coordinator places are handed out.
    pub(super) fn dir_listed(&mut self, id: DirId, mut report: DirReport) {
        let base = self.tree.nodes[&id].dst.clone();
        self.note_reached(&base, std::mem::take(&mut report.tally.reached), true);
        self.record.absorb(std::mem::take(&mut report.tally));
        let node = self.tree.node(id);
        node.existed = report.existed;
        node.at_hidden = report.hidden;
        node.phase = match report.finished {
            true => Phase::Settled,
            false => Phase::Filling,
        };
        if self.record.stopped() {
            return;
        }
        let (src, existed, hidden) = (node.src.clone(), node.existed, node.at_hidden);
        let work = node.work().to_path_buf();
        node.pending += report.deferred.len() + report.spill.len();
        for entries in report.spill {
            let task = BatchTask {
                src_dir: RawPath::new(&src),
                dst_dir: RawPath::new(&work),
                entries,
                rename: None,
                existed,
                hidden,
            };
            let done = BatchDone::new(id, None, self.reached_base(&base));
            self.dispatch.push(Job::Batch(Batch { task, done }));
        }
        for Entry { name, meta, .. } in report.deferred {
            let (src, dst) = (src.join(name.path()), work.join(name.path()));
            self.place(Placement {
                dir: id,
                src,
                dst,
                meta,
            });
        }
        self.add_subdirs(id, report.subdirs, report.leaves);
        self.one_done(id);
    }

    /// A directory's own task was lost (its worker died, or its report could not be read):
    /// it is left as it is, its metadata withheld; what the task was copying into it under
    /// hidden names goes when it is finished.
    pub(super) fn dir_lost(&mut self, id: DirId, e: Error) {
        self.tree.worsen(id, Phase::Damaged);
        let node = self.tree.node(id);
        node.at_hidden = fsops::is_real_dir(&node.hidden);
        node.leftovers.push(node.hidden.clone());
        let src = node.src.clone();
        self.task_lost(&src, e);
        self.one_done(id);
    }

    /// A bundle of small leaves of `id` is done: those that were not small go out as usual.
    pub(super) fn leaves_done(&mut self, id: DirId, mut report: DirReport) {
        let base = self.tree.nodes[&id].dst.clone();
        self.note_reached(&base, std::mem::take(&mut report.tally.reached), true);
        self.record.absorb(report.tally);
        if !self.record.stopped() {
            self.add_subdirs(id, report.subdirs, report.leaves);
        }
        self.one_done(id);
    }

    /// A bundle of small leaves of `id` was lost (its hidden name `hidden`): what it was
    /// writing goes when `id` is finished, and some subdirectories of `id` may be missing.
    pub(super) fn leaves_lost(&mut self, id: DirId, hidden: PathBuf, e: Error) {
        self.tree.worsen(id, Phase::Incomplete);
        let node = self.tree.node(id);
        node.leftovers.push(hidden);
        let src = node.src.clone();
        self.task_lost(&src, e);
        self.one_done(id);
    }

    /// Where the names a batch in directory `dir` (at `dst_dir` now) reaches end up: below
    /// the directory's final name (only under `-L`, which keeps them).
    pub(super) fn reached_base(&self, dst_dir: &Path) -> PathBuf {
        match self.linker.is_some() {
            true => dst_dir.to_path_buf(),
            false => PathBuf::new(),
        }
    }

    /// Hands out the subdirectories a task found in directory `id`: those that may be small
    /// leaves (and were left untried) in bundles, the others as directory tasks.
    fn add_subdirs(&mut self, id: DirId, subdirs: Vec<Entry>, leaves: Vec<Entry>) {
        let node = self.tree.node(id);
        node.pending += subdirs.len() + leaves.len().div_ceil(LEAVES_PER_TASK);
        let (src, dst) = (node.src.clone(), node.dst.clone());
        if !leaves.is_empty() {
            let parent = DirTask {
                src: RawPath::new(&src),
                dst: RawPath::new(&dst),
                meta: node.meta.expect("a listed directory has its metadata"),
                ancestors: node.ancestors.clone(),
                hidden: RawPath::new(""),
                parent_made: false,
                small_trees: false,
            };
            let existed = node.existed;
            let mut leaves = leaves.into_iter().peekable();
            while leaves.peek().is_some() {
                let task = LeavesTask {
                    parent: DirTask {
                        hidden: RawPath::new(fsops::temp_name()),
                        ..parent.clone()
                    },
                    existed,
                    leaves: leaves.by_ref().take(LEAVES_PER_TASK).collect(),
                };
                self.dispatch.push(Job::Leaves(id, task));
            }
        }
        for Entry { name, meta, .. } in subdirs.into_iter().rev() {
            self.add_dir(id, src.join(name.path()), dst.join(name.path()), meta);
        }
    }

    /// One piece of work inside `dir` is done. A directory with nothing left is finished:
    /// by a task if there is anything to do on the disk (its metadata, unless its phase
    /// withholds it; its final name if it is still hidden; what lost tasks left), else at once.
    pub(super) fn one_done(&mut self, dir: DirId) {
        let node = self.tree.node(dir);
        node.pending -= 1;
        // The top level stays: copies that wait for a destination are added to it later.
        if node.pending > 0 || self.record.stopped() || dir == DirId::TOP {
            return;
        }
        let task = FinishTask {
            src: RawPath::new(&node.src),
            work: RawPath::new(node.work()),
            meta: node.meta.filter(|_| node.phase == Phase::Filling),
            publish: node.at_hidden.then(|| RawPath::new(&node.dst)),
            unfinished: node.at_hidden && node.phase == Phase::Damaged,
            leftovers: node.leftovers.iter().map(RawPath::new).collect(),
        };
        let nothing_to_do = task.meta.is_none() && task.publish.is_none();
        if nothing_to_do && task.leftovers.is_empty() {
            return self.dir_finished(dir, Ok(Vec::new()));
        }
        node.pending = 1;
        node.renaming = task.publish.is_some();
        self.dispatch.push(Job::Finish(dir, task));
    }

    /// The directory `dir` is finished (`result`: what failed; or its task was lost, and
    /// it is left for the end): its parent hears of it.
    pub(super) fn dir_finished(&mut self, dir: DirId, result: multiprocess::Result<Vec<Failure>>) {
        let failures = match result {
            Ok(failures) => failures,
            Err(e) => {
                self.tree.worsen(dir, Phase::Damaged);
                let node = self.tree.node(dir);
                // Renamed or not: where it is now says.
                node.at_hidden = fsops::is_real_dir(&node.hidden);
                node.renaming = false;
                let (src, held) = (node.src.clone(), std::mem::take(&mut node.held));
                self.task_lost(&src, e);
                return self.place_held(held);
            }
        };
        for failure in failures {
            self.record.list(failure);
        }
        let node = self
            .tree
            .nodes
            .remove(&dir)
            .expect("a directory in progress");
        self.place_held(node.held);
        if let Some(parent) = node.parent {
            self.one_done(parent);
        }
    }

    /// Places the members of hard-link groups that waited for a directory's rename.
    fn place_held(&mut self, held: Vec<Placement>) {
        for p in held {
            self.place(p);
        }
    }

    /// Gives a hidden directory its final name, once the workers are gone (the copy stopped,
    /// or a task was lost); `unfinished` first removes every file in it that does not match
    /// its source (one a worker was killed in the middle of).
    pub(super) fn publish(&mut self, node: &DirNode, unfinished: bool) {
        if unfinished {
            let follow = self.config.dereference;
            let finished = &crate::copy::replace::file_up_to_date;
            fsops::remove_unfinished(&node.src, &node.hidden, follow, finished);
        }
        if let Err(failure) = worker::publish(&node.hidden, &node.dst) {
            self.record.list(failure);
        }
    }

    /// `dst`, written now in directory `dir`, and where it ends up: below the directory's
    /// final name.
    pub(super) fn placed(&self, dir: DirId, dst: &Path) -> Placed {
        let last = match self.tree.nodes.get(&dir) {
            Some(node) if node.at_hidden => node.dst.join(dst.file_name().unwrap_or_default()),
            _ => dst.to_path_buf(),
        };
        let hidden = dst.to_path_buf();
        Placed { dir, hidden, last }
    }

    /// The directory of `name` if it is being renamed (see [`DirNode::renaming`]): until
    /// that is done, the name may be at either of its paths.
    pub(super) fn renaming(&self, name: &Placed) -> Option<DirId> {
        let node = self.tree.nodes.get(&name.dir)?;
        node.renaming.then_some(name.dir)
    }

    /// Where a name of the copy is now: at its hidden path while its directory is hidden
    /// (not to be asked while it is being renamed: see [`Coordinator::renaming`]).
    pub(super) fn path_now(&self, name: &Placed) -> PathBuf {
        match self.tree.nodes.get(&name.dir) {
            Some(node) if node.at_hidden => name.hidden.clone(),
            _ => name.last.clone(),
        }
    }
}
