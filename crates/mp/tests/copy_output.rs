//! What `mp copy` prints: failures in `cp`'s words (the user's paths, quoted as GNU quotes
//! them), `-v` as `cp -v`, `--dry-run`, the `--json` schema, and the progress bar (on stderr,
//! within a 40-column pseudo-terminal).

#[allow(dead_code)] // Not every test file uses every helper.
mod copy_common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use copy_common::*;

/// A tree with names a shell must quote (a space, a single quote, a newline), a symbolic
/// link and a hard link.
fn odd_tree(src: &Path) {
    small_tree(src);
    write(&src.join("a b"), b"space\n");
    write(&src.join("it's"), b"quote\n");
    write(&src.join("new\nline"), b"newline\n");
    std::os::unix::fs::symlink("a", src.join("link")).unwrap();
    fs::hard_link(src.join("a b"), src.join("sub/hard")).unwrap();
}

/// Runs `mp` with `args` in `dir`.
fn mp_in(dir: &Path, args: &[&dyn AsRef<OsStr>]) -> Output {
    let mut cmd = mp_command(args);
    cmd.current_dir(dir);
    run(cmd)
}

/// `mp copy -v` prints the lines `cp -av` prints (directories included, names quoted
/// alike), each directory before what it holds; stdout has nothing else.
#[test]
fn verbose_prints_what_cp_v_prints() {
    let s = Scratch::new("verbose");
    odd_tree(&s.path("src"));
    let mut cp = Command::new("cp");
    cp.args(["-av", "src", "out"]).current_dir(&s.root);
    let cp = run(cp);
    cp.expect_code(0);
    let mp = mp_in(&s.root, &[&"copy", &"-v", &"src", &"out2"]);
    mp.expect_clean_success();
    let mut expected: Vec<String> = cp
        .stdout
        .lines()
        .map(|l| l.replace("out", "out2"))
        .collect();
    let mut got: Vec<String> = mp.stdout.lines().map(String::from).collect();
    let at = |line: &str| got.iter().position(|l| l == line).expect("a line");
    assert!(
        at("'src' -> 'out2'") < at("'src/sub' -> 'out2/sub'"),
        "{mp}"
    );
    assert!(
        at("'src/sub' -> 'out2/sub'") < at("'src/sub/b' -> 'out2/sub/b'"),
        "{mp}"
    );
    assert!(got.contains(&"'src/new'$'\\n''line' -> 'out2/new'$'\\n''line'".into()));
    assert!(
        got.contains(&"\"src/it's\" -> \"out2/it's\"".into()),
        "{mp}"
    );
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "{mp}");
    assert_same_tree(&s.path("out"), &s.path("out2"));
}

/// `--dry-run` prints what `-v` would, writes nothing (a new destination is not made, an
/// existing one is left as it was), and leaves out what `--update` would keep.
#[test]
fn a_dry_run_prints_and_writes_nothing() {
    let s = Scratch::new("dry-run");
    odd_tree(&s.path("src"));
    let dry = mp_in(&s.root, &[&"copy", &"--dry-run", &"src", &"new"]);
    dry.expect_clean_success();
    assert!(!s.path("new").exists(), "nothing is made");
    let verbose = mp_in(&s.root, &[&"copy", &"-v", &"src", &"new"]);
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&dry.stdout), sorted(&verbose.stdout), "{dry}");
    let excluded = mp_in(
        &s.root,
        &[&"copy", &"--dry-run", &"--exclude", &"sub", &"src", &"x"],
    );
    excluded.expect_clean_success();
    assert!(excluded.stdout.contains("'src/a' -> 'x/a'"), "{excluded}");
    assert!(!excluded.stdout.contains("sub"), "excluded: {excluded}");

    // Into a copy that exists: only what changed (-u), and nothing touched.
    write(&s.path("src/a"), b"changed\n");
    set_times(&s.path("src/a"), (2_000_000_000, 0), (2_000_000_000, 0));
    cp_a(&[], &s.path("new"), &s.path("before"));
    let again = mp_in(
        &s.root,
        &[&"copy", &"--dry-run", &"-u", &"-T", &"src", &"new"],
    );
    again.expect_clean_success();
    assert!(again.stdout.contains("'src/a' -> 'new/a'"), "{again}");
    assert!(!again.stdout.contains("'src/sub/b'"), "up to date: {again}");
    assert_same_tree(&s.path("before"), &s.path("new"));
}

