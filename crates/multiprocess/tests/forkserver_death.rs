//! G03: the fork server's death. One test in this file: killing this process's fork server
//! must not disturb other tests, which share it under `cargo test`.

mod common;

use common::{join, recv, DEADLINE};
use multiprocess::{pipe, Connection, Process, StartMethod};

multiprocess::init_on_load!();

fn report_server_then_block(conn: Connection) {
    conn.send(&std::os::unix::process::parent_id()).unwrap();
    let _ = conn.recv::<()>();
}

/// G03: a fork server killed by SIGKILL is replaced at the next start; its orphaned child is
/// still seen to exit (code 255: the status died with the server, as in Python).
#[test]
fn g03_forkserver_death_is_survived() {
    let (mine, theirs) = pipe().unwrap();
    let first = Process::new(report_server_then_block, (theirs,))
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    let server: u32 = recv(&mine);
    assert_ne!(server, std::process::id());
    assert!(common::pid_exists(server));
    // SAFETY: kill with a valid signal on the server's pid.
    unsafe { libc::kill(server as i32, libc::SIGKILL) };
    assert!(common::wait_gone(server, DEADLINE) || !common::pid_exists(server));

    let second = Process::new(|| {}, ())
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    assert_eq!(join(&second), 0);

    // The first child outlived its server and still runs until released.
    assert!(first.is_alive());
    mine.send(&()).unwrap();
    assert_eq!(join(&first), 255);
}
