//! # Cluster: the same [`Pool`] and [`Queue`] across machines, on Redis
//!
//! (Feature `cluster`.) A *node* is the program itself, started with one setting on any
//! machine that reaches the broker; a *client* is the program using [`cluster::Pool`](Pool)
//! with the calls of the local [`crate::Pool`]. Tasks and results travel through a Redis
//! server (7.0 or later): Streams with a consumer group for tasks, lists for queues.
//!
//! ```no_run
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> multiprocess::Result<()> {
//!     // With MULTIPROCESS_NODE=redis://… set, init() serves as a node and never returns.
//!     multiprocess::init();
//!     let pool = multiprocess::cluster::Pool::new("redis://127.0.0.1:6379")?;
//!     println!("{:?}", pool.map(square, 0..10)?);
//!     Ok(())
//! }
//! ```
//!
//! Run a node on each machine, then the client, with the same key:
//!
//! ```text
//! MULTIPROCESS_CLUSTER_KEY=… MULTIPROCESS_NODE=redis://broker:6379 ./app   # a node
//! MULTIPROCESS_CLUSTER_KEY=… ./app                                         # the client
//! ```
//!
//! ## What a task is, and who may run it
//!
//! A task names its function as a local one does (an offset in the binary), so only the same
//! build can run it: each build (its ELF build-id) has its own task stream, and a node reads
//! only its own. A client with no live node of its build fails with [`Error::NoLiveNode`]
//! ("no live node runs build X; 2 nodes run build Y") instead of waiting for ever: at submit,
//! and for tasks already sent and not yet taken, one time-to-live after the last such node
//! was seen (a grace that lets a node restart). Every task carries an
//! HMAC-SHA256 under the shared cluster key, over everything that decides what runs; a node
//! checks it before it looks at anything else, so a task written into Redis by anyone without
//! the key never runs. Parties with different keys do not even share a stream. (The HMAC proves
//! who made a task; it cannot stop someone with write access to Redis from adding a copy of a
//! genuine task while its client lives: keep the broker behind a password or an ACL user.) Arguments are
//! plain values: a local handle (a [`crate::Queue`], a pipe, a lock) is refused at submit.
//!
//! ## Failures, and what each gives
//!
//! | what happens | the task's outcome |
//! | --- | --- |
//! | a worker process dies on a node | [`Error::WorkerLost`] (its exit code or `-signal`), as locally; the node replaces the worker |
//! | a task passes its time limit | [`Error::TimeLimit`]; its worker is killed and replaced |
//! | a node dies or is cut off (no heartbeat for the TTL, 5 s by default) | [`Error::NodeLost`] naming the node, settled by any live node or client; or handed out again, up to [`PoolBuilder::redeliver`] times |
//! | a node thought lost comes back | its late result is discarded: exactly one outcome per task |
//! | the broker refuses a node's outcomes (an ACL without `EVALSHA`, a read-only replica, a script error) for three TTLs, or SIGTERM comes meanwhile | the node kills its running tasks and leaves with an error; they fail with [`Error::NodeLost`] |
//! | Redis restarts (with `appendonly yes` and `appendfsync always`) | clients and nodes reconnect with backoff; no task is lost or run twice (with `appendfsync everysec`, the last second of writes may be lost: a task may then run twice) |
//! | the client dies | nodes drop its tasks that have not started; its keys expire with its heartbeat |
//! | the client is cut off from the broker, or the broker is down, for longer than the client's TTL | the client is *forgotten*: nodes took it for dead. Each unfinished task fails with [`Error::Broker`], saying whether it was dropped unrun or may have run; the pool takes no new task (make a new one) |
//! | no live node runs the build | [`Error::NoLiveNode`], at submit, or for waiting tasks one TTL after the last node left |
//! | a task or result altered in Redis | never run; [`Error::Auth`] |
//!
//! No key is made per task: a task is one stream entry (and one field in its client's entry
//! index, which lets the client find its own entries without scanning the stream), both
//! deleted with its outcome, so the number of keys in Redis stays flat however many tasks
//! pass; a build's task stream is deleted once no node serves it and no task waits in it (see
//! `keys.rs` for the schema).
//!
//! ## Inside
//!
//! [`Queue`] and [`JoinableQueue`] are queues on Redis lists, for processes on any machine.
//!
//! `broker.rs` keeps a connection alive across restarts; `wire.rs` is the task and outcome
//! format and its HMAC; `scripts.rs` holds the Lua scripts that make each step atomic and safe
//! to repeat; `client.rs` and `pool.rs` are the client; `node.rs` the node, on a local pool
//! whose supervisor gives crash and time-limit handling for free; `reaper.rs` settles the
//! tasks of lost nodes; `survey.rs` and `status.rs` say who is live.
//!
//! Settings from the environment (a node takes them whether [`init`](crate::init) or
//! [`serve`] starts it, for whatever its [`NodeOptions`] do not set; a client, for whatever
//! its [`PoolBuilder`] does not set):
#![doc = include_str!("settings.md")]

mod broker;
mod build;
mod client;
mod imap;
mod keys;
mod node;
mod pool;
mod queue;
mod reaper;
mod scripts;
mod settings;
mod status;
mod survey;
mod wire;

#[allow(unused_imports)]
use crate::error::Error;

pub(crate) use node::serve_if_asked;
pub use node::{serve, NodeOptions};
pub use pool::{Pool, PoolBuilder};
pub use queue::{JoinableQueue, Queue};
pub use status::{status, Status, StreamInfo};
pub use survey::NodeInfo;
