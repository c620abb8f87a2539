//! Settling the tasks of lost nodes: the liveness half of "exactly one outcome per task".
//!
//! A node owns an entry from the moment `XREADGROUP` hands it over (it sits in the group's
//! pending list under the node's name) until its outcome is recorded. Liveness is tracked per
//! node, not per task: a node refreshes a heartbeat key with a time-to-live, so a long task
//! is never taken for a lost one. Every live party with the cluster key (nodes and clients)
//! sweeps now and then: a node in the node table whose heartbeat is gone is lost, and each
//! entry it still owns is settled by the `REAP` script, which checks again, atomically, that
//! the node still owns the entry and that its heartbeat is still absent. The entry then fails
//! with [`Error::NodeLost`](crate::Error::NodeLost) (an outcome signed by the reaper), or goes
//! back into the stream if the task asked for redeliveries and has some left. When the node
//! owns nothing more it is forgotten (`FORGET`).
//!
//! Sweepers race harmlessly: whichever runs `REAP` first settles the entry, the others find
//! it gone. A node that was only paused (SIGSTOP) and comes back finds its entries settled:
//! `COMPLETE` refuses its late outcome, because the entry is no longer in its pending list.

use std::time::Duration;

use super::broker::Broker;
use super::keys;
use super::scripts;
use super::survey::{self, Survey};
use super::wire::{self, Key, OutcomeMsg, WireResult};
use crate::error::Result;

/// How many entries of a lost node are looked at per round trip.
const PAGE: usize = 100;

/// Settles the entries of every lost node that served a stream under our key. Returns the
/// survey it made, for the caller's own use.
pub(crate) fn sweep(
    broker: &mut Broker,
    key: &Key,
    reaper: &str,
    result_ttl: Duration,
) -> Result<Survey> {
    let found = broker.run(survey::survey)?;
    let suffix = format!(":{}", key.id);
    for (node, stream) in &found.lost {
        if stream.ends_with(&suffix) {
            reap_node(broker, key, reaper, node, stream, result_ttl)?;
        }
    }
    Ok(found)
}

/// One pending entry: id, owner, idle ms, deliveries.
type PendingEntry = (String, String, u64, u64);

/// Settles up to a page of what `node` owns in `stream`, and forgets the node once it owns
/// nothing. One page per sweep: a sweep runs between heartbeats, which must not wait long.
fn reap_node(
    broker: &mut Broker,
    key: &Key,
    reaper: &str,
    node: &str,
    stream: &str,
    result_ttl: Duration,
) -> Result<()> {
    let heartbeat = keys::node(node);
    let pending: Vec<PendingEntry> = broker.run(|c| {
        let listed = redis::cmd("XPENDING")
            .arg(stream)
            .arg(keys::GROUP)
            .arg("-")
            .arg("+")
            .arg(PAGE)
            .arg(node)
            .query(c);
        match listed {
            // The stream or its group is gone: the node owns nothing.
            Err(e) if e.code() == Some("NOGROUP") => Ok(Vec::new()),
            other => other,
        }
    })?;
    for (id, _, _, _) in &pending {
        reap_entry(
            broker, key, reaper, node, stream, &heartbeat, id, result_ttl,
        )?;
    }
    if pending.len() < PAGE {
        let _: i64 = broker.run(|c| {
            scripts::call(
                c,
                &scripts::FORGET,
                &[stream, &heartbeat, keys::NODES],
                &[keys::GROUP.as_bytes(), node.as_bytes()],
            )
        })?;
    }
    Ok(())
}

/// Settles one entry of a lost node: fails it with `NodeLost` or hands it out again.
#[allow(clippy::too_many_arguments)]
fn reap_entry(
    broker: &mut Broker,
    key: &Key,
    reaper: &str,
    node: &str,
    stream: &str,
    heartbeat: &str,
    id: &str,
    result_ttl: Duration,
) -> Result<i64> {
    let entry: redis::streams::StreamRangeReply =
        broker.run(|c| redis::cmd("XRANGE").arg(stream).arg(id).arg(id).query(c))?;
    let field = |name: &str| {
        entry
            .ids
            .first()
            .map(|e| wire::field(e, name))
            .unwrap_or_default()
    };
    let (body, tag) = (field("t"), field("m"));
    let deliveries: u32 = String::from_utf8_lossy(&field("d")).parse().unwrap_or(0);
    let task = wire::open_task(key, stream, &body, &tag).ok();
    let redeliver = task.as_ref().is_some_and(|t| t.redeliver > deliveries);
    let (outcome, mac) = match &task {
        Some(t) if !redeliver => {
            let msg = OutcomeMsg {
                seq: t.seq,
                node: reaper.to_string(),
                result: WireResult::NodeLost {
                    node: node.to_string(),
                },
            };
            let (bytes, mac) = wire::seal_outcome(key, &t.client, &msg)?;
            (bytes, mac.to_vec())
        }
        // Redelivered, or not ours to answer (a forged entry): no outcome.
        _ => (Vec::new(), Vec::new()),
    };
    // A forged entry names no client and no task: nothing of anyone's is touched for it.
    let (client, seq) = task
        .as_ref()
        .map_or((String::new(), String::new()), |t| {
            (t.client.clone(), t.seq.to_string())
        });
    let (results, client_key) = (keys::results(&client), keys::client(&client));
    let index = keys::entries(&client);
    let ttl = task
        .as_ref()
        .map_or(result_ttl.as_millis() as u64, |t| t.ttl_ms.max(1))
        .to_string();
    let mode: &[u8] = if redeliver { b"redeliver" } else { b"fail" };
    broker.run(|c| {
        scripts::call(
            c,
            &scripts::REAP,
            &[stream, &results, &client_key, heartbeat, &index],
            &[
                keys::GROUP.as_bytes(),
                id.as_bytes(),
                node.as_bytes(),
                &outcome,
                &mac,
                ttl.as_bytes(),
                mode,
                seq.as_bytes(),
            ],
        )
    })
}
