//! Top-level copies, and waves. Sources of one name go to one destination (two directories
//! merged, as `cp -r` merges them): a second copy to a destination starts only once
//! everything before it is copied (the next wave), so that it merges into a finished copy,
//! its files replacing the first's as `cp` would replace them. Between waves, names that
//! must be links are linked: under `-L` the names reached so far (`dereference.rs`), and the
//! members of hard-link groups made in an earlier wave, met while this wave's tasks ran
//! (until they are done, a task may be replacing the group's names).

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::tree::Placement;
use super::Coordinator;
use crate::copy::fsops;
use crate::copy::ids::DirId;
use crate::copy::meta::Kind;
use crate::copy::plan;
use crate::copy::stop::{self, Stop};

/// The waves of top-level copies.
#[derive(Default)]
pub(super) struct Waves {
    /// Which wave runs: 0, then one more for each turn of `later`.
    pub(super) wave: u32,
    /// The destinations of the top-level copies of this wave...
    top_dsts: HashSet<PathBuf>,
    /// ... and the copies to the same destinations, which wait for the next.
    later: Vec<plan::Copy>,
    /// Members of hard-link groups made in an earlier wave, linked once this one's tasks
    /// are done.
    pub(super) links_after: Vec<Placement>,
    /// Directories already rid of a killed copy's leftovers (`--resume`, `--update`).
    cleaned: HashSet<PathBuf>,
}

impl Waves {
    /// Whether copies wait for a later wave.
    pub(super) fn more(&self) -> bool {
        !self.later.is_empty()
    }
}

impl Coordinator<'_> {
    /// Adds a top-level copy. A second copy to the same destination (two directories of one
    /// name, merged as `cp -r` merges them) starts once everything before it is copied: it
    /// merges into the finished copy.
    pub fn add(&mut self, copy: plan::Copy) {
        if !self.waves.top_dsts.insert(copy.dst.clone()) {
            self.waves.later.push(copy);
            return;
        }
        if self.config.keeps_existing() {
            self.remove_stale_beside(&copy.dst);
        }
        self.tree.node(DirId::TOP).pending += 1;
        let plan::Copy { src, dst, meta } = copy;
        if meta.kind == Kind::Dir {
            self.add_dir(DirId::TOP, src, dst, meta);
        } else {
            let dir = DirId::TOP;
            self.place(Placement {
                dir,
                src,
                dst,
                meta,
            });
        }
    }

    /// Once no task runs: links the members of earlier waves' groups met in this one, or
    /// else starts the next wave (after linking, under `-L`, the names reached so far).
    /// Whether anything was started.
    pub(super) fn next_wave(&mut self) -> bool {
        if !self.waves.links_after.is_empty() {
            for p in std::mem::take(&mut self.waves.links_after) {
                self.groups.join_wave(p.meta.id(), self.waves.wave);
                self.place(p);
            }
            return true;
        }
        if !self.waves.more() {
            return false;
        }
        // Copies that wait for others to the same destination: their turn, once the names
        // of one file copied so far are linked, as `cp -aL` would find them.
        self.link_reached();
        if stop::interrupted() {
            // The next waves are not copied: a resume copies them.
            self.record.stop(Stop::Interrupted);
        }
        if self.record.stopped() {
            return false;
        }
        self.waves.wave += 1;
        self.waves.top_dsts.clear();
        for copy in std::mem::take(&mut self.waves.later) {
            self.add(copy);
        }
        true
    }

    /// On a resume, removes what a killed copy left beside a top-level destination (its
    /// hidden directory, a temporary file); once per directory.
    fn remove_stale_beside(&mut self, dst: &Path) {
        let above = fsops::dir_above(dst);
        if self.waves.cleaned.insert(above.to_path_buf()) {
            if let Ok(dir) = fsops::open_dir(above, false) {
                fsops::remove_stale_temps(dir.as_fd(), above);
            }
        }
    }
}
