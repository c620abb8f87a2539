//! What the coordinator and the workers say to each other: a task per unit of work (a
//! directory, a bundle of small leaves, a batch of entries, a large file's steps) and what
//! each reports back. Every report that copies entries carries one [`Tally`] (counts,
//! failures, warnings, why it stopped, and under `-L` the names it reached); the coordinator
//! adds each tally to the outcome the same way, whatever the task.
//!
//! Also here: which entries a directory's task leaves to the coordinator ([`for_coordinator`]):
//! members of hard-link groups, and files large enough to be split.

use serde::{Deserialize, Serialize};

use super::config::Config;
use super::dereference::Reached;
use super::ids::FileId;
use super::meta::{Entry, Failure, Kind, Meta, RawPath};
use super::stop::Stop;

/// Files at least this large (with more than one worker) are copied in spans by several
/// workers at once.
pub const LARGE_FILE: u64 = 256 << 20;

/// Whether `meta` is a file copied in spans (see [`LARGE_FILE`]).
pub fn is_large(meta: &Meta, config: &Config) -> bool {
    meta.kind == Kind::File && config.split_large() && meta.size >= LARGE_FILE
}

/// Whether an entry that is not a directory goes back to the coordinator rather than being
/// copied with its directory's files: a member of a hard-link group, or a large file.
pub fn for_coordinator(meta: &Meta, config: &Config) -> bool {
    meta.is_multiply_linked() || is_large(meta, config)
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
    /// Left alone by `--update` or `--resume` (see [`crate::copy::replace::Verdict`]).
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

/// The part of a report every task that copies entries shares.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    pub counts: Counts,
    pub failures: Vec<Failure>,
    pub warnings: Vec<String>,
    /// Why the task stopped early, if it did.
    pub stopped: Option<Stop>,
    /// Under `-L`: the names of single-link files it copied, found up to date or left to
    /// the name that claimed their file, as paths below the task's directory.
    pub reached: Vec<Reached>,
    /// With `-v` only: the source paths of the entries copied (directories made or merged
    /// into, files, links), in the order they were.
    pub copied: Vec<RawPath>,
}

impl Tally {
    /// Adds what a task working below this one's directory, in its subdirectory `name`,
    /// counted (a small leaf or tree copied within a directory's task).
    pub fn add_below(&mut self, mut other: Tally, name: &std::path::Path) {
        self.counts.add(&other.counts);
        self.failures.append(&mut other.failures);
        self.warnings.append(&mut other.warnings);
        self.copied.append(&mut other.copied);
        self.reached
            .extend(other.reached.into_iter().map(|r| r.below(name)));
        self.stopped = self.stopped.take().or(other.stopped);
    }

    /// Whether everything went through: no failure, no warning, no stop.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty() && self.warnings.is_empty() && self.stopped.is_none()
    }
}

/// Copy one source directory into its destination.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirTask {
    pub src: RawPath,
    pub dst: RawPath,
    pub meta: Meta,
    /// The directories above, to notice loops under `-L`.
    pub ancestors: Vec<FileId>,
    /// The name, beside `dst`, the directory is written under while hidden (see
    /// `worker::dir`).
    pub hidden: RawPath,
    /// The directory `dst` goes into was made by this copy: nothing is there yet under
    /// `dst`'s name, so nobody needs to look.
    pub parent_made: bool,
    /// The task may copy small trees below it itself (see `worker::leaves`); not while the
    /// other workers wait for the subdirectories it finds.
    pub small_trees: bool,
}

/// What a directory task found and did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DirReport {
    pub tally: Tally,
    pub subdirs: Vec<Entry>,
    /// Subdirectories that may be small leaves, left untried for lack of room (see
    /// `worker::leaves`): the coordinator hands them out in bundles ([`LeavesTask`]).
    pub leaves: Vec<Entry>,
    /// Entries the coordinator places itself (see [`for_coordinator`]).
    pub deferred: Vec<Entry>,
    /// Entries left for batch tasks (a directory with more than one batch of work).
    pub spill: Vec<Vec<Entry>>,
    /// The directory's own metadata is already applied (nothing was left to do inside it),
    /// or must not be (the destination could not be made).
    pub finished: bool,
    /// The destination directory existed before.
    pub existed: bool,
    /// The destination is still at its hidden name (the coordinator finishes it).
    pub hidden: bool,
}

/// Subdirectories of one directory that may be small leaves, for one task to try together
/// (see `worker::leaves`): a tree of many small directories takes a task per bundle of
/// them, not per directory.
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
    /// The destination directory is a hidden one this copy made (see `worker::dir`).
    pub hidden: bool,
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

/// Start a large file: judge what is at its destination; then a temporary file beside it,
/// cloned and sealed at once where the file system can, otherwise given its size for span
/// tasks to fill. Under `-L`, a large file another name claimed is not copied.
#[derive(Debug, Serialize, Deserialize)]
pub struct LargeTask {
    pub src: RawPath,
    pub dst: RawPath,
    pub meta: Meta,
    /// The destination directory existed before (something may be at `dst`).
    pub existed: bool,
    /// Where `dst` ends up (below its directory's final name), for `-L`'s notes.
    pub last: RawPath,
    /// The temporary file to make beside `dst` (named by the coordinator, which removes it
    /// should the task be lost).
    pub temp: RawPath,
}

/// What became of a large file's start.
// One per large file: the size of a Tally in a report does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
pub enum Started {
    /// Done: cloned and sealed, kept as it is (`--update`, `--resume`), or left to the name
    /// that claimed its file; the tally says which, and `ok` whether the names linked to it
    /// (a hard-link group's) may be.
    Done { tally: Tally, ok: bool },
    /// The temporary file has its size, to be filled by span tasks, then sealed
    /// ([`SealTask`]).
    Spans,
}

/// Finish a large file whose spans are copied: compare it with its source (`--verify`), trim
/// it should the source have shrunk, give it its metadata, rename it into place; or, with
/// `discard`, remove it (a span failed).
#[derive(Debug, Serialize, Deserialize)]
pub struct SealTask {
    pub src: RawPath,
    pub temp: RawPath,
    pub dst: RawPath,
    pub meta: Meta,
    /// Where `dst` ends up, for `-L`'s notes.
    pub last: RawPath,
    pub discard: bool,
}

/// Finish a directory once everything inside it is written: first remove what lost tasks
/// may have left in it, then set its metadata, then give it its final name.
#[derive(Debug, Serialize, Deserialize)]
pub struct FinishTask {
    pub src: RawPath,
    /// Where it is now (its hidden name while hidden).
    pub work: RawPath,
    /// Its metadata, unless its phase withholds it.
    pub meta: Option<Meta>,
    /// Its final name, if it is still hidden.
    pub publish: Option<RawPath>,
    /// A task inside it was lost: remove every file that does not match its source.
    pub unfinished: bool,
    /// The hidden names of lost tasks that copied small leaves into it: their `.N`
    /// directories go.
    pub leftovers: Vec<RawPath>,
}

/// Copy the source file `source` to `name`, replacing what is there (under `-L`, for a name
/// left to a claimer that has no copy, or that cannot be linked to it).
#[derive(Debug, Serialize, Deserialize)]
pub struct ClaimedTask {
    pub source: RawPath,
    pub name: RawPath,
}
