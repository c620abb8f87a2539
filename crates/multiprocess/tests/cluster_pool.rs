//! The cluster pool against a real `redis-server` and real node processes: the local pool's
//! results and callbacks, its failures (panic, abort, time limit), and who may run a task
//! (build, key, password, TLS, tampered entries).
multiprocess::init_on_load!();

mod cluster_common;

use std::sync::mpsc;
use std::time::Duration;

use cluster_common::*;
use multiprocess::Error;

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[test]
fn results_equal_the_local_pool() {
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).start();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let local = multiprocess::Pool::new(2).unwrap();

    assert_eq!(pool.apply(square, (7,)).unwrap(), 49);
    assert_eq!(
        pool.map(square, 0..50).unwrap(),
        local.map(square, 0..50).unwrap()
    );
    assert_eq!(
        pool.map_chunked(square, 0..50, 7).unwrap(),
        local.map_chunked(square, 0..50, 7).unwrap()
    );
    let pairs: Vec<(u64, u64)> = (0..30).map(|i| (i, 2 * i)).collect();
    assert_eq!(
        pool.starmap(add, pairs.clone()).unwrap(),
        local.starmap(add, pairs).unwrap()
    );
    let ordered: Vec<u64> = pool.imap(square, 0..40, 3).map(Result::unwrap).collect();
    assert_eq!(
        ordered,
        local
            .imap(square, 0..40, 3)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    );
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..40, 1)
        .map(Result::unwrap)
        .collect();
    unordered.sort();
    assert_eq!(unordered, ordered);
    assert_eq!(
        pool.map(square, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
    pool.close();
    pool.join().unwrap();
}

fn fails(x: u64) -> u64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

fn abort() -> u64 {
    std::process::abort()
}

/// Spins (real work, not a wait) until the file `path` exists, at most a minute.
fn hold(started: String, release: String) -> u32 {
    std::fs::write(&started, b"").unwrap();
    let start = std::time::Instant::now();
    while !std::path::Path::new(&release).exists() && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::process::id()
}

fn executable() -> String {
    std::env::current_exe().unwrap().display().to_string()
}

#[test]
fn callbacks_panics_crashes_and_time_limits_behave_as_locally() {
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).start();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();

    // Callbacks: once each, before the result is ready.
    let (tx, rx) = mpsc::channel();
    let (etx, erx) = mpsc::channel();
    let r = pool
        .apply_async_with(
            square,
            (9,),
            move |v| tx.send(v).unwrap(),
            move |e| etx.send(e.to_string()).unwrap(),
        )
        .unwrap();
    assert_eq!(r.get().unwrap(), 81);
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), 81);
    let (etx, erx2) = mpsc::channel();
    let r = pool
        .apply_async_with(
            fails,
            (3,),
            |_| panic!("not called"),
            move |e| etx.send(e.to_string()).unwrap(),
        )
        .unwrap();
    assert!(matches!(r.get(), Err(Error::Panic { .. })));
    assert!(erx2
        .recv_timeout(DEADLINE)
        .unwrap()
        .contains("three is not allowed"));
    assert!(erx.try_recv().is_err());
    let (tx, rx) = mpsc::channel();
    let all = pool
        .map_async_with(
            square,
            0..10,
            3,
            move |v| tx.send(v).unwrap(),
            |_| panic!("no error"),
        )
        .unwrap();
    assert_eq!(all.get().unwrap(), (0..10).map(square).collect::<Vec<_>>());
    assert_eq!(
        rx.recv_timeout(DEADLINE).unwrap(),
        (0..10).map(square).collect::<Vec<_>>()
    );

    // A panic is the task's error; the map fails with it.
    match pool.map(fails, 0..5) {
        Err(Error::Panic { message, .. }) => assert_eq!(message, "three is not allowed"),
        other => panic!("{other:?}"),
    }
    // abort() in the worker: WorkerLost with SIGABRT; the node replaces the worker.
    assert!(matches!(
        pool.apply(abort, ()),
        Err(Error::WorkerLost { exitcode: -6 })
    ));
    assert_eq!(pool.apply(square, (4,)).unwrap(), 16);
    // A time limit kills the task's worker.
    let dir = TempDir::new("limit");
    let started = dir.path().join("started").display().to_string();
    let never = dir.path().join("never").display().to_string();
    let r = pool
        .apply_async_timeout(hold, (started, never), Duration::from_millis(300))
        .unwrap();
    assert!(matches!(r.get_timeout(DEADLINE), Err(Error::TimeLimit)));
    assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
    // The pool's own limit holds for every task, a map's too.
    let limited = builder(&redis.url())
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = dir.path().join("started-2").display().to_string();
    let never = dir.path().join("never").display().to_string();
    assert!(matches!(
        limited.starmap(hold, [(started, never)]),
        Err(Error::TimeLimit)
    ));
    assert_eq!(limited.map(square, 0..3).unwrap(), vec![0, 1, 4]);
}

