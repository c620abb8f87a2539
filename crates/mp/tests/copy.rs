//! `mp copy`, run as a user runs it: fidelity against `cp -a`, `cp -r`'s placement rules,
//! `--resume`, `--verify`, the summaries, and the failure paths (unreadable files, a full
//! disk, Ctrl-C and a resumed copy, a worker killed). What a copy does with what it finds at
//! its destination (the source itself, `--update`) is in `copy_replace.rs`.

// Shared with the other copy tests: not every helper is used here.
#[allow(dead_code)]
mod copy_common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use copy_common::*;

// ---------------------------------------------------------------------------------------
// Trees
// ---------------------------------------------------------------------------------------

/// A small tree: `dir/a`, `dir/sub/b`, `dir/empty/`.
fn small_tree(dir: &Path) {
    write(&dir.join("a"), b"alpha\n");
    write(&dir.join("sub/b"), b"beta\n");
    fs::create_dir(dir.join("empty")).unwrap();
}

/// What the fidelity tree could hold on this machine.
struct Built {
    xattrs: bool,
}

/// Every kind of entry `cp -a` keeps: files of varied sizes and modes, nested, empty and
/// read-only directories, links of every kind, a hard-link group across directories,
/// sparse files (small ones copied by a worker, a large one in spans), names that are not
/// UTF-8, a FIFO, extended attributes, and (as root) other owners and a device.
fn build_fidelity_tree(src: &Path) -> Built {
    let dirs = [
        "",
        "nested/a/b/c",
        "empty",
        "nested/empty_too",
        "readonly/sub",
        "modes/setgid",
        "modes/sticky",
        "links",
        "hard",
        "sparse",
    ];
    for d in dirs {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    write(&src.join("zero"), b"");
    write(&src.join("one"), b"1");
    write(&src.join("nested/a/b/c/hundred_k"), &pattern(1, 100 * KIB));
    write(&src.join("nested/a/three_mib"), &pattern(2, 3 * MIB));
    write(&src.join("nested/a/b/small"), b"small\n");
    write(&src.join("readonly/inside"), b"in a read-only directory\n");
    write(&src.join("readonly/sub/deeper"), &pattern(3, 5000));

    for (name, mode) in [("m600", 0o600), ("m755", 0o755), ("m4755", 0o4755)] {
        write(&src.join("modes").join(name), name.as_bytes());
        chmod(&src.join("modes").join(name), mode);
    }
    write(&src.join("modes/m444"), b"read only\n");
    chmod(&src.join("modes/m444"), 0o444);
    chmod(&src.join("modes/setgid"), 0o2750);
    chmod(&src.join("modes/sticky"), 0o1777);

    std::os::unix::fs::symlink("../one", src.join("links/relative")).unwrap();
    std::os::unix::fs::symlink("no/such/target", src.join("links/dangling")).unwrap();
    std::os::unix::fs::symlink(src.join("zero"), src.join("links/absolute")).unwrap();

    write(&src.join("hard/first"), b"one inode, three names\n");
    fs::hard_link(src.join("hard/first"), src.join("nested/second")).unwrap();
    fs::hard_link(src.join("hard/first"), src.join("nested/a/b/third")).unwrap();

    // Below LARGE_FILE (copied whole by a worker): a trailing hole, then a leading one.
    write_sparse(
        &src.join("sparse/trailing_hole"),
        8 * MIB as u64,
        &[(MIB as u64, pattern(4, 4 * KIB))],
    );
    write_sparse(
        &src.join("sparse/leading_hole"),
        8 * MIB as u64,
        &[(8 * MIB as u64 - 4096, pattern(5, 4 * KIB))],
    );
    // 64 MiB: with several workers, copied in spans by the coordinator.
    write_sparse(
        &src.join("sparse/large"),
        64 * MIB as u64,
        &[
            (0, pattern(6, 4 * KIB)),
            (5 * MIB as u64, pattern(7, 64 * KIB)),
            (40 * MIB as u64, pattern(8, 4 * KIB)),
        ],
    );

    write(&src.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name\n");
    write(
        &src.join(OsStr::from_bytes(b"dir\xff")).join("inside"),
        b"in a directory whose name is not UTF-8\n",
    );
    mkfifo(&src.join("fifo"), 0o640);

    write(&src.join("xattr_file"), b"has an attribute\n");
    let xattrs = match set_xattr(&src.join("xattr_file"), "user.test", b"hello") {
        Ok(()) => {
            let all_bytes: Vec<u8> = (0..=255).collect();
            set_xattr(&src.join("nested"), "user.dir", &all_bytes).unwrap();
            // Larger than the first buffer the copier reads attributes into.
            set_xattr(&src.join("xattr_file"), "user.big", &pattern(7, 3000)).unwrap();
            true
        }
        Err(e) => {
            eprintln!("skipping extended attributes: this file system refuses them ({e})");
            false
        }
    };

    if is_root() {
        fs::create_dir(src.join("owned")).unwrap();
        write(&src.join("owned/file"), b"owned by someone else\n");
        chmod(&src.join("owned/file"), 0o640);
        std::os::unix::fs::symlink("file", src.join("owned/link")).unwrap();
        for p in ["owned/file", "owned/link", "owned"] {
            std::os::unix::fs::lchown(src.join(p), Some(1234), Some(1234)).unwrap();
        }
        chmod(&src.join("owned"), 0o750);
        if let Err(e) = mknod_char(&src.join("device"), 1, 3) {
            eprintln!("skipping the device node: mknod refused ({e})");
        }
    } else {
        eprintln!("not root: skipping files owned by another user and device nodes");
    }

    chmod(&src.join("readonly/sub"), 0o555);
    chmod(&src.join("readonly"), 0o555);
    Built { xattrs }
}

/// `dirs` directories of `files` files of `size` bytes each (each file different).
fn build_bulk_tree(src: &Path, dirs: usize, files: usize, size: usize) {
    let base = pattern(42, size);
    for d in 0..dirs {
        let dir = src.join(format!("d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            let mut contents = base.clone();
            contents[..16].copy_from_slice(format!("{d:08}{f:08}").as_bytes());
            fs::write(dir.join(format!("f{f:03}")), &contents).unwrap();
        }
    }
}

/// Whether reading the tree leaves access times alone here (`relatime` with times in the
/// future, or `noatime`): only then can copied access times be compared with those set.
fn atimes_survive_reads(src: &Path, times: &Stamps) -> bool {
    let tree = snapshot(src);
    for (rel, node) in &tree {
        if node.kind == Kind::File {
            let _ = fs::read(join(src, rel)).unwrap();
        }
    }
    let again = snapshot(src);
    again.iter().all(|(rel, node)| node.atime == times[rel].0)
}

/// Asserts that every entry of `dst` has the access and modification times set on its
/// source (access times only when `atimes`).
#[track_caller]
fn assert_times(dst: &Path, times: &Stamps, atimes: bool) {
    let tree = snapshot(dst);
    for (rel, (atime, mtime)) in times {
        let node = tree
            .get(rel)
            .unwrap_or_else(|| panic!("'{}' missing", rel.display()));
        assert_eq!(node.mtime, *mtime, "mtime of '{}'", rel.display());
        if atimes {
            assert_eq!(node.atime, *atime, "atime of '{}'", rel.display());
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. Fidelity
// ---------------------------------------------------------------------------------------

/// Copies the fidelity tree with `mp copy` (with `jobs` workers, or the default) and with
/// `cp -a`, and compares every entry; checks times against those set, the JSON counts, and
/// that no temporary file is left. With `other_fs`, both copies go to a tmpfs (no
/// `copy_file_range` across file systems: the read/write fallback).
fn fidelity(name: &str, jobs: Option<&str>, other_fs: bool) {
    let s = Scratch::new(name);
    let mut out_dir = s.root.clone();
    let _tmpfs = if other_fs {
        out_dir = s.path("mnt");
        let Some(tmpfs) = Tmpfs::mount(&out_dir, "256m") else {
            return;
        };
        Some(tmpfs)
    } else {
        None
    };
    let src = s.path("src");
    let built = build_fidelity_tree(&src);
    let times = stamp_times(&src);
    let atimes = atimes_survive_reads(&src, &times);
    if !atimes {
        eprintln!("reading files updates access times here: not comparing access times");
    }
    let expected = Counts::of(&src);
    let dst = out_dir.join("dst");
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"copy", &"--json"];
    if let Some(jobs) = &jobs {
        args.extend([&"-j" as &dyn AsRef<OsStr>, jobs]);
    }
    args.extend([&src as &dyn AsRef<OsStr>, &dst]);
    let out = mp(&args);
    out.expect_clean_success();
    let summary = out.json();
    assert_eq!(Counts::from_json(&summary), expected, "{summary}");
    assert_eq!(summary["skipped"], 0, "{summary}");
    assert_eq!(summary["failures"], serde_json::json!([]), "{summary}");

    // The copy's own times first: reading the reference copy cannot touch them.
    assert_times(&dst, &times, atimes);
    let reference = out_dir.join("reference");
    cp_a(&[], &src, &reference);
    assert_no_temp_files(&dst);
    assert_same_tree(&reference, &dst);
    assert_same_tree(&src, &dst);

    let large = fs::symlink_metadata(dst.join("sparse/large")).unwrap();
    assert!(
        large.blocks() * 512 < 2 * MIB as u64,
        "the 64 MiB sparse file takes {} blocks",
        large.blocks()
    );
    if built.xattrs {
        let attrs = xattrs(&dst.join("xattr_file"));
        assert_eq!(
            attrs.get(&b"user.test"[..]).map(Vec::as_slice),
            Some(&b"hello"[..])
        );
    }
    if is_root() {
        let owned = fs::symlink_metadata(dst.join("owned/file")).unwrap();
        assert_eq!((owned.uid(), owned.gid()), (1234, 1234));
    }
}

/// A copy with the default workers is `cp -a`'s: contents, kinds, modes (setuid, setgid,
/// sticky), owners, times of files, links and directories, link targets, hard-link groups,
/// holes, extended attributes, FIFOs, devices, names that are not UTF-8, read-only
/// directories; the JSON summary counts what was copied.
#[test]
fn copy_is_as_faithful_as_cp_a() {
    fidelity("fidelity", None, false);
}

/// The same with a single worker, where large files are copied whole by the worker rather
/// than in spans by the coordinator.
#[test]
fn copy_with_one_worker_is_as_faithful_as_cp_a() {
    fidelity("fidelity-j1", Some("1"), false);
}

/// The same onto another file system (a tmpfs; needs root), where the bytes go through the
/// read/write fallback and temporary files through O_TMPFILE on tmpfs.
#[test]
fn copy_to_another_file_system_is_as_faithful_as_cp_a() {
    fidelity("fidelity-tmpfs", None, true);
}

// ---------------------------------------------------------------------------------------
// 2. Placement
// ---------------------------------------------------------------------------------------

/// `mp copy DIR NEW`, NEW missing: NEW becomes the copy.
#[test]
fn a_missing_dest_becomes_the_copy() {
    let s = Scratch::new("place-new");
    small_tree(&s.path("dir"));
    mp(&[&"copy", &s.path("dir"), &s.path("new")]).expect_clean_success();
    assert_same_tree(&s.path("dir"), &s.path("new"));
}

/// `mp copy DIR EXISTING`: the copy goes inside, as EXISTING/DIR; what EXISTING held stays.
#[test]
fn an_existing_dest_directory_receives_the_source() {
    let s = Scratch::new("place-into");
    small_tree(&s.path("dir"));
    write(&s.path("existing/keep"), b"keep me\n");
    mp(&[&"copy", &s.path("dir"), &s.path("existing")]).expect_clean_success();
    assert_same_tree(&s.path("dir"), &s.path("existing/dir"));
    assert_eq!(fs::read(s.path("existing/keep")).unwrap(), b"keep me\n");
}

/// `mp copy A B EXISTING`: each source goes inside under its own name.
#[test]
fn several_sources_go_into_the_directory() {
    let s = Scratch::new("place-several");
    write(&s.path("a"), b"file a\n");
    small_tree(&s.path("b"));
    fs::create_dir(s.path("out")).unwrap();
    mp(&[&"copy", &s.path("a"), &s.path("b"), &s.path("out")]).expect_clean_success();
    assert_eq!(fs::read(s.path("out/a")).unwrap(), b"file a\n");
    assert_same_tree(&s.path("b"), &s.path("out/b"));
}

/// Sources of one name go to one destination as with `cp -a`: two directories are merged
/// (the second after the first, its files over the first's), a second file is refused (`cp`
/// will not overwrite a file it has just created), and a source given twice is copied once,
/// with a warning.
#[test]
fn sources_of_one_name_merge_as_with_cp() {
    let s = Scratch::new("place-same-name");
    for (side, seed) in [("a", 1), ("b", 2)] {
        build_bulk_tree(&s.path(format!("{side}/d/{side}-only")), 3, 20, KIB);
        build_bulk_tree(&s.path(format!("{side}/d/shared")), 2, 10, KIB);
        write(&s.path(format!("{side}/d/both")), &pattern(seed, 100));
        write(&s.path(format!("{side}/f")), &pattern(seed, 10));
    }
    write(&s.path("b/d/shared/d00/f000"), b"b wins\n");
    // A hard-link group of `a/d` whose other names are in `b/d`, where another file takes
    // the first name: the group stays whole, with `a/d/both`'s bytes.
    fs::hard_link(s.path("a/d/both"), s.path("b/d/z")).unwrap();
    fs::hard_link(s.path("a/d/both"), s.path("b/d/w")).unwrap();
    let (a, b) = (s.path("a/d"), s.path("b/d"));
    let reference = s.path("reference");
    fs::create_dir(&reference).unwrap();
    cp_a(&[], &a, &reference);
    cp_a(&[], &b, &reference);
    let dst = s.path("dst");
    fs::create_dir(&dst).unwrap();
    mp(&[&"copy", &"-j", &"3", &a, &b, &dst]).expect_clean_success();
    assert_same_tree(&reference.join("d"), &dst.join("d"));
    assert_eq!(
        fs::read(dst.join("d/shared/d00/f000")).unwrap(),
        b"b wins\n"
    );
    assert_eq!(fs::read(dst.join("d/z")).unwrap(), pattern(1, 100));
    assert_eq!(fs::read(dst.join("d/both")).unwrap(), pattern(2, 100));
    assert_no_temp_files(&dst);

    // The same group in directories of files only (copied by their listing's task).
    let layout: [&[(&str, &str)]; 2] = [&[("x", "h0")], &[("z", "h0"), ("w", "h0"), ("x", "u1")]];
    check_merged_layout(&s.path("files-only"), &layout, "1", 1);
    // A group whose first name a later source replaces, with another name of it copied
    // before: the group's later names join that one.
    let layout: [&[(&str, &str)]; 2] =
        [&[("f1", "h0"), ("f2", "h0")], &[("g", "h0"), ("f1", "u1")]];
    check_merged_layout(&s.path("first-replaced"), &layout, "1", 1);

    let (fa, fb) = (s.path("a/f"), s.path("b/f"));
    let files = s.path("files");
    fs::create_dir(&files).unwrap();
    let out = mp(&[&"copy", &fa, &fb, &fa, &files]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("will not overwrite just-created"),
        "{out}"
    );
    assert!(out.stderr.contains("specified more than once"), "{out}");
    assert_eq!(fs::read(files.join("f")).unwrap(), pattern(1, 10));
}

/// Merged sources whose hard-link groups cross them, and whose later source replaces names
/// that held a group's copy (a layout found by a fuzzer, where a member was once linked to a
/// replacing file's bytes): every name holds its last source's bytes, and the names of one
/// source file are one file. Repeated, since the fault depended on timing.
#[test]
fn merged_groups_keep_their_bytes_whatever_the_timing() {
    let s = Scratch::new("merge-groups");
    let layout: [&[(&str, &str)]; 2] = [
        &[
            ("f0", "h2"),
            ("f1", "h0"),
            ("n0/f0", "h2"),
            ("n0/f2", "h1"),
            ("n1/f0", "u3"),
            ("n1/f1", "h2"),
            ("n1/f2", "h2"),
            ("sub/f0", "h2"),
            ("sub/f1", "u1"),
            ("sub/f2", "u2"),
        ],
        &[
            ("f0", "u4"),
            ("f2", "h2"),
            ("n0/f0", "h2"),
            ("n0/f1", "h0"),
            ("n0/f2", "h1"),
            ("n1/f0", "h2"),
            ("n1/f2", "h2"),
            ("sub/f1", "u5"),
            ("sub/f2", "h0"),
        ],
    ];
    check_merged_layout(&s.path(""), &layout, "3", 8);
}

/// Builds the sources `x0/d`, `x1/d`... in `root` from `layout`, a list of names per source,
/// each `hN` (a hard link of a file `HN` shared by the sources) or `uN` (a file of its own,
/// `UN`); copies them merged with `-j jobs` into `root/outR`, `rounds` times; and checks that
/// every name holds its last source's bytes, and that the names whose last source is one
/// shared file are one file, and no others.
fn check_merged_layout(root: &Path, layout: &[&[(&str, &str)]], jobs: &str, rounds: usize) {
    let shared = ["H0", "H1", "H2"];
    fs::create_dir_all(root).unwrap();
    for (i, name) in shared.iter().enumerate() {
        write(&root.join(name), format!("{name}\n").as_bytes());
        let time = (1_000_000_000 + i as i64, 0);
        set_times(&root.join(name), time, time);
    }
    let mut last = std::collections::BTreeMap::new();
    for (i, names) in layout.iter().enumerate() {
        for &(name, kind) in names.iter() {
            let path = root.join(format!("x{i}/d/{name}"));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let n: usize = kind[1..].parse().unwrap();
            if kind.starts_with('h') {
                fs::hard_link(root.join(shared[n]), &path).unwrap();
            } else {
                write(&path, format!("U{n}\n").as_bytes());
                set_times(
                    &path,
                    (1_100_000_000 + n as i64, 0),
                    (1_100_000_000 + n as i64, 0),
                );
            }
            last.insert(name, kind);
        }
    }
    let sources: Vec<PathBuf> = (0..layout.len())
        .map(|i| root.join(format!("x{i}/d")))
        .collect();
    for round in 0..rounds {
        let out = root.join(format!("out{round}"));
        fs::create_dir(&out).unwrap();
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"copy", &"-j", &jobs];
        args.extend(sources.iter().map(|p| p as &dyn AsRef<OsStr>));
        args.push(&out);
        mp(&args).expect_clean_success();
        let ino = |name: &str| fs::metadata(out.join("d").join(name)).unwrap().ino();
        for (&name, &kind) in &last {
            let want = match kind.as_bytes()[0] {
                b'h' => format!("H{}\n", &kind[1..]),
                _ => format!("U{}\n", &kind[1..]),
            };
            let got = fs::read(out.join("d").join(name)).unwrap();
            assert_eq!(got, want.as_bytes(), "round {round}: {name}");
            for (&other, &other_kind) in &last {
                let one_file = kind == other_kind && kind.starts_with('h');
                if other != name {
                    assert_eq!(
                        ino(name) == ino(other),
                        one_file,
                        "round {round}: {name} {other}"
                    );
                }
            }
        }
    }
}

/// Several sources and a DEST that is not a directory: refused, nothing copied.
#[test]
fn several_sources_need_a_directory() {
    let s = Scratch::new("place-notdir");
    write(&s.path("a"), b"a");
    write(&s.path("b"), b"b");
    write(&s.path("file"), b"file");
    for dest in [s.path("file"), s.path("missing")] {
        let out = mp(&[&"copy", &s.path("a"), &s.path("b"), &dest]);
        out.expect_code(1);
        assert!(out.stderr.contains("not a directory"), "{out}");
    }
    assert_eq!(fs::read(s.path("file")).unwrap(), b"file");
    assert!(!s.path("missing").exists());
}

/// A single file to a new name, then over an existing (read-only, longer) file: the
/// contents, mode and times are the source's.
#[test]
fn a_file_is_copied_to_a_new_name_and_over_a_file() {
    let s = Scratch::new("place-file");
    let src = s.path("src.txt");
    write(&src, b"new contents\n");
    chmod(&src, 0o640);
    set_times(&src, (1_600_000_000, 1), (1_500_000_000, 2));
    mp(&[&"copy", &src, &s.path("renamed")]).expect_clean_success();
    assert_same_tree(&src, &s.path("renamed"));

    let old = s.path("old");
    write(&old, b"old contents that are longer than the new ones\n");
    chmod(&old, 0o444);
    mp(&[&"copy", &src, &old]).expect_clean_success();
    assert_eq!(fs::read(&old).unwrap(), b"new contents\n");
    assert_same_tree(&src, &old);
    assert_no_temp_files(&s.root);
}

/// `mp copy D D/sub`: refused ("into itself"), exit 1, nothing created.
#[test]
fn a_directory_is_not_copied_into_itself() {
    let s = Scratch::new("place-self");
    let d = s.path("d");
    small_tree(&d);
    let before = snapshot(&d);
    for dest in [d.join("sub"), d.join("sub/new"), d.clone()] {
        let out = mp(&[&"copy", &d, &dest]);
        out.expect_code(1);
        assert!(out.stderr.contains("into itself"), "{out}");
    }
    let after = snapshot(&d);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
}

/// A file onto itself is refused too, and leaves the file alone.
#[test]
fn a_file_is_not_copied_onto_itself() {
    let s = Scratch::new("place-same");
    let f = s.path("f");
    write(&f, b"same\n");
    let out = mp(&[&"copy", &f, &f]);
    out.expect_code(1);
    assert!(out.stderr.contains("the same file"), "{out}");
    assert_eq!(fs::read(&f).unwrap(), b"same\n");
}

/// A missing source among others: the others are copied, the failure is listed on stderr,
/// exit 1.
#[test]
fn a_missing_source_does_not_stop_the_others() {
    let s = Scratch::new("place-missing");
    write(&s.path("a"), b"a\n");
    small_tree(&s.path("b"));
    fs::create_dir(s.path("out")).unwrap();
    let missing = s.path("no-such-source");
    let out = mp(&[
        &"copy",
        &s.path("a"),
        &missing,
        &s.path("b"),
        &s.path("out"),
    ]);
    out.expect_code(1);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains(&*missing.to_string_lossy()) && l.contains("No such file")),
        "{out}"
    );
    assert_eq!(fs::read(s.path("out/a")).unwrap(), b"a\n");
    assert_same_tree(&s.path("b"), &s.path("out/b"));
}

/// `-T`: DEST is the copy even when it is an existing directory (merged into); with two
/// sources, refused.
#[test]
fn no_target_directory_merges_into_dest() {
    let s = Scratch::new("place-T");
    small_tree(&s.path("dir"));
    write(&s.path("existing/keep"), b"keep\n");
    mp(&[&"copy", &"-T", &s.path("dir"), &s.path("existing")]).expect_clean_success();
    assert!(!s.path("existing/dir").exists());
    assert_eq!(fs::read(s.path("existing/a")).unwrap(), b"alpha\n");
    assert_eq!(fs::read(s.path("existing/sub/b")).unwrap(), b"beta\n");
    assert_eq!(fs::read(s.path("existing/keep")).unwrap(), b"keep\n");

    let out = mp(&[
        &"copy",
        &"-T",
        &s.path("dir"),
        &s.path("existing/a"),
        &s.path("existing"),
    ]);
    out.expect_code(1);
    assert!(out.stderr.contains("-T takes one SOURCE"), "{out}");
}

/// Destinations given as `.`, as a path ending in `..`, or relative to the current
/// directory: each names the directory it resolves to, as for `cp`.
#[test]
fn destinations_without_a_final_name_are_resolved() {
    let s = Scratch::new("place-dot");
    small_tree(&s.path("dir"));
    fs::create_dir_all(s.path("here/sub")).unwrap();
    let mut cmd = mp_command(&[&"copy", &"-T", &s.path("dir"), &"."]);
    cmd.current_dir(s.path("here"));
    run(cmd).expect_clean_success();
    assert_eq!(fs::read(s.path("here/a")).unwrap(), b"alpha\n");
    assert_eq!(fs::read(s.path("here/sub/b")).unwrap(), b"beta\n");

    mp(&[&"copy", &s.path("dir"), &s.path("here/sub/..")]).expect_clean_success();
    assert_eq!(fs::read(s.path("here/dir/sub/b")).unwrap(), b"beta\n");

    let mut cmd = mp_command(&[&"copy", &s.path("dir"), &"copy"]);
    cmd.current_dir(s.path("here"));
    run(cmd).expect_clean_success();
    assert_same_tree(&s.path("dir"), &s.path("here/copy"));
}

/// `mp copy FILE MISSING/`: like `cp`, a trailing slash names a directory, so a file cannot
/// be copied there.
#[test]
fn a_file_is_not_copied_to_a_missing_directory_path() {
    let s = Scratch::new("place-slash");
    write(&s.path("f"), b"f\n");
    let mut dest = s.path("missing").into_os_string();
    dest.push("/");
    let out = mp(&[&"copy", &s.path("f"), &dest]);
    out.expect_code(1);
    assert!(out.stderr.contains("Not a directory"), "{out}");
    assert!(fs::symlink_metadata(s.path("missing")).is_err());
}

/// Copying into an existing destination never writes through a link found there: where the
/// destination holds a link to a directory elsewhere under a source directory's name, that
/// directory is left alone (`cp -a` refuses: "cannot overwrite non-directory").
#[test]
fn an_existing_link_in_dest_is_not_written_through() {
    let s = Scratch::new("through-link");
    let src = s.path("src");
    write(&src.join("x/file"), b"data\n");
    let elsewhere = s.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    chmod(&elsewhere, 0o700);
    set_times(&elsewhere, (1_000_000_000, 0), (1_000_000_000, 0));
    let before = snapshot(&elsewhere);
    let dst = s.path("dst");
    fs::create_dir(&dst).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dst.join("x")).unwrap();
    let out = mp(&[&"copy", &"-T", &src, &dst]);
    eprintln!("{out}");
    assert!(
        fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "the copy went through the link into {}",
        elsewhere.display()
    );
    let after = snapshot(&elsewhere);
    assert_eq!(before[Path::new("")].mode, after[Path::new("")].mode);
    assert_eq!(before[Path::new("")].mtime, after[Path::new("")].mtime);
}

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
        failures[0]["error"],
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

// ---------------------------------------------------------------------------------------
// 3-5. --resume, --update, --verify, summaries
// ---------------------------------------------------------------------------------------

/// Reading a source leaves its access time alone (`O_NOATIME`, allowed for the files' owner),
/// where a plain read would set it (`relatime` updates an access time older than a day); the
/// copy gets the source's times as they were.
#[test]
fn sources_keep_their_access_times() {
    let s = Scratch::new("noatime");
    let src = s.path("src");
    build_bulk_tree(&src, 1, 3, 4 * KIB);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let old: Time = (now - 3 * 86_400, 0);
    let probe = s.path("probe");
    fs::write(&probe, b"probe").unwrap();
    set_times(&probe, old, old);
    fs::read(&probe).unwrap();
    if fs::metadata(&probe).unwrap().atime() == old.0 {
        eprintln!("reads do not set access times here (noatime?): nothing to check");
        return;
    }
    let files: Vec<PathBuf> = (0..3).map(|f| src.join(format!("d00/f{f:03}"))).collect();
    for file in &files {
        set_times(file, old, old);
    }
    mp(&[&"copy", &src, &s.path("dst")]).expect_clean_success();
    for file in &files {
        assert_eq!(
            fs::metadata(file).unwrap().atime(),
            old.0,
            "{}",
            file.display()
        );
        let copy = s.path("dst").join(file.strip_prefix(&src).unwrap());
        assert_eq!(
            fs::metadata(&copy).unwrap().atime(),
            old.0,
            "{}",
            copy.display()
        );
    }
}

/// `--resume`: a second run copies nothing (every file skipped, a large one included); after
/// one source file changes (contents and mtime, same size), only it is copied again, even
/// though its new time is older than its copy's.
#[test]
fn resume_copies_only_what_changed() {
    let s = Scratch::new("resume");
    let src = s.path("src");
    build_bulk_tree(&src, 2, 5, 10 * KIB);
    write_sparse(
        &src.join("large"),
        64 * MIB as u64,
        &[(MIB as u64, pattern(9, 4 * KIB))],
    );
    // A hard-link group: linked once, then up to date.
    fs::hard_link(src.join("d00/f000"), src.join("d01/linked")).unwrap();
    let out_dir = s.path("out");
    fs::create_dir(&out_dir).unwrap();
    let run = || mp(&[&"copy", &"--resume", &"--json", &src, &out_dir]);

    let first = run();
    first.expect_clean_success();
    assert_eq!(first.json()["files"], 11, "{first}");
    assert_eq!(first.json()["hard_links"], 1, "{first}");

    let second = run();
    second.expect_clean_success();
    let summary = second.json();
    assert_eq!(
        (summary["files"].as_u64(), summary["skipped"].as_u64()),
        (Some(0), Some(12)),
        "{summary}"
    );
    assert_eq!(summary["hard_links"], 0, "{summary}");

    let changed = src.join("d01/f003");
    let mut contents = fs::read(&changed).unwrap();
    contents.reverse();
    fs::write(&changed, &contents).unwrap();
    set_times(&changed, (1_700_000_000, 0), (1_700_000_000, 5));
    let third = run();
    third.expect_clean_success();
    let summary = third.json();
    assert_eq!(
        (summary["files"].as_u64(), summary["skipped"].as_u64()),
        (Some(1), Some(11)),
        "{summary}"
    );
    assert_same_tree(&src, &out_dir.join("src"));
}

/// `--verify` re-reads and compares every file (small ones in the worker, a large one after
/// its spans): a normal copy passes.
#[test]
fn verify_passes_on_a_good_copy() {
    let s = Scratch::new("verify");
    let src = s.path("src");
    small_tree(&src);
    write(&src.join("mib"), &pattern(10, MIB + 17));
    fs::hard_link(src.join("mib"), src.join("sub/mib_again")).unwrap();
    write_sparse(
        &src.join("large"),
        64 * MIB as u64,
        &[(3 * MIB as u64, pattern(11, 8 * KIB))],
    );
    let dst = s.path("dst");
    let out = mp(&[&"copy", &"--verify", &"--json", &src, &dst]);
    out.expect_clean_success();
    assert_eq!(out.json()["failures"], serde_json::json!([]), "{out}");
    assert_same_tree(&src, &dst);
}

/// `--json` prints one JSON object with every key, failures as `{path, error}`.
#[test]
fn json_summary_has_every_key() {
    let s = Scratch::new("json");
    write(&s.path("file"), b"12345");
    small_tree(&s.path("dir"));
    fs::create_dir(s.path("out")).unwrap();
    let missing = s.path("missing");
    let out = mp(&[
        &"copy",
        &"--json",
        &s.path("file"),
        &missing,
        &s.path("dir"),
        &s.path("out"),
    ]);
    out.expect_code(1);
    let summary = out.json();
    for key in [
        "files",
        "bytes",
        "directories",
        "symlinks",
        "hard_links",
        "specials",
        "skipped",
    ] {
        assert!(summary[key].is_u64(), "{key}: {summary}");
    }
    assert!(
        summary["seconds"].as_f64().is_some_and(|s| s >= 0.0),
        "{summary}"
    );
    assert_eq!(summary["interrupted"], false, "{summary}");
    assert_eq!(summary["disk_full"], false, "{summary}");
    assert!(summary["warnings"].is_array(), "{summary}");
    assert_eq!(
        Counts::from_json(&summary),
        Counts {
            files: 3,
            bytes: 5 + 6 + 5,
            directories: 3,
            ..Counts::default()
        }
    );
    let failures = summary["failures"].as_array().expect("an array");
    assert_eq!(failures.len(), 1, "{summary}");
    assert_eq!(failures[0]["path"], *missing.to_string_lossy(), "{summary}");
    let error = failures[0]["error"].as_str().expect("a string");
    assert!(error.contains("No such file"), "{summary}");
}

/// Without `--json` and with stdout not a terminal, a successful copy prints nothing; so
/// does `--quiet`, which still prints errors.
#[test]
fn success_is_silent_off_a_terminal_and_quiet() {
    let s = Scratch::new("quiet");
    small_tree(&s.path("src"));
    let plain = mp(&[&"copy", &s.path("src"), &s.path("plain")]);
    plain.expect_clean_success();
    assert_eq!(plain.stdout, "", "{plain}");
    let quiet = mp(&[&"copy", &"--quiet", &s.path("src"), &s.path("quiet")]);
    quiet.expect_clean_success();
    assert_eq!(quiet.stdout, "", "{quiet}");
    assert_same_tree(&s.path("src"), &s.path("quiet"));

    fs::create_dir(s.path("out")).unwrap();
    let failed = mp(&[
        &"copy",
        &"--quiet",
        &s.path("missing"),
        &s.path("src"),
        &s.path("out"),
    ]);
    failed.expect_code(1);
    assert_eq!(failed.stdout, "", "{failed}");
    assert!(failed.stderr.contains("missing"), "{failed}");
}

/// As another user (root's tests run `mp` as uid 65534), with a binary that user can run.
fn as_nobody(s: &Scratch) -> Option<Command> {
    if !is_root() || !reachable_by_others(&s.root) {
        eprintln!("skipped: needs root, and a scratch folder user 65534 can reach");
        return None;
    }
    chmod(&s.root, 0o777);
    let copy = s.path("mp");
    fs::copy(mp_bin(), &copy).unwrap();
    chmod(&copy, 0o755);
    let mut cmd = Command::new(copy);
    cmd.uid(65534).gid(65534).current_dir(&s.root);
    Some(cmd)
}

/// A copy that cannot keep its source's owner loses the setuid and setgid bits, as with
/// `cp -a`: a user's copy of root's setuid program must not be a setuid program of that user.
#[test]
fn a_copy_under_another_owner_drops_setuid() {
    let s = Scratch::new("setuid");
    let Some(mut cmd) = as_nobody(&s) else { return };
    write(&s.path("prog"), b"#!/bin/sh\n");
    chmod(&s.path("prog"), 0o6755);
    fs::create_dir(s.path("out")).unwrap();
    std::os::unix::fs::chown(s.path("out"), Some(65534), Some(65534)).unwrap();
    cmd.args([OsStr::new("copy")])
        .arg(s.path("prog"))
        .arg(s.path("out"));
    run(cmd).expect_code(0);
    let copy = fs::symlink_metadata(s.path("out/prog")).unwrap();
    assert_eq!((copy.uid(), copy.gid()), (65534, 65534));
    assert_eq!(copy.mode() & 0o7777, 0o755, "setuid and setgid dropped");
}

/// A copy into a setgid directory keeps its source's group, not the directory's (which a
/// new file would inherit), as `cp -a` does.
#[test]
fn a_copy_into_a_setgid_directory_keeps_its_group() {
    if !is_root() {
        eprintln!("skipped: needs root to give the directory another group");
        return;
    }
    let s = Scratch::new("setgid-dir");
    write(&s.path("src/f"), b"f\n");
    std::os::unix::fs::chown(s.path("src/f"), Some(0), Some(0)).unwrap();
    fs::create_dir(s.path("out")).unwrap();
    std::os::unix::fs::chown(s.path("out"), Some(0), Some(1234)).unwrap();
    chmod(&s.path("out"), 0o2755);
    mp(&[&"copy", &s.path("src"), &s.path("out")]).expect_clean_success();
    let copy = fs::symlink_metadata(s.path("out/src/f")).unwrap();
    assert_eq!((copy.uid(), copy.gid()), (0, 0));
}

/// A file in a directory that may be searched but not listed (mode 0311) is copied, as `cp`
/// does: only directories that are walked need to be readable.
#[test]
fn a_file_in_a_search_only_directory_is_copied() {
    let s = Scratch::new("search-only");
    let Some(mut cmd) = as_nobody(&s) else { return };
    write(&s.path("p/f"), b"hi\n");
    std::os::unix::fs::chown(s.path("p/f"), Some(65534), Some(65534)).unwrap();
    chmod(&s.path("p"), 0o311);
    cmd.args([OsStr::new("copy")])
        .arg(s.path("p/f"))
        .arg(s.path("copy"));
    let out = run(cmd);
    chmod(&s.path("p"), 0o755);
    out.expect_code(0);
    assert_eq!(fs::read(s.path("copy")).unwrap(), b"hi\n");
}

/// On a terminal (a pseudo-terminal made by util-linux `script`), the progress line is drawn,
/// cleared, and followed by a one-line summary.
#[test]
fn a_terminal_gets_a_progress_line_and_a_summary() {
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: util-linux `script` is needed for a pseudo-terminal");
        return;
    }
    let s = Scratch::new("tty");
    small_tree(&s.path("src"));
    let line = format!(
        "{} copy {} {}",
        mp_bin().display(),
        s.path("src").display(),
        s.path("dst").display()
    );
    let mut cmd = Command::new("/usr/bin/script");
    cmd.args(["-qec", &line, "/dev/null"]);
    let out = run(cmd);
    out.expect_code(0);
    assert!(out.stdout.contains("\x1b[2K"), "the line is cleared: {out}");
    assert!(out.stdout.contains("copied "), "a summary follows: {out}");
    assert!(out.stdout.contains(" files, "), "{out}");
    assert_same_tree(&s.path("src"), &s.path("dst"));
}

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

