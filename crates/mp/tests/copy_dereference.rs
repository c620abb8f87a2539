//! `-L`: links followed, and the names that reach one file made hard links of one copy as
//! `cp -aL` makes them (claims, the link pass between waves of merged sources and at the end;
//! `src/copy/dereference.rs`), never over another source's copy, with a copy of its own where
//! a link cannot be made.

// Shared with the other copy tests: not every helper is used here.
#[allow(dead_code)]
mod copy_common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use copy_common::*;

/// `-L` follows links: the copy holds regular files and directories where the source had
/// links, with the metadata of what they point to; and names that reach one file (the file
/// and links to it) are hard links of one another, as `cp -aL` makes them.
#[test]
fn dereference_copies_what_links_point_to() {
    let s = Scratch::new("deref");
    let src = s.path("src");
    small_tree(&src.join("dir"));
    write(&src.join("file"), b"target\n");
    std::os::unix::fs::symlink("file", src.join("link")).unwrap();
    std::os::unix::fs::symlink("dir", src.join("dirlink")).unwrap();
    let dst = s.path("dst");
    mp(&[&"copy", &"-L", &src, &dst]).expect_clean_success();
    let link = fs::symlink_metadata(dst.join("link")).unwrap();
    assert!(link.file_type().is_file(), "{link:?}");
    assert_eq!(fs::read(dst.join("link")).unwrap(), b"target\n");
    assert!(fs::symlink_metadata(dst.join("dirlink")).unwrap().is_dir());
    let reference = s.path("reference");
    cp_a(&["-L"], &src, &reference);
    assert_same_tree(&reference, &dst);

    // A link given as the source is followed too.
    mp(&[&"copy", &"-L", &src.join("link"), &s.path("followed")]).expect_clean_success();
    assert!(fs::symlink_metadata(s.path("followed")).unwrap().is_file());
}

/// Under `-L`, one file reached by several names becomes one inode in the copy wherever the
/// names are: a file and a link to it in another directory, two links to a file outside the
/// tree, a link in a read-only directory, a large file (copied in spans). The directories
/// that gain those links keep their modes and times; the summary counts the links as hard
/// links; and a resume with `--resume` leaves the same tree.
#[test]
fn dereference_links_names_of_one_file() {
    let s = Scratch::new("deref-links");
    let src = s.path("src");
    let outside = s.path("outside");
    write(&outside, b"outside\n");
    fs::create_dir_all(src.join("a")).unwrap();
    fs::create_dir_all(src.join("b")).unwrap();
    fs::create_dir_all(src.join("ro")).unwrap();
    write(&src.join("a/file"), &pattern(1, 3000));
    std::os::unix::fs::symlink("../a/file", src.join("b/to-file")).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("a/out1")).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("b/out2")).unwrap();
    std::os::unix::fs::symlink("../a/file", src.join("ro/to-file")).unwrap();
    // Sparse: large enough to be copied in spans, little to write.
    write_sparse(
        &src.join("a/large"),
        300 << 20,
        &[(1 << 20, pattern(2, 4096))],
    );
    std::os::unix::fs::symlink("../a/large", src.join("b/to-large")).unwrap();
    chmod(&src.join("ro"), 0o555);
    for dir in ["a", "b", "ro", ""] {
        set_times(&src.join(dir), (1_000_000_000, 5), (1_100_000_000, 7));
    }
    let reference = s.path("reference");
    cp_a(&["-L"], &src, &reference);
    let dst = s.path("dst");
    let out = mp(&[&"copy", &"-L", &"-j", &"3", &"--json", &src, &dst]);
    out.expect_clean_success();
    assert_same_tree(&reference, &dst);
    let ino = |p: &str| fs::metadata(dst.join(p)).unwrap().ino();
    assert_eq!(ino("a/file"), ino("b/to-file"));
    assert_eq!(ino("a/file"), ino("ro/to-file"));
    assert_eq!(ino("a/out1"), ino("b/out2"));
    assert_eq!(ino("a/large"), ino("b/to-large"));
    let summary = out.json();
    assert_eq!(summary["files"], 3, "{summary}");
    assert_eq!(summary["hard_links"], 4, "{summary}");

    let again = mp(&[&"copy", &"-L", &"-T", &"--resume", &"--json", &src, &dst]);
    again.expect_clean_success();
    assert_same_tree(&reference, &dst);
    assert_eq!(again.json()["files"], 0, "{}", again.json());
}

