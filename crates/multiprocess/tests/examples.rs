//! The seed programs (`examples/`) print what the seeds' Python programs print.
//!
//! Runs the example binaries that `cargo test` / `cargo nextest run` build next to the tests.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `target/<profile>/examples/<name>` with `args`, failing after 60 s.
fn run_example(name: &str, args: &[&str]) -> String {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path: PathBuf = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} was not built: run the whole suite (`cargo nextest run --workspace`), which builds the examples, or `cargo build --examples` first",
        path.display()
    );
    let mut child = Command::new(&path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("example {name} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output { status, stdout, .. } = child.wait_with_output().unwrap();
    assert!(status.success(), "example {name} failed: {status}");
    String::from_utf8(stdout).unwrap()
}

fn count(haystack: &str, line: &str) -> usize {
    haystack.lines().filter(|l| *l == line).count()
}

#[test]
fn sing_dance() {
    let out = run_example("sing_dance", &[]);
    assert_eq!(count(&out, "唱歌..."), 3);
    assert_eq!(count(&out, "xiaoming"), 3);
    assert_eq!(count(&out, "跳舞..."), 2);
    assert_eq!(count(&out, "传智"), 2);
    assert_eq!(out.matches("唱歌进程的pid:").count(), 1);
    assert_eq!(out.matches("跳舞进程的pid:").count(), 1);
}

#[test]
fn pids() {
    let out = run_example("pids", &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "<_MainProcess name='MainProcess' parent=None started>"
    );
    let main_pid = lines[1];
    assert_eq!(
        lines[2],
        format!("<Process name='MyProcess' parent={main_pid} started>")
    );
    assert_eq!(lines[4], format!("该子进程的父id是:{main_pid}"));
    assert_eq!(count(&out, &format!("父进程 id: {main_pid}")), 5);
    for n in 2..=6 {
        assert!(out.contains(&format!("这里是  Process-{n} ")), "{out}");
    }
}

#[test]
fn daemon_child_ends_with_main() {
    let out = run_example("daemon", &[]);
    let work = count(&out, "工作中...");
    assert!(
        (1..10).contains(&work),
        "a daemonic child printed {work} lines"
    );
    assert_eq!(out.lines().last(), Some("主进程执行完成了啦"));
}

#[test]
fn plain_child_is_waited_for() {
    let out = run_example("daemon", &["plain"]);
    assert_eq!(count(&out, "工作中..."), 10);
    assert!(out.contains("主进程执行完成了啦"));
}

#[test]
fn terminate() {
    let out = run_example("terminate", &[]);
    let work = count(&out, "正在运行work1...");
    assert!((1..5).contains(&work), "the child printed {work} lines");
    assert!(out.contains("exitcode = -15"));
    assert!(!out.contains("123456"));
}

#[test]
fn subclass() {
    let out = run_example("subclass", &[]);
    assert!(out.starts_with("主进程开始\n"));
    assert!(out.contains("p1.is_alive=true"));
    assert!(out.contains("p1.name=mrsoft"));
    assert!(out.contains("p2.name=Process-2"));
    assert_eq!(out.matches("开始执行，它的父进程是").count(), 2);
    assert_eq!(out.matches("执行时间为").count(), 2);
    assert_eq!(out.lines().last(), Some("主进程结束.."));
}

#[test]
fn queue_write_read() {
    let out = run_example("queue_write_read", &[]);
    let mut want: Vec<String> = (0..5).map(|i| format!("已经写入:{i}")).collect();
    want.push("队列已满".into());
    want.extend((0..5).map(|i| format!("获取数据:{i}")));
    want.push("队列已空".into());
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

#[test]
fn lifo_priority() {
    let out = run_example("lifo_priority", &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Queue (先进先出):      消息1 消息2 消息3");
    assert_eq!(lines[1], "LifoQueue (后进先出):  消息3 消息2 消息1");
    assert_eq!(lines[2], "PriorityQueue (优先级): 1:吃饭 2:睡觉 3:写代码");
}

#[test]
fn pool_apply_async() {
    let out = run_example("pool_apply_async", &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("父进程 ("));
    for i in 0..10 {
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.ends_with(&format!("执行的任务是 ({i})")))
                .count(),
            1,
            "{out}"
        );
    }
    assert_eq!(lines.last(), Some(&"所有子进程结束....."));
}

#[test]
fn pool_callback_file() {
    let file = std::env::temp_dir().join(format!("mp-callback-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&file);
    run_example("pool_callback_file", &[file.to_str().unwrap()]);
    let mut got: Vec<u32> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let _ = std::fs::remove_file(&file);
    got.sort_unstable();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
}

#[test]
fn pool_queue_copy() {
    let base = std::env::temp_dir().join(format!("mp-copy-{}", std::process::id()));
    let src = base.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        std::fs::write(
            src.join(format!("f{i}.txt")),
            format!("file {i}").repeat(i + 1),
        )
        .unwrap();
    }
    let out = run_example("pool_queue_copy", &[src.to_str().unwrap()]);
    assert!(out.contains("100.00%"), "{out}");
    assert!(out.contains("已完成拷贝: 20 个文件"), "{out}");
    let dst = base.join("src[复件]");
    for i in 0..20 {
        assert_eq!(
            std::fs::read(dst.join(format!("f{i}.txt"))).unwrap(),
            std::fs::read(src.join(format!("f{i}.txt"))).unwrap()
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