// ---------------------------------------------------------------------------------------
// 6. Failure paths
// ---------------------------------------------------------------------------------------

/// Whether `other` users may reach `path` (every directory on the way searchable by all).
fn reachable_by_others(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// An unreadable file: reported on stderr with "Permission denied", exit 1, everything else
/// copied. As root, `mp` runs as user 65534 (root reads everything).
#[test]
fn an_unreadable_file_is_reported_and_the_rest_copied() {
    let s = Scratch::new("unreadable");
    let src = s.path("src");
    small_tree(&src);
    write(&src.join("sub/secret"), b"secret\n");
    write(&src.join("sub/after"), b"after\n");
    chmod(&src.join("sub/secret"), 0o000);
    let dst = s.path("dst");

    let mut cmd;
    if is_root() {
        if !reachable_by_others(&s.root) {
            eprintln!("skipping: user 65534 cannot reach {}", s.root.display());
            return;
        }
        chmod(&s.root, 0o777);
        // The source belongs to that user (mode 000 still keeps the secret from its owner),
        // so that the copy it makes can be compared owners included.
        for rel in snapshot(&src).keys() {
            std::os::unix::fs::lchown(join(&src, rel), Some(65534), Some(65534)).unwrap();
        }
        let mut bin = mp_bin();
        let bin_mode = fs::metadata(&bin).unwrap().permissions().mode();
        if !reachable_by_others(&bin) || bin_mode & 0o005 != 0o005 {
            let copy = s.path("mp");
            fs::copy(&bin, &copy).unwrap();
            chmod(&copy, 0o755);
            bin = copy;
        }
        cmd = Command::new(bin);
        cmd.uid(65534).gid(65534).current_dir(&s.root);
    } else {
        cmd = Command::new(mp_bin());
    }
    cmd.args([OsStr::new("copy"), OsStr::new("--json")])
        .arg(&src)
        .arg(&dst);
    let out = run(cmd);
    out.expect_code(1);
    let secret = src.join("sub/secret");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains(&*secret.to_string_lossy()) && l.contains("Permission denied")),
        "{out}"
    );
    let failures = out.json()["failures"].clone();
    assert_eq!(failures.as_array().map(Vec::len), Some(1), "{out}");
    assert!(!dst.join("sub/secret").exists());
    // Without the unreadable file (its directory's times kept), the rest must be identical.
    let sub = fs::symlink_metadata(src.join("sub")).unwrap();
    fs::remove_file(&secret).unwrap();
    set_times(
        &src.join("sub"),
        (sub.atime(), sub.atime_nsec()),
        (sub.mtime(), sub.mtime_nsec()),
    );
    assert_no_temp_files(&dst);
    assert_same_tree(&src, &dst);
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "2m") at `dir`; `None` (with the reason printed) where
    /// that is not possible.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("skipping: mounting a tmpfs needs root");
            return None;
        }
        fs::create_dir_all(dir).unwrap();
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("tmpfs")
            .arg(dir);
        let out = run(cmd);
        if out.code() != Some(0) {
            eprintln!("skipping: cannot mount a tmpfs: {out}");
            return None;
        }
        Some(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let mut cmd = Command::new("umount");
        cmd.arg(&self.dir);
        if run(cmd).code() != Some(0) {
            let mut lazy = Command::new("umount");
            lazy.arg("-l").arg(&self.dir);
            let _ = run(lazy);
        }
    }
}

