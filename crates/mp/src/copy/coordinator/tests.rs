//! The engine run in-process, watched through its progress seam: every name is counted once
//! in the progress, whatever copies it (a worker, the coordinator linking a hard-link group,
//! a large file's spans or its clone) and when it is found up to date instead.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::dispatch::{Done, TICK};
use super::{Coordinator, Outcome};
use crate::copy::config::{Config, Reflink};
use crate::copy::ids::DirId;
use crate::copy::meta::Meta;
use crate::copy::plan;
use crate::copy::protocol::LARGE_FILE;
use crate::copy::status::{Progress, StatusUpdater, Update};

/// What the engine reported.
#[derive(Default)]
struct Recorder {
    done: Progress,
    failures: Vec<String>,
}

impl StatusUpdater for Recorder {
    fn update(&mut self, update: Update<'_>) {
        match update {
            Update::Progress(p) => self.done += p,
            Update::Failed(f) => self.failures.push(format!("{f:?}")),
            Update::Warned(w) => self.failures.push(w.to_string()),
            Update::Stopping(stop) => self.failures.push(format!("{stop:?}")),
            Update::Tick | Update::Copied(_) => {}
        }
    }
}

/// Copies `src` to `dst` with `config`, as `mp copy -T` does.
fn copy(config: Config, src: &Path, dst: &Path) -> (Outcome, Recorder) {
    let meta = Meta::from_stat(&rustix::fs::lstat(src).expect("a source"));
    let mut recorder = Recorder::default();
    let mut coordinator = Coordinator::new(config, &mut recorder).expect("workers");
    let (src, dst) = (src.to_path_buf(), dst.to_path_buf());
    coordinator.add(plan::Copy { src, dst, meta });
    let outcome = coordinator.run();
    (outcome, recorder)
}

/// A directory of its own for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mp-engine-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A sparse file of `len` bytes with `data` bytes of data at its start.
fn sparse(path: &Path, len: u64, data: usize) {
    let file = fs::File::create(path).unwrap();
    file.set_len(len).unwrap();
    file.write_all_at(&vec![7u8; data], 0).unwrap();
}

/// A tree of every kind of name the copy counts: small files, a symbolic link, a hard-link
/// group of three small names, a large sparse file, and a large one of two names. Gives the
/// number of names (not directories) and the bytes of data the copies read.
fn build(src: &Path) -> (u64, u64) {
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a"), [1u8; 3000]).unwrap();
    fs::write(src.join("sub/c"), [2u8; 7000]).unwrap();
    std::os::unix::fs::symlink("a", src.join("link")).unwrap();
    fs::write(src.join("h1"), [3u8; 1000]).unwrap();
    fs::hard_link(src.join("h1"), src.join("sub/h2")).unwrap();
    fs::hard_link(src.join("h1"), src.join("sub/h3")).unwrap();
    sparse(&src.join("big"), LARGE_FILE + (4 << 20), 2 << 20);
    sparse(&src.join("huge1"), LARGE_FILE, 1 << 20);
    fs::hard_link(src.join("huge1"), src.join("sub/huge2")).unwrap();
    (9, 3000 + 7000 + 1000 + (2 << 20) + (1 << 20))
}

fn config(resume: bool) -> Config {
    Config {
        jobs: 2,
        resume,
        progress: true,
        ..Config::default()
    }
}

#[test]
fn progress_counts_every_name_once_copied_or_kept() {
    let s = Scratch::new("progress");
    let (src, dst) = (s.0.join("src"), s.0.join("dst"));
    let (names, data) = build(&src);
    let (outcome, seen) = copy(config(false), &src, &dst);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert_eq!(outcome.counts.hard_links, 3);
    assert_eq!(seen.done.files, names, "every name once");
    // Holes are not read: the bytes are the data, each file's once.
    assert!(seen.done.bytes >= data, "{} < {data}", seen.done.bytes);
    assert!(seen.done.bytes < data + (1 << 20), "{}", seen.done.bytes);
    // A resume finds everything up to date: every name counts, no byte.
    let (outcome, seen) = copy(config(true), &src, &dst);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert_eq!((outcome.counts.files, outcome.counts.hard_links), (0, 0));
    assert_eq!(
        seen.done,
        Progress {
            files: names,
            bytes: 0
        }
    );
}

