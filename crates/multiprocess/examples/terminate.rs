//! Seed 001 §4.6: stop a child with `terminate()`.
//!
//! Run: `cargo run --example terminate`

use std::time::Duration;

use multiprocess::Process;

fn work1() {
    for _ in 0..5 {
        println!("正在运行work1...");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let process_obj1 = Process::new(work1, ()).start()?;
    std::thread::sleep(Duration::from_secs(1));
    process_obj1.terminate()?; // 关闭子进程
    let code = process_obj1.join()?;
    println!("exitcode = {code} (-15: ended by SIGTERM)");
    Ok(()) // 关闭主进程: "123456" is never printed
}