/// Copies `src` into the 2 MiB tmpfs at `mnt` and checks a clean stop: exit 1 quickly,
/// "the destination is full", `disk_full` in the summary, no partial file, no temporary file.
fn expect_full_disk_stop(src: &Path, mnt: &Path) {
    let started = Instant::now();
    let out = mp(&[&"copy", &"--json", &src, &mnt]);
    let took = started.elapsed();
    out.expect_code(1);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(out.stderr.contains("the destination is full"), "{out}");
    assert!(
        out.stderr.contains("to resume, run: mp copy --resume "),
        "the way to resume once there is room: {out}"
    );
    assert_eq!(out.json()["disk_full"], true, "{out}");
    assert_no_temp_files(mnt);
    let copied = assert_present_files_complete(src, &mnt.join("src"));
    eprintln!("{copied} files fitted before the disk was full");
}

/// A full destination stops the copy cleanly: exit 1, "the destination is full", and every
/// file present under its name is complete (needs root, to mount a small tmpfs).
#[test]
fn a_full_disk_stops_the_copy_cleanly() {
    let s = Scratch::new("full");
    let src = s.path("src");
    build_bulk_tree(&src, 2, 10, 500 * KIB);
    let mnt = s.path("mnt");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "2m") else {
        return;
    };
    expect_full_disk_stop(&src, &mnt);
}

