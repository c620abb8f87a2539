//! [`Sideband`]: how the OS handles inside a FIFO queue's items (zero-copy buffers, queues,
//! connections, ...) travel beside the ring, so that an item can carry them to a process that
//! is already running.
//!
//! ## Design
//!
//! A descriptor cannot live in shared memory; it can live in a socket, as a message in transit.
//! So each FIFO queue has a datagram socket connected to itself (see `sys::self_datagram`: no
//! other socket can send to it), held by every process that holds the queue: what one sends on
//! it, any of them receives from it. A producer, under the tail lock, takes the next id
//! (`fd_seq`, see `deque.rs`), sends one datagram `[id]` with the item's descriptors attached,
//! and then publishes the record, which names the id. Since producers do both under the tail
//! lock, datagrams are in the order of the records that name them.
//!
//! A consumer, under the head lock, *peeks* at the first datagram (the kernel gives it copies
//! of the descriptors and leaves the datagram queued): if its id is the record's, those are
//! the item's descriptors; if it is smaller, it is an orphan and is dropped. After releasing
//! the record, the consumer drops the datagram for good.
//!
//! ## Crash safety
//!
//! Orphans come from a producer killed between sending and publishing (its record never
//! appears) or a consumer killed between releasing the record and dropping the datagram; both
//! sit before the datagram of any later record, and are dropped by the consumer of that record.
//! A consumer killed before releasing leaves the datagram in place (it only peeked), so the next
//! consumer finds it. A descriptor in transit belongs to the socket, so it is freed with the
//! queue when the last process holding the queue lets go, even if every one of them crashed.
//!
//! The kernel bounds what a socket holds in transit (a few hundred items here): a producer
//! that finds it full waits as for a full queue.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{FdIn, FdOut};
use crate::error::{Error, Result};
use crate::shm::deque::{FdChannel, Wait};
use crate::shm::MAX_SLEEP;
use crate::sys;

/// The datagram socket of a FIFO queue (see the module docs).
#[derive(Debug)]
pub(crate) struct Sideband {
    sock: UnixDatagram,
}

impl Sideband {
    pub(crate) fn new() -> Result<Sideband> {
        Ok(Sideband {
            sock: sys::self_datagram()?,
        })
    }

    /// Drops the first datagram (and closes the copies of its descriptors).
    fn drop_first(&self) -> Result<()> {
        let mut id = [0u8; 8];
        sys::recv_datagram(&self.sock, &mut id, false)?;
        Ok(())
    }
}

impl FdChannel for Sideband {
    fn send(&self, id: u64, fds: Vec<OwnedFd>, wait: Wait) -> Result<()> {
        let raw: Vec<_> = fds.iter().map(sys::raw).collect();
        if raw.len() > sys::MAX_FDS_PER_MESSAGE {
            return Err(Error::Encode(format!(
                "an item holds {} OS handles; at most {} fit in one",
                raw.len(),
                sys::MAX_FDS_PER_MESSAGE
            )));
        }
        while !sys::send_datagram(&self.sock, &id.to_le_bytes(), &raw)? {
            let Some(left) = wait.left() else {
                return Err(Error::Full);
            };
            sys::wait_writable(
                self.sock.as_fd(),
                left.map_or(MAX_SLEEP, |l| l.min(MAX_SLEEP)),
            )?;
        }
        Ok(())
    }

    fn take(&self, id: u64) -> Result<Vec<OwnedFd>> {
        loop {
            let mut got = [0u8; 8];
            let Some((n, fds)) = sys::recv_datagram(&self.sock, &mut got, true)? else {
                return Err(Error::Decode(
                    "the OS handles of a queue item are missing".into(),
                ));
            };
            let got = u64::from_le_bytes(got);
            if n == 8 && got == id {
                return Ok(fds);
            }
            if n == 8 && got > id {
                return Err(Error::Decode(
                    "the OS handles of a queue item were lost".into(),
                ));
            }
            drop(fds);
            self.drop_first()?; // an orphan (see the module docs)
        }
    }

    fn taken(&self, _id: u64) {
        // Under the head lock, the first datagram is the record's: `take` just found it there.
        let _ = self.drop_first();
    }
}

/// How the socket travels with a queue handle: as a descriptor.
impl Serialize for Sideband {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        FdOut(self.sock.as_fd()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Sideband {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let FdIn(sock) = FdIn::deserialize(d)?;
        Ok(Sideband {
            sock: UnixDatagram::from(sock),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A descriptor of a fresh file, and its inode.
    fn file() -> (OwnedFd, u64) {
        let f = std::fs::File::from(crate::sys::memfd_create("sideband-test").unwrap());
        let ino = f.metadata().unwrap().ino();
        (OwnedFd::from(f), ino)
    }

    fn inode(fd: &OwnedFd) -> u64 {
        std::fs::File::from(fd.try_clone().unwrap())
            .metadata()
            .unwrap()
            .ino()
    }

    /// The descriptors of a producer that died before publishing (id 1), and of a consumer
    /// that died after taking its record but before dropping the datagram (id 2), are skipped
    /// by the consumer of the next record.
    #[test]
    fn orphans_are_skipped() {
        let band = Sideband::new().unwrap();
        let (a, _) = file();
        let (b, ib) = file();
        let (c, ic) = file();
        band.send(1, vec![a], Wait::No).unwrap();
        band.send(2, vec![b], Wait::No).unwrap();
        band.send(3, vec![c], Wait::No).unwrap();
        // Record 2's consumer peeks (skipping orphan 1) and dies before `taken`.
        let got = band.take(2).unwrap();
        assert_eq!(got.iter().map(inode).collect::<Vec<_>>(), [ib]);
        drop(got);
        // Record 3's consumer finds its own behind the leftover of record 2.
        let got = band.take(3).unwrap();
        assert_eq!(got.iter().map(inode).collect::<Vec<_>>(), [ic]);
        band.taken(3);
        assert!(band.take(4).is_err(), "nothing is left");
    }

    /// A record whose descriptors are not in the socket any more is an error, not a mix-up.
    #[test]
    fn lost_descriptors_are_an_error() {
        let band = Sideband::new().unwrap();
        let (a, _) = file();
        band.send(5, vec![a], Wait::No).unwrap();
        assert!(matches!(band.take(4), Err(Error::Decode(_))));
        assert_eq!(band.take(5).unwrap().len(), 1);
    }
}
