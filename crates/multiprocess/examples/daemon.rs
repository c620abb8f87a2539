//! Seed 004 §6 and seed 001 §6: a daemonic child ends with the main process; a plain child is
//! waited for.
//!
//! Run: `cargo run --example daemon` (daemonic: the child stops when main ends), or
//! `cargo run --example daemon -- plain` (not daemonic: main waits for all ten lines).

use std::time::Duration;

use multiprocess::Process;

fn work() {
    for _ in 0..10 {
        println!("工作中...");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let daemon = std::env::args().nth(1).as_deref() != Some("plain");
    // 设置守护主进程，主进程退出后子进程直接销毁，不再执行子进程中的代码
    let _work_process = Process::new(work, ()).daemon(daemon).start()?;
    // 让主进程等待1秒钟
    std::thread::sleep(Duration::from_secs(1));
    println!("主进程执行完成了啦");
    // Returning from main terminates a daemonic child and joins a plain one, as in Python.
    Ok(())
}
