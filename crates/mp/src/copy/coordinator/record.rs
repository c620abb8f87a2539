//! What a copy did, as it goes: the [`Outcome`] (counts, failures, warnings, why it stopped),
//! told to the [`StatusUpdater`] as it happens; and stopping (the first reason wins, and the
//! workers hear of it through the stop event).

use multiprocess::Event;

use crate::copy::meta::Failure;
use crate::copy::protocol::{Counts, Tally};
use crate::copy::status::{Progress, StatusUpdater, Update};
use crate::copy::stop::Stop;

/// How a copy ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub counts: Counts,
    pub failures: Vec<Failure>,
    pub warnings: Vec<String>,
    /// Why the copy stopped early, if it did: the first reason.
    pub stopped: Option<Stop>,
}

impl Outcome {
    /// Whether a stop request (a signal) ended the copy early.
    pub fn interrupted(&self) -> bool {
        matches!(self.stopped, Some(Stop::Interrupted))
    }

    /// What filled the destination, if that ended the copy early.
    pub fn disk_full(&self) -> Option<&Failure> {
        match &self.stopped {
            Some(Stop::DiskFull(failure)) => Some(failure),
            _ => None,
        }
    }
}

/// The outcome so far, and whom to tell.
pub(super) struct Record<'s> {
    outcome: Outcome,
    status: &'s mut dyn StatusUpdater,
    /// Set once the copy stops: every worker looks at it.
    stop_event: Event,
}

impl<'s> Record<'s> {
    pub(super) fn new(status: &'s mut dyn StatusUpdater, stop_event: Event) -> Record<'s> {
        Record {
            outcome: Outcome::default(),
            status,
            stop_event,
        }
    }

    /// The counts so far, to add to.
    pub(super) fn counts(&mut self) -> &mut Counts {
        &mut self.outcome.counts
    }

    /// Records a failure; a full disk stops the copy.
    pub(super) fn fail(&mut self, failure: Failure) {
        match failure.disk_full {
            true => self.stop(Stop::DiskFull(failure)),
            false => self.list(failure),
        }
    }

    /// Lists a failure (one that does not stop the copy, whatever it says).
    pub(super) fn list(&mut self, failure: Failure) {
        self.status.update(Update::Failed(&failure));
        self.outcome.failures.push(failure);
    }

    /// Tells that the entry at the source path `src` is copied (with `-v`).
    pub(super) fn copied(&mut self, src: &std::path::Path) {
        self.status.update(Update::Copied(src));
    }

    /// Records a warning.
    pub(super) fn warn(&mut self, warning: String) {
        self.status.update(Update::Warned(&warning));
        self.outcome.warnings.push(warning);
    }

    /// Adds a task's tally (its `reached` names are the caller's to take first): counts,
    /// failures, warnings; a full disk stops the copy.
    pub(super) fn absorb(&mut self, tally: Tally) {
        self.outcome.counts.add(&tally.counts);
        for path in &tally.copied {
            self.status.update(Update::Copied(path.path()));
        }
        for failure in tally.failures {
            self.list(failure);
        }
        for warning in tally.warnings {
            self.warn(warning);
        }
        // A task that saw the stop event stopped because this copy is stopping already.
        if let Some(reason @ (Stop::DiskFull(_) | Stop::PoolBroken(_))) = tally.stopped {
            self.stop(reason);
        }
    }

    /// Stops the copy: no more tasks are started, and every worker stops at its next file.
    /// The first reason is the copy's; a full disk found after that is listed as a failure.
    pub(super) fn stop(&mut self, reason: Stop) {
        match (&self.outcome.stopped, reason) {
            (None, reason) => {
                self.status.update(Update::Stopping(&reason));
                self.outcome.stopped = Some(reason);
                self.stop_event.set();
            }
            (Some(Stop::Interrupted), Stop::DiskFull(failure)) => self.list(failure),
            (Some(_), _) => {}
        }
    }

    /// Whether the copy is stopping.
    pub(super) fn stopped(&self) -> bool {
        self.outcome.stopped.is_some()
    }

    /// Tells of progress.
    pub(super) fn progress(&mut self, progress: Progress) {
        if !progress.is_empty() {
            self.status.update(Update::Progress(progress));
        }
    }

    /// Tells that time passed.
    pub(super) fn tick(&mut self) {
        self.status.update(Update::Tick);
    }

    /// The outcome.
    pub(super) fn finish(self) -> Outcome {
        self.outcome
    }
}
