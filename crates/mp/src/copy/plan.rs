//! `cp -r`'s placement rules: which source goes where, and the arguments refused before any
//! copying starts.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs as rfs;

use super::ids::FileId;
use super::meta::{Failure, Kind, Meta};
use super::quote::quote;
use super::replace::{self, Same};

/// One top-level copy.
pub struct Copy {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub meta: Meta,
}

/// What to copy, and the sources refused (each reported, the others still copied).
pub struct Plan {
    /// In the order given. Two directories may go to one destination: the second is merged
    /// into the first's copy, after it (see `Coordinator::add`).
    pub copies: Vec<Copy>,
    pub refused: Vec<Failure>,
    /// A source given more than once (copied once).
    pub warnings: Vec<String>,
    /// DEST is the copy itself (not a directory the copies go into).
    pub dest_is_copy: bool,
    /// Sources skipped because their destination exists (`-n`).
    pub skipped: u64,
}

/// The options that change [`plan`]'s rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rules {
    /// `-L`: sources are followed.
    pub dereference: bool,
    /// `-T`: DEST is the copy itself.
    pub no_target_dir: bool,
    /// `-n`: what exists is never replaced.
    pub no_clobber: bool,
}

/// Applies the rules. An `Err` refuses the whole command (nothing is copied).
///
/// - DEST is an existing directory (or a link to one): each SOURCE goes into it, under its
///   own name.
/// - Otherwise there must be one SOURCE, and DEST becomes its copy; a directory cannot
///   replace a file.
/// - With `no_target_dir` (`-T`), DEST is always the copy: an existing directory is merged
///   into, which is how an interrupted `mp copy SRC NEW` resumes.
/// - A directory is never copied into itself, and a file never onto itself, nor a link
///   onto the file it points to (or a file onto a link to it).
/// - Two sources of one name go to one destination: two directories are merged; otherwise
///   the second is refused, as `cp` will not overwrite a file it has just created. A source
///   given twice is copied once.
///
/// With `no_clobber` (`-n`), as `cp -n`: a SOURCE that is not a directory and whose
/// destination exists (whatever is there, the source itself too), or that goes where an
/// earlier SOURCE goes, is skipped (counted in `skipped`), not refused.
pub fn plan(sources: &[PathBuf], dest: &Path, rules: Rules) -> Result<Plan, String> {
    let Rules {
        dereference,
        no_target_dir,
        no_clobber,
    } = rules;
    if no_target_dir && sources.len() > 1 {
        return Err(format!(
            "extra operand '{}': -T takes one SOURCE",
            sources[1].display()
        ));
    }
    let dest_meta = rfs::stat(dest).ok().map(|st| Meta::from_stat(&st));
    let into_dir = !no_target_dir && dest_meta.is_some_and(|m| m.kind == Kind::Dir);
    if sources.len() > 1 && !into_dir {
        return Err(format!("target '{}' is not a directory", dest.display()));
    }
    let mut plan = Plan {
        copies: Vec::new(),
        refused: Vec::new(),
        warnings: Vec::new(),
        dest_is_copy: !into_dir,
        skipped: 0,
    };
    // The sources planned for each destination so far.
    let mut planned: HashMap<PathBuf, Vec<(&PathBuf, Meta)>> = HashMap::new();
    for src in sources {
        let stat = if dereference {
            rfs::stat(src)
        } else {
            rfs::lstat(src)
        };
        let meta = match stat {
            Ok(st) => Meta::from_stat(&st),
            Err(e) => {
                plan.refused.push(Failure::cannot_stat(src, e.into()));
                continue;
            }
        };
        let dst = if into_dir && names_contents(src) {
            // `DIR/.`: `cp` copies to `DEST/.`, DEST itself (DIR's entries into it, DIR's
            // metadata onto it).
            directory_itself(dest)
        } else if into_dir {
            match name_of(src) {
                Some(name) => dest.join(name),
                None => {
                    plan.refused
                        .push(Failure::new(src, "cannot tell the name to copy it under"));
                    continue;
                }
            }
        } else {
            dest.to_path_buf()
        };
        if dest_meta.is_none() && ends_with_slash(dest) && meta.kind != Kind::Dir {
            let why = format!(
                "cannot create regular file {}: Not a directory",
                quote(dest)
            );
            plan.refused.push(Failure::refused(src, why));
            continue;
        }
        let skips_existing = no_clobber && meta.kind != Kind::Dir;
        if skips_existing && rfs::lstat(&dst).is_ok() && !planned.contains_key(&dst) {
            plan.skipped += 1;
            continue;
        }
        match check(src, &dst, &meta) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(why) => {
                plan.refused.push(Failure::refused(src, why));
                continue;
            }
        }
        let earlier = planned.entry(dst.clone()).or_default();
        match same_destination(earlier, src, &dst, &meta) {
            Ok(true) => earlier.push((src, meta)),
            Ok(false) => {
                let what = if meta.kind == Kind::Dir {
                    "directory"
                } else {
                    "file"
                };
                let src = quote(src);
                plan.warnings
                    .push(format!("source {what} {src} specified more than once"));
                continue;
            }
            Err(_) if skips_existing => {
                plan.skipped += 1;
                continue;
            }
            Err(why) => {
                plan.refused.push(Failure::refused(src, why));
                continue;
            }
        }
        plan.copies.push(Copy {
            src: src.clone(),
            dst,
            meta,
        });
    }
    Ok(plan)
}

