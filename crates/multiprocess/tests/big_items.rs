//! Big items (16 MiB and 64 MiB byte strings) through every channel, under every start method:
//! queues (FIFO and LIFO, whose records never wrap and may follow a pad), pipes (values and raw
//! bytes), `Process` and `spawn` arguments and results, pool arguments and results (which move
//! to shared memory from 128 KiB on), priority, joinable and simple queues, shared dicts and
//! lists. Each arrives whole.

mod common;

use common::{join, recv, Unencodable, DEADLINE};
use multiprocess::{
    pipe, Connection, Dict, JoinableQueue, LifoQueue, List, Pool, PriorityQueue, Process, Queue,
    SimpleQueue, StartMethod,
};
use serde_bytes::ByteBuf;

multiprocess::init_on_load!();

const MIB: usize = 1 << 20;

/// `len` bytes where each 4 KiB page holds a byte of its own after a word naming the page
/// (cheap to make and check with memset and memcmp, even in a debug build).
fn patterned(seed: u64, len: usize) -> ByteBuf {
    let mut v = vec![0u8; len];
    for (i, page) in v.chunks_mut(4096).enumerate() {
        let (head, rest) = page.split_at_mut(page.len().min(8));
        head.copy_from_slice(&word(seed, i)[..head.len()]);
        rest.fill(byte(seed, i));
    }
    ByteBuf::from(v)
}

fn word(seed: u64, page: usize) -> [u8; 8] {
    (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ page as u64).to_le_bytes()
}

fn byte(seed: u64, page: usize) -> u8 {
    (seed as usize).wrapping_add(page.wrapping_mul(31)) as u8
}

fn intact(seed: u64, len: usize, bytes: &[u8]) -> bool {
    let mut same = [0u8; 4096];
    bytes.len() == len
        && bytes.chunks(4096).enumerate().all(|(i, page)| {
            let (head, rest) = page.split_at(page.len().min(8));
            same[..rest.len()].fill(byte(seed, i));
            head == &word(seed, i)[..head.len()] && rest == &same[..rest.len()]
        })
}

/// The sizes tried: large ones, and ones just off a power of two.
const SIZES: [(u64, usize); 4] = [
    (1, 16 * MIB),
    (2, 64 * MIB),
    (3, 16 * MIB + 13),
    (4, 3 * MIB - 5),
];

fn echo_queue(from: Queue<Option<ByteBuf>>, to: Queue<ByteBuf>) {
    while let Some(item) = from.get().unwrap() {
        to.put(item).unwrap();
    }
}

/// Through a FIFO queue to a child and back.
fn queue_round_trip(method: StartMethod) {
    let (there, back) = (Queue::bounded(2).unwrap(), Queue::new().unwrap());
    let p = Process::new(echo_queue, (there.clone(), back.clone()))
        .start_method(method)
        .start()
        .unwrap();
    for (seed, len) in SIZES {
        there.put(Some(patterned(seed, len))).unwrap();
    }
    for (seed, len) in SIZES {
        let got = back.get_timeout(DEADLINE).unwrap();
        assert!(intact(seed, len, &got), "item {seed} of {len} bytes");
    }
    there.put(None).unwrap();
    assert_eq!(join(&p), 0);
}

fn fill_lifo(q: LifoQueue<ByteBuf>) {
    for (seed, len) in SIZES {
        q.put(patterned(seed, len)).unwrap();
    }
}

/// A LIFO queue filled by a child gives the items back newest first, whole.
fn lifo_round_trip(method: StartMethod) {
    let q = LifoQueue::new().unwrap();
    let p = Process::new(fill_lifo, (q.clone(),))
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(join(&p), 0);
    for (seed, len) in SIZES.into_iter().rev() {
        assert!(intact(seed, len, &q.get_nowait().unwrap()));
    }
}

fn echo_pipe(c: Connection) {
    while let Some(item) = c.recv::<Option<ByteBuf>>().unwrap() {
        c.send(&item).unwrap();
    }
    let raw = c.recv_bytes().unwrap();
    c.send_bytes(&raw).unwrap();
}

/// Values and raw bytes through a pipe and back.
fn pipe_round_trip(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    let p = Process::new(echo_pipe, (theirs,))
        .start_method(method)
        .start()
        .unwrap();
    for (seed, len) in SIZES {
        mine.send(&Some(patterned(seed, len))).unwrap();
        assert!(intact(seed, len, &recv::<ByteBuf>(&mine)));
    }
    mine.send(&None::<ByteBuf>).unwrap();
    mine.send_bytes(&patterned(9, 16 * MIB)).unwrap();
    assert!(mine.poll(DEADLINE).unwrap());
    let mut into = vec![0u8; 16 * MIB];
    assert_eq!(mine.recv_bytes_into(&mut into).unwrap(), 16 * MIB);
    assert!(intact(9, 16 * MIB, &into));
    assert_eq!(join(&p), 0);
}

fn check_and_make(seed: u64, len: usize, item: ByteBuf) -> ByteBuf {
    assert!(intact(seed, len, &item));
    patterned(seed + 100, len)
}

