//! The pool worker: a daemonic process that runs tasks sent over its pipe, one after another,
//! and reports each outcome.
//!
//! A worker runs its tasks strictly in the order they arrive and answers each before it starts
//! the next. So when a worker dies, the oldest task it had not answered is the one it was
//! running (that task fails with `WorkerLost`), and any later ones never started (the pool
//! gives them to another worker).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::buffer::Payload;
use crate::codec::{FdIn, FdOut};
use crate::connection::Connection;
use crate::error::Error;
use crate::process::bootstrap::{self, Report};
use crate::process::target;
use crate::sys;

/// A task, as the supervisor sends it. (`H` and `A` are `serde::de::IgnoredAny` when the supervisor
/// reads back a task it sent, for its id only.)
#[derive(Serialize, Deserialize)]
pub(crate) struct Task<H = Handles, A = Payload> {
    pub id: u64,
    /// The chunk entry (`target::run_chunk::<F, Args>`), as an offset (see `target.rs`).
    pub entry: i64,
    /// The encoded `Vec<Args>` (one byte string on the wire, not an array of numbers; a large
    /// one in a zero-copy buffer).
    pub args: A,
    /// Descriptors of handles among the arguments.
    pub handles: H,
}

/// What a worker says about a task.
#[derive(Serialize, Deserialize)]
pub(crate) struct Answer {
    pub id: u64,
    pub report: Report,
}

/// A message to a worker.
#[derive(Serialize, Deserialize)]
pub(crate) enum ToWorker<H = Handles, A = Payload> {
    Run(Task<H, A>),
    /// Finish: exit once the tasks sent before have been answered.
    Stop,
}

/// Descriptors carried by a message (through the connection's handle socket).
#[derive(Default)]
pub(crate) struct Handles(pub Vec<OwnedFd>);

impl Serialize for Handles {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fds(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Handles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fds = Vec::<FdIn>::deserialize(d)?;
        Ok(Handles(fds.into_iter().map(|f| f.0).collect()))
    }
}

/// A pool initializer: its entry, its encoded arguments, and the descriptors of the handles
/// (queues, events, ...) among them, which every worker receives when it starts.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Initializer {
    pub entry: i64,
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    pub handles: SharedHandles,
}

/// Descriptors shared by every clone of a [`WorkerConfig`]; each worker start sends copies.
#[derive(Clone, Default)]
pub(crate) struct SharedHandles(pub std::sync::Arc<Vec<OwnedFd>>);

impl Serialize for SharedHandles {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fds(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for SharedHandles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SharedHandles(std::sync::Arc::new(
            Handles::deserialize(d)?.0,
        )))
    }
}

impl SharedHandles {
    /// The descriptors, as owned ones (duplicated if another clone still holds them).
    fn into_fds(self) -> Vec<OwnedFd> {
        std::sync::Arc::try_unwrap(self.0)
            .unwrap_or_else(|shared| shared.iter().filter_map(|fd| fd.try_clone().ok()).collect())
    }
}

/// Serializes descriptors through the side table of `codec::encode_with_fds`.
fn serialize_fds<S: Serializer>(fds: &[OwnedFd], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(fds.len()))?;
    for fd in fds {
        seq.serialize_element(&FdOut(std::os::fd::AsFd::as_fd(fd)))?;
    }
    seq.end()
}

/// How a worker is set up.
#[derive(Serialize, Deserialize, Clone, Default)]
pub(crate) struct WorkerConfig {
    /// Run once before any task.
    pub initializer: Option<Initializer>,
    /// Exit after this many tasks (Python's `maxtasksperchild`).
    pub max_tasks: Option<u64>,
    /// Exit after a task that left the worker's resident memory above this many bytes.
    pub max_memory: Option<u64>,
}

/// The id of the task this worker runs now (0: none).
static RUNNING: AtomicU64 = AtomicU64::new(0);

/// Set when the pool says the running task has passed its soft time limit.
static SOFT_LIMIT: AtomicBool = AtomicBool::new(false);

/// Whether the pool task running in this process has passed its soft time limit
/// ([`PoolBuilder::soft_task_timeout`](super::PoolBuilder::soft_task_timeout)): a long task
/// polls it to stop early and return what it has. Always false outside a pool worker.
///
/// ```
/// assert!(!multiprocess::soft_time_limit_exceeded());
/// ```
pub fn soft_time_limit_exceeded() -> bool {
    SOFT_LIMIT.load(Ordering::Acquire)
}

/// SIGUSR1 handler: the value names the task the limit is for. Only atomics: async-signal-safe.
fn on_soft_limit(task: usize) {
    let task = task as u64;
    if task != 0 && task == RUNNING.load(Ordering::Acquire) {
        SOFT_LIMIT.store(true, Ordering::Release);
    }
}

