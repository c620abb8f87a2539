//! What could not be copied, said as `cp` says it: a [`Failure`] carries the operation that
//! failed ([`Op`]), the source path it concerns, the errno, and the reason without Rust's
//! "(os error N)". [`Op::side`] tells whether the source or the destination is at fault;
//! the command line (`report.rs`) names the user's path on that side, never a temporary one.
//!
//! An I/O error learns its operation where it happens, through [`Doing::doing`], and keeps
//! it on its way up: [`Failure::io`] finds it there.

use std::fmt;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::meta::RawPath;
use super::quote::quote;

/// What was being done when something failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Reading a source's metadata.
    Stat,
    /// Opening a source file.
    Open,
    /// Opening a source directory.
    OpenDir,
    /// Opening a destination directory.
    OpenDest,
    /// Listing a source directory.
    ReadDir,
    /// Reading where a source link points.
    ReadLink,
    /// Copying a file's contents (reading the source or writing the copy).
    Copy,
    /// Comparing a copy with its source (`--verify`).
    Verify,
    /// Creating a destination file.
    Create,
    /// Creating a destination directory.
    Mkdir,
    /// Creating a symbolic link at the destination.
    Symlink,
    /// Creating a FIFO, socket or device at the destination.
    Special,
    /// Linking a name of a hard-link group at the destination.
    Link,
    /// Setting a copy's metadata (owner, mode, times, extended attributes).
    Attrs,
    /// Giving a finished copy its name.
    Place,
    /// Refused before anything was done; the reason says it all (e.g. the same file).
    Refused,
    /// Anything else; the reason says what.
    Other,
}

/// Which path a failure concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

impl Op {
    /// Whose fault: the source's or the destination's.
    pub fn side(self) -> Side {
        match self {
            Op::Stat
            | Op::Open
            | Op::OpenDir
            | Op::ReadDir
            | Op::ReadLink
            | Op::Copy
            | Op::Refused
            | Op::Other => Side::Source,
            Op::OpenDest
            | Op::Verify
            | Op::Create
            | Op::Mkdir
            | Op::Symlink
            | Op::Special
            | Op::Link
            | Op::Attrs
            | Op::Place => Side::Destination,
        }
    }

    /// The name `--json` gives it: `open`, `read_dir`, ...
    pub fn name(self) -> &'static str {
        match self {
            Op::Stat => "stat",
            Op::Open => "open",
            Op::OpenDir => "open_dir",
            Op::OpenDest => "open_dest",
            Op::ReadDir => "read_dir",
            Op::ReadLink => "read_link",
            Op::Copy => "copy",
            Op::Verify => "verify",
            Op::Create => "create",
            Op::Mkdir => "mkdir",
            Op::Symlink => "symlink",
            Op::Special => "special",
            Op::Link => "link",
            Op::Attrs => "attrs",
            Op::Place => "place",
            Op::Refused => "refused",
            Op::Other => "other",
        }
    }

    /// What `cp` says before the reason, for the (quoted) path `p`.
    fn phrase(self, p: &str) -> String {
        match self {
            Op::Stat => format!("cannot stat {p}"),
            Op::Open => format!("cannot open {p} for reading"),
            Op::OpenDir | Op::OpenDest => format!("cannot open directory {p}"),
            Op::ReadDir => format!("cannot read directory {p}"),
            Op::ReadLink => format!("cannot read symbolic link {p}"),
            Op::Copy => format!("error copying {p}"),
            Op::Verify => format!("verifying {p}"),
            Op::Create => format!("cannot create regular file {p}"),
            Op::Mkdir => format!("cannot create directory {p}"),
            Op::Symlink => format!("cannot create symbolic link {p}"),
            Op::Special => format!("cannot create special file {p}"),
            Op::Link => format!("cannot create hard link {p}"),
            Op::Attrs => format!("failed to preserve attributes for {p}"),
            Op::Place => format!("cannot put the copy in place at {p}"),
            Op::Refused | Op::Other => p.to_string(),
        }
    }
}

/// A file that could not be copied, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    /// The source path it concerns (or, where there is none, the destination path).
    pub path: RawPath,
    /// Why, without "(os error N)".
    pub reason: String,
    /// What was being done.
    pub op: Op,
    /// The system's error number, where the system said no.
    pub errno: Option<i32>,
    /// The destination is full: the whole copy must stop.
    pub disk_full: bool,
}

impl Failure {
    /// A failure of `path` for `reason` (an operation not told: [`Op::Other`]).
    pub fn new(path: &Path, reason: impl fmt::Display) -> Failure {
        Failure {
            path: RawPath::new(path),
            reason: plain(&reason.to_string()),
            op: Op::Other,
            errno: None,
            disk_full: false,
        }
    }

    /// A failure of `path` refused before anything was done; `why` names the paths itself.
    pub fn refused(path: &Path, why: impl fmt::Display) -> Failure {
        Failure {
            op: Op::Refused,
            ..Failure::new(path, why)
        }
    }

    /// `path` cannot be looked at (a missing source, a dangling link under `-L`), in `cp`'s
    /// words: "cannot stat 'PATH': REASON".
    pub fn cannot_stat(path: &Path, err: io::Error) -> Failure {
        Failure::during(path, Op::Stat, &err)
    }

