//! `--resume`, `--verify`, and what `mp copy` prints: the JSON summary, silence off a terminal
//! and with `--quiet`, the progress line and summary on a terminal, help and completions.
//! (`--update` is in `copy_replace.rs`.)

// Shared with the other copy tests: not every helper is used here.
#[allow(dead_code)]
mod copy_common;

use std::fs;

use copy_common::*;

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
    assert_eq!(failures[0]["op"], "stat", "{summary}");
    let error = failures[0]["reason"].as_str().expect("a string");
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

/// On a terminal (a pseudo-terminal made by util-linux `script`), the progress line is drawn,
/// cleared, and followed by a one-line summary (both on stderr, which `script` shows too).
#[test]
fn a_terminal_gets_a_progress_line_and_a_summary() {
    let s = Scratch::new("tty");
    small_tree(&s.path("src"));
    let line = format!(
        "{} copy {} {}",
        mp_bin().display(),
        s.path("src").display(),
        s.path("dst").display()
    );
    let Some(out) = in_terminal(&line, &s.root) else {
        return;
    };
    out.expect_code(0);
    assert!(out.stdout.contains("\x1b[2K"), "the line is cleared: {out}");
    assert!(
        out.stdout.contains("2 files: 2 copied; "),
        "a summary follows: {out}"
    );
    assert_same_tree(&s.path("src"), &s.path("dst"));
}

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
