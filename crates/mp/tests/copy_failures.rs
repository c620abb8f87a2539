//! The failure paths: an unreadable file (reported, the rest copied), a full disk (a clean
//! stop), Ctrl-C (a clean stop and the command that resumes), workers killed mid-copy (no
//! hang, nothing partial or hidden left), and `mp` itself killed (a resume cleans up).

// Shared with the other copy tests: not every helper is used here.
#[allow(dead_code)]
mod copy_common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use copy_common::*;

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

/// A source directory whose path goes beyond PATH_MAX: `cp -a` cannot stat it ("File name
/// too long", exit 1) and makes nothing for it; so does `mp copy`, which once left an empty
/// directory there. The directory above it holds more than a batch of files, so that no
/// task copies the deep part as a small tree through open directories (which would copy it
/// whole). The worlds are made alike by one script (too deep for `cp -a` to clone) and
/// compared with `find`, which walks any depth.
#[test]
fn a_path_beyond_path_max_leaves_nothing_behind() {
    let s = Scratch::new("path-max");
    let setup = "mkdir src; cd src; echo top > f; d=$(printf '%0250d' 0)
        for i in $(seq 16); do mkdir $d; cd -P $d; done
        for i in $(seq 1001); do : > f$i; done; mkdir -p $d/sub; echo x > $d/sub/f";
    let worlds = [s.path("cp"), s.path("mp")];
    for world in &worlds {
        fs::create_dir_all(world).unwrap();
        let mut build = Command::new("sh");
        build
            .arg("-c")
            .arg(format!("set -e\n{setup}"))
            .current_dir(world);
        run(build).expect_clean_success();
    }
    let mut cp = Command::new("cp");
    cp.args(["-a", "src", "dst"]).current_dir(&worlds[0]);
    let cp = run(cp);
    let mut mp = mp_command(&[&"copy", &"src", &"dst"]);
    mp.current_dir(&worlds[1]);
    let mp = run(mp);
    let both = format!("cp -a:\n{cp}\nmp copy:\n{mp}");
    assert_eq!((cp.code(), mp.code()), (Some(1), Some(1)), "{both}");
    let message = cp.stderr.trim_end().strip_prefix("cp: ").unwrap();
    assert!(message.contains("File name too long"), "{both}");
    assert!(mp.stderr.contains(message), "{both}");
    // Depth, kind and mode of every entry made: the same (the deepest one, empty).
    let listing = |world: &Path| {
        let mut find = Command::new("find");
        find.args(["dst", "-printf", "%d %y %m %P\n"])
            .current_dir(world);
        let out = run(find);
        assert_eq!(out.code(), Some(0), "{out}");
        let mut lines: Vec<String> = out.stdout.lines().map(String::from).collect();
        lines.sort();
        lines
    };
    let made = listing(&worlds[1]);
    assert_eq!(listing(&worlds[0]), made);
    assert!(made.iter().all(|l| !l.contains(".mp-copy")), "{made:?}");
}
