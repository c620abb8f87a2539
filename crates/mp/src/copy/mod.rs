//! `mp copy`: copies files and folders with `cp -a`'s fidelity, on a pool of worker processes.
//!
//! The seeds' case study (a process pool copies a folder while the parent shows progress
//! from a queue), made into a tool: the [`coordinator`] hands directories to a
//! [`multiprocess::Pool`], the [`worker`]s copy them and report progress on a
//! [`multiprocess::Queue`], and [`fsops`] does the file-system work (reflink,
//! `copy_file_range`, holes, metadata, atomic placement).

mod claims;
mod cli;
mod config;
mod coordinator;
mod dereference;
mod fsops;
mod ids;
mod meta;
mod plan;
mod progress;
mod protocol;
mod replace;
mod status;
mod stop;
mod worker;

pub use cli::{run, CopyArgs};

// The unit tests' child processes (the copy's workers, the claims' test child) run only
// their function, never the test harness.
#[cfg(test)]
multiprocess::init_on_load!();
