//! The node: a process that serves its build's tasks from the broker on a local
//! [`Pool`](crate::Pool).
//!
//! Three threads, each with its own connection:
//!
//! - the **reader** (the calling thread) takes entries with `XREADGROUP … COUNT idle`, where
//!   `idle` is the number of workers with nothing to do: a node never holds a task it cannot
//!   start at once, so a long task never keeps others waiting behind it. It verifies each
//!   entry's HMAC *before* anything else, and hands the task, still encoded, to the local pool,
//!   whose supervisor gives worker crashes ([`Error::WorkerLost`](crate::Error::WorkerLost)), time limits
//!   ([`Error::TimeLimit`](crate::Error::TimeLimit)) and worker replacement, exactly as locally;
//! - the **completer** records outcomes with the `COMPLETE` script, in batches: it refuses the
//!   outcome of an entry this node no longer owns (it was presumed lost meanwhile), which is
//!   how a node that was paused past its heartbeat has its late result discarded. A batch
//!   the broker refuses (a missing permission, a read-only replica, a script error) is tried
//!   again for up to [`REFUSAL_TTLS`] time-to-lives (an operator's mistake, taken back; the
//!   reader takes no new task meanwhile, as one it took could only fail); past
//!   that, or at SIGTERM, the node gives up: it kills its running tasks, takes no new one
//!   and leaves with an error, so that reapers fail what it held with
//!   [`Error::NodeLost`](crate::Error::NodeLost) instead of its clients waiting for ever;
//! - the **heartbeat** refreshes the node's heartbeat key (five times per time-to-live) and
//!   sweeps lost nodes (`reaper.rs`).
//!
//! The reader also drops, unrun, the tasks of clients that are gone (their heartbeat key has
//! expired; looked up at most once per heartbeat period per client).
//!
//! After a reconnection the reader reads its own pending entries again (`XREADGROUP … 0`): an
//! entry handed over in a reply that was lost is run then, once. On SIGTERM the node takes no
//! new task, lets its running tasks finish and records them, leaves the cluster and returns.
//! A node whose local pool breaks (its workers die before they run anything) leaves too, with
//! an error, instead of failing every task the cluster sends it.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use redis::streams::StreamId;

use super::broker::{Broker, BrokerConfig};
use super::wire::{self, Key, OutcomeMsg, WireResult};
use super::{build, keys, reaper, scripts, settings};
use crate::error::Result;

/// Options of a node (see [`serve`]).
///
/// ```no_run
/// use multiprocess::cluster::{serve, NodeOptions};
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     serve("redis://127.0.0.1:6379", NodeOptions::new().processes(4).key(*b"a secret of 16+ bytes"))
/// }
/// ```
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    processes: Option<usize>,
    key: Option<Vec<u8>>,
    tls_ca: Option<Vec<u8>>,
    ttl: Option<Duration>,
    max_tasks: Option<u64>,
    max_memory: Option<u64>,
    start_method: Option<crate::StartMethod>,
}

impl NodeOptions {
    /// No option set: [`serve`] takes each from the environment if it is set there (see the
    /// table in the [module](super)), or else its default: one worker per core, the key from
    /// `$MULTIPROCESS_CLUSTER_KEY` (required), a 5 s heartbeat time-to-live, the system's
    /// TLS roots. An option set in code wins over the environment.
    pub fn new() -> Self {
        NodeOptions::default()
    }

    /// The options the environment gives (see the table in the [module](super)): the worker
    /// count (`MULTIPROCESS_NODE_PROCESSES`), the heartbeat TTL
    /// (`MULTIPROCESS_CLUSTER_TTL_MS`), the CA file (`MULTIPROCESS_CLUSTER_CA`) and the key
    /// (`MULTIPROCESS_CLUSTER_KEY`). A value that is not a number, or a CA file that cannot
    /// be read, is an error.
    ///
    /// ```no_run
    /// // MULTIPROCESS_NODE_PROCESSES=4 MULTIPROCESS_CLUSTER_KEY=… ./app
    /// let options = multiprocess::cluster::NodeOptions::from_env()?;
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn from_env() -> Result<Self> {
        NodeOptions::new().or_env()
    }

