//! The cluster's crash guarantees against a real `redis-server` and real node processes: a
//! node killed, paused past its heartbeat, or stopped with SIGTERM; the broker killed and
//! restarted mid-run; a client killed with tasks queued; and no key left behind.
multiprocess::init_on_load!();

mod cluster_common;

use std::path::Path;
use std::time::Duration;

use cluster_common::*;
use multiprocess::Error;

/// Marks that it started (writing the pid of the node it runs on), then waits until
/// `release` exists (at most the deadline).
fn hold(started: String, release: String) -> u32 {
    let tmp = format!("{started}.tmp");
    std::fs::write(&tmp, multiprocess::parent_pid().to_string()).unwrap();
    std::fs::rename(&tmp, &started).unwrap();
    let start = std::time::Instant::now();
    while !Path::new(&release).exists() && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::process::id()
}

/// Records one run of task `i` in `dir`: `run-i`, or `dup-i` if it had run before.
fn run_once(dir: String, i: u64) -> u64 {
    let open = |name: String| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(Path::new(&dir).join(name))
            .is_ok()
    };
    if !open(format!("run-{i}")) {
        open(format!("dup-{i}"));
    }
    // A little real work, so that a map of a few hundred is still running when the broker dies.
    let mut x = i;
    for _ in 0..200_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    std::hint::black_box(x);
    i * 2
}

fn count(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(prefix))
        })
        .count()
}

fn square(x: u64) -> u64 {
    x * x
}

/// Starts `hold` on a node and waits until it runs: its result, and the release file.
fn start_held(
    pool: &multiprocess::cluster::Pool,
    dir: &Path,
) -> (multiprocess::AsyncResult<u32>, String) {
    let p = |name: &str| dir.join(name).display().to_string();
    let r = pool
        .apply_async(hold, (p("started"), p("release")))
        .unwrap();
    wait_until("the task to start", || dir.join("started").exists());
    (r, p("release"))
}

