//! The coordinator: the parent process's side of a copy. It decides what runs, and routes
//! each finished task to the part that owns it:
//!
//! - `dispatch.rs`: the pool, the jobs ready and in flight, what runs next;
//! - `tree.rs`: the directories being copied, each in one phase; what a directory's report
//!   turns into; finishing a directory (metadata, then its final name);
//! - `groups.rs`: hard-link groups, and placing the entries the coordinator places itself;
//! - `waves.rs`: top-level copies, and the waves of sources merged into one destination;
//! - `large.rs`: large files copied in spans;
//! - `stopping.rs`: signals, a broken pool, lost tasks, and cleaning up after the workers;
//! - `record.rs`: the outcome, told to the [`StatusUpdater`] as it happens.
//!
//! Under `-L` the names that reach one file are linked between waves and at the end by the
//! [`Linker`] (`dereference.rs`, where everything `-L` decides is).
//!
//! Memory stays bounded: a node per directory still being copied (not per file), a stack of
//! jobs walked depth first, an entry per hard-link group; under `-L` only, a path per file
//! too, as `cp -L` keeps.

mod dispatch;
mod groups;
mod large;
mod record;
mod stopping;
#[cfg(test)]
mod tests;
mod tree;
mod waves;

use std::path::Path;

use multiprocess::Event;

use self::dispatch::{Dispatch, Done, Job, TICK};
use self::groups::Groups;
use self::large::LargeFiles;
use self::record::Record;
use self::tree::{Phase, Tree};
use self::waves::Waves;
use super::claims::{self, Claims};
use super::config::Config;
use super::dereference::{LinkEnv, Linker, Reached};
use super::ids::{CopyId, DirId};
use super::meta::{Failure, RawPath};
use super::protocol::{ClaimedTask, Counts};
use super::status::StatusUpdater;
use super::stop::Stop;

pub use self::record::Outcome;

/// The state of one copy.
pub struct Coordinator<'s> {
    config: Config,
    dispatch: Dispatch,
    record: Record<'s>,
    tree: Tree,
    groups: Groups,
    waves: Waves,
    large: LargeFiles,
    /// Under `-L`: the names reached, linked between waves and at the end.
    linker: Option<Linker>,
}

