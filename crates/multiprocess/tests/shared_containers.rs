//! Shared `Dict` and `List` (Python's `Manager().dict()` / `.list()`): they behave as a
//! `HashMap` / `Vec` would, are shared by many processes (also pool tasks) with an exact `len`,
//! and survive processes SIGKILLed in the middle of updates without a torn entry.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{join, seed, Rng, DEADLINE};
use multiprocess::{Dict, Error, Event, List, Pool, Process, ProcessHandle, StartMethod};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

multiprocess::init_on_load!();

/// Random operations on a `Dict` and on a `HashMap` (plus an insertion-order list) agree, through
/// many rebuilds and compactions.
#[test]
fn dict_matches_a_model() {
    let mut rng = Rng::new(seed());
    let d = Dict::<u64, String>::new().unwrap();
    let mut model: HashMap<u64, String> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    for step in 0..20_000 {
        let key = rng.below(600);
        match rng.below(10) {
            0..=4 => {
                let v = "v".repeat(rng.below(300) as usize) + &step.to_string();
                let old = d.insert(key, &v).unwrap();
                if !model.contains_key(&key) {
                    order.push(key);
                }
                assert_eq!(old, model.insert(key, v));
            }
            5..=6 => {
                assert_eq!(d.remove(&key).unwrap(), model.remove(&key));
                order.retain(|&k| k != key);
            }
            7 => {
                let got = d.update(&key, |v| {
                    let before = v.clone();
                    *v = Some(format!("u{step}"));
                    before
                });
                if !model.contains_key(&key) {
                    order.push(key);
                }
                assert_eq!(got.unwrap(), model.insert(key, format!("u{step}")));
            }
            8 => assert_eq!(d.get(&key).unwrap().as_ref(), model.get(&key)),
            _ => assert_eq!(d.contains_key(&key).unwrap(), model.contains_key(&key)),
        }
        assert_eq!(d.len(), model.len());
    }
    assert_eq!(d.keys().unwrap(), order, "insertion order");
    let items = d.items().unwrap();
    assert!(items.iter().all(|(k, v)| model.get(k) == Some(v)));
    assert_eq!(d.setdefault(10_000, "new".into()).unwrap(), "new");
    assert_eq!(d.setdefault(10_000, "other".into()).unwrap(), "new");
    d.clear().unwrap();
    assert!(d.is_empty() && d.items().unwrap().is_empty());
    d.insert(1, "again".to_string()).unwrap();
    assert_eq!(d.get(&1).unwrap().as_deref(), Some("again"));
}

/// Borrowed lookups: `&str` for `String` keys, as `HashMap` allows.
#[test]
fn dict_borrowed_keys() {
    let d = Dict::<String, Vec<u8>>::new().unwrap();
    d.set("a".to_string(), vec![1]).unwrap();
    assert_eq!(d.get("a").unwrap(), Some(vec![1]));
    assert!(d.contains_key("a").unwrap() && !d.contains_key("b").unwrap());
    assert_eq!(d.remove("a").unwrap(), Some(vec![1]));
}

/// Random operations on a `List` and on a `Vec` agree.
#[test]
fn list_matches_a_model() {
    let mut rng = Rng::new(seed());
    let l = List::<Vec<u32>>::new().unwrap();
    let mut model: Vec<Vec<u32>> = Vec::new();
    for step in 0..10_000u32 {
        let item = vec![step; rng.below(40) as usize];
        let len = model.len() as u64;
        match rng.below(12) {
            0..=4 => {
                l.push(&item).unwrap();
                model.push(item);
            }
            5 => {
                let i = rng.below(len + 1) as usize;
                l.insert(i, &item).unwrap();
                model.insert(i, item);
            }
            6 if len > 0 => {
                let i = rng.below(len) as usize;
                assert_eq!(l.remove(i).unwrap(), model.remove(i));
            }
            7 => assert_eq!(l.pop().unwrap(), model.pop()),
            8 if len > 0 => {
                let i = rng.below(len) as usize;
                l.set(i, &item).unwrap();
                model[i] = item;
            }
            9 if len > 0 => {
                let i = rng.below(len) as usize;
                assert_eq!(l.get(i).unwrap(), model[i]);
            }
            10 => {
                let i = len as usize + rng.below(3) as usize;
                assert!(matches!(l.get(i), Err(Error::IndexOutOfRange { .. })));
                assert!(matches!(
                    l.set(i, &item),
                    Err(Error::IndexOutOfRange { .. })
                ));
            }
            _ => {}
        }
        assert_eq!(l.len(), model.len());
    }
    assert_eq!(l.to_vec().unwrap(), model);
    l.clear().unwrap();
    assert!(l.is_empty() && l.to_vec().unwrap().is_empty());
}

