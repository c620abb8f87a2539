//! Seed 001 §12, "使用多进程向同一文件写入数据": 1000 tasks on a pool of 6; each result is
//! appended to one file by a callback, which runs in the parent, so the writes never collide.
//!
//! Run: `cargo run --example pool_callback_file -- [FILE]` (default `result.txt`)

use std::io::Write;

use multiprocess::Pool;

fn multiplication(num: u32) -> u32 {
    num
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "result.txt".to_string());
    let pool = Pool::new(6)?;
    for i in 0..1000 {
        let path = path.clone();
        // 设置回调函数: called in the parent, once per task.
        let setcallback = move |x: u32| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("open the result file");
            writeln!(f, "{x}").expect("write the result file");
        };
        pool.apply_async_with(multiplication, (i,), setcallback, |e| {
            eprintln!("task failed: {e}")
        })?;
    }
    pool.close();
    pool.join()?;
    println!("wrote 1000 results to {path}");
    Ok(())
}
