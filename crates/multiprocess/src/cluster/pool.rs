//! [`Pool`]: the local [`crate::Pool`]'s calls, with tasks run by nodes on other machines.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::broker::BrokerConfig;
use super::client::{Client, ClientConfig};
use super::imap::Feed;
use super::wire::Key;
use super::{build, keys, settings};
use crate::codec;
use crate::error::{Error, Result};
use crate::pool::{
    decode_one, gather_finishers, AsyncResult, BoxedFeed, Finisher, IMap, IMapUnordered, MapResult,
    Outcome, Slot,
};
use crate::process::target::{self, EntryFn, Target};

/// Options for a cluster [`Pool`].
///
/// ```no_run
/// use std::time::Duration;
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     let pool = multiprocess::cluster::Pool::builder()
///         .broker("redis://127.0.0.1:6379")
///         .key(b"a secret of 16 bytes or more".to_vec())
///         .heartbeat_ttl(Duration::from_secs(5))
///         .task_timeout(Duration::from_secs(60))
///         .redeliver(1)
///         .build()?;
///     # drop(pool);
///     Ok(())
/// }
/// ```
#[derive(Default)]
pub struct PoolBuilder {
    broker: Option<String>,
    key: Option<Vec<u8>>,
    tls_ca: Option<Vec<u8>>,
    ttl: Option<Duration>,
    task_timeout: Option<Duration>,
    redeliver: u32,
    reconnect_for: Option<Duration>,
    imap_window: Option<usize>,
}

impl std::fmt::Debug for PoolBuilder {
    /// The key is never printed: only whether one is set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("broker", &self.broker)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .field("tls_ca", &self.tls_ca.as_ref().map(|_| "<set>"))
            .field("ttl", &self.ttl)
            .field("task_timeout", &self.task_timeout)
            .field("redeliver", &self.redeliver)
            .field("reconnect_for", &self.reconnect_for)
            .field("imap_window", &self.imap_window)
            .finish()
    }
}

impl PoolBuilder {
    /// The Redis broker: `redis://[user:password@]host:port[/db]`, `rediss://…` for TLS, or
    /// `unix:///path/to/redis.sock` (default: `$MULTIPROCESS_BROKER`).
    pub fn broker(mut self, url: impl Into<String>) -> Self {
        self.broker = Some(url.into());
        self
    }

    /// The cluster key every task and result is authenticated with, at least 16 bytes; nodes
    /// must hold the same (default: `$MULTIPROCESS_CLUSTER_KEY`).
    pub fn key(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.key = Some(secret.into());
        self
    }

    /// A PEM CA certificate that signs the broker's TLS certificate, for `rediss://` with a
    /// private CA (default: `$MULTIPROCESS_CLUSTER_CA`, a file path, or the system's roots).
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(pem.into());
        self
    }

    /// How long this client may be silent before the cluster takes it for dead and drops its
    /// tasks (default 5 s); it sends a heartbeat five times per period.
    pub fn heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Fails a task that runs longer than this with [`Error::TimeLimit`]; the node kills and
    /// replaces its worker. [`Pool::apply_async_timeout`] sets one per task.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Hands a task out again, up to `times` times, when the node running it is lost, instead
    /// of failing it with [`Error::NodeLost`] (so it may run more than once). Default 0: a task
    /// runs at most once.
    pub fn redeliver(mut self, times: u32) -> Self {
        self.redeliver = times;
        self
    }

    /// How long calls keep reconnecting to a broker that went away before they fail with
    /// [`Error::Broker`] (default 60 s).
    pub fn reconnect_for(mut self, limit: Duration) -> Self {
        self.reconnect_for = Some(limit);
        self
    }

    /// How many chunks an `imap` keeps in flight (default 256).
    pub fn imap_window(mut self, chunks: usize) -> Self {
        self.imap_window = Some(chunks.max(1));
        self
    }

    /// Connects to the broker and registers the client. Fails at once on a broker that cannot
    /// be reached or refuses the credentials ([`Error::Auth`]), or without a cluster key.
    pub fn build(self) -> Result<Pool> {
        let url = match self.broker {
            Some(url) => url,
            None => settings::broker_from_env()?,
        };
        let key = Key::new(&match self.key {
            Some(k) => k,
            None => settings::key_from_env()?,
        })?;
        let tls_ca = match self.tls_ca {
            Some(ca) => Some(ca),
            None => settings::ca_from_env()?,
        };
        let build = build::build_id()?;
        let stream = keys::tasks(build, &key.id);
        let ttl = self.ttl.unwrap_or(settings::DEFAULT_TTL);
        let config = ClientConfig {
            broker: Arc::new(BrokerConfig {
                url,
                tls_ca,
                retry_for: Some(self.reconnect_for.unwrap_or(Duration::from_secs(60))),
            }),
            key,
            build,
            stream,
            id: keys::party_id(),
            ttl,
            redeliver: self.redeliver,
        };
        Ok(Pool {
            client: Client::start(config)?,
            task_timeout: self.task_timeout,
            imap_window: self.imap_window.unwrap_or(256),
        })
    }
}

