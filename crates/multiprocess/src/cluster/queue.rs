//! [`Queue`]: a FIFO queue shared by processes on any machine, on a Redis list.
//!
//! `put` appends with `RPUSH` (a bounded queue through a script that appends only below the
//! bound, so the bound holds however many producers race); `get` takes with `LPOP`, or waits
//! with `BLPOP`. `qsize` is `LLEN`: exact, not an estimate. Items are encoded as arguments are
//! ([`codec`](crate::codec)); a value holding a local handle is refused.
//!
//! A put or get whose connection fails after the command was sent may or may not have taken
//! effect: it is not sent again (that could duplicate or lose an item) but reported as
//! [`Error::Broker`]. A call made while the broker is unreachable waits for it (reconnecting
//! with backoff, up to the reconnect limit).
//!
//! [`JoinableQueue`] adds a count of unfinished items in the broker: `put` appends and counts
//! in one script, `task_done` counts down (deleting the key at 0), `join` waits for 0.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::broker::{Broker, BrokerConfig};
use super::{keys, scripts, settings};
use crate::codec;
use crate::error::{Error, Result};

/// A queue in the broker, named so that any process can open it.
///
/// ```no_run
/// use multiprocess::cluster::Queue;
///
/// let q: Queue<String> = Queue::open("redis://127.0.0.1:6379", "jobs")?;
/// q.put(&"hello".to_string())?;
/// assert_eq!(q.get()?, "hello");
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub struct Queue<T> {
    name: String,
    key: String,
    maxsize: Option<usize>,
    broker: Mutex<Broker>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cluster::Queue")
            .field("name", &self.name)
            .field("maxsize", &self.maxsize)
            .finish()
    }
}

