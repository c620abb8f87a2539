//! What runs in the copier's pool workers, by concern:
//!
//! - `dir.rs`: copying a directory (listing it, making its copy, hiding it while written), and
//!   finishing one the coordinator finishes (its metadata, its final name);
//! - `leaves.rs`: small leaves and small trees copied within their parent's task, bundles;
//! - `listing.rs`: listing a directory and the snapshot of each entry;
//! - `entries.rs`: copying the entries of one directory (a batch), and one file by path;
//! - `large.rs`: the tasks of a large file (its start, a span, its seal);
//! - here: what each worker gets once at start ([`setup`]: the progress queue, the stop
//!   event, the [`Config`], under `-L` the claims) and the progress it reports.
//!
//! Tasks and reports are in `protocol.rs`. A task returns what the coordinator must do next:
//! subdirectories to walk, entries it must place itself (hard links, large files), failures.

mod dir;
mod entries;
mod large;
mod leaves;
mod listing;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiprocess::{Event, Queue};
use rustix::fs::Mode;

use super::claims::Claims;
use super::config::Config;
use super::exclude::Exclude;
use super::status::Progress;

pub use dir::{copy_dir, finish_dir, publish};
pub use entries::{copy_batch, copy_claimed};
pub use large::{copy_span, seal_large, start_large};
pub use leaves::copy_leaves;

/// A directory with more than one task's worth of entries hands the rest back in batches of
/// at most this many entries...
const BATCH_ENTRIES: usize = 1000;

/// ... and at most this many bytes, so that the files of one directory are copied by every
/// worker at once.
const BATCH_BYTES: u64 = 8 << 20;

/// What every task of this worker process reads: set once by [`setup`].
pub(super) struct WorkerState {
    /// Where progress goes, when it is shown.
    progress: Option<Queue<Progress>>,
    /// Set by the coordinator to stop every task.
    stop: Event,
    config: Config,
    /// The most files a listing opens as it looks at them (see `listing::look`).
    open_as_listed: usize,
    /// Under `-L`: the files some name has claimed to copy (see [`Claims`]).
    claims: Option<Claims>,
    /// What `--exclude` leaves out.
    exclude: Exclude,
}

static STATE: OnceLock<WorkerState> = OnceLock::new();

/// The pool initializer: keeps the progress queue (`None`: progress is not shown), the stop
/// event, the config and, under `-L`, the claims; lets Ctrl-C reach only the coordinator,
/// which stops the workers cleanly through `stop`.
pub fn setup(
    progress: Option<Queue<Progress>>,
    stop: Event,
    config: Config,
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
        .map_or(listing::OPEN_AS_LISTED, |n| (n / 4) as usize)
        .min(listing::OPEN_AS_LISTED);
    // The command line checked the patterns: an invalid one cannot reach a worker.
    let exclude = Exclude::new(&config.exclude).expect("patterns checked by the command line");
    let _ = STATE.set(WorkerState {
        progress,
        stop,
        config,
        open_as_listed,
        claims,
        exclude,
    });
}

fn state() -> &'static WorkerState {
    STATE
        .get()
        .expect("copier workers are set up by their initializer")
}

/// Whether the coordinator asked every task to stop.
fn stop_asked() -> bool {
    state().stop.is_set()
}

/// The copy's configuration.
fn config() -> &'static Config {
    &state().config
}

/// Sums progress and sends it every 50 ms, and when dropped; does nothing when progress is
/// not shown.
struct Reporter {
    progress: Option<&'static Queue<Progress>>,
    done: Progress,
    last: Instant,
}

impl Reporter {
    fn new() -> Reporter {
        Reporter {
            progress: state().progress.as_ref(),
            done: Progress::default(),
            last: Instant::now(),
        }
    }

    /// `n` more bytes are copied.
    fn bytes(&mut self, n: u64) {
        self.done.bytes += n;
        self.maybe_flush();
    }

    /// One more name is done (copied, linked or up to date).
    fn file(&mut self) {
        self.done.files += 1;
        self.maybe_flush();
    }

    fn maybe_flush(&mut self) {
        if self.progress.is_some() && self.last.elapsed() >= Duration::from_millis(50) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(progress) = self.progress.filter(|_| !self.done.is_empty()) {
            let _ = progress.put(self.done);
        }
        self.done = Progress::default();
        self.last = Instant::now();
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.flush();
    }
}
