//! What travels through Redis, and how it is authenticated.
//!
//! A task is one stream entry with these fields:
//!
//! | field | what | covered by the HMAC |
//! | --- | --- | --- |
//! | `t` | the encoded [`TaskBody`]: client, task number, entry offset, arguments, time limit, redeliveries | yes |
//! | `m` | HMAC-SHA256 under the cluster key over the stream's name (so the build and key id) and `t` | — |
//! | `c`, `s` | the client id and task number again, in clear, for scripts that route an outcome | checked against `t` |
//! | `d` | how many times the task was handed out before (redelivery after a lost node) | no: Redis scripts rewrite it |
//!
//! A node verifies `m` before it decodes anything else, so a forged or altered entry never
//! reaches the step that turns an offset into a function. An outcome is one entry of the
//! client's result stream, fields `o` (an encoded [`OutcomeMsg`]) and `m` (its HMAC, bound to the
//! client's id), so a client believes only outcomes made by a holder of the key.
//!
//! Every HMAC input is a list of length-prefixed parts, so no two lists share an encoding.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::codec;
use crate::error::{Error, Result};

/// The cluster key: an HMAC-SHA256 state keyed once.
#[derive(Clone)]
pub(crate) struct Key {
    mac: Hmac<Sha256>,
    /// A short public name of the key (hex), so that parties with different keys never share
    /// a task stream and a client can tell "wrong key" from "no node".
    pub id: String,
}

impl Key {
    /// A key from its secret bytes (any length; at least 16 bytes are required).
    pub(crate) fn new(secret: &[u8]) -> Result<Key> {
        if secret.len() < 16 {
            return Err(Error::Auth(
                "the cluster key must be at least 16 bytes long".into(),
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|e| Error::Auth(format!("unusable cluster key: {e}")))?;
        let mut key = Key {
            mac,
            id: String::new(),
        };
        let tag = key.sign(&[b"multiprocess cluster key id"]);
        key.id = super::build::to_hex(&tag[..6]);
        Ok(key)
    }

    /// The HMAC of a list of parts.
    pub(crate) fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the HMAC of the parts (compared in constant time).
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }
}

/// What a task asks a node to do.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct TaskBody {
    /// The client that submitted it (where the outcome goes).
    pub client: String,
    /// Its number at that client.
    pub seq: u64,
    /// The chunk entry function, as an offset (see `process/target.rs`).
    pub entry: i64,
    /// The encoded list of argument tuples.
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    /// The time limit in milliseconds (0: none).
    pub limit_ms: u64,
    /// How many times it may be handed out again if its node is lost.
    pub redeliver: u32,
    /// How long the client's result stream may outlive a write, in ms (the client's TTL).
    pub ttl_ms: u64,
}

/// A finished task's outcome, as a client receives it.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct OutcomeMsg {
    pub seq: u64,
    /// The node that ran it (or the party that gave up on it).
    pub node: String,
    pub result: WireResult,
}

/// A task's result or failure, as it crosses machines.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum WireResult {
    /// The encoded result list.
    Ok(#[serde(with = "serde_bytes")] Vec<u8>),
    Panic {
        message: String,
        location: Option<String>,
    },
    TimeLimit,
    WorkerLost {
        exitcode: i32,
    },
    Encode(String),
    Decode(String),
    NodeLost {
        node: String,
    },
    Auth(String),
    /// The node could not run the task (its pool failed, or it could not start it).
    StartFailed(String),
}

impl WireResult {
    /// The wire form of a local pool outcome.
    pub(crate) fn from_outcome(
        outcome: &std::result::Result<crate::buffer::Payload, Error>,
    ) -> WireResult {
        match outcome {
            Ok(bytes) => WireResult::Ok(bytes.to_vec()),
            Err(Error::Panic { message, location }) => WireResult::Panic {
                message: message.clone(),
                location: location.clone(),
            },
            Err(Error::TimeLimit) => WireResult::TimeLimit,
            Err(Error::WorkerLost { exitcode }) => WireResult::WorkerLost {
                exitcode: *exitcode,
            },
            Err(Error::Encode(m)) => WireResult::Encode(m.clone()),
            Err(Error::Decode(m)) => WireResult::Decode(m.clone()),
            Err(Error::NodeLost { node }) => WireResult::NodeLost { node: node.clone() },
            Err(Error::Auth(m)) => WireResult::Auth(m.clone()),
            Err(other) => WireResult::StartFailed(other.to_string()),
        }
    }

