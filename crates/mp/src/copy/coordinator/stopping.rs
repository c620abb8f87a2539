//! Stopping: the signals heard in the loop (the first stops cleanly, a second at once), a
//! broken pool, tasks lost with their worker, and what is left to do once the workers are
//! gone: the temporary files of unfinished large files go, and what the hidden directories
//! hold is published for a resume, minus anything a worker may have been cut short in.

use std::path::Path;

use multiprocess::Error;

use super::Coordinator;
use crate::copy::fsops;
use crate::copy::meta::Failure;
use crate::copy::stop::{self, Stop};

impl Coordinator<'_> {
    /// Heeds the stop signals: the first stops the copy cleanly (the workers finish the file
    /// they are at, or remove it), a second kills the workers. Whether to leave the loop now.
    pub(super) fn heed_signals(&mut self) -> bool {
        let interrupts = stop::interrupts();
        if interrupts > 0 {
            self.record.stop(Stop::Interrupted);
        }
        if interrupts > 1 {
            // Asked twice: do not wait for the workers to wind down.
            self.dispatch.terminate();
            return true;
        }
        false
    }

    /// The pool cannot take tasks any more: nothing more can run.
    pub(super) fn pool_broken(&mut self, e: Error) {
        let failure = Failure::refused(Path::new("."), format!("the worker pool failed: {e}"));
        self.record.list(failure.clone());
        self.record.stop(Stop::PoolBroken(failure));
    }

    /// A task whose worker died or whose report could not be read: a failure of `src`,
    /// unless the copy is stopping and terminated the pool itself.
    pub(super) fn task_lost(&mut self, src: &Path, e: Error) {
        if !(pool_terminated(&e) && self.record.stopped()) {
            self.record.list(Failure::new(src, e));
        }
    }

    /// Once the workers are gone: removes the temporary files of unfinished large files,
    /// and publishes what each directory still hidden holds (the copy stopped early, or a
    /// task was lost), minus the files that do not match their source. (A task still running
    /// when the workers were killed may have made a hidden directory it never reported.)
    pub(super) fn clean_up(&mut self) {
        self.large.discard_unfinished();
        for (_, node) in std::mem::take(&mut self.tree.nodes) {
            if node.parent.is_none() {
                continue;
            }
            for hidden in std::iter::once(&node.hidden).chain(&node.leftovers) {
                fsops::remove_inline_leaves(&node.dst, hidden);
            }
            if node.at_hidden || fsops::is_real_dir(&node.hidden) {
                self.publish(&node, true);
            }
        }
    }
}

/// Whether `e` says the pool was terminated (the copy terminates it when it stops): the
/// library's typed error, not a message.
fn pool_terminated(e: &Error) -> bool {
    matches!(e, Error::PoolTerminated)
}
