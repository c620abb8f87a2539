//! Zero-copy buffers (`ShmBuf`): their pages cross every channel as a descriptor, under every
//! start method; the bytes are final once frozen; and a receiver killed while holding one
//! leaves nothing behind.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{join, recv, seed, Rng, DEADLINE};
use multiprocess::{pipe, Connection, Event, Pool, Process, Queue, ShmBuf, ShmBufMut, StartMethod};

multiprocess::init_on_load!();

/// A buffer of `len` bytes whose every 8-byte word depends on `seed` and its position.
fn patterned(seed: u64, len: usize) -> ShmBuf {
    let mut buf = ShmBufMut::new(len).unwrap();
    fill(seed, &mut buf);
    buf.freeze()
}

/// Fills each 4 KiB page with a byte of its own, after a word naming the page: cheap to write
/// and to check (memset and memcmp) even in a debug build, and a page out of place shows.
fn fill(seed: u64, bytes: &mut [u8]) {
    for (i, page) in bytes.chunks_mut(4096).enumerate() {
        let (head, rest) = page.split_at_mut(page.len().min(8));
        head.copy_from_slice(&page_word(seed, i)[..head.len()]);
        rest.fill(page_byte(seed, i));
    }
}

fn page_word(seed: u64, page: usize) -> [u8; 8] {
    (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ page as u64).to_le_bytes()
}

fn page_byte(seed: u64, page: usize) -> u8 {
    (seed as usize).wrapping_add(page.wrapping_mul(31)) as u8
}

/// Whether `bytes` is exactly what [`fill`] wrote for `seed`.
fn intact(seed: u64, bytes: &[u8]) -> bool {
    let mut same = [0u8; 4096];
    bytes.chunks(4096).enumerate().all(|(i, page)| {
        let (head, rest) = page.split_at(page.len().min(8));
        same[..rest.len()].fill(page_byte(seed, i));
        head == &page_word(seed, i)[..head.len()] && rest == &same[..rest.len()]
    })
}

fn check_buf(seed: u64, len: usize, buf: ShmBuf) -> bool {
    buf.len() == len && intact(seed, &buf)
}

/// Sends each buffer back with the inode it saw, until `None`.
fn echo_buf(conn: Connection) {
    while let Some(buf) = conn.recv::<Option<ShmBuf>>().unwrap() {
        conn.send(&(buf.inode(), buf)).unwrap();
    }
}

/// A 16 MiB buffer through a pipe and back: the same pages (the same inode) at both ends.
fn through_a_pipe(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    let p = Process::new(echo_buf, (theirs,))
        .start_method(method)
        .start()
        .unwrap();
    for (seed, len) in [(1, 16 << 20), (2, 0), (3, 4095)] {
        let buf = patterned(seed, len);
        mine.send(&Some(&buf)).unwrap();
        let (seen_inode, back): (u64, ShmBuf) = recv(&mine);
        assert_eq!(seen_inode, buf.inode(), "the child mapped other pages");
        assert_eq!(back.inode(), buf.inode());
        assert!(check_buf(seed, len, back));
    }
    mine.send(&None::<ShmBuf>).unwrap();
    assert_eq!(join(&p), 0);
}

/// 64 MiB as a `Process` argument and as a `spawn` argument and result.
fn as_arguments(method: StartMethod) {
    let buf = patterned(7, 64 << 20);
    let p = Process::new(
        |b: ShmBuf| assert!(check_buf(7, 64 << 20, b)),
        (buf.clone(),),
    )
    .start_method(method)
    .start()
    .unwrap();
    assert_eq!(join(&p), 0);
    let h = multiprocess::get_context(method)
        .spawn(
            |b: ShmBuf| {
                assert!(check_buf(7, 64 << 20, b));
                patterned(8, 64 << 20)
            },
            (buf,),
        )
        .unwrap();
    assert!(check_buf(8, 64 << 20, h.join().unwrap()));
}

fn sum_len(b: ShmBuf) -> usize {
    assert!(intact(b.len() as u64, &b));
    b.len()
}

fn make(len: usize) -> ShmBuf {
    patterned(len as u64, len)
}

/// Buffers as pool task arguments and results.
fn through_a_pool(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    let lens = [1 << 20, 16 << 20, 3, 0];
    let bufs: Vec<ShmBuf> = lens.iter().map(|&n| patterned(n as u64, n)).collect();
    assert_eq!(pool.map(sum_len, bufs).unwrap(), lens);
    for (buf, &len) in pool.map(make, lens).unwrap().into_iter().zip(&lens) {
        assert!(check_buf(len as u64, len, buf));
    }
    pool.close();
    pool.join().unwrap();
}

