//! The client's engine under [`cluster::Pool`](super::Pool): submitting encoded tasks, a
//! receiver thread for outcomes, and a keeper thread that keeps the client's heartbeat, reaps
//! lost nodes and notices when no node of the build is left.
//!
//! A submitted task gets the next number of this client (`seq`) and a result [`Slot`] (the
//! local pool's, so results behave as local ones), registered *before* the task is sent (its
//! outcome may come back before the reply to the submission). Submissions are serialised on
//! one connection so task numbers reach the broker in order: the `SUBMIT` script skips
//! numbers at or below the client's high-water mark, which makes a retried batch harmless.
//!
//! The receiver reads the client's result stream with `XREAD BLOCK` from the last id it has
//! seen (a read after a reconnection repeats nothing it has not seen), sets each slot (running
//! callbacks there, as the local pool's supervisor does), and trims what it has read. The
//! keeper, at each heartbeat, refreshes the client's keys, sweeps lost nodes
//! (`reaper.rs`), and if no live node has run the build for a time-to-live (a grace that lets a
//! node restart), fails the tasks that no node has taken with [`Error::NoLiveNode`] (their
//! entries are deleted first, so none can start later).
//!
//! A client finds its entries in the stream through its *entry index* (`mp:entries:{id}`,
//! task number → entry id), which the scripts keep in step with the stream (a redelivered task
//! is a new entry: `REAP` updates the index). Looking entries up costs as much as the client's
//! own unfinished tasks (`HMGET`), never a scan of the stream that every client of the build
//! shares. The index outlives the client's heartbeat by one TTL, so that a forgotten client
//! can still find and drop its waiting tasks; then it expires.
//!
//! A client whose heartbeat expired (cut off from the broker, or the broker down, for longer
//! than its TTL) finds itself *forgotten*: nodes took it for dead and drop its tasks and
//! outcomes, for good. It fails every unfinished task with [`Error::Broker`] (saying whether
//! the task was dropped unrun or may have run) and takes no new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::broker::{Broker, BrokerConfig};
use super::keys;
use super::reaper;
use super::scripts;
use super::survey::{self, NodeInfo};
use super::wire::{self, Key, TaskBody};
use crate::error::{Error, Result};
use crate::pool::{Finisher, Slot};

/// Everything fixed about a client.
pub(crate) struct ClientConfig {
    pub broker: Arc<BrokerConfig>,
    pub key: Key,
    pub build: &'static str,
    /// The task stream of our build and key.
    pub stream: String,
    pub id: String,
    /// How long our heartbeat (and our results) outlive our last sign of life.
    pub ttl: Duration,
    /// Tasks handed out again after a lost node, at most (0: at most once).
    pub redeliver: u32,
}

impl ClientConfig {
    fn heartbeat_every(&self) -> Duration {
        (self.ttl / 5).max(Duration::from_millis(20))
    }

    /// How long the entry index outlives our last sign of life: one TTL more than the
    /// heartbeat, so that a forgotten client still finds its entries (see [`forgotten`]).
    fn index_ttl(&self) -> Duration {
        self.ttl * 2
    }
}

#[derive(Default)]
pub(crate) struct State {
    next_seq: u64,
    /// The result slots of the tasks sent and not yet settled, by task number.
    unfinished: HashMap<u64, Arc<Slot>>,
    pub closing: bool,
    pub terminated: bool,
    /// The broker forgot this client (see [`forgotten`]): it takes no new task.
    forgotten: bool,
    /// `imap` iterators still alive: after `close`, the client keeps serving them.
    pub open_iterators: usize,
}

/// What the last look at the nodes found.
struct LiveView {
    at: Instant,
    /// Live nodes of our build and key.
    mine: usize,
}