/// A handle received as another type is refused rather than misread.
#[test]
fn a_container_of_other_types_is_refused() {
    let d = Dict::<String, u64>::new().unwrap();
    let (bytes, fds) = multiprocess::codec::encode_with_fds(&d).unwrap();
    let err = multiprocess::codec::decode_with_fds::<Dict<u64, u64>>(&bytes, fds).unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err}");
    let (bytes, fds) = multiprocess::codec::encode_with_fds(&d).unwrap();
    assert!(multiprocess::codec::decode_with_fds::<List<u64>>(&bytes, fds).is_err());
}

fn gather(d: Dict<(u32, u32), u64>, l: List<u32>, worker: u32, n: u32) {
    for i in 0..n {
        d.insert((worker, i), u64::from(worker) * 1000 + u64::from(i))
            .unwrap();
        l.push(worker).unwrap();
        d.update(&(u32::MAX, 0), |c| *c.get_or_insert(0) += 1)
            .unwrap();
    }
}

/// Four processes gather results into one dict and one list: every entry arrives, `len` is
/// exact, and the shared counter updated with `update` counts every increment.
fn many_writers(method: StartMethod) {
    let d = Dict::<(u32, u32), u64>::new().unwrap();
    let l = List::<u32>::new().unwrap();
    let n = 300;
    let procs: Vec<ProcessHandle> = (0..4)
        .map(|w| {
            Process::new(gather, (d.clone(), l.clone(), w, n))
                .start_method(method)
                .start()
                .unwrap()
        })
        .collect();
    for p in &procs {
        assert_eq!(join(p), 0);
    }
    assert_eq!(d.len(), 4 * n as usize + 1);
    assert_eq!(l.len(), 4 * n as usize);
    assert_eq!(d.get(&(u32::MAX, 0)).unwrap(), Some(4 * u64::from(n)));
    for w in 0..4 {
        for i in 0..n {
            assert_eq!(
                d.get(&(w, i)).unwrap(),
                Some(u64::from(w) * 1000 + u64::from(i))
            );
        }
        assert_eq!(
            l.to_vec().unwrap().iter().filter(|&&x| x == w).count(),
            n as usize
        );
    }
}

fn record_square(d: Dict<u64, u64>, l: List<u64>, x: u64) -> u64 {
    d.insert(x, x * x).unwrap();
    l.push(x).unwrap();
    x * x
}

/// Pool tasks take a dict and a list as arguments, as they take queues.
fn pool_tasks(method: StartMethod) {
    let d = Dict::<u64, u64>::new().unwrap();
    let l = List::<u64>::new().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    let args: Vec<_> = (0..50).map(|x| (d.clone(), l.clone(), x)).collect();
    let out = pool.starmap(record_square, args).unwrap();
    assert_eq!(out, (0..50).map(|x| x * x).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
    assert_eq!(d.len(), 50);
    let mut seen = l.to_vec().unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
}

/// An entry that proves its own integrity.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Entry {
    key: u64,
    version: u64,
    payload: ByteBuf,
    checksum: u64,
}

impl Entry {
    fn new(key: u64, version: u64, len: usize) -> Entry {
        let payload: Vec<u8> = (0..len).map(|i| (i as u64 ^ key ^ version) as u8).collect();
        Entry {
            key,
            version,
            checksum: sum(key, version, &payload),
            payload: ByteBuf::from(payload),
        }
    }

