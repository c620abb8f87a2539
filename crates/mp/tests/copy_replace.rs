//! What `mp copy` does with what it finds at a destination, side by side with GNU `cp -a`:
//! it never replaces the source itself (`'a' and 'b' are the same file`, exit 1, the rest
//! still copied: the cases of coreutils' `tests/cp/same-file.sh` that apply to `cp -a`, and
//! the same inside trees, under `-L`, `-T`, merged sources, large files, hard-link groups and
//! resumes), and `-u/--update` keeps what is not older than its source, as `cp -u` does,
//! where `--resume` keeps what matches.

// Shared with the other copy tests: not every helper is used here.
#[allow(dead_code)]
mod copy_common;

use std::fs;

use copy_common::*;

/// One scenario: a world built by a shell script, and the arguments of `cp -a` and `mp copy`.
struct Case {
    name: &'static str,
    setup: &'static str,
    cp: &'static [&'static str],
    mp: &'static [&'static str],
}

/// Runs each case side by side with `cp -a` and asserts the same outcome (the world's root
/// and `dst` are written into: their times are not compared).
fn assert_cases_as_cp(test: &str, cases: &[Case]) {
    for case in cases {
        let s = Scratch::new(&format!("{test}-{}", case.name));
        let side = side_by_side(&s.root, case.setup, case.cp, case.mp);
        eprintln!("{}: cp -a {:?} -> {}", case.name, case.cp, side.cp);
        side.assert_same_outcome(&["", "dst"]);
    }
}

/// The files of coreutils' `tests/cp/same-file.sh`, made in the current directory.
const SAME_FILE_SETUP: &str = "echo XYZ > foo; ln -s foo symlink; ln foo hardlink; \
     ln -s foo sl1; ln -s foo sl2; ln sl2 hlsl";

/// `tests/cp/same-file.sh`'s pairs as `cp -a` (`-d`) runs them: a file and a link to it
/// either way round, a file onto itself or onto another name of it, are refused ("the same
/// file", exit 1, nothing changed); a link onto another link to the same file is copied; two
/// names of one hard-linked link are left as they are (exit 0). Then the same under `-L`, a
/// dangling link onto itself, and `-T` with a link onto the directory it points to.
#[test]
fn top_level_sources_never_replace_themselves() {
    let case = |name, args: &'static [&'static str]| Case {
        name,
        setup: SAME_FILE_SETUP,
        cp: args,
        mp: args,
    };
    let mut cases = vec![
        case("foo-symlink", &["foo", "symlink"]),
        case("symlink-foo", &["symlink", "foo"]),
        case("foo-foo", &["foo", "foo"]),
        case("sl1-sl2", &["sl1", "sl2"]),
        case("foo-hardlink", &["foo", "hardlink"]),
        case("hlsl-sl2", &["hlsl", "sl2"]),
        case("sl1-sl1", &["sl1", "sl1"]),
        case("deref-symlink-foo", &["-L", "symlink", "foo"]),
        case("deref-foo-symlink", &["-L", "foo", "symlink"]),
        case("deref-sl1-sl2", &["-L", "sl1", "sl2"]),
    ];
    cases.push(Case {
        name: "dangling-onto-itself",
        setup: "ln -s nowhere dangling",
        cp: &["dangling", "dangling"],
        mp: &["dangling", "dangling"],
    });
    cases.push(Case {
        name: "link-onto-its-dir",
        setup: "mkdir d; echo a > d/f; ln -s d e",
        cp: &["-T", "e", "d"],
        mp: &["-T", "e", "d"],
    });
    assert_cases_as_cp("same-top", &cases);
}

