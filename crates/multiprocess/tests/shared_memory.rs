//! `SharedMemory` (Python's `multiprocessing.shared_memory`): blocks made by name, opened by
//! name from children under every start method and from a process the library did not start,
//! removed by their owner (also at a normal exit), and found and removed after a crash.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{join, shm_exists as exists, unique_shm_name as unique, DEADLINE};
use multiprocess::{Error, Process, SharedMemory, StartMethod};

multiprocess::init_on_load!();

#[test]
fn create_open_read_write() {
    let name = unique("basic");
    let block = SharedMemory::create_named(&name, 10_000).unwrap();
    assert_eq!(
        (block.name(), block.size(), block.is_owner()),
        (name.as_str(), 10_000, true)
    );
    assert!(block.to_vec().iter().all(|&b| b == 0));
    let mode = std::fs::metadata(Path::new("/dev/shm").join(&name))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    block.write(9_990, b"0123456789").unwrap();
    assert!(matches!(
        block.write(9_991, b"0123456789"),
        Err(Error::IndexOutOfRange {
            index: 10_001,
            len: 10_000
        })
    ));
    let other = SharedMemory::open(format!("/{name}").as_str()).unwrap();
    assert!(!other.is_owner());
    let mut got = [0u8; 10];
    other.read(9_990, &mut got).unwrap();
    assert_eq!(&got, b"0123456789");
    other.set::<f64>(3, 2.5).unwrap();
    assert_eq!(block.get::<f64>(3).unwrap(), 2.5);
    assert!(matches!(
        block.get::<f64>(1250),
        Err(Error::IndexOutOfRange {
            index: 1250,
            len: 1250
        })
    ));
    // SAFETY: no other process writes the block while the views live.
    unsafe {
        assert_eq!(block.as_slice_of::<f64>()[3], 2.5);
        assert_eq!(&block.as_slice()[9_990..], b"0123456789");
    }

    let taken = SharedMemory::create_named(&name, 1).unwrap_err();
    assert!(
        matches!(&taken, Error::Io(e) if e.kind() == std::io::ErrorKind::AlreadyExists),
        "{taken}"
    );
    drop(other);
    assert!(exists(&name), "only the owner removes the name");
    drop(block);
    assert!(!exists(&name));
    let gone = SharedMemory::open(&name).unwrap_err();
    assert!(
        matches!(&gone, Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
        "{gone}"
    );
}

#[test]
fn bad_names_are_refused() {
    for bad in ["", "/", "a/b", "/a/b", ".", "..", &"x".repeat(251), "nul\0"] {
        let err = SharedMemory::create_named(bad, 1).unwrap_err();
        assert!(matches!(&err, Error::InvalidArgument(_)), "{bad:?}: {err}");
        assert!(SharedMemory::open(bad).is_err());
    }
}

#[test]
fn random_names_unlink_and_persist() {
    let a = SharedMemory::create(100).unwrap();
    let b = SharedMemory::create(100).unwrap();
    assert_ne!(a.name(), b.name());
    assert!(exists(a.name()));
    // Any handle may unlink, as in Python; the mapping stays usable.
    let name = a.name().to_string();
    SharedMemory::open(&name).unwrap().unlink().unwrap();
    assert!(!exists(&name));
    a.write(0, b"still here").unwrap();
    drop(a);

    // A persisted block outlives its creator's handle until someone unlinks it.
    let name = b.name().to_string();
    b.persist();
    assert!(!b.is_owner());
    drop(b);
    assert!(exists(&name));
    assert!(
        !SharedMemory::orphans().unwrap().contains(&name),
        "persisted is not orphaned"
    );
    SharedMemory::unlink_name(&name).unwrap();
    assert!(!exists(&name));
}

#[test]
fn a_file_not_made_by_us_is_refused() {
    let name = unique("foreign");
    let path = Path::new("/dev/shm").join(&name);
    std::fs::write(&path, vec![7u8; 8192]).unwrap();
    let err = SharedMemory::open(&name).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData),
        "{err}"
    );
}

fn attach_and_bump(name: String, by_handle: SharedMemory) {
    let by_name = SharedMemory::open(&name).unwrap();
    let x: u64 = by_name.get(0).unwrap();
    by_handle.set::<u64>(1, x + 1).unwrap();
}

