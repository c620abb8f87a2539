//! `cp`'s and rsync's habits in `mp copy`, each side by side with GNU `cp` where `cp` has
//! it: `-a`, `-r`, `-R`, `-p` (accepted, changing nothing), `-t DIR`, the messages of a
//! missing operand, `-n/--no-clobber`, `-x/--one-file-system`; and `--exclude` (rsync's),
//! checked against the tree it must give.

// Shared with the other copy tests: not every helper is used here.
#[allow(dead_code)]
mod copy_common;

use std::process::Command;

use copy_common::*;

/// A world for the side-by-side runs: a tree with files, a subdirectory, a link and a hard
/// link, with times of its own, and a directory `dst` to copy into.
const TREE: &str = "mkdir -p src/sub dst; echo a > src/a; echo b > src/sub/b; \
     ln -s a src/link; ln src/a src/hard; chmod 750 src/sub; \
     touch -d 2001-02-03 src/a src/sub/b src/sub src";

/// `-a`, `-r`, `-R` and `-p` (repeated, too) change nothing: the copy is `cp -a`'s.
#[test]
fn archive_recursive_and_preserve_are_accepted() {
    let s = Scratch::new("cp-habits");
    let side = side_by_side(
        &s.root,
        TREE,
        &["-r", "-R", "-p", "src", "dst"],
        &["-a", "-a", "-r", "-R", "-p", "src", "dst"],
    );
    side.assert_same_outcome(&["", "dst"]);
    assert!(side.mp_world.join("dst/src/sub/b").is_file());
}

/// Runs `cp ARGS` and `mp copy ARGS` in `dir` and asserts that both refuse the command
/// alike: exit code 1, the same messages (`cp:` read as `mp copy:`).
#[track_caller]
fn assert_refused_as_cp(dir: &std::path::Path, args: &[&str]) {
    let mut cp = Command::new("cp");
    cp.args(args).current_dir(dir);
    let cp = run(cp);
    let mut mp = mp_command(&[&"copy"]);
    mp.args(args).current_dir(dir);
    let mp = run(mp);
    let both = format!("cp {args:?}:\n{cp}\nmp copy:\n{mp}");
    assert_eq!(cp.code(), Some(1), "{both}");
    assert_eq!(mp.code(), Some(1), "{both}");
    let expected = cp
        .stderr
        .replace("cp: ", "mp copy: ")
        .replace("'cp --help'", "'mp copy --help'");
    assert_eq!(mp.stderr, expected, "{both}");
}

/// `mp copy onlyone` says that DEST is missing, as `cp` does; and no path at all, `-t` on
/// something that is not a directory, or missing, are refused in `cp`'s words.
#[test]
fn missing_operands_are_named_as_cp_names_them() {
    let s = Scratch::new("cp-operands");
    write(&s.path("onlyone"), b"x");
    assert_refused_as_cp(&s.root, &["onlyone"]);
    assert_refused_as_cp(&s.root, &[]);
    assert_refused_as_cp(&s.root, &["-t", "nodir", "onlyone"]);
    assert_refused_as_cp(&s.root, &["-t", "onlyone", "onlyone"]);
    assert_refused_as_cp(&s.root, &["-t", "."]);
    assert!(!s.path("nodir").exists());
}

/// `-t DIR`: every path given is a source, copied into DIR, as `cp -t`; `-T` with it is
/// refused.
#[test]
fn target_directory_takes_every_path_as_a_source() {
    let s = Scratch::new("cp-target-dir");
    let side = side_by_side(
        &s.root,
        TREE,
        &["-t", "dst", "src", "src/a"],
        &["-t", "dst", "src", "src/a"],
    );
    side.assert_same_outcome(&["", "dst"]);
    assert!(side.mp_world.join("dst/a").is_file());
    let out = mp(&[&"copy", &"-t", &s.path("mp/dst"), &"-T", &s.path("mp/src")]);
    out.expect_code(2);
    assert!(out.stderr.contains("cannot be used with"), "{out}");
}
