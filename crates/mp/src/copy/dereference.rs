//! `-L`: what a copy that follows symbolic links decides, all here. Names that lead to one
//! file (the file and links to it, followed) become hard links of one copy, as `cp -aL`
//! makes them.
//!
//! 1. **Claims, as the tree is copied.** A task that meets a regular file of one link claims
//!    it in a table shared by every process ([`Claims`], `claims.rs`). The first name to
//!    claim a file copies it ([`note_copy`] notes the copy); a later name copies nothing
//!    ([`leave_to_claimer`] notes what is at the name). Each task reports these names
//!    ([`Reached`]) with its tally. (Files of several links are kept together by their
//!    hard-link groups instead: `coordinator/groups.rs`.)
//! 2. **Links, once a wave of copies is done** ([`Linker::link_reached`], run by the
//!    coordinator when no task runs: between the waves of merged sources, and at the end).
//!    For each file, the copy kept is the first name's that still holds one; every other name
//!    is linked to it: a name left to the claimer gets a link, a name copied anyway (a
//!    resume, or a full claims table) is replaced by one. Should no name hold a copy (the
//!    claimer's failed), the first name left copies the file (a task). A name that another
//!    source of the copy was copied to (two sources, one name) is never linked over.
//!
//! Memory: a path per name reached, as `cp -L` keeps one per file.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ids::FileId;
use super::meta::{Failure, Meta, RawPath};
use super::protocol::Tally;
use super::replace::Verdict;

pub use super::claims::{Claim, Claims};

/// Under `-L`, a regular file of one link that a task reached: its source file, and the path
/// (below the task's directory) of the name that reached it. Names that lead to one file
/// reach one inode: the first to claim it copies it, the others are not copied, and the
/// coordinator makes them hard links of that copy once the copy is done.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reached {
    pub file: FileId,
    pub size: u64,
    /// Found up to date (`--resume`, or `--update` with the same size and time), not copied.
    pub skipped: bool,
    pub path: RawPath,
    pub holds: Holds,
}

impl Reached {
    /// The same name, seen from the directory above: `dir/path`.
    pub fn below(self, dir: &Path) -> Reached {
        Reached {
            path: RawPath(dir.join(self.path.path())),
            ..self
        }
    }
}

/// What a name under `-L` holds once its task is done (see [`Reached`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Holds {
    /// A copy (or an up-to-date one). A name that no longer holds it when the links are made
    /// is not linked over.
    Copy(FileId),
    /// Nothing of this copy yet: another name claimed the file. The source's path is kept
    /// should that name's copy fail; `found` is what was at the name then (a copy from
    /// before, in a resume): a name that holds anything else by the time the links are
    /// made was written by another source of this copy, and is left alone.
    Claimed {
        source: RawPath,
        found: Option<FileId>,
    },
}

/// Claims the file `meta` for the name about to copy it, when `claims` are kept (`-L`) and it
/// is a file names share (a regular file of one link); `None` otherwise.
pub fn claim(claims: Option<&Claims>, meta: &Meta) -> Option<Claim> {
    claims.and_then(|c| c.claim_file(meta))
}

/// Notes, in `tally`, a name (`name`, of the source file `meta`, from `source`) whose file
/// another name claimed: nothing is copied. `found` is what is at the name (see
/// [`crate::copy::replace::judge_at`]; `Ok(None)` where nothing is): noted, to be linked
/// over once the claimer's copy is done; but a newer file kept by `--update` is never
/// linked over.
pub fn leave_to_claimer(
    found: io::Result<Option<(Meta, Verdict)>>,
    source: PathBuf,
    meta: &Meta,
    name: &Path,
    tally: &mut Tally,
) {
    match found {
        Ok(Some((_, Verdict::Newer))) => tally.counts.skipped += 1,
        Ok(found) => tally.reached.push(Reached {
            file: meta.id(),
            size: meta.size,
            skipped: false,
            path: RawPath::new(name),
            holds: Holds::Claimed {
                source: RawPath(source),
                found: found.map(|(old, _)| old.id()),
            },
        }),
        Err(e) => tally.failures.push(Failure::io(&source, &e)),
    }
}

/// Notes, in `tally`, a name (`name`, of the source file `meta`) that holds a copy of its
/// file: `copy`, what is at the name now (as looked at after the copy; nothing is noted if
/// it could not be). `skipped`: the copy was there already, up to date.
pub fn note_copy(
    copy: io::Result<Meta>,
    meta: &Meta,
    name: &Path,
    skipped: bool,
    tally: &mut Tally,
) {
    if let Ok(copy) = copy {
        tally.reached.push(Reached {
            file: meta.id(),
            size: meta.size,
            skipped,
            path: RawPath::new(name),
            holds: Holds::Copy(copy.id()),
        });
    }
}

#[allow(dead_code)] // The coordinator's from the next commit.
/// The names reached so far, and the copies kept, from one wave of copies to the next (see
/// the module's second step).
#[derive(Default)]
pub struct Linker {
    /// Every name of a file of one link reached, at its final path, and whether its directory
    /// is one this copy gives metadata to (not the one top-level copies go into).
    reached: Vec<(Reached, bool)>,
    /// The copy each source file's names are linked to...
    kept: HashMap<FileId, CopyAt>,
    /// ... and the names linked so far.
    linked: HashMap<PathBuf, FileId>,
}

/// A copy's path and which file it is.
#[allow(dead_code)]
type CopyAt = (PathBuf, super::ids::CopyId);

#[allow(dead_code)]
impl Linker {
    /// Keeps what a task reached, at its final path below `base` (where the task's directory
    /// ends up); `ours`: that directory is one this copy gives metadata to.
    pub fn note(&mut self, base: &Path, reached: Vec<Reached>, ours: bool) {
        self.reached
            .extend(reached.into_iter().map(|r| (r.below(base), ours)));
    }
}
