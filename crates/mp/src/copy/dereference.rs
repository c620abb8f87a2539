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

use rustix::fs::{self as rfs, AtFlags, Mode};
use serde::{Deserialize, Serialize};

use super::failure::Op;
use super::fsops;
use super::ids::{CopyId, FileId};
use super::meta::{Failure, Meta, RawPath};
use super::protocol::{Counts, Tally};
use super::quote::quote;
use super::replace::Verdict;
use super::stop;

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
/// over once the claimer's copy is done; but a newer file kept by `--update`, or what
/// `--no-clobber` keeps, is never linked over.
pub fn leave_to_claimer(
    found: io::Result<Option<(Meta, Verdict)>>,
    source: PathBuf,
    meta: &Meta,
    name: &Path,
    tally: &mut Tally,
) {
    match found {
        Ok(Some((_, verdict))) if verdict.keeps_another() => tally.counts.skipped += 1,
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
type CopyAt = (PathBuf, CopyId);

/// What the link pass needs of the copy around it.
pub trait LinkEnv {
    /// The counts, to correct as names become links.
    fn counts(&mut self) -> &mut Counts;
    /// Records a failure; a full disk stops the copy.
    fn fail(&mut self, failure: Failure);
    /// Lists a failure that stops nothing.
    fn list(&mut self, failure: Failure);
    /// A stop request ended the pass.
    fn interrupted(&mut self);
    /// Copies the source file `source` to `name` (replacing what is there) and counts it; a
    /// stop request ends it. Gives the copy.
    fn copy_claimed(&mut self, source: &Path, name: &Path) -> Result<CopyId, Failure>;
}

impl Linker {
    /// Keeps what a task reached, at its final path below `base` (where the task's directory
    /// ends up); `ours`: that directory is one this copy gives metadata to.
    pub fn note(&mut self, base: &Path, reached: Vec<Reached>, ours: bool) {
        self.reached
            .extend(reached.into_iter().map(|r| (r.below(base), ours)));
    }

    /// Links the names reached so far, once no task runs (see the module's second step).
    /// `waves_follow`: more sources of one name are copied after this pass (a kept copy is
    /// then known by its birth time too, since they may free its inode). A directory of this
    /// copy that gains a link keeps its mode and times: it is made writable for the while if
    /// it is not, and its times are set back. A stop request or a full disk ends it.
    pub fn link_reached(&mut self, waves_follow: bool, env: &mut dyn LinkEnv) {
        let mut by_dir: HashMap<(PathBuf, bool), Vec<Reached>> = HashMap::new();
        for (r, ours) in std::mem::take(&mut self.reached) {
            if let (Holds::Copy(copy), None) = (&r.holds, self.kept.get(&r.file)) {
                let id = match waves_follow {
                    true => CopyId::at(r.path.path(), *copy),
                    false => CopyId::from(*copy),
                };
                self.kept.insert(r.file, (r.path.0, id));
                continue;
            }
            let dir = fsops::dir_above(r.path.path()).to_path_buf();
            by_dir.entry((dir, ours)).or_default().push(r);
        }
        for ((dir, ours), names) in by_dir {
            let dir_kept = ours.then(|| DirKept::open(&dir));
            let mut stop = false;
            for r in names {
                let linked = match stop::interrupted() {
                    false => self.link_name(r, env),
                    true => Ok(()),
                };
                if stop::interrupted() {
                    // A resume with `--resume` links the rest.
                    env.interrupted();
                    stop = true;
                    break;
                }
                if let Err(failure) = linked {
                    stop = failure.disk_full;
                    env.fail(failure);
                    if stop {
                        break;
                    }
                }
            }
            if let Some(Err(e)) = dir_kept.map(|k| k.and_then(DirKept::restore)) {
                env.list(Failure::during(&dir, Op::Attrs, &e));
            }
            if stop {
                return;
            }
        }
    }

    /// Makes the name `r` a hard link of its file's kept copy, and counts it.
    fn link_name(&mut self, r: Reached, env: &mut dyn LinkEnv) -> Result<(), Failure> {
        let name = r.path.path();
        match r.holds {
            Holds::Copy(copy) => self.link_copy(r.file, name, (copy, r.skipped, r.size), env),
            Holds::Claimed { source, found } => {
                self.link_claimed(r.file, name, (source.path(), found), env)
            }
        }
    }

    /// [`Self::link_name`] of a name that held the copy `copy` (of `size` bytes, `skipped`
    /// as up to date): replaced by a link of the kept copy, unless it is that copy already or
    /// holds something else now; or kept itself if no name holds the kept copy any more.
    fn link_copy(
        &mut self,
        key: FileId,
        name: &Path,
        (copy, skipped, size): (FileId, bool, u64),
        env: &mut dyn LinkEnv,
    ) -> Result<(), Failure> {
        let copy = CopyId::at(name, copy);
        let Some((first, first_copy)) = self.kept_copy(key) else {
            // The kept copy is gone: this one is kept instead.
            if copy.is_at(name) {
                self.kept.insert(key, (name.to_path_buf(), copy));
            }
            return Ok(());
        };
        // Already one file (a resume), or a name that holds something else now.
        if first_copy.same(&copy) || !copy.is_at(name) {
            return Ok(());
        }
        fsops::link_over(&first, name).map_err(|e| cannot_link(name, &first, e))?;
        self.linked.insert(name.to_path_buf(), key);
        let counts = env.counts();
        if skipped {
            counts.skipped -= 1;
        } else {
            counts.files -= 1;
            counts.bytes -= size;
        }
        counts.hard_links += 1;
        Ok(())
    }

    /// [`Self::link_name`] of a name left to the name that claimed its file (`source`; `found`
    /// was at the name then): linked to the kept copy, unless another source of this copy
    /// was copied to it meanwhile; given a copy of its own where no name holds one, or where
    /// no link can be made.
    fn link_claimed(
        &mut self,
        key: FileId,
        name: &Path,
        (source, found): (&Path, Option<FileId>),
        env: &mut dyn LinkEnv,
    ) -> Result<(), Failure> {
        let first = self.kept_copy(key);
        let now = CopyId::of(name).map_err(|e| Failure::io(name, &e.into()))?;
        let found = found.map(CopyId::from);
        let same = |a: Option<CopyId>, b: Option<CopyId>| a.zip(b).is_some_and(|(a, b)| a.same(&b));
        let first_copy = first.as_ref().map(|(_, copy)| *copy);
        if now.is_some() && !same(now, found) && !same(now, first_copy) {
            // Another source of this copy was copied to this name.
            return Ok(());
        }
        let Some((first, first_copy)) = first else {
            // The name that claimed the file has no copy of it: this one copies it.
            let copy = env.copy_claimed(source, name)?;
            self.kept.insert(key, (name.to_path_buf(), copy));
            return Ok(());
        };
        if same(now, Some(first_copy)) {
            // Linked already: by a resumed copy (up to date), or by this one (the kept name
            // itself, or a name linked after an earlier wave).
            if first != name && !self.linked.contains_key(name) {
                env.counts().skipped += 1;
                self.linked.insert(name.to_path_buf(), key);
            }
            return Ok(());
        }
        let linked = match now {
            None => rfs::linkat(rfs::CWD, &first, rfs::CWD, name, AtFlags::empty())
                .map_err(io::Error::from),
            Some(_) => fsops::link_over(&first, name),
        };
        self.linked.insert(name.to_path_buf(), key);
        match linked {
            Ok(()) => env.counts().hard_links += 1,
            Err(e) if Failure::io(name, &e).disk_full => return Err(cannot_link(name, &first, e)),
            // No link here (another file system below the copy, too many links to the
            // file): a copy, as for a hard-link group.
            Err(_) => {
                env.copy_claimed(source, name)?;
            }
        }
        Ok(())
    }

    /// The kept copy of the file `key` at a name that still holds it: the kept name, or else
    /// a name linked to it (another source copied to the kept name may have replaced it),
    /// which is kept from then on.
    fn kept_copy(&mut self, key: FileId) -> Option<CopyAt> {
        let (path, copy) = self.kept.get(&key)?.clone();
        if copy.is_at(&path) {
            return Some((path, copy));
        }
        let mut names = self.linked.iter().filter(|(_, k)| **k == key);
        let (other, _) = names.find(|(name, _)| copy.is_at(name))?;
        let other = other.clone();
        self.kept.insert(key, (other.clone(), copy));
        Some((other, copy))
    }
}

/// The failure of a link of `name` to `first` (`cp`: "cannot create hard link 'name' to
/// 'first'").
fn cannot_link(name: &Path, first: &Path, e: io::Error) -> Failure {
    let mut failure = Failure::during(name, Op::Link, &e);
    failure.reason = format!("to {}: {}", quote(first), failure.reason);
    failure
}

/// A finished directory about to gain links (see [`Linker::link_reached`]): its mode and
/// times as they were, and it made writable by its owner meanwhile.
struct DirKept {
    path: PathBuf,
    mode: u32,
    times: rfs::Timestamps,
}

impl DirKept {
    fn open(path: &Path) -> io::Result<DirKept> {
        let st = rfs::lstat(path)?;
        let meta = Meta::from_stat(&st);
        let mode = meta.mode & 0o7777;
        if mode & 0o300 != 0o300 {
            rfs::chmod(path, Mode::from_raw_mode(mode | 0o300))?;
        }
        Ok(DirKept {
            path: path.to_path_buf(),
            mode,
            times: meta.timestamps(),
        })
    }

    /// Sets its mode and times back.
    fn restore(self) -> io::Result<()> {
        if self.mode & 0o300 != 0o300 {
            rfs::chmod(&self.path, Mode::from_raw_mode(self.mode))?;
        }
        rfs::utimensat(rfs::CWD, &self.path, &self.times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
}