/// The same when the disk fills during a large file (copied in spans by the coordinator).
#[test]
fn a_full_disk_during_a_large_file_stops_the_copy_cleanly() {
    let s = Scratch::new("full-large");
    let src = s.path("src");
    write_sparse(
        &src.join("large"),
        64 * MIB as u64,
        &[
            (MIB as u64, pattern(12, MIB)),
            (20 * MIB as u64, pattern(13, MIB)),
            (40 * MIB as u64, pattern(14, MIB)),
        ],
    );
    let mnt = s.path("mnt");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "2m") else {
        return;
    };
    expect_full_disk_stop(&src, &mnt);
}

/// Starts `mp copy` with `args` and, once a file has appeared in `dst`, `act`s on it; returns
/// its output, or `None` if it finished before any file appeared.
fn act_mid_copy(
    args: &[&dyn AsRef<OsStr>],
    dst: &Path,
    act: impl FnOnce(&Running),
) -> Option<Output> {
    let mut child = Running::start(mp_command(args));
    let mut finished = false;
    let appeared = poll_until(DEADLINE, || {
        finished = child.has_exited();
        finished || has_a_file(dst)
    });
    assert!(appeared, "no file appeared in {} in time", dst.display());
    if finished {
        let out = child.wait(DEADLINE);
        eprintln!("the copy ended before anything could be done to it: {out}");
        return None;
    }
    act(&child);
    Some(child.wait(DEADLINE))
}