fn install_soft_limit_handler() {
    // SAFETY: the handler only touches atomics.
    let _ = unsafe { sys::on_signal_with_value(sys::SIGUSR1, on_soft_limit) };
}

/// The worker process's target.
pub(crate) fn worker_main(conn: Connection, mut config: WorkerConfig) {
    // A forked worker is a copy of the supervisor thread: it is not the supervisor.
    super::supervisor::ON_SUPERVISOR.with(|f| f.set(false));
    install_soft_limit_handler();
    if let Some(init) = config.initializer.take() {
        // SAFETY: the offset came from the pool, in a process running this very binary.
        let entry = unsafe { target::entry_from_offset(init.entry) };
        if let Some(report) = bootstrap::call_entry(entry, &init.args, init.handles.into_fds()) {
            if !matches!(report, Report::Returned(_)) {
                eprintln!(
                    "multiprocess: pool initializer failed: {}",
                    report.into_error()
                );
                std::process::exit(1);
            }
        }
    }
    let mut done = 0u64;
    loop {
        let task = match conn.recv::<ToWorker>() {
            Ok(ToWorker::Run(task)) => task,
            Ok(ToWorker::Stop) | Err(Error::Eof) => return,
            Err(err) => {
                // A task this worker cannot read fails alone (id 0: "the one I just took").
                let report = Report::DecodeFailed(err.to_string());
                if conn.send(&Answer { id: 0, report }).is_err() {
                    return;
                }
                continue;
            }
        };
        // SAFETY: the offset came from the pool, in a process running this very binary.
        let entry = unsafe { target::entry_from_offset(task.entry) };
        SOFT_LIMIT.store(false, Ordering::Release);
        RUNNING.store(task.id, Ordering::Release);
        let id = task.id;
        let report = bootstrap::call_entry(entry, &task.args, task.handles.0);
        // The arguments go before the answer: a zero-copy one is then free for its maker to
        // reuse as soon as the answer arrives.
        drop(task.args);
        RUNNING.store(0, Ordering::Release);
        let report = report.unwrap_or_else(|| {
            Report::Returned(
                Payload::encode(&()).unwrap_or_else(|_| Payload::Inline(Default::default())),
            )
        });
        if conn.send(&Answer { id, report }).is_err() {
            return; // the pool is gone
        }
        done += 1;
        let recycle = config.max_tasks.is_some_and(|m| done >= m)
            || config.max_memory.is_some_and(|m| {
                // Buffers kept for reuse are not the task's doing: give them back first.
                crate::buffer::release_unused();
                sys::resident_bytes() > m
            });
        if recycle {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    /// Encoded arguments and results cross as one byte string each, not as an array with one
    /// number per byte (which cost a decoding step per byte and up to twice the size).
    #[test]
    fn payloads_cross_as_byte_strings() {
        let payload = vec![0xC8u8; 1000];
        let task = Task::<()> {
            id: 7,
            entry: -3,
            args: Payload::Inline(std::sync::Arc::new(payload.clone())),
            handles: (),
        };
        let bytes = codec::encode(&task).unwrap();
        assert!(bytes.len() < 1030, "{} bytes for 1000", bytes.len());
        let back: Task<()> = codec::decode(&bytes).unwrap();
        assert_eq!((back.id, back.entry, &back.args[..]), (7, -3, &payload[..]));

        let answer = Answer {
            id: 7,
            report: Report::Returned(Payload::Inline(std::sync::Arc::new(payload.clone()))),
        };
        let bytes = codec::encode(&answer).unwrap();
        assert!(bytes.len() < 1030, "{} bytes for 1000", bytes.len());
        let back: Answer = codec::decode(&bytes).unwrap();
        assert!(matches!(back.report, Report::Returned(r) if r[..] == payload[..]));
    }

    /// A large payload moves to shared memory, and crosses as a descriptor where descriptors
    /// travel (else as its bytes).
    #[test]
    fn large_payloads_spill_to_shared_memory() {
        let big = serde_bytes::ByteBuf::from(vec![7u8; 1 << 20]);
        let (payload, fds) = Payload::encode_with_fds(&big).unwrap();
        assert!(fds.is_empty() && matches!(payload, Payload::Shared(_)));
        let back: serde_bytes::ByteBuf = codec::decode(&payload).unwrap();
        assert_eq!(back, big);
        let (bytes, fds) = codec::encode_with_fds(&payload).unwrap();
        assert_eq!(fds.len(), 1);
        assert!(bytes.len() < 100);
        let inline = codec::encode(&payload).unwrap();
        assert!(inline.len() > 1 << 20);
        let again: Payload = codec::decode(&inline).unwrap();
        assert_eq!(codec::decode::<serde_bytes::ByteBuf>(&again).unwrap(), big);
    }
}