    /// These options, with each one not set taken from the environment if it is set there.
    fn or_env(mut self) -> Result<Self> {
        if self.processes.is_none() {
            self.processes =
                settings::number_from_env(settings::PROCESSES_ENV)?.map(|n| n as usize);
        }
        if self.ttl.is_none() {
            self.ttl = settings::number_from_env(settings::TTL_ENV)?.map(Duration::from_millis);
        }
        if self.tls_ca.is_none() {
            self.tls_ca = settings::ca_from_env()?;
        }
        if self.key.is_none() {
            self.key = settings::key_from_env().ok();
        }
        Ok(self)
    }

    /// How many worker processes (default: the number of CPUs).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// The cluster key, as every client holds it.
    pub fn key(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.key = Some(secret.into());
        self
    }

    /// A PEM CA certificate that signs the broker's TLS certificate (for `rediss://`).
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(pem.into());
        self
    }

    /// How long the node may be silent before the cluster takes it for lost and fails (or
    /// hands out again) the tasks it holds (default 5 s).
    pub fn heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Replaces a worker after it ran this many tasks, as the local pool's
    /// [`maxtasksperchild`](crate::PoolBuilder::maxtasksperchild).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// Replaces a worker after a task that left it using more than `bytes` of memory, as the
    /// local pool's [`max_memory_per_worker`](crate::PoolBuilder::max_memory_per_worker).
    pub fn max_memory_per_worker(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// How the node's workers are started (default: the process-wide default).
    pub fn start_method(mut self, method: crate::StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// The node's local pool.
    fn pool(&self, processes: usize) -> Result<crate::Pool> {
        let mut builder = crate::Pool::builder().processes(processes);
        if let Some(n) = self.max_tasks {
            builder = builder.maxtasksperchild(n);
        }
        if let Some(bytes) = self.max_memory {
            builder = builder.max_memory_per_worker(bytes);
        }
        if let Some(method) = self.start_method {
            builder = builder.start_method(method);
        }
        builder.build()
    }
}

/// Set by SIGTERM: take no new task, finish, leave.
static TERMINATE: AtomicBool = AtomicBool::new(false);

/// SIGTERM's handler: an atomic store only (async-signal-safe).
fn on_sigterm(_: usize) {
    TERMINATE.store(true, Ordering::Release);
}

/// The state the reader, the completer and the heartbeat share.
struct Shared {
    id: String,
    stream: String,
    key: Key,
    ttl: Duration,
    processes: usize,
    work: Mutex<Work>,
    changed: Condvar,
    /// Whether each client seen lately was alive when last looked at.
    clients: Mutex<Clients>,
    leaving: AtomicBool,
}

#[derive(Default)]
struct Work {
    idle: usize,
    /// Entries this node holds and has not recorded an outcome for.
    owned: HashSet<String>,
    /// Whether the broker refuses the outcomes the completer records (it tries again
    /// meanwhile): the reader takes no new task.
    refusing: bool,
    /// Set when the completer gave up recording outcomes (the broker refused them): the node
    /// takes no new task and leaves with this error.
    gave_up: Option<crate::Error>,
}

/// How many time-to-lives the completer keeps trying a batch of outcomes that the broker
/// refuses (not a lost connection: a missing permission, a read-only replica, a script
/// error) before the node gives up and leaves.
pub(crate) const REFUSAL_TTLS: u32 = 3;

/// What the node knows of its clients: alive or not, and since when it knows.
type Clients = std::collections::HashMap<String, (bool, std::time::Instant)>;

/// A task's end, for the completer.
struct Done {
    entry: String,
    client: String,
    seq: u64,
    /// `None`: drop the entry without an outcome (its client is gone).
    result: Option<WireResult>,
    /// How long the client's result stream may outlive this write, in ms.
    ttl_ms: u64,
}

impl Shared {
    fn work(&self) -> MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves this build's tasks from the broker at `url` until SIGTERM; then lets the running
/// tasks finish and returns. Options not set in `options` come from the environment, as
/// [`NodeOptions::new`] says. Fails at once if the broker cannot be reached, refuses the
/// credentials, or no key is given.
pub fn serve(url: &str, options: NodeOptions) -> Result<()> {
    let options = options.or_env()?;
    let key = Key::new(&match options.key.clone() {
        Some(k) => k,
        None => settings::key_from_env()?,
    })?;
    let processes = options
        .processes
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let build = build::build_id()?;
    let config = Arc::new(BrokerConfig {
        url: url.to_string(),
        tls_ca: options.tls_ca.clone(),
        retry_for: None,
    });
    let mut reader = Broker::connect(config)?;
    let shared = Arc::new(Shared {
        id: keys::party_id(),
        stream: keys::tasks(build, &key.id),
        key,
        ttl: options.ttl.unwrap_or(settings::DEFAULT_TTL),
        processes,
        work: Mutex::new(Work {
            idle: processes,
            ..Work::default()
        }),
        changed: Condvar::new(),
        clients: Mutex::new(Clients::new()),
        leaving: AtomicBool::new(false),
    });
    install_sigterm()?;
    create_group(&mut reader, &shared.stream)?;
    let pool = options.pool(processes)?;
    let mut beat_conn = reader.another()?;
    heartbeat_once(&mut beat_conn, &shared, build)?;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Done>();
    let completer = {
        let (shared, conn) = (Arc::clone(&shared), reader.another()?);
        std::thread::Builder::new()
            .name("multiprocess-node-complete".into())
            .spawn(move || complete_loop(&shared, conn, done_rx))?
    };
    let heartbeat = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("multiprocess-node-heartbeat".into())
            .spawn(move || heartbeat_loop(&shared, beat_conn, build))?
    };
    eprintln!(
        "multiprocess node {} serves build {build} with {processes} workers on {}",
        shared.id,
        reader.config().display_url()
    );
    let served = read_loop(&shared, &mut reader, &pool, &done_tx);
    // Leave: every running task finishes and is recorded before the heartbeat stops; unless
    // the broker refuses outcomes: then the running tasks are killed (their outcomes could not
    // be recorded), and reapers fail them with NodeLost once the heartbeat is gone.
    wait_all_idle(&shared);
    let gave_up = shared.work().gave_up.take();
    if gave_up.is_some() {
        pool.terminate();
    } else {
        pool.close();
    }
    let _ = pool.join();
    drop(pool);
    drop(done_tx);
    let _ = completer.join();
    shared.leaving.store(true, Ordering::Release);
    shared.changed.notify_all();
    let _ = heartbeat.join();
    leave(&mut reader, &shared);
    eprintln!("multiprocess node {} left the cluster", shared.id);
    match gave_up {
        Some(e) => Err(e),
        None => served,
    }
}

/// Serves as a node if `MULTIPROCESS_NODE` is set (called by [`init`](crate::init)), and exits.
pub(crate) fn serve_if_asked() {
    let Some(url) = std::env::var_os(settings::NODE_ENV) else {
        return;
    };
    // The node's own workers are re-executed copies of this program: not nodes.
    std::env::remove_var(settings::NODE_ENV);
    let url = url.to_string_lossy().into_owned();
    let outcome = NodeOptions::from_env().and_then(|options| serve(&url, options));
    match outcome {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("multiprocess node: {e}");
            std::process::exit(1)
        }
    }
}