#[test]
fn a_killed_node_fails_its_task_with_node_lost_or_redelivers_it() {
    let redis = Redis::start();
    let mut first = NodeSpec::new(&redis.url()).processes(1).start();
    let dir = TempDir::new("lost");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let (r, _) = start_held(&pool, dir.path());
    let killed = first.pid();
    first.kill();
    match r.get_timeout(DEADLINE) {
        Err(Error::NodeLost { node }) => assert!(node.contains(&format!(":{killed}:")), "{node}"),
        other => panic!("{other:?}"),
    }

    // Asked for one redelivery: the task runs again on another node.
    let second = NodeSpec::new(&redis.url()).processes(1).start();
    let third = NodeSpec::new(&redis.url()).processes(1).start();
    let again = builder(&redis.url()).redeliver(1).build().unwrap();
    again.wait_for_nodes(2, DEADLINE).unwrap();
    std::fs::remove_file(p("started")).unwrap();
    let r = again
        .apply_async(hold, (p("started"), p("release")))
        .unwrap();
    wait_until("the task to start", || Path::new(&p("started")).exists());
    // Kill the node that runs it: the other one takes it again.
    let runs_on: u32 = std::fs::read_to_string(p("started"))
        .unwrap()
        .parse()
        .unwrap();
    std::fs::remove_file(p("started")).unwrap();
    let (mut victim, survivor) = if runs_on == second.pid() {
        (second, third)
    } else {
        (third, second)
    };
    assert_eq!(victim.pid(), runs_on);
    victim.kill();
    wait_until("the redelivered task to start", || {
        Path::new(&p("started")).exists()
    });
    std::fs::write(p("release"), b"").unwrap();
    r.get_timeout(DEADLINE).unwrap();
    let ran_again_on: u32 = std::fs::read_to_string(p("started"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ran_again_on, survivor.pid());
}

#[test]
fn a_paused_node_has_its_late_result_discarded() {
    let redis = Redis::start();
    let node = NodeSpec::new(&redis.url()).processes(1).start();
    let dir = TempDir::new("pause");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let (r, _) = start_held(&pool, dir.path());
    signal(node.pid(), libc::SIGSTOP);
    // Past its heartbeat, the client (the only live party) settles the task.
    match r.get_timeout(DEADLINE) {
        Err(Error::NodeLost { node: id }) => assert!(id.contains(&format!(":{}:", node.pid()))),
        other => panic!("{other:?}"),
    }
    // The worker finishes while the node is paused; the node comes back with its result.
    std::fs::write(p("release"), b"").unwrap();
    signal(node.pid(), libc::SIGCONT);
    node.wait_for_line("discarded the late result");
    assert!(
        matches!(r.get(), Err(Error::NodeLost { .. })),
        "one outcome, kept"
    );
    // The node serves again once it heartbeats.
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
}

#[test]
fn sigterm_lets_running_tasks_finish() {
    let redis = Redis::start();
    let mut node = NodeSpec::new(&redis.url()).processes(1).start();
    let dir = TempDir::new("term");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let (r, _) = start_held(&pool, dir.path());
    signal(node.pid(), libc::SIGTERM);
    node.wait_for_line("taking no new task");
    // It takes nothing new: the next task waits in the stream.
    let next = pool.apply_async(square, (6,)).unwrap();
    std::fs::write(p("release"), b"").unwrap();
    assert_ne!(r.get_timeout(DEADLINE).unwrap(), 0);
    assert!(node.wait().success(), "{}", node.stderr());
    assert!(node.stderr().contains("left the cluster"));
    assert!(multiprocess::cluster::status(&redis.url())
        .unwrap()
        .nodes
        .is_empty());
    // The last node of the build is gone: the waiting task fails instead of waiting for ever.
    match next.get_timeout(DEADLINE) {
        Err(e @ Error::NoLiveNode { .. }) => assert!(e.to_string().contains("no node is live")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        pool.apply(square, (1,)),
        Err(Error::NoLiveNode { .. })
    ));
    let _another = NodeSpec::new(&redis.url()).start();
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    assert_eq!(pool.apply(square, (6,)).unwrap(), 36);
}

#[test]
fn a_broker_restart_mid_map_loses_and_repeats_nothing() {
    let mut redis = Redis::start_with(RedisOptions {
        aof: true,
        ..Default::default()
    });
    // Heartbeats that outlive a restart on a loaded machine: nobody is taken for lost.
    let ttl = Duration::from_secs(10);
    let mut spec = NodeSpec::new(&redis.url()).processes(2);
    spec.ttl = ttl;
    let _node = spec.start();
    let pool = builder(&redis.url()).heartbeat_ttl(ttl).build().unwrap();
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let dir = TempDir::new("restart");
    let d = dir.path().display().to_string();
    let n = 400u64;
    let all = pool
        .starmap_async(run_once, (0..n).map(|i| (d.clone(), i)), 1)
        .unwrap();
    // Killed twice: at a quarter and at half of the tasks.
    let mut done_at_kill = 0;
    for part in [4, 2] {
        wait_until("part of the tasks", || {
            count(dir.path(), "run-") >= n as usize / part
        });
        redis.kill();
        done_at_kill = count(dir.path(), "run-");
        redis.launch();
    }
    let results = all.get_timeout(DEADLINE).unwrap();
    assert!(done_at_kill < n as usize, "the broker died mid-map");
    assert_eq!(results, (0..n).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(count(dir.path(), "run-"), n as usize);
    assert_eq!(count(dir.path(), "dup-"), 0, "no task ran twice");
}

#[test]
fn a_dead_client_leaves_nothing_behind() {
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).processes(1).start();
    let mut admin = redis.admin();
    wait_for_live_nodes(&redis.url(), 1);
    let baseline = dbsize(&mut admin);
    let dir = TempDir::new("client");
    let d = dir.path().display().to_string();

    // A client in another process: it keeps the node busy, queues 50 tasks, and is killed.
    fn client(url: String, dir: String) {
        let pool = cluster_common::pool(&url);
        pool.wait_for_nodes(1, DEADLINE).unwrap();
        let p = |name: &str| format!("{dir}/{name}");
        let _held = pool
            .apply_async(hold, (p("started"), p("release")))
            .unwrap();
        let _queued = pool
            .starmap_async(run_once, (0..50).map(|i| (dir.clone(), i)), 1)
            .unwrap();
        std::fs::write(p("submitted"), b"").unwrap();
        loop {
            std::thread::park();
        }
    }
    let child = multiprocess::Process::new(client, (redis.url(), d.clone()))
        .start()
        .unwrap();
    wait_until("the client to submit", || {
        dir.path().join("submitted").exists()
    });
    child.kill().unwrap();
    child.join().unwrap();
    wait_until("the client's heartbeat to expire", || {
        let clients: Vec<String> = redis::cmd("KEYS")
            .arg("mp:client:*")
            .query(&mut admin)
            .unwrap();
        clients.is_empty()
    });
    std::fs::write(dir.path().join("release"), b"").unwrap();
    // Its queued tasks are dropped unrun, and every key it made goes away.
    wait_until("the queued tasks to be dropped", || {
        let status = multiprocess::cluster::status(&redis.url()).unwrap();
        (status.streams[0].backlog, status.streams[0].pending) == (0, 0)
    });
    wait_until("the keys back to the baseline", || {
        dbsize(&mut admin) == baseline
    });
    assert_eq!(count(dir.path(), "run-"), 0, "no task of a dead client ran");
}

fn nothing(x: u32) -> u32 {
    x
}

#[test]
fn the_key_count_returns_to_its_baseline_after_100k_tasks() {
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).processes(6).start();
    let mut admin = redis.admin();
    wait_for_live_nodes(&redis.url(), 1);
    let baseline = dbsize(&mut admin);
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let n = 100_000u32;
    let started = std::time::Instant::now();
    let mut total = 0u64;
    for r in pool.imap_unordered(nothing, 0..n, 1) {
        total += r.unwrap() as u64;
    }
    eprintln!("100k tasks in {:?}", started.elapsed());
    assert_eq!(total, (0..n as u64).sum::<u64>());
    let status = multiprocess::cluster::status(&redis.url()).unwrap();
    assert_eq!(
        (status.streams[0].backlog, status.streams[0].pending),
        (0, 0)
    );
    // Every finished task left the client's entry index, so the index is gone too.
    let indexes: Vec<String> = redis::cmd("KEYS")
        .arg("mp:entries:*")
        .query(&mut admin)
        .unwrap();
    assert_eq!(indexes, Vec::<String>::new());
    pool.close();
    pool.join().unwrap();
    drop(pool);
    assert_eq!(dbsize(&mut admin), baseline);
}

