//! Seed 001 §9 (and seed 004): a writer process fills a queue, a reader process empties it.
//!
//! Run: `cargo run --example queue_write_read`

use std::time::Duration;

use multiprocess::{Process, Queue};

/// 写入数据到队列
fn write_queue(queue: Queue<u32>) {
    for i in 0..10 {
        if queue.full() {
            println!("队列已满");
            break;
        }
        queue.put(i).expect("put");
        println!("已经写入:{i}");
        std::thread::sleep(Duration::from_millis(100)); // the seed sleeps 0.5 s
    }
}

/// 读取队列数据并显示
fn read_queue(queue: Queue<u32>) {
    loop {
        if queue.qsize() == 0 {
            println!("队列已空");
            break;
        }
        let value = queue.get().expect("get");
        println!("获取数据:{value}");
    }
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    // 创建队列: at most 5 items. Unlike Python's, qsize() and full() are exact here, so the
    // seed's advice to sleep before empty() is not needed.
    let queue = Queue::bounded(5)?;
    let write_q = Process::new(write_queue, (queue.clone(),)).start()?;
    // 让写入队列的子进程先执行
    write_q.join()?;
    let read_q = Process::new(read_queue, (queue,)).start()?;
    read_q.join()?;
    Ok(())
}
