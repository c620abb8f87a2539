//! Queues between processes: [`Queue`], [`LifoQueue`], [`JoinableQueue`], [`SimpleQueue`],
//! [`PriorityQueue`].
//!
//! All but the last are one [`SharedDeque`](crate::shm::deque::SharedDeque), the shared-memory
//! ring of `shm/deque.rs` (see there for the algorithm and why a killed process cannot corrupt
//! it), differing only in which end `get` takes from and whether items are counted until
//! `task_done`; `PriorityQueue` is a [`SharedHeap`](heap::SharedHeap) built the same way
//! (`heap.rs`). Unlike Python's queues there is no feeder thread: `put` has encoded and stored the item when it returns, so `qsize()` is exact,
//! a value that cannot be encoded fails at `put` and changes nothing, and no data is lost when
//! a process exits right after `put`.
//!
//! An item is encoded straight into the queue's shared memory, under the producers' lock, and
//! decoded straight out of it under the consumers' lock: a large byte string is copied once in
//! and once out. (So an item's `Serialize` or `Deserialize` must not use the same queue: it
//! would wait for itself.) An item of a FIFO queue ([`Queue`], [`JoinableQueue`],
//! [`SimpleQueue`]) may hold OS handles (a [`ShmBuf`](crate::ShmBuf), a queue, a connection):
//! their descriptors travel beside the ring (`sideband.rs`), so a zero-copy buffer crosses
//! without its bytes. The kernel lets a few hundred such items be in a queue at once; a `put`
//! beyond that waits as on a full queue. In a [`LifoQueue`] or [`PriorityQueue`] a buffer
//! travels as its bytes, and other handles cannot.
//!
//! A queue is ended with `shutdown()`, as in Python 3.13, through any handle in any process:
//! puts fail from then on with [`Error::ShutDown`], gets take the items still there and then
//! fail the same way instead of waiting, and every get or put waiting at that moment, in any
//! process, wakes up to do so. That is how a consumer's `for item in &queue` ends: the producer
//! shuts the queue down when it is done, and the loop ends after the last item. (`close()`
//! only closes one process's handle.) The flag lives in the queue's shared memory; taking an
//! item reads nothing more for it, and a put reads it once.
//!
//! A queue handle is passed to a child as an argument (under every start method) and can be
//! cloned; every handle refers to the same queue. A FIFO queue holds two descriptors in each
//! process that has it (its memory and its socket), a LIFO or priority queue one.

mod heap;
mod sideband;

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec;
use crate::error::{Error, Result};
use crate::items::Items;
use crate::shm::deque::{decode_value, End, FdChannel, SharedDeque, Value, Wait};
use crate::shm::Region;
use sideband::Sideband;

