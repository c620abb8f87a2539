//! Seed 001 §4 and seed 003: process names, pids and parent pids.
//!
//! Run: `cargo run --example pids`

use multiprocess::{current_process, parent_pid, Process};

/// Seed 003's `foo(i)`: who am I, who is my parent.
fn foo(i: u32) {
    println!("这里是  {} (i = {i})", current_process().name());
    println!("父进程 id: {}", parent_pid());
    println!("当前子进程 id: {}", std::process::id());
    println!("------------------------");
}

/// Seed 001 §4.2–4.5: the child's view of itself.
fn work1() {
    println!("{}", current_process());
    println!("{}", current_process().pid());
    println!("该子进程的父id是:{}", parent_pid());
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    // 4.1 / 4.4: the main process.
    println!("{}", current_process());
    println!("{}", current_process().pid());

    // 4.3: a named child.
    let p = Process::new(work1, ()).name("MyProcess").start()?;
    p.join()?;

    // Seed 003: five children, default names.
    let children: Vec<_> = (0..5)
        .map(|i| Process::new(foo, (i,)).start())
        .collect::<Result<_, _>>()?;
    for child in children {
        child.join()?;
    }
    Ok(())
}