#[test]
fn a_local_handle_is_refused_at_submit() {
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).start();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    fn size(q: multiprocess::Queue<u8>) -> usize {
        q.qsize()
    }
    let q = multiprocess::Queue::<u8>::new().unwrap();
    match pool.apply_async(size, (q,)) {
        Err(Error::Encode(why)) => assert!(why.contains("local handle"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// A copy of this test binary with another build-id (one byte of the note changed): the same
/// code at the same offsets, so only the build check keeps its tasks apart.
fn other_build(dir: &std::path::Path, ours: &str) -> std::path::PathBuf {
    let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let id: Vec<u8> = (0..ours.len() / 2)
        .map(|i| u8::from_str_radix(&ours[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let at = bytes
        .windows(id.len())
        .position(|w| w == id.as_slice())
        .expect("the build-id is in the binary");
    bytes[at] ^= 0xff;
    let path = dir.join("other-build");
    std::fs::write(&path, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_node_of_another_build_never_gets_a_task() {
    let redis = Redis::start();
    let pool = pool(&redis.url());
    let dir = TempDir::new("build");
    let exe = other_build(dir.path(), pool.build_id());
    let _other = NodeSpec::new(&redis.url()).exe(exe.clone()).start();
    wait_for_live_nodes(&redis.url(), 1);
    match pool.apply(executable, ()) {
        Err(e @ Error::NoLiveNode { .. }) => {
            let text = e.to_string();
            assert!(text.contains(pool.build_id()), "{text}");
            assert!(text.contains("1 node runs build"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let _ours = NodeSpec::new(&redis.url()).start();
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let ran_by = pool.map(|()| executable(), vec![(); 40]).unwrap();
    let me = executable();
    assert!(ran_by.iter().all(|e| *e == me), "{ran_by:?}");
}

#[test]
fn a_wrong_key_or_password_is_refused() {
    let redis = Redis::start_with(RedisOptions {
        password: Some("s3cret".into()),
        ..Default::default()
    });
    // A node under another key: the client is told, not left waiting.
    let _node = NodeSpec::new(&redis.url())
        .key(b"another key, 16 bytes or more")
        .start();
    wait_for_live_nodes(&redis.url(), 1);
    let pool = pool(&redis.url());
    match pool.apply(square, (2,)) {
        Err(e @ Error::NoLiveNode { .. }) => {
            assert!(e.to_string().contains("another cluster key"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A wrong password: refused at once, for a client and for a node.
    let wrong = redis.url().replace("s3cret", "wrong");
    assert!(matches!(builder(&wrong).build(), Err(Error::Auth(_))));
    let mut node = NodeSpec::new(&wrong).start();
    assert!(!node.wait().success());
    assert!(
        node.stderr().contains("authentication failed"),
        "{}",
        node.stderr()
    );
}

#[test]
fn acl_users_and_tls_work() {
    let acl = Redis::start_with(RedisOptions {
        user: Some(("worker".into(), "pw-of-worker".into())),
        ..Default::default()
    });
    let _node = NodeSpec::new(&acl.url()).start();
    let pool = pool(&acl.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    assert_eq!(pool.map(square, 0..5).unwrap(), vec![0, 1, 4, 9, 16]);
    let status = multiprocess::cluster::status(&acl.url()).unwrap();
    assert_eq!((status.nodes.len(), status.streams.len()), (1, 1));
    let q: multiprocess::cluster::Queue<u8> =
        multiprocess::cluster::Queue::bounded(&acl.url(), "acl", 2).unwrap();
    q.put(&7).unwrap();
    assert_eq!(q.get().unwrap(), 7);
    // A wrong password of the user: refused.
    let wrong = acl.url().replace("pw-of-worker", "wrong");
    assert!(matches!(builder(&wrong).build(), Err(Error::Auth(_))));

    let tls = Redis::start_with(RedisOptions {
        tls: true,
        password: Some("tls-pw".into()),
        ..Default::default()
    });
    assert!(tls.url().starts_with("rediss://"));
    let mut spec = NodeSpec::new(&tls.url());
    spec.ca = Some(tls.ca_path());
    let _node = spec.start();
    let pool = builder(&tls.url())
        .tls_ca_pem(tls.ca_pem())
        .build()
        .unwrap();
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
    // Without the CA, the server's certificate is not trusted.
    assert!(builder(&tls.url()).build().is_err());
}

#[test]
fn a_tampered_or_forged_task_never_runs() {
    let redis = Redis::start();
    let node = NodeSpec::new(&redis.url()).processes(1).start();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let dir = TempDir::new("tamper");
    let p = |name: &str| dir.path().join(name).display().to_string();
    // The node's only worker is busy, so the next task waits in the stream.
    let held = pool
        .apply_async(hold, (p("started"), p("release")))
        .unwrap();
    wait_until("the hold task", || {
        std::path::Path::new(&p("started")).exists()
    });
    let victim = pool.apply_async(touch, (p("aaaa"),)).unwrap();

    // Someone with write access to Redis but without the key alters the waiting task (to touch
    // another file) and adds a forged one.
    let mut admin = redis.admin();
    let streams: Vec<String> = redis::cmd("KEYS")
        .arg("mp:tasks:*")
        .query(&mut admin)
        .unwrap();
    let stream = &streams[0];
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(&mut admin)
        .unwrap();
    let entry = entries.ids.last().unwrap();
    let field = |k: &str| -> Vec<u8> { entry.get(k).unwrap() };
    let altered = {
        let t = field("t");
        let at = t.windows(4).position(|w| w == b"aaaa").unwrap();
        let mut t = t.clone();
        t[at..at + 4].copy_from_slice(b"bbbb");
        t
    };
    let _: i64 = redis::cmd("XDEL")
        .arg(stream)
        .arg(&entry.id)
        .query(&mut admin)
        .unwrap();
    let zero = b"0".to_vec();
    let altered = [
        ("c", field("c")),
        ("s", field("s")),
        ("d", zero.clone()),
        ("t", altered),
    ];
    forge_entry(
        &mut admin,
        stream,
        &[&altered[..], &[("m", field("m"))]].concat(),
    );
    let forged_body = b"\x96\xa1x\x01\x00\xc4\x00\x00\x00".to_vec();
    let forged = [
        ("c", field("c")),
        ("s", b"999".to_vec()),
        ("d", zero),
        ("t", forged_body),
    ];
    forge_entry(
        &mut admin,
        stream,
        &[&forged[..], &[("m", vec![0u8; 32])]].concat(),
    );
    std::fs::write(p("release"), b"").unwrap();
    held.get_timeout(DEADLINE).unwrap();

    match victim.get_timeout(DEADLINE) {
        Err(Error::Auth(why)) => assert!(why.contains("not run"), "{why}"),
        other => panic!("{other:?}"),
    }
    node.wait_for_line("refused entry");
    wait_until("both entries refused", || {
        node.stderr().matches("refused entry").count() == 2
    });
    // Neither the altered task nor the original one ran; the node still serves.
    assert!(pool.apply(touch, (p("cccc"),)).unwrap());
    assert!(!std::path::Path::new(&p("aaaa")).exists());
    assert!(!std::path::Path::new(&p("bbbb")).exists());
}

/// The `cluster_pool` example, as the README runs it: the same binary as a node (3 workers)
/// and as the client, which prints the seeds' lines.
#[test]
fn the_cluster_pool_example_prints_the_seeds_lines() {
    let exe = std::env::current_exe().unwrap();
    let examples = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples");
    let example = examples.join("cluster_pool");
    assert!(
        example.exists(),
        "{} was not built: run the whole suite, which builds the examples",
        example.display()
    );
    let redis = Redis::start();
    let mut spec = NodeSpec::new(&redis.url())
        .processes(3)
        .exe(example.clone());
    spec.key = b"a-long-secret-shared-by-every-machine".to_vec();
    let mut node = spec.start();
    let mut client = std::process::Command::new(&example)
        .env("MULTIPROCESS_BROKER", redis.url())
        .env(
            "MULTIPROCESS_CLUSTER_KEY",
            "a-long-secret-shared-by-every-machine",
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut client);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut client.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(out.starts_with("父进程 ("), "{out}");
    assert_eq!(out.matches("执行的任务是").count(), 10, "{out}");
    assert!(out.trim_end().ends_with("所有子进程结束....."), "{out}");
    assert!(node.terminate().success(), "{}", node.stderr());
}

#[test]
fn close_serves_iterators_begun_before_it_and_refuses_new_ones() {
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).start();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let mut before = pool.imap(square, 0..300, 1);
    assert_eq!(before.next().unwrap().unwrap(), 0);
    pool.close();
    assert!(matches!(pool.apply(square, (1,)), Err(Error::PoolClosed)));
    let mut after = pool.imap(square, 0..3, 1);
    assert!(matches!(after.next(), Some(Err(Error::PoolClosed))));
    drop(after);
    let rest: Vec<u64> = before.map(Result::unwrap).collect();
    assert_eq!(rest, (1..300).map(square).collect::<Vec<_>>());
    pool.join().unwrap();
}

/// A node started from code, with `serve` and the local pool's options, in a child process.
fn run_node(url: String) {
    let options = multiprocess::cluster::NodeOptions::new()
        .processes(1)
        .maxtasksperchild(1)
        .key(KEY.to_vec())
        .heartbeat_ttl(TTL);
    multiprocess::cluster::serve(&url, options).unwrap();
}

fn worker_pid() -> u32 {
    std::process::id()
}

#[test]
fn serve_takes_the_local_pool_options() {
    let redis = Redis::start();
    let node = multiprocess::Process::new(run_node, (redis.url(),))
        .start()
        .unwrap();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    // maxtasksperchild(1): every task in a fresh worker.
    let pids = pool.map(|()| worker_pid(), vec![(); 4]).unwrap();
    let distinct: std::collections::HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "{pids:?}");
    // SIGTERM: the node leaves and its process exits with 0.
    node.terminate().unwrap();
    assert_eq!(node.join_timeout(DEADLINE).unwrap(), Some(0));
}

#[test]
fn imap_reads_its_input_lazily_with_a_bounded_window() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).start();
    let window = 8;
    let pool = builder(&redis.url()).imap_window(window).build().unwrap();
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    // An endless input that counts what is taken from it.
    let taken = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&taken);
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let mut results = pool.imap(square, endless, 1);
    assert_eq!(
        taken.load(Ordering::SeqCst),
        0,
        "nothing is read before next()"
    );
    for i in 0..50u64 {
        assert_eq!(results.next().unwrap().unwrap(), i * i);
        let ahead = taken.load(Ordering::SeqCst) - (i as usize + 1);
        assert!(ahead <= window, "{ahead} items in flight, window {window}");
    }
    // The same bound for imap_unordered (chunks of 3: the window counts chunks).
    let taken = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&taken);
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let mut unordered = pool.imap_unordered(square, endless, 3);
    for got in 1..=60usize {
        unordered.next().unwrap().unwrap();
        let ahead = taken.load(Ordering::SeqCst) - got;
        assert!(
            ahead <= 3 * window,
            "{ahead} items in flight, window {window} chunks of 3"
        );
    }
}

/// A node started from code with no option set: each comes from the environment, as
/// `MULTIPROCESS_NODE` nodes take them; an option set in code wins.
fn run_node_from_env(url: String, processes_in_code: Option<usize>) {
    std::env::set_var(
        "MULTIPROCESS_CLUSTER_KEY",
        std::ffi::OsStr::new("the cluster tests' shared key"),
    );
    std::env::set_var("MULTIPROCESS_NODE_PROCESSES", "three");
    assert!(matches!(
        multiprocess::cluster::NodeOptions::from_env(),
        Err(Error::Broker(why)) if why.contains("MULTIPROCESS_NODE_PROCESSES")
    ));
    std::env::set_var("MULTIPROCESS_NODE_PROCESSES", "3");
    std::env::set_var("MULTIPROCESS_CLUSTER_TTL_MS", "20000");
    let mut options = multiprocess::cluster::NodeOptions::new();
    if let Some(n) = processes_in_code {
        options = options.processes(n);
    }
    multiprocess::cluster::serve(&url, options).unwrap();
}

#[test]
fn serve_takes_unset_options_from_the_environment() {
    let redis = Redis::start();
    let from_env = multiprocess::Process::new(run_node_from_env, (redis.url(), None))
        .start()
        .unwrap();
    let in_code = multiprocess::Process::new(run_node_from_env, (redis.url(), Some(1)))
        .start()
        .unwrap();
    wait_for_live_nodes(&redis.url(), 2);
    let status = multiprocess::cluster::status(&redis.url()).unwrap();
    let mut workers: Vec<usize> = status.nodes.iter().map(|n| n.processes).collect();
    workers.sort();
    assert_eq!(workers, vec![1, 3]);
    let mut admin = redis.admin();
    for n in &status.nodes {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("mp:node:{}", n.id))
            .query(&mut admin)
            .unwrap();
        // Above the default of 5 s: the environment's 20 s.
        assert!(5000 < ttl && ttl <= 20_000, "heartbeat TTL {ttl} ms");
    }
    let pool = pool(&redis.url());
    assert_eq!(pool.map(square, 0..6).unwrap(), vec![0, 1, 4, 9, 16, 25]);
    for node in [from_env, in_code] {
        node.terminate().unwrap();
        assert_eq!(node.join_timeout(DEADLINE).unwrap(), Some(0));
    }
}