/// What every queue type is made of.
struct Core<T> {
    deque: Arc<SharedDeque>,
    /// Where the descriptors of OS handles inside items travel (FIFO queues: see
    /// `sideband.rs`). A LIFO queue has none: its items carry no handles, and a zero-copy
    /// buffer in them travels as its bytes.
    sideband: Option<Arc<Sideband>>,
    /// `close()` was called on this handle or a clone of it, in this process.
    closed: Arc<AtomicBool>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Core<T> {
    fn clone(&self) -> Self {
        Core {
            deque: Arc::clone(&self.deque),
            sideband: self.sideband.clone(),
            closed: Arc::clone(&self.closed),
            _items: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Core<T> {
    fn new(maxsize: u64, end: End) -> Result<Self> {
        let sideband = match end {
            End::Front => Some(Arc::new(Sideband::new()?)),
            End::Back => None,
        };
        Ok(Core {
            deque: Arc::new(SharedDeque::create(maxsize)?),
            sideband,
            closed: Arc::new(AtomicBool::new(false)),
            _items: PhantomData,
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn channel(&self) -> Option<&dyn FdChannel> {
        self.sideband.as_deref().map(|s| s as &dyn FdChannel)
    }

    /// Encodes the item straight into the queue's shared memory (see `shm/deque.rs`).
    fn put(&self, item: &T, wait: Wait, joinable: bool) -> Result<()> {
        self.check_open()?;
        let mut value = Value {
            value: item,
            handles: self.sideband.is_some(),
        };
        self.deque.push(&mut value, wait, joinable, self.channel())
    }

    fn shutdown(&self) {
        self.deque.shutdown();
    }

    fn is_shutdown(&self) -> bool {
        self.deque.is_shut_down()
    }

    /// Decodes the item straight out of the queue's shared memory.
    fn get(&self, end: End, wait: Wait) -> Result<T> {
        self.check_open()?;
        self.deque
            .pop(end, wait, self.channel(), &mut decode_value::<T>)
    }

    fn qsize(&self) -> usize {
        self.deque.len() as usize
    }

    fn full(&self) -> bool {
        let max = self.deque.maxsize();
        max > 0 && self.deque.len() >= max
    }
}

fn bounded_size(maxsize: usize) -> Result<u64> {
    if maxsize == 0 {
        return Err(Error::InvalidArgument(
            "a bounded queue needs a maxsize of at least 1 (use new() for no limit)".into(),
        ));
    }
    Ok(maxsize as u64)
}

/// How a queue travels to another process: its shared memory, and its sideband's sockets.
impl<T> Serialize for Core<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.deque.region(), self.sideband.as_deref()).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Core<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (region, sideband) = <(Region, Option<Sideband>)>::deserialize(d)?;
        let deque = SharedDeque::from_region(region).map_err(serde::de::Error::custom)?;
        Ok(Core {
            deque: Arc::new(deque),
            sideband: sideband.map(Arc::new),
            closed: Arc::new(AtomicBool::new(false)),
            _items: PhantomData,
        })
    }
}

/// Defines a queue type over `Core` with the methods every queue has.
macro_rules! queue_type {
    ($(#[$doc:meta])* $name:ident, end = $end:expr, joinable = $joinable:expr) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name<T> {
            #[serde(bound = "")]
            core: Core<T>,
        }

        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name { core: self.core.clone() }
            }
        }

        impl<T> std::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("qsize", &self.core.deque.len())
                    .field("maxsize", &self.core.deque.maxsize())
                    .field("shutdown", &self.core.deque.is_shut_down())
                    .finish()
            }
        }

        impl<T: Serialize + DeserializeOwned> $name<T> {
            /// A queue with no limit on the number of items.
            pub fn new() -> Result<Self> {
                Ok($name { core: Core::new(0, $end)? })
            }

            /// A queue that holds at most `maxsize` items (at least 1): `put` waits while it is
            /// full.
            pub fn bounded(maxsize: usize) -> Result<Self> {
                Ok($name { core: Core::new(bounded_size(maxsize)?, $end)? })
            }

            /// Puts an item, waiting while the queue is full; [`Error::ShutDown`] once the queue
            /// is [shut down](Self::shutdown).
            pub fn put(&self, item: impl Borrow<T>) -> Result<()> {
                self.core.put(item.borrow(), Wait::Until(None), $joinable)
            }

            /// Puts an item, waiting at most `timeout` for room; [`Error::Full`] after that.
            pub fn put_timeout(&self, item: impl Borrow<T>, timeout: Duration) -> Result<()> {
                self.core.put(item.borrow(), Wait::timeout(timeout), $joinable)
            }

            /// Puts an item if there is room now; [`Error::Full`] otherwise.
            pub fn put_nowait(&self, item: impl Borrow<T>) -> Result<()> {
                self.core.put(item.borrow(), Wait::No, $joinable)
            }

            /// Takes an item, waiting while the queue is empty; [`Error::ShutDown`] once the
            /// queue is [shut down](Self::shutdown) and empty.
            pub fn get(&self) -> Result<T> {
                self.core.get($end, Wait::Until(None))
            }

            /// Takes an item, waiting at most `timeout`; [`Error::Empty`] after that.
            pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
                self.core.get($end, Wait::timeout(timeout))
            }

            /// Takes an item if there is one now; [`Error::Empty`] otherwise.
            pub fn get_nowait(&self) -> Result<T> {
                self.core.get($end, Wait::No)
            }

            /// The exact number of items in the queue.
            pub fn qsize(&self) -> usize {
                self.core.qsize()
            }

            /// Whether the queue holds no item.
            pub fn empty(&self) -> bool {
                self.core.qsize() == 0
            }

            /// Whether the queue holds `maxsize` items (never, without a limit).
            pub fn full(&self) -> bool {
                self.core.full()
            }

            /// The limit given to [`bounded`](Self::bounded), or `None`.
            pub fn maxsize(&self) -> Option<usize> {
                match self.core.deque.maxsize() {
                    0 => None,
                    n => Some(n as usize),
                }
            }

            /// Closes this handle (and its clones) in this process: later `put` and `get` calls
            /// through it fail with [`Error::Closed`]. Other processes' handles are unaffected,
            /// and items already put stay in the queue.
            pub fn close(&self) {
                self.core.closed.store(true, Ordering::Release);
            }

            /// Shuts the queue down, for every handle in every process (Python 3.13's
            /// `shutdown()`): later puts fail with [`Error::ShutDown`]; gets take the items
            /// still in the queue, then fail with [`Error::ShutDown`] instead of waiting; every
            /// get or put waiting now, in any process, wakes up. So a consumer's
            /// `for item in &queue` ends after the last item. A put racing with the shutdown
            /// either fails or is delivered. Cannot be undone; calling it again does nothing.
            ///
            /// ```
            /// use multiprocess::Error;
            #[doc = concat!("let q = multiprocess::", stringify!($name), "::<u32>::new()?;")]
            /// q.put(1)?;
            /// q.put(2)?;
            /// q.clone().shutdown(); // any handle, in any process
            /// assert!(q.is_shutdown());
            /// assert!(matches!(q.put(3), Err(Error::ShutDown)));
            /// assert_eq!(q.iter().count(), 2); // the items left, then the end
            /// assert!(matches!(q.get(), Err(Error::ShutDown))); // instead of waiting
            /// # Ok::<(), Error>(())
            /// ```
            pub fn shutdown(&self) {
                self.core.shutdown();
            }

            /// Whether the queue was [shut down](Self::shutdown), by any process.
            pub fn is_shutdown(&self) -> bool {
                self.core.is_shutdown()
            }

            /// The items, each taken with [`get`](Self::get) (waiting for it): see [`Items`].
            /// It ends once the queue is [shut down](Self::shutdown) and empty (or this handle
            /// is closed). `for item in &queue` does the same.
            pub fn iter(&self) -> Items<'_, T> {
                Items::new(stringify!($name), false, move || self.get())
            }