fn forward(q: Queue<ShmBuf>, back: Queue<(u64, ShmBuf)>) {
    while let Ok(buf) = q.get() {
        if buf.is_empty() {
            break;
        }
        back.put((buf.inode(), buf)).unwrap();
    }
}

/// Buffers through a queue to a running process and back.
fn through_a_queue(method: StartMethod) {
    let q = Queue::<ShmBuf>::bounded(4).unwrap();
    let back = Queue::<(u64, ShmBuf)>::new().unwrap();
    let p = Process::new(forward, (q.clone(), back.clone()))
        .start_method(method)
        .start()
        .unwrap();
    let bufs: Vec<ShmBuf> = (1..=6).map(|i| patterned(i, (i as usize) << 20)).collect();
    for b in &bufs {
        q.put(b).unwrap();
    }
    for b in &bufs {
        let (inode, got) = back.get_timeout(DEADLINE).unwrap();
        assert_eq!(inode, b.inode(), "the consumer mapped other pages");
        assert!(check_buf(b.len() as u64 >> 20, b.len(), got));
    }
    q.put(ShmBuf::copy_from_slice(&[]).unwrap()).unwrap();
    assert_eq!(join(&p), 0);
}

/// Every place in this process that keeps a file with inode `ino` alive: open descriptors and
/// mappings.
fn holders(ino: u64) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.ino() == ino) {
            found.push(format!("fd {:?}", entry.file_name()));
        }
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        if line.split_whitespace().nth(4) == Some(&ino.to_string()) && line.contains("memfd:") {
            found.push(format!("mapping {line}"));
        }
    }
    found
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn hold_forever(conn: Connection) {
    let buf: ShmBuf = conn.recv().unwrap();
    assert!(intact(9, &buf));
    conn.send(&buf.len()).unwrap();
    loop {
        std::thread::park();
    }
}

/// A receiver SIGKILLed while it holds a 64 MiB buffer: its hold goes with it (the sender's
/// next buffer of that size reuses the same memory), and once the sender lets go of what it
/// keeps for reuse, no descriptor or mapping of the buffer is left in the sender, whose
/// descriptor count is back where it was.
fn killed_receiver_leaks_nothing(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    let p = Process::new(hold_forever, (theirs,))
        .start_method(method)
        .start()
        .unwrap();
    ShmBuf::release_unused();
    let before = open_fds();
    let buf = patterned(9, 64 << 20);
    let ino = buf.inode();
    mine.send(&buf).unwrap();
    drop(buf);
    assert_eq!(recv::<usize>(&mine), 64 << 20);
    let other = ShmBufMut::new(64 << 20).unwrap().freeze();
    assert_ne!(
        other.inode(),
        ino,
        "memory a live receiver holds was reused"
    );
    drop(other);
    p.kill().unwrap();
    assert_eq!(join(&p), -9);
    let again = ShmBufMut::new(64 << 20).unwrap().freeze();
    assert!(
        again.iter().all(|&b| b == 0),
        "a reused buffer starts zeroed"
    );
    let reused = again.inode();
    drop(again);
    assert!(
        reused == ino || holders(ino).is_empty(),
        "the dead receiver still holds it"
    );
    ShmBuf::release_unused();
    assert_eq!(holders(ino), Vec::<String>::new());
    assert_eq!(open_fds(), before);
}

fn hold_until_told(conn: Connection) {
    let buf: ShmBuf = conn.recv().unwrap();
    conn.send(&buf.inode()).unwrap();
    let () = conn.recv().unwrap();
    assert!(
        intact(5, &buf),
        "the bytes changed while this process held them"
    );
    drop(buf);
    conn.send(&()).unwrap();
    let () = conn.recv().unwrap();
}

/// Memory is never reused while a handle to it exists in another process or in transit; it is
/// reused once every handle is gone.
fn no_reuse_while_held(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    let p = Process::new(hold_until_told, (theirs,))
        .start_method(method)
        .start()
        .unwrap();
    let buf = patterned(5, 1 << 20);
    let ino = buf.inode();
    mine.send(&buf).unwrap(); // in transit until the child takes it
    drop(buf);
    let mut others: Vec<ShmBuf> = (0..3).map(|i| patterned(100 + i, 1 << 20)).collect();
    assert!(
        others.iter().all(|b| b.inode() != ino),
        "reused while in transit"
    );
    assert_eq!(recv::<u64>(&mine), ino);
    others.clear();
    others.extend((0..3).map(|i| patterned(200 + i, 1 << 20)));
    assert!(others.iter().all(|b| b.inode() != ino), "reused while held");
    mine.send(&()).unwrap();
    let () = recv(&mine);
    others.clear();
    let found = (0..40)
        .map(|i| patterned(300 + i, 1 << 20))
        .any(|b| b.inode() == ino);
    assert!(found, "not reused once every handle was gone");
    mine.send(&()).unwrap();
    assert_eq!(join(&p), 0);
}

