//! What the copier knows of a file before copying it: a stat snapshot, and paths that survive
//! the trip to a worker process byte for byte (names need not be UTF-8).

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat, Timespec, Timestamps};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ids::FileId;

pub use super::failure::Failure;

/// A path (or a single name) sent between processes as raw bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawPath(pub PathBuf);

impl RawPath {
    /// Wraps a path.
    pub fn new(path: impl Into<PathBuf>) -> RawPath {
        RawPath(path.into())
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl fmt::Debug for RawPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for RawPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0.as_os_str().as_bytes())
    }
}

impl<'de> Deserialize<'de> for RawPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = RawPath;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path as bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RawPath, E> {
                Ok(RawPath(PathBuf::from(OsStr::from_bytes(v))))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawPath, E> {
                Ok(RawPath(PathBuf::from(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawPath, A::Error> {
                let mut bytes = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                self.visit_bytes(&bytes)
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

/// What kind of file an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

/// A stat snapshot of one entry of the source tree.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits, with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte blocks allocated (fewer than `size` needs: the file is sparse).
    pub blocks: u64,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    pub rdev: u64,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
}

impl Meta {
    /// The snapshot of a stat result.
    pub fn from_stat(st: &Stat) -> Meta {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            FileType::Socket => Kind::Socket,
            _ => Kind::File,
        };
        Meta {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size.max(0) as u64,
            blocks: st.st_blocks.max(0) as u64,
            #[allow(clippy::unnecessary_cast)] // u32 on some targets
            nlink: st.st_nlink as u64,
            dev: st.st_dev,
            ino: st.st_ino,
            rdev: st.st_rdev,
            atime: (st.st_atime, st.st_atime_nsec as u32),
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
        }
    }

    /// Whether the file has holes worth keeping (fewer blocks than its size needs).
    pub fn is_sparse(&self) -> bool {
        self.kind == Kind::File && self.size > 0 && self.blocks.saturating_mul(512) < self.size
    }

    /// Whether another name in the tree may share this inode.
    pub fn is_multiply_linked(&self) -> bool {
        self.kind != Kind::Dir && self.nlink > 1
    }

    /// Which file this is (device and inode).
    pub fn id(&self) -> FileId {
        FileId {
            dev: self.dev,
            ino: self.ino,
        }
    }

    /// The access and modification times, for `futimens`/`utimensat`.
    pub fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: Timespec {
                tv_sec: self.atime.0,
                tv_nsec: self.atime.1 as _,
            },
            last_modification: Timespec {
                tv_sec: self.mtime.0,
                tv_nsec: self.mtime.1 as _,
            },
        }
    }
}

/// One entry of a directory: its name and snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    pub name: RawPath,
    pub meta: Meta,
    /// The file itself, opened by the listing that took the snapshot (through it), for the
    /// copy to read: kept by the process that listed it, never sent.
    #[serde(skip)]
    pub source: Option<OwnedFd>,
}

impl Entry {
    /// An entry whose file is not open.
    pub fn new(name: RawPath, meta: Meta) -> Entry {
        Entry {
            name,
            meta,
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_paths_keep_bytes_that_are_not_utf8() {
        let odd = RawPath::new(OsStr::from_bytes(b"caf\xe9/\xff name"));
        let bytes = multiprocess::codec::encode(&odd).unwrap();
        let back: RawPath = multiprocess::codec::decode(&bytes).unwrap();
        assert_eq!(back, odd);
    }
}