/// The longest pause between two looks at a full bounded queue.
const MAX_PUT_PAUSE: Duration = Duration::from_millis(20);

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Opens the unbounded queue `name` on the broker at `url` (`$MULTIPROCESS_CLUSTER_CA`
    /// names a CA for `rediss://`).
    pub fn open(url: &str, name: &str) -> Result<Queue<T>> {
        Queue::open_with(url, name, None)
    }

    /// Opens the queue `name`, bounded to `maxsize` items (every handle of one queue must use
    /// the same bound).
    pub fn bounded(url: &str, name: &str, maxsize: usize) -> Result<Queue<T>> {
        Queue::open_with(url, name, Some(maxsize.max(1)))
    }

    fn open_with(url: &str, name: &str, maxsize: Option<usize>) -> Result<Queue<T>> {
        let config = Arc::new(BrokerConfig {
            url: url.to_string(),
            tls_ca: settings::ca_from_env()?,
            retry_for: Some(Duration::from_secs(60)),
        });
        Ok(Queue {
            name: name.to_string(),
            key: keys::queue(name),
            maxsize,
            broker: Mutex::new(Broker::connect(config)?),
            _items: PhantomData,
        })
    }

    fn broker(&self) -> std::sync::MutexGuard<'_, Broker> {
        self.broker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn encode(item: &T) -> Result<Vec<u8>> {
        let (bytes, fds) = codec::encode_with_fds(item)?;
        if !fds.is_empty() {
            return Err(Error::Encode(
                "a cluster queue cannot carry a local handle (a Queue, Pipe, Lock, ...)".into(),
            ));
        }
        Ok(bytes)
    }

    /// Appends an item, waiting for room in a bounded queue.
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_until(item, None)
    }

    /// As [`put`](Self::put), failing with [`Error::Full`] after `timeout`.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_until(item, Some(Instant::now() + timeout))
    }

    /// Appends an item now, or fails with [`Error::Full`].
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.put_until(item, Some(Instant::now()))
    }

    fn put_until(&self, item: &T, deadline: Option<Instant>) -> Result<()> {
        self.put_counted(item, deadline, None)
    }

    /// Appends, waiting for room until `deadline`; counts the item in `counter` if given.
    fn put_counted(
        &self,
        item: &T,
        deadline: Option<Instant>,
        counter: Option<&str>,
    ) -> Result<()> {
        let bytes = Self::encode(item)?;
        if self.maxsize.is_none() && counter.is_none() {
            return self
                .broker()
                .run_once(|c| redis::cmd("RPUSH").arg(&self.key).arg(&bytes).query(c));
        }
        let bound = self.maxsize.unwrap_or(0).to_string();
        let keys: Vec<&str> = std::iter::once(self.key.as_str()).chain(counter).collect();
        let mut pause = Duration::from_micros(200);
        loop {
            let added: i64 = self.broker().run_once(|c| {
                scripts::call(c, &scripts::QUEUE_PUT, &keys, &[bound.as_bytes(), &bytes])
            })?;
            if added == 1 {
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Full);
            }
            // The broker has no blocking bounded append: look again after a pause (backoff).
            let left = deadline.map_or(pause, |d| d - now);
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_PUT_PAUSE);
        }
    }

    /// Takes the oldest item, waiting for one.
    pub fn get(&self) -> Result<T> {
        loop {
            match self.get_timeout(Duration::from_secs(1)) {
                Err(Error::Empty) => continue,
                other => return other,
            }
        }
    }

    /// As [`get`](Self::get), failing with [`Error::Empty`] after `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        if timeout.is_zero() {
            return self.get_nowait();
        }
        let mut broker = self.broker();
        broker.set_read_timeout(Some(timeout + Duration::from_secs(30)));
        let got: Option<(String, Vec<u8>)> = broker.run_once(|c| {
            redis::cmd("BLPOP")
                .arg(&self.key)
                .arg(timeout.as_secs_f64().max(0.001))
                .query(c)
        })?;
        match got {
            Some((_, bytes)) => codec::decode(&bytes),
            None => Err(Error::Empty),
        }
    }

    /// Takes the oldest item now, or fails with [`Error::Empty`].
    pub fn get_nowait(&self) -> Result<T> {
        let got: Option<Vec<u8>> = self
            .broker()
            .run_once(|c| redis::cmd("LPOP").arg(&self.key).query(c))?;
        match got {
            Some(bytes) => codec::decode(&bytes),
            None => Err(Error::Empty),
        }
    }

    /// The exact number of items in the queue.
    pub fn qsize(&self) -> Result<usize> {
        self.broker()
            .run(|c| redis::cmd("LLEN").arg(&self.key).query(c))
    }

    /// Whether the queue is empty.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Whether a bounded queue is full (never for an unbounded one).
    pub fn full(&self) -> Result<bool> {
        match self.maxsize {
            Some(bound) => Ok(self.qsize()? >= bound),
            None => Ok(false),
        }
    }

    /// The queue's bound, if it has one.
    pub fn maxsize(&self) -> Option<usize> {
        self.maxsize
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A [`Queue`] whose items are counted until a consumer calls
/// [`task_done`](Self::task_done), so that a producer on any machine can [`join`](Self::join)
/// until all are processed, as Python's `JoinableQueue`. The count lives in the broker (one
/// key, deleted when it falls to 0).
///
/// ```no_run
/// use multiprocess::cluster::JoinableQueue;
///
/// let q: JoinableQueue<u32> = JoinableQueue::open("redis://127.0.0.1:6379", "work")?;
/// q.put(&1)?;
/// assert_eq!(q.get()?, 1);
/// q.task_done()?;
/// q.join()?;
/// # Ok::<(), multiprocess::Error>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
    unfinished: String,
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cluster::JoinableQueue")
            .field("name", &self.queue.name)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// Opens the unbounded joinable queue `name` on the broker at `url`.
    pub fn open(url: &str, name: &str) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            queue: Queue::open(url, name)?,
            unfinished: keys::unfinished(name),
        })
    }

    /// Opens the joinable queue `name`, bounded to `maxsize` items.
    pub fn bounded(url: &str, name: &str, maxsize: usize) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            queue: Queue::bounded(url, name, maxsize)?,
            unfinished: keys::unfinished(name),
        })
    }

    /// Appends an item (waiting for room in a bounded queue) and counts it as unfinished.
    pub fn put(&self, item: &T) -> Result<()> {
        self.queue.put_counted(item, None, Some(&self.unfinished))
    }

    /// As [`put`](Self::put), failing with [`Error::Full`] after `timeout`.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        let deadline = Some(Instant::now() + timeout);
        self.queue
            .put_counted(item, deadline, Some(&self.unfinished))
    }

    /// Appends an item now, or fails with [`Error::Full`].
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        let deadline = Some(Instant::now());
        self.queue
            .put_counted(item, deadline, Some(&self.unfinished))
    }

    /// Takes the oldest item, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// As [`get`](Self::get), failing with [`Error::Empty`] after `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.queue.get_timeout(timeout)
    }

    /// Takes the oldest item now, or fails with [`Error::Empty`].
    pub fn get_nowait(&self) -> Result<T> {
        self.queue.get_nowait()
    }

    /// Marks one item taken with `get` as processed; [`Error::TaskDoneTooOften`] if every item
    /// already was.
    pub fn task_done(&self) -> Result<()> {
        let left: i64 = self
            .queue
            .broker()
            .run_once(|c| scripts::call(c, &scripts::TASK_DONE, &[&self.unfinished], &[]))?;
        if left < 0 {
            Err(Error::TaskDoneTooOften)
        } else {
            Ok(())
        }
    }

    /// The number of items put and not yet marked done.
    pub fn unfinished(&self) -> Result<usize> {
        let n: Option<usize> = self
            .queue
            .broker()
            .run(|c| redis::cmd("GET").arg(&self.unfinished).query(c))?;
        Ok(n.unwrap_or(0))
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.join_until(None).map(drop)
    }

    /// As [`join`](Self::join), for at most `timeout`; `false` if items were still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_until(Some(Instant::now() + timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<bool> {
        let mut pause = Duration::from_micros(200);
        loop {
            if self.unfinished()? == 0 {
                return Ok(true);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(false);
            }
            // The count lives in the broker, which cannot wake us: look again after a pause.
            let left = deadline.map_or(pause, |d| d - now);
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_PUT_PAUSE);
        }
    }

    /// The exact number of items in the queue.
    pub fn qsize(&self) -> Result<usize> {
        self.queue.qsize()
    }

    /// Whether the queue is empty.
    pub fn empty(&self) -> Result<bool> {
        self.queue.empty()
    }
}