/// Whether `src` (of metadata `meta`) may go to `dst`, where the sources `earlier` go, as
/// `cp` rules: `Ok(true)` when it may (nothing went there yet, or directories merged into
/// one); `Ok(false)` when it is one of them given again (the same directory, or the same
/// file by the same path), to be copied once; otherwise why not.
fn same_destination(
    earlier: &[(&PathBuf, Meta)],
    src: &Path,
    dst: &Path,
    meta: &Meta,
) -> Result<bool, String> {
    let again = |(path, m): &(&PathBuf, Meta)| {
        m.id() == meta.id() && (meta.kind == Kind::Dir || same_entry(path, src))
    };
    let (src, dst) = (quote(src), quote(dst));
    match earlier.first() {
        None => Ok(true),
        Some(_) if earlier.iter().any(again) => Ok(false),
        Some((_, first)) => match (first.kind == Kind::Dir, meta.kind == Kind::Dir) {
            (true, true) => Ok(true),
            (true, false) => Err(format!(
                "cannot overwrite directory {dst} with non-directory"
            )),
            (false, true) => Err(format!(
                "cannot overwrite non-directory {dst} with directory {src}"
            )),
            (false, false) => Err(format!("will not overwrite just-created {dst} with {src}")),
        },
    }
}

/// Whether two paths name one directory entry: one name in one directory (`x/f` and
/// `./x/f`), not two names of one file.
fn same_entry(a: &Path, b: &Path) -> bool {
    let dir = |p: &Path| {
        let st = rfs::stat(super::fsops::dir_above(p)).ok()?;
        Some((st.st_dev, st.st_ino))
    };
    a.file_name() == b.file_name() && dir(a).is_some() && dir(a) == dir(b)
}

/// Whether a path ends in `/` (it names a directory).
fn ends_with_slash(path: &Path) -> bool {
    path.as_os_str().as_bytes().ends_with(b"/")
}

/// Whether a source's last component is `.` (`x/.`, `.`, `x/./`): copied into a directory,
/// it goes to that directory itself (`DEST/.`), not to a new name inside it.
fn names_contents(src: &Path) -> bool {
    let bytes = src.as_os_str().as_bytes();
    let end = bytes.len() - bytes.iter().rev().take_while(|&&b| b == b'/').count();
    bytes[..end].rsplit(|&b| b == b'/').next() == Some(b".")
}

/// The directory `dest` is, as `DEST/.` names it: through a link to a directory, the
/// directory it leads to (the copy never replaces the link).
fn directory_itself(dest: &Path) -> PathBuf {
    let is_link = rfs::lstat(dest)
        .is_ok_and(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink);
    match is_link {
        true => std::fs::canonicalize(dest).unwrap_or_else(|_| dest.to_path_buf()),
        false => dest.to_path_buf(),
    }
}

/// The name a source is copied under inside a directory: its last component (`a/b/` gives
/// `b`).
fn name_of(src: &Path) -> Option<PathBuf> {
    match src.file_name() {
        Some(name) => Some(PathBuf::from(name)),
        None => std::fs::canonicalize(src)
            .ok()?
            .file_name()
            .map(|n: &OsStr| PathBuf::from(n)),
    }
}

/// Refuses a copy onto itself (or onto what a link of it leads to, or a link onto what it
/// points to, as `cp` refuses "the same file") or into itself, and a directory over a file.
/// `Ok(false)`: nothing to copy (two names of one hard-linked link, as `cp` leaves them).
fn check(src: &Path, dst: &Path, meta: &Meta) -> Result<bool, String> {
    if let Ok(st) = rfs::lstat(dst) {
        let followed = |p: &Path| rfs::stat(p).ok().map(|st| FileId::of_stat(&st));
        let old = Meta::from_stat(&st);
        match replace::same_file(meta, &old, || followed(src), || followed(dst)) {
            Same::Distinct => {}
            Same::LinkedLinks if !same_entry(src, dst) => return Ok(false),
            Same::LinkedLinks | Same::OneFile => return Err(replace::same_file_message(src, dst)),
        }
    }
    let existing = rfs::stat(dst).ok().map(|st| Meta::from_stat(&st));
    if let Some(old) = existing {
        if meta.kind == Kind::Dir && old.kind != Kind::Dir {
            return Err(format!(
                "cannot overwrite non-directory {} with directory {}",
                quote(dst),
                quote(src)
            ));
        }
    }
    if meta.kind == Kind::Dir {
        let inside = resolved(dst).zip(std::fs::canonicalize(src).ok());
        if let Some((dst_real, src_real)) = inside {
            if dst_real.starts_with(&src_real) {
                return Err(format!(
                    "cannot copy a directory, {}, into itself, {}",
                    quote(src),
                    quote(dst)
                ));
            }
        }
    }
    Ok(true)
}

