//! The seeds' `Pool(3)` with `apply_async`, `close` and `join`, over a Redis broker: the same
//! program is the node (with `MULTIPROCESS_NODE` set) and the client (without).
//!
//! ```text
//! export MULTIPROCESS_CLUSTER_KEY=change-me-to-a-long-secret
//! # a node, with 3 worker processes (run it on as many machines as you like):
//! MULTIPROCESS_NODE=redis://127.0.0.1:6379 MULTIPROCESS_NODE_PROCESSES=3 \
//!     cargo run --features cluster --example cluster_pool &
//! # the client:
//! MULTIPROCESS_BROKER=redis://127.0.0.1:6379 cargo run --features cluster --example cluster_pool
//! ```

use std::time::Duration;

use multiprocess::cluster::Pool;

/// Runs on a node: says where it ran.
fn task(name: u32) -> String {
    std::thread::sleep(Duration::from_millis(200)); // the seed sleeps 1 s
    format!(
        "子进程 ({} on {})执行的任务是 ({name})",
        std::process::id(),
        hostname()
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn main() -> multiprocess::Result<()> {
    // A node serves here until SIGTERM; the client goes on.
    multiprocess::init();
    println!("父进程 ({})开始执行", std::process::id());
    let p = Pool::builder().build()?; // broker and key from the environment
    p.wait_for_nodes(1, Duration::from_secs(10))?;
    for i in 0..10 {
        // The callback prints the result: the handle itself is not needed.
        drop(p.apply_async_with(task, (i,), |line| println!("{line}"), |e| eprintln!("{e}"))?);
    }
    p.close();
    p.join()?;
    println!("所有子进程结束.....");
    Ok(())
}