/// The resume command an interrupted copy printed, without its leading `mp`.
fn resume_command(out: &Output) -> Vec<String> {
    let hint = "to resume, run: ";
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.split_once(hint).map(|(_, cmd)| cmd))
        .unwrap_or_else(|| panic!("no resume command: {out}"));
    let words = shell_words(line);
    assert_eq!(words.first().map(String::as_str), Some("mp"), "{line}");
    words[1..].to_vec()
}

/// Ctrl-C in the middle of a copy: exit 130, no temporary file, every file present complete;
/// the resume command it prints (`--resume -T`) then completes the copy exactly.
#[test]
fn an_interrupted_copy_stops_cleanly_and_resumes() {
    let s = Scratch::new("sigint");
    let src = s.path("src");
    let dst = s.path("dst");
    let mut interrupted = None;
    for (attempt, files) in [(1, 20), (2, 40)] {
        build_bulk_tree(&src, 10, files, 2 * MIB);
        let out = act_mid_copy(&[&"copy", &"-j", &"2", &src, &dst], &dst, |child| {
            child.signal(libc::SIGINT)
        });
        match out {
            Some(out) if out.code() == Some(130) => {
                interrupted = Some(out);
                break;
            }
            Some(out) => {
                out.expect_code(0);
                eprintln!("attempt {attempt}: the copy finished before Ctrl-C; a bigger tree");
            }
            None => {}
        }
        remove_tree(&dst);
    }
    let Some(out) = interrupted else {
        eprintln!("the copy always finished before Ctrl-C: not checking an interrupted copy");
        return;
    };
    assert!(out.stderr.contains("interrupted"), "{out}");
    assert_no_temp_files(&dst);
    let present = assert_present_files_complete(&src, &dst);
    eprintln!("{present} files were copied before Ctrl-C");

    let resume = resume_command(&out);
    assert!(resume.iter().any(|w| w == "--resume"), "{resume:?}");
    assert!(resume.iter().any(|w| w == "-T"), "{resume:?}");
    let args: Vec<&dyn AsRef<OsStr>> = resume.iter().map(|w| w as &dyn AsRef<OsStr>).collect();
    let resumed = mp(&args);
    resumed.expect_clean_success();
    assert_no_temp_files(&dst);
    assert_same_tree(&src, &dst);
}

