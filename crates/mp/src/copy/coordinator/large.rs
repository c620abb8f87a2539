//! Large files (see [`crate::copy::protocol::LARGE_FILE`]), copied in spans by several workers
//! at once. The coordinator decides and the workers touch the disk (`worker/large.rs`):
//!
//! 1. a start task judges what is at the destination (kept by `--update`/`--resume`, the
//!    source itself refused; under `-L`, a file another name claimed is not copied), then
//!    makes a temporary file beside it: cloned and sealed at once where the file system can
//!    (reflink), otherwise given its size;
//! 2. span tasks of [`SPAN`] bytes fill it, as many at once as there are workers free;
//! 3. a seal task compares it with its source (`--verify`), trims it should the source have
//!    shrunk, gives it its metadata and renames it into place; or removes it if a span failed.
//!
//! A seal runs even while the copy stops: its bytes are all there. A span that finds the
//! disk full stops the copy at once, not once the file's other spans have failed too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::dispatch::Job;
use super::tree::Placement;
use super::Coordinator;
use crate::copy::fsops;
use crate::copy::ids::{DirId, FileId, LargeId};
use crate::copy::meta::{Failure, Meta, RawPath};
use crate::copy::protocol::{LargeTask, SealTask, SpanTask, Started, Tally};

/// How much of a large file one span task copies.
const SPAN: u64 = 64 << 20;

/// A large file being copied.
struct LargeFile {
    dir: DirId,
    src: PathBuf,
    dst: PathBuf,
    meta: Meta,
    /// Where `dst` ends up (below its directory's final name).
    last: PathBuf,
    /// The hard-link group it is the first name of.
    group: Option<FileId>,
    /// Its temporary file (there once its start task made it).
    temp: PathBuf,
    spans_left: usize,
    /// The first failure of a span.
    failure: Option<Failure>,
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

    /// Removes the temporary files of the large files not finished (the copy stopped; the
    /// workers are gone).
    pub(super) fn discard_unfinished(&mut self) {
        for (_, file) in self.files.drain() {
            let _ = std::fs::remove_file(file.temp);
        }
    }
}

impl Coordinator<'_> {
    /// Starts copying the large file `p`, the first name of the hard-link group `group`.
    pub(super) fn start_large(&mut self, p: Placement, group: Option<FileId>) {
        let id = self.large.next;
        self.large.next = id.next();
        let last = self.placed(p.dir, &p.dst).last;
        let temp = fsops::dir_above(&p.dst).join(fsops::temp_name());
        let task = LargeTask {
            src: RawPath::new(&p.src),
            dst: RawPath::new(&p.dst),
            meta: p.meta,
            existed: self.tree.nodes[&p.dir].existed,
            last: RawPath::new(&last),
            temp: RawPath::new(&temp),
        };
        let file = LargeFile {
            dir: p.dir,
            src: p.src,
            dst: p.dst,
            meta: p.meta,
            last,
            group,
            temp,
            spans_left: 0,
            failure: None,
        };
        self.large.files.insert(id, file);
        self.dispatch.push(Job::Large(id, task));
    }

    /// The start of the large file `id` is done: it is finished, or its spans go out.
    pub(super) fn large_started(&mut self, id: LargeId, started: multiprocess::Result<Started>) {
        let (tally, ok) = match started {
            Ok(Started::Spans) => return self.add_spans(id),
            Ok(Started::Done { tally, ok }) => (tally, ok),
            Err(e) => {
                let f = &self.large.files[&id];
                // The task may have made the temporary file before its worker died.
                let _ = std::fs::remove_file(&f.temp);
                let src = f.src.clone();
                self.task_lost(&src, e);
                (Tally::default(), false)
            }
        };
        self.large_done(id, tally, ok);
    }

    /// Hands out the spans of the large file `id`, whose temporary file has its size.
    fn add_spans(&mut self, id: LargeId) {
        let f = self
            .large
            .files
            .get_mut(&id)
            .expect("a large file in progress");
        let size = f.meta.size;
        let mut start = 0;
        while start < size {
            let end = (start + SPAN).min(size);
            let task = SpanTask {
                src: RawPath::new(&f.src),
                temp: RawPath::new(&f.temp),
                start,
                end,
                sparse: f.meta.is_sparse(),
            };
            self.dispatch.push(Job::Span(id, task));
            f.spans_left += 1;
            start = end;
        }
        if f.spans_left == 0 {
            self.seal(id);
        }
    }

    /// A span of the large file `id` is done: once all are, the file is sealed.
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
        let left = f.spans_left;
        if let Some(full) = full {
            self.record.fail(full);
        }
        if left == 0 {
            self.seal(id);
        }
    }

    /// Seals the large file `id` (or removes it, if a span failed).
    fn seal(&mut self, id: LargeId) {
        let f = &self.large.files[&id];
        let task = SealTask {
            src: RawPath::new(&f.src),
            temp: RawPath::new(&f.temp),
            dst: RawPath::new(&f.dst),
            meta: f.meta,
            last: RawPath::new(&f.last),
            discard: f.failure.is_some(),
        };
        self.dispatch.push(Job::Seal(id, task));
    }

    /// The seal of the large file `id` is done. Its failure, or a span's, is not listed when
    /// the copy is stopping: the file was cut short.
    pub(super) fn sealed(&mut self, id: LargeId, result: multiprocess::Result<Tally>) {
        let f = self
            .large
            .files
            .get_mut(&id)
            .expect("a large file in progress");
        let mut tally = match result {
            Ok(tally) => tally,
            Err(e) => {
                let mut tally = Tally::default();
                tally.failures.push(Failure::new(&f.src, e));
                tally
            }
        };
        tally.failures.extend(f.failure.take());
        if !tally.failures.is_empty() {
            // A lost seal may have left it.
            let _ = std::fs::remove_file(&f.temp);
        }
        let ok = tally.failures.is_empty() && tally.stopped.is_none();
        if self.record.stopped() {
            tally.failures.clear();
        }
        self.large_done(id, tally, ok);
    }

    /// The large file `id` is done (`ok`: copied or kept, so its group's names may link to
    /// it): what it did is recorded, and its directory hears of it.
    fn large_done(&mut self, id: LargeId, mut tally: Tally, ok: bool) {
        let f = self
            .large
            .files
            .remove(&id)
            .expect("a large file in progress");
        let reached = std::mem::take(&mut tally.reached);
        self.note_reached(Path::new(""), reached, f.dir != DirId::TOP);
        let kept = tally.counts.skipped > 0;
        self.record.absorb(tally);
        if let Some(key) = f.group {
            self.group_copied(key, ok, kept);
        }
        self.one_done(f.dir);
    }
}
