//! `--dry-run`: what a copy would copy, printed as `-v` prints it (`'src/a' -> 'dst/a'`, a
//! directory before what it holds), and nothing written. What `--update` or `--resume` would
//! keep is left out, judged as the copy judges it; the refusals the copy would make before
//! starting are printed as failures (exit status 1).

use std::io::Write;
use std::path::Path;

use rustix::fs as rfs;

use super::cli::Status;
use super::config::Config;
use super::failure::{Failure, Op};
use super::ids::FileId;
use super::meta::{Kind, Meta};
use super::plan::Plan;
use super::replace::judge_paths;
use super::report::{verbose_line, Places};

/// Prints what the copies of `plan` would copy, on stdout; writes nothing.
pub fn run(plan: &Plan, places: &Places, config: &Config) -> Status {
    let mut failures = Vec::new();
    failures.extend(plan.refused.iter().cloned());
    let mut out = std::io::stdout().lock();
    for copy in &plan.copies {
        let mut walk = Walk {
            config,
            out: &mut out,
            failures: &mut failures,
            above: Vec::new(),
        };
        walk.entry(&copy.src, &copy.dst, copy.meta);
    }
    drop(out);
    for failure in &failures {
        eprintln!("mp: {}", places.message(failure));
    }
    match failures.is_empty() {
        true => Status::Success,
        false => Status::Failed,
    }
}

/// A walk of one top-level copy.
struct Walk<'a, W: Write> {
    config: &'a Config,
    out: &'a mut W,
    failures: &'a mut Vec<Failure>,
    /// The directories above the entry walked: a link loop under `-L` is not followed.
    above: Vec<FileId>,
}

impl<W: Write> Walk<'_, W> {
    /// Prints `src`'s line (unless what is at `dst` is kept) and, for a directory, its
    /// entries'.
    fn entry(&mut self, src: &Path, dst: &Path, meta: Meta) {
        if meta.kind != Kind::Dir {
            match judge_paths(src, dst, &meta, self.config) {
                Ok(Some((_, verdict))) if verdict.keeps() => return,
                Ok(_) => {}
                Err(e) => return self.failures.push(Failure::io(src, &e)),
            }
        } else if self.above.contains(&meta.id()) {
            let why = "a symbolic link loop: not followed again";
            return self.failures.push(Failure::new(src, why));
        }
        // A closed stdout ends the listing, not in a failure.
        if writeln!(self.out, "{}", verbose_line(src, dst)).is_err() || meta.kind != Kind::Dir {
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
            match stat {
                Ok(st) => self.entry(&path, &dst.join(&name), Meta::from_stat(&st)),
                Err(e) => self
                    .failures
                    .push(Failure::during(&path, Op::Stat, &e.into())),
            }
        }
        self.above.pop();
    }
}