/// The fields of `/proc/PID/stat` after the command name ("state ppid ..."), if the process
/// is there. The name may hold spaces and parentheses: it ends at the last `)`.
fn stat_fields(pid: i32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.trim_start().to_string())
}

/// The pids of the processes whose parent is `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Some(fields) = stat_fields(pid) else {
            continue;
        };
        let ppid = fields
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// Workers killed with SIGKILL mid-copy do not hang it: it ends in time, each lost task
/// reported as such, and `--resume -T` then completes the copy.
#[test]
fn killed_workers_do_not_hang_the_copy() {
    let s = Scratch::new("sigkill");
    let src = s.path("src");
    build_bulk_tree(&src, 10, 20, 2 * MIB);
    kill_workers_mid_copy(&src, &s.path("dst"));
}

/// The same in a tree of many small directories, which each task copies several of at once
/// (under hidden names): what a killed task left is removed, nothing partial or hidden stays.
#[test]
fn killed_workers_in_small_directories_leave_nothing_partial() {
    let s = Scratch::new("sigkill-small");
    let src = s.path("src");
    for p in 0..8 {
        build_bulk_tree(&src.join(format!("p{p}")), 12, 40, 32 * KIB);
    }
    kill_workers_mid_copy(&src, &s.path("dst"));
}