/// Buffers of this process's memory files still open or mapped here.
fn buffer_files_held() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if std::fs::read_link(entry.path())
            .is_ok_and(|l| l.to_string_lossy().contains("memfd:multiprocess-buf"))
        {
            found.push(format!("fd {:?}", entry.file_name()));
        }
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    found.extend(
        maps.lines()
            .filter(|l| l.contains("memfd:multiprocess-buf"))
            .map(String::from),
    );
    found
}

/// Puts `(seq, buffer made from seq)` for ever, buffers of 4 KiB to 1 MiB.
fn put_buffers(q: Queue<(u64, ShmBuf)>, first: u64, seed: u64, started: Event) {
    let mut rng = Rng::new(seed);
    for seq in first.. {
        let len = 4096 + (rng.next() % (1 << 20)) as usize;
        q.put((seq, patterned(seq, len))).unwrap();
        started.set();
    }
}

fn get_buffers(q: Queue<(u64, ShmBuf)>, started: Event) {
    loop {
        let (seq, buf) = q.get().unwrap();
        assert!(intact(seq, &buf));
        started.set();
    }
}

fn kill_at(p: &multiprocess::ProcessHandle, micros: u64) {
    std::thread::sleep(std::time::Duration::from_micros(micros)); // the kill's random instant
    p.kill().unwrap();
    assert!(matches!(join(p), -9 | 0));
}

/// Producers and consumers of a queue of zero-copy buffers SIGKILLed at random instants (so
/// between sending a buffer's descriptor and publishing its record, or between taking a record
/// and dropping its descriptor): every buffer that arrives is the one its record names, whole;
/// the queue keeps working; and once the queue is dropped, nothing of any buffer is left here.
fn killed_queue_ends(method: StartMethod) {
    let mut rng = Rng::new(seed());
    let q = Queue::<(u64, ShmBuf)>::bounded(4).unwrap();
    for round in 0..8u64 {
        let first = round << 32;
        let (produced, consumed) = (Event::new().unwrap(), Event::new().unwrap());
        let producer = Process::new(
            put_buffers,
            (q.clone(), first, rng.next(), produced.clone()),
        )
        .start_method(method)
        .start()
        .unwrap();
        let consumer = Process::new(get_buffers, (q.clone(), consumed.clone()))
            .start_method(method)
            .start()
            .unwrap();
        assert!(
            produced.wait_timeout(DEADLINE).unwrap() && consumed.wait_timeout(DEADLINE).unwrap()
        );
        let (a, b) = (rng.next() % 10_000, rng.next() % 10_000);
        let killer = std::thread::spawn(move || kill_at(&consumer, b));
        kill_at(&producer, a);
        killer.join().unwrap();
        let mut last = None;
        while let Ok((seq, buf)) = q.get_nowait() {
            assert!(
                intact(seq, &buf),
                "round {round}: buffer {seq} is not its own"
            );
            assert!(
                seq >= first && !matches!(last, Some(l) if seq <= l),
                "round {round}: order"
            );
            last = Some(seq);
        }
        q.put((7, patterned(7, 5000))).unwrap();
        let (seq, buf) = q.get_timeout(DEADLINE).unwrap();
        assert!(
            seq == 7 && intact(7, &buf),
            "round {round}: the queue broke"
        );
    }
    drop(q);
    ShmBuf::release_unused();
    assert_eq!(buffer_files_held(), Vec::<String>::new());
}

per_method!(
    through_a_pipe,
    as_arguments,
    through_a_pool,
    through_a_queue,
    killed_receiver_leaks_nothing,
    no_reuse_while_held,
    killed_queue_ends,
);

/// The bytes of a frozen buffer are final: the kernel refuses a writable mapping of them.
#[test]
fn frozen_means_read_only_for_the_kernel() {
    let buf = patterned(1, 8192);
    let fd = format!("/proc/self/fd/{}", {
        // Find the buffer's descriptor by its inode.
        let ino = buf.inode();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .find(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.ino() == ino))
            .unwrap()
            .file_name()
            .into_string()
            .unwrap()
    });
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&fd)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
}
