//! SCENARIOS.md section C (pipes and connections), under every start method.

mod common;

use std::time::{Duration, Instant};

use common::{join, recv, DEADLINE};
use multiprocess::{pipe, pipe_simplex, wait, Connection, Error, Process, StartMethod};
use serde_bytes::ByteBuf;

multiprocess::init_on_load!();

/// Echoes raw messages until an empty one, then closes its end.
fn echo(conn: Connection) {
    while let Ok(msg) = conn.recv_bytes() {
        if msg == b"stop" {
            break;
        }
        conn.send_bytes(&msg).unwrap();
    }
}

fn assert_took(t: Instant, min: Duration) {
    let took = t.elapsed();
    assert!(
        took + Duration::from_millis(10) >= min && took <= min + Duration::from_millis(250),
        "took {took:?}, expected about {min:?}"
    );
}

/// C01: values and bytes round-trip; `recv_bytes_into` fills the right slice or hands the whole
/// message back; `poll` waits as long as asked; 16 MiB round-trips; EOF once the child is gone.
fn c01_connection(method: StartMethod) {
    let (mine, theirs) = pipe().unwrap();
    // Daemonic: should an assertion below fail, the harness's exit stops the echo instead of
    // waiting for it (a failed timing check once left the test hanging until nextest's limit).
    let p = Process::new(echo, (theirs,))
        .start_method(method)
        .daemon(true)
        .start()
        .unwrap();

    let value = (vec![1.0, 2.25], None::<u8>);
    mine.send_bytes(&multiprocess::codec::encode(&value).unwrap())
        .unwrap();
    assert_eq!(
        multiprocess::codec::decode::<(Vec<f64>, Option<u8>)>(&recv_raw(&mine)).unwrap(),
        value
    );

    mine.send_bytes(b"hello").unwrap();
    let mut buf = [0u8; 16];
    assert!(mine.poll(DEADLINE).unwrap());
    assert_eq!(mine.recv_bytes_into(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    mine.send_bytes(b"world").unwrap();
    assert!(mine.poll(DEADLINE).unwrap());
    assert_eq!(mine.recv_bytes_into(&mut buf[8..]).unwrap(), 5);
    assert_eq!(&buf[8..13], b"world");
    mine.send_bytes(&[7u8; 32]).unwrap();
    assert!(mine.poll(DEADLINE).unwrap());
    match mine.recv_bytes_into(&mut buf) {
        Err(Error::BufferTooShort(whole)) => assert_eq!(whole, vec![7u8; 32]),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }

    let t = Instant::now();
    assert!(!mine.poll(Duration::ZERO).unwrap());
    assert_took(t, Duration::ZERO);
    let t = Instant::now();
    assert!(!mine.poll(Duration::from_millis(100)).unwrap());
    assert_took(t, Duration::from_millis(100));
    mine.send_bytes(b"x").unwrap();
    assert!(mine.poll(DEADLINE).unwrap());
    let t = Instant::now();
    assert!(mine.poll(Duration::from_millis(100)).unwrap());
    assert_took(t, Duration::ZERO);
    assert_eq!(recv_raw(&mine), b"x");

    let big = ByteBuf::from(vec![42u8; 16 << 20]);
    mine.send(&big).unwrap();
    assert_eq!(recv::<ByteBuf>(&mine), big);

    mine.send_bytes(b"stop").unwrap();
    assert_eq!(join(&p), 0);
    assert!(matches!(mine.recv_bytes(), Err(Error::Eof)));
    assert!(matches!(mine.recv::<u8>(), Err(Error::Eof)));
}

fn recv_raw(c: &Connection) -> Vec<u8> {
    assert!(c.poll(DEADLINE).unwrap(), "no message within {DEADLINE:?}");
    c.recv_bytes().unwrap()
}

/// C02: a one-way pipe has a read end and a write end, each refusing the other direction.
#[test]
fn c02_duplex_false() {
    let (reader, writer) = pipe_simplex().unwrap();
    writer.send(&1).unwrap();
    assert_eq!(reader.recv::<i32>().unwrap(), 1);
    assert!(reader.readable() && !reader.writable());
    assert!(writer.writable() && !writer.readable());
    assert!(matches!(reader.send(&1), Err(Error::ReadOnly)));
    assert!(matches!(writer.recv::<i32>(), Err(Error::WriteOnly)));
    assert!(matches!(writer.poll(Duration::ZERO), Err(Error::WriteOnly)));
}

/// C03: `send_bytes_range` slices by offset and size, and refuses ranges outside the buffer.
#[test]
fn c03_send_bytes_range() {
    let (a, b) = pipe().unwrap();
    let msg = b"abcdefghijklmnopqrstuvwxyz";
    a.send_bytes_range(msg, 0, None).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), msg);
    a.send_bytes_range(msg, 5, None).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), &msg[5..]);
    a.send_bytes_range(msg, 7, Some(8)).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), &msg[7..15]);
    a.send_bytes_range(msg, 26, None).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"");
    a.send_bytes_range(msg, 26, Some(0)).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"");
    assert!(matches!(
        a.send_bytes_range(msg, 27, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(a.send_bytes_range(msg, 10, Some(17)).is_err());
    assert!(a.send_bytes_range(msg, usize::MAX, Some(1)).is_err());
    assert!(a.send_bytes_range(msg, 1, Some(usize::MAX)).is_err());
    assert!(
        !b.poll(Duration::ZERO).unwrap(),
        "a refused range sent nothing"
    );
}

fn send_three(conn: Connection) {
    for m in [&b"a"[..], b"b", b"cd"] {
        conn.send_bytes(m).unwrap();
    }
}

fn poll_only(conn: Connection, done: Connection) {
    let ready = conn.poll(DEADLINE).unwrap();
    done.send(&ready).unwrap();
}

/// C04: an empty message is a message; messages are never merged; polling never consumes.
fn c04_poll(method: StartMethod) {
    let (a, b) = pipe().unwrap();
    a.send_bytes(b"").unwrap();
    assert!(b.poll(DEADLINE).unwrap());
    assert!(b.poll(Duration::ZERO).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"");

    let p = Process::new(send_three, (a.try_clone().unwrap(),))
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(join(&p), 0);
    for want in [&b"a"[..], b"b", b"cd"] {
        assert!(b.poll(DEADLINE).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), want);
    }

    a.send_bytes(b"whole message").unwrap();
    let (done_mine, done_theirs) = pipe().unwrap();
    let poller = Process::new(poll_only, (b.try_clone().unwrap(), done_theirs))
        .start_method(method)
        .start()
        .unwrap();
    assert!(recv::<bool>(&done_mine));
    assert_eq!(join(&poller), 0);
    assert_eq!(b.recv_bytes().unwrap(), b"whole message");
}

fn send_pairs(conn: Connection, slow: bool) {
    for i in 0..10u32 {
        if slow {
            let jitter = (std::process::id() as u64 * 7 + u64::from(i) * 13) % 20;
            std::thread::sleep(Duration::from_millis(jitter)); // uneven pace, not synchronisation
        }
        conn.send(&(i, std::process::id())).unwrap();
    }
}

/// C05: `wait` over several children's pipes collects every message until each reports EOF;
/// on idle pipes it times out; it names exactly the ready ones.
fn c05_wait(method: StartMethod) {
    for slow in [false, true] {
        let mut readers = Vec::new();
        let mut procs = Vec::new();
        for _ in 0..4 {
            let (r, w) = pipe_simplex().unwrap();
            procs.push(
                Process::new(send_pairs, (w, slow))
                    .start_method(method)
                    .start()
                    .unwrap(),
            );
            readers.push(r); // our copy of `w` was dropped with the Process: EOF comes
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while !readers.is_empty() {
            assert!(Instant::now() < deadline, "wait did not finish");
            for i in wait(&readers, Some(DEADLINE)).unwrap().into_iter().rev() {
                match readers[i].recv::<(u32, u32)>() {
                    Ok(pair) => got.push(pair),
                    Err(Error::Eof) => {
                        readers.remove(i);
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let mut want: Vec<(u32, u32)> = procs
            .iter()
            .flat_map(|p| (0..10).map(move |i| (i, p.pid())))
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
        for p in &procs {
            assert_eq!(join(p), 0);
        }
    }

    let (a, _a_peer) = pipe().unwrap();
    let (b, b_peer) = pipe().unwrap();
    let t = Instant::now();
    assert!(wait(&[&a, &b], Some(Duration::from_millis(500)))
        .unwrap()
        .is_empty());
    assert_took(t, Duration::from_millis(500));
    b_peer.send(&None::<u8>).unwrap();
    assert_eq!(wait(&[&a, &b], Some(DEADLINE)).unwrap(), vec![1]);
}

/// A sender blocked on a full pipe is told when the reader goes away, instead of waiting for
/// ever; a full pipe makes a sender wait (back-pressure) rather than grow without bound.
#[test]
fn full_pipe_waits_then_breaks_when_the_reader_closes() {
    let (r, w) = pipe_simplex().unwrap();
    for i in 0..multiprocess::PIPE_CAPACITY {
        w.send(&(i as u32)).unwrap();
    }
    // The next send waits for room, which one receive makes.
    let sender = std::thread::spawn(move || w.send(&0u32));
    assert_eq!(r.recv::<u32>().unwrap(), 0);
    sender.join().unwrap().unwrap();
    assert_eq!(r.recv::<u32>().unwrap(), 1);
    let (r, w) = pipe_simplex().unwrap();
    for i in 0..multiprocess::PIPE_CAPACITY {
        w.send(&(i as u32)).unwrap();
    }
    drop(r);
    let err = w.send(&0u32).unwrap_err();
    assert!(
        matches!(err, Error::Io(ref e) if e.kind() == std::io::ErrorKind::BrokenPipe),
        "{err:?}"
    );
}

/// A worker already running when handles are sent to it: it uses each queue and connection it
/// receives over its pipe.
fn handle_worker(tasks: Connection) {
    while let Ok(Some((q, reply))) = tasks.recv::<Option<(multiprocess::Queue<u32>, Connection)>>()
    {
        let x = q.get().unwrap();
        q.put(x * 2).unwrap();
        reply.send(&"done").unwrap();
    }
}

/// Handles (queues, connections) sent in messages work in a process that was already running.
fn handles_to_a_running_process(method: StartMethod) {
    let (tasks, theirs) = pipe().unwrap();
    let worker = Process::new(handle_worker, (theirs,))
        .start_method(method)
        .start()
        .unwrap();
    for i in 0..5u32 {
        let q = multiprocess::Queue::<u32>::new().unwrap();
        q.put(i).unwrap();
        let (reply_mine, reply_theirs) = pipe().unwrap();
        tasks.send(&Some((q.clone(), reply_theirs))).unwrap();
        assert_eq!(recv::<String>(&reply_mine), "done");
        assert_eq!(q.get_timeout(DEADLINE).unwrap(), i * 2);
    }
    // Plain bytes after handle-carrying messages still read as plain bytes.
    tasks
        .send(&None::<(multiprocess::Queue<u32>, Connection)>)
        .unwrap();
    assert_eq!(join(&worker), 0);
}

fn send_forever(conn: Connection) {
    for i in 0u64.. {
        // Some messages large, so that the kill often lands mid-copy.
        let len = if i % 7 == 0 { 256 << 10 } else { 64 };
        conn.send(&(i, ByteBuf::from(vec![(i % 251) as u8; len])))
            .unwrap();
    }
}

/// A sender killed at random instants: the receiver gets whole messages in order, then EOF.
fn killed_sender(method: StartMethod) {
    for round in 0..10u64 {
        let (r, w) = pipe_simplex().unwrap();
        let p = Process::new(send_forever, (w,))
            .start_method(method)
            .start()
            .unwrap();
        // The instant of the kill, varied per round (not a synchronisation).
        std::thread::sleep(Duration::from_micros(1_000 + round * 1_700));
        p.kill().unwrap();
        assert_eq!(join(&p), -libc::SIGKILL);
        let mut next = 0;
        loop {
            assert!(r.poll(DEADLINE).unwrap(), "round {round}: no EOF");
            match r.recv::<(u64, ByteBuf)>() {
                Ok((i, payload)) => {
                    assert_eq!(i, next, "round {round}: out of order");
                    assert!(
                        payload.iter().all(|&b| b == (i % 251) as u8),
                        "torn message"
                    );
                    next += 1;
                }
                Err(Error::Eof) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
    }
}

per_method!(
    c01_connection,
    c04_poll,
    c05_wait,
    killed_sender,
    handles_to_a_running_process
);
