//! Helpers shared by the integration tests: deadlines on every blocking step, and one test per
//! start method.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use multiprocess::{Connection, ProcessHandle};
use serde::de::DeserializeOwned;

/// The longest any single blocking step of a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Joins `p` within [`DEADLINE`], killing it and failing the test otherwise.
pub fn join(p: &ProcessHandle) -> i32 {
    match p.join_timeout(DEADLINE).expect("join failed") {
        Some(code) => code,
        None => {
            let _ = p.kill();
            let _ = p.join_timeout(DEADLINE);
            panic!("{} did not exit within {DEADLINE:?}", p.name());
        }
    }
}

/// Receives one value within [`DEADLINE`].
pub fn recv<T: DeserializeOwned>(c: &Connection) -> T {
    assert!(
        c.poll(DEADLINE).expect("poll failed"),
        "no message within {DEADLINE:?}"
    );
    c.recv().expect("recv failed")
}

/// Whether a process with this pid still exists (not yet reaped) anywhere.
pub fn pid_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Waits up to `timeout` for the process `pid` (not necessarily our child) to exit.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if fd < 0 {
        return true; // no such process any more
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for the call; fd is closed right after.
    let ready = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) } == 1;
    // SAFETY: we own fd.
    unsafe { libc::close(fd) };
    ready
}

/// What [`output_within`] gives back.
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin from /dev/null) with stdout and stderr captured, killing it and failing the
/// test if it has not exited, and closed both, within [`DEADLINE`] each.
pub fn output_within(cmd: &mut Command) -> Captured {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start the command");
    // Both pipes are read at once, so a chatty child never blocks on a full one.
    let (tx, rx) = mpsc::channel();
    let pipes: [(usize, Box<dyn Read + Send>); 2] = [
        (0, Box::new(child.stdout.take().expect("stdout"))),
        (1, Box::new(child.stderr.take().expect("stderr"))),
    ];
    for (index, mut pipe) in pipes {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send((index, bytes));
        });
    }
    if !wait_gone(child.id(), DEADLINE) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not exit within {DEADLINE:?}");
    }
    let status = child.wait().expect("wait");
    let mut out = [String::new(), String::new()];
    for _ in 0..2 {
        let (index, bytes) = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("{cmd:?} exited but its output stayed open"));
        out[index] = String::from_utf8_lossy(&bytes).into_owned();
    }
    let [stdout, stderr] = out;
    Captured {
        status,
        stdout,
        stderr,
    }
}

/// A small deterministic generator (xorshift64*), seeded per test run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A seed that differs from run to run (print it with a failure to replay one).
pub fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id())
}

/// Defines, for each named function `fn name(method: StartMethod)`, a module with one test per
/// start method: `name::fork`, `name::spawn`, `name::forkserver`.
#[macro_export]
macro_rules! per_method {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use multiprocess::StartMethod;
                #[test]
                fn fork() {
                    super::$name(StartMethod::Fork)
                }
                #[test]
                fn spawn() {
                    super::$name(StartMethod::Spawn)
                }
                #[test]
                fn forkserver() {
                    super::$name(StartMethod::ForkServer)
                }
            }
        )*
    };
}

/// A value that refuses to be encoded (and decoded).
#[derive(Debug)]
pub struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to be encoded"))
    }
}

impl<'de> serde::Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("refuses to be decoded"))
    }
}

/// A shared-memory name no other test (or run) uses: `mp-test-<tag>-<pid>-<n>`.
pub fn unique_shm_name(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("mp-test-{tag}-{}-{n}", std::process::id())
}

/// Whether a shared-memory name exists (in `/dev/shm`).
pub fn shm_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// A pool of `n` workers started with `method`.
pub fn pool(method: multiprocess::StartMethod, n: usize) -> multiprocess::Pool {
    multiprocess::Pool::builder()
        .processes(n)
        .start_method(method)
        .build()
        .unwrap()
}
