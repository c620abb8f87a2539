//! The Lua scripts that make each multi-step change in Redis atomic, and idempotent so that a
//! reconnecting party can run one again without doubling its effect.
//!
//! - `SUBMIT`: adds a client's tasks to its build's stream, skipping task numbers at or below the
//!   client's high-water mark (`hw`), so a batch sent again after a lost reply is added once.
//! - `COMPLETE`: records an outcome, acknowledges and deletes the entry, but only if the entry
//!   is still in the pending list *of the consumer that completes it*: the late result of a
//!   node that was declared lost (and whose entry was settled by a reaper) is refused.
//! - `REAP`: settles an entry of a lost node (fails it, or hands it out again), only if that
//!   node still owns it and its heartbeat is still absent.
//! - `FORGET`: removes a lost node from the group and the node table once it owns nothing.
//! - `CANCEL`: deletes a client's entry that no node has taken (no live node of its build).
//!
//! `SUBMIT`, `COMPLETE`, `REAP` and `CANCEL` also keep the client's *entry index*
//! (`mp:entries:{client}`, task number → entry id, see `keys.rs`) in step with the stream:
//! a client finds its waiting entries there, at a cost of its own unfinished tasks, instead of
//! scanning a stream that all the clients of its build share.
//! - `QUEUE_PUT`: appends to a bounded list only while it is shorter than its bound (and counts
//!   the item for a joinable queue); `TASK_DONE`: counts one item of a joinable queue done.
//!
//! Scripts are sent by hash (`EVALSHA`) and loaded again after `NOSCRIPT` (a restarted broker
//! forgets them).

use std::sync::LazyLock;

use redis::{Pipeline, RedisResult, Script};

/// `KEYS`: stream, client key, client's entry index. `ARGV`: client id, the entry index's TTL
/// in ms, then (seq, body, mac) per task. Returns the ids of the entries added (nil for a task
/// added before), or -1 if the client is gone.
pub(crate) static SUBMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local hw = tonumber(redis.call('HGET', KEYS[2], 'hw') or '0')
local top = hw
local ids = {}
for i = 3, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > hw then
    local id = redis.call('XADD', KEYS[1], '*', 'c', ARGV[1], 's', ARGV[i], 'd', '0',
                          't', ARGV[i + 1], 'm', ARGV[i + 2])
    redis.call('HSET', KEYS[3], ARGV[i], id)
    ids[#ids + 1] = id
    if seq > top then top = seq end
  else
    ids[#ids + 1] = false
  end
end
redis.call('HSET', KEYS[2], 'hw', top)
if top > hw then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
return ids
"#,
    )
});

/// A Lua function: removes task `seq` from the entry index `key` if it still names entry `id`
/// (a redelivered task has a new entry, which stays). `seq` is empty when unknown.
const FORGET_ENTRY: &str = r#"
local function forget_entry(key, seq, id)
  if seq ~= '' and redis.call('HGET', key, seq) == id then redis.call('HDEL', key, seq) end
end
"#;

/// `KEYS`: stream, result stream, client key, client's entry index. `ARGV`: group, entry id,
/// consumer, outcome, mac, result TTL in ms, task number. An empty outcome drops the entry
/// without one. Returns 1 if recorded, 0 if the consumer no longer owns the entry.
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        &[
            PENDING_OWNER,
            FORGET_ENTRY,
            r#"
if pending_owner(ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
forget_entry(KEYS[4], ARGV[7], ARGV[2])
if ARGV[4] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'o', ARGV[4], 'm', ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return 1
"#,
        ]
        .concat(),
    )
});

/// `KEYS`: stream, result stream, client key, lost node's heartbeat, client's entry index.
/// `ARGV`: group, entry id, lost consumer, outcome, mac, result TTL in ms, `redeliver` to hand
/// the task out again instead of failing it, and the task number (empty if unknown). Returns
/// 1 if settled, 0 if not (owned by another, or the node lives).
pub(crate) static REAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        &[
            PENDING_OWNER,
            FORGET_ENTRY,
            r#"
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if pending_owner(ARGV[2]) ~= ARGV[3] then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[7] == 'redeliver' and #e == 1 then
  local f = e[1][2]
  local fields = {}
  for i = 1, #f, 2 do
    if f[i] == 'd' then
      fields[#fields + 1] = 'd'; fields[#fields + 1] = tostring(tonumber(f[i + 1]) + 1)
    else
      fields[#fields + 1] = f[i]; fields[#fields + 1] = f[i + 1]
    end
  end
  local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
  -- Only an index that still names the old entry is updated (HSET keeps the key's TTL).
  if ARGV[8] ~= '' and redis.call('HGET', KEYS[5], ARGV[8]) == ARGV[2] then
    redis.call('HSET', KEYS[5], ARGV[8], id)
  end
  return 1
end
forget_entry(KEYS[5], ARGV[8], ARGV[2])
if ARGV[4] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'o', ARGV[4], 'm', ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return 1
"#,
        ]
        .concat(),
    )
});

