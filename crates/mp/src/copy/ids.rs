//! The identities a copy keeps apart: a file (device and inode), a copy of one that must be
//! told from a later file reusing its inode number (birth time too), a directory being copied
//! and a large file being copied in spans. Each is its own type, so that one is never taken
//! for another.

use std::fmt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

/// Which file an entry is: its device and inode. Names of one file share it (hard links, and
/// under `-L` the links that lead to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The file `st` describes.
    pub fn of_stat(st: &rfs::Stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

/// Which file a copy is: its device and inode, and, where the file system keeps it, its birth
/// time, which tells it from a later file given the same inode number once it is gone (merged
/// sources replace names, and so free copies).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct CopyId {
    pub file: FileId,
    born: Option<(i64, u32)>,
}

impl CopyId {
    /// The file at `path` (not followed); `Ok(None)` if nothing is there.
    pub fn of(path: &Path) -> rustix::io::Result<Option<CopyId>> {
        let mask = rfs::StatxFlags::INO | rfs::StatxFlags::BTIME;
        match rfs::statx(rfs::CWD, path, AtFlags::SYMLINK_NOFOLLOW, mask) {
            Ok(st) => Ok(Some(CopyId {
                file: FileId {
                    dev: rfs::makedev(st.stx_dev_major, st.stx_dev_minor),
                    ino: st.stx_ino,
                },
                born: (st.stx_mask & rfs::StatxFlags::BTIME.bits() != 0)
                    .then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec)),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The copy `file`, known by its birth time too if `path` holds it.
    pub fn at(path: &Path, file: FileId) -> CopyId {
        let found = CopyId::of(path).ok().flatten();
        found
            .filter(|id| id.file == file)
            .unwrap_or(CopyId::from(file))
    }

    /// Whether two identities are of one file (birth times compared where both are known).
    pub fn same(&self, other: &CopyId) -> bool {
        let born = match (self.born, other.born) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.file == other.file && born
    }

    /// Whether the name `path` holds this copy.
    pub fn is_at(&self, path: &Path) -> bool {
        CopyId::of(path).is_ok_and(|now| now.is_some_and(|now| now.same(self)))
    }
}

impl From<FileId> for CopyId {
    fn from(file: FileId) -> CopyId {
        CopyId { file, born: None }
    }
}

/// A directory being copied, as the coordinator knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirId(u64);

impl DirId {
    /// The top level: the directory the top-level copies go into (not a copy of anything).
    pub const TOP: DirId = DirId(0);

    /// The id after this one.
    pub fn next(self) -> DirId {
        DirId(self.0 + 1)
    }
}

impl fmt::Display for DirId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "directory #{}", self.0)
    }
}

/// A large file being copied in spans, as the coordinator knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LargeId(u64);

impl LargeId {
    /// The first id.
    pub const FIRST: LargeId = LargeId(0);

    /// The id after this one.
    pub fn next(self) -> LargeId {
        LargeId(self.0 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_told_from_a_later_one_of_the_same_inode_number() {
        let path = std::env::temp_dir().join(format!("mp-id-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let id = CopyId::of(&path).unwrap().expect("a file");
        assert!(id.is_at(&path));
        assert!(
            CopyId::from(id.file).is_at(&path),
            "no birth time: inode only"
        );
        if let Some((sec, nsec)) = id.born {
            let reborn = CopyId {
                born: Some((sec, nsec ^ 1)),
                ..id
            };
            assert!(
                !reborn.is_at(&path),
                "the same number, born at another time"
            );
        }
        assert_eq!(CopyId::at(&path, id.file).born, id.born);
        let other = FileId {
            ino: id.file.ino + 1,
            ..id.file
        };
        assert_eq!(CopyId::at(&path, other).born, None);
        std::fs::remove_file(&path).unwrap();
        assert!(CopyId::of(&path).unwrap().is_none());
        assert!(!id.is_at(&path));
    }
}
