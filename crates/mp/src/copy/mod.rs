//! `mp copy`: copies files and folders with `cp -a`'s fidelity, on a pool of worker processes
//! (the seeds' case study: a process pool copies a folder while the parent shows progress).
//!
//! # The map
//!
//! **Layers**, as xcp has them. The command line (`cli.rs`) turns arguments into a
//! `Config` (`config.rs`) and the top-level copies (`plan.rs`: `cp -r`'s placement rules), and
//! shows the copy: the bar on stderr (`progress.rs`); failures as they happen in `cp`'s words,
//! `-v`'s lines, the summary and the JSON (`report.rs`), each failure knowing what it was
//! doing (`failure.rs`) and each path quoted as GNU quotes it (`quote.rs`); `--dry-run`
//! (`dry_run.rs`) walks the sources without the engine. The engine is the coordinator in the parent
//! (`coordinator/`) and the workers of a `multiprocess::Pool` (`worker/`); it tells whoever
//! watches through one `StatusUpdater` (`status.rs`). Both sides call the file-system
//! primitives in `fsops/` (the copy ladder, metadata, staged files, temporary names).
//! **The parent decides, the workers touch the disk**: the coordinator sends tasks and routes
//! each report back (`protocol.rs`: the tasks, and the `Tally` every copying task returns) to
//! the part that owns it; it only looks (stat) to decide, links what it decides to link, and
//! cleans up once the workers are gone. Identities are types (`ids.rs`): a file (`FileId`:
//! device, inode), a copy (`CopyId`: and its birth time), a directory (`DirId`), a large file
//! (`LargeId`).
//!
//! **Mechanisms**, each with the file that owns it:
//!
//! - *Directories*, walked depth first: a task per directory lists it, makes its copy, copies
//!   its files, and hands back its subdirectories, the entries the coordinator places itself,
//!   and batches (1000 entries, 8 MiB) when it has more (`worker/dir.rs`, `worker/listing.rs`,
//!   `worker/entries.rs`). The coordinator keeps a node per directory, in one `Phase`, and
//!   finishes it (metadata, then its name) once nothing inside is pending
//!   (`coordinator/tree.rs`); what runs next is `coordinator/dispatch.rs`'s.
//! - *Hidden directories*: a new directory is written under a hidden name and renamed once
//!   complete, so no final name shows a partial copy (`worker/dir.rs`; the coordinator has
//!   those whose files went to several tasks renamed). A file is written where nobody sees
//!   it and placed whole (`fsops/staged.rs`).
//! - *Leaves and small trees*: a subdirectory without subdirectories (a leaf) of one batch,
//!   and, while the other workers have work, a small tree (one batch in all, 64 directories),
//!   are copied by their parent's task; *bundles*: leaves past its room go 32 to a task
//!   (`worker/leaves.rs`; bundles are made in `coordinator/tree.rs`).
//! - *Spans*: a file of 256 MiB or more is started by one task (a clone where the file system
//!   can), copied in 64 MiB spans by several, then sealed (`coordinator/large.rs`,
//!   `worker/large.rs`).
//! - *Link groups and waves*: the names of a file of several links are placed by the
//!   coordinator, the first copied and the others linked to it (`coordinator/groups.rs`);
//!   sources of one name are merged into one destination one after the other, in waves
//!   (`coordinator/waves.rs`).
//! - *Claims*, under `-L`: the first name to reach a file copies it (a table shared by every
//!   process, `claims.rs`), the others are linked to that copy after each wave. **Everything
//!   `-L` decides is in `dereference.rs`.**
//! - *Replacing*: what a copy does with what is at its destination (never the source itself;
//!   what `-u`, `--resume` and `-n` keep) is `replace.rs`'s, for every kind of entry.
//! - *What is walked*: `--exclude`'s patterns are `exclude.rs`'s, matched below each SOURCE;
//!   they, and `-x` (no directory on another file system entered), are applied as each
//!   directory is listed (`worker/listing.rs`, and small trees in `worker/leaves.rs`).
//! - *Resume*: `--resume` keeps what matches (`replace.rs`) and removes what a killed copy
//!   left (`fsops/temp.rs`); a stopped copy publishes what its hidden directories hold, minus
//!   files cut short (`coordinator/stopping.rs`), and prints the command that resumes
//!   (`cli.rs`).
//! - *Stopping*: one `Stop` reason (`stop.rs`: interrupted, disk full, pool broken), the first
//!   one wins (`coordinator/record.rs`); workers see the stop event between files and rounds.

mod claims;
mod cli;
mod config;
mod coordinator;
mod dereference;
mod dry_run;
mod exclude;
mod failure;
mod fsops;
mod ids;
mod meta;
mod plan;
mod progress;
mod protocol;
mod quote;
mod replace;
mod report;
mod status;
mod stop;
mod worker;

pub use cli::{run, CopyArgs};

// The unit tests' child processes (the copy's workers, the claims' test child) run only
// their function, never the test harness.
#[cfg(test)]
multiprocess::init_on_load!();