/// The case: `mp copy symlink foo`, where `symlink -> foo`, left `foo -> foo` (the
/// data gone, exit 0). Now refused as `cp` refuses it, and `foo` keeps its bytes.
#[test]
fn a_link_is_never_copied_onto_what_it_points_to() {
    let s = Scratch::new("same-issue");
    write(&s.path("foo"), b"XYZ\n");
    std::os::unix::fs::symlink("foo", s.path("symlink")).unwrap();
    let mut cmd = mp_command(&[&"copy", &"symlink", &"foo"]);
    cmd.current_dir(&s.root);
    let out = run(cmd);
    out.expect_code(1);
    assert_eq!(
        out.stderr, "mp: 'symlink' and 'foo' are the same file\nmp: 1 failure\n",
        "{out}"
    );
    assert_eq!(fs::read(s.path("foo")).unwrap(), b"XYZ\n");
    assert!(fs::symlink_metadata(s.path("foo")).unwrap().is_file());
}

/// Inside trees: an entry whose destination is the source itself, or what a link of it
/// leads to, is refused (and the rest copied), whichever path copies it: a worker's batch,
/// `-T`, `-L`, a hard-link group, a directory (a link onto the directory it points to, or a
/// link in the destination to the source's directory), a FIFO, the second of two merged
/// sources, a large file copied in spans (`-j 3`), and a name of one file reached by two
/// links under `-L`. Two names of one hard-linked link are left alone.
#[test]
fn entries_in_trees_never_replace_their_source() {
    let cases = [
        Case {
            name: "link-onto-its-target",
            setup: "mkdir -p src dst/src; echo DATA > dst/src/x; echo keep > src/y; \
                    ln -s ../dst/src/x src/x",
            cp: &["src", "dst"],
            mp: &["src", "dst"],
        },
        Case {
            name: "link-onto-its-target-T",
            setup: "mkdir -p src dst; echo DATA > dst/x; echo keep > src/y; ln -s ../dst/x src/x",
            cp: &["-T", "src", "dst"],
            mp: &["-T", "src", "dst"],
        },
        Case {
            name: "link-onto-its-target-L",
            setup: "mkdir -p src dst/src; echo DATA > dst/src/x; echo keep > src/y; \
                    ln -s ../dst/src/x src/x",
            cp: &["-L", "src", "dst"],
            mp: &["-L", "src", "dst"],
        },
        Case {
            name: "two-links-to-one-file-L",
            setup: "mkdir -p src dst/src; echo DATA > dst/src/x; echo keep > src/y; \
                    ln -s ../dst/src/x src/x; ln -s ../dst/src/x src/z",
            cp: &["-L", "src", "dst"],
            mp: &["-L", "src", "dst"],
        },
        Case {
            name: "hard-link-in-dest",
            setup: "mkdir -p src dst/src; echo DATA > src/x; ln src/x dst/src/x; \
                    echo keep > src/y",
            cp: &["src", "dst"],
            mp: &["src", "dst"],
        },
        Case {
            name: "hard-link-group-member",
            setup: "mkdir -p src dst/src; echo DATA > src/a; ln src/a src/b; \
                    ln src/b dst/src/b; echo keep > src/y",
            cp: &["src", "dst"],
            mp: &["src", "dst"],
        },
        Case {
            name: "dest-link-to-source",
            setup: "mkdir -p src dst/src; echo DATA > src/x; ln -s ../../src/x dst/src/x; \
                    echo keep > src/y",
            cp: &["src", "dst"],
            mp: &["src", "dst"],
        },
        Case {
            name: "dir-link-onto-its-dir",
            setup: "mkdir -p src dst/src/sub; echo DATA > dst/src/sub/f; echo keep > src/y; \
                    ln -s ../dst/src/sub src/sub",
            cp: &["src", "dst"],
            mp: &["src", "dst"],
        },
        Case {
            name: "dir-link-onto-its-dir-L",
            setup: "mkdir -p src dst/src/sub; echo DATA > dst/src/sub/f; echo keep > src/y; \
                    ln -s ../dst/src/sub src/sub",
            cp: &["-L", "src", "dst"],
            mp: &["-L", "src", "dst"],
        },
        Case {
            name: "dest-dir-link-to-source-dir",
            setup: "mkdir -p src/sub dst/src; echo D > src/sub/f; echo keep > src/y; \
                    ln -s ../../src/sub dst/src/sub",
            cp: &["src", "dst"],
            mp: &["src", "dst"],
        },
        Case {
            name: "fifo-and-dest-link",
            setup: "mkdir -p src dst/src; mkfifo src/p; ln -s ../../src/p dst/src/p; \
                    echo keep > src/y",
            cp: &["src", "dst"],
            mp: &["src", "dst"],
        },
        Case {
            name: "merged-sources",
            setup: "mkdir -p a/src b/src dst; echo DATA > a/src/x; echo keep > b/src/y; \
                    ln -s ../../dst/src/x b/src/x",
            cp: &["a/src", "b/src", "dst"],
            mp: &["a/src", "b/src", "dst"],
        },
        Case {
            name: "hard-linked-links",
            setup: "mkdir -p src dst/src; echo DATA > dst/src/t; ln -s t src/x; \
                    ln src/x dst/src/x; echo keep > src/y",
            cp: &["src", "dst"],
            mp: &["src", "dst"],
        },
        Case {
            name: "large-hard-link-in-dest",
            setup: "mkdir -p src dst/src; truncate -s 300M src/big; echo keep > src/y; \
                    printf DATA | dd of=src/big bs=1 seek=1048576 conv=notrunc 2>/dev/null; \
                    ln src/big dst/src/big",
            cp: &["src", "dst"],
            mp: &["-j", "3", "src", "dst"],
        },
        Case {
            name: "large-link-onto-its-target-L",
            setup: "mkdir -p src dst/src; truncate -s 300M dst/src/big; echo keep > src/y; \
                    printf DATA | dd of=dst/src/big bs=1 seek=1048576 conv=notrunc 2>/dev/null; \
                    ln -s ../dst/src/big src/big",
            cp: &["-L", "src", "dst"],
            mp: &["-L", "-j", "3", "src", "dst"],
        },
    ];
    assert_cases_as_cp("same-tree", &cases);
}