    fn whole(&self) -> bool {
        self.checksum == sum(self.key, self.version, &self.payload)
            && self
                .payload
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i as u64 ^ self.key ^ self.version) as u8)
    }
}

fn sum(key: u64, version: u64, payload: &[u8]) -> u64 {
    payload
        .iter()
        .fold(key.wrapping_mul(31) ^ version, |h, &b| {
            h.wrapping_mul(0x100_0000_01b3) ^ u64::from(b)
        })
}

/// Updates at random for ever: inserts and overwrites (with large values now and then, so
/// rebuilds and compactions are frequent), removals, read-modify-writes, list edits.
fn churn(d: Dict<u64, Entry>, l: List<Entry>, started: Event, seed: u64) {
    let mut rng = Rng::new(seed);
    started.set();
    for version in 0.. {
        let key = rng.below(64);
        let len = if rng.below(16) == 0 {
            64 << 10
        } else {
            rng.below(200) as usize
        };
        match rng.below(8) {
            0..=2 => drop(d.insert(key, Entry::new(key, version, len)).unwrap()),
            3 => drop(d.remove(&key).unwrap()),
            4 => d
                .update(&key, |e| *e = Some(Entry::new(key, version, len)))
                .unwrap(),
            5 => l.push(Entry::new(key, version, len)).unwrap(),
            6 => {
                let n = l.len();
                if n > 0 {
                    l.set(rng.below(n as u64) as usize, Entry::new(key, version, len))
                        .unwrap();
                }
                if n > 40 {
                    let _ = l.remove(rng.below(n as u64) as usize);
                }
            }
            _ => {
                let i = rng.below(l.len() as u64 + 1) as usize;
                let _ = l.insert(i, Entry::new(key, version, len));
            }
        }
    }
}

/// Everything in the dict and the list is whole, and `len` agrees with what iteration finds.
fn check_whole(d: &Dict<u64, Entry>, l: &List<Entry>, round: u32) {
    let items = d.items().unwrap_or_else(|e| panic!("round {round}: {e}"));
    assert_eq!(items.len(), d.len(), "round {round}: dict len");
    for (k, e) in &items {
        assert!(e.whole() && e.key == *k, "round {round}: torn entry {k}");
    }
    let list = l.to_vec().unwrap_or_else(|e| panic!("round {round}: {e}"));
    assert_eq!(list.len(), l.len(), "round {round}: list len");
    assert!(
        list.iter().all(Entry::whole),
        "round {round}: torn list item"
    );
}

/// Processes SIGKILLed at random instants in the middle of updates (often holding the lock,
/// mid-rebuild): no torn entry, exact lengths, and the containers keep working for the others.
fn killed_mid_update(method: StartMethod) {
    let mut rng = Rng::new(seed());
    let d = Dict::<u64, Entry>::new().unwrap();
    let l = List::<Entry>::new().unwrap();
    for round in 0..12 {
        let started = Event::new().unwrap();
        let victim = Process::new(churn, (d.clone(), l.clone(), started.clone(), rng.next()))
            .start_method(method)
            .start()
            .unwrap();
        assert!(
            started.wait_timeout(DEADLINE).unwrap(),
            "round {round}: victim did not start"
        );
        std::thread::sleep(Duration::from_micros(rng.below(20_000))); // the kill's random instant
        victim.kill().unwrap();
        assert_eq!(join(&victim), -9);
        let t = Instant::now();
        check_whole(&d, &l, round);
        assert!(t.elapsed() < DEADLINE);
        // A survivor's updates all land.
        let key = 1000 + u64::from(round);
        d.insert(key, Entry::new(key, 0, 10)).unwrap();
        assert_eq!(d.get(&key).unwrap(), Some(Entry::new(key, 0, 10)));
        let n = l.len();
        l.push(Entry::new(key, 0, 10)).unwrap();
        assert_eq!(l.len(), n + 1);
    }
}

per_method!(many_writers, pool_tasks, killed_mid_update);
