//! Kill safety of queues (SPEC §2 "Killing is safe", SCENARIOS F12): processes SIGKILLed at
//! random instants while putting or getting (often inside the lock, copying a large item) never
//! leave a torn item, a lost one from a survivor, or a queue that blocks the survivors.

mod common;

use std::time::{Duration, Instant};

use common::{join, seed, Rng, DEADLINE};
use multiprocess::{Error, PriorityQueue, Process, ProcessHandle, Queue, StartMethod};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

multiprocess::init_on_load!();

/// An item that proves its own integrity.
#[derive(Serialize, Deserialize, Debug)]
struct Item {
    producer: u32,
    seq: u64,
    payload: ByteBuf,
    checksum: u64,
}

fn checksum(producer: u32, seq: u64, payload: &[u8]) -> u64 {
    // FNV-1a-style over 8-byte words (fast enough in a debug build for megabytes).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(producer) ^ seq.rotate_left(32);
    let mut words = payload.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().unwrap());
        h = (h ^ w).wrapping_mul(0x100_0000_01b3);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h ^ payload.len() as u64
}

/// A payload whose every 8-byte word depends on the item and its position.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (i, w) in v.chunks_mut(8).enumerate() {
        let x = (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64).to_le_bytes();
        w.copy_from_slice(&x[..w.len()]);
    }
    v
}

/// Puts `count` items (or for ever), of sizes up to 2 MiB so that a kill often lands while the
/// item is being copied under the lock.
fn producer(q: Queue<Item>, id: u32, count: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    for seq in 0..count {
        let len = match rng.below(10) {
            0 => rng.below(2 << 20),
            1..=3 => rng.below(64 << 10),
            _ => rng.below(64),
        } as usize;
        let payload = payload(seq, len);
        let item = Item {
            producer: id,
            seq,
            checksum: checksum(id, seq, &payload),
            payload: ByteBuf::from(payload),
        };
        q.put(&item).unwrap();
    }
}

/// Checks one item and the per-producer order; returns its producer.
fn check(item: &Item, next: &mut [u64]) -> u32 {
    assert_eq!(
        item.checksum,
        checksum(item.producer, item.seq, &item.payload),
        "torn item from producer {} seq {}",
        item.producer,
        item.seq
    );
    let expected = &mut next[item.producer as usize];
    assert!(
        item.seq >= *expected,
        "producer {} went back from {} to {}",
        item.producer,
        expected,
        item.seq
    );
    *expected = item.seq + 1;
    item.producer
}

fn kill_after(p: &ProcessHandle, delay: Duration) {
    std::thread::sleep(delay); // the random instant of the kill, not a synchronisation
    p.kill().unwrap();
    assert!(matches!(join(p), -9 | 0), "unexpected exit of {}", p.name());
}

/// Producers killed at random instants: every item that arrives is whole, each producer's items
/// stay in order, and a surviving producer's items all arrive.
fn killed_producers(method: StartMethod) {
    let mut rng = Rng::new(seed());
    for round in 0..20 {
        let q = Queue::<Item>::bounded(8).unwrap();
        let survivor_items = 200;
        let survivor = Process::new(producer, (q.clone(), 0, survivor_items, rng.next()))
            .start_method(method)
            .start()
            .unwrap();
        let victim = Process::new(producer, (q.clone(), 1, u64::MAX, rng.next()))
            .start_method(method)
            .start()
            .unwrap();
        let kill_at = Duration::from_micros(rng.below(30_000));
        let killer = std::thread::spawn(move || kill_after(&victim, kill_at));
        let mut next = [0u64; 2];
        let mut from_survivor = 0;
        let started = Instant::now();
        while from_survivor < survivor_items {
            assert!(started.elapsed() < DEADLINE, "round {round}: stuck");
            match q.get_timeout(DEADLINE) {
                Ok(item) => {
                    if check(&item, &mut next) == 0 {
                        from_survivor += 1;
                    }
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        killer.join().unwrap();
        assert_eq!(join(&survivor), 0);
        // What the victim published before it died is all there, whole.
        while let Ok(item) = q.get_nowait() {
            check(&item, &mut next);
        }
        assert_eq!(next[0], survivor_items);
        assert!(q.empty());
        // The queue still works.
        q.put(Item {
            producer: 0,
            seq: 0,
            payload: ByteBuf::new(),
            checksum: checksum(0, 0, &[]),
        })
        .unwrap();
        assert_eq!(q.get_timeout(DEADLINE).unwrap().seq, 0);
    }
}

fn consumer(q: Queue<Item>) {
    loop {
        let _ = q.get();
    }
}

/// Consumers killed at random instants (often while copying an item out under the lock): the
/// queue keeps working, and every item left in it is whole and in order.
fn killed_consumers(method: StartMethod) {
    let mut rng = Rng::new(seed());
    for round in 0..20 {
        let q = Queue::<Item>::new().unwrap();
        let count = 100;
        let p = Process::new(producer, (q.clone(), 0, count, rng.next()))
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(join(&p), 0);
        let victim = Process::new(consumer, (q.clone(),))
            .start_method(method)
            .start()
            .unwrap();
        kill_after(&victim, Duration::from_micros(rng.below(20_000)));
        let mut next = [0u64; 1];
        let left = q.qsize();
        for _ in 0..left {
            let item = q
                .get_timeout(DEADLINE)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            check(&item, &mut next);
        }
        assert!(matches!(q.get_nowait(), Err(Error::Empty)));
        // Producing and consuming still work after the takeover.
        let p = Process::new(producer, (q.clone(), 0, 3, rng.next()))
            .start_method(method)
            .start()
            .unwrap();
        for seq in 0..3 {
            assert_eq!(q.get_timeout(DEADLINE).unwrap().seq, seq);
        }
        assert_eq!(join(&p), 0);
    }
}

/// A priority item: ordered by key, checked by checksum.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Keyed {
    key: u64,
    checksum: u64,
    payload: ByteBuf,
}

fn priority_producer(q: PriorityQueue<Keyed>, seed: u64) {
    let mut rng = Rng::new(seed);
    for seq in 0.. {
        let key = rng.below(1000);
        let len = if rng.below(8) == 0 {
            rng.below(1 << 20)
        } else {
            rng.below(256)
        } as usize;
        let payload = payload(seq, len);
        q.put(Keyed {
            key,
            checksum: checksum(0, key, &payload),
            payload: ByteBuf::from(payload),
        })
        .unwrap();
    }
}

/// A producer killed at random instants while putting into a priority queue (often inside the
/// lock, mid-sift or mid-compaction): what is left comes out whole and in order.
fn killed_priority_producers(method: StartMethod) {
    let mut rng = Rng::new(seed());
    for round in 0..10 {
        let q = PriorityQueue::<Keyed>::new().unwrap();
        let victim = Process::new(priority_producer, (q.clone(), rng.next()))
            .start_method(method)
            .start()
            .unwrap();
        kill_after(&victim, Duration::from_micros(rng.below(30_000)));
        let mut last = 0;
        while let Ok(item) = q.get_nowait() {
            assert_eq!(
                item.checksum,
                checksum(0, item.key, &item.payload),
                "round {round}: torn item"
            );
            assert!(item.key >= last, "round {round}: out of order");
            last = item.key;
        }
        assert!(q.empty());
    }
}

per_method!(
    killed_producers,
    killed_consumers,
    killed_priority_producers
);