#[test]
fn a_pool_dropped_while_the_broker_is_down_returns_soon() {
    let mut redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).start();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    assert_eq!(pool.apply(square, (2,)).unwrap(), 4);
    redis.kill();
    let start = std::time::Instant::now();
    drop(pool);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_broker_that_lost_its_data_is_served_again() {
    let mut redis = Redis::start(); // no append-only file: a restart forgets everything
    let node = NodeSpec::new(&redis.url()).start();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    assert_eq!(pool.apply(square, (2,)).unwrap(), 4);
    redis.kill();
    redis.launch();
    // The node makes its stream and group again; a new client is served.
    let again = cluster_common::pool(&redis.url());
    again.wait_for_nodes(1, DEADLINE).unwrap();
    assert_eq!(again.apply(square, (3,)).unwrap(), 9);
    assert!(
        !node.stderr().contains("multiprocess node: "),
        "{}",
        node.stderr()
    );
}

/// The client's id, from its heartbeat key (the only client of the server).
fn only_client_key(admin: &mut redis::Connection) -> String {
    let clients: Vec<String> = redis::cmd("KEYS").arg("mp:client:*").query(admin).unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    clients[0].clone()
}

#[test]
fn a_forgotten_client_fails_its_tasks_and_takes_no_new_one() {
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).processes(1).start();
    let mut admin = redis.admin();
    wait_for_live_nodes(&redis.url(), 1);
    let baseline = dbsize(&mut admin);
    let dir = TempDir::new("forgotten");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    // The node's only worker runs one task; the next one waits in the stream.
    let (running, release) = start_held(&pool, dir.path());
    let waiting = pool.apply_async(touch, (p("waiting"),)).unwrap();
    // The client's heartbeat expires, as it does when the client is cut off for a TTL.
    let client_key = only_client_key(&mut admin);
    let _: i64 = redis::cmd("DEL")
        .arg(&client_key)
        .query(&mut admin)
        .unwrap();

    // Each task has one outcome, which says what became of it; the waiting one never runs.
    match waiting.get_timeout(DEADLINE) {
        Err(Error::Broker(why)) => assert!(why.contains("dropped before it ran"), "{why}"),
        other => panic!("{other:?}"),
    }
    match running.get_timeout(DEADLINE) {
        Err(Error::Broker(why)) => assert!(why.contains("may have run"), "{why}"),
        other => panic!("{other:?}"),
    }
    match pool.apply(square, (2,)) {
        Err(Error::Broker(why)) => assert!(why.contains("forgotten"), "{why}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(&release, b"").unwrap();
    // The node is free again and serves others; the forgotten client left nothing behind.
    let other = cluster_common::pool(&redis.url());
    assert_eq!(other.apply(square, (3,)).unwrap(), 9);
    drop(other);
    pool.close();
    pool.join().unwrap();
    drop(pool);
    wait_until("the keys back to the baseline", || {
        dbsize(&mut admin) == baseline
    });
    assert!(!Path::new(&p("waiting")).exists(), "the dropped task ran");
}

#[test]
fn a_redelivered_task_with_no_node_left_fails_with_no_live_node() {
    let redis = Redis::start();
    let mut node = NodeSpec::new(&redis.url()).processes(1).start();
    let dir = TempDir::new("redeliver-none");
    let pool = builder(&redis.url()).redeliver(1).build().unwrap();
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let (r, _) = start_held(&pool, dir.path());
    node.kill();
    // Handed out again (a new entry), but no node is left to take it: the client says so.
    match r.get_timeout(DEADLINE) {
        Err(e @ Error::NoLiveNode { .. }) => assert!(e.to_string().contains("no node is live")),
        other => panic!("{other:?}"),
    }
    // The redelivered entry was deleted, and with it the stream no node serves any more.
    let status = multiprocess::cluster::status(&redis.url()).unwrap();
    assert_eq!(status.streams, vec![]);
    assert_eq!(status.lost, Vec::<String>::new());
}

#[test]
fn a_node_that_leaves_leaves_no_key_behind() {
    let redis = Redis::start();
    let mut admin = redis.admin();
    assert_eq!(dbsize(&mut admin), 0);
    let mut node = NodeSpec::new(&redis.url()).start();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    assert_eq!(pool.map(square, 0..10).unwrap().len(), 10);
    pool.close();
    pool.join().unwrap();
    drop(pool);
    assert!(node.terminate().success(), "{}", node.stderr());
    let left: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut admin).unwrap();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "no stream, node table or heartbeat"
    );
}

