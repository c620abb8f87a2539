//! A copy's metadata: owner and group (where permitted, without setuid and setgid bits under
//! another owner, as `cp -a`), mode, extended attributes (ACLs included) and times, set in the
//! order that keeps each; and what a file just created in a directory is known to be.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};
use rustix::io::Errno;

use crate::copy::meta::{Kind, Meta};

/// This process's effective user and group, asked once.
fn identity() -> (rfs::Uid, rfs::Gid) {
    static IDS: std::sync::OnceLock<(rfs::Uid, rfs::Gid)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| (rustix::process::geteuid(), rustix::process::getegid()))
}

/// Whether this process may give files away (`chown` to any owner).
pub fn is_root() -> bool {
    identity().0.is_root()
}

/// Sets owner, mode, extended attributes and times of an open copy, in the order that keeps
/// each: owner first (it clears setuid bits), mode (unless `created` vouches for it: a
/// default ACL on the destination may mask the mode a file is created with), attributes,
/// times last. Owner and attributes are kept where permitted, as `cp -a` does. Without
/// `created`, the copy is asked what it is.
pub fn apply_file_meta(
    dst: BorrowedFd<'_>,
    src: Option<BorrowedFd<'_>>,
    meta: &Meta,
    created: Option<Created>,
) -> io::Result<()> {
    let created = match created {
        Some(c) => c,
        None => {
            let st = rfs::fstat(dst)?;
            Created {
                owner: (st.st_uid, st.st_gid),
                mode: None,
            }
        }
    };
    let mode = set_owner(|uid, gid| rfs::fchown(dst, uid, gid), created.owner, meta)?;
    if created.mode != Some(mode) {
        rfs::fchmod(dst, Mode::from_raw_mode(mode))?;
    }
    if let Some(src) = src {
        copy_xattrs_fd(src, dst);
    }
    rfs::futimens(dst, &meta.timestamps())?;
    Ok(())
}

/// What a file just created in a directory is known to be, without asking (see
/// [`Created::in_dir`]).
#[derive(Clone, Copy, Debug)]
pub struct Created {
    /// Its owner and group.
    pub owner: (u32, u32),
    /// Its mode, if certain (no default ACL in the directory to mask it).
    pub mode: Option<u32>,
}

impl Created {
    /// What a file created with `mode` (under umask 0) in the directory `dir` (at `path`) is:
    /// ours, of the directory's group if it is setgid, with its mode unless the directory has
    /// a default ACL. Asked once per directory, not once per file. Also returns what `dir`
    /// itself is (its owner; its mode is not vouched for).
    pub fn in_dir(
        dir: BorrowedFd<'_>,
        path: &Path,
    ) -> io::Result<(Created, impl Fn(u32) -> Created)> {
        let st = rfs::fstat(dir)?;
        let itself = Created {
            owner: (st.st_uid, st.st_gid),
            mode: None,
        };
        let (euid, egid) = identity();
        let gid = if st.st_mode & libc::S_ISGID != 0 {
            st.st_gid
        } else {
            egid.as_raw()
        };
        let name = c"system.posix_acl_default";
        // An `O_PATH` descriptor cannot be asked: the path is, then.
        let acl = match rfs::fgetxattr(dir, name, &mut [0u8; 0][..]) {
            Err(Errno::BADF) => rfs::lgetxattr(path, name, &mut [0u8; 0][..]),
            other => other,
        };
        let plain = matches!(acl, Err(Errno::NODATA | Errno::OPNOTSUPP));
        let owner = (euid.as_raw(), gid);
        let created = move |mode: u32| Created {
            owner,
            mode: plain.then_some(mode),
        };
        Ok((itself, created))
    }
}

