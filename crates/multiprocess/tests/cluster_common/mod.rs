//! Helpers of the cluster tests: a real `redis-server` per test (on a unix socket in a
//! temporary directory, or TLS on a free port), nodes as separate processes (this very test
//! binary, re-executed with `MULTIPROCESS_NODE` set: `init_on_load!` makes it serve), and
//! waits that always have a deadline. Every process started here is killed and reaped on drop.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest any single step may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The cluster key of the tests.
pub const KEY: &[u8] = b"the cluster tests' shared key";

/// A node's heartbeat time-to-live in the tests: short, so lost nodes are noticed fast, and
/// long enough for a loaded machine.
pub const TTL: Duration = Duration::from_millis(3000);

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mp-cluster-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `done` until it holds, failing the test after [`DEADLINE`]. For state that lives in
/// another process (a file, a key in Redis): there is no event to wait on.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Waits until the cluster behind `url` has `n` live nodes (of any build or key).
pub fn wait_for_live_nodes(url: &str, n: usize) {
    wait_until(&format!("{n} live nodes"), || {
        multiprocess::cluster::status(url).is_ok_and(|s| s.nodes.len() == n)
    });
}

/// An entry's fields written again into `stream` (a new id), some replaced: what someone with
/// write access to Redis, but without the cluster key, can do.
pub fn forge_entry(
    conn: &mut redis::Connection,
    stream: &str,
    fields: &[(&str, Vec<u8>)],
) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(value.as_slice());
    }
    cmd.query(conn).expect("XADD")
}

/// Kills and reaps a child, within the deadline.
fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for a child to exit, within the deadline; its exit status.
pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > DEADLINE {
            kill_and_reap(child);
            panic!("a child did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill only sends a signal.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// How a test's `redis-server` is set up.
#[derive(Clone, Default)]
pub struct RedisOptions {
    /// `--requirepass`.
    pub password: Option<String>,
    /// An ACL user and its password (its rules: the `mp:` keys, no @dangerous command).
    pub user: Option<(String, String)>,
    /// Append-only file, fsync on every write.
    pub aof: bool,
    /// Serve TLS on a TCP port, with certificates made in the directory.
    pub tls: bool,
}

/// A `redis-server` of one test.
pub struct Redis {
    pub dir: TempDir,
    options: RedisOptions,
    child: Option<Child>,
    /// The TLS port, if any.
    port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(RedisOptions::default())
    }

    pub fn start_with(options: RedisOptions) -> Redis {
        let dir = TempDir::new("redis");
        let port = if options.tls {
            make_certificates(dir.path());
            free_port()
        } else {
            0
        };
        let mut redis = Redis {
            dir,
            options,
            child: None,
            port,
        };
        redis.launch();
        redis
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// Starts the server (again, with the same files) and waits until it answers.
    pub fn launch(&mut self) {
        let d = self.dir.path();
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port").arg(if self.options.tls {
            "0".to_string()
        } else {
            "0".into()
        });
        cmd.args(["--unixsocket"]).arg(self.socket());
        cmd.args(["--unixsocketperm", "700", "--save", "", "--daemonize", "no"]);
        cmd.arg("--dir").arg(d);
        cmd.arg("--logfile").arg(d.join("redis.log"));
        if self.options.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if let Some(pw) = &self.options.password {
            cmd.args(["--requirepass", pw]);
        }
        if let Some((user, pw)) = &self.options.user {
            // Only the cluster's keys, and no command of the @dangerous category (KEYS,
            // CONFIG, FLUSHALL, ...): what an operator gives the cluster's user.
            let rules = [
                "on",
                &format!(">{pw}"),
                "~mp:*",
                "&*",
                "+@all",
                "-@dangerous",
            ];
            cmd.args(["--user", user]).args(rules);
            cmd.args(["--user", "default", "off"]);
        }
        if self.options.tls {
            cmd.arg("--tls-port").arg(self.port.to_string());
            cmd.arg("--tls-cert-file").arg(d.join("server.crt"));
            cmd.arg("--tls-key-file").arg(d.join("server.key"));
            cmd.arg("--tls-ca-cert-file").arg(d.join("ca.crt"));
            cmd.args(["--tls-auth-clients", "no"]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        // The server dies with the test process (even one killed by a signal).
        // SAFETY: prctl in the child before exec is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(
            cmd.spawn()
                .expect("redis-server must be on PATH (see .ci/deps)"),
        );
        let socket = self.socket();
        wait_until("redis-server to answer", || ping(&socket));
    }

    /// The URL of the server, with the credentials of its options.
    pub fn url(&self) -> String {
        if self.options.tls {
            let auth = self.auth_part();
            return format!("rediss://{auth}localhost:{}", self.port);
        }
        let mut query = Vec::new();
        if let Some((user, pw)) = &self.options.user {
            query.push(format!("user={user}&pass={pw}"));
        } else if let Some(pw) = &self.options.password {
            query.push(format!("pass={pw}"));
        }
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        format!("unix://{}{q}", self.socket().display())
    }

    fn auth_part(&self) -> String {
        match (&self.options.user, &self.options.password) {
            (Some((u, p)), _) => format!("{u}:{p}@"),
            (None, Some(p)) => format!(":{p}@"),
            _ => String::new(),
        }
    }

    /// The CA certificate of a TLS server.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("ca.crt")).expect("ca.crt")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A plain connection for looking inside (as the admin: the unix socket, with the password).
    pub fn admin(&self) -> redis::Connection {
        let mut url = format!("unix://{}", self.socket().display());
        if let Some((user, pw)) = &self.options.user {
            url.push_str(&format!("?user={user}&pass={pw}"));
        } else if let Some(pw) = &self.options.password {
            url.push_str(&format!("?pass={pw}"));
        }
        redis::Client::open(url)
            .and_then(|c| c.get_connection_with_timeout(DEADLINE))
            .expect("admin connection")
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a server answers on the socket (with or without a password: NOAUTH counts).
fn ping(socket: &Path) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => !buf[..n].starts_with(b"-LOADING"),
        _ => false,
    }
}

/// A free TCP port on 127.0.0.1 (bound then released: the server binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A CA and a server certificate for `localhost`, made with the `openssl` command.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be on PATH");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=multiprocess test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "ext.cnf",
    ]);
}

