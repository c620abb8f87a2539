//! Seed 000 "案例 实现copy": a pool copies a folder's files while the parent shows the progress
//! from a queue the tasks report to (the seed needs `Manager().Queue()`; any queue works here).
//!
//! Run: `cargo run --example pool_queue_copy -- SOURCE_DIR` (copies into `SOURCE_DIR[复件]`)

use std::io::Write;
use std::path::PathBuf;

use multiprocess::{Pool, Queue};

/// 完成文件的复制, then report it on the queue.
fn copy_file(q: Queue<String>, file_name: String, old_folder: PathBuf, new_folder: PathBuf) {
    let content = std::fs::read(old_folder.join(&file_name)).expect("read");
    std::fs::write(new_folder.join(&file_name), content).expect("write");
    // 如果拷贝完了文件，那么就向队列中写入一个消息表示已经完成
    q.put(file_name).expect("put");
}

fn main() -> multiprocess::Result<()> {
    multiprocess::init();
    // 1. 获取要copy的文件夹的名字
    let Some(old_folder) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: pool_queue_copy SOURCE_DIR");
        std::process::exit(2);
    };
    // 2. 创建一个新的文件夹
    let mut new_name = old_folder.file_name().unwrap_or_default().to_os_string();
    new_name.push("[复件]");
    let new_folder = old_folder.with_file_name(new_name);
    std::fs::create_dir_all(&new_folder)?;
    // 3. 获取文件夹的所有的待copy的文件名字 (plain files only, as the seed)
    let file_names: Vec<String> = std::fs::read_dir(&old_folder)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    // 4. 创建进程池; 5. 创建一个队列
    let po = Pool::new(5)?;
    let q = Queue::<String>::new()?;
    // 6. 向进程池中添加copy文件的任务
    for file_name in &file_names {
        // Each task reports on the queue: its handle is not needed.
        drop(po.apply_async(
            copy_file,
            (
                q.clone(),
                file_name.clone(),
                old_folder.clone(),
                new_folder.clone(),
            ),
        )?);
    }
    po.close();
    let all_file_num = file_names.len();
    for copy_ok_num in 1..=all_file_num {
        q.get()?;
        print!(
            "\r拷贝的进度为：{:.2}%",
            copy_ok_num as f64 * 100.0 / all_file_num as f64
        );
        std::io::stdout().flush()?;
    }
    po.join()?;
    println!(
        "\n已完成拷贝: {} 个文件 -> {}",
        all_file_num,
        new_folder.display()
    );
    Ok(())
}
