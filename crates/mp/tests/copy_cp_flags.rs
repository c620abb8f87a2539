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
        .replace("cp: ", "mp: ")
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
/// refused as `cp` refuses it.
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
    assert_refused_as_cp(&side.mp_world, &["-t", "dst", "-T", "src", "x"]);
    assert!(!side.mp_world.join("x").exists());
}

/// What a second copy meets in `dst/src`: an older `a` of other contents, a directory
/// where `src` has the file `z`, a file where `src` has the link `link`, a directory `sub`
/// of another mode; `src` has a hard-link group `a`, `hard`, `hard2` whose first name is
/// there already.
const EXISTING: &str = "mkdir -p src/sub dst/src/sub dst/src/z; echo a > src/a; \
     echo b > src/sub/b; echo z > src/z; ln -s a src/link; ln src/a src/hard; \
     ln src/a src/hard2; chmod 750 src/sub; touch -d 2001-02-03 src/a src/sub/b src/sub src; \
     echo old > dst/src/a; echo old > dst/src/link; touch -d 2000-01-01 dst/src/a";

/// The flag that makes the host's `cp` skip what exists, silently, as `mp copy -n` does:
/// `--update=none` where it has it (GNU coreutils 9.3 and later, where `-n` changed: 9.2 to
/// 9.4 fail with "not replacing", 9.5 warns that it is deprecated), else `-n` (9.1 and
/// before, where `-n` was that). Asked of `cp` itself, in `dir`.
fn cp_no_clobber(dir: &std::path::Path) -> &'static str {
    write(&dir.join("probe-src"), b"new\n");
    write(&dir.join("probe-dst"), b"old\n");
    let mut probe = Command::new("cp");
    probe
        .args(["--update=none", "probe-src", "probe-dst"])
        .current_dir(dir);
    let has_it = run(probe).code() == Some(0);
    let kept = std::fs::read(dir.join("probe-dst")).unwrap() == b"old\n";
    for probe in ["probe-src", "probe-dst"] {
        std::fs::remove_file(dir.join(probe)).unwrap();
    }
    match has_it && kept {
        true => "--update=none",
        false => "-n",
    }
}

/// Runs `cp -a` (with the host's flag for `-n`, see [`cp_no_clobber`]) and `mp copy -n`
/// side by side on `args` (`-n` and the paths) and asserts the same worlds (`loose` as
/// [`SideBySide::assert_same_worlds`] takes them); `mp copy`'s own outcome is checked
/// against the behaviour it keeps, whatever the host's `cp` says: exit 0, not a word.
#[track_caller]
fn assert_no_clobber_as_cp(root: &std::path::Path, args: &[&str], loose: &[&str]) {
    std::fs::create_dir_all(root).unwrap();
    let flag = cp_no_clobber(root);
    let cp_args: Vec<&str> = args
        .iter()
        .map(|&a| if a == "-n" { flag } else { a })
        .collect();
    let side = side_by_side(root, EXISTING, &cp_args, args);
    let mp = &side.mp;
    assert_eq!(mp.code(), Some(0), "mp copy {args:?}:\n{mp}");
    assert_eq!(mp.stderr, "", "mp copy {args:?}:\n{mp}");
    side.assert_same_worlds(loose);
}

