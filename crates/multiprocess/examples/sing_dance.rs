//! Seed 004, lesson 5: two processes, one sings and one dances, with positional arguments
//! (`args=(3, "xiaoming")`) and named ones (`kwargs={"name": "传智", "num": 2}`, a struct here).
//!
//! Run: `cargo run --example sing_dance`

use std::time::Duration;

use multiprocess::Process;
use serde::{Deserialize, Serialize};

/// 唱歌: positional arguments, as `args=(3, "xiaoming")`.
fn sing(num: u32, name: String) {
    println!("唱歌进程的pid:  {}", std::process::id());
    for _ in 0..num {
        println!("{name}");
        println!("唱歌...");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Python's `kwargs={"name": "传智", "num": 2}`: named arguments are a struct.
#[derive(Serialize, Deserialize)]
struct DanceArgs {
    num: u32,
    name: String,
}

/// 跳舞
fn dance(args: DanceArgs) {
    println!("跳舞进程的pid:  {}", std::process::id());
    for _ in 0..args.num {
        println!("{}", args.name);
        println!("跳舞...");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let sing_process = Process::new(sing, (3, "xiaoming".to_string())).start()?;
    let dance_process = Process::new(
        dance,
        (DanceArgs {
            name: "传智".into(),
            num: 2,
        },),
    )
    .start()?;
    sing_process.join()?;
    dance_process.join()?;
    Ok(())
}
