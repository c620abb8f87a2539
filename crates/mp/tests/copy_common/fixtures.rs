//! Trees and places most `mp copy` tests use: a small tree, a bulk tree of many files, a
//! tmpfs mounted for one test, and running `mp` as another user.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// A small tree: `dir/a`, `dir/sub/b`, `dir/empty/`.
pub fn small_tree(dir: &Path) {
    write(&dir.join("a"), b"alpha\n");
    write(&dir.join("sub/b"), b"beta\n");
    fs::create_dir(dir.join("empty")).unwrap();
}

/// `dirs` directories of `files` files of `size` bytes each (each file different).
pub fn build_bulk_tree(src: &Path, dirs: usize, files: usize, size: usize) {
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

/// As another user (root's tests run `mp` as uid 65534), with a binary that user can run.
pub fn as_nobody(s: &Scratch) -> Option<Command> {
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

/// [`side_by_side`] as another user (uid 65534, as [`as_nobody`]), who owns both worlds (in
/// `worlds/` of the scratch folder): `cp -a ARGS` and `mp copy ARGS`. `None` (said why) where
/// that cannot be done.
pub fn side_by_side_as_nobody(s: &Scratch, setup: &str, args: &[&str]) -> Option<SideBySide> {
    let mut mp = as_nobody(s)?;
    let root = s.path("worlds");
    let (cp_world, mp_world) = build_worlds(&root, setup);
    let mut own = Command::new("chown");
    own.args(["-R", "65534:65534"]).arg(&root);
    run(own).expect_clean_success();
    let mut cp = Command::new("cp");
    cp.uid(65534).gid(65534).arg("-a").args(args);
    cp.current_dir(&cp_world);
    mp.arg("copy").args(args).current_dir(&mp_world);
    Some(SideBySide {
        cp: run(cp),
        mp: run(mp),
        cp_world,
        mp_world,
    })
}

/// Whether `other` users may reach `path` (every directory on the way searchable by all).
pub fn reachable_by_others(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// A tmpfs mounted for one test, unmounted on drop.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "2m") at `dir`; `None` (with the reason printed) where
    /// that is not possible.
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
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

/// An XFS image with reflinks (where `copy_file_range` may share extents) mounted at `dir`
/// for one test, unmounted on drop as a [`Tmpfs`] is; `None` (with the reason printed)
/// without root or `mkfs.xfs` (xfsprogs).
pub fn mount_xfs(image: &Path, dir: &Path) -> Option<Tmpfs> {
    if !is_root() {
        eprintln!("skipping: mounting an image needs root");
        return None;
    }
    fs::create_dir_all(dir).unwrap();
    fs::File::create(image).unwrap().set_len(600 << 20).unwrap();
    let mut mkfs = Command::new("mkfs.xfs");
    mkfs.args(["-q", "-m", "reflink=1"]).arg(image);
    let made = run_if_installed(mkfs).is_some_and(|out| out.code() == Some(0));
    let mut mount = Command::new("mount");
    mount.args(["-o", "loop"]).arg(image).arg(dir);
    if !made || run(mount).code() != Some(0) {
        eprintln!("skipping: no XFS with reflinks here (mkfs.xfs is in xfsprogs)");
        return None;
    }
    Some(Tmpfs {
        dir: dir.to_path_buf(),
    })
}

/// Whether any extent of `path` is shared with another file, as `filefrag -v` says (after
/// a sync); `None` without `filefrag`. Each runs within the tests' deadline.
pub fn shares_extents(path: &Path) -> Option<bool> {
    let mut filefrag = Command::new("filefrag");
    filefrag.args(["-s", "-v"]).arg(path);
    let out = run_if_installed(filefrag)?;
    Some(out.stdout.contains("shared"))
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
