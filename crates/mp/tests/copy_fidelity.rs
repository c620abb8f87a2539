//! `mp copy` against `cp -a`, entry by entry: contents, kinds, modes, owners, times of files,
//! links and directories, hard-link groups, holes, extended attributes, FIFOs, devices, odd
//! names; with the default workers, with one, and onto another file system; access times of
//! the sources left alone; setuid and setgid bits, setgid directories and search-only
//! directories as `cp -a` treats them.

// Shared with the other copy tests: not every helper is used here.
#[allow(dead_code)]
mod copy_common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use copy_common::*;

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

/// Extended attributes of links, FIFOs, devices and sockets are kept, as `cp -a` keeps them.
/// Linux allows `user.*` only on files and directories: these hold `trusted.*` and
/// `security.*` ones, which need root. Under `-L` a FIFO reached through a link gets the
/// FIFO's attributes, as a file does (`cp -aL` gives it the link's own: a quirk not copied).
#[test]
fn special_files_keep_their_extended_attributes_as_cp() {
    if !is_root() {
        eprintln!("skipping: trusted.* attributes need root (user.* cannot go on these)");
        return;
    }
    let s = Scratch::new("special-xattrs");
    let src = s.path("cp/src");
    fs::create_dir_all(&src).unwrap();
    std::os::unix::fs::symlink("nowhere", src.join("link")).unwrap();
    std::os::unix::fs::symlink("fifo", src.join("to_fifo")).unwrap();
    mkfifo(&src.join("fifo"), 0o640);
    let device = mknod_char(&src.join("null"), 1, 3).is_ok();
    drop(std::os::unix::net::UnixListener::bind(src.join("socket")).unwrap());
    for name in ["link", "to_fifo", "fifo", "null", "socket"] {
        if name == "null" && !device {
            continue;
        }
        for (attr, value) in [("trusted.mp", name.as_bytes()), ("security.mp", b"kept")] {
            if let Err(e) = set_xattr(&src.join(name), attr, value) {
                eprintln!("skipping: {attr} cannot be set here: {e}");
                return;
            }
        }
    }
    let runs = side_by_side(&s.path(""), ":", &["src", "dst"], &["src", "dst"]);
    runs.mp.expect_clean_success();
    runs.assert_same_outcome(&[""]);
    let mp_dst = runs.mp_world.join("dst");
    for name in ["link", "to_fifo", "fifo", "socket"] {
        let copied = xattrs(&mp_dst.join(name));
        assert_eq!(copied[&b"trusted.mp"[..]], name.as_bytes(), "{name}");
    }

    fs::remove_file(runs.mp_world.join("src/link")).unwrap();
    let followed = runs.mp_world.join("followed");
    mp(&[&"copy", &"-L", &runs.mp_world.join("src"), &followed]).expect_clean_success();
    assert_eq!(xattrs(&followed.join("to_fifo")), xattrs(&src.join("fifo")));
}

/// `--reflink=never` never shares extents, as `cp --reflink=never`: on XFS, where
/// `copy_file_range` clones, a small file, a file of a few MiB and a large one copied in
/// spans all get extents of their own. (`auto` clones there: the check sees sharing.)
#[test]
fn reflink_never_shares_no_extents() {
    let s = Scratch::new("reflink-never");
    let mnt = s.path("mnt");
    let Some(xfs) = mount_xfs(&s.path("xfs.img"), &mnt) else {
        return;
    };
    let src = mnt.join("src");
    write(&src.join("small"), &pattern(1, 100 * KIB));
    write(&src.join("mib"), &pattern(2, 8 * MIB));
    write_sparse(&src.join("large"), 300 << 20, &[(0, pattern(3, 4 * MIB))]);
    let shared = |dir: &Path| -> Vec<(&str, Option<bool>)> {
        ["small", "mib", "large"]
            .into_iter()
            .map(|name| (name, shares_extents(&dir.join(name))))
            .collect()
    };
    if shared(&src).iter().any(|(_, s)| s.is_none()) {
        eprintln!("skipping: no filefrag");
        return;
    }
    mp(&[
        &"copy",
        &"-j",
        &"2",
        &"--reflink=never",
        &src,
        &mnt.join("never"),
    ])
    .expect_clean_success();
    assert_same_tree(&src, &mnt.join("never"));
    let unshared = vec![
        ("small", Some(false)),
        ("mib", Some(false)),
        ("large", Some(false)),
    ];
    assert_eq!(shared(&mnt.join("never")), unshared);
    assert_eq!(shared(&src), unshared, "the sources share nothing either");
    mp(&[&"copy", &"--reflink=auto", &src, &mnt.join("auto")]).expect_clean_success();
    assert_eq!(shared(&mnt.join("auto"))[1], ("mib", Some(true)));
    drop(xfs);
}

/// A file that says it is empty but has contents (`/proc/version`) is read to its end, as
/// `cp -a` reads it.
#[test]
fn a_file_that_says_it_is_empty_is_read_to_its_end() {
    let version = Path::new("/proc/version");
    if fs::metadata(version).map(|m| m.len()).ok() != Some(0) {
        eprintln!("skipping: no /proc/version of size 0 here");
        return;
    }
    let s = Scratch::new("proc-file");
    let runs = side_by_side(
        &s.path(""),
        ":",
        &["/proc/version", "v"],
        &["/proc/version", "v"],
    );
    runs.mp.expect_clean_success();
    runs.assert_same_outcome(&[""]);
    assert_eq!(
        fs::read(runs.mp_world.join("v")).unwrap(),
        fs::read(version).unwrap()
    );
}
