//! How a tree is cut into tasks, seen from outside: a new directory appears only once
//! complete (hidden directories), small leaves and small trees copied by their parent's task,
//! leaves past its room copied in bundles, and a low descriptor limit (listings that open
//! fewer files ahead of their copy).

// Shared with the other copy tests: not every helper is used here.
#[allow(dead_code)]
mod copy_common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use copy_common::*;

/// Copies `leaf` into the existing `dst` with `-j 2`, checking all through the copy that
/// whenever the copy of `leaf` exists under its name, it is complete as `expect` says: for
/// each directory there (a path relative to it; "" for itself), so many files of `size`
/// bytes. Says so when the copy was too quick to be seen under its hidden name.
fn watch_directory_appear(leaf: &Path, dst: &Path, expect: &[(&str, usize)], size: u64) {
    let copy = dst.join(leaf.file_name().unwrap());
    let mut child = Running::start(mp_command(&[&"copy", &"-j", &"2", &leaf, &dst]));
    let (mut seen_hidden, mut seen_final) = (false, false);
    let finished = poll_until(DEADLINE, || {
        let done = child.has_exited();
        seen_hidden |= fs::read_dir(dst)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().as_bytes().starts_with(TEMP_PREFIX));
        if copy.exists() {
            seen_final = true;
            for &(dir, files) in expect {
                let sizes = file_sizes(&copy.join(dir))
                    .unwrap_or_else(|e| panic!("{dir:?} is missing from the copy: {e}"));
                assert_eq!(sizes.len(), files, "{dir:?} shows before it is complete");
                assert!(
                    sizes.iter().all(|&n| n == size),
                    "a partial file in {dir:?}: {sizes:?}"
                );
            }
        }
        done
    });
    assert!(finished, "the copy did not end in time");
    child.wait(DEADLINE).expect_clean_success();
    assert!(seen_final);
    assert_no_temp_files(dst);
    assert_same_tree(leaf, &copy);
    if !seen_hidden {
        eprintln!("the copy was too quick to be seen under its hidden name");
    }
}

/// The sizes of the regular files in `dir`. (A hidden subdirectory may be renamed between
/// listing and looking: what cannot be looked at is left out.)
fn file_sizes(dir: &Path) -> std::io::Result<Vec<u64>> {
    Ok(fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .collect())
}

/// A new directory without subdirectories is written under a hidden name and renamed once
/// complete: watched all through the copy, its final name never shows a missing or partial
/// file (40 files of 2 MiB: several batches, renamed by the coordinator).
#[test]
fn a_new_directory_appears_only_when_complete() {
    let s = Scratch::new("hidden");
    let src = s.path("src");
    build_bulk_tree(&src, 1, 40, 2 * MIB);
    fs::create_dir(s.path("dst")).unwrap();
    watch_directory_appear(
        &src.join("d00"),
        &s.path("dst"),
        &[("", 40)],
        2 * MIB as u64,
    );
}

/// The same for a directory with one batch of files of its own (900 of 8 KiB) and
/// subdirectories: it takes its name once its own files and its small leaves (here `d01`,
/// 5 files) are written, before the walk goes on below the others (`d00`, which has a
/// subdirectory).
#[test]
fn a_new_parent_directory_appears_with_its_files() {
    let s = Scratch::new("hidden-parent");
    let src = s.path("src");
    build_bulk_tree(&src, 1, 900, 8 << 10);
    build_bulk_tree(&src.join("d00"), 2, 5, 8 << 10);
    build_bulk_tree(&src.join("d00/d00"), 1, 3, 8 << 10);
    fs::create_dir(s.path("dst")).unwrap();
    let expect = [("", 900), ("d01", 5)];
    watch_directory_appear(&src.join("d00"), &s.path("dst"), &expect, 8 << 10);
}

/// A new directory without files of its own but with small leaves is hidden too, and
/// appears with the leaves complete.
#[test]
fn a_new_directory_of_leaves_appears_with_them() {
    let s = Scratch::new("hidden-leaves");
    let src = s.path("src");
    build_bulk_tree(&src.join("d00"), 3, 100, 8 << 10);
    fs::create_dir(s.path("dst")).unwrap();
    let expect = [("", 0), ("d00", 100), ("d01", 100), ("d02", 100)];
    watch_directory_appear(&src.join("d00"), &s.path("dst"), &expect, 8 << 10);
}

/// A parent's task copies its subdirectories that are small leaves itself (one batch at
/// most: 1000 entries, 8 MiB; no hard links), and hands the others back (a leaf of more
/// than 1000 names after counting them, before any is statted). Leaves at each edge and
/// just past it are copied whole, links kept.
#[test]
fn leaves_of_every_size_are_copied_whole() {
    let s = Scratch::new("leaves");
    let src = s.path("src");
    // Each leaf under a parent of its own, so that each is the first its parent tries.
    build_bulk_tree(&src.join("at_limit"), 1, 1000, 16);
    build_bulk_tree(&src.join("over_limit"), 1, 1001, 16);
    build_bulk_tree(&src.join("heavy"), 1, 2, 4 * MIB + 1);
    build_bulk_tree(&src.join("one_large"), 1, 1, 9 * MIB);
    build_bulk_tree(&src.join("linked"), 1, 3, 100);
    let linked = src.join("linked/d00");
    fs::hard_link(linked.join("f000"), linked.join("hard")).unwrap();
    std::os::unix::fs::symlink("f001", linked.join("soft")).unwrap();
    mp(&[&"copy", &"-j", &"2", &src, &s.path("dst")]).expect_clean_success();
    assert_same_tree(&src, &s.path("dst"));
    assert_hard_link_kept(&s.path("dst/linked/d00"));
}

