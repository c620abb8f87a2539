//! The tasks of a large file, copied in spans by several workers at once (the coordinator's
//! side is `coordinator/large.rs`): its start (what is at its destination judged first; then a
//! clone, sealed at once, or a temporary file of its size), one span, and its seal.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};

use super::{config, state, stop_asked, Reporter};
use crate::copy::config::Reflink;
use crate::copy::dereference::{self, Claim};
use crate::copy::fsops;
use crate::copy::meta::{Failure, Meta, RawPath};
use crate::copy::protocol::{LargeTask, SealTask, SpanTask, Started, Tally};
use crate::copy::replace::{self, Verdict};
use crate::copy::stop::Stop;

/// Starts a large file (see [`LargeTask`]): never over the source itself, nor over what
/// `--update` or `--resume` keep.
pub fn start_large(task: LargeTask) -> Started {
    let (src, dst, meta) = (task.src.path(), task.dst.path(), &task.meta);
    let mut tally = Tally::default();
    let mut reporter = Reporter::new();
    let claim = dereference::claim(state().claims.as_ref(), meta);
    let found = match task.existed {
        true => replace::judge_paths(src, dst, meta, config()),
        false => Ok(None),
    };
    if claim == Some(Claim::Taken) {
        let name = task.last.path();
        dereference::leave_to_claimer(found, src.to_path_buf(), meta, name, &mut tally);
        reporter.file();
        return Started::Done { tally, ok: true };
    }
    match found {
        Ok(Some((_, verdict))) if verdict.keeps() => {
            tally.counts.skipped += 1;
            reporter.file();
            if verdict == Verdict::UpToDate {
                note_copy(&task.dst, meta, &task.last, true, &mut tally);
            }
            return Started::Done { tally, ok: true };
        }
        Ok(_) => {}
        Err(e) => {
            return Started::Done {
                tally: failed(src, &e),
                ok: false,
            }
        }
    }
    let temp = task.temp.path();
    match make_temp(src, temp, meta) {
        Ok(None) => Started::Spans,
        Ok(Some(fd)) => {
            // Cloned whole: sealed at once.
            let sealed = seal(src, (temp, fd), dst, meta);
            let (tally, ok) = finished(src, sealed, temp, (&task.dst, meta, &task.last));
            if ok {
                // No span reported its bytes.
                reporter.bytes(meta.size);
            }
            Started::Done { tally, ok }
        }
        Err(e) => Started::Done {
            tally: failed(src, &e),
            ok: false,
        },
    }
}

