//! Who is live: the nodes' heartbeats, read by clients (is any node of my build live?), by
//! reapers (whose heartbeat is gone?) and by `mp cluster status`.

use std::collections::HashMap;

use redis::Connection;

use super::keys;

/// A node as its heartbeat describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// `host:pid:nonce`.
    pub id: String,
    /// The build it serves (hex digits of its ELF build-id).
    pub build: String,
    /// The public id of its cluster key (parties with different keys never share tasks).
    pub key_id: String,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// Its worker processes.
    pub processes: usize,
    /// Workers running a task now.
    pub busy: usize,
}

/// Every node in the node table with its heartbeat, and the ids of those whose heartbeat is
/// gone (lost, or stopped without cleaning up), with the stream they served.
pub(crate) struct Survey {
    pub live: Vec<NodeInfo>,
    pub lost: Vec<(String, String)>,
}

/// Reads the node table and every node's heartbeat (two round trips).
pub(crate) fn survey(conn: &mut Connection) -> redis::RedisResult<Survey> {
    let table: HashMap<String, String> = redis::cmd("HGETALL").arg(keys::NODES).query(conn)?;
    let ids: Vec<(String, String)> = table.into_iter().collect();
    let mut pipe = redis::pipe();
    for (id, _) in &ids {
        pipe.cmd("HGETALL").arg(keys::node(id));
    }
    let beats: Vec<HashMap<String, String>> = if ids.is_empty() {
        Vec::new()
    } else {
        pipe.query(conn)?
    };
    let mut out = Survey {
        live: Vec::new(),
        lost: Vec::new(),
    };
    for ((id, stream), beat) in ids.into_iter().zip(beats) {
        if beat.is_empty() {
            out.lost.push((id, stream));
            continue;
        }
        let field = |k: &str| beat.get(k).cloned().unwrap_or_default();
        let number = |k: &str| field(k).parse().unwrap_or(0);
        out.live.push(NodeInfo {
            build: field("build"),
            key_id: field("key"),
            host: field("host"),
            pid: number("pid") as u32,
            processes: number("processes"),
            busy: number("busy"),
            id,
        });
    }
    out.live.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// How many live nodes run `build` under `key_id`; otherwise what they run instead, in words.
pub(crate) fn describe_for(live: &[NodeInfo], build: &str, key_id: &str) -> (usize, String) {
    let mine = live
        .iter()
        .filter(|n| n.build == build && n.key_id == key_id)
        .count();
    let mut others: Vec<String> = Vec::new();
    let wrong_key = live
        .iter()
        .filter(|n| n.build == build && n.key_id != key_id)
        .count();
    if wrong_key > 0 {
        others.push(format!(
            "{} under another cluster key (check MULTIPROCESS_CLUSTER_KEY)",
            count_nodes(wrong_key, "runs it", "run it")
        ));
    }
    let mut builds: Vec<(&str, usize)> = Vec::new();
    for n in live.iter().filter(|n| n.build != build) {
        match builds.iter_mut().find(|(b, _)| *b == n.build) {
            Some((_, c)) => *c += 1,
            None => builds.push((&n.build, 1)),
        }
    }
    for (b, c) in builds {
        others.push(format!("{} build {b}", count_nodes(c, "runs", "run")));
    }
    let seen = if others.is_empty() {
        "no node is live".to_string()
    } else {
        others.join("; ")
    };
    (mine, seen)
}

fn count_nodes(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 node {one}")
    } else {
        format!("{n} nodes {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(build: &str, key: &str) -> NodeInfo {
        NodeInfo {
            id: "h:1:x".into(),
            build: build.into(),
            key_id: key.into(),
            host: "h".into(),
            pid: 1,
            processes: 2,
            busy: 0,
        }
    }

    #[test]
    fn other_builds_and_keys_are_named() {
        let live = [node("bbbb", "k"), node("bbbb", "k"), node("aaaa", "other")];
        let (mine, seen) = describe_for(&live, "aaaa", "k");
        assert_eq!(mine, 0);
        assert_eq!(
            seen,
            "1 node runs it under another cluster key (check MULTIPROCESS_CLUSTER_KEY); \
             2 nodes run build bbbb"
        );
        assert_eq!(describe_for(&[], "aaaa", "k").1, "no node is live");
        assert_eq!(describe_for(&live, "bbbb", "k").0, 2);
    }
}
