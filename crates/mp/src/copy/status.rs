//! The progress seam: what the engine tells whoever shows a copy as it goes (the terminal bar
//! and the messages), through one trait, [`StatusUpdater`], and one enum of updates, [`Update`]. The
//! engine never draws anything, nor knows whether anything is drawn.
//!
//! Workers count what they finish and send it as [`Progress`] on a queue every 50 ms (only
//! when [`Config::progress`](super::config::Config::progress) asks for it); the coordinator
//! passes it on, with what it finishes itself (the names it links), and a [`Update::Tick`]
//! about every 100 ms. Each name that is not a directory counts once as a file when it is
//! done: copied, linked, or found up to date.

use serde::{Deserialize, Serialize};

use super::meta::Failure;
use super::stop::Stop;

/// Files and bytes finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Names finished (copied, linked or up to date); directories are not counted.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
}

impl Progress {
    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.files == 0 && self.bytes == 0
    }
}

impl std::ops::AddAssign for Progress {
    fn add_assign(&mut self, other: Progress) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// What happened, as it happens.
#[derive(Debug)]
// Nothing reads why the copy stops as it happens (it is printed at the end).
#[allow(dead_code)]
pub enum Update<'a> {
    /// More is finished.
    Progress(Progress),
    /// With `-v`: the entry at this source path is copied (a directory: made or merged
    /// into), and its destination is the one its top-level copy gives it.
    Copied(&'a std::path::Path),
    /// An entry could not be copied (it is in the outcome's failures too).
    Failed(&'a Failure),
    /// A warning (in the outcome's warnings too).
    Warned(&'a str),
    /// The copy is stopping early, for this reason.
    Stopping(&'a Stop),
    /// About 100 ms passed, whatever finished: time to redraw.
    Tick,
}

/// Whoever shows a copy's progress.
///
/// ```ignore
/// struct Count(u64);
/// impl StatusUpdater for Count {
///     fn update(&mut self, update: Update<'_>) {
///         if let Update::Progress(p) = update {
///             self.0 += p.files;
///         }
///     }
/// }
/// ```
pub trait StatusUpdater {
    /// Hears of one update; called on the coordinator's thread, never from a worker.
    fn update(&mut self, update: Update<'_>);
}