/// Under `-L`, top-level names that reach one file are linked too; and a name that two
/// sources were copied to is never linked over: `d3/g` leads to `d1/f`, but `dst/f` ends up
/// a copy of `d2/f` (copied to the same name), so `dst/g` keeps `d1/f`'s bytes.
#[test]
fn dereference_links_top_level_names_but_never_another_file() {
    let s = Scratch::new("deref-top");
    let src = s.path("src");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("f"), b"top\n");
    std::os::unix::fs::symlink("f", src.join("l")).unwrap();
    let dst = s.path("dst");
    fs::create_dir(&dst).unwrap();
    mp(&[&"copy", &"-L", &src.join("f"), &src.join("l"), &dst]).expect_clean_success();
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(ino(&dst.join("f")), ino(&dst.join("l")));

    for d in ["d1", "d2", "d3"] {
        fs::create_dir_all(s.path(d)).unwrap();
    }
    write(&s.path("d1/f"), b"one\n");
    write(&s.path("d2/f"), &pattern(3, 1 << 20));
    std::os::unix::fs::symlink("../d1/f", s.path("d3/g")).unwrap();
    let merged = s.path("merged");
    fs::create_dir(&merged).unwrap();
    let out = mp(&[
        &"copy",
        &"-L",
        &s.path("d3/g"),
        &s.path("d2/f"),
        &s.path("d1/f"),
        &merged,
    ]);
    eprintln!("{out}");
    assert_eq!(fs::read(merged.join("g")).unwrap(), b"one\n");
    let (g, f) = (merged.join("g"), merged.join("f"));
    if ino(&g) == ino(&f) {
        assert_eq!(fs::read(&f).unwrap(), b"one\n");
    }
}

/// A resume under `-L` over a copy whose names of one file are separate files (here made by
/// `cp -aL --no-preserve=links`) links them: the copies are up to date, so nothing is copied
/// again, and the summary counts the link instead of a skipped file.
#[test]
fn dereference_resume_links_up_to_date_copies() {
    let s = Scratch::new("deref-resume");
    let src = s.path("src");
    fs::create_dir_all(src.join("a")).unwrap();
    fs::create_dir_all(src.join("b")).unwrap();
    write(&src.join("a/file"), b"shared\n");
    std::os::unix::fs::symlink("../a/file", src.join("b/to-file")).unwrap();
    let dst = s.path("dst");
    cp_a(&["-L", "--no-preserve=links"], &src, &dst);
    let ino = |p: &str| fs::metadata(dst.join(p)).unwrap().ino();
    assert_ne!(ino("a/file"), ino("b/to-file"));
    let out = mp(&[&"copy", &"-L", &"-T", &"--resume", &"--json", &src, &dst]);
    out.expect_clean_success();
    assert_eq!(ino("a/file"), ino("b/to-file"));
    let summary = out.json();
    assert_eq!(summary["files"], 0, "{summary}");
    assert_eq!(summary["skipped"], 1, "{summary}");
    assert_eq!(summary["hard_links"], 1, "{summary}");
    let reference = s.path("reference");
    cp_a(&["-L"], &src, &reference);
    assert_same_tree(&reference, &dst);
}

