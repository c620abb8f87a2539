//! What `mp copy` prints, as it goes and at the end:
//!
//! - as it goes ([`Terminal`], the engine's [`StatusUpdater`]): each failure on stderr in
//!   `cp`'s words (`mp: cannot open 'src/b' for reading: Permission denied`), naming the
//!   user's path on the side at fault ([`Places`]), never a temporary one; warnings; with
//!   `-v`, `'src/a' -> 'dst/a'` on stdout per entry copied, as `cp -v`; the progress bar on
//!   stderr;
//! - at the end ([`summary_line`], [`json_summary`]): the count of failures, a line on the
//!   terminal, or the JSON summary on stdout (its schema is in the README).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::coordinator::Outcome;
use super::failure::{Failure, Side};
use super::progress::{human_bytes, thousands, Bar};
use super::quote::quote;
use super::status::{StatusUpdater, Update};

/// The version of the `--json` summary's schema: raised when a key changes meaning or goes.
pub const JSON_SCHEMA: u64 = 2;

/// Where each top-level copy goes (source, destination, as the user gave them): what names
/// an entry's destination, given its source path.
#[derive(Default)]
pub struct Places(Vec<(PathBuf, PathBuf)>);

impl Places {
    /// The places of these top-level copies.
    pub fn new(copies: impl IntoIterator<Item = (PathBuf, PathBuf)>) -> Places {
        let mut places: Vec<_> = copies.into_iter().collect();
        // The longest source first: the closest copy names a path below it.
        places.sort_by_key(|(src, _)| std::cmp::Reverse(src.as_os_str().len()));
        Places(places)
    }

    /// The destination of the entry at the source path `src`, if a copy has it.
    ///
    /// ```ignore
    /// let places = Places::new([("src".into(), "dst/src".into())]);
    /// assert_eq!(places.dest_of(Path::new("src/a")), Some("dst/src/a".into()));
    /// ```
    pub fn dest_of(&self, src: &Path) -> Option<PathBuf> {
        self.0.iter().find_map(|(from, to)| {
            let rest = src.strip_prefix(from).ok()?;
            Some(match rest.as_os_str().is_empty() {
                true => to.clone(),
                false => to.join(rest),
            })
        })
    }

    /// The path a failure names: its source, or the destination when that is at fault (a
    /// failure that has no source names its destination already).
    pub fn at_fault(&self, failure: &Failure) -> PathBuf {
        let path = failure.path.path();
        match failure.op.side() {
            Side::Source => path.to_path_buf(),
            Side::Destination => self.dest_of(path).unwrap_or_else(|| path.to_path_buf()),
        }
    }

    /// The message for a failure, as printed after `mp: `.
    pub fn message(&self, failure: &Failure) -> String {
        failure.message(&self.at_fault(failure))
    }
}

/// Tells the user how the copy goes, as it goes.
pub struct Terminal {
    pub places: Places,
    pub bar: Option<Bar>,
    /// `-v`: each entry copied, on stdout.
    pub verbose: bool,
    /// stdout is a terminal: `-v`'s lines must wait for the bar to be out of the way.
    pub stdout_terminal: bool,
    /// `-q`: no warnings.
    pub quiet: bool,
}

impl Terminal {
    /// Prints a line on stderr, out of the bar's way.
    fn error_line(&self, line: &str) {
        self.out_of_the_way(|| {
            let _ = writeln!(std::io::stderr().lock(), "mp: {line}");
        });
    }