    /// A failure of `path` from an I/O error, with the operation the error learnt where it
    /// happened (see [`Doing`]; [`Op::Copy`] if it learnt none); it may say the disk is full.
    pub fn io(path: &Path, err: &io::Error) -> Failure {
        let (op, err) = match err.get_ref().and_then(|e| e.downcast_ref::<During>()) {
            Some(during) => (during.op, &during.error),
            // Without an errno, the reason is the copier's own words: said as they are.
            None if err.raw_os_error().is_none() => (Op::Other, err),
            None => (Op::Copy, err),
        };
        Failure::of(path, op, err)
    }

    /// A failure of `path` while doing `op`, from an I/O error (its own operation, if it
    /// learnt one, wins).
    pub fn during(path: &Path, op: Op, err: &io::Error) -> Failure {
        match err.get_ref().and_then(|e| e.downcast_ref::<During>()) {
            Some(_) => Failure::io(path, err),
            None => Failure::of(path, op, err),
        }
    }

    fn of(path: &Path, op: Op, err: &io::Error) -> Failure {
        let errno = err.raw_os_error();
        Failure {
            path: RawPath::new(path),
            reason: plain(&err.to_string()),
            op,
            errno,
            // Not EFBIG: a file too large for the destination fails alone.
            disk_full: matches!(errno, Some(libc::ENOSPC) | Some(libc::EDQUOT)),
        }
    }

    /// The message, as `cp` words it (without the leading `mp: `), naming `path` (the
    /// user's path on the side at fault, see [`Op::side`]).
    ///
    /// ```ignore
    /// let f = Failure::during(Path::new("src/b"), Op::Open, &denied);
    /// assert_eq!(f.message(Path::new("src/b")), "cannot open 'src/b' for reading: Permission denied");
    /// ```
    pub fn message(&self, path: &Path) -> String {
        match self.op {
            Op::Refused => self.reason.clone(),
            // "cannot create hard link 'b' to 'a': ...": the reason starts with "to".
            Op::Link if self.reason.starts_with("to ") => {
                format!("{} {}", Op::Link.phrase(&quote(path)), self.reason)
            }
            op => format!("{}: {}", op.phrase(&quote(path)), self.reason),
        }
    }

    /// The kind of error, as `--json` names it: the system's (`permission_denied`,
    /// `not_found`, ...) where there is an errno, else what was refused or failed.
    pub fn kind(&self) -> String {
        match (self.errno, self.op) {
            (Some(errno), _) => snake(&format!("{:?}", io::Error::from_raw_os_error(errno).kind())),
            (None, Op::Refused) => "refused".into(),
            (None, Op::Verify) => "verification_failed".into(),
            (None, _) => "other".into(),
        }
    }
}

/// An I/O error and the operation it interrupted (see [`Doing`]).
#[derive(Debug)]
struct During {
    op: Op,
    error: io::Error,
}

impl fmt::Display for During {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for During {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Tells an error what was being done when it happened (the first operation told wins:
/// the closest to the system call). Its kind stays the same.
///
/// ```ignore
/// let fd = fsops::open_source(dir, name, false).doing(Op::Open)?;
/// ```
pub trait Doing<T> {
    /// The result, its error knowing `op`.
    fn doing(self, op: Op) -> io::Result<T>;
}

impl<T, E: Into<io::Error>> Doing<T> for Result<T, E> {
    fn doing(self, op: Op) -> io::Result<T> {
        self.map_err(|e| {
            let error: io::Error = e.into();
            if error.get_ref().is_some_and(|e| e.is::<During>()) {
                return error;
            }
            io::Error::new(error.kind(), During { op, error })
        })
    }
}

/// `reason` without Rust's " (os error N)".
fn plain(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(at) = rest.find(" (os error ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + " (os error ".len()..];
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            rest = &tail[digits + 1..];
        } else {
            out.push_str(" (os error ");
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// `PermissionDenied` as `permission_denied`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> io::Error {
        io::Error::from_raw_os_error(libc::EACCES)
    }

    #[test]
    fn a_failure_reads_as_cps() {
        let f = Failure::during(Path::new("src/b"), Op::Open, &denied());
        assert_eq!(
            f.message(Path::new("src/b")),
            "cannot open 'src/b' for reading: Permission denied"
        );
        assert_eq!(
            (f.errno, f.kind().as_str()),
            (Some(13), "permission_denied")
        );
        let full = Failure::io(Path::new("a"), &io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(full.disk_full);
    }

    #[test]
    fn the_first_operation_told_wins_and_keeps_the_errno() {
        let result: io::Result<()> = Err(denied());
        let err = result.doing(Op::Create).doing(Op::Copy).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let f = Failure::during(Path::new("x"), Op::Other, &err);
        assert_eq!((f.op, f.errno), (Op::Create, Some(libc::EACCES)));
        assert_eq!(f.reason, "Permission denied");
    }

    #[test]
    fn reasons_lose_the_os_error_number() {
        assert_eq!(
            plain("cannot list: Permission denied (os error 13)"),
            "cannot list: Permission denied"
        );
        assert_eq!(plain("odd (os error x)"), "odd (os error x)");
        assert_eq!(snake("PermissionDenied"), "permission_denied");
    }
}
