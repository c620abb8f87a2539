//! The tasks of a large file, copied in spans by several workers at once: one span, and the
//! comparison of the finished copy with its source (`--verify`).

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};

use super::{stop_asked, Reporter};
use crate::copy::fsops;
use crate::copy::meta::{Failure, RawPath};
use crate::copy::protocol::SpanTask;

/// Copies one span of a large file into the coordinator's temporary file.
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
        task.start,
        task.end,
        task.sparse,
        &mut |n| reporter.bytes(n),
        &stop_asked,
    )
    .map_err(fail)?;
    Ok(task.end - task.start)
}

/// Compares a source file with its copy by checksums (`--verify` for large files).
pub fn verify_pair(src: RawPath, copy: RawPath) -> Result<(), Failure> {
    let open = |p: &Path| fsops::open_source(rfs::CWD, p, true);
    let fail = |e: io::Error| Failure::new(src.path(), e);
    let a = open(src.path()).map_err(|e| fail(e.into()))?;
    let b = open(copy.path()).map_err(|e| fail(e.into()))?;
    match fsops::same_contents(a.as_fd(), b.as_fd()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::new(
            src.path(),
            "verification failed: the copy differs",
        )),
        Err(e) => Err(fail(e)),
    }
}