#[test]
fn terminate_fails_what_is_unfinished_and_no_waiting_task_runs() {
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).processes(1).start();
    let mut admin = redis.admin();
    wait_for_live_nodes(&redis.url(), 1);
    let baseline = dbsize(&mut admin);
    let dir = TempDir::new("terminate");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let (running, release) = start_held(&pool, dir.path());
    let queued: Vec<_> = (0..3)
        .map(|i| {
            pool.apply_async(touch, (p(&format!("queued-{i}")),))
                .unwrap()
        })
        .collect();
    // No prefetch: the node holds only the task its one worker runs.
    let status = multiprocess::cluster::status(&redis.url()).unwrap();
    assert_eq!(
        (status.streams[0].backlog, status.streams[0].pending),
        (3, 1)
    );
    pool.terminate();
    assert!(matches!(running.get(), Err(Error::PoolTerminated)));
    for r in queued {
        assert!(matches!(r.get(), Err(Error::PoolTerminated)));
    }
    assert!(matches!(
        pool.apply(square, (1,)),
        Err(Error::PoolTerminated)
    ));
    std::fs::write(&release, b"").unwrap();
    wait_until("the running task to end", || {
        let status = multiprocess::cluster::status(&redis.url()).unwrap();
        (status.streams[0].backlog, status.streams[0].pending) == (0, 0)
    });
    // The node is idle and serves others; nothing of the terminated pool ran or stayed.
    let other = cluster_common::pool(&redis.url());
    assert_eq!(other.apply(square, (3,)).unwrap(), 9);
    drop(other);
    assert_eq!(count(dir.path(), "queued-"), 0, "a waiting task ran");
    drop(pool);
    wait_until("the keys back to the baseline", || {
        dbsize(&mut admin) == baseline
    });
}