/// The client's shared engine.
pub(crate) struct Client {
    pub config: ClientConfig,
    state: Mutex<State>,
    /// Signalled when the last unfinished task settles.
    settled: Condvar,
    submitter: Mutex<Broker>,
    live: Mutex<Option<LiveView>>,
    /// When a live node of our build was last seen.
    last_node_seen: Mutex<Instant>,
    /// Set when the pool shuts down: the background threads stop, reconnects give up.
    stop: Arc<AtomicBool>,
    /// The receiver and the keeper threads.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// How many tasks one `SUBMIT` call carries.
const SUBMIT_BATCH: usize = 512;

/// How many outcomes one read takes.
const READ_BATCH: usize = 1024;

impl Client {
    /// Registers the client with the broker and starts its receiver and keeper threads.
    pub(crate) fn start(config: ClientConfig) -> Result<Arc<Client>> {
        let mut submitter = Broker::connect(Arc::clone(&config.broker))?;
        let mut reader = submitter.another()?;
        let ttl = config.ttl.as_millis() as u64;
        let client_key = keys::client(&config.id);
        submitter.run(|c| {
            redis::pipe()
                .cmd("HSET")
                .arg(&client_key)
                .arg("hw")
                .arg(0)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&client_key)
                .arg(ttl)
                .ignore()
                .query::<()>(c)
        })?;
        reader.set_read_timeout(Some(Duration::from_secs(30)));
        let mut keeper = submitter.another()?;
        let stop = Arc::new(AtomicBool::new(false));
        reader.cancel_on(Arc::clone(&stop));
        keeper.cancel_on(Arc::clone(&stop));
        let client = Arc::new(Client {
            config,
            state: Mutex::new(State::default()),
            settled: Condvar::new(),
            submitter: Mutex::new(submitter),
            live: Mutex::new(None),
            last_node_seen: Mutex::new(Instant::now()),
            stop,
            threads: Mutex::new(Vec::new()),
        });
        let (for_receiver, for_keeper) = (Arc::clone(&client), Arc::clone(&client));
        let receiver = std::thread::Builder::new()
            .name("multiprocess-cluster".into())
            .spawn(move || receive_loop(for_receiver, reader))?;
        let keeper = std::thread::Builder::new()
            .name("multiprocess-cluster-beat".into())
            .spawn(move || keeper_loop(for_keeper, keeper))?;
        client
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend([receiver, keeper]);
        Ok(client)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails unless a live node runs our build under our key (looked up again when the last
    /// look is older than a heartbeat).
    fn check_live_node(&self) -> Result<()> {
        let fresh = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|v| v.at.elapsed() < self.config.heartbeat_every() && v.mine > 0);
        if fresh {
            return Ok(());
        }
        let found = self.submitter_lock().run(survey::survey)?;
        let view = self.record_view(&found.live);
        if view.0 > 0 {
            Ok(())
        } else {
            Err(self.no_live_node(view.1))
        }
    }

