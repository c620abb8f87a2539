//! Seed 004 lists Python's three queue orders: FIFO `Queue`, LIFO `LifoQueue` and
//! `PriorityQueue`. Here a child fills each kind and the parent empties it.
//!
//! Run: `cargo run --example lifo_priority`

use multiprocess::{LifoQueue, PriorityQueue, Process, Queue};

fn fill_fifo(q: Queue<String>) {
    for m in ["消息1", "消息2", "消息3"] {
        q.put(m.to_string()).expect("put");
    }
}

fn fill_lifo(q: LifoQueue<String>) {
    for m in ["消息1", "消息2", "消息3"] {
        q.put(m.to_string()).expect("put");
    }
}

fn fill_priority(q: PriorityQueue<(u32, String)>) {
    for (priority, task) in [(3, "写代码"), (1, "吃饭"), (2, "睡觉")] {
        q.put((priority, task.to_string())).expect("put");
    }
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();

    let fifo = Queue::new()?;
    Process::new(fill_fifo, (fifo.clone(),)).start()?.join()?;
    let order: Vec<String> = (0..3).map(|_| fifo.get()).collect::<Result<_, _>>()?;
    println!("Queue (先进先出):      {}", order.join(" "));

    let lifo = LifoQueue::new()?;
    Process::new(fill_lifo, (lifo.clone(),)).start()?.join()?;
    let order: Vec<String> = (0..3).map(|_| lifo.get()).collect::<Result<_, _>>()?;
    println!("LifoQueue (后进先出):  {}", order.join(" "));

    let priority = PriorityQueue::new()?;
    Process::new(fill_priority, (priority.clone(),))
        .start()?
        .join()?;
    let order: Vec<String> = (0..3)
        .map(|_| priority.get().map(|(p, task)| format!("{p}:{task}")))
        .collect::<Result<_, _>>()?;
    println!("PriorityQueue (优先级): {}", order.join(" "));
    Ok(())
}