#[test]
fn a_client_finds_its_waiting_tasks_without_reading_the_others() {
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).processes(1).start();
    let mut admin = redis.admin();
    let dir = TempDir::new("index");
    let busy = pool(&redis.url());
    busy.wait_for_nodes(1, DEADLINE).unwrap();
    // Another client's backlog waits in the stream, behind the one task the node runs.
    let (held, release) = start_held(&busy, dir.path());
    let n = 2000u64;
    let backlog = busy.map_async(square, 0..n, 1).unwrap();
    let mine = pool(&redis.url());
    let waiting = mine
        .apply_async(touch, (dir.path().join("mine").display().to_string(),))
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut admin)
        .unwrap();
    // Terminating deletes this client's waiting entry, found through its index: the stream
    // (the other client's 2000 entries) is never read.
    mine.terminate();
    assert!(matches!(waiting.get(), Err(Error::PoolTerminated)));
    let status = multiprocess::cluster::status(&redis.url()).unwrap();
    assert_eq!(status.streams[0].backlog, n as usize);
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut admin)
        .unwrap();
    assert!(!stats.contains("cmdstat_xrange:"), "{stats}");
    std::fs::write(&release, b"").unwrap();
    assert_ne!(held.get_timeout(DEADLINE).unwrap(), 0);
    let squares: Vec<u64> = (0..n).map(|x| x * x).collect();
    assert_eq!(backlog.get_timeout(DEADLINE).unwrap(), squares);
    assert!(!dir.path().join("mine").exists(), "a terminated task ran");
}

#[test]
fn a_broker_outage_longer_than_the_ttl_fails_the_client_cleanly() {
    let mut redis = Redis::start_with(RedisOptions {
        aof: true,
        ..Default::default()
    });
    let _node = NodeSpec::new(&redis.url()).processes(1).start();
    let dir = TempDir::new("outage");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let (running, release) = start_held(&pool, dir.path());
    let waiting = pool.apply_async(touch, (p("waiting"),)).unwrap();
    redis.kill();
    // The outage itself (not a wait for an event): every heartbeat expires meanwhile.
    std::thread::sleep(TTL + Duration::from_millis(500));
    redis.launch();
    // The client finds itself forgotten: one outcome per task, none left waiting for ever.
    match waiting.get_timeout(DEADLINE) {
        Err(Error::Broker(why)) => assert!(why.contains("dropped before it ran"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        running.get_timeout(DEADLINE),
        Err(Error::Broker(_))
    ));
    std::fs::write(&release, b"").unwrap();
    // The node serves a new client.
    let again = cluster_common::pool(&redis.url());
    again.wait_for_nodes(1, DEADLINE).unwrap();
    assert_eq!(again.apply(square, (4,)).unwrap(), 16);
    assert!(!Path::new(&p("waiting")).exists(), "the dropped task ran");
}

#[test]
fn an_entry_handed_over_in_a_lost_reply_runs_once() {
    let redis = Redis::start();
    let _node = NodeSpec::new(&redis.url()).processes(1).start();
    let mut admin = redis.admin();
    let dir = TempDir::new("lost-reply");
    let d = dir.path().display().to_string();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let (held, release) = start_held(&pool, dir.path());
    let waiting = pool.apply_async(run_once, (d.clone(), 7)).unwrap();
    // The waiting entry is handed to the node's consumer, but the reply goes elsewhere: as if
    // the node's read had reached the broker and its reply had been lost.
    let node_id = multiprocess::cluster::status(&redis.url()).unwrap().nodes[0]
        .id
        .clone();
    let stream: Vec<String> = redis::cmd("KEYS")
        .arg("mp:tasks:*")
        .query(&mut admin)
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("nodes")
        .arg(&node_id)
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&stream[0])
        .arg(">")
        .query(&mut admin)
        .unwrap();
    // Every other connection drops: the node reconnects and finds the entry among its own.
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut admin)
        .unwrap();
    std::fs::write(&release, b"").unwrap();
    assert_ne!(held.get_timeout(DEADLINE).unwrap(), 0);
    assert_eq!(waiting.get_timeout(DEADLINE).unwrap(), 14);
    assert_eq!(count(dir.path(), "run-"), 1);
    assert_eq!(count(dir.path(), "dup-"), 0, "the task ran twice");
}

