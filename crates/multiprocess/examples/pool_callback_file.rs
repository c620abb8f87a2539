//! Seed 001 §12, "使用多进程向同一文件写入数据": 1000 tasks on a pool of 6; each result is
//! appended to one file by a callback, which runs in the parent, so the writes never collide.
//!
//! Run: `cargo run --example pool_callback_file -- [FILE]`. FILE is written afresh; by default
//! it is `pool_callback_file/result.txt` in the system's temporary folder (`$TMPDIR`, else
//! `/tmp`), a place of its own rather than the current folder.

use std::io::Write;
use std::path::PathBuf;

use multiprocess::Pool;

fn multiplication(num: u32) -> u32 {
    num
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    let path = match std::env::args_os().nth(1) {
        Some(file) => PathBuf::from(file),
        None => {
            let own = std::env::temp_dir().join("pool_callback_file");
            std::fs::create_dir_all(&own)?;
            own.join("result.txt")
        }
    };
    // A fresh file: a second run must not append to the first one's results.
    if let Err(err) = std::fs::File::create(&path) {
        eprintln!("pool_callback_file: cannot write {}: {err}", path.display());
        std::process::exit(2);
    }
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
        // The callback takes the result: the handle is not needed.
        drop(
            pool.apply_async_with(multiplication, (i,), setcallback, |e| {
                eprintln!("task failed: {e}")
            })?,
        );
    }
    pool.close();
    pool.join()?;
    println!("wrote 1000 results to {}", path.display());
    Ok(())
}