/// A pool whose workers are the nodes of a cluster, reached through a Redis broker: the calls
/// and the results of the local [`crate::Pool`] (see the [module](super) for the guarantees).
/// Dropping it terminates it: tasks not yet run are dropped by the nodes.
///
/// ```no_run
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() -> multiprocess::Result<()> {
///     multiprocess::init();
///     let pool = multiprocess::cluster::Pool::builder()
///         .broker("redis://127.0.0.1:6379")
///         .build()?; // the key from $MULTIPROCESS_CLUSTER_KEY
///     assert_eq!(pool.apply(square, (7,))?, 49);
///     assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
///     pool.close();
///     pool.join()?;
///     Ok(())
/// }
/// ```
pub struct Pool {
    client: Arc<Client>,
    task_timeout: Option<Duration>,
    imap_window: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cluster::Pool")
            .field("client", &self.client.config.id)
            .field("build", &self.client.config.build)
            .finish()
    }
}

impl Pool {
    /// A pool on the broker at `url`, with the key from `$MULTIPROCESS_CLUSTER_KEY`.
    pub fn new(url: &str) -> Result<Pool> {
        Pool::builder().broker(url).build()
    }

    /// Options beyond the broker's URL.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// This program's build identity, as nodes must run it.
    pub fn build_id(&self) -> &str {
        self.client.config.build
    }

    /// Waits until at least `count` live nodes run this build under this key; returns how many
    /// do, or [`Error::NoLiveNode`] after `timeout`.
    pub fn wait_for_nodes(&self, count: usize, timeout: Duration) -> Result<usize> {
        let deadline = std::time::Instant::now() + timeout;
        let mut broker = super::broker::Broker::connect(Arc::clone(&self.client.config.broker))?;
        let mut pause = Duration::from_millis(5);
        loop {
            let found = broker.run(super::survey::survey)?;
            let (mine, seen) = super::survey::describe_for(
                &found.live,
                self.client.config.build,
                &self.client.config.key.id,
            );
            if mine >= count {
                return Ok(mine);
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::NoLiveNode {
                    build: self.client.config.build.to_string(),
                    seen: format!("{mine} of the {count} awaited; {seen}"),
                });
            }
            // Polling a remote table: there is nothing to wait on. Backs off to 100 ms.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Encodes one chunk of argument tuples; a value holding a local handle is refused.
    fn encode_chunk<Args: Serialize>(chunk: &[Args]) -> Result<Vec<u8>> {
        let (bytes, fds) = codec::encode_with_fds(chunk).map_err(|e| match e {
            Error::Encode(why) if why.contains("OS handle") => local_handle_error(),
            other => other,
        })?;
        if !fds.is_empty() {
            return Err(local_handle_error());
        }
        Ok(bytes)
    }

    /// The entry offset of `run_chunk::<F, Args>`.
    fn entry<F, Args>() -> Result<i64>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        target::assert_zero_sized::<F>();
        let entry: EntryFn = target::run_chunk::<F, Args>;
        target::check_same_object(entry)?;
        Ok(target::entry_offset(entry))
    }