fn install_sigterm() -> Result<()> {
    // SAFETY: the handler only stores an atomic.
    unsafe { crate::sys::on_signal_with_value(crate::sys::SIGTERM, on_sigterm) }?;
    Ok(())
}

/// Creates the nodes' group on the task stream (from its start: tasks queued before the
/// first node came are served too).
fn create_group(broker: &mut Broker, stream: &str) -> Result<()> {
    broker.run(|c| ensure_group(c, stream))
}

/// `XGROUP CREATE stream nodes 0 MKSTREAM`, if the group is not there.
fn ensure_group(c: &mut redis::Connection, stream: &str) -> redis::RedisResult<()> {
    let created = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(keys::GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query::<()>(c);
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Takes tasks while workers are idle, until SIGTERM.
fn read_loop(
    shared: &Arc<Shared>,
    reader: &mut Broker,
    pool: &crate::Pool,
    done: &Sender<Done>,
) -> Result<()> {
    reader.set_read_timeout(Some(Duration::from_secs(30)));
    let mut backlog: VecDeque<StreamId> = VecDeque::new();
    let mut seen_generation = reader.generation();
    let mut paused = false;
    loop {
        let idle = wait_idle(shared, Duration::from_millis(200));
        // Said once the last read begun before the refusal has returned: from here on, no
        // task is taken until the broker takes outcomes again.
        let refusing = shared.work().refusing;
        if refusing && !paused {
            eprintln!(
                "multiprocess node {}: taking no new task while the broker refuses outcomes",
                shared.id
            );
        }
        paused = refusing;
        // Before SIGTERM is looked at: entries handed over in a lost reply are ours to run.
        if reader.generation() != seen_generation {
            seen_generation = reader.generation();
            recover(shared, reader, &mut backlog)?;
        }
        // Looked at after the wait: SIGTERM may have come during it.
        if TERMINATE.load(Ordering::Acquire) && backlog.is_empty() {
            return Ok(());
        }
        if shared.work().gave_up.is_some() {
            return Ok(()); // outcomes cannot be recorded: take nothing more
        }
        if idle == 0 {
            continue;
        }
        let entries: Vec<StreamId> = if backlog.is_empty() {
            read_new(shared, reader, idle)?
        } else {
            let n = idle.min(backlog.len());
            backlog.drain(..n).collect()
        };
        for entry in entries {
            handle(shared, reader, pool, done, entry)?;
        }
    }
}

/// `XREADGROUP … COUNT idle BLOCK 500 … >`: new entries, at most one per idle worker.
fn read_new(shared: &Shared, reader: &mut Broker, idle: usize) -> Result<Vec<StreamId>> {
    read_group(shared, reader, idle, Some(500), ">")
}

/// `XREADGROUP` on our stream as our consumer: from `from` (`>`: new entries; `0`: those we
/// own already), blocking up to `block_ms` if given.
fn read_group(
    shared: &Shared,
    reader: &mut Broker,
    count: usize,
    block_ms: Option<u64>,
    from: &str,
) -> Result<Vec<StreamId>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(keys::GROUP).arg(&shared.id);
    cmd.arg("COUNT").arg(count);
    if let Some(ms) = block_ms {
        cmd.arg("BLOCK").arg(ms);
    }
    cmd.arg("STREAMS").arg(&shared.stream).arg(from);
    let reply: Option<redis::streams::StreamReadReply> = reader.run(|c| match cmd.query(c) {
        // The stream or its group is gone: the broker lost its data (restarted without its
        // append-only file), or the idle stream was deleted (see `FORGET`) while this node was
        // taken for lost. They are made again, and the node goes on.
        Err(e) if matches!(e.code(), Some("NOGROUP" | "UNBLOCKED")) => {
            ensure_group(c, &shared.stream)?;
            cmd.query(c)
        }
        other => other,
    })?;
    Ok(reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .collect())
}

/// After a reconnection: our pending entries that we do not hold (handed over in a reply we
/// never got) go to the backlog, to run now.
///
/// What we hold is looked at *before* the pending list is read: only this thread adds to it,
/// but the completer removes an entry once its outcome is recorded, so a look taken after the
/// read could miss an entry that was still pending when read, and run it a second time.
fn recover(shared: &Shared, reader: &mut Broker, backlog: &mut VecDeque<StreamId>) -> Result<()> {
    let owned = shared.work().owned.clone();
    let mine = read_group(shared, reader, 100_000, None, "0")?;
    for entry in mine {
        if !owned.contains(&entry.id) && !backlog.iter().any(|b| b.id == entry.id) {
            backlog.push_back(entry);
        }
    }
    Ok(())
}

/// Verifies an entry and starts it on the pool (or settles it at once).
fn handle(
    shared: &Arc<Shared>,
    reader: &mut Broker,
    pool: &crate::Pool,
    done: &Sender<Done>,
    entry: StreamId,
) -> Result<()> {
    let client = String::from_utf8_lossy(&wire::field(&entry, "c")).into_owned();
    let seq: u64 = String::from_utf8_lossy(&wire::field(&entry, "s"))
        .parse()
        .unwrap_or(0);
    let (body, tag) = (wire::field(&entry, "t"), wire::field(&entry, "m"));
    shared.work().owned.insert(entry.id.clone());
    let settle = |result: Option<WireResult>, ttl_ms: u64| {
        let _ = done.send(Done {
            entry: entry.id.clone(),
            client: client.clone(),
            seq,
            result,
            ttl_ms,
        });
    };
    let task = match wire::open_task(&shared.key, &shared.stream, &body, &tag) {
        Ok(task) if task.client == client && task.seq == seq => task,
        Ok(_) | Err(_) => {
            eprintln!(
                "multiprocess node {}: refused entry {} (client {client:?}, task {seq}): its \
                 HMAC does not match; it was forged or altered and was not run",
                shared.id, entry.id
            );
            let why = "the task's HMAC did not match on the node: it was altered in the broker \
                       and was not run";
            settle(
                Some(WireResult::Auth(why.into())),
                shared.ttl.as_millis() as u64,
            );
            return Ok(());
        }
    };
    if !client_alive(shared, reader, &client)? {
        settle(None, 0); // its client is gone: nobody wants the result
        return Ok(());
    }
    let mut work = shared.work();
    work.idle = work.idle.saturating_sub(1);
    drop(work);
    let (tx, entry_id, client_id) = (done.clone(), entry.id.clone(), client.clone());
    let (freed, ttl_ms) = (Arc::clone(shared), task.ttl_ms);
    let finisher: crate::pool::Finisher = Box::new(move |outcome| {
        // The worker is free now: the reader may take the next task while the outcome is
        // recorded (the entry stays owned until then).
        freed.work().idle += 1;
        freed.changed.notify_all();
        let _ = tx.send(Done {
            entry: entry_id,
            client: client_id,
            seq,
            result: Some(WireResult::from_outcome(outcome)),
            ttl_ms,
        });
    });
    let limit = (task.limit_ms > 0).then(|| Duration::from_millis(task.limit_ms));
    if let Err(e) = pool.submit_encoded(task.entry, task.args, limit, finisher) {
        shared.work().idle += 1;
        settle(
            Some(WireResult::from_outcome(&Err(e.clone_for_caller()))),
            ttl_ms,
        );
        if e.is_pool_not_running() {
            // Its workers cannot start: leave, rather than fail every task of the cluster.
            return Err(e);
        }
    }
    Ok(())
}

/// Whether a client is alive: its heartbeat key, looked up at most once per heartbeat period.
fn client_alive(shared: &Shared, reader: &mut Broker, client: &str) -> Result<bool> {
    let every = shared.ttl / 5;
    if let Some((alive, at)) = shared
        .clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(client)
    {
        if !*alive || at.elapsed() < every {
            return Ok(*alive); // a client found gone never comes back under its id
        }
    }
    let alive: bool = reader.run(|c| redis::cmd("EXISTS").arg(keys::client(client)).query(c))?;
    let mut clients = shared.clients.lock().unwrap_or_else(|e| e.into_inner());
    if clients.len() > 10_000 {
        clients.retain(|_, (alive, at)| *alive && at.elapsed() < every);
    }
    clients.insert(client.to_string(), (alive, std::time::Instant::now()));
    Ok(alive)
}

/// Waits up to `timeout` for an idle worker; returns how many are idle (none while the
/// broker refuses outcomes: a task taken then could only fail with NodeLost, should the node
/// give up, when another node could have run it).
fn wait_idle(shared: &Shared, timeout: Duration) -> usize {
    let work = shared.work();
    let (work, _) = shared
        .changed
        .wait_timeout_while(work, timeout, |w| w.idle == 0 || w.refusing)
        .unwrap_or_else(|e| e.into_inner());
    if work.refusing {
        0
    } else {
        work.idle
    }
}

/// Waits until every task the node took has its outcome recorded, or the completer gave up.
fn wait_all_idle(shared: &Shared) {
    let work = shared.work();
    drop(shared.changed.wait_while(work, |w| {
        w.gave_up.is_none() && (w.idle < shared.processes || !w.owned.is_empty())
    }));
}

/// Records outcomes in batches until every sender is gone.
fn complete_loop(shared: &Shared, mut conn: Broker, done: Receiver<Done>) {
    while let Ok(first) = done.recv() {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match done.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        for d in &mut batch {
            let (outcome, mac) = match d.result.take() {
                Some(result) => {
                    let msg = OutcomeMsg {
                        seq: d.seq,
                        node: shared.id.clone(),
                        result,
                    };
                    match wire::seal_outcome(&shared.key, &d.client, &msg) {
                        Ok((bytes, mac)) => (bytes, mac.to_vec()),
                        Err(_) => (Vec::new(), Vec::new()),
                    }
                }
                None => (Vec::new(), Vec::new()),
            };
            let (results, client_key) = (keys::results(&d.client), keys::client(&d.client));
            let index = keys::entries(&d.client);
            let (ttl, seq) = (d.ttl_ms.max(1).to_string(), d.seq.to_string());
            scripts::add(
                &mut pipe,
                &scripts::COMPLETE,
                &[&shared.stream, &results, &client_key, &index],
                &[
                    keys::GROUP.as_bytes(),
                    d.entry.as_bytes(),
                    shared.id.as_bytes(),
                    &outcome,
                    &mac,
                    ttl.as_bytes(),
                    seq.as_bytes(),
                ],
            );
        }
        let generation = conn.generation();
        let recorded = match record(shared, &mut conn, &pipe, batch.len()) {
            Ok(recorded) => recorded,
            Err(e) => {
                // The node leaves (see `serve`); the entries it holds stay in its pending
                // list for reapers, and later outcomes are dropped with this thread.
                shared.work().gave_up = Some(e);
                shared.changed.notify_all();
                return;
            }
        };
        // After a reconnection, 0 may also mean "recorded by the attempt whose reply was lost".
        let certain = conn.generation() == generation;
        for (d, r) in batch.iter().zip(&recorded) {
            if *r == 0 && certain {
                eprintln!(
                    "multiprocess node {}: discarded the late result of task {} of client {}: \
                     this node was presumed lost and the task was settled without it",
                    shared.id, d.seq, d.client
                );
            }
        }
        let mut work = shared.work();
        for d in &batch {
            work.owned.remove(&d.entry);
        }
        drop(work);
        shared.changed.notify_all();
    }
}

/// Runs a batch of `COMPLETE` calls until the broker takes it. Connection errors are retried
/// by the broker (for as long as it is down: the node's heartbeat stops meanwhile, and
/// reapers settle what it holds). Any other error (a missing permission, a read-only replica,
/// a script error) is reported and tried again after a pause, which is safe (`COMPLETE` is
/// idempotent), for up to [`REFUSAL_TTLS`] time-to-lives, or until SIGTERM: then the error,
/// and the node gives up.
fn record(
    shared: &Shared,
    conn: &mut Broker,
    pipe: &redis::Pipeline,
    n: usize,
) -> Result<Vec<i64>> {
    let mut pause = Duration::from_millis(10);
    let mut failing: Option<std::time::Instant> = None;
    let limit = shared.ttl * REFUSAL_TTLS;
    loop {
        match conn.run(|c| scripts::query(pipe, c)) {
            Ok(recorded) => {
                if failing.is_some() {
                    eprintln!("multiprocess node {}: outcomes recorded again", shared.id);
                    shared.work().refusing = false;
                    shared.changed.notify_all();
                }
                return Ok(recorded);
            }
            Err(e) => {
                let since = *failing.get_or_insert_with(|| {
                    shared.work().refusing = true;
                    eprintln!(
                        "multiprocess node {}: could not record {n} outcomes, trying again: {e}",
                        shared.id
                    );
                    std::time::Instant::now()
                });
                let sigterm = TERMINATE.load(Ordering::Acquire);
                if sigterm || since.elapsed() >= limit {
                    let why = if sigterm {
                        "SIGTERM came".to_string()
                    } else {
                        format!("for {limit:?}")
                    };
                    let e = crate::Error::Broker(format!(
                        "the broker refused this node's outcomes ({why}): {e}; the node leaves \
                         the cluster, and the tasks it held fail with NodeLost"
                    ));
                    eprintln!("multiprocess node {}: giving up: {e}", shared.id);
                    return Err(e);
                }
                // A pause between attempts (a backoff, not a synchronisation).
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Writes the node's heartbeat (and its line in the node table).
fn heartbeat_once(conn: &mut Broker, shared: &Shared, build: &str) -> Result<()> {
    let node_key = keys::node(&shared.id);
    let busy = shared.processes - shared.work().idle.min(shared.processes);
    let ttl = shared.ttl.as_millis() as u64;
    conn.run(|c| {
        redis::pipe()
            .cmd("HSET")
            .arg(&node_key)
            .arg("build")
            .arg(build)
            .arg("key")
            .arg(&shared.key.id)
            .arg("host")
            .arg(keys::hostname())
            .arg("pid")
            .arg(std::process::id())
            .arg("processes")
            .arg(shared.processes)
            .arg("busy")
            .arg(busy)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&node_key)
            .arg(ttl)
            .ignore()
            .cmd("HSET")
            .arg(keys::NODES)
            .arg(&shared.id)
            .arg(&shared.stream)
            .ignore()
            .query::<()>(c)
    })
}

/// Heartbeats, sweeps and client checks until the node leaves.
fn heartbeat_loop(shared: &Shared, mut conn: Broker, build: &str) {
    let every = (shared.ttl / 5).max(Duration::from_millis(20));
    let mut announced = false;
    while !shared.leaving.load(Ordering::Acquire) {
        if TERMINATE.load(Ordering::Acquire) && !announced {
            announced = true;
            eprintln!(
                "multiprocess node {}: SIGTERM: taking no new task, finishing the running ones",
                shared.id
            );
        }
        if let Err(e) = heartbeat_once(&mut conn, shared, build) {
            eprintln!("multiprocess node {}: heartbeat failed: {e}", shared.id);
        }
        if let Err(e) = reaper::sweep(&mut conn, &shared.key, &shared.id, shared.ttl) {
            eprintln!("multiprocess node {}: sweep failed: {e}", shared.id);
        }
        let work = shared.work();
        drop(
            shared
                .changed
                .wait_timeout_while(work, every, |_| !shared.leaving.load(Ordering::Acquire)),
        );
    }
}

/// Removes the node from the cluster: its heartbeat first, then (with `FORGET`) its line in
/// the node table and its consumer, but only if it owns no entry. One it still owns (handed
/// over in a reply lost just before SIGTERM) would be lost with the consumer: instead the node
/// stays in the table as a lost one, and reapers settle the entry.
fn leave(conn: &mut Broker, shared: &Shared) {
    let heartbeat = keys::node(&shared.id);
    let _ = conn.run(|c| {
        redis::cmd("DEL").arg(&heartbeat).query::<()>(c)?;
        scripts::call::<i64>(
            c,
            &scripts::FORGET,
            &[&shared.stream, &heartbeat, keys::NODES],
            &[keys::GROUP.as_bytes(), shared.id.as_bytes()],
        )
    });
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}