/// A Lua function: the consumer that holds entry `id` of the task stream `KEYS[1]` in the
/// group `ARGV[1]`, or nil: when no node holds it, and when the stream or its group is gone.
const PENDING_OWNER: &str = r#"
local function pending_owner(id)
  local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if ok and #p == 1 then return p[1][2] end
  return nil
end
"#;

/// A Lua function: deletes the task stream `KEYS[1]` if it holds no entry and its group
/// (`ARGV[1]`) has no consumer, i.e. no node serves it: a stream lives while nodes of its
/// build do, or while tasks wait in it. (A node that starts makes it again, as does a task.)
const DROP_IDLE_STREAM: &str = r#"
local function drop_idle_stream()
  if redis.call('XLEN', KEYS[1]) > 0 then return end
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
  if not ok then return end
  for _, g in ipairs(groups) do
    for i = 1, #g, 2 do
      if g[i] == 'consumers' and g[i + 1] > 0 then return end
    end
  end
  redis.call('DEL', KEYS[1])
end
"#;

/// `KEYS`: stream, lost node's heartbeat, node table. `ARGV`: group, node id. Forgets the node
/// if it is still lost and owns no entry, and deletes the stream if nothing is left in it and
/// no node serves it. Returns 1 if forgotten.
pub(crate) static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        &[
            DROP_IDLE_STREAM,
            r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
  if #p > 0 then return 0 end
  pcall(redis.call, 'XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  drop_idle_stream()
end
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
"#,
        ]
        .concat(),
    )
});

/// `KEYS`: stream, client's entry index. `ARGV`: group, entry id, task number. Deletes the
/// entry if it exists and no node has taken it, and the stream if nothing is left in it and
/// no node serves it. Returns 1 if the entry was deleted.
pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        &[
            PENDING_OWNER,
            DROP_IDLE_STREAM,
            FORGET_ENTRY,
            r#"
if pending_owner(ARGV[2]) then return 0 end
local deleted = redis.call('XDEL', KEYS[1], ARGV[2])
if deleted == 1 then forget_entry(KEYS[2], ARGV[3], ARGV[2]) end
drop_idle_stream()
return deleted
"#,
        ]
        .concat(),
    )
});

/// `KEYS`: list, and a counter of unfinished items (a joinable queue's) or nothing.
/// `ARGV`: bound (0: none), item. Appends if the list is shorter than the bound, counting the
/// item as unfinished. Returns 1 if appended.
pub(crate) static QUEUE_PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local bound = tonumber(ARGV[1])
if bound > 0 and redis.call('LLEN', KEYS[1]) >= bound then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
if #KEYS == 2 then redis.call('INCR', KEYS[2]) end
return 1
"#,
    )
});

/// `KEYS`: a joinable queue's counter of unfinished items. Counts one item done, deleting the
/// counter at 0 (so a finished queue leaves no key). Returns what is left, or -1 if no item
/// was unfinished.
pub(crate) static TASK_DONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n <= 0 then return -1 end
if n == 1 then redis.call('DEL', KEYS[1]) else redis.call('DECR', KEYS[1]) end
return n - 1
"#,
    )
});

/// Every script, for loading them all after a broker restart.
fn all() -> [&'static Script; 7] {
    [
        &SUBMIT, &COMPLETE, &REAP, &FORGET, &CANCEL, &QUEUE_PUT, &TASK_DONE,
    ]
}

/// Adds an `EVALSHA` of `script` to a pipeline.
pub(crate) fn add(pipe: &mut Pipeline, script: &Script, keys: &[&str], args: &[&[u8]]) {
    let cmd = pipe.cmd("EVALSHA").arg(script.get_hash()).arg(keys.len());
    for k in keys {
        cmd.arg(*k);
    }
    for a in args {
        cmd.arg(*a);
    }
}

/// Runs a pipeline of script calls, loading the scripts first if the broker forgot them.
pub(crate) fn query<T: redis::FromRedisValue>(
    pipe: &Pipeline,
    conn: &mut redis::Connection,
) -> RedisResult<T> {
    match pipe.query(conn) {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            for s in all() {
                s.load(conn)?;
            }
            pipe.query(conn)
        }
        other => other,
    }
}

/// Runs one script call (see [`query`]).
pub(crate) fn call<T: redis::FromRedisValue>(
    conn: &mut redis::Connection,
    script: &Script,
    keys: &[&str],
    args: &[&[u8]],
) -> RedisResult<T> {
    let mut pipe = redis::pipe();
    add(&mut pipe, script, keys, args);
    let (value,): (T,) = query(&pipe, conn)?;
    Ok(value)
}
