//! The seed programs (`examples/`) print what the seeds' Python programs print.
//!
//! Runs the example binaries that `cargo test` / `cargo nextest run` build next to the tests,
//! with a deadline.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A command running `target/<profile>/examples/<name>` with `args`.
fn example(name: &str, args: &[&str]) -> Command {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path: PathBuf = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} was not built: run the whole suite (`cargo nextest run --workspace`), which builds the examples, or `cargo build --examples` first",
        path.display()
    );
    let mut cmd = Command::new(&path);
    cmd.args(args);
    cmd
}

/// Runs an example to success (within the deadline) and returns its stdout.
fn run_example(name: &str, args: &[&str]) -> String {
    let out = common::output_within(&mut example(name, args));
    assert!(
        out.status.success(),
        "example {name} failed: {}\n{}",
        out.status,
        out.stderr
    );
    out.stdout
}

/// A fresh, empty scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mp-examples-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The numbers in a result file, sorted.
fn sorted_numbers(file: &Path) -> Vec<u32> {
    let mut got: Vec<u32> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    got.sort_unstable();
    got
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
    // The child prints every 200 ms and main ends after 1 s: the child may print once more
    // between main's last line and its own termination, never twice.
    let after_main = out
        .lines()
        .skip_while(|l| *l != "主进程执行完成了啦")
        .skip(1)
        .count();
    assert!(
        out.contains("主进程执行完成了啦\n") && after_main <= 1,
        "{out}"
    );
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
    let dir = scratch("callback");
    let file = dir.join("out.txt");
    run_example("pool_callback_file", &[file.to_str().unwrap()]);
    assert_eq!(sorted_numbers(&file), (0..1000).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without an argument the results go to a folder of the example's own under `$TMPDIR`, never
/// into the current folder, and a second run starts the file afresh.
#[test]
fn pool_callback_file_writes_to_its_own_place() {
    let dir = scratch("callback-default");
    let (cwd, tmp) = (dir.join("cwd"), dir.join("tmp"));
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    for _ in 0..2 {
        let mut cmd = example("pool_callback_file", &[]);
        cmd.current_dir(&cwd).env("TMPDIR", &tmp);
        let out = common::output_within(&mut cmd);
        assert!(out.status.success(), "{}", out.stderr);
    }
    let file = tmp.join("pool_callback_file").join("result.txt");
    assert_eq!(sorted_numbers(&file), (0..1000).collect::<Vec<_>>());
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file that cannot be written is a clear error, before any task runs.
#[test]
fn pool_callback_file_refuses_an_unwritable_file() {
    let out = common::output_within(&mut example(
        "pool_callback_file",
        &["/nonexistent-folder/result.txt"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr
            .starts_with("pool_callback_file: cannot write /nonexistent-folder/result.txt: "),
        "{}",
        out.stderr
    );
}

/// Without its folder argument the copier says how to run it.
#[test]
fn pool_queue_copy_needs_a_folder() {
    let out = common::output_within(&mut example("pool_queue_copy", &[]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stderr, "usage: pool_queue_copy SOURCE_DIR\n");
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

/// `panic_output`: the parent receives each panic as `Error::Panic`; the children print, with
/// `RUST_BACKTRACE=1` set, one line each by default, Rust's report with a backtrace under
/// `full`, nothing under `silent`.
#[test]
fn panic_output() {
    for (setting, backtraces, lines) in [
        (None, 0, 2),
        (Some("one-line"), 0, 2),
        (Some("full"), 2, 0),
        (Some("silent"), 0, 0),
    ] {
        let args: Vec<&str> = setting.into_iter().collect();
        let mut cmd = example("panic_output", &args);
        cmd.env("RUST_BACKTRACE", "1");
        let out = common::output_within(&mut cmd);
        assert!(out.status.success(), "{setting:?}: {}", out.stderr);
        assert!(
            out.stdout.contains(
                "a child started with spawn: the parent received Error::Panic, message \
                 \"not a number: seven\", location crates/multiprocess/examples/panic_output.rs:"
            ),
            "{setting:?}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains(
                "a pool task: the parent received Error::Panic, message \"not a number: 八\""
            ),
            "{setting:?}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains("the next pool task: returned 9"),
            "{}",
            out.stdout
        );
        let one_liners = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("multiprocess: ") && l.contains(" panicked with "))
            .count();
        assert_eq!(one_liners, lines, "{setting:?}: {}", out.stderr);
        assert_eq!(
            out.stderr.matches("stack backtrace:").count(),
            backtraces,
            "{setting:?}: {}",
            out.stderr
        );
        if backtraces == 0 {
            // Nothing but the one-liners.
            assert_eq!(
                out.stderr.lines().count(),
                lines,
                "{setting:?}: {}",
                out.stderr
            );
        }
    }
    let out = common::output_within(&mut example("panic_output", &["loud"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("unknown setting \"loud\""),
        "{}",
        out.stderr
    );
}

/// The async example awaits pool results, a map and a process under tokio.
#[test]
fn async_pool() {
    let out = run_example("async_pool", &[]);
    assert_eq!(
        out,
        "squares: [1, 4, 9, 16, 25, 36, 49, 64]\nmap: [0, 1, 4, 9], sum: 5050\n"
    );
}
