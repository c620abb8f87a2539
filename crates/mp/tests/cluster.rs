//! `mp cluster status` against a real `redis-server`, with `mp` itself serving as a node (any
//! program that calls `multiprocess::init()` becomes one with `MULTIPROCESS_NODE` set).

#[path = "../../multiprocess/tests/cluster_common/mod.rs"]
mod cluster_common;

use std::process::Command;

use cluster_common::*;

fn mp(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mp"))
        .args(args)
        .output()
        .expect("run mp");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_shows_nodes_workers_and_backlog() {
    let redis = Redis::start();
    let url = redis.url();
    let (ok, out, _) = mp(&["cluster", "status", &url]);
    assert!(ok);
    assert!(out.starts_with("0 live nodes, 0 workers, 0 busy"), "{out}");

    let node = NodeSpec::new(&url)
        .processes(3)
        .exe(env!("CARGO_BIN_EXE_mp").into())
        .start();
    wait_until("the node in the status", || {
        mp(&["cluster", "status", &url])
            .1
            .starts_with("1 live node")
    });
    let (ok, out, _) = mp(&["cluster", "status", &url]);
    assert!(ok);
    assert!(out.contains("1 live node, 3 workers, 0 busy"), "{out}");
    assert!(out.contains(&format!(":{}:", node.pid())), "{out}");
    assert!(out.contains("1 task stream(s)"), "{out}");

    let (ok, json, _) = mp(&["cluster", "status", &url, "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["nodes"][0]["processes"], 3);
    assert_eq!(v["nodes"][0]["idle"], 3);
    assert_eq!(v["nodes"][0]["pid"], node.pid());
    assert_eq!(v["streams"][0]["backlog"], 0);
    assert_eq!(v["streams"][0]["pending"], 0);
    assert_eq!(v["streams"][0]["build"], v["nodes"][0]["build"]);
}

#[test]
fn a_broker_that_cannot_be_reached_is_a_clear_error() {
    let dir = TempDir::new("nobroker");
    let url = format!("unix://{}/none.sock", dir.path().display());
    let (ok, _, err) = mp(&["cluster", "status", &url]);
    assert!(!ok);
    assert!(err.starts_with("mp: the Redis broker failed"), "{err}");
}

#[test]
fn status_reads_a_stream_that_no_node_ever_served() {
    let redis = Redis::start();
    let url = redis.url();
    // A task stream without the nodes' group (no node of its build ever started).
    let _: String = redis::cmd("XADD")
        .arg("mp:tasks:0123456789abcdef:0123456789ab")
        .arg("*")
        .arg("c")
        .arg("client")
        .query(&mut redis.admin())
        .unwrap();
    let (ok, json, err) = mp(&["cluster", "status", &url, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["streams"][0]["build"], "0123456789abcdef");
    assert_eq!(v["streams"][0]["backlog"], 1);
    assert_eq!(v["streams"][0]["pending"], 0);
}