/// Runs a command within 30 s; whether it succeeded.
fn run(cmd: &mut Command) -> bool {
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// An XFS image with reflinks mounted at `dir`, unmounted on drop.
struct Xfs(PathBuf);

impl Xfs {
    /// `None` (said why) where it cannot be made: not root, no `mkfs.xfs`.
    fn mount(image: &Path, dir: &Path) -> Option<Xfs> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: mounting an image needs root");
            return None;
        }
        fs::create_dir_all(dir).unwrap();
        fs::File::create(image).unwrap().set_len(600 << 20).unwrap();
        let made = run(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(image));
        if !made
            || !run(Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(image)
                .arg(dir))
        {
            eprintln!("skipping: no XFS with reflinks here (mkfs.xfs is in xfsprogs)");
            return None;
        }
        Some(Xfs(dir.to_path_buf()))
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        if !run(Command::new("umount").arg(&self.0)) {
            run(Command::new("umount").arg("-l").arg(&self.0));
        }
    }
}

/// On a file system that clones, a large file is cloned whole by its start task: it counts
/// as a name and as all its bytes, as any cloned file does (it once did not count at all).
#[test]
fn a_cloned_large_file_counts_in_the_progress() {
    let s = Scratch::new("clone");
    let Some(xfs) = Xfs::mount(&s.0.join("xfs.img"), &s.0.join("mnt")) else {
        return;
    };
    let (src, dst) = (xfs.0.join("src"), xfs.0.join("dst"));
    fs::create_dir_all(&src).unwrap();
    sparse(&src.join("big"), LARGE_FILE + (4 << 20), 1 << 20);
    fs::write(src.join("small"), [1u8; 5000]).unwrap();
    let config = Config {
        reflink: Reflink::Always,
        ..config(false)
    };
    let (outcome, seen) = copy(config, &src, &dst);
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert_eq!(outcome.counts.files, 2);
    let size = LARGE_FILE + (4 << 20) + 5000;
    assert_eq!(
        seen.done,
        Progress {
            files: 2,
            bytes: size
        }
    );
    assert_eq!(fs::read(dst.join("small")).unwrap(), [1u8; 5000]);
    drop(xfs);
}

/// A hard-link group's copy is in a directory the coordinator renames from its hidden name;
/// a second name of the group is met after that rename ran but before it was reported (the
/// order is forced here; under load it happened by chance). The second name must still be
/// linked to the copy, not copied apart as if the copy were gone.
#[test]
fn a_link_met_while_its_copy_is_renamed_is_still_linked() {
    let s = Scratch::new("renaming");
    let (src, dst) = (s.0.join("src"), s.0.join("dst"));
    for dir in ["a", "b"] {
        fs::create_dir_all(src.join(dir)).unwrap();
        // A file of its own: `a` is written hidden and renamed by the coordinator.
        fs::write(src.join(dir).join("own"), [4u8; 100]).unwrap();
    }
    fs::write(src.join("a/first"), [5u8; 100]).unwrap();
    fs::hard_link(src.join("a/first"), src.join("b/second")).unwrap();
    let meta = Meta::from_stat(&rustix::fs::lstat(&src).unwrap());
    let mut recorder = Recorder::default();
    let mut c = Coordinator::new(config(false), &mut recorder).expect("workers");
    let (s2, d2) = (src.clone(), dst.clone());
    c.add(plan::Copy {
        src: s2,
        dst: d2,
        meta,
    });
    let named = |c: &Coordinator<'_>, id: &DirId, name: &str| {
        c.tree.nodes.get(id).is_some_and(|n| n.src.ends_with(name))
    };
    // `b`'s listing waits until `a`'s rename has run (its report received).
    let mut b_listed = None;
    let mut renamed = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.dispatch.idle() || b_listed.is_some() {
        assert!(Instant::now() < deadline, "the copy takes too long");
        c.dispatch.fill(false).unwrap();
        let Some(done) = c.dispatch.next(TICK) else {
            continue;
        };
        match done {
            Done::Dir(id, report) if named(&c, &id, "b") && !renamed => {
                b_listed = Some(Done::Dir(id, report));
            }
            Done::Finish(id, result) if named(&c, &id, "a") => {
                renamed = true;
                assert!(dst.join("a/first").exists(), "renamed already");
                if let Some(b) = b_listed.take() {
                    c.route(b);
                }
                c.route(Done::Finish(id, result));
            }
            done => c.route(done),
        }
    }
    assert!(renamed, "`a` was renamed by the coordinator");
    c.dispatch.shut_down();
    let outcome = c.record.finish();
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!((outcome.counts.files, outcome.counts.hard_links), (3, 1));
    let ino = |p: &str| rustix::fs::lstat(dst.join(p)).unwrap().st_ino;
    assert_eq!(ino("a/first"), ino("b/second"), "linked");
}