    /// Encodes and sends one task per chunk, all or none.
    fn submit<F, Args>(
        &self,
        chunks: Vec<(&[Args], Option<Finisher>)>,
        limit: Option<Duration>,
        from_iterator: bool,
    ) -> Result<Vec<Arc<Slot>>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let entry = Self::entry::<F, Args>()?;
        let mut tasks = Vec::with_capacity(chunks.len());
        for (chunk, finisher) in chunks {
            tasks.push((Self::encode_chunk(chunk)?, finisher));
        }
        self.client
            .submit(entry, limit.or(self.task_timeout), tasks, from_iterator)
    }

    fn submit_one<F, Args>(
        &self,
        args: Args,
        limit: Option<Duration>,
        finisher: Option<Finisher>,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let mut slots = self.submit::<F, Args>(vec![(&[args][..], finisher)], limit, false)?;
        slots
            .pop()
            .map(AsyncResult::new)
            .ok_or_else(|| Error::PoolBroken("the client sent no task".into()))
    }

    /// Runs `f(args...)` on a node and returns its result (Python's `apply`).
    pub fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        self.apply_async(f, args)?.get()
    }

    /// Sends `f(args...)` to the cluster and returns at once with its [`AsyncResult`].
    pub fn apply_async<F, Args>(&self, f: F, args: Args) -> Result<AsyncResult<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        self.submit_one::<F, Args>(args, None, None)
    }

    /// As [`apply_async`](Self::apply_async), with a time limit for this task.
    pub fn apply_async_timeout<F, Args>(
        &self,
        f: F,
        args: Args,
        limit: Duration,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        self.submit_one::<F, Args>(args, Some(limit), None)
    }

    /// As [`apply_async`](Self::apply_async), with Python's `callback` and `error_callback`,
    /// called in this process (in the pool's background thread), exactly once per task, before
    /// the result is ready.
    pub fn apply_async_with<F, Args, C, E>(
        &self,
        f: F,
        args: Args,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
        C: FnOnce(F::Output) + Send + 'static,
        E: FnOnce(Error) + Send + 'static,
    {
        let _ = f;
        let finisher: Finisher = Box::new(move |outcome: &Outcome| {
            match outcome
                .as_ref()
                .map_err(Error::clone_for_caller)
                .and_then(|bytes| decode_one::<F::Output>(bytes))
            {
                Ok(value) => callback(value),
                Err(err) => error_callback(err),
            }
        });
        self.submit_one::<F, Args>(args, None, Some(finisher))
    }

    /// Applies `f` to every item, one task per item, and returns the results in order.
    pub fn map<F, A, I>(&self, f: F, items: I) -> Result<Vec<F::Output>>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
        F::Output: Serialize + DeserializeOwned,
    {
        self.map_async(f, items, 1)?.get()
    }

    /// [`map`](Self::map) with Python's `chunksize`: items travel this many per task.
    pub fn map_chunked<F, A, I>(&self, f: F, items: I, chunksize: usize) -> Result<Vec<F::Output>>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
        F::Output: Serialize + DeserializeOwned,
    {
        self.map_async(f, items, chunksize)?.get()
    }

    /// Sends every item at once (in chunks) and returns a [`MapResult`].
    pub fn map_async<F, A, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<MapResult<F::Output>>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
        F::Output: Serialize + DeserializeOwned,
    {
        self.starmap_async(f, items.into_iter().map(|a| (a,)), chunksize)
    }

    /// As [`map`](Self::map) for functions of several arguments: each item is a tuple of them.
    pub fn starmap<F, Args, I>(&self, f: F, items: I) -> Result<Vec<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        I: IntoIterator<Item = Args>,
        F::Output: Serialize + DeserializeOwned,
    {
        self.starmap_async(f, items, 1)?.get()
    }

    /// As [`map_async`](Self::map_async) over tuples of arguments.
    pub fn starmap_async<F, Args, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<MapResult<F::Output>>
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned,
        I: IntoIterator<Item = Args>,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        let chunks = split(items, chunksize);
        let slots = self.submit::<F, Args>(
            chunks.iter().map(|c| (c.as_slice(), None)).collect(),
            None,
            false,
        )?;
        Ok(MapResult::new(slots))
    }

    /// As [`map_async`](Self::map_async), with Python's `callback` (called once with every
    /// result, in order) and `error_callback` (called once with the first error), in this
    /// process, before the [`MapResult`] is ready.
    pub fn map_async_with<F, A, I, C, E>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
        callback: C,
        error_callback: E,
    ) -> Result<MapResult<F::Output>>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
        F::Output: Serialize + DeserializeOwned,
        C: FnOnce(Vec<F::Output>) + Send + 'static,
        E: FnOnce(Error) + Send + 'static,
    {
        let _ = f;
        let chunks = split(items.into_iter().map(|a| (a,)), chunksize);
        if chunks.is_empty() {
            callback(Vec::new());
            return Ok(MapResult::new(Vec::new()));
        }
        let finishers = gather_finishers::<F::Output, C, E>(chunks.len(), callback, error_callback);
        let slots = self.submit::<F, (A,)>(
            chunks
                .iter()
                .zip(finishers)
                .map(|(c, f)| (c.as_slice(), Some(f)))
                .collect(),
            None,
            false,
        )?;
        Ok(MapResult::new(slots))
    }

    /// Applies `f` to the items lazily, with at most `imap_window` chunks in flight, yielding
    /// results in order (Python's `imap`). An endless iterator works. The [`IMap`] is `Send`
    /// when the input iterator is.
    pub fn imap<'p, F, A, I>(
        &'p self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMap<'p, F::Output, I::IntoIter>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned + 'p,
        I: IntoIterator<Item = A> + 'p,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        IMap::new(items.into_iter(), self.feed::<F, A, I::IntoIter>(chunksize))
    }

    /// As [`imap`](Self::imap), yielding each result as soon as its chunk is done, in no
    /// particular order (Python's `imap_unordered`).
    pub fn imap_unordered<'p, F, A, I>(
        &'p self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMapUnordered<'p, F::Output, I::IntoIter>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned + 'p,
        I: IntoIterator<Item = A> + 'p,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        IMapUnordered::new(items.into_iter(), self.feed::<F, A, I::IntoIter>(chunksize))
    }

    /// The input side of an `imap` over the input `I`: encodes it chunk by chunk, on demand.
    fn feed<'p, F, A, I>(&'p self, chunksize: usize) -> BoxedFeed<'p, I>
    where
        F: Target<(A,)>,
        A: Serialize + DeserializeOwned + 'p,
        I: Iterator<Item = A> + 'p,
        F::Output: Serialize + DeserializeOwned,
    {
        let entry = Self::entry::<F, (A,)>();
        Box::new(Feed::new(self, entry, Self::encode_next::<A, I>, chunksize))
    }

    /// Encodes the next chunk of `items` (at most `chunksize` of them), or says they are used
    /// up: what the feed of an `imap` calls.
    fn encode_next<A, I>(items: &mut I, chunksize: usize) -> Option<Result<Vec<u8>>>
    where
        A: Serialize,
        I: Iterator<Item = A>,
    {
        let chunk: Vec<(A,)> = items.take(chunksize).map(|a| (a,)).collect();
        (!chunk.is_empty()).then(|| Pool::encode_chunk(&chunk))
    }

    /// Sends chunks already encoded by an `imap`, as tasks of `entry`.
    pub(super) fn send_encoded(
        &self,
        entry: i64,
        tasks: Vec<(Vec<u8>, Option<Finisher>)>,
    ) -> Result<Vec<Arc<Slot>>> {
        self.client.submit(entry, self.task_timeout, tasks, true)
    }

    /// The client engine (for the iterators).
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// How many chunks an `imap` keeps in flight.
    pub(super) fn imap_window(&self) -> usize {
        self.imap_window
    }

    /// Stops accepting tasks; [`join`](Self::join) then waits for those sent.
    pub fn close(&self) {
        self.client.lock().closing = true;
    }

    /// Stops at once: tasks not yet finished fail here with [`Error::PoolTerminated`], those
    /// no node has taken are deleted from the broker (none of them starts later), and the
    /// results of those running are thrown away.
    pub fn terminate(&self) {
        self.client.lock().terminated = true;
        self.client.shut_down();
    }

    /// Waits, after [`close`](Self::close), until every task sent has its outcome (and any
    /// `imap` begun before `close` is used up or dropped), then leaves the cluster; after
    /// [`terminate`](Self::terminate), returns at once. An error before either, as in Python.
    pub fn join(&self) -> Result<()> {
        {
            let state = self.client.lock();
            if !state.closing && !state.terminated {
                return Err(Error::PoolStillRunning);
            }
        }
        if !crate::pool::ON_SUPERVISOR.with(|f| f.get()) {
            self.client.wait_settled();
        }
        self.client.shut_down();
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The error for an argument that holds a local handle.
fn local_handle_error() -> Error {
    Error::Encode(
        "a cluster task cannot carry a local handle (a Queue, Pipe, Connection, Lock, Event, \
         Value, ...): it means nothing on another machine; pass plain values, or use \
         multiprocess::cluster::Queue"
            .into(),
    )
}

/// Splits items into chunks of `chunksize` (at least 1).
fn split<T>(items: impl IntoIterator<Item = T>, chunksize: usize) -> Vec<Vec<T>> {
    let chunksize = chunksize.max(1);
    let mut items = items.into_iter().peekable();
    let mut chunks = Vec::new();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(chunksize).collect());
    }
    chunks
}
