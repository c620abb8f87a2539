//! Seeds 003 and 004: a pool of 4 runs 10 tasks; the parent closes it and waits.
//!
//! Run: `cargo run --example pool_apply_async`

use std::time::Duration;

use multiprocess::Pool;

fn task(name: u32) {
    println!("子进程 ({})执行的任务是 ({name})", std::process::id());
    std::thread::sleep(Duration::from_millis(200)); // the seed sleeps 1 s
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    println!("父进程 ({})开始执行", std::process::id());
    let p = Pool::new(4)?;
    for i in 0..10 {
        drop(p.apply_async(task, (i,))?); // close + join wait for it
    }
    p.close();
    p.join()?;
    println!("所有子进程结束.....");
    Ok(())
}