/// The same in a tree of small trees, which each task copies several of at once (nested
/// directories inside a hidden one, or under hidden names of their own).
#[test]
fn killed_workers_in_small_trees_leave_nothing_partial() {
    let s = Scratch::new("sigkill-trees");
    let src = s.path("src");
    for p in 0..8 {
        for q in 0..6 {
            let tree = src.join(format!("p{p}/q{q}"));
            build_bulk_tree(&tree.join("t"), 2, 15, 32 * KIB);
            fs::write(tree.join("file"), b"x").unwrap();
        }
    }
    kill_workers_mid_copy(&src, &s.path("dst"));
}

/// The same in a resume: the new subdirectories of directories that exist already are
/// written under hidden names until complete, and what a killed task left of them is removed.
#[test]
fn killed_workers_in_a_resume_leave_nothing_hidden() {
    let s = Scratch::new("sigkill-resume");
    let (src, dst) = (s.path("src"), s.path("dst"));
    for p in 0..16 {
        let p = format!("p{p}");
        build_bulk_tree(&src.join(&p).join("tree"), 2, 20, 8 * KIB);
        build_bulk_tree(&src.join(&p).join("tree/d00/deeper"), 2, 10, 8 * KIB);
        fs::write(src.join(&p).join("file"), b"x").unwrap();
        fs::create_dir_all(dst.join(&p)).unwrap();
    }
    kill_workers_mid_copy_with(&[&"--resume", &"-T"], &src, &dst);
}

