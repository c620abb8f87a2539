//! Hard-link groups, and placing the entries the coordinator places itself.
//!
//! Directory tasks hand back every name of a file of several links (see
//! [`crate::copy::protocol::for_coordinator`]). The first name of a group met is copied (a
//! batch of one entry, or a large file); names met while that copy runs wait for it; then each
//! is linked to the copy (`linkat`, or over what is there: `--update` keeps a newer file, a
//! resume finds a name linked already). Should the first copy fail, each name gets a copy of
//! its own; so does a name that cannot be linked (another file system). A name met once the
//! copy is done is linked at once to a name that still holds it (merged sources may have
//! replaced the first), or is made the group's first again. A name whose directory is being
//! renamed from its hidden name (`tree.rs`) is at one of two paths until the rename is
//! reported: a member that needs it waits until then, not to take it for gone. A group made
//! in an earlier wave of merged sources (`waves.rs`) gains members only once the wave's
//! tasks are done.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags};
use rustix::io::Errno;

use super::dispatch::{Batch, BatchDone, Job};
use super::tree::{Placed, Placement};
use super::Coordinator;
use crate::copy::config::Config;
use crate::copy::failure::Op;
use crate::copy::fsops;
use crate::copy::ids::{CopyId, DirId, FileId};
use crate::copy::meta::{Entry, Failure, Meta, RawPath};
use crate::copy::protocol::{is_large, BatchTask};
use crate::copy::replace;
use crate::copy::status::Progress;

/// A hard-link group: the first name is copied, the others linked to it.
struct Group {
    /// Where the first copy is.
    first: Placed,
    /// `None` while the first copy runs; then whether it succeeded.
    copied: Option<bool>,
    /// The first copy's identity, once made.
    copy: Option<CopyId>,
    /// The names linked to it so far.
    linked: Vec<Placed>,
    /// The wave of copies it was made in (see `waves.rs`).
    wave: u32,
    /// Names met while the first copy runs.
    waiters: Vec<Placement>,
}

/// The hard-link groups met so far, by source file.
#[derive(Default)]
pub(super) struct Groups {
    groups: HashMap<FileId, Group>,
}

impl Groups {
    /// The group of `file` was made in an earlier wave than `wave`.
    pub(super) fn made_before_wave(&self, file: FileId, wave: u32) -> bool {
        self.groups.get(&file).is_some_and(|g| g.wave < wave)
    }

    /// The group of `file` gains members in wave `wave` from now on.
    pub(super) fn join_wave(&mut self, file: FileId, wave: u32) {
        if let Some(group) = self.groups.get_mut(&file) {
            group.wave = wave;
        }
    }
}