/// `-n/--no-clobber`, as `cp -n` in GNU coreutils 9.1 (and `cp --update=none` since 9.3):
/// nothing that exists is replaced, whatever it is (a file where a link goes, a directory
/// where a file goes); directories are merged into and given the source's metadata; a
/// hard-link group whose first name is kept is copied from its next name; exit 0, silently.
/// Onto itself, a file is skipped too (no "same file" refusal). The skipped entries are
/// counted.
#[test]
fn no_clobber_never_replaces_what_exists() {
    let s = Scratch::new("cp-no-clobber");
    assert_no_clobber_as_cp(&s.root, &["-n", "src", "dst"], &["", "dst"]);
    let world = &s.path("mp");
    assert_eq!(std::fs::read(world.join("dst/src/a")).unwrap(), b"old\n");
    assert!(world.join("dst/src/z").is_dir());
    // Again: everything is there, nothing is copied, every file and link is skipped.
    let mut again = mp_command(&[&"copy", &"--no-clobber", &"--json", &"src", &"dst"]);
    again.current_dir(world);
    let out = run(again);
    out.expect_clean_success();
    let summary = out.json();
    assert_eq!(summary["files"], 0, "{summary}");
    assert_eq!(summary["hard_links"], 0, "{summary}");
    assert_eq!(summary["skipped"], 6, "{summary}");
    // Top level: onto itself, onto the file a link points to, a second source of one name.
    let cases: [&[&str]; 3] = [
        &["-n", "src/a", "src/a"],
        &["-n", "src/link", "src/a"],
        &["-n", "src/a", "src/sub/b", "src/z", "dst/src/sub"],
    ];
    for (n, args) in cases.into_iter().enumerate() {
        let s = Scratch::new(&format!("cp-no-clobber-top-{n}"));
        assert_no_clobber_as_cp(&s.root, args, &["", "dst", "dst/src/sub"]);
    }
}

/// Builds `world/src` with two tmpfs mounted inside it (`src/sub/mnt`, and
/// `src/deep/a/b/mnt` below small directories), each holding a file (and the first a
/// directory), its root given a mode of its own; every entry dated 2001-02-03. `None`
/// (with the reason printed) where a tmpfs cannot be mounted.
fn tree_with_mounts(world: &std::path::Path) -> Option<Vec<Tmpfs>> {
    let src = world.join("src");
    let mut mounts = Vec::new();
    for (n, dir) in ["sub/mnt", "deep/a/b/mnt"].into_iter().enumerate() {
        let mnt = src.join(dir);
        mounts.push(Tmpfs::mount(&mnt, "1m")?);
        write(&mnt.join("inside"), format!("inside {n}").as_bytes());
        if n == 0 {
            // The other is a leaf: copied within its parent's task.
            std::fs::create_dir(mnt.join("dir")).unwrap();
            write(&mnt.join("dir/deeper"), b"deeper");
        }
        chmod(&mnt, 0o750);
    }
    write(&src.join("top"), b"top");
    write(&src.join("sub/beside"), b"beside");
    // The same times in every world.
    let mut touch = Command::new("sh");
    touch
        .args(["-c", "find src -exec touch -h -d 2001-02-03 {} +"])
        .current_dir(world);
    run(touch).expect_clean_success();
    Some(mounts)
}

/// `-x/--one-file-system`, as `cp -x`: a directory on another file system (a tmpfs mounted
/// inside the source) is made, empty, with its own metadata, and nothing inside it is
/// copied; a top-level source that is a mount point is copied whole.
#[test]
fn one_file_system_stops_at_mount_points() {
    let s = Scratch::new("cp-one-file-system");
    let (cp_world, mp_world) = (s.path("cp"), s.path("mp"));
    let Some(_cp_mounts) = tree_with_mounts(&cp_world) else {
        return;
    };
    let Some(_mp_mounts) = tree_with_mounts(&mp_world) else {
        return;
    };
    for args in [["-x", "src", "dst"], ["-x", "src/sub/mnt", "top-mount"]] {
        let mut cp = Command::new("cp");
        cp.arg("-a").args(args).current_dir(&cp_world);
        run(cp).expect_clean_success();
        let mut mp = mp_command(&[&"copy"]);
        mp.args(args).current_dir(&mp_world);
        run(mp).expect_clean_success();
        assert_same_tree(&cp_world.join(args[2]), &mp_world.join(args[2]));
    }
    let mount_copy = mp_world.join("dst/sub/mnt");
    assert!(mount_copy.is_dir());
    assert_eq!(std::fs::read_dir(&mount_copy).unwrap().count(), 0);
    assert!(std::fs::read_dir(mp_world.join("dst/deep/a/b/mnt"))
        .unwrap()
        .next()
        .is_none());
    assert!(mp_world.join("top-mount/dir/deeper").is_file());
    assert!(mp_world.join("dst/sub/beside").is_file());
}

