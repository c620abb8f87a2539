//! G05 (Rust form): a program that never called `init()` cannot use a start method that
//! re-executes it: the start fails with a clear error instead of running `main` again.
//! (This file deliberately has no `init_on_load!()`.)

use std::time::Duration;

use multiprocess::{Error, Process, StartMethod};

#[test]
fn reexecuting_methods_refuse_without_init() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let err = Process::new(|| {}, ())
            .start_method(method)
            .start()
            .unwrap_err();
        match err {
            Error::InitMissing(m) => {
                assert_eq!(m, method);
                let why = Error::InitMissing(m).to_string();
                assert!(why.contains("multiprocess::init()"), "{why}");
            }
            other => panic!("expected InitMissing, got {other:?}"),
        }
    }
    // Fork needs no re-execution, so it works without init().
    let p = Process::new(|| {}, ())
        .start_method(StartMethod::Fork)
        .start()
        .unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
}