impl Coordinator<'_> {
    /// Places one entry the coordinator places itself: a top-level file, a member of a
    /// hard-link group, or a large file. Counted in its directory's pending work by the
    /// caller.
    pub(super) fn place(&mut self, p: Placement) {
        if !p.meta.is_multiply_linked() {
            return self.copy_one(p, None);
        }
        let key = p.meta.id();
        match self.groups.groups.get(&key).map(|g| g.copied) {
            Some(None) => {
                let group = self.groups.groups.get_mut(&key).expect("present");
                group.waiters.push(p);
                return;
            }
            Some(Some(true)) if self.groups.made_before_wave(key, self.waves.wave) => {
                self.waves.links_after.push(p);
                return;
            }
            Some(Some(true)) => match self.holder(key) {
                Holder::Found => {
                    let first = self.group_first(key);
                    return self.link(key, &first, p);
                }
                Holder::Renaming(dir) => return self.tree.node(dir).held.push(p),
                // A later source of its name replaced the copy (two directories merged),
                // and no other name holds it: this member is the group's first now.
                Holder::None => {}
            },
            Some(Some(false)) => return self.copy_one(p, None),
            // A new group.
            None => {}
        }
        let group = Group {
            first: self.placed(p.dir, &p.dst),
            copied: None,
            copy: None,
            linked: Vec::new(),
            wave: self.waves.wave,
            waiters: Vec::new(),
        };
        self.groups.groups.insert(key, group);
        self.copy_one(p, Some(key));
    }

    /// Copies one entry the coordinator places: a large file in spans, anything else as a
    /// batch of one. `group`: it is the first name of that hard-link group.
    pub(super) fn copy_one(&mut self, p: Placement, group: Option<FileId>) {
        if is_large(&p.meta, &self.config) {
            return self.start_large(p, group);
        }
        let node = &self.tree.nodes[&p.dir];
        let src_name = p.src.file_name().map(PathBuf::from).unwrap_or_default();
        let dst_name = p.dst.file_name().map(PathBuf::from).unwrap_or_default();
        let dst_dir = fsops::dir_above(&p.dst).to_path_buf();
        let base = match p.dir {
            DirId::TOP => dst_dir.clone(),
            _ => node.dst.clone(),
        };
        let task = BatchTask {
            src_dir: RawPath::new(fsops::dir_above(&p.src)),
            dst_dir: RawPath::new(dst_dir),
            entries: vec![Entry::new(RawPath::new(&src_name), p.meta)],
            rename: (src_name != dst_name).then(|| RawPath::new(dst_name)),
            existed: node.existed,
            hidden: node.at_hidden,
        };
        let done = BatchDone::new(p.dir, group, self.reached_base(&base));
        self.dispatch.push(Job::Batch(Batch { task, done }));
    }

    /// The first copy of a hard-link group is done (`ok`: it succeeded, or what was there is
    /// kept; `kept`: it was kept): the names that waited for it are linked to it, or each
    /// copied if it failed. Under `--no-clobber` what is kept is no copy of the file: the
    /// group starts again from the names that waited, as `cp -n` copies the next name and
    /// links the later ones to that.
    pub(super) fn group_copied(&mut self, key: FileId, ok: bool, kept: bool) {
        if kept && self.config.no_clobber {
            let waiters = self.groups.groups.remove(&key).map(|g| g.waiters);
            for p in waiters.unwrap_or_default() {
                match self.record.stopped() {
                    true => self.one_done(p.dir),
                    false => self.place(p),
                }
            }
            return;
        }
        let Some(group) = self.groups.groups.get_mut(&key) else {
            return;
        };
        group.copied = Some(ok);
        let waiters = std::mem::take(&mut group.waiters);
        let first = self.group_first(key);
        let copy = CopyId::of(&first).ok().flatten();
        self.groups.groups.get_mut(&key).expect("present").copy = copy;
        for p in waiters {
            if self.record.stopped() {
                self.one_done(p.dir);
            } else if ok {
                self.link(key, &first, p);
            } else {
                self.copy_one(p, None);
            }
        }
    }

    /// Links the member `p` to the first copy `first` of the hard-link group `key`.
    fn link(&mut self, key: FileId, first: &Path, p: Placement) {
        let result = match rfs::linkat(rfs::CWD, first, rfs::CWD, &p.dst, AtFlags::empty()) {
            Err(Errno::EXIST) => relink(first, (&p.src, &p.meta), &p.dst, &self.config),
            other => other.map(|()| Relinked::Linked).map_err(io::Error::from),
        };
        if matches!(result, Ok(Relinked::Linked | Relinked::Already)) {
            let name = self.placed(p.dir, &p.dst);
            let group = self.groups.groups.get_mut(&key).expect("a group");
            group.linked.push(name);
        }
        match result {
            Ok(Relinked::Linked) => {
                self.record.counts().hard_links += 1;
                if self.config.verbose {
                    self.record.copied(&p.src);
                }
            }
            // Linked already (a resume): up to date; or kept (`--update`).
            Ok(Relinked::Already | Relinked::Kept) => self.record.counts().skipped += 1,
            // Linking failed across file systems: copy the file instead.
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return self.copy_one(p, None),
            Err(e) => self.record.list(Failure::during(&p.src, Op::Link, &e)),
        }
        self.record.progress(Progress { files: 1, bytes: 0 });
        self.one_done(p.dir);
    }

    /// Which name of a copied hard-link group holds its copy: its first, or else a name
    /// linked to it, made the first ([`Holder::Found`]). A name in a directory being renamed
    /// cannot be looked at until that is done: the member then waits for it.
    fn holder(&mut self, key: FileId) -> Holder {
        let group = &self.groups.groups[&key];
        if let Some(dir) = self.renaming(&group.first) {
            return Holder::Renaming(dir);
        }
        let Some(copy) = group.copy else {
            return Holder::None;
        };
        if copy.is_at(&self.path_now(&group.first)) {
            return Holder::Found;
        }
        for (i, name) in group.linked.iter().enumerate() {
            if let Some(dir) = self.renaming(name) {
                return Holder::Renaming(dir);
            }
            if copy.is_at(&self.path_now(name)) {
                let group = self.groups.groups.get_mut(&key).expect("present");
                group.first = group.linked.swap_remove(i);
                return Holder::Found;
            }
        }
        Holder::None
    }

    /// Where a hard-link group's first copy is now.
    fn group_first(&self, key: FileId) -> PathBuf {
        self.path_now(&self.groups.groups[&key].first)
    }
}

/// Which name holds a hard-link group's copy (see [`Coordinator::holder`]).
enum Holder {
    /// The group's first name (made so if it was another).
    Found,
    /// Not known until this directory, which a name is in, is renamed.
    Renaming(DirId),
    /// None: the copy was replaced.
    None,
}

/// What [`relink`] did.
enum Relinked {
    Linked,
    /// The name was a link of the copy already.
    Already,
    /// The name is kept as it is (`--update`: it is not older than its source).
    Kept,
}

/// Replaces `dst`, the destination of `src` (of metadata `meta`), a member of a hard-link
/// group, by a hard link to the group's copy `first`: unless it is one already, or
/// `--update` keeps it. Never when `dst` is the source itself (an error then, as a
/// directory in the way is). `--resume` does not keep a name that is not linked yet.
fn relink(
    first: &Path,
    (src, meta): (&Path, &Meta),
    dst: &Path,
    config: &Config,
) -> io::Result<Relinked> {
    let copy = rfs::lstat(first)?;
    let config = Config {
        resume: false,
        ..config.clone()
    };
    let Some((old, verdict)) = replace::judge_paths(src, dst, meta, &config)? else {
        rfs::linkat(rfs::CWD, first, rfs::CWD, dst, AtFlags::empty())?;
        return Ok(Relinked::Linked);
    };
    if FileId::of_stat(&copy) == old.id() {
        return Ok(Relinked::Already);
    }
    if verdict.keeps() {
        return Ok(Relinked::Kept);
    }
    fsops::link_over(first, dst).map(|()| Relinked::Linked)
}
