//! [`SharedFds`]: one descriptor per open file among the handles of all pending tasks.
//!
//! Each task's arguments are encoded at the call, and the descriptors of the handles among them
//! (a queue, an event, a buffer) wait with the task until a worker takes it. Ten thousand tasks
//! that each carry the same queue would hold ten thousand copies of each of its descriptors,
//! past the process's limit; so the pool keeps one descriptor per open file (device, inode and
//! access mode: descriptors with the same key are interchangeable) and the tasks share it.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

use crate::sys;

/// A descriptor shared by the pending tasks that carry it.
pub(crate) type SharedFd = Arc<OwnedFd>;

/// The table of shared descriptors (see the module docs).
#[derive(Default)]
pub(crate) struct SharedFds {
    by_file: Mutex<HashMap<(u64, u64, i32), Weak<OwnedFd>>>,
}

impl SharedFds {
    /// The shared descriptors for `fds` (each one closed when a shared one stands for it).
    pub(crate) fn share(&self, fds: Vec<OwnedFd>) -> Vec<SharedFd> {
        if fds.is_empty() {
            return Vec::new();
        }
        let mut by_file = self.by_file.lock().unwrap_or_else(|e| e.into_inner());
        if by_file.len() > 256 {
            by_file.retain(|_, fd| fd.strong_count() > 0);
        }
        fds.into_iter()
            .map(|fd| {
                let Ok(key) = sys::open_file_key(fd.as_fd()) else {
                    return Arc::new(fd);
                };
                if let Some(shared) = by_file.get(&key).and_then(Weak::upgrade) {
                    return shared;
                }
                let shared = Arc::new(fd);
                by_file.insert(key, Arc::downgrade(&shared));
                shared
            })
            .collect()
    }
}
