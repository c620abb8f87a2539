//! Large files (see [`crate::copy::protocol::LARGE_FILE`]), copied in spans by several workers
//! at once: a temporary file beside the destination, cloned at once where the file system can
//! (reflink), otherwise given its size and filled by span tasks of [`SPAN`] bytes; then
//! (`--verify`) compared with its source, and sealed: trimmed should the source have shrunk,
//! given its metadata, and renamed into place. Under `-L`, a large file another name claimed
//! is not copied (see `dereference.rs`).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};

use super::dispatch::Job;
use super::tree::Placement;
use super::Coordinator;
use crate::copy::dereference::{self, Claim};
use crate::copy::fsops;
use crate::copy::ids::{DirId, FileId, LargeId};
use crate::copy::meta::{Failure, Meta, RawPath};
use crate::copy::protocol::{SpanTask, Tally};
use crate::copy::replace::{self, Verdict};
use crate::copy::status::Progress;

/// How much of a large file one span task copies.
const SPAN: u64 = 64 << 20;

/// A large file being copied into a temporary file.
struct LargeFile {
    dir: DirId,
    src: PathBuf,
    dst: PathBuf,
    temp: PathBuf,
    fd: OwnedFd,
    meta: Meta,
    spans_left: usize,
    /// Cloned whole (no span reported its bytes).
    cloned: bool,
    failure: Option<Failure>,
    /// The hard-link group it is the first name of.
    group: Option<FileId>,
}

/// The large files being copied.
pub(super) struct LargeFiles {
    files: HashMap<LargeId, LargeFile>,
    next: LargeId,
}

impl LargeFiles {
    pub(super) fn new() -> LargeFiles {
        LargeFiles {
            files: HashMap::new(),
            next: LargeId::FIRST,
        }
    }

    /// Removes the temporary files of the large files not finished (the copy stopped).
    pub(super) fn discard_unfinished(&mut self) {
        for (_, file) in self.files.drain() {
            let _ = std::fs::remove_file(&file.temp);
        }
    }
}

