//! The copier's temporary names (`.mp-copy-PID-N.tmp`, and a small leaf's `.N` after it), and
//! removing what a killed copy left (their process is gone) or a lost task (cut short).

use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{self as rfs, AtFlags};
use rustix::io::Errno;

use super::open_dir_at;
use crate::copy::meta::{Kind, Meta};

/// Counts temporary names made by this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden name for a temporary file or directory, unique to this process.
pub fn temp_name() -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(format!(".mp-copy-{}-{n}.tmp", std::process::id()))
}

/// The process a temporary name of this copier belongs to: `.mp-copy-PID-N.tmp`, or a small
/// leaf's `.mp-copy-PID-N.tmp.K`. `None` for any other name.
pub fn temp_name_owner(name: &[u8]) -> Option<i32> {
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let rest = name.strip_prefix(b".mp-copy-")?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let (pid, rest) = (&rest[..dash], &rest[dash + 1..]);
    let dot = rest.iter().position(|&b| b == b'.')?;
    let (n, rest) = (&rest[..dot], &rest[dot..]);
    let tail = rest.strip_prefix(b".tmp")?;
    let leaf_ok = tail.is_empty() || tail.strip_prefix(b".").is_some_and(digits);
    if !(digits(pid) && digits(n) && leaf_ok) {
        return None;
    }
    std::str::from_utf8(pid).ok()?.parse().ok()
}

/// Removes from the directory `dir` (at `path`) what copies killed before they could finish
/// left there: entries under this copier's temporary names whose process is gone. A
/// directory it cannot read is left alone.
pub fn remove_stale_temps(dir: BorrowedFd<'_>, path: &Path) {
    let Ok(listing) = open_dir_at(dir, Path::new("."), true, true) else {
        return;
    };
    let mut stale = Vec::new();
    let mut buf = Vec::with_capacity(8 << 10);
    let mut entries = rfs::RawDir::new(&listing, buf.spare_capacity_mut());
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name().to_bytes();
        let Some(pid) = temp_name_owner(name) else {
            continue;
        };
        let gone = pid > 0
            && rustix::process::Pid::from_raw(pid)
                .is_some_and(|p| rustix::process::test_kill_process(p) == Err(Errno::SRCH));
        if gone {
            stale.push(PathBuf::from(std::ffi::OsStr::from_bytes(name)));
        }
    }
    for name in stale {
        if let Err(Errno::ISDIR | Errno::PERM) = rfs::unlinkat(dir, &name, AtFlags::empty()) {
            let _ = std::fs::remove_dir_all(path.join(&name));
        }
    }
}

/// Removes what a lost directory task left of the small leaves it was copying itself (see
/// `worker/leaves.rs`): hidden directories in `dst` named after its own `hidden` name plus
/// `.N`. Those it finished have their names already.
pub fn remove_inline_leaves(dst: &Path, hidden: &Path) {
    let Some(prefix) = hidden
        .file_name()
        .map(|n| format!("{}.", n.to_string_lossy()))
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dst) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes every regular file in the hidden directory `hidden` that is not a finished copy
/// of its namesake in `src` (`finished(copy, source)` says, from both snapshots; the source
/// followed under `follow`), and every temporary file. Directories inside (small leaves a
/// lost task was copying into it) are looked through the same way.
pub fn remove_unfinished(
    src: &Path,
    hidden: &Path,
    follow: bool,
    finished: &dyn Fn(&Meta, &Meta) -> bool,
) {
    let Ok(entries) = std::fs::read_dir(hidden) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(copy) = rfs::lstat(&path) else {
            continue;
        };
        let copy = Meta::from_stat(&copy);
        let source = src.join(entry.file_name());
        if copy.kind == Kind::Dir {
            remove_unfinished(&source, &path, follow, finished);
        }
        if copy.kind != Kind::File {
            continue;
        }
        let source = match follow {
            true => rfs::stat(&source),
            false => rfs::lstat(&source),
        };
        let done = source.is_ok_and(|st| {
            let st = Meta::from_stat(&st);
            st.kind == Kind::File && finished(&copy, &st)
        });
        if !done {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_tell_their_process() {
        let mine = temp_name();
        let me = std::process::id() as i32;
        assert_eq!(temp_name_owner(mine.as_os_str().as_bytes()), Some(me));
        assert_eq!(temp_name_owner(b".mp-copy-12-3.tmp"), Some(12));
        assert_eq!(temp_name_owner(b".mp-copy-12-3.tmp.40"), Some(12));
        for other in [
            &b"file"[..],
            b".mp-copy-12-3.tmp.",
            b".mp-copy-12-3.tmpx",
            b".mp-copy-12-3.tmp.4x",
            b".mp-copy--3.tmp",
            b".mp-copy-12-.tmp",
            b".mp-copy-1a-3.tmp",
            b".mp-copy-12.tmp",
            b".mp-copy-99999999999999999999-3.tmp",
        ] {
            assert_eq!(temp_name_owner(other), None, "{}", other.escape_ascii());
        }
    }
}