/// Under `-L`, a name is not copied when another name of the same file claimed it first; if
/// that name's copy then fails (here a directory is in its way), the name left copies the
/// file itself, with its metadata.
#[test]
fn dereference_copies_a_file_whose_claiming_name_failed() {
    let s = Scratch::new("deref-claim-failed");
    let src = s.path("src");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("a"), b"claimed\n");
    chmod(&src.join("a"), 0o640);
    set_times(&src.join("a"), (1_000_000_000, 5), (1_100_000_000, 7));
    std::os::unix::fs::symlink("a", src.join("b")).unwrap();
    let dst = s.path("dst");
    fs::create_dir_all(dst.join("a/in-the-way")).unwrap();
    // One worker runs the tasks in the order they are handed out, the last source first:
    // `a` claims the file, then fails.
    let out = mp(&[
        &"copy",
        &"-L",
        &"-j",
        &"1",
        &"--json",
        &src.join("b"),
        &src.join("a"),
        &dst,
    ]);
    out.expect_code(1);
    let b = fs::symlink_metadata(dst.join("b")).unwrap();
    assert!(b.is_file());
    assert_eq!(fs::read(dst.join("b")).unwrap(), b"claimed\n");
    assert_eq!(b.mode() & 0o7777, 0o640);
    assert_eq!((b.mtime(), b.mtime_nsec()), (1_100_000_000, 7));
    assert!(dst.join("a/in-the-way").is_dir());
    let summary = out.json();
    assert_eq!(summary["files"], 1, "{summary}");
    assert_eq!(summary["hard_links"], 0, "{summary}");
    let failures = summary["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{summary}");
    assert_eq!(
        failures[0]["reason"],
        format!(
            "cannot overwrite directory '{}' with non-directory",
            dst.join("a").display()
        ),
        "the name that claimed the file failed first: {summary}"
    );
}

/// Under `-L`, a name that two sources were copied to is never made a link of another name:
/// `a/d` and `b/d` are merged into `m/d`, `b/d/fN` (copied last) replaces `a/d/fN`'s copy,
/// and `a/d/gN`, which leads to `a/d/fN`, keeps `a/d/fN`'s bytes, whichever of `fN` and `gN`
/// claimed the file first (the listing's order: eight pairs try both).
#[test]
fn dereference_never_links_over_another_source() {
    let s = Scratch::new("deref-two-sources");
    for d in ["a/d", "b/d", "m"] {
        fs::create_dir_all(s.path(d)).unwrap();
    }
    for i in 0..8 {
        write(&s.path(format!("a/d/f{i}")), b"one\n");
        std::os::unix::fs::symlink(format!("f{i}"), s.path(format!("a/d/g{i}"))).unwrap();
        write(&s.path(format!("b/d/f{i}")), b"two\n");
    }
    let (a, b, m) = (s.path("a/d"), s.path("b/d"), s.path("m"));
    mp(&[&"copy", &"-L", &"-j", &"1", &a, &b, &m]).expect_clean_success();
    for i in 0..8 {
        assert_eq!(fs::read(m.join(format!("d/f{i}"))).unwrap(), b"two\n");
        assert_eq!(fs::read(m.join(format!("d/g{i}"))).unwrap(), b"one\n");
    }
}