impl Coordinator<'_> {
    /// Starts copying the large file `p`, the first name of the hard-link group `group`.
    pub(super) fn start_large(&mut self, p: Placement, group: Option<FileId>) {
        let existed = self.tree.nodes[&p.dir].existed;
        let claim = dereference::claim(self.claims.as_ref(), &p.meta);
        if claim == Some(Claim::Taken) {
            let found = match existed {
                true => replace::judge_paths(&p.src, &p.dst, &p.meta, &self.config),
                false => Ok(None),
            };
            let mut tally = Tally::default();
            let name = self.placed(p.dir, &p.dst).last;
            dereference::leave_to_claimer(found, p.src, &p.meta, &name, &mut tally);
            self.note_reached(
                Path::new(""),
                std::mem::take(&mut tally.reached),
                p.dir != DirId::TOP,
            );
            self.record.absorb(tally);
            self.record.progress(Progress { files: 1, bytes: 0 });
            return self.one_done(p.dir);
        }
        match self.prepare_large(&p, group, existed) {
            Ok(None) => {}
            Ok(Some(verdict)) => {
                // Kept (`--update`, `--resume`); a later file is never linked over.
                self.record.counts().skipped += 1;
                self.record.progress(Progress { files: 1, bytes: 0 });
                if verdict == Verdict::UpToDate {
                    self.note_large_copy(&p.meta, p.dir, &p.dst, true);
                }
                if let Some(key) = group {
                    self.group_copied(key, true);
                }
                self.one_done(p.dir);
            }
            Err(e) => {
                self.record.fail(Failure::io(&p.src, &e));
                if let Some(key) = group {
                    self.group_copied(key, false);
                }
                self.one_done(p.dir);
            }
        }
    }

    /// Prepares a large file: a temporary file beside its destination, cloned at once where
    /// the file system can, otherwise filled by span tasks. `Ok(Some(..))`: what is there is
    /// kept (see [`Verdict`]), and nothing is copied; never the source itself.
    fn prepare_large(
        &mut self,
        p: &Placement,
        group: Option<FileId>,
        existed: bool,
    ) -> io::Result<Option<Verdict>> {
        let (src, dst, meta) = (&p.src, &p.dst, p.meta);
        if existed {
            if let Some((_, verdict)) = replace::judge_paths(src, dst, &meta, &self.config)? {
                if verdict.keeps() {
                    return Ok(Some(verdict));
                }
            }
        }
        let temp = fsops::dir_above(dst).join(fsops::temp_name());
        let fd = rfs::open(
            &temp,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let id = self.large.next;
        self.large.next = id.next();
        let mut file = LargeFile {
            dir: p.dir,
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            temp: temp.clone(),
            fd,
            meta,
            spans_left: 0,
            cloned: false,
            failure: None,
            group,
        };
        let cloned = fsops::open_source(rfs::CWD, src, true)
            .map_err(io::Error::from)
            .and_then(|s| fsops::try_reflink(s.as_fd(), file.fd.as_fd(), self.config.reflink));
        match cloned {
            Ok(true) => {
                file.cloned = true;
                self.large.files.insert(id, file);
                self.finish_large(id);
                return Ok(None);
            }
            Ok(false) => {}
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        }
        if let Err(e) = rfs::ftruncate(&file.fd, meta.size) {
            let _ = std::fs::remove_file(&temp);
            return Err(e.into());
        }
        let mut start = 0;
        while start < meta.size {
            let end = (start + SPAN).min(meta.size);
            let task = SpanTask {
                src: RawPath::new(src),
                temp: RawPath::new(&temp),
                start,
                end,
                sparse: meta.is_sparse(),
            };
            self.dispatch.push(Job::Span(id, task));
            file.spans_left += 1;
            start = end;
        }
        self.large.files.insert(id, file);
        Ok(None)
    }

    /// A span of the large file `id` is done: once all are, the file is compared with its
    /// source (`--verify`) or finished. A full disk stops the copy at once, not once the
    /// file's other spans have failed too.
    pub(super) fn span_done(
        &mut self,
        id: LargeId,
        result: multiprocess::Result<Result<u64, Failure>>,
    ) {
        let f = self
            .large
            .files
            .get_mut(&id)
            .expect("a large file in progress");
        f.spans_left -= 1;
        let failure = match result {
            Ok(Ok(_)) => None,
            Ok(Err(failure)) => Some(failure),
            Err(e) => Some(Failure::new(&f.src, e)),
        };
        let full = failure.as_ref().filter(|f| f.disk_full).cloned();
        if f.failure.is_none() {
            f.failure = failure;
        }
        let (left, verify) = (f.spans_left, self.config.verify && f.failure.is_none());
        let job = verify.then(|| Job::Verify(id, RawPath::new(&f.src), RawPath::new(&f.temp)));
        if let Some(full) = full {
            self.record.fail(full);
        }
        match (left, job) {
            (0, Some(job)) => self.dispatch.push(job),
            (0, None) => self.finish_large(id),
            _ => {}
        }
    }

    /// The large file `id` was compared with its source (`--verify`).
    pub(super) fn verified(
        &mut self,
        id: LargeId,
        result: multiprocess::Result<Result<(), Failure>>,
    ) {
        let f = self
            .large
            .files
            .get_mut(&id)
            .expect("a large file in progress");
        f.failure = match result {
            Ok(r) => r.err(),
            Err(e) => Some(Failure::new(&f.src, e)),
        };
        self.finish_large(id);
    }

    /// Finishes a large file: metadata, then the rename that makes it visible; or, if it
    /// failed, removes it (its failure is not listed when the copy is stopping: it was cut
    /// short).
    fn finish_large(&mut self, id: LargeId) {
        let f = self
            .large
            .files
            .remove(&id)
            .expect("a large file in progress");
        let result = match f.failure {
            Some(failure) => Err(failure),
            None => seal(&f).map_err(|e| Failure::io(&f.src, &e)),
        };
        let ok = match result {
            Ok(()) => {
                let counts = self.record.counts();
                counts.files += 1;
                counts.bytes += f.meta.size;
                let bytes = if f.cloned { f.meta.size } else { 0 };
                self.record.progress(Progress { files: 1, bytes });
                self.note_large_copy(&f.meta, f.dir, &f.dst, false);
                true
            }
            Err(failure) => {
                let _ = std::fs::remove_file(&f.temp);
                if !self.record.stopped() {
                    self.record.fail(failure);
                }
                false
            }
        };
        if let Some(key) = f.group {
            self.group_copied(key, ok);
        }
        self.one_done(f.dir);
    }

    /// Under `-L`, notes the copy (or the up-to-date one: `skipped`) of a large file of one
    /// link, in directory `dir` at `dst` (where it is written now).
    fn note_large_copy(&mut self, meta: &Meta, dir: DirId, dst: &Path, skipped: bool) {
        if self.linker.is_none() || meta.is_multiply_linked() {
            return;
        }
        let copy = rfs::lstat(dst).map(|st| Meta::from_stat(&st));
        let mut tally = Tally::default();
        let name = self.placed(dir, dst).last;
        dereference::note_copy(
            copy.map_err(io::Error::from),
            meta,
            &name,
            skipped,
            &mut tally,
        );
        self.note_reached(Path::new(""), tally.reached, dir != DirId::TOP);
    }
}

/// Seals a large file's temporary copy: trimmed should its source have shrunk, its metadata,
/// then the rename over its destination.
fn seal(f: &LargeFile) -> io::Result<()> {
    let src = fsops::open_source(rfs::CWD, &f.src, true)?;
    fsops::trim_to_source(src.as_fd(), f.fd.as_fd(), f.meta.size)?;
    fsops::apply_file_meta(f.fd.as_fd(), Some(src.as_fd()), &f.meta, None)?;
    std::fs::rename(&f.temp, &f.dst)
}