            /// The items there now, each taken with [`get_nowait`](Self::get_nowait): see
            /// [`Items`].
            pub fn try_iter(&self) -> Items<'_, T> {
                Items::new(stringify!($name), true, move || self.get_nowait())
            }
        }

        impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a $name<T> {
            type Item = Result<T>;
            type IntoIter = Items<'a, T>;

            fn into_iter(self) -> Items<'a, T> {
                self.iter()
            }
        }
    };
}

queue_type!(
    /// A first-in, first-out queue between processes, as Python's `multiprocessing.Queue`.
    ///
    /// ```
    /// use multiprocess::Queue;
    /// let q = Queue::<String>::bounded(2).unwrap();
    /// q.put("a".to_string()).unwrap();
    /// q.put(&"b".to_string()).unwrap();
    /// assert!(q.full());
    /// assert!(matches!(q.put_nowait("c".to_string()), Err(multiprocess::Error::Full)));
    /// assert_eq!(q.qsize(), 2);
    /// assert_eq!(q.get().unwrap(), "a");
    /// assert_eq!(q.get_nowait().unwrap(), "b");
    /// assert!(matches!(q.get_nowait(), Err(multiprocess::Error::Empty)));
    /// ```
    Queue,
    end = End::Front,
    joinable = false
);

queue_type!(
    /// A last-in, first-out queue between processes, as Python's `queue.LifoQueue`.
    ///
    /// ```
    /// let q = multiprocess::LifoQueue::<u32>::new().unwrap();
    /// for i in 1..=3 { q.put(i).unwrap(); }
    /// assert_eq!((q.get().unwrap(), q.get().unwrap(), q.get().unwrap()), (3, 2, 1));
    /// ```
    LifoQueue,
    end = End::Back,
    joinable = false
);