    /// The outcome a client's result slot takes.
    pub(crate) fn into_outcome(self) -> std::result::Result<Vec<u8>, Error> {
        match self {
            WireResult::Ok(bytes) => Ok(bytes),
            WireResult::Panic { message, location } => Err(Error::Panic { message, location }),
            WireResult::TimeLimit => Err(Error::TimeLimit),
            WireResult::WorkerLost { exitcode } => Err(Error::WorkerLost { exitcode }),
            WireResult::Encode(m) => Err(Error::Encode(m)),
            WireResult::Decode(m) => Err(Error::Decode(m)),
            WireResult::NodeLost { node } => Err(Error::NodeLost { node }),
            WireResult::Auth(m) => Err(Error::Auth(m)),
            WireResult::StartFailed(m) => Err(Error::StartFailed(m)),
        }
    }
}

/// A task entry's authenticated part: the encoded body and its HMAC, bound to the stream.
pub(crate) fn seal_task(key: &Key, stream: &str, body: &TaskBody) -> Result<(Vec<u8>, [u8; 32])> {
    let bytes = codec::encode(body)?;
    let tag = key.sign(&[b"task", stream.as_bytes(), &bytes]);
    Ok((bytes, tag))
}

/// Verifies a task entry's HMAC, then decodes its body. Nothing is decoded before the check.
pub(crate) fn open_task(key: &Key, stream: &str, body: &[u8], tag: &[u8]) -> Result<TaskBody> {
    if !key.verify(&[b"task", stream.as_bytes(), body], tag) {
        return Err(Error::Auth(
            "a task's HMAC does not match: it was forged or altered, and was not run".into(),
        ));
    }
    codec::decode(body)
}

/// An outcome entry's fields: the encoded message and its HMAC, bound to the client.
pub(crate) fn seal_outcome(
    key: &Key,
    client: &str,
    msg: &OutcomeMsg,
) -> Result<(Vec<u8>, [u8; 32])> {
    let bytes = codec::encode(msg)?;
    let tag = key.sign(&[b"outcome", client.as_bytes(), &bytes]);
    Ok((bytes, tag))
}

/// Verifies and decodes an outcome entry meant for `client`.
pub(crate) fn open_outcome(key: &Key, client: &str, body: &[u8], tag: &[u8]) -> Result<OutcomeMsg> {
    if !key.verify(&[b"outcome", client.as_bytes(), body], tag) {
        return Err(Error::Auth("an outcome's HMAC does not match".into()));
    }
    codec::decode(body)
}

/// A field of a stream entry as bytes (empty if absent).
pub(crate) fn field(entry: &redis::streams::StreamId, name: &str) -> Vec<u8> {
    entry
        .map
        .get(name)
        .and_then(|v| redis::from_redis_value_ref::<Vec<u8>>(v).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> TaskBody {
        TaskBody {
            client: "h:1:2".into(),
            seq: 7,
            entry: -1234,
            args: vec![1, 2, 3],
            limit_ms: 0,
            redeliver: 0,
            ttl_ms: 5000,
        }
    }

    #[test]
    fn a_sealed_task_opens_only_unchanged_and_under_its_key() {
        let key = Key::new(b"0123456789abcdef-secret").unwrap();
        let (bytes, tag) = seal_task(&key, "mp:tasks:b:k", &body()).unwrap();
        assert_eq!(
            open_task(&key, "mp:tasks:b:k", &bytes, &tag).unwrap(),
            body()
        );
        // Another stream (another build), a changed byte, another key: refused.
        assert!(open_task(&key, "mp:tasks:x:k", &bytes, &tag).is_err());
        let mut changed = bytes.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(matches!(
            open_task(&key, "mp:tasks:b:k", &changed, &tag),
            Err(Error::Auth(_))
        ));
        let other = Key::new(b"another key of 16+ bytes").unwrap();
        assert_ne!(other.id, key.id);
        assert!(open_task(&other, "mp:tasks:b:k", &bytes, &tag).is_err());
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(matches!(Key::new(b"short"), Err(Error::Auth(_))));
    }

    #[test]
    fn outcomes_round_trip_with_their_errors() {
        let key = Key::new(b"0123456789abcdef").unwrap();
        let msg = OutcomeMsg {
            seq: 3,
            node: "n".into(),
            result: WireResult::from_outcome(&Err(Error::WorkerLost { exitcode: -6 })),
        };
        let (bytes, tag) = seal_outcome(&key, "c", &msg).unwrap();
        assert!(open_outcome(&key, "other client", &bytes, &tag).is_err());
        let back = open_outcome(&key, "c", &bytes, &tag).unwrap();
        assert!(matches!(
            back.result.into_outcome(),
            Err(Error::WorkerLost { exitcode: -6 })
        ));
    }
}
