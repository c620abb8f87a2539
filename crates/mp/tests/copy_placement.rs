//! `cp -r`'s placement rules: where each source goes (a new destination, into a directory,
//! `-T`, `.` and `..`, a trailing slash), sources of one name merged or refused as `cp -a`
//! does (with hard-link groups across them), and what is refused before anything is copied
//! (into itself, onto itself, through a link at the destination).

// Shared with the other copy tests: not every helper is used here.
#[allow(dead_code)]
mod copy_common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use copy_common::*;

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

/// `mp copy x/. y`, and `mp copy . ../y` from inside `x`: as with `cp -a`, the entries of
/// `x` go into `y` (merged with what it holds) and `y` takes the metadata of `x`; a missing
/// `y` becomes the copy of `x`; through a link to `y`, `y` receives them.
#[test]
fn a_source_ending_in_dot_copies_its_contents_as_cp() {
    let s = Scratch::new("place-contents");
    let setup = "mkdir -p x/sub y; echo a > x/a; echo b > x/sub/b; echo keep > y/keep
        chmod 750 x; chmod 700 y; touch -d 2001-01-01 x/sub x; touch -d 2002-02-02 y
        ln -s y ylink";
    for (name, cwd, args) in [
        ("into", "", ["x/.", "y"]),
        ("through-link", "", ["x/.", "ylink"]),
        ("into-slash", "", ["x/./", "y/"]),
        ("missing", "", ["x/.", "new"]),
        ("inside", "x", [".", "../y"]),
    ] {
        let runs = side_by_side_in(&s.path(name), setup, cwd, &args, &args);
        runs.mp.expect_clean_success();
        runs.assert_same_outcome(&[""]);
    }
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