/// Where `path` is, with its parent's symbolic links resolved (the path itself may not exist
/// yet).
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(real) = std::fs::canonicalize(path) {
        return Some(real);
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(parent).ok()?.join(path.file_name()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mp-plan-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src/sub")).unwrap();
        std::fs::write(dir.join("file"), b"x").unwrap();
        dir
    }

    #[test]
    fn placement_follows_cp() {
        let d = scratch("place");
        let src = d.join("src");
        // DEST missing: DEST becomes the copy.
        let p = plan(std::slice::from_ref(&src), &d.join("new"), Rules::default()).unwrap();
        assert_eq!(p.copies[0].dst, d.join("new"));
        // DEST a directory: the copy goes inside, under the source's name (slash or not).
        std::fs::create_dir(d.join("out")).unwrap();
        let p = plan(&[d.join("src/")], &d.join("out"), Rules::default()).unwrap();
        assert_eq!(p.copies[0].dst, d.join("out/src"));
        // `DIR/.` into a directory: the directory itself is the copy (`cp`'s `DEST/.`).
        for src in [d.join("src/."), d.join("src/./")] {
            let p = plan(&[src], &d.join("out"), Rules::default()).unwrap();
            assert_eq!(p.copies[0].dst, d.join("out"));
        }
        // -T: DEST is the copy even when it is a directory (a resumed copy merges into it).
        let t = Rules {
            no_target_dir: true,
            ..Rules::default()
        };
        let p = plan(std::slice::from_ref(&src), &d.join("out"), t).unwrap();
        assert_eq!(p.copies[0].dst, d.join("out"));
        assert!(plan(&[src.clone(), src.clone()], &d.join("out"), t).is_err());
        // Several sources need a directory.
        let err = plan(
            &[src.clone(), d.join("file")],
            &d.join("nope"),
            Rules::default(),
        )
        .err()
        .unwrap();
        assert!(err.contains("is not a directory"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn sources_of_one_name_merge_or_are_refused() {
        let d = scratch("same-name");
        std::fs::create_dir_all(d.join("other/src")).unwrap();
        std::fs::write(d.join("other/file"), b"y").unwrap();
        std::fs::create_dir(d.join("out")).unwrap();
        let (out, src, file) = (d.join("out"), d.join("src"), d.join("file"));
        // Two directories of one name: both copied, the second merged into the first.
        let p = plan(&[src.clone(), d.join("other/src")], &out, Rules::default()).unwrap();
        assert_eq!(p.copies.len(), 2);
        assert_eq!(p.copies[0].dst, p.copies[1].dst);
        // A second file of one name: refused; a source given twice: copied once.
        let sources = [
            file.clone(),
            d.join("other/file"),
            file.clone(),
            src.clone(),
            src,
        ];
        let p = plan(&sources, &out, Rules::default()).unwrap();
        assert_eq!(p.copies.len(), 2);
        assert!(p.refused[0]
            .reason
            .contains("will not overwrite just-created"));
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        // Given again after another of its name; a hard link of a file is another file.
        let other = d.join("other/src");
        let p = plan(
            &[d.join("src"), other.clone(), other],
            &out,
            Rules::default(),
        )
        .unwrap();
        assert_eq!((p.copies.len(), p.warnings.len()), (2, 1));
        std::fs::create_dir(d.join("linked")).unwrap();
        std::fs::hard_link(&file, d.join("linked/file")).unwrap();
        let p = plan(
            &[file.clone(), d.join("linked/file")],
            &out,
            Rules::default(),
        )
        .unwrap();
        assert_eq!((p.copies.len(), p.refused.len()), (1, 1));
        // One entry by two spellings is given twice.
        let again = d.join("other/../file");
        let p = plan(&[file, again], &out, Rules::default()).unwrap();
        assert_eq!((p.copies.len(), p.warnings.len()), (1, 1));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_self_copies() {
        let d = scratch("self");
        let src = d.join("src");
        let p = plan(
            std::slice::from_ref(&src),
            &src.join("sub"),
            Rules::default(),
        )
        .unwrap();
        assert!(p.copies.is_empty());
        assert!(p.refused[0].reason.contains("into itself"));
        let p = plan(&[d.join("file")], &d.join("file"), Rules::default()).unwrap();
        assert!(p.refused[0].reason.contains("the same file"));
        let p = plan(&[src], &d.join("file"), Rules::default()).unwrap();
        assert!(p.refused[0]
            .reason
            .contains("cannot overwrite non-directory"));
        // A missing source is refused alone.
        let p = plan(
            &[d.join("missing"), d.join("file")],
            &d.join("src"),
            Rules::default(),
        )
        .unwrap();
        assert_eq!((p.copies.len(), p.refused.len()), (1, 1));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