/// Under `-L`, directories of one name are merged as with `cp -aL`: the names of one file
/// copied by the first are linked before the next is merged, so `x` (from `a/d`, leading to
/// `F`) is linked to `w`, then `b/d`'s `x` (leading to `H`) takes its place as a link of `v`;
/// and `c/d`'s directory `w` cannot replace the file `w`.
#[test]
fn dereference_merges_sources_of_one_name_as_cp_does() {
    let s = Scratch::new("deref-merge");
    for d in ["p/d", "a/d", "b/d", "c/d/w", "out", "reference"] {
        fs::create_dir_all(s.path(d)).unwrap();
    }
    write(&s.path("F"), b"F\n");
    write(&s.path("H"), b"HH\n");
    write(&s.path("c/d/w/y"), b"y\n");
    for (link, to) in [
        ("p/d/w", "F"),
        ("p/d/v", "H"),
        ("a/d/x", "F"),
        ("b/d/x", "H"),
    ] {
        std::os::unix::fs::symlink(format!("../../{to}"), s.path(link)).unwrap();
    }
    let sources = ["p/d", "a/d", "b/d", "c/d"].map(|d| s.path(d));
    let args_for = |dest: &Path| {
        let mut args: Vec<OsString> = vec!["copy".into(), "-L".into()];
        args.extend(sources.iter().map(|p| p.clone().into_os_string()));
        args.push(dest.as_os_str().to_owned());
        args
    };
    let reference = s.path("reference");
    let status = Command::new("cp")
        .arg("-a")
        .args(&args_for(&reference)[1..])
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "cp -aL refuses the directory over w"
    );
    let args = args_for(&s.path("out"));
    let args: Vec<&dyn AsRef<OsStr>> = args.iter().map(|a| a as &dyn AsRef<OsStr>).collect();
    let out = mp(&args);
    out.expect_code(1);
    assert!(
        out.stderr.contains("cannot overwrite non-directory"),
        "{out}"
    );
    assert_same_tree(&reference.join("d"), &s.path("out/d"));
    let ino = |p: &str| fs::metadata(s.path(p)).unwrap().ino();
    assert_eq!(ino("out/d/x"), ino("out/d/v"));

    // Names of one file whose kept name a later source replaces: the names after it join a
    // name that still holds the copy (here `l0`), rather than making a copy of their own.
    for d in ["e/d", "f/d", "g/d", "efg"] {
        fs::create_dir_all(s.path(d)).unwrap();
    }
    for link in ["e/d/l1", "e/d/l0", "f/d/l4", "g/d/l3"] {
        std::os::unix::fs::symlink("../../F", s.path(link)).unwrap();
    }
    write(&s.path("f/d/l1"), b"R\n");
    let sources = ["e/d", "f/d", "g/d"].map(|d| s.path(d));
    let efg = s.path("efg");
    let (e, f, g) = (&sources[0], &sources[1], &sources[2]);
    mp(&[&"copy", &"-L", &"-j", &"1", e, f, g, &efg]).expect_clean_success();
    assert_eq!(fs::read(efg.join("d/l1")).unwrap(), b"R\n");
    for name in ["d/l0", "d/l3", "d/l4"] {
        assert_eq!(fs::read(efg.join(name)).unwrap(), b"F\n", "{name}");
    }
    let ino = |p: &str| fs::metadata(efg.join(p)).unwrap().ino();
    assert_eq!((ino("d/l3"), ino("d/l4")), (ino("d/l0"), ino("d/l0")));
}

/// Under `-L`, a name that cannot be a link of the file's copy (here it is on another file
/// system, a tmpfs: needs root) gets a copy of its own, as a hard-link group's does.
#[test]
fn dereference_copies_where_a_link_cannot_be_made() {
    let s = Scratch::new("deref-exdev");
    let src = s.path("src");
    fs::create_dir_all(src.join("a")).unwrap();
    fs::create_dir_all(src.join("b")).unwrap();
    write(&src.join("a/f"), b"hello\n");
    std::os::unix::fs::symlink("../a/f", src.join("b/l")).unwrap();
    let dst = s.path("dst");
    fs::create_dir_all(dst.join("a")).unwrap();
    fs::create_dir_all(dst.join("b")).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&dst.join("b"), "2m") else {
        return;
    };
    let out = mp(&[&"copy", &"-L", &"-T", &"--json", &src, &dst]);
    out.expect_clean_success();
    assert_eq!(fs::read(dst.join("a/f")).unwrap(), b"hello\n");
    assert_eq!(fs::read(dst.join("b/l")).unwrap(), b"hello\n");
    assert_eq!(out.json()["files"], 2, "{}", out.json());
}

/// `-L` on a dangling link, as `cp -aL`: "cannot stat 'src/dangling': No such file or
/// directory", exit 1, nothing made for it (the rest copied); given as the SOURCE, nothing
/// made at all.
#[test]
fn a_dangling_link_cannot_be_followed_as_with_cp() {
    let s = Scratch::new("deref-dangling");
    let setup = "mkdir -p src/sub; echo a > src/a; ln -s nowhere src/dangling
        ln -s ../nowhere src/sub/dangling_too; ln -s nowhere top";
    for (name, args) in [
        ("tree", ["-L", "src", "dst"]),
        ("top", ["-L", "top", "dst"]),
    ] {
        let runs = side_by_side(&s.path(name), setup, &args, &args);
        runs.assert_same_outcome(&[""]);
        runs.mp.expect_code(1);
        let dangling = runs.mp_world.join("dst/dangling");
        assert!(fs::symlink_metadata(dangling).is_err(), "{name}");
    }
}
