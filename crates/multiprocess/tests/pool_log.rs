//! The `log` feature: a pool reports its workers started, replaced and stopped, and its
//! failed tasks, through the `log` crate (target `multiprocess`), as Python's
//! `log_to_stderr()` shows them.

mod common;

use std::sync::Mutex;

use common::DEADLINE;
use multiprocess::{Error, Pool};

multiprocess::init_on_load!();

/// Every record of target `multiprocess`, as "LEVEL message".
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Recorder;

impl log::Log for Recorder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "multiprocess"
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            RECORDS.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

fn records_with(text: &str) -> Vec<String> {
    let records = RECORDS.lock().unwrap();
    records
        .iter()
        .filter(|r| r.contains(text))
        .cloned()
        .collect()
}

fn sqr(x: i64) -> i64 {
    x * x
}

fn fails(msg: String) -> i64 {
    panic!("{msg}")
}

fn dies(code: i32) -> i64 {
    std::process::exit(code)
}

#[test]
fn a_pool_reports_its_workers_and_failed_tasks() {
    log::set_logger(&Recorder).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(sqr, (4,)).unwrap(), 16);
    let failed = pool.apply_async(fails, ("no luck".to_string(),)).unwrap();
    assert!(matches!(
        failed.get_timeout(DEADLINE),
        Err(Error::Panic { .. })
    ));
    let lost = pool.apply_async(dies, (7,)).unwrap();
    assert!(matches!(
        lost.get_timeout(DEADLINE),
        Err(Error::WorkerLost { exitcode: 7 })
    ));
    // The replacement runs the next task.
    assert_eq!(pool.apply(sqr, (5,)).unwrap(), 25);
    pool.close();
    pool.join().unwrap();

    let added = records_with("added worker");
    assert!(added.len() >= 3, "two workers and a replacement: {added:?}");
    assert!(added.iter().all(|r| r.starts_with("INFO")), "{added:?}");
    let failed = records_with("failed in worker");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("no luck"), "{failed:?}");
    let replaced = records_with("the worker is replaced");
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert!(replaced[0].starts_with("WARN"), "{replaced:?}");
    assert!(replaced[0].contains("exit code 7"), "{replaced:?}");
    assert_eq!(records_with("closing pool").len(), 1);
    assert_eq!(
        records_with("stopped").len(),
        2,
        "both workers stopped at join"
    );
}
