//! Settings read from the environment, and the defaults: what lets a program become a node
//! with one variable, and a client find its broker and key without code.
//!
//! (The table is in the module docs of `cluster`, from `settings.md`.)

use std::time::Duration;

use crate::error::{Error, Result};

/// The variable that makes a process a node.
pub(crate) const NODE_ENV: &str = "MULTIPROCESS_NODE";
/// A client's broker.
pub(crate) const BROKER_ENV: &str = "MULTIPROCESS_BROKER";
/// The cluster key.
pub(crate) const KEY_ENV: &str = "MULTIPROCESS_CLUSTER_KEY";
/// The CA file.
pub(crate) const CA_ENV: &str = "MULTIPROCESS_CLUSTER_CA";
/// A node's worker count.
pub(crate) const PROCESSES_ENV: &str = "MULTIPROCESS_NODE_PROCESSES";
/// A node's heartbeat TTL.
pub(crate) const TTL_ENV: &str = "MULTIPROCESS_CLUSTER_TTL_MS";

/// How long a party may be silent before it is taken for lost.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// The client's broker from `MULTIPROCESS_BROKER`.
pub(crate) fn broker_from_env() -> Result<String> {
    std::env::var(BROKER_ENV).map_err(|_| {
        Error::Broker(format!(
            "no broker given: call .broker(\"redis://host:6379\") or set {BROKER_ENV}"
        ))
    })
}

/// The cluster key from `MULTIPROCESS_CLUSTER_KEY`.
pub(crate) fn key_from_env() -> Result<Vec<u8>> {
    std::env::var_os(KEY_ENV)
        .map(|k| std::os::unix::ffi::OsStrExt::as_bytes(k.as_os_str()).to_vec())
        .ok_or_else(|| {
            Error::Auth(format!(
                "no cluster key: set {KEY_ENV} (the same secret of 16 bytes or more on every \
                 node and client) or call .key(...)"
            ))
        })
}

/// The CA certificate from the file named by `MULTIPROCESS_CLUSTER_CA`, if set.
pub(crate) fn ca_from_env() -> Result<Option<Vec<u8>>> {
    match std::env::var_os(CA_ENV) {
        None => Ok(None),
        Some(path) => std::fs::read(&path).map(Some).map_err(|e| {
            Error::Broker(format!(
                "could not read {CA_ENV}={}: {e}",
                std::path::Path::new(&path).display()
            ))
        }),
    }
}

/// A number from the environment, if set.
pub(crate) fn number_from_env(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::Broker(format!("{name}={v:?} is not a number"))),
    }
}
