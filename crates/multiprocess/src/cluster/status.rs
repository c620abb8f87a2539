//! What `mp cluster status` shows: the live nodes and the task streams' backlog.

use std::sync::Arc;
use std::time::Duration;

use super::broker::{Broker, BrokerConfig};
use super::keys;
use super::survey::{self, NodeInfo};
use crate::error::Result;

/// A task stream: one build under one cluster key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// The build its tasks are for.
    pub build: String,
    /// The public id of the key its tasks are signed with.
    pub key_id: String,
    /// Tasks waiting for a node.
    pub backlog: usize,
    /// Tasks a node has taken and not finished.
    pub pending: usize,
}

/// A snapshot of a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The live nodes.
    pub nodes: Vec<NodeInfo>,
    /// Nodes in the table whose heartbeat is gone and whose tasks are not settled yet.
    pub lost: Vec<String>,
    /// Every task stream.
    pub streams: Vec<StreamInfo>,
}

/// Looks at the cluster behind the broker at `url` (`$MULTIPROCESS_CLUSTER_CA` names a CA for
/// `rediss://`). Needs no cluster key: it reads, it changes nothing.
///
/// ```no_run
/// let status = multiprocess::cluster::status("redis://127.0.0.1:6379")?;
/// for node in &status.nodes {
///     println!("{} runs build {}: {}/{} busy", node.id, node.build, node.busy, node.processes);
/// }
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub fn status(url: &str) -> Result<Status> {
    let config = Arc::new(BrokerConfig {
        url: url.to_string(),
        tls_ca: super::settings::ca_from_env()?,
        retry_for: Some(Duration::from_secs(5)),
    });
    let mut broker = Broker::connect(config)?;
    let found = broker.run(survey::survey)?;
    let streams: Vec<String> = broker.run(|c| {
        let mut cursor = 0u64;
        let mut all = Vec::new();
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}tasks:*", keys::PREFIX))
                .arg("TYPE")
                .arg("stream")
                .arg("COUNT")
                .arg(1000)
                .query(c)?;
            all.extend(page);
            if next == 0 {
                return Ok(all);
            }
            cursor = next;
        }
    })?;
    let mut out = Status {
        nodes: found.live,
        lost: found.lost.into_iter().map(|(id, _)| id).collect(),
        streams: Vec::new(),
    };
    for stream in streams {
        let (len, pending) = broker.run(|c| stream_counts(c, &stream))?;
        let mut parts = stream.rsplitn(3, ':');
        let key_id = parts.next().unwrap_or_default().to_string();
        let build = parts.next().unwrap_or_default().to_string();
        out.streams.push(StreamInfo {
            build,
            key_id,
            backlog: len.saturating_sub(pending),
            pending,
        });
    }
    out.streams.sort_by(|a, b| a.build.cmp(&b.build));
    Ok(out)
}

/// A task stream's length and how many of its entries nodes hold (`XPENDING` of the nodes'
/// group). A stream that has no group yet (no node of its build ever started, or the broker
/// lost the group) has nothing pending.
fn stream_counts(c: &mut redis::Connection, stream: &str) -> redis::RedisResult<(usize, usize)> {
    let len: usize = redis::cmd("XLEN").arg(stream).query(c)?;
    let summary: redis::Value = match redis::cmd("XPENDING").arg(stream).arg(keys::GROUP).query(c) {
        Err(e) if e.code() == Some("NOGROUP") => return Ok((len, 0)),
        other => other?,
    };
    let pending = match summary {
        redis::Value::Array(v) => v
            .first()
            .and_then(|n| redis::from_redis_value_ref::<usize>(n).ok())
            .unwrap_or(0),
        _ => 0,
    };
    Ok((len, pending))
}