queue_type!(
    /// A first-in, first-out queue whose items are counted until a consumer calls
    /// [`task_done`](Self::task_done), so a producer can [`join`](Self::join) until all are
    /// processed, as Python's `JoinableQueue`.
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::<u32>::new().unwrap();
    /// q.put(1).unwrap();
    /// assert_eq!(q.get().unwrap(), 1);
    /// assert!(!q.join_timeout(std::time::Duration::ZERO).unwrap());
    /// q.task_done().unwrap();
    /// q.join().unwrap();
    /// assert!(q.task_done().is_err()); // called too many times
    /// ```
    JoinableQueue,
    end = End::Front,
    joinable = true
);

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// Marks one item taken with `get` as processed. An error if every item already was.
    pub fn task_done(&self) -> Result<()> {
        self.core.deque.task_done()
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.core.deque.join(Wait::Until(None)).map(drop)
    }

    /// As [`join`](Self::join), for at most `timeout`; `false` if items were still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.core.deque.join(Wait::timeout(timeout))
    }

    /// The number of items put and not yet marked done.
    pub fn unfinished(&self) -> usize {
        self.core.deque.unfinished() as usize
    }
}

queue_type!(
    /// The simplest queue, as Python's `SimpleQueue`: unbounded, first in, first out. (Here it
    /// has the full API of [`Queue`]; Python's lacks the size queries only because its
    /// implementation cannot answer them.)
    ///
    /// ```
    /// let q = multiprocess::SimpleQueue::<u8>::new().unwrap();
    /// assert!(q.empty());
    /// q.put(1).unwrap();
    /// assert!(!q.empty());
    /// ```
    SimpleQueue,
    end = End::Front,
    joinable = false
);

/// A queue between processes that gives back the smallest item first, as Python's
/// `queue.PriorityQueue` (put `(priority, value)` tuples for the usual use). Items of equal
/// order come back in no particular order, as in Python.
///
/// ```
/// let q = multiprocess::PriorityQueue::<(u32, String)>::new().unwrap();
/// q.put((3, "c".to_string())).unwrap();
/// q.put((1, "a".to_string())).unwrap();
/// q.put((2, "b".to_string())).unwrap();
/// let order: Vec<String> = (0..3).map(|_| q.get().unwrap().1).collect();
/// assert_eq!(order, ["a", "b", "c"]);
/// ```
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriorityQueue<T> {
    #[serde(bound = "")]
    core: PriorityCore<T>,
}

/// The shared heap and this process's handle state.
struct PriorityCore<T> {
    heap: Arc<heap::SharedHeap>,
    closed: Arc<AtomicBool>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for PriorityQueue<T> {
    fn clone(&self) -> Self {
        PriorityQueue {
            core: PriorityCore {
                heap: Arc::clone(&self.core.heap),
                closed: Arc::clone(&self.core.closed),
                _items: PhantomData,
            },
        }
    }
}

impl<T> std::fmt::Debug for PriorityQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriorityQueue")
            .field("qsize", &self.core.heap.len())
            .field("maxsize", &self.core.heap.maxsize())
            .field("shutdown", &self.core.heap.is_shut_down())
            .finish()
    }
}

impl<T> Serialize for PriorityCore<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.heap.region().serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for PriorityCore<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize(d)?;
        let heap = heap::SharedHeap::from_region(region).map_err(serde::de::Error::custom)?;
        Ok(PriorityCore {
            heap: Arc::new(heap),
            closed: Arc::new(AtomicBool::new(false)),
            _items: PhantomData,
        })
    }
}

impl<T: Serialize + DeserializeOwned + Ord> PriorityQueue<T> {
    fn with_limit(maxsize: u64) -> Result<Self> {
        Ok(PriorityQueue {
            core: PriorityCore {
                heap: Arc::new(heap::SharedHeap::create(maxsize)?),
                closed: Arc::new(AtomicBool::new(false)),
                _items: PhantomData,
            },
        })
    }

    /// A priority queue with no limit on the number of items.
    pub fn new() -> Result<Self> {
        Self::with_limit(0)
    }

    /// A priority queue that holds at most `maxsize` items (at least 1).
    pub fn bounded(maxsize: usize) -> Result<Self> {
        Self::with_limit(bounded_size(maxsize)?)
    }

