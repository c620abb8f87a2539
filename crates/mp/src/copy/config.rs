//! The engine's one [`Config`]: what a copy is asked to do, as the coordinator and every worker
//! see it (the workers get it once, from their initializer). The command line (`cli.rs`)
//! builds it; nothing of the command line's own types goes further.

use serde::{Deserialize, Serialize};

/// How to use copy-on-write clones (`--reflink`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reflink {
    /// Clone where the file system can, copy elsewhere.
    Auto,
    /// Clone or fail.
    Always,
    /// Always copy the bytes.
    Never,
}

/// What a copy is asked to do.
///
/// ```ignore
/// let config = Config { jobs: 3, resume: true, ..Config::default() };
/// assert!(config.split_large());
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Worker processes.
    pub jobs: usize,
    /// Copy-on-write clones: where possible, required, or never.
    pub reflink: Reflink,
    /// Follow symbolic links in the source (`-L`).
    pub dereference: bool,
    /// Keep a destination that is not older than its source (`-u/--update`, as `cp -u`).
    pub update: bool,
    /// Keep a destination whose size and modification time match its source's (`--resume`),
    /// and remove what a killed copy left.
    pub resume: bool,
    /// Never replace what exists at a destination (`-n/--no-clobber`, as `cp -n`).
    pub no_clobber: bool,
    /// Do not copy what is inside a directory on another file system than its parent's
    /// (`-x/--one-file-system`, as `cp -x`): the directory itself is made, empty.
    pub one_file_system: bool,
    /// Leave out the entries these patterns match (`--exclude`, gitignore's syntax; see
    /// `exclude.rs`).
    pub exclude: Vec<String>,
    /// Re-read both sides of every copied file and compare checksums (`--verify`).
    pub verify: bool,
    /// Workers report progress as they go (someone shows it).
    pub progress: bool,
    /// Every entry copied is told (`-v`): tallies list them.
    pub verbose: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            jobs: 1,
            reflink: Reflink::Auto,
            dereference: false,
            update: false,
            resume: false,
            no_clobber: false,
            one_file_system: false,
            exclude: Vec::new(),
            verify: false,
            progress: false,
            verbose: false,
        }
    }
}

impl Config {
    /// Whether large files are split into spans copied by several workers at once (there is
    /// more than one).
    pub fn split_large(&self) -> bool {
        self.jobs > 1
    }

    /// Whether what is at a destination may be kept (`--update`, `--resume` or
    /// `--no-clobber`), and what a killed copy left there is looked for.
    pub fn keeps_existing(&self) -> bool {
        self.update || self.resume || self.no_clobber
    }
}