impl<'s> Coordinator<'s> {
    /// Starts the workers for a copy configured by `config`, telling `status` how it goes.
    pub fn new(
        config: Config,
        status: &'s mut dyn StatusUpdater,
    ) -> multiprocess::Result<Coordinator<'s>> {
        let stop = Event::new()?;
        let claims = match config.dereference {
            true => Some(Claims::new(claims::SLOTS)?),
            false => None,
        };
        let dispatch = Dispatch::start(&config, &stop, claims)?;
        Ok(Coordinator {
            linker: config.dereference.then(Linker::default),
            config,
            dispatch,
            record: Record::new(status, stop),
            tree: Tree::new(),
            groups: Groups::default(),
            waves: Waves::default(),
            large: LargeFiles::new(),
        })
    }

    /// Records a failure found before the copy starts (a bad argument).
    pub fn fail(&mut self, failure: Failure) {
        self.record.list(failure);
    }

    /// Records a warning found before the copy starts.
    pub fn warn(&mut self, warning: String) {
        self.record.warn(warning);
    }

    /// Counts sources skipped before the copy starts (`-n`: their destination exists).
    pub fn skip(&mut self, sources: u64) {
        self.record.counts().skipped += sources;
    }

    /// Runs until everything is copied (or the copy stops).
    pub fn run(mut self) -> Outcome {
        if self.tree.nodes[&DirId::TOP].pending == 0 {
            return self.record.finish();
        }
        loop {
            if self.dispatch.idle() && !self.record.stopped() && self.next_wave() {
                continue;
            }
            if let Err(e) = self.dispatch.fill(self.record.stopped()) {
                self.pool_broken(e);
            }
            let stopped = self.record.stopped();
            if self.dispatch.in_flight() == 0 && !self.dispatch.has_ready(stopped) {
                break;
            }
            if let Some(done) = self.dispatch.next(TICK) {
                self.route(done);
                while let Some(done) = self.dispatch.try_next() {
                    self.route(done);
                }
            }
            self.record.progress(self.dispatch.progress());
            self.record.tick();
            if self.heed_signals() {
                break;
            }
        }
        if !self.record.stopped() {
            self.link_reached();
        }
        self.record.progress(self.dispatch.progress());
        self.dispatch.shut_down();
        self.clean_up();
        self.record.finish()
    }

    /// Hands a finished task to the part that owns it.
    fn route(&mut self, done: Done) {
        match done {
            Done::Dir(id, Ok(report)) => self.dir_listed(id, report),
            Done::Dir(id, Err(e)) => self.dir_lost(id, e),
            Done::Leaves(id, _, Ok(report)) => self.leaves_done(id, report),
            Done::Leaves(id, hidden, Err(e)) => self.leaves_lost(id, hidden, e),
            Done::Batch(b, report) => {
                let (ok, kept) = match report {
                    Ok(mut tally) => {
                        let done = (tally.is_clean(), tally.counts.skipped > 0);
                        let reached = std::mem::take(&mut tally.reached);
                        self.note_reached(&b.base, reached, b.dir != DirId::TOP);
                        self.record.absorb(tally);
                        done
                    }
                    Err(e) => {
                        // Partly copied: not to look finished.
                        self.tree.worsen(b.dir, Phase::Damaged);
                        let src = self.tree.node(b.dir).src.clone();
                        self.task_lost(&src, e);
                        (false, false)
                    }
                };
                if let Some(key) = b.group {
                    self.group_copied(key, ok, kept);
                }
                self.one_done(b.dir);
            }
            Done::Large(id, started) => self.large_started(id, started),
            Done::Span(id, result) => self.span_done(id, result),
            Done::Seal(id, result) => self.sealed(id, result),
            Done::Finish(id, result) => self.dir_finished(id, result),
            Done::Claimed(_) => unreachable!("a claimed copy runs alone"),
        }
    }

    /// Keeps what a task under `-L` reached (see [`Reached`]), at its final path below
    /// `base`; `ours`: that directory is one this copy gives metadata to.
    fn note_reached(&mut self, base: &Path, reached: Vec<Reached>, ours: bool) {
        if let Some(linker) = &mut self.linker {
            linker.note(base, reached, ours);
        }
    }

    /// Under `-L`, links the names reached so far (see [`Linker::link_reached`]).
    fn link_reached(&mut self) {
        let waves_follow = self.waves.more();
        let Some(linker) = &mut self.linker else {
            return;
        };
        let mut env = Env {
            record: &mut self.record,
            dispatch: &mut self.dispatch,
        };
        linker.link_reached(waves_follow, &mut env);
    }
}

/// What the link pass under `-L` works with.
struct Env<'r, 's> {
    record: &'r mut Record<'s>,
    dispatch: &'r mut Dispatch,
}

impl LinkEnv for Env<'_, '_> {
    fn counts(&mut self) -> &mut Counts {
        self.record.counts()
    }

    fn fail(&mut self, failure: Failure) {
        self.record.fail(failure);
    }

    fn list(&mut self, failure: Failure) {
        self.record.list(failure);
    }

    fn interrupted(&mut self) {
        self.record.stop(Stop::Interrupted);
    }

    fn copy_claimed(&mut self, source: &Path, name: &Path) -> Result<CopyId, Failure> {
        let task = ClaimedTask {
            source: RawPath::new(source),
            name: RawPath::new(name),
        };
        let copied = match self.dispatch.run_alone(Job::Claimed(task)) {
            Some(Done::Claimed(Ok(copied))) => copied,
            Some(Done::Claimed(Err(e))) => Err(Failure::new(source, e)),
            _ => Err(Failure::new(source, "the worker pool failed")),
        };
        let (bytes, copy) = copied?;
        let counts = self.record.counts();
        counts.files += 1;
        counts.bytes += bytes;
        Ok(copy)
    }
}
