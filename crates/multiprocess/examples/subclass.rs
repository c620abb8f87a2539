//! Seed 003, "Process子类创建进程": a type with its own data and a `run()`, started like a
//! Process subclass.
//!
//! Run: `cargo run --example subclass`

use std::time::{Duration, Instant};

use multiprocess::{parent_pid, Run};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct SubProcess {
    interval: u64,
}

impl Run for SubProcess {
    fn run(self) {
        println!(
            "子进程({})开始执行，它的父进程是({})",
            std::process::id(),
            parent_pid()
        );
        let t_start = Instant::now();
        std::thread::sleep(Duration::from_secs(self.interval));
        println!(
            "子进程（{}）执行时间为{:.2}秒",
            std::process::id(),
            t_start.elapsed().as_secs_f64()
        );
    }
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    println!("主进程开始");
    println!("主进程的PID；{}", std::process::id());
    let p1 = SubProcess { interval: 1 }
        .into_process()
        .name("mrsoft")
        .start()?;
    let p2 = SubProcess { interval: 2 }.into_process().start()?;
    println!("p1.is_alive={}", p1.is_alive());
    println!("p2.is_alive={}", p2.is_alive());
    println!("p1.name={}", p1.name());
    println!("p1.id={}", p1.pid());
    println!("p2.name={}", p2.name());
    println!("p2.id={}", p2.pid());
    p1.join()?;
    p2.join()?;
    println!("主进程结束..");
    Ok(())
}
