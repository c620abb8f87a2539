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
        walk(
            &copy.src,
            &copy.dst,
            copy.meta,
            config,
            &mut out,
            &mut failures,
        );
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

/// Prints `src`'s line (unless what is at `dst` is kept) and, for a directory, its entries'.
fn walk(
    src: &Path,
    dst: &Path,
    meta: Meta,
    config: &Config,
    out: &mut impl Write,
    failures: &mut Vec<Failure>,
) {
    if meta.kind != Kind::Dir {
        match judge_paths(src, dst, &meta, config) {
            Ok(Some((_, verdict))) if verdict.keeps() => return,
            Ok(_) => {}
            Err(e) => return failures.push(Failure::during(src, Op::Other, &e)),
        }
    }
    // A closed stdout ends the listing, not in a failure.
    if writeln!(out, "{}", verbose_line(src, dst)).is_err() || meta.kind != Kind::Dir {
        return;
    }
    let entries = match std::fs::read_dir(src) {
        Ok(entries) => entries,
        Err(e) => return failures.push(Failure::during(src, Op::OpenDir, &e)),
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let path = src.join(&name);
        let stat = match config.dereference {
            true => rfs::stat(&path),
            false => rfs::lstat(&path),
        };
        match stat {
            Ok(st) => walk(
                &path,
                &dst.join(&name),
                Meta::from_stat(&st),
                config,
                out,
                failures,
            ),
            Err(e) => failures.push(Failure::during(&path, Op::Stat, &e.into())),
        }
    }
}
