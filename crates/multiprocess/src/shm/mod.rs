//! Shared memory between processes, and the few primitives that make it safe to share:
//!
//! - [`Region`]: an anonymous `memfd` mapped into every process that holds it. No name exists in
//!   any file system, so nothing is left behind when processes crash; the memory is freed when
//!   the last process unmaps it. A region travels to a child as a descriptor (see `codec`).
//! - [`deque::SharedDeque`]: the shared-memory ring of variable-size records that queues,
//!   pipes (and so pool tasks and results) all travel through.
//! - [`RobustMutex`]: a process-shared, *robust* pthread mutex: when its holder dies, the next
//!   locker is told so (`EOWNERDEAD`) instead of waiting for ever (in `sys/mutex.rs`, with the
//!   futex calls of `sys/futex.rs`: waiting on and waking a 32-bit word of a region, across
//!   processes).
//! - [`Journal`]: a redo log that makes a multi-word update of shared state all-or-nothing
//!   across a crash of the lock holder.
//! - [`EventCount`]: "something changed" notifications that cost no system call while nobody
//!   sleeps.
//!
//! Together they give the rule every shared structure here follows: take the robust mutex;
//! write bulk data only into space that nothing references yet; publish it with one journal
//! commit; notify. A process killed at any instant leaves either the old state or the new one,
//! never a torn one, and never a lock that blocks the survivors.

mod cell;
pub(crate) mod deque;
mod eventcount;
mod items;
mod journal;
mod region;
mod ring;
mod wait;

pub(crate) use crate::sys::{RobustMutex, RobustMutexGuard};
pub(crate) use cell::{ShmCell, ShmState};
pub(crate) use eventcount::{EventCount, MAX_SLEEP};
pub(crate) use journal::Journal;
pub(crate) use region::Region;