/// Checks that `f000` and `hard` in the copied directory `dir` are one file, as in the source.
fn assert_hard_link_kept(dir: &Path) {
    assert_eq!(
        fs::metadata(dir.join("f000")).unwrap().ino(),
        fs::metadata(dir.join("hard")).unwrap().ino(),
        "the hard link is kept"
    );
}

/// Leaves beyond what a parent's task has room for (here 120 leaves of 20 files: 2400
/// files, more than one batch) go out in bundles, each tried by one task: all are copied
/// whole, with their metadata.
#[test]
fn many_small_leaves_are_copied_in_bundles() {
    let s = Scratch::new("bundles");
    let src = s.path("src");
    build_bulk_tree(&src, 120, 20, 100);
    chmod(&src.join("d07"), 0o555);
    mp(&[&"copy", &"-j", &"2", &src, &s.path("dst")]).expect_clean_success();
    assert_same_tree(&src, &s.path("dst"));
}

/// Eight directories at once, each with a file and a small tree below it (`tree`: nested
/// directories with files, in all less than one batch): enough work at once for every
/// worker, so that each directory's task copies its tree itself.
fn build_directories_with_trees(src: &Path) {
    for i in 0..8 {
        let p = src.join(format!("p{i}"));
        build_bulk_tree(&p.join("tree"), 2, 5, 100);
        build_bulk_tree(&p.join("tree/d00/deeper"), 2, 3, 100);
        fs::write(p.join("file"), b"x").unwrap();
    }
}

/// A task copies the small trees below its directory itself while the other workers have
/// work enough (one batch of entries in all, at most 64 directories, no hard links, nothing
/// large); it hands back trees past any of those limits. All are copied whole, with their
/// metadata: read-only directories, links, names that are not UTF-8, deep nesting.
#[test]
fn small_trees_are_copied_whole() {
    let s = Scratch::new("trees");
    let src = s.path("src");
    build_directories_with_trees(&src);
    // Past the limits: over 1000 entries; over 64 directories; a hard link; over 8 MiB.
    build_bulk_tree(&src.join("p1/tree/d01/many"), 2, 500, 16);
    build_bulk_tree(&src.join("p2/tree/d01/dirs"), 62, 0, 16);
    fs::hard_link(src.join("p3/tree/d00/f000"), src.join("p3/tree/d00/hard")).unwrap();
    build_bulk_tree(&src.join("p4/tree/d01/big"), 1, 2, 4 * MIB + 1);
    // Within them: a link, an odd name, deep nesting, read-only directories.
    std::os::unix::fs::symlink("../d01/f000", src.join("p5/tree/d00/link")).unwrap();
    let odd = OsStr::from_bytes(b"odd-\xff-name");
    fs::write(src.join("p5/tree/d01").join(odd), b"odd").unwrap();
    build_bulk_tree(&src.join("p6/tree/d00/deeper/d00/a/b/c"), 1, 2, 100);
    chmod(&src.join("p7/tree/d00/deeper/d01"), 0o555);
    chmod(&src.join("p7/tree/d00"), 0o555);
    mp(&[&"copy", &"-j", &"2", &src, &s.path("dst")]).expect_clean_success();
    assert_same_tree(&src, &s.path("dst"));
    assert_no_temp_files(&s.path("dst"));
    assert_hard_link_kept(&s.path("dst/p3/tree/d00"));
}

/// Where a process may hold few descriptors (64), a copy still completes: a listing then
/// opens fewer of its files ahead of their copy. Trees and leaves of up to 120 files,
/// copied by the tasks of their parents, would hold more than that.
#[test]
fn a_low_descriptor_limit_still_copies_everything() {
    let s = Scratch::new("few-fds");
    let src = s.path("src");
    build_directories_with_trees(&src);
    build_bulk_tree(&src.join("p0/tree/d01/more"), 2, 50, 100);
    build_bulk_tree(&src.join("p1/leaves"), 4, 120, 100);
    let mut cmd = mp_command(&[&"copy", &"-j", &"2", &src, &s.path("dst")]);
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe, in the child.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    run(cmd).expect_clean_success();
    assert_same_tree(&src, &s.path("dst"));
}

/// A new directory whose task copies a small tree below it appears with the tree complete:
/// watched all through the copy, no directory shows under its final name before every file
/// below it is whole.
#[test]
fn a_new_directory_appears_with_its_small_tree() {
    let s = Scratch::new("trees-appear");
    let src = s.path("src");
    build_directories_with_trees(&src);
    let dst = s.path("dst");
    let mut child = Running::start(mp_command(&[&"copy", &"-j", &"2", &src, &dst]));
    let whole = |p: &Path| {
        let below = [("", 1), ("tree/d00", 5), ("tree/d01", 5)];
        let deeper = [("tree/d00/deeper/d00", 3), ("tree/d00/deeper/d01", 3)];
        below.iter().chain(&deeper).all(|&(dir, files)| {
            file_sizes(&p.join(dir)).is_ok_and(|sizes| {
                let full = if dir.is_empty() { 1 } else { 100 };
                sizes.len() == files && sizes.iter().all(|&n| n == full)
            })
        })
    };
    let mut seen = 0;
    let finished = poll_until(DEADLINE, || {
        let done = child.has_exited();
        for i in 0..8 {
            let p = dst.join(format!("p{i}"));
            if p.exists() {
                assert!(
                    whole(&p),
                    "{} shows before its tree is complete",
                    p.display()
                );
                seen += 1;
            }
        }
        done
    });
    assert!(finished, "the copy did not end in time");
    child.wait(DEADLINE).expect_clean_success();
    assert!(seen > 0);
    assert_same_tree(&src, &dst);
    assert_no_temp_files(&dst);
}