/// How a test's node is started.
#[derive(Clone)]
pub struct NodeSpec {
    pub url: String,
    pub processes: usize,
    pub key: Vec<u8>,
    pub ttl: Duration,
    /// The binary to run (default: this test binary).
    pub exe: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

impl NodeSpec {
    pub fn new(url: &str) -> NodeSpec {
        NodeSpec {
            url: url.to_string(),
            processes: 2,
            key: KEY.to_vec(),
            ttl: TTL,
            exe: None,
            ca: None,
        }
    }

    pub fn processes(mut self, n: usize) -> Self {
        self.processes = n;
        self
    }

    pub fn key(mut self, key: &[u8]) -> Self {
        self.key = key.to_vec();
        self
    }

    pub fn exe(mut self, exe: PathBuf) -> Self {
        self.exe = Some(exe);
        self
    }

    pub fn start(&self) -> Node {
        let log = TempDir::new("node");
        let stderr = std::fs::File::create(log.path().join("stderr")).expect("log");
        let exe = self
            .exe
            .clone()
            .unwrap_or_else(|| std::env::current_exe().expect("exe"));
        let mut cmd = Command::new(exe);
        // Should the binary ever reach its test harness, it runs nothing.
        cmd.args(["--exact", "no test has this name"]);
        cmd.env("MULTIPROCESS_NODE", &self.url)
            .env(
                "MULTIPROCESS_CLUSTER_KEY",
                std::ffi::OsStr::from_bytes(&self.key),
            )
            .env("MULTIPROCESS_NODE_PROCESSES", self.processes.to_string())
            .env(
                "MULTIPROCESS_CLUSTER_TTL_MS",
                self.ttl.as_millis().to_string(),
            )
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(ca) = &self.ca {
            cmd.env("MULTIPROCESS_CLUSTER_CA", ca);
        }
        // The node dies with the test process (even one killed by a signal).
        // SAFETY: prctl in the child before exec is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start a node");
        Node {
            child: Some(child),
            log,
        }
    }
}

use std::os::unix::ffi::OsStrExt;

/// A node process.
pub struct Node {
    child: Option<Child>,
    log: TempDir,
}

impl Node {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// What the node wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path().join("stderr")).unwrap_or_default()
    }

    /// Waits until the node's stderr contains `text`.
    pub fn wait_for_line(&self, text: &str) {
        wait_until(&format!("the node to say {text:?}"), || {
            self.stderr().contains(text)
        });
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// SIGTERM, then the exit status (within the deadline).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), libc::SIGTERM);
        wait_exit(&mut child)
    }

    /// Waits for the node to exit by itself.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_exit(&mut child)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id(), libc::SIGCONT);
        }
        self.kill();
    }
}

/// A cluster pool on `url` with the test key and TTL.
pub fn pool(url: &str) -> multiprocess::cluster::Pool {
    builder(url).build().expect("cluster pool")
}

pub fn builder(url: &str) -> multiprocess::cluster::PoolBuilder {
    multiprocess::cluster::Pool::builder()
        .broker(url)
        .key(KEY.to_vec())
        .heartbeat_ttl(TTL)
}

/// The number of keys in the server.
pub fn dbsize(conn: &mut redis::Connection) -> i64 {
    redis::cmd("DBSIZE").query(conn).expect("DBSIZE")
}

/// A task: creates `path`, failing if it exists, so each run leaves one visible trace.
pub fn touch(path: String) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .is_ok()
}