/// A resume (or `--update`) never takes the source itself for an up-to-date copy (a hard
/// link of it has its size and time): refused first, as `cp -a` and `cp -au` refuse it.
#[test]
fn resumes_and_updates_never_replace_the_source() {
    let setup = "mkdir -p src dst/src; echo DATA > src/x; ln src/x dst/src/x; echo keep > src/y";
    let cases = [
        Case {
            name: "resume",
            setup,
            cp: &["src", "dst"],
            mp: &["--resume", "src", "dst"],
        },
        Case {
            name: "update",
            setup,
            cp: &["-u", "src", "dst"],
            mp: &["-u", "src", "dst"],
        },
        Case {
            name: "resume-T",
            setup,
            cp: &["-T", "src", "dst/src"],
            mp: &["--resume", "-T", "src", "dst/src"],
        },
    ];
    assert_cases_as_cp("same-resume", &cases);
}

/// Sources at one time, and beside them destinations of every kind: newer (a later edit),
/// older, of the same time but other bytes, missing; links newer and older; a newer and an
/// older directory where the source has a file; a file deeper down.
const UPDATE_SETUP: &str = "
mkdir -p src/d dst/src/d dst/src/dir-newer dst/src/dir-older
for f in newer older same-time missing dir-newer dir-older d/deep; do echo \"source $f\" > src/$f; done
echo 'a later edit, longer' > dst/src/newer
echo 'old' > dst/src/older
echo 'other bytes' > dst/src/same-time
echo 'a later edit' > dst/src/d/deep
ln -s newer src/link-newer; ln -s elsewhere dst/src/link-newer
ln -s older src/link-older; ln -s elsewhere dst/src/link-older
T=1500000000
touch -h -d @$T src/* src/d/deep dst/src/same-time
touch -h -d @$((T + 100)) dst/src/newer dst/src/link-newer dst/src/d/deep dst/src/dir-newer
touch -h -d @$((T - 100)) dst/src/older dst/src/link-older dst/src/dir-older
touch -d @$T src/d src
";

/// `-u/--update` means what `cp -u` means: a file or link is copied only where the
/// destination is older or missing; a newer one (a user's later edit) and one of the same
/// time are kept; a directory where the source has a file is skipped when newer and refused
/// when older (exit 1). `--update --resume` keeps what either keeps: the same result.
/// `--resume` alone replaces whatever differs, newer or not: `cp -a`'s result.
#[test]
fn update_copies_only_what_is_newer_as_cp_u() {
    let s = Scratch::new("update-u");
    let u = ["-u", "src", "dst"];
    let side = side_by_side(&s.root, UPDATE_SETUP, &u, &u);
    side.assert_same_outcome(&["", "dst"]);
    let dst = side.mp_world.join("dst/src");
    let read = |name: &str| String::from_utf8(fs::read(dst.join(name)).unwrap()).unwrap();
    assert_eq!(read("newer"), "a later edit, longer\n");
    assert_eq!(read("same-time"), "other bytes\n");
    assert_eq!(read("d/deep"), "a later edit\n");
    assert_eq!(read("older"), "source older\n");
    assert_eq!(read("missing"), "source missing\n");
    let cases = [
        Case {
            name: "u-resume",
            setup: UPDATE_SETUP,
            cp: &["-u", "src", "dst"],
            mp: &["--update", "--resume", "src", "dst"],
        },
        Case {
            name: "resume",
            setup: UPDATE_SETUP,
            cp: &["src", "dst"],
            mp: &["--resume", "src", "dst"],
        },
    ];
    assert_cases_as_cp("update", &cases);
}

/// The same for large files, copied in spans (`-j 3`): a newer one is kept, an older one
/// replaced.
#[test]
fn update_keeps_a_newer_large_file_as_cp_u() {
    let setup = "mkdir -p src dst/src
        truncate -s 300M src/newer src/older dst/src/newer dst/src/older
        printf source | dd of=src/newer bs=1 seek=4096 conv=notrunc 2>/dev/null
        printf source | dd of=src/older bs=1 seek=4096 conv=notrunc 2>/dev/null
        printf edited | dd of=dst/src/newer bs=1 seek=8192 conv=notrunc 2>/dev/null
        touch -d @1500000000 src/newer src/older src
        touch -d @1500000100 dst/src/newer
        touch -d @1499999900 dst/src/older";
    let cases = [Case {
        name: "large",
        setup,
        cp: &["-u", "src", "dst"],
        mp: &["-u", "-j", "3", "src", "dst"],
    }];
    assert_cases_as_cp("update", &cases);
}

/// The summary counts what `--update` kept as skipped; a second run copies nothing.
#[test]
fn update_counts_what_it_keeps() {
    let s = Scratch::new("update-count");
    let (src, dst) = (s.path("src"), s.path("dst"));
    for (name, mtime) in [("a", 100), ("b", 100), ("c", 300)] {
        write(&src.join(name), b"source\n");
        set_times(
            &src.join(name),
            (1_000_000_000, 0),
            (1_500_000_000 + mtime, 0),
        );
    }
    for (name, mtime) in [("a", 200), ("c", 200)] {
        write(&dst.join(name), b"destination\n");
        set_times(
            &dst.join(name),
            (1_000_000_000, 0),
            (1_500_000_000 + mtime, 0),
        );
    }
    let out = mp(&[&"copy", &"-u", &"--json", &"-T", &src, &dst]);
    out.expect_clean_success();
    let summary = out.json();
    assert_eq!(
        (summary["files"].as_u64(), summary["skipped"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(fs::read(dst.join("a")).unwrap(), b"destination\n");
    assert_eq!(fs::read(dst.join("c")).unwrap(), b"source\n");
    let again = mp(&[&"copy", &"-u", &"--json", &"-T", &src, &dst]);
    again.expect_clean_success();
    let summary = again.json();
    assert_eq!(
        (summary["files"].as_u64(), summary["skipped"].as_u64()),
        (Some(0), Some(3))
    );
}

/// Under `--update`, a name of a hard-link group whose destination is newer is kept,
/// whichever name of the group is copied first (`cp -u` links it over the first copy: its
/// edit is lost); a name whose destination is missing is linked or copied. The same under
/// `-L` for names that lead to one file: a newer one is never linked over.
#[test]
fn update_never_links_over_a_newer_file() {
    for (flags, newer) in [("", "a"), ("", "b"), ("-L", "f"), ("-L", "l")] {
        let s = Scratch::new(&format!("update-links{flags}-{newer}"));
        let (src, dst) = (s.path("src"), s.path("dst"));
        write(&src.join("a"), b"source\n");
        fs::hard_link(src.join("a"), src.join("b")).unwrap();
        write(&src.join("f"), b"source\n");
        std::os::unix::fs::symlink("f", src.join("l")).unwrap();
        for name in ["a", "f"] {
            set_times(&src.join(name), (1_000_000_000, 0), (1_500_000_000, 0));
        }
        write(&dst.join(newer), b"a later edit\n");
        set_times(&dst.join(newer), (1_000_000_000, 0), (1_600_000_000, 0));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"copy", &"-u", &"-T"];
        if !flags.is_empty() {
            args.push(&flags);
        }
        args.extend([&src as &dyn AsRef<std::ffi::OsStr>, &dst]);
        let out = mp(&args);
        out.expect_clean_success();
        assert_eq!(
            fs::read(dst.join(newer)).unwrap(),
            b"a later edit\n",
            "{out}"
        );
        for name in ["a", "b", "f", "l"].into_iter().filter(|n| *n != newer) {
            let meta = fs::symlink_metadata(dst.join(name)).unwrap();
            if flags.is_empty() && name == "l" {
                assert!(meta.file_type().is_symlink(), "{name}");
            } else {
                assert!(meta.is_file(), "{name}: {out}");
            }
        }
    }
}

/// `--help` says what `--update` and `--resume` mean.
#[test]
fn help_tells_update_from_resume() {
    let help = mp(&[&"copy", &"--help"]);
    help.expect_clean_success();
    let text = help.stdout.replace('\n', " ");
    assert!(text.contains("never replace a newer file"), "{help}");
    assert!(text.contains("size and modification time"), "{help}");
}

/// As a user other than root, a destination file that user may not write (mode 0, or
/// read-only) is not replaced: `cp -a` opens it to write and says "cannot create regular
/// file 'dst/src/f': Permission denied" (exit 1), and so does `mp copy`; a link over
/// such a file is made all the same, as with `cp`.
#[test]
fn an_unwritable_destination_file_is_refused_as_by_cp() {
    let s = Scratch::new("unwritable-dest");
    let setup = "mkdir -p src dst/src; echo new > src/f; echo new > src/g; echo new > src/ok
        ln -s f src/l; echo old > dst/src/f; echo old > dst/src/g; echo old > dst/src/ok
        echo old > dst/src/l; chmod 0 dst/src/f dst/src/l; chmod 444 dst/src/g";
    let args = ["src", "dst"];
    // Root writes anything: as root, both run as another user.
    let side = match is_root() {
        true => side_by_side_as_nobody(&s, setup, &args),
        false => Some(side_by_side(&s.path("worlds"), setup, &args, &args)),
    };
    let Some(side) = side else {
        return;
    };
    eprintln!("cp -a -> {}", side.cp);
    side.assert_same_outcome(&["", "dst"]);
    side.mp.expect_code(1);
    // In cp's words, naming the destination (mode 0 and read-only alike).
    for name in ["f", "g"] {
        let line = format!("mp: cannot create regular file 'dst/src/{name}': Permission denied");
        assert!(
            side.mp.stderr.lines().any(|l| l == line),
            "{}",
            side.mp.stderr
        );
    }
    assert_eq!(
        fs::read(side.mp_world.join("dst/src/ok")).unwrap(),
        b"new\n"
    );
}
