//! Pool results and a spawned process awaited under tokio: the pool's futures need no runtime
//! of their own, so any executor can await them.
//!
//! Run: `cargo run --example async_pool`

use std::time::Duration;

use multiprocess::Pool;

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(50));
    x * x
}

fn total(upto: u64) -> u64 {
    (1..=upto).sum()
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // before the runtime starts: a re-executed child stops here
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> multiprocess::Result<()> {
    let pool = Pool::new(4)?;
    // Eight tasks in flight at once; awaited in turn, they finish in about two rounds.
    let tasks: Vec<_> = (1..=8)
        .map(|x| pool.apply_async(slow_square, (x,)))
        .collect::<multiprocess::Result<_>>()?;
    let mut squares = Vec::new();
    for task in tasks {
        squares.push(task.await?);
    }
    println!("squares: {squares:?}");
    // A whole map, and a process of its own, awaited together.
    let map = pool.map_async(slow_square, 0..4, 1)?;
    let process = multiprocess::spawn(total, (100,))?;
    let (map, sum) = tokio::join!(map, process);
    println!("map: {:?}, sum: {}", map?, sum?);
    pool.close();
    pool.join()
}
