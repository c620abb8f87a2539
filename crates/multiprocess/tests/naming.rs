//! A03: process names. One test in this file, so that it runs in a fresh process (under
//! `cargo test` too) whose child counter starts at zero.

mod common;

use common::{join, recv};
use multiprocess::{current_process, pipe, Connection, Process, StartMethod};

multiprocess::init_on_load!();

fn report_names(conn: Connection, method: StartMethod) {
    let grandchild = Process::new(|| {}, ())
        .start_method(method)
        .start()
        .unwrap();
    conn.send(&(
        current_process().name().to_string(),
        grandchild.name().to_string(),
    ))
    .unwrap();
    assert_eq!(join(&grandchild), 0);
}

#[test]
fn a03_names_follow_python() {
    // Exact names in a fresh main process, with the default method.
    let first = Process::new(|| {}, ()).start().unwrap();
    let (mine, theirs) = pipe().unwrap();
    let second = Process::new(report_names, (theirs, multiprocess::get_start_method()))
        .start()
        .unwrap();
    assert_eq!(first.name(), "Process-1");
    assert_eq!(second.name(), "Process-2");
    assert_eq!(
        recv::<(String, String)>(&mine),
        ("Process-2".to_string(), "Process-2:1".to_string())
    );
    assert_eq!(join(&first), 0);
    assert_eq!(join(&second), 0);

    // The counter is per process and shared by every start method.
    let mut n = 2;
    for method in StartMethod::ALL {
        n += 1;
        let (mine, theirs) = pipe().unwrap();
        let p = Process::new(report_names, (theirs, method))
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(p.name(), format!("Process-{n}"));
        assert_eq!(
            recv::<(String, String)>(&mine),
            (format!("Process-{n}"), format!("Process-{n}:1"))
        );
        assert_eq!(join(&p), 0);
    }

    // A given name wins.
    let named = Process::new(|| {}, ()).name("MyProcess").start().unwrap();
    assert_eq!(named.name(), "MyProcess");
    assert_eq!(join(&named), 0);
}
