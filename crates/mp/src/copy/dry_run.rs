//! `--dry-run`: what a copy would copy, printed as `-v` prints it (`'src/a' -> 'dst/a'`, a
//! directory before what it holds), and nothing written. Left out, as the copy leaves them:
//! what `--update`, `--resume` or `-n` would keep (judged as the copy judges it), what
//! `--exclude` excludes, and under `-x` what is inside a directory on another file system.
//! The refusals the copy would make are printed as failures (exit 1), judged as the copy
//! judges them (`replace.rs`): what is at each destination, a directory's too.

use std::io::Write;
use std::path::Path;

use rustix::fs as rfs;

use super::cli::Status;
use super::config::Config;
use super::exclude::Exclude;
use super::failure::{Failure, Op};
use super::ids::FileId;
use super::meta::{Kind, Meta};
use super::plan::Plan;
use super::replace::{judge_dir_at, judge_paths};
use super::report::{failures_line, verbose_line, Places};

/// Prints what the copies of `plan` would copy, on stdout; writes nothing.
pub fn run(plan: &Plan, places: &Places, config: &Config) -> Status {
    let mut failures = Vec::new();
    failures.extend(plan.refused.iter().cloned());
    // Refused before anything is printed by `cli.rs` when not valid.
    let exclude = Exclude::new(&config.exclude).unwrap_or_else(|_| Exclude::none());
    let mut out = std::io::stdout().lock();
    for copy in &plan.copies {
        let mut walk = Walk {
            config,
            exclude: &exclude,
            out: &mut out,
            failures: &mut failures,
            above: Vec::new(),
        };
        let top = Place {
            src: &copy.src,
            dst: &copy.dst,
            below: Path::new(""),
            parent_dev: None,
        };
        walk.entry(top, copy.meta);
    }
    drop(out);
    for failure in &failures {
        eprintln!("mp: {}", places.message(failure));
    }
    if failures.is_empty() {
        return Status::Success;
    }
    eprintln!("{}", failures_line(failures.len()));
    Status::Failed
}

/// A walk of one top-level copy.
struct Walk<'a, W: Write> {
    config: &'a Config,
    exclude: &'a Exclude,
    out: &'a mut W,
    failures: &'a mut Vec<Failure>,
    /// The directories above the entry walked: a link loop under `-L` is not followed.
    above: Vec<FileId>,
}

/// Where an entry is: its source and destination, its path below its SOURCE (for
/// `--exclude`), and its parent's device (for `-x`).
#[derive(Clone, Copy)]
struct Place<'p> {
    src: &'p Path,
    dst: &'p Path,
    below: &'p Path,
    parent_dev: Option<u64>,
}

impl<W: Write> Walk<'_, W> {
    /// Prints the line of the entry at `at` (unless what is at its destination is kept)
    /// and, for a directory, its entries'.
    fn entry(&mut self, at: Place<'_>, meta: Meta) {
        let Place { src, dst, .. } = at;
        if meta.kind != Kind::Dir {
            match judge_paths(src, dst, &meta, self.config) {
                Ok(Some((_, verdict))) if verdict.keeps() => return,
                Ok(_) => {}
                Err(e) => return self.failures.push(Failure::io(src, &e)),
            }
        } else if self.above.contains(&meta.id()) {
            let why = "a symbolic link loop: not followed again";
            return self.failures.push(Failure::new(src, why));
        } else {
            // As the copy makes it: merged into a real directory, refused over anything
            // else (and nothing inside it copied).
            let shown = || (src.to_path_buf(), dst.to_path_buf());
            if let Err(why) = judge_dir_at((rfs::CWD, dst), &meta, shown) {
                return self.failures.push(Failure::refused(src, why));
            }
        }
        // A closed stdout ends the listing, not in a failure.
        if writeln!(self.out, "{}", verbose_line(src, dst)).is_err() || meta.kind != Kind::Dir {
            return;
        }
        // `-x`: a directory on another file system is made, empty.
        if self.config.one_file_system && at.parent_dev.is_some_and(|dev| dev != meta.dev) {
            return;
        }
        let entries = match std::fs::read_dir(src) {
            Ok(entries) => entries,
            Err(e) => return self.failures.push(Failure::during(src, Op::OpenDir, &e)),
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        self.above.push(meta.id());
        for name in names {
            let path = src.join(&name);
            let stat = match self.config.dereference {
                true => rfs::stat(&path),
                false => rfs::lstat(&path),
            };
            let meta_below = match stat {
                Ok(st) => Meta::from_stat(&st),
                Err(e) => {
                    self.failures
                        .push(Failure::during(&path, Op::Stat, &e.into()));
                    continue;
                }
            };
            let below = at.below.join(&name);
            if self.exclude.excludes(&below, meta_below.kind == Kind::Dir) {
                continue;
            }
            let place = Place {
                src: &path,
                dst: &dst.join(&name),
                below: &below,
                parent_dev: Some(meta.dev),
            };
            self.entry(place, meta_below);
        }
        self.above.pop();
    }
}