/// Children attach by name and through a handle passed as an argument, under every method.
fn children_attach(method: StartMethod) {
    let block = SharedMemory::create_named(&unique("child"), 4096).unwrap();
    block.set::<u64>(0, 41).unwrap();
    let p = Process::new(
        attach_and_bump,
        (
            block.name().to_string(),
            SharedMemory::open(block.name()).unwrap(),
        ),
    )
    .start_method(method)
    .start()
    .unwrap();
    assert_eq!(join(&p), 0);
    assert_eq!(block.get::<u64>(1).unwrap(), 42);
    assert!(
        exists(block.name()),
        "a child's handles never remove the name"
    );
}

fn create_and_forget(name: String, exit_early: bool) {
    let block = SharedMemory::create_named(&name, 1 << 20).unwrap();
    block.write(0, b"child").unwrap();
    if exit_early {
        std::process::exit(0); // the handle is never dropped
    }
    std::mem::forget(block);
}

/// A creator that exits normally, even without dropping its handle, leaves nothing in /dev/shm.
fn normal_exit_removes_the_name(method: StartMethod) {
    for exit_early in [false, true] {
        let name = unique("exit");
        let p = Process::new(create_and_forget, (name.clone(), exit_early))
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(join(&p), 0);
        assert!(
            !exists(&name),
            "{name} left behind (exit_early: {exit_early})"
        );
    }
}

per_method!(children_attach, normal_exit_removes_the_name);

fn create_and_hang(name: String, ready: multiprocess::Connection) {
    let block = SharedMemory::create_named(&name, 4096).unwrap();
    ready.send(&()).unwrap();
    std::thread::park();
    drop(block);
}

/// Creators killed by SIGKILL leave their blocks; `orphans` lists them and `remove_orphans`
/// removes them. (The only test that makes orphans, so that no other test's blocks are in the
/// list.)
#[test]
fn crashed_creators_leave_orphans_that_can_be_removed() {
    let mut names = Vec::new();
    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ] {
        let name = unique("crash");
        let (mine, theirs) = multiprocess::pipe().unwrap();
        let p = Process::new(create_and_hang, (name.clone(), theirs))
            .start_method(method)
            .start()
            .unwrap();
        assert!(mine.poll(DEADLINE).unwrap());
        mine.recv::<()>().unwrap();
        assert!(
            !SharedMemory::orphans().unwrap().contains(&name),
            "its owner is alive"
        );
        p.kill().unwrap();
        assert_eq!(join(&p), -9);
        assert!(exists(&name), "a killed creator cannot remove its block");
        names.push(name);
    }
    let orphans = SharedMemory::orphans().unwrap();
    for name in &names {
        assert!(orphans.contains(name), "{name} not in {orphans:?}");
    }
    let removed = SharedMemory::remove_orphans().unwrap();
    for name in &names {
        assert!(removed.contains(name), "{name} not in {removed:?}");
        assert!(!exists(name));
    }
}

/// A process the library did not start (the test binary, run as a plain command) opens a block
/// by name, checks what this process wrote and answers in the block.
#[test]
fn an_unrelated_process_attaches_by_name() {
    let block = SharedMemory::create_named(&unique("unrelated"), 1 << 16).unwrap();
    for i in 0..block.size() / 8 {
        block.set::<u64>(i, i as u64 * 3).unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "unrelated_attacher", "--ignored", "--nocapture"])
        .env("MP_TEST_SHM_NAME", block.name())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(
        common::wait_gone(pid, DEADLINE),
        "the attacher did not finish"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "the attacher failed: {status}");
    assert_eq!(
        block.get::<u64>(0).unwrap(),
        u64::MAX,
        "no answer in the block"
    );
}

/// The other side of [`an_unrelated_process_attaches_by_name`] (does nothing when run alone).
#[test]
#[ignore = "run by an_unrelated_process_attaches_by_name as an independent process"]
fn unrelated_attacher() {
    let Ok(name) = std::env::var("MP_TEST_SHM_NAME") else {
        return;
    };
    let block = SharedMemory::open(&name).unwrap();
    assert!(!block.is_owner());
    for i in 1..block.size() / 8 {
        assert_eq!(block.get::<u64>(i).unwrap(), i as u64 * 3);
    }
    block.set::<u64>(0, u64::MAX).unwrap();
}