    /// Records a look at the live nodes; returns (ours, the others in words).
    fn record_view(&self, live: &[NodeInfo]) -> (usize, String) {
        let (mine, seen) = survey::describe_for(live, self.config.build, &self.config.key.id);
        if mine > 0 {
            *self
                .last_node_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(LiveView {
            at: Instant::now(),
            mine,
        });
        (mine, seen)
    }

    fn no_live_node(&self, seen: String) -> Error {
        Error::NoLiveNode {
            build: self.config.build.to_string(),
            seen,
        }
    }

    fn submitter_lock(&self) -> MutexGuard<'_, Broker> {
        self.submitter.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends tasks over one entry function (each an encoded chunk of argument tuples, with
    /// its finisher), all or none: an error means no slot for any of them. (They go in
    /// batches of [`SUBMIT_BATCH`]: when a later batch fails, after the broker was out of
    /// reach for the whole reconnect limit, the earlier ones are already in the stream and
    /// may run; their outcomes are dropped.) `from_iterator`: the next chunk of an `imap`
    /// begun before `close`, still accepted after it.
    pub(crate) fn submit(
        &self,
        entry: i64,
        limit: Option<Duration>,
        tasks: Vec<(Vec<u8>, Option<Finisher>)>,
        from_iterator: bool,
    ) -> Result<Vec<Arc<Slot>>> {
        self.check_open(from_iterator)?;
        self.check_live_node()?;
        let mut broker = self.submitter_lock();
        // Numbers are taken with the submission connection held: they reach the broker in order.
        let mut numbered = Vec::with_capacity(tasks.len());
        let mut slots = Vec::with_capacity(tasks.len());
        {
            let mut state = self.lock();
            for (args, finisher) in tasks {
                state.next_seq += 1;
                let seq = state.next_seq;
                let slot = Slot::new(finisher);
                state.unfinished.insert(seq, Arc::clone(&slot));
                slots.push(slot);
                numbered.push((seq, args));
            }
        }
        let first = numbered.first().map_or(0, |t| t.0);
        let sent = self.send_batches(&mut broker, entry, limit, numbered);
        if let Err(e) = sent {
            let mut state = self.lock();
            for seq in first..first + slots.len() as u64 {
                state.unfinished.remove(&seq);
            }
            return Err(e);
        }
        Ok(slots)
    }

    fn check_open(&self, from_iterator: bool) -> Result<()> {
        let state = self.lock();
        if state.terminated {
            return Err(Error::PoolTerminated);
        }
        if state.closing && !from_iterator {
            return Err(Error::PoolClosed);
        }
        if state.forgotten {
            return Err(self.forgotten_error());
        }
        Ok(())
    }

    /// Why a forgotten client takes no new task.
    fn forgotten_error(&self) -> Error {
        Error::Broker(format!(
            "this client was out of touch with the broker for over {:?} (its heartbeat TTL) \
             and was forgotten: it takes no new task; make a new pool",
            self.config.ttl
        ))
    }

    /// Seals and sends numbered tasks in batches.
    fn send_batches(
        &self,
        broker: &mut Broker,
        entry: i64,
        limit: Option<Duration>,
        numbered: Vec<(u64, Vec<u8>)>,
    ) -> Result<()> {
        let config = &self.config;
        let (client_key, index) = (keys::client(&config.id), keys::entries(&config.id));
        let index_ttl = config.index_ttl().as_millis().to_string();
        let limit_ms = limit.map_or(0, |l| l.as_millis().max(1) as u64);
        for batch in numbered.chunks(SUBMIT_BATCH) {
            let mut args: Vec<Vec<u8>> =
                vec![config.id.as_bytes().to_vec(), index_ttl.clone().into_bytes()];
            for (seq, chunk) in batch {
                let body = TaskBody {
                    client: config.id.clone(),
                    seq: *seq,
                    entry,
                    args: chunk.clone(),
                    limit_ms,
                    redeliver: config.redeliver,
                    ttl_ms: config.ttl.as_millis() as u64,
                };
                let (bytes, tag) = wire::seal_task(&config.key, &config.stream, &body)?;
                args.extend([seq.to_string().into_bytes(), bytes, tag.to_vec()]);
            }
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let reply: redis::Value = broker.run(|c| {
                let keys = [config.stream.as_str(), &client_key, &index];
                scripts::call(c, &scripts::SUBMIT, &keys, &refs)
            })?;
            if reply == redis::Value::Int(-1) {
                return Err(self.forgotten_error());
            }
        }
        Ok(())
    }

    /// Waits until every task sent has settled.
    pub(crate) fn wait_settled(&self) {
        let mut state = self.lock();
        while !state.unfinished.is_empty() || state.open_iterators > 0 {
            state = self
                .settled
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wakes the waiters of [`wait_settled`](Self::wait_settled) (an iterator went away).
    pub(crate) fn notify(&self) {
        self.settled.notify_all();
    }

    /// Stops the background threads, deletes the entries of its tasks that no node has taken
    /// and removes the client's keys: the outcomes of the tasks running are thrown away. Unfinished tasks
    /// fail with [`Error::PoolTerminated`].
    pub(crate) fn shut_down(&self) {
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        let client_key = keys::client(&self.config.id);
        let results = keys::results(&self.config.id);
        let index = keys::entries(&self.config.id);
        let mut broker = self.submitter_lock();
        // A broker that is down is not waited for long: the keys expire by themselves.
        broker.set_retry_for(Some(Duration::from_secs(2)));
        // Tasks no node has taken are deleted here: a node that saw this client alive a moment
        // ago could otherwise still start one. (A broker that fails now leaves that to them.)
        let unfinished: Vec<u64> = self.lock().unfinished.keys().copied().collect();
        if let Ok(waiting) = find_entries(self, &mut broker, &unfinished) {
            let _ = cancel_entries(self, &mut broker, &waiting);
        }
        // Deleting the keys also wakes the reader (a write to the stream it blocks on).
        let _ = broker.run_once(|c| {
            redis::pipe()
                .cmd("DEL")
                .arg(&client_key)
                .arg(&index)
                .ignore()
                .cmd("XADD")
                .arg(&results)
                .arg("*")
                .arg("w")
                .arg(1)
                .ignore()
                .cmd("DEL")
                .arg(&results)
                .ignore()
                .query::<()>(c)
        });
        drop(broker);
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            h.thread().unpark(); // the keeper, from its pause
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        let left: Vec<Arc<Slot>> = self.lock().unfinished.drain().map(|(_, s)| s).collect();
        for slot in left {
            slot.set(Err(Error::PoolTerminated));
        }
        self.settled.notify_all();
    }

    /// Sets the outcome of task `seq`, once; later outcomes for it are ignored.
    fn settle(&self, seq: u64, outcome: std::result::Result<Vec<u8>, Error>) {
        let found = {
            let mut state = self.lock();
            let found = state.unfinished.remove(&seq);
            if state.unfinished.is_empty() {
                self.settled.notify_all();
            }
            found
        };
        if let Some(slot) = found {
            slot.set(outcome.map(|bytes| crate::buffer::Payload::Inline(Arc::new(bytes))));
        }
    }

    /// How many tasks are still unfinished.
    pub(crate) fn unfinished(&self) -> usize {
        self.lock().unfinished.len()
    }

    /// Whether the background threads may stop: shut down, or closed with nothing left.
    fn done(&self) -> bool {
        if self.stop.load(Ordering::Acquire) {
            return true;
        }
        let state = self.lock();
        state.forgotten
            || (state.closing && state.unfinished.is_empty() && state.open_iterators == 0)
    }
}

/// How long a read of outcomes blocks before it looks whether to stop.
const READ_BLOCK_MS: u64 = 1000;

/// The receiver thread: reads outcomes and sets their slots (running the callbacks).
fn receive_loop(client: Arc<Client>, mut broker: Broker) {
    crate::pool::ON_SUPERVISOR.with(|f| f.set(true));
    let results = keys::results(&client.config.id);
    let mut last_seen = "0-0".to_string();
    let mut trim_below: Option<String> = None;
    while !client.done() {
        let read = broker.run(|c| {
            let mut pipe = redis::pipe();
            if let Some(below) = &trim_below {
                pipe.cmd("XTRIM")
                    .arg(&results)
                    .arg("MINID")
                    .arg(below)
                    .ignore();
            }
            pipe.cmd("XREAD")
                .arg("COUNT")
                .arg(READ_BATCH)
                .arg("BLOCK")
                .arg(READ_BLOCK_MS)
                .arg("STREAMS")
                .arg(&results)
                .arg(&last_seen);
            pipe.query::<(Option<redis::streams::StreamReadReply>,)>(c)
        });
        trim_below = None;
        let reply = match read {
            Ok((reply,)) => reply,
            Err(e) => {
                if !client.stop.load(Ordering::Acquire) {
                    eprintln!("multiprocess cluster client: {e}");
                }
                continue;
            }
        };
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            last_seen = entry.id.clone();
            let (body, tag) = (wire::field(&entry, "o"), wire::field(&entry, "m"));
            if body.is_empty() {
                continue; // a wake-up
            }
            match wire::open_outcome(&client.config.key, &client.config.id, &body, &tag) {
                Ok(msg) => client.settle(msg.seq, msg.result.into_outcome()),
                Err(e) => eprintln!("multiprocess cluster client: ignored an outcome: {e}"),
            }
            trim_below = Some(next_id(&last_seen));
        }
    }
}

/// The keeper thread: a heartbeat five times per TTL, apart from the outcomes so that a slow
/// sweep never holds a result back.
fn keeper_loop(client: Arc<Client>, mut broker: Broker) {
    crate::pool::ON_SUPERVISOR.with(|f| f.set(true)); // NoLiveNode outcomes run callbacks here
    let every = client.config.heartbeat_every();
    while !client.done() {
        let next = Instant::now() + every;
        if let Err(e) = keep_alive(&client, &mut broker) {
            if !client.stop.load(Ordering::Acquire) {
                eprintln!("multiprocess cluster client: {e}");
            }
        }
        // A pause, cut short by `shut_down`'s unpark; spurious wake-ups loop.
        while !client.done() {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::park_timeout(left);
        }
    }
}

/// The smallest stream id after `id` (`ms-seq` → `ms-(seq+1)`).
fn next_id(id: &str) -> String {
    match id.split_once('-') {
        Some((ms, seq)) => format!("{ms}-{}", seq.parse::<u64>().map_or(0, |s| s + 1)),
        None => id.to_string(),
    }
}

/// One heartbeat: refresh our keys, sweep lost nodes, and fail what can no longer run.
fn keep_alive(client: &Client, broker: &mut Broker) -> Result<()> {
    let config = &client.config;
    let ttl = config.ttl.as_millis() as u64;
    let (client_key, results) = (keys::client(&config.id), keys::results(&config.id));
    let index = keys::entries(&config.id);
    let (alive,): (i64,) = broker.run(|c| {
        redis::pipe()
            .cmd("PEXPIRE")
            .arg(&client_key)
            .arg(ttl)
            .cmd("PEXPIRE")
            .arg(&results)
            .arg(ttl)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(config.index_ttl().as_millis() as u64)
            .ignore()
            .query(c)
    })?;
    if alive == 0 {
        forgotten(client, broker);
        return Ok(());
    }
    let found = reaper::sweep(broker, &config.key, &config.id, config.ttl)?;
    let (mine, seen) = client.record_view(&found.live);
    // A grace of one time-to-live lets a node restart (or a rolling upgrade) take the tasks.
    let orphaned = client
        .last_node_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .elapsed()
        >= config.ttl;
    if mine == 0 && orphaned && client.unfinished() > 0 {
        cancel_unstarted(client, broker, seen)?;
    }
    Ok(())
}

/// The broker forgot us: our heartbeat expired (we were cut off from it, or it was down, for
/// longer than our TTL). Nodes took us for dead meanwhile: they drop our tasks that they read
/// and throw away the outcomes of those they ran, and a client found dead is never served
/// again under its id (so registering again would leave new tasks unanswered). So every
/// unfinished task fails, saying whether it was dropped unrun (its entry deleted here, before
/// any node took it) or may have run (a node had taken it); and the client takes no new task.
fn forgotten(client: &Client, broker: &mut Broker) {
    let left: Vec<(u64, Arc<Slot>)> = {
        let mut state = client.lock();
        state.forgotten = true;
        state.unfinished.drain().collect()
    };
    // A broker that fails now leaves the tasks' fate unknown: "may have run".
    let seqs: Vec<u64> = left.iter().map(|(seq, _)| *seq).collect();
    let waiting = find_entries(client, broker, &seqs).unwrap_or_default();
    let dropped: std::collections::HashSet<u64> = cancel_entries(client, broker, &waiting)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let ttl = client.config.ttl;
    for (seq, slot) in left {
        let fate = if dropped.contains(&seq) {
            "the task was dropped before it ran"
        } else {
            "a node had taken the task, so it may have run; its outcome is lost"
        };
        slot.set(Err(Error::Broker(format!(
            "this client was out of touch with the broker for over {ttl:?} (its heartbeat TTL) \
             and was forgotten: {fate}"
        ))));
    }
    client.settled.notify_all();
}

/// No live node runs our build: fail every task no node has taken (its entry deleted first,
/// so that none can start later). A task whose entry is not in the stream has its outcome on
/// the way (it finished, or a reaper settled it), or is being submitted: it is left alone.
fn cancel_unstarted(client: &Client, broker: &mut Broker, seen: String) -> Result<()> {
    let unfinished: Vec<u64> = client.lock().unfinished.keys().copied().collect();
    let waiting = find_entries(client, broker, &unfinished)?;
    for seq in cancel_entries(client, broker, &waiting)? {
        client.settle(seq, Err(client.no_live_node(seen.clone())));
    }
    Ok(())
}

/// How many task numbers one `HMGET` of the entry index looks up.
const LOOKUP_BATCH: usize = 1000;

/// The entries in the task stream of the tasks `seqs`, from our entry index: (task, entry id)
/// for each task that has one. A task with none has its outcome on the way (it finished, or
/// a reaper settled it), or was never added. Costs as much as `seqs`, whatever else the
/// stream holds.
fn find_entries(client: &Client, broker: &mut Broker, seqs: &[u64]) -> Result<Vec<(u64, String)>> {
    let index = keys::entries(&client.config.id);
    let mut found = Vec::new();
    for batch in seqs.chunks(LOOKUP_BATCH) {
        let ids: Vec<Option<String>> =
            broker.run(|c| redis::cmd("HMGET").arg(&index).arg(batch).query(c))?;
        found.extend(
            batch
                .iter()
                .zip(ids)
                .filter_map(|(seq, id)| Some((*seq, id?))),
        );
    }
    Ok(found)
}

/// Deletes the entries that no node has taken (`CANCEL`, pipelined); returns their tasks.
fn cancel_entries(
    client: &Client,
    broker: &mut Broker,
    entries: &[(u64, String)],
) -> Result<Vec<u64>> {
    let index = keys::entries(&client.config.id);
    let mut cancelled = Vec::new();
    for batch in entries.chunks(SUBMIT_BATCH) {
        let mut pipe = redis::pipe();
        for (seq, id) in batch {
            scripts::add(
                &mut pipe,
                &scripts::CANCEL,
                &[&client.config.stream, &index],
                &[keys::GROUP.as_bytes(), id.as_bytes(), seq.to_string().as_bytes()],
            );
        }
        let done: Vec<i64> = broker.run(|c| scripts::query(&pipe, c))?;
        cancelled.extend(
            batch
                .iter()
                .zip(done)
                .filter(|(_, d)| *d == 1)
                .map(|((seq, _), _)| *seq),
        );
    }
    Ok(cancelled)
}