/// Makes the temporary file `temp` for the large file `src`: cloned where the file system
/// can (`Some`: its descriptor, to seal it), otherwise given its size (`None`). Nothing is
/// left on failure.
fn make_temp(src: &Path, temp: &Path, meta: &Meta) -> io::Result<Option<OwnedFd>> {
    let fd = rfs::open(
        temp,
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let made = fsops::open_source(rfs::CWD, src, true)
        .map_err(io::Error::from)
        .and_then(|s| fsops::try_reflink(s.as_fd(), fd.as_fd(), config().reflink))
        .and_then(|cloned| match cloned {
            true => Ok(Some(fd)),
            false => rfs::ftruncate(&fd, meta.size)
                .map(|()| None)
                .map_err(Into::into),
        });
    if made.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    made
}

/// Copies one span of a large file into its temporary file.
pub fn copy_span(task: SpanTask) -> Result<u64, Failure> {
    let fail = |e: io::Error| Failure::io(task.src.path(), &e);
    let src = fsops::open_source(rfs::CWD, task.src.path(), true).map_err(|e| fail(e.into()))?;
    let dst = rfs::open(
        task.temp.path(),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(e.into()))?;
    let mut reporter = Reporter::new();
    fsops::copy_span(
        src.as_fd(),
        dst.as_fd(),
        (task.start, task.end),
        (task.sparse, config().reflink != Reflink::Never),
        &mut |n| reporter.bytes(n),
        &stop_asked,
    )
    .map_err(fail)?;
    Ok(task.end - task.start)
}

/// Seals a large file whose spans are copied (see [`SealTask`]); with `discard`, removes it.
pub fn seal_large(task: SealTask) -> Tally {
    let (src, temp) = (task.src.path(), task.temp.path());
    if task.discard {
        let _ = std::fs::remove_file(temp);
        return Tally::default();
    }
    let opened = rfs::open(temp, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty());
    let sealed = opened
        .map_err(|e| Failure::io(src, &e.into()))
        .and_then(|fd| {
            if config().verify {
                verify(src, fd.as_fd())?;
            }
            seal(src, (temp, fd), task.dst.path(), &task.meta)
        });
    finished(src, sealed, temp, (&task.dst, &task.meta, &task.last)).0
}

/// Trims a large file's temporary copy (`temp`, open as `fd`) should its source `src` have
/// shrunk, gives it its metadata, and renames it over `dst`.
fn seal(src: &Path, (temp, fd): (&Path, OwnedFd), dst: &Path, meta: &Meta) -> Result<(), Failure> {
    let fail = |e: io::Error| Failure::io(src, &e);
    let source = fsops::open_source(rfs::CWD, src, true).map_err(|e| fail(e.into()))?;
    fsops::trim_to_source(source.as_fd(), fd.as_fd(), meta.size).map_err(fail)?;
    fsops::apply_file_meta(fd.as_fd(), Some(source.as_fd()), meta, None).map_err(fail)?;
    std::fs::rename(temp, dst).map_err(fail)
}

/// What a seal (`sealed`) of a copy at `temp` leaves: the file counted (and, under `-L`,
/// noted at `last`), or its failure, the temporary file removed; and whether it succeeded.
fn finished(
    src: &Path,
    sealed: Result<(), Failure>,
    temp: &Path,
    (dst, meta, last): (&RawPath, &Meta, &RawPath),
) -> (Tally, bool) {
    match sealed {
        Ok(()) => {
            let mut tally = Tally::default();
            tally.counts.files += 1;
            tally.counts.bytes += meta.size;
            Reporter::new().file();
            if config().verbose {
                tally.copied.push(RawPath::new(src));
            }
            note_copy(dst, meta, last, false, &mut tally);
            (tally, true)
        }
        Err(failure) => {
            let _ = std::fs::remove_file(temp);
            (stopped_or_failed(failure), false)
        }
    }
}

/// Compares the copy `copy` with its source `src` by checksums (`--verify`).
fn verify(src: &Path, copy: std::os::fd::BorrowedFd<'_>) -> Result<(), Failure> {
    let fail = |e: io::Error| Failure::new(src, e);
    let source = fsops::open_source(rfs::CWD, src, true).map_err(|e| fail(e.into()))?;
    match fsops::same_contents(source.as_fd(), copy) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::new(src, "verification failed: the copy differs")),
        Err(e) => Err(fail(e)),
    }
}

/// Under `-L`, notes the copy of a large file of one link at `dst` (found up to date:
/// `skipped`), at its final path `last`.
fn note_copy(dst: &RawPath, meta: &Meta, last: &RawPath, skipped: bool, tally: &mut Tally) {
    if state().claims.is_none() || meta.is_multiply_linked() {
        return;
    }
    let copy = rfs::lstat(dst.path())
        .map(|st| Meta::from_stat(&st))
        .map_err(io::Error::from);
    dereference::note_copy(copy, meta, last.path(), skipped, tally);
}

/// A tally of the failure of `src` from `e`.
fn failed(src: &Path, e: &io::Error) -> Tally {
    stopped_or_failed(Failure::io(src, e))
}

/// A tally of `failure`: a full disk stops the copy.
fn stopped_or_failed(failure: Failure) -> Tally {
    let mut tally = Tally::default();
    match failure.disk_full {
        true => tally.stopped = Some(Stop::DiskFull(failure)),
        false => tally.failures.push(failure),
    }
    tally
}