/// `--dry-run` judges what is at each destination as the copy does, directories' too: on a
/// tree with conflicts (a directory over a file, a file over a directory, a directory over
/// a link to one, a link onto the very file it points to), it refuses what the copy refuses,
/// in the same words and with the same exit code, prints what the copy copies (as `-v`),
/// and writes nothing.
#[test]
fn a_dry_run_refuses_what_the_copy_refuses() {
    let s = Scratch::new("dry-run-conflicts");
    let setup = "mkdir -p s/sub s/deep/x s/linkdir d/s/file/inner d/s/deep elsewhere
        echo f > s/sub/f; echo a > s/file; echo ok > s/ok; echo y > s/deep/x/y
        echo f > s/linkdir/f; echo old > d/s/sub; echo same > d/s/same
        ln -s ../d/s/same s/same; ln -s ../../elsewhere d/s/linkdir";
    let (world, before) = (s.path("world"), s.path("before"));
    fs::create_dir(&world).unwrap();
    let mut build = Command::new("sh");
    build.args(["-ec", setup]).current_dir(&world);
    run(build).expect_clean_success();
    cp_a(&[], &world, &before);

    let dry = mp_in(&world, &[&"copy", &"--dry-run", &"s", &"d/"]);
    assert_same_tree(&before, &world);
    let real = mp_in(&world, &[&"copy", &"-v", &"s", &"d/"]);
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        lines
    };
    let both = format!("dry run:\n{dry}\ncopy:\n{real}");
    for refusal in [
        "mp: cannot overwrite non-directory 'd/s/sub' with directory 's/sub'",
        "mp: cannot overwrite directory 'd/s/file' with non-directory",
        "mp: cannot overwrite non-directory 'd/s/linkdir' with directory 's/linkdir'",
        "mp: 's/same' and 'd/s/same' are the same file",
        "mp: 4 failures",
    ] {
        assert!(
            real.stderr.lines().any(|l| l == refusal),
            "{refusal}:\n{both}"
        );
    }
    assert_eq!(real.code(), Some(1), "{both}");
    assert_eq!(dry.code(), real.code(), "{both}");
    assert_eq!(sorted(&dry.stderr), sorted(&real.stderr), "{both}");
    assert_eq!(sorted(&dry.stdout), sorted(&real.stdout), "{both}");
    assert!(
        real.stdout.contains("'s/deep/x/y' -> 'd/s/deep/x/y'"),
        "{both}"
    );
    assert_eq!(fs::read(world.join("d/s/same")).unwrap(), b"same\n", "kept");
}

/// An unreadable source and an unwritable destination: each failure printed as `cp` prints
/// it, with the user's path (the destination's when it is at fault, never a temporary
/// name), and in the JSON with its operation, kind and errno.
#[test]
fn failures_are_said_in_cps_words() {
    let s = Scratch::new("cp-words");
    let Some(mut cmd) = as_nobody(&s) else { return };
    write(&s.path("src/secret"), b"secret\n");
    write(&s.path("src/ro/new"), b"new\n");
    fs::create_dir_all(s.path("out/src/ro")).unwrap();
    for rel in [
        "src",
        "src/secret",
        "src/ro",
        "src/ro/new",
        "out",
        "out/src",
    ] {
        std::os::unix::fs::lchown(s.path(rel), Some(65534), Some(65534)).unwrap();
    }
    chmod(&s.path("src/secret"), 0o000);
    chmod(&s.path("out/src/ro"), 0o555); // root's: not writable by 65534
    cmd.args(["copy", "--json", "src", "out"]);
    let out = run(cmd);
    out.expect_code(1);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.contains(&"mp: cannot open 'src/secret' for reading: Permission denied"),
        "{out}"
    );
    assert!(
        lines.contains(&"mp: cannot create regular file 'out/src/ro/new': Permission denied"),
        "{out}"
    );
    // As `cp -a` run by that user would, it cannot give root's directory its times.
    assert!(
        lines.contains(
            &"mp: failed to preserve attributes for 'out/src/ro': Operation not permitted"
        ),
        "{out}"
    );
    assert_eq!(lines.last(), Some(&"mp: 3 failures"), "{out}");
    assert!(!out.stderr.contains(".mp-copy"), "no temporary name: {out}");
    assert!(!out.stderr.contains("os error"), "{out}");
    let summary = out.json();
    assert_eq!(summary["schema"], 2, "{summary}");
    let failures = summary["failures"].as_array().expect("failures");
    let open = failures.iter().find(|f| f["op"] == "open").expect("open");
    assert_eq!(open["kind"], "permission_denied");
    assert_eq!(open["errno"], libc::EACCES);
    assert_eq!(open["path"], "src/secret");
    let create = failures
        .iter()
        .find(|f| f["op"] == "create")
        .expect("create");
    assert_eq!(create["path"], "out/src/ro/new");
    assert_eq!(create["source"], "src/ro/new");
}

/// A name that is not UTF-8 is escaped on stderr and kept whole in the JSON.
#[test]
fn names_that_are_not_utf8_are_escaped_and_kept() {
    let s = Scratch::new("not-utf8");
    fs::create_dir(s.path("out")).unwrap();
    let missing = OsStr::from_bytes(b"caf\xe9");
    let mut cmd = mp_command(&[&"copy", &"--json", &missing, &"out"]);
    cmd.current_dir(&s.root);
    let out = run(cmd);
    out.expect_code(1);
    assert!(
        out.stderr
            .lines()
            .any(|l| l == "mp: cannot stat 'caf'$'\\351': No such file or directory"),
        "{out}"
    );
    let failure = &out.json()["failures"][0];
    assert_eq!(
        failure["path_bytes"],
        serde_json::json!([99, 97, 102, 0xe9])
    );
    assert_eq!(failure["kind"], "not_found");
    assert_eq!(failure["errno"], libc::ENOENT);
}