/// Copies `src` to `dst` with `-j 2`, SIGKILLs the workers once a file appeared, then checks
/// that the copy ended in time, that every file present is complete and that no temporary
/// file or hidden directory is left (but for named temporary files where the file system
/// has no `O_TMPFILE`), and that `--resume -T` completes the copy.
fn kill_workers_mid_copy(src: &Path, dst: &Path) {
    kill_workers_mid_copy_with(&[], src, dst);
}

/// [`kill_workers_mid_copy`] with more arguments for the copy that is killed.
fn kill_workers_mid_copy_with(extra: &[&dyn AsRef<OsStr>], src: &Path, dst: &Path) {
    let mut killed = 0;
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"copy", &"-j", &"2"];
    args.extend_from_slice(extra);
    args.extend([&src as &dyn AsRef<OsStr>, &dst]);
    let out = act_mid_copy(&args, dst, |child| {
        // mp → the pool's supervisor → the workers.
        for supervisor in children_of(child.pid()) {
            for worker in children_of(supervisor) {
                // SAFETY: kill has no memory-safety preconditions.
                if unsafe { libc::kill(worker, libc::SIGKILL) } == 0 {
                    killed += 1;
                }
            }
        }
    });
    if let Some(out) = &out {
        eprintln!("killed {killed} workers: {out}");
        match out.code() {
            Some(0) => {}
            Some(1) => assert!(out.stderr.contains("killed by signal 9"), "{out}"),
            _ => panic!("unexpected exit: {out}"),
        }
    }
    let left = temp_files(dst);
    if !left.is_empty() {
        eprintln!("killed workers left temporary files (no O_TMPFILE here?): {left:?}");
        for temp in left {
            let temp = join(dst, &temp);
            assert!(
                !temp.is_dir(),
                "a hidden directory stayed: {}",
                temp.display()
            );
            fs::remove_file(temp).unwrap();
        }
    }
    assert_present_files_complete(src, dst);
    mp(&[&"copy", &"--resume", &"-T", &src, &dst]).expect_clean_success();
    assert_same_tree(src, dst);
}

/// Whether the process `pid` has ended (gone, or a zombie nobody reaped yet).
fn has_ended(pid: i32) -> bool {
    stat_fields(pid).is_none_or(|fields| fields.starts_with(['Z', 'X']))
}

/// `mp` itself killed with SIGKILL mid-copy cannot clean up: hidden directories stay. The
/// resume (`--resume -T`) removes them (their process is gone) and completes the copy.
#[test]
fn a_resume_removes_what_a_killed_copy_left() {
    let s = Scratch::new("sigkill-mp");
    let src = s.path("src");
    let dst = s.path("dst");
    for p in 0..4 {
        build_bulk_tree(&src.join(format!("p{p}")), 12, 40, 32 * KIB);
    }
    let mut helpers = Vec::new();
    let out = act_mid_copy(&[&"copy", &"-j", &"2", &src, &dst], &dst, |child| {
        // mp → the fork server → the workers: all must be gone before the resume.
        for server in children_of(child.pid()) {
            helpers.extend(children_of(server));
            helpers.push(server);
        }
        child.signal(libc::SIGKILL);
    });
    let Some(out) = out.filter(|o| o.code() != Some(0)) else {
        eprintln!("the copy finished before it could be killed: nothing to check");
        return;
    };
    assert_eq!(out.code(), None, "killed by a signal: {out}");
    assert!(
        poll_until(DEADLINE, || helpers.iter().all(|&pid| has_ended(pid))),
        "the workers outlived mp"
    );
    let left = temp_files(s.path("").as_path());
    eprintln!("a killed copy left {} hidden entries", left.len());

    mp(&[&"copy", &"--resume", &"-T", &src, &dst]).expect_clean_success();
    assert_no_temp_files(s.path("").as_path());
    assert_same_tree(&src, &dst);
}

// ---------------------------------------------------------------------------------------
// 7. Help and completions
// ---------------------------------------------------------------------------------------

/// `mp completions bash` knows the `copy` subcommand; `mp copy --help` documents `--update`
/// and `--resume`.
#[test]
fn completions_and_help_mention_copy() {
    let completions = mp(&[&"completions", &"bash"]);
    completions.expect_clean_success();
    assert!(completions.stdout.contains("copy"), "{completions}");
    let help = mp(&[&"copy", &"--help"]);
    help.expect_clean_success();
    assert!(help.stdout.contains("--update"), "{help}");
    assert!(help.stdout.contains("--resume"), "{help}");
}