    /// Orders two encoded items by their decoded values (undecodable ones compare equal).
    fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        match (codec::decode::<T>(a), codec::decode::<T>(b)) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            _ => std::cmp::Ordering::Equal,
        }
    }

    /// Shuts the queue down for every handle in every process, as [`Queue::shutdown`]: puts
    /// fail with [`Error::ShutDown`], gets take what is left and then fail the same way, and
    /// every waiting get or put wakes up.
    ///
    /// ```
    /// let q = multiprocess::PriorityQueue::<u32>::new()?;
    /// q.put(2)?;
    /// q.put(1)?;
    /// q.shutdown();
    /// assert!(q.is_shutdown());
    /// assert!(q.put(3).is_err());
    /// let left: Vec<u32> = q.iter().collect::<multiprocess::Result<_>>()?;
    /// assert_eq!(left, [1, 2]);
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn shutdown(&self) {
        self.core.heap.shutdown();
    }

    /// Whether the queue was [shut down](Self::shutdown), by any process.
    pub fn is_shutdown(&self) -> bool {
        self.core.heap.is_shut_down()
    }

    fn put_with(&self, item: &T, wait: Wait) -> Result<()> {
        if self.core.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let bytes = codec::encode(item)?;
        self.core.heap.push(&bytes, wait, &Self::compare)
    }

    fn get_with(&self, wait: Wait) -> Result<T> {
        if self.core.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        codec::decode(&self.core.heap.pop(wait, &Self::compare)?)
    }

    /// Puts an item, waiting while the queue is full.
    pub fn put(&self, item: impl Borrow<T>) -> Result<()> {
        self.put_with(item.borrow(), Wait::Until(None))
    }

    /// Puts an item, waiting at most `timeout` for room; [`Error::Full`] after that.
    pub fn put_timeout(&self, item: impl Borrow<T>, timeout: Duration) -> Result<()> {
        self.put_with(item.borrow(), Wait::timeout(timeout))
    }

    /// Puts an item if there is room now; [`Error::Full`] otherwise.
    pub fn put_nowait(&self, item: impl Borrow<T>) -> Result<()> {
        self.put_with(item.borrow(), Wait::No)
    }

    /// Takes the smallest item, waiting while the queue is empty.
    pub fn get(&self) -> Result<T> {
        self.get_with(Wait::Until(None))
    }

    /// Takes the smallest item, waiting at most `timeout`; [`Error::Empty`] after that.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_with(Wait::timeout(timeout))
    }

    /// Takes the smallest item if there is one now; [`Error::Empty`] otherwise.
    pub fn get_nowait(&self) -> Result<T> {
        self.get_with(Wait::No)
    }

    /// The exact number of items in the queue.
    pub fn qsize(&self) -> usize {
        self.core.heap.len() as usize
    }

    /// Whether the queue holds no item.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue holds `maxsize` items (never, without a limit).
    pub fn full(&self) -> bool {
        let max = self.core.heap.maxsize();
        max > 0 && self.core.heap.len() >= max
    }

    /// The limit given to [`bounded`](Self::bounded), or `None`.
    pub fn maxsize(&self) -> Option<usize> {
        match self.core.heap.maxsize() {
            0 => None,
            n => Some(n as usize),
        }
    }

    /// Closes this handle (and its clones) in this process, as [`Queue::close`].
    pub fn close(&self) {
        self.core.closed.store(true, Ordering::Release);
    }

    /// The items, smallest first, each taken with [`get`](Self::get) (waiting for it): see
    /// [`Items`]. It ends once the queue is [shut down](Self::shutdown) and empty.
    /// `for item in &queue` does the same.
    pub fn iter(&self) -> Items<'_, T> {
        Items::new("PriorityQueue", false, move || self.get())
    }

    /// The items there now, smallest first: see [`Items`].
    pub fn try_iter(&self) -> Items<'_, T> {
        Items::new("PriorityQueue", true, move || self.get_nowait())
    }
}

impl<'a, T: Serialize + DeserializeOwned + Ord> IntoIterator for &'a PriorityQueue<T> {
    type Item = Result<T>;
    type IntoIter = Items<'a, T>;

    fn into_iter(self) -> Items<'a, T> {
        self.iter()
    }
}