/// `--progress` draws on stderr, never on stdout, even off a terminal; `-q` draws nothing.
#[test]
fn progress_goes_to_stderr() {
    let s = Scratch::new("progress-stderr");
    small_tree(&s.path("src"));
    let out = mp(&[&"copy", &"--progress", &s.path("src"), &s.path("dst")]);
    out.expect_code(0);
    assert_eq!(out.stdout, "", "{out}");
    assert!(out.stderr.contains("2 files: 2 copied"), "a summary: {out}");
    let quiet = mp(&[&"copy", &"-q", &s.path("src"), &s.path("quiet")]);
    quiet.expect_clean_success();
    assert_eq!(quiet.stdout, "", "{quiet}");
}

/// On a terminal, `-v`'s lines are the progress, as with `cp -v`: no bar unless asked for;
/// with stdout elsewhere, the bar is back (on stderr).
#[test]
fn verbose_on_a_terminal_has_no_bar() {
    let s = Scratch::new("verbose-tty");
    small_tree(&s.path("src"));
    let on_terminal = |dst: &str, redirect: &str| {
        let line = format!("exec {} copy -v src {dst} {redirect}", mp_bin().display());
        in_terminal(&line, &s.root)
    };
    let Some(plain) = on_terminal("one", "") else {
        return;
    };
    plain.expect_code(0);
    assert!(
        plain.stdout.contains("'src/sub/b' -> 'one/sub/b'"),
        "{plain}"
    );
    assert!(
        !plain.stdout.contains("files:"),
        "no bar, no summary: {plain}"
    );
    let logged = on_terminal("two", "> log").expect("script is there");
    logged.expect_code(0);
    assert!(logged.stdout.contains("2 files: 2 copied"), "{logged}");
    let log = fs::read_to_string(s.path("log")).unwrap();
    assert_eq!(log.lines().count(), 5, "{log}");
}

/// `mp man copy` is the man page of `mp copy`, made from the options `--help` shows.
#[test]
fn the_man_page_is_made_from_the_options() {
    let page = mp(&[&"man", &"copy"]);
    page.expect_clean_success();
    assert!(page.stdout.starts_with(".ie"), "roff: {page}");
    assert!(page.stdout.contains(".TH mp-copy 1"), "{page}");
    for option in ["dry\\-run", "verbose", "progress", "resume"] {
        assert!(page.stdout.contains(option), "{option}: {page}");
    }
    assert!(mp(&[&"man"]).stdout.contains(".TH mp 1"));
    mp(&[&"man", &"nothing"]).expect_code(1);
}

/// Text as a terminal shows it: ANSI sequences gone, and each line (or redraw after `\r`)
/// a piece of its own.
fn screen_lines(raw: &str) -> Vec<String> {
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        text.push(c);
    }
    text.split(['\n', '\r']).map(String::from).collect()
}

/// Under a pseudo-terminal 40 columns wide (util-linux `script`, `stty cols 40`), no line the
/// copy prints is wider than the terminal, and the bar's file total is the summary's (links
/// counted alike).
#[test]
fn progress_fits_a_40_column_terminal() {
    let s = Scratch::new("pty40");
    let src = s.path("src");
    build_bulk_tree(&src, 20, 100, 2048);
    for i in 0..50 {
        std::os::unix::fs::symlink("f000", src.join(format!("d00/link{i}"))).unwrap();
    }
    fs::hard_link(src.join("d01/f000"), src.join("d01/hard")).unwrap();
    let line = format!(
        "stty cols 40 rows 20; exec {} copy --progress {} {}",
        mp_bin().display(),
        src.display(),
        s.path("dst").display()
    );
    let Some(out) = in_terminal(&line, &s.root) else {
        return;
    };
    out.expect_code(0);
    let lines = screen_lines(&out.stdout);
    for line in &lines {
        assert!(
            line.chars().count() <= 40,
            "{} columns: {line:?}",
            line.chars().count()
        );
    }
    // 2,000 files, 50 symbolic links, 1 hard link.
    let summary = "2,051 files: ".to_string();
    assert!(lines.iter().any(|l| l.starts_with(&summary)), "{out}");
    // Every frame drawn with a complete total counts what the summary counts.
    let total = "/2,051 files";
    for frame in lines
        .iter()
        .filter(|l| l.contains(" files") && l.contains('/'))
    {
        if !frame.contains('+') && !frame.contains(':') {
            assert!(frame.contains(total), "{frame:?} against {summary:?}");
        }
    }
    assert_same_tree(&src, &s.path("dst"));
}