#[test]
fn an_outcome_the_broker_refuses_for_a_while_is_recorded_later() {
    let redis = Redis::start();
    let node = NodeSpec::new(&redis.url()).processes(1).start();
    let mut admin = redis.admin();
    let dir = TempDir::new("refused");
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let (held, release) = start_held(&pool, dir.path());
    // The broker refuses the outcome for a while (an operator's ACL change, taken back).
    let acl = |admin: &mut redis::Connection, rule: &str| {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg(rule)
            .query(admin)
            .unwrap();
    };
    acl(&mut admin, "-evalsha");
    std::fs::write(&release, b"").unwrap();
    node.wait_for_line("could not record 1 outcomes, trying again");
    acl(&mut admin, "+evalsha");
    // The outcome goes through, once; the node serves on.
    assert_ne!(held.get_timeout(DEADLINE).unwrap(), 0);
    node.wait_for_line("outcomes recorded again");
    assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
}

/// A node whose ACL user may not run scripts (`-evalsha`), so that the broker refuses every
/// outcome it records, for good (the clients of the test keep the default user), and a task
/// it ran: once the node says the outcome was refused. `ttl`: the node's heartbeat TTL.
fn refused_task(
    redis: &Redis,
    ttl: Duration,
) -> (
    Node,
    multiprocess::cluster::Pool,
    multiprocess::AsyncResult<u64>,
) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("refused")
        .arg("on")
        .arg(">refused-pw")
        .arg("~mp:*")
        .arg("&*")
        .arg("+@all")
        .arg("-@dangerous")
        .arg("-evalsha")
        .query(&mut redis.admin())
        .unwrap();
    let mut spec = NodeSpec::new(&format!("{}?user=refused&pass=refused-pw", redis.url()));
    spec.processes = 1;
    spec.ttl = ttl;
    let node = spec.start();
    let pool = pool(&redis.url());
    pool.wait_for_nodes(1, DEADLINE).unwrap();
    let r = pool.apply_async(square, (4,)).unwrap();
    node.wait_for_line("could not record 1 outcomes, trying again");
    (node, pool, r)
}

/// Fails the test unless `r` failed with NodeLost.
fn assert_node_lost(r: multiprocess::AsyncResult<u64>) {
    match r.get_timeout(DEADLINE) {
        Err(Error::NodeLost { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_node_whose_outcomes_are_refused_for_good_leaves_and_its_task_fails_with_node_lost() {
    let redis = Redis::start();
    let (mut node, _pool, r) = refused_task(&redis, TTL);
    // Refused its outcome for three TTLs, the node gives up: it leaves, and the client's sweep
    // fails the task with NodeLost instead of waiting for ever.
    assert_node_lost(r);
    assert_eq!(node.wait().code(), Some(1), "{}", node.stderr());
    let log = node.stderr();
    assert!(
        log.contains("the broker refused this node's outcomes"),
        "{log}"
    );
    assert!(log.contains("left the cluster"), "{log}");
}

#[test]
fn sigterm_ends_a_node_whose_outcomes_are_refused() {
    let redis = Redis::start();
    // A TTL so long that only SIGTERM can end the node within the test's deadline.
    let (mut node, _pool, r) = refused_task(&redis, Duration::from_secs(120));
    assert_eq!(node.terminate().code(), Some(1), "{}", node.stderr());
    assert!(node.stderr().contains("SIGTERM came"), "{}", node.stderr());
    assert_node_lost(r);
}

#[test]
fn a_node_whose_outcomes_are_refused_takes_no_new_task() {
    let redis = Redis::start();
    // A TTL long enough that the node is still refused (not gone) for the whole test.
    let (mut refused, pool, first) = refused_task(&redis, Duration::from_secs(20));
    // Its reader stops taking tasks (it says so once its last read has returned).
    refused.wait_for_line("taking no new task while the broker refuses outcomes");
    // A healthy node runs every new task: none went to the refused node, whose tasks would
    // fail with NodeLost when it gives up.
    let _healthy = NodeSpec::new(&redis.url()).start();
    pool.wait_for_nodes(2, DEADLINE).unwrap();
    let squares: Vec<u64> = (0..20).map(|x| x * x).collect();
    let all = pool.map_async(square, 0..20, 1).unwrap();
    assert_eq!(all.get_timeout(DEADLINE).unwrap(), squares);
    assert_eq!(refused.terminate().code(), Some(1), "{}", refused.stderr());
    assert_node_lost(first);
}