/// A tree for `--exclude`: objects at several depths, `build` and `cache` directories at
/// the root and below, PDFs in `docs` at the root and below, a hard-link group of which one
/// name is excluded, small nested directories, every entry dated 2001-02-03.
const EXCLUDE_TREE: &str = "mkdir -p src/lib/build src/build src/cache src/lib/cache src/docs \
     src/lib/docs src/t/u/v; \
     for f in a.o keep.o lib/b.o lib/build/x build/y cache/c lib/cache/d docs/a.pdf \
     lib/docs/b.pdf a.c t/u/v/w.o t/u/v/w.c; do echo $f > src/$f; done; \
     ln -s a.c src/cache-link; ln -s nowhere src/lib/cache.o; ln src/a.c src/t/h.o; \
     find src -exec touch -h -d 2001-02-03 {} +";

/// What `--exclude` leaves out of EXCLUDE_TREE, removed from a `cp -a` copy: the tree
/// `mp copy` must give.
const EXCLUDED: &str = "rm -r expected/a.o expected/lib/b.o expected/build expected/cache \
     expected/lib/cache expected/docs/a.pdf expected/t/u/v/w.o expected/t/h.o \
     expected/lib/cache.o; cd src && find . -type d -exec touch -c -r {} ../expected/{} ';'";

/// `--exclude`, gitignore's patterns matched below each SOURCE (as rsync's are below the
/// transfer's root): `*.o` at any depth, taken back by `!keep.o`; `/build` at the root
/// only; `cache/` directories only (not the link `cache-link`; `cache.o` goes by `*.o`);
/// `docs/*.pdf` anchored. Excluded entries are neither copied nor counted (a hard-link
/// group with a name excluded is copied as one file); excluded directories are not walked.
/// The tree is `cp -a`'s less what is excluded; `cp` has no such option.
#[test]
fn exclude_leaves_out_what_the_patterns_match() {
    let s = Scratch::new("cp-exclude");
    let mut build = Command::new("sh");
    build
        .args([
            "-c",
            &format!("set -e; {EXCLUDE_TREE}; cp -a src expected; {EXCLUDED}"),
        ])
        .current_dir(&s.root);
    run(build).expect_clean_success();
    let patterns = ["*.o", "!keep.o", "/build", "cache/", "docs/*.pdf"];
    let mut args: Vec<&str> = vec!["copy", "--json"];
    for pattern in &patterns {
        args.extend(["--exclude", pattern]);
    }
    let mut copy = mp_command(&[]);
    copy.args(&args).args(["src", "dst"]).current_dir(&s.root);
    let out = run(copy);
    out.expect_clean_success();
    assert_same_tree(&s.path("expected"), &s.path("dst"));
    let expected = Counts::of(&s.path("expected"));
    assert_eq!(Counts::from_json(&out.json()), expected, "{out}");
    assert!(s.path("dst/lib/build/x").is_file() && s.path("dst/keep.o").is_file());
    // A SOURCE is copied, whatever the patterns say: it was named.
    let out = mp(&[
        &"copy",
        &"--exclude",
        &"*.o",
        &s.path("src/a.o"),
        &s.path("a.o"),
    ]);
    out.expect_clean_success();
    assert!(s.path("a.o").is_file());
    // A pattern that is no glob is refused before anything is copied.
    let out = mp(&[
        &"copy",
        &"--exclude",
        &"[z-a]",
        &s.path("src"),
        &s.path("bad"),
    ]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("invalid --exclude pattern '[z-a]'"),
        "{out}"
    );
    assert!(!s.path("bad").exists());
}