/// Gives a copy owned by `now` (uid, gid) its source's owner and group where permitted, and
/// returns the mode it may then have: without the source's owner no setuid bit, without its
/// group no setgid bit (as `cp -a`: a copy must not gain powers under another owner).
fn set_owner(
    chown: impl Fn(Option<rfs::Uid>, Option<rfs::Gid>) -> rustix::io::Result<()>,
    now: (u32, u32),
    meta: &Meta,
) -> io::Result<u32> {
    let root = identity().0.is_root();
    let want_uid = (root && meta.uid != now.0).then(|| rfs::Uid::from_raw(meta.uid));
    let want_gid = (meta.gid != now.1).then(|| rfs::Gid::from_raw(meta.gid));
    let (mut uid_kept, mut gid_kept) = (meta.uid == now.0, meta.gid == now.1);
    if want_uid.is_some() || want_gid.is_some() {
        match chown(want_uid, want_gid) {
            Ok(()) => (uid_kept, gid_kept) = (uid_kept || root, true),
            Err(Errno::PERM | Errno::ACCESS) => {
                // The group alone may still be allowed (one of ours).
                if want_uid.is_some() && want_gid.is_some() && chown(None, want_gid).is_ok() {
                    gid_kept = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut mode = meta.mode;
    if !uid_kept {
        mode &= !libc::S_ISUID;
    }
    if !gid_kept {
        mode &= !libc::S_ISGID;
    }
    Ok(mode)
}

/// Copies the extended attributes (ACLs included) an open file has, ignoring those this
/// process or the destination's file system may not set.
fn copy_xattrs_fd(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) {
    copy_xattrs(
        || rfs::flistxattr_query(src),
        |buf| rfs::flistxattr(src, buf),
        |name, buf| rfs::fgetxattr(src, name, buf),
        |name, value| rfs::fsetxattr(dst, name, value, rfs::XattrFlags::empty()),
    );
}

/// Copies the extended attributes of `src` (a path, not followed) onto `dst`.
fn copy_xattrs_path(src: &Path, dst: &Path) {
    copy_xattrs(
        || rfs::llistxattr_query(src),
        |buf| rfs::llistxattr(src, buf),
        |name, buf| rfs::lgetxattr(src, name, buf),
        |name, value| rfs::lsetxattr(dst, name, value, rfs::XattrFlags::empty()),
    );
}

/// Reads with `read` into a buffer of `size` bytes, grown while the answer does not fit
/// (ERANGE).
fn read_growing(
    size: usize,
    mut read: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size.max(1)];
    loop {
        match read(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < 64 << 20 => {
                let bigger = buf.len() * 4;
                buf.resize(bigger, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The attribute copy itself, over sizing, listing, reading and setting functions.
/// Attributes that cannot be read or set (no permission, not supported there) are skipped,
/// as `cp -a` does. The list's size is asked first: most files have no attributes, and then
/// nothing is allocated, not even by the kernel.
fn copy_xattrs(
    list_size: impl FnOnce() -> rustix::io::Result<usize>,
    list: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    mut get: impl FnMut(&CStr, &mut [u8]) -> rustix::io::Result<usize>,
    mut set: impl FnMut(&CStr, &[u8]) -> rustix::io::Result<()>,
) {
    let size = match list_size() {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    let Ok(names) = read_growing(size, list) else {
        return;
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = CString::new(name) else {
            continue;
        };
        if let Ok(value) = read_growing(256, |buf| get(&name, buf)) {
            let _ = set(&name, &value);
        }
    }
}

/// Sets a directory's owner, mode, attributes and times, once everything inside it is
/// written (a read-only directory can then still be filled).
pub fn apply_dir_meta(src: &Path, dst: &Path, meta: &Meta) -> io::Result<()> {
    let now = rfs::lstat(dst)?;
    if FileType::from_raw_mode(now.st_mode) != FileType::Directory {
        return Err(io::Error::other("no longer a directory"));
    }
    let mode = set_owner(|u, g| rfs::chown(dst, u, g), (now.st_uid, now.st_gid), meta)?;
    copy_xattrs_path(src, dst);
    rfs::chmod(dst, Mode::from_raw_mode(mode))?;
    rfs::utimensat(rfs::CWD, dst, &meta.timestamps(), AtFlags::empty())?;
    Ok(())
}

/// [`apply_dir_meta`] through open descriptors of both directories (`dst` readable, not
/// `O_PATH`; `itself` what it is, as [`Created::in_dir`] found): nothing is looked up by path.
pub fn apply_open_dir_meta(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    meta: &Meta,
    itself: Created,
) -> io::Result<()> {
    apply_file_meta(dst, Some(src), meta, Some(itself))
}

/// Sets owner, mode, extended attributes and times of a link or special file by name (not
/// followed), which this process has just made: `owner` is its owner and group (see
/// [`Created`]). Its extended attributes are those of the source at `src` (followed when
/// `follow`, as under `-L`), set through its path `dst`, as `cp -a` copies them: a link, a
/// FIFO, a device or a socket can hold `trusted.*` and `security.*` ones (Linux allows
/// `user.*` only on files and directories).
pub fn apply_node_meta(
    (dir, name): (BorrowedFd<'_>, &Path),
    (src, follow): (&Path, bool),
    dst: &Path,
    meta: &Meta,
    owner: (u32, u32),
) -> io::Result<()> {
    let mode = set_owner(
        |u, g| rfs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW),
        owner,
        meta,
    )?;
    if meta.kind != Kind::Symlink {
        rfs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())?;
    }
    match follow {
        true => {
            if let Ok(followed) = std::fs::canonicalize(src) {
                copy_xattrs_path(&followed, dst);
            }
        }
        false => copy_xattrs_path(src, dst),
    }
    rfs::utimensat(dir, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}