/// 64 MiB as a `Process` and `spawn` argument, and back as `spawn`'s result.
fn process_arguments_and_results(method: StartMethod) {
    let p = Process::new(
        |item: ByteBuf| assert!(intact(2, 64 * MIB, &item)),
        (patterned(2, 64 * MIB),),
    )
    .start_method(method)
    .start()
    .unwrap();
    assert_eq!(join(&p), 0);
    let h = multiprocess::get_context(method)
        .spawn(check_and_make, (2, 64 * MIB, patterned(2, 64 * MIB)))
        .unwrap();
    assert!(intact(102, 64 * MIB, &h.join().unwrap()));
}

/// Pool tasks with big arguments and results (in shared memory from 128 KiB on).
fn pool_arguments_and_results(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    for (seed, len) in SIZES {
        let back = pool
            .apply(check_and_make, (seed, len, patterned(seed, len)))
            .unwrap();
        assert!(intact(seed + 100, len, &back));
    }
    let args: Vec<_> = (0..24u64)
        .map(|i| (i, MIB + i as usize, patterned(i, MIB + i as usize)))
        .collect();
    let out = pool.starmap(check_and_make, args).unwrap();
    for (i, item) in out.iter().enumerate() {
        assert!(intact(i as u64 + 100, MIB + i, item));
    }
    pool.close();
    pool.join().unwrap();
}

/// The sizes for the channels that are not the main path (no 64 MiB one: each costs time).
fn smaller_sizes() -> impl Iterator<Item = (u64, usize)> {
    SIZES.into_iter().filter(|&(_, len)| len < 64 * MIB)
}

type Channels = (
    PriorityQueue<(u64, ByteBuf)>,
    JoinableQueue<ByteBuf>,
    SimpleQueue<ByteBuf>,
    Dict<u64, ByteBuf>,
    List<ByteBuf>,
);

fn fill_channels((prio, joinable, simple, dict, list): Channels) {
    for (seed, len) in smaller_sizes() {
        prio.put((seed, patterned(seed, len))).unwrap();
        joinable.put(patterned(seed, len)).unwrap();
        simple.put(patterned(seed, len)).unwrap();
        dict.insert(seed, patterned(seed, len)).unwrap();
        list.push(patterned(seed, len)).unwrap();
    }
}

/// The other channels (a priority queue, a joinable queue, a simple queue, a shared dict and
/// list) carry big byte strings from a child whole.
fn other_channels_round_trip(method: StartMethod) {
    let channels: Channels = (
        PriorityQueue::new().unwrap(),
        JoinableQueue::new().unwrap(),
        SimpleQueue::new().unwrap(),
        Dict::new().unwrap(),
        List::new().unwrap(),
    );
    let p = Process::new(fill_channels, (channels.clone(),))
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(join(&p), 0);
    let (prio, joinable, simple, dict, list) = channels;
    let mut by_priority: Vec<_> = smaller_sizes().collect();
    by_priority.sort();
    for (seed, len) in by_priority {
        let (got_seed, got) = prio.get_nowait().unwrap();
        assert_eq!(got_seed, seed);
        assert!(intact(seed, len, &got), "priority queue, item {seed}");
    }
    for (i, (seed, len)) in smaller_sizes().enumerate() {
        assert!(
            intact(seed, len, &joinable.get_nowait().unwrap()),
            "joinable {seed}"
        );
        joinable.task_done().unwrap();
        assert!(intact(seed, len, &simple.get().unwrap()), "simple {seed}");
        assert!(
            intact(seed, len, &dict.get(&seed).unwrap().unwrap()),
            "dict {seed}"
        );
        assert!(intact(seed, len, &list.get(i).unwrap()), "list {seed}");
    }
}

fn mark_ran(path: String, _big: ByteBuf, _unused: Option<Unencodable>) {
    std::fs::write(path, b"ran").unwrap();
}

/// A map of big arguments several to a chunk (a worker decodes each chunk one argument at a
/// time, and the chunks are written and queued one after another): every result intact and
/// in order; and a value that cannot be encoded, even behind big ones, fails the call before
/// any chunk runs.
fn pool_chunks_of_big_arguments(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    let args: Vec<_> = (0..12u64)
        .map(|i| (i, MIB + i as usize, patterned(i, MIB + i as usize)))
        .collect();
    let out = pool
        .starmap_async(check_and_make, args, 4)
        .unwrap()
        .get_timeout(DEADLINE)
        .unwrap();
    assert_eq!(out.len(), 12);
    for (i, item) in out.iter().enumerate() {
        assert!(intact(i as u64 + 100, MIB + i, item));
    }

    let file = std::env::temp_dir().join(format!("mp-big-ran-{}-{method}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let items: Vec<_> = (0..6u64)
        .map(|i| {
            let path = file.display().to_string();
            (path, patterned(i, MIB), (i == 5).then_some(Unencodable))
        })
        .collect();
    assert!(matches!(
        pool.starmap_async(mark_ran, items, 2),
        Err(multiprocess::Error::Encode(_))
    ));
    assert_eq!(
        pool.apply(check_and_make, (7, 10, patterned(7, 10)))
            .unwrap()
            .len(),
        10
    );
    assert!(!file.exists(), "a chunk ran although the call failed");
    pool.close();
    pool.join().unwrap();
}

per_method!(
    other_channels_round_trip,
    pool_chunks_of_big_arguments,
    queue_round_trip,
    lifo_round_trip,
    pipe_round_trip,
    process_arguments_and_results,
    pool_arguments_and_results,
);