    fn out_of_the_way(&self, print: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl StatusUpdater for Terminal {
    fn update(&mut self, update: Update<'_>) {
        match update {
            Update::Progress(p) => {
                if let Some(bar) = &mut self.bar {
                    bar.add(p);
                }
            }
            Update::Tick => {
                if let Some(bar) = &mut self.bar {
                    bar.draw();
                }
            }
            Update::Copied(src) if self.verbose => {
                let dst = self
                    .places
                    .dest_of(src)
                    .unwrap_or_else(|| src.to_path_buf());
                let line = verbose_line(src, &dst);
                // A closed stdout (`mp copy -v ... | head`) is not a failure of the copy.
                let print = || {
                    let _ = writeln!(std::io::stdout().lock(), "{line}");
                };
                match self.stdout_terminal {
                    true => self.out_of_the_way(print),
                    // Elsewhere than the bar's terminal: no need to clear and redraw it.
                    false => print(),
                }
            }
            Update::Copied(_) => {}
            Update::Failed(failure) => self.error_line(&self.places.message(failure)),
            Update::Warned(warning) if !self.quiet => {
                self.error_line(&format!("warning: {warning}"));
            }
            Update::Warned(_) | Update::Stopping(_) => {}
        }
    }
}

/// The line that ends a copy with failures (each printed as it happened): `mp: 2 failures`.
pub fn failures_line(count: usize) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("mp: {} failure{plural}", thousands(count as u64))
}

/// `'src/a' -> 'dst/a'`, as `cp -v` says it.
pub fn verbose_line(src: &Path, dst: &Path) -> String {
    format!("{} -> {}", quote(src), quote(dst))
}

/// Every name that is not a directory and is done (copied, linked, or up to date): what the
/// progress bar counts as files.
pub fn names_done(outcome: &Outcome) -> u64 {
    let c = &outcome.counts;
    c.files + c.symlinks + c.specials + c.hard_links + c.skipped
}

/// The line a terminal gets at the end:
/// `4,164 files: 4,087 copied, 77 symlinks; 1.2 GiB in 2.30 s (530.0 MiB/s)`.
pub fn summary_line(outcome: &Outcome, seconds: f64) -> String {
    let c = &outcome.counts;
    let parts: Vec<String> = [
        (c.files, "copied", "copied"),
        (c.symlinks, "symlink", "symlinks"),
        (c.hard_links, "hard link", "hard links"),
        (c.specials, "special file", "special files"),
        (c.skipped, "up to date", "up to date"),
    ]
    .iter()
    .filter(|(n, ..)| *n > 0)
    .map(|&(n, one, more)| format!("{} {}", thousands(n), if n == 1 { one } else { more }))
    .collect();
    let mut line = format!("{} files", thousands(names_done(outcome)));
    if !parts.is_empty() {
        line.push_str(&format!(": {}", parts.join(", ")));
    }
    line.push_str(&format!(
        "; {} in {:.2} s ({}/s)",
        human_bytes(c.bytes),
        seconds,
        human_bytes((c.bytes as f64 / seconds.max(1e-3)) as u64),
    ));
    line
}

/// `text` in lines narrower than `width` columns (one to spare), broken between words; as
/// it is without a width.
///
/// ```ignore
/// assert_eq!(wrap("2 files: 2 copied", Some(12)), "2 files: 2\ncopied");
/// ```
pub fn wrap(text: &str, width: Option<usize>) -> String {
    let Some(width) = width.map(|w| w.saturating_sub(1).max(1)) else {
        return text.to_string();
    };
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split(' ') {
        let line = lines.last_mut().expect("a line");
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if len > 0 {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.join("\n")
}

/// The `--json` summary (schema [`JSON_SCHEMA`], in the README).
pub fn json_summary(outcome: &Outcome, seconds: f64, places: &Places) -> Value {
    let c = &outcome.counts;
    let failures: Vec<Value> = outcome
        .failures
        .iter()
        .chain(outcome.disk_full())
        .map(|f| json_failure(f, places))
        .collect();
    json!({
        "schema": JSON_SCHEMA,
        "names": names_done(outcome),
        "files": c.files,
        "bytes": c.bytes,
        "directories": c.dirs,
        "symlinks": c.symlinks,
        "hard_links": c.hard_links,
        "specials": c.specials,
        "skipped": c.skipped,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "failures": failures,
        "warnings": outcome.warnings,
        "disk_full": outcome.disk_full().is_some(),
        "interrupted": outcome.interrupted(),
    })
}

/// One failure in the JSON summary.
fn json_failure(failure: &Failure, places: &Places) -> Value {
    let mut out = Map::new();
    out.insert("op".into(), failure.op.name().into());
    out.insert("kind".into(), failure.kind().into());
    out.insert("errno".into(), failure.errno.into());
    put_path(&mut out, "path", &places.at_fault(failure));
    put_path(&mut out, "source", failure.path.path());
    out.insert("reason".into(), failure.reason.clone().into());
    out.insert("message".into(), places.message(failure).into());
    Value::Object(out)
}

/// Puts `path` under `key` as text; where it is not UTF-8, that text is lossy and its exact
/// bytes go under `KEY_bytes` too (an array of numbers).
fn put_path(out: &mut Map<String, Value>, key: &str, path: &Path) {
    out.insert(key.into(), path.to_string_lossy().into());
    if path.to_str().is_none() {
        let bytes: Vec<Value> = path
            .as_os_str()
            .as_bytes()
            .iter()
            .map(|&b| b.into())
            .collect();
        out.insert(format!("{key}_bytes"), bytes.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::failure::Op;
    use std::ffi::OsStr;

    #[test]
    fn a_destination_at_fault_is_named_by_the_users_path() {
        let places = Places::new([
            ("src".into(), "out/src".into()),
            ("src/deep".into(), "out/deep".into()),
            ("file".into(), "out/renamed".into()),
        ]);
        assert_eq!(places.dest_of(Path::new("src/a")), Some("out/src/a".into()));
        assert_eq!(
            places.dest_of(Path::new("src/deep/b")),
            Some("out/deep/b".into())
        );
        assert_eq!(
            places.dest_of(Path::new("file")),
            Some("out/renamed".into())
        );
        assert_eq!(places.dest_of(Path::new("srcx/a")), None);
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        let create = Failure::during(Path::new("src/a b"), Op::Create, &denied);
        assert_eq!(
            places.message(&create),
            "cannot create regular file 'out/src/a b': Permission denied"
        );
        let open = Failure::during(Path::new("src/a b"), Op::Open, &denied);
        assert_eq!(
            places.message(&open),
            "cannot open 'src/a b' for reading: Permission denied"
        );
    }

    #[test]
    fn a_summary_fits_the_terminal() {
        assert_eq!(wrap("2 files: 2 copied", Some(12)), "2 files: 2\ncopied");
        assert_eq!(wrap("2 files: 2 copied", None), "2 files: 2 copied");
    }

    #[test]
    fn json_keeps_paths_that_are_not_utf8() {
        let places = Places::default();
        let odd = Path::new(OsStr::from_bytes(b"caf\xe9"));
        let missing = std::io::Error::from_raw_os_error(libc::ENOENT);
        let value = json_failure(&Failure::during(odd, Op::Stat, &missing), &places);
        assert_eq!(value["path_bytes"], json!([99, 97, 102, 0xe9]));
        assert_eq!(value["kind"], "not_found");
        assert_eq!(value["errno"], libc::ENOENT);
        assert_eq!(
            value["message"],
            "cannot stat 'caf'$'\\351': No such file or directory"
        );
        let plain = json_failure(
            &Failure::during(Path::new("a"), Op::Stat, &missing),
            &places,
        );
        assert!(plain.get("path_bytes").is_none());
    }
}
