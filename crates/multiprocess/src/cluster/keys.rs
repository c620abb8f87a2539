//! The key schema in Redis: every key the cluster writes, in one place.
//!
//! | key | type | lifetime | holds |
//! | --- | --- | --- | --- |
//! | `mp:tasks:{build}:{keyid}` | stream, group `nodes` | while nodes of that build exist, or tasks wait in it (deleted by `FORGET` or `CANCEL` when empty and no node is a consumer) | tasks not yet finished: waiting, or in the group's pending list of the node that runs them |
//! | `mp:nodes` | hash | always | node id → its task stream, for reapers to find a lost node's entries |
//! | `mp:node:{id}` | hash, TTL | heartbeat | a node's build, key id, host, pid, workers, busy workers |
//! | `mp:client:{id}` | hash, TTL | heartbeat | a client's highest submitted task number (`hw`) |
//! | `mp:results:{id}` | stream, TTL | heartbeat | outcomes for that client, trimmed as it reads them |
//! | `mp:entries:{id}` | hash, TTL | two heartbeat TTLs, while the client has tasks in the stream | a client's entry index: task number → its entry in the task stream (kept by the scripts) |
//! | `mp:queue:{name}` | list | while not empty | a [`Queue`](super::Queue)'s items |
//! | `mp:unfinished:{name}` | integer | while above 0 | a [`JoinableQueue`](super::JoinableQueue)'s items not yet done |
//!
//! No key is made per task: a task lives as one stream entry (and one field of its client's
//! entry index) and is deleted with its outcome, so that the number of keys stays flat
//! however many tasks pass.

/// The prefix of every key.
pub(crate) const PREFIX: &str = "mp:";

/// The consumer group of the nodes on every task stream.
pub(crate) const GROUP: &str = "nodes";

/// The hash of known nodes (id → task stream).
pub(crate) const NODES: &str = "mp:nodes";

/// The task stream of one build under one cluster key.
pub(crate) fn tasks(build: &str, key_id: &str) -> String {
    format!("{PREFIX}tasks:{build}:{key_id}")
}

/// A node's heartbeat hash.
pub(crate) fn node(id: &str) -> String {
    format!("{PREFIX}node:{id}")
}

/// A client's heartbeat hash.
pub(crate) fn client(id: &str) -> String {
    format!("{PREFIX}client:{id}")
}

/// A client's result stream.
pub(crate) fn results(client_id: &str) -> String {
    format!("{PREFIX}results:{client_id}")
}

/// A client's entry index: task number → id of its entry in the task stream.
pub(crate) fn entries(client_id: &str) -> String {
    format!("{PREFIX}entries:{client_id}")
}

/// A queue's list.
pub(crate) fn queue(name: &str) -> String {
    format!("{PREFIX}queue:{name}")
}

/// A joinable queue's count of items put and not yet done.
pub(crate) fn unfinished(queue_name: &str) -> String {
    format!("{PREFIX}unfinished:{queue_name}")
}

/// A fresh id for a node or a client: `host:pid:nonce`, unique across machines and restarts.
pub(crate) fn party_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = hostname();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{host}:{}:{:08x}", std::process::id(), h.finish() as u32)
}

/// This machine's host name (`?` if it has none), with no `:` (ids are `:`-separated).
pub(crate) fn hostname() -> String {
    crate::sys::hostname()
        .map(|h| h.replace(':', "_"))
        .unwrap_or_else(|| "?".into())
}
