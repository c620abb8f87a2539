//! `cluster-map`, `cluster-apply` and `cluster-node-loss`: the cluster pool through one local
//! `redis-server` (started here unless `--broker` names one), with one node of 2 worker
//! processes (this very binary, re-executed with `MULTIPROCESS_NODE` set).
//!
//! `--vs-python` runs Celery (prefork pool of 2, Redis broker and result backend, the same
//! server) in the same run; the bench installs it into `bench/python/.venv` on first use.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiprocess::cluster::Pool;

use crate::report;

/// The broker to use: `--broker`, or a server started here (kept alive by the first half).
fn broker_url(broker: Option<String>) -> Result<(Option<Server>, String), String> {
    match broker {
        Some(url) => Ok((None, url)),
        None => {
            let server = start_server()?;
            let url = server.url.clone();
            Ok((Some(server), url))
        }
    }
}

/// The cluster key of the bench (a bench, not a secret).
const KEY: &str = "mp-bench cluster key, not a secret";

fn square(x: u64) -> u64 {
    x * x
}

/// A process that is killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `redis-server` of the bench, on a free port, in a temporary directory.
struct Server {
    _child: Reaped,
    dir: PathBuf,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server() -> Result<Server, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let dir = std::env::temp_dir().join(format!("mp-bench-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start redis-server (apt-get install redis-server): {e}"))?;
    let server = Server {
        _child: Reaped(child),
        dir,
        url: format!("redis://127.0.0.1:{port}"),
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(server)
}

/// A node of this binary with `processes` workers.
fn start_node(url: &str, processes: usize, ttl: Option<Duration>) -> Result<Reaped, String> {
    let mut cmd = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    cmd.arg("--version")
        .env("MULTIPROCESS_NODE", url)
        .env("MULTIPROCESS_CLUSTER_KEY", KEY)
        .env("MULTIPROCESS_NODE_PROCESSES", processes.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(ttl) = ttl {
        cmd.env("MULTIPROCESS_CLUSTER_TTL_MS", ttl.as_millis().to_string());
    }
    cmd.spawn().map(Reaped).map_err(|e| e.to_string())
}

fn client(url: &str) -> Result<Pool, String> {
    let pool = Pool::builder()
        .broker(url)
        .key(KEY)
        .build()
        .map_err(|e| e.to_string())?;
    pool.wait_for_nodes(1, Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    Ok(pool)
}

/// `cluster-map`: `map(square, 0..tasks)`, one task per item; tasks per second.
pub fn map(broker: Option<String>, tasks: u64, runs: u32, vs_python: bool) -> Result<(), String> {
    let (_server, url) = broker_url(broker)?;
    let ours = {
        let _node = start_node(&url, 2, None)?;
        let pool = client(&url)?;
        pool.map(square, 0..100).map_err(|e| e.to_string())?; // warm-up
        let mut per_run = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let out = pool.map(square, 0..tasks).map_err(|e| e.to_string())?;
            let rate = tasks as f64 / start.elapsed().as_secs_f64();
            assert_eq!(out.len() as u64, tasks);
            per_run.push(rate);
        }
        report::median(per_run)
    };
    report::figure("cluster-map", None, ours, "tasks/s");
    if vs_python {
        let celery = celery_map(&url, tasks, runs)?;
        report::figure("cluster-map-celery", None, celery, "tasks/s");
        report::rate_ratio("cluster-map", ours, celery);
    }
    Ok(())
}

/// `cluster-apply`: one `apply` at a time; p50 and p99 of the round trip in µs.
pub fn apply(broker: Option<String>, tasks: u64) -> Result<(), String> {
    let (_server, url) = broker_url(broker)?;
    let _node = start_node(&url, 2, None)?;
    let pool = client(&url)?;
    for i in 0..200 {
        pool.apply(square, (i,)).map_err(|e| e.to_string())?; // warm-up
    }
    let mut times = Vec::with_capacity(tasks as usize);
    for i in 0..tasks {
        let start = Instant::now();
        let r = pool.apply(square, (i,)).map_err(|e| e.to_string())?;
        times.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r, i * i);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    report::figure("cluster-apply-p50", None, at(0.5), "us");
    report::figure("cluster-apply-p99", None, at(0.99), "us");
    Ok(())
}

/// Runs on a node: holds its worker until killed.
fn forever() -> u64 {
    loop {
        std::thread::park();
    }
}

/// `cluster-node-loss`: SIGKILL of a node running a task, until the client has `NodeLost`.
pub fn node_loss(broker: Option<String>, ttl: Duration, runs: u32) -> Result<(), String> {
    let (_server, url) = broker_url(broker)?;
    let mut per_run = Vec::new();
    for _ in 0..runs {
        let mut node = start_node(&url, 1, Some(ttl))?;
        let pool = Pool::builder()
            .broker(&url)
            .key(KEY)
            .heartbeat_ttl(ttl)
            .build()
            .map_err(|e| e.to_string())?;
        pool.wait_for_nodes(1, Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        let r = pool.apply_async(forever, ()).map_err(|e| e.to_string())?;
        let status_busy = || {
            multiprocess::cluster::status(&url)
                .map(|s| s.nodes.iter().any(|n| n.busy > 0))
                .unwrap_or(false)
        };
        let start = Instant::now();
        while !status_busy() {
            if start.elapsed() > Duration::from_secs(30) {
                return Err("the task did not start".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = node.0.kill();
        let killed = Instant::now();
        let outcome = r.get_timeout(Duration::from_secs(120));
        let took = killed.elapsed().as_secs_f64();
        match outcome {
            Err(multiprocess::Error::NodeLost { .. }) => per_run.push(took),
            other => return Err(format!("expected NodeLost, got {other:?}")),
        }
    }
    report::figure("cluster-node-loss", None, report::median(per_run), "s");
    Ok(())
}

/// The venv with Celery, made on first use.
fn celery_python() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(".venv");
    let python = venv.join("bin").join("python");
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| e.to_string())?;
        if !made.success() {
            return Err("python3 -m venv failed (apt-get install python3-venv)".into());
        }
    }
    let has_celery = Command::new(&python)
        .args(["-c", "import celery, redis"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_celery {
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "celery[redis]==5.5.3"])
            .status()
            .map_err(|e| e.to_string())?;
        if !pip.success() {
            return Err("pip install celery[redis] failed".into());
        }
    }
    Ok(python)
}

/// Celery's tasks/s for the same map, on the same server (database 1).
fn celery_map(url: &str, tasks: u64, runs: u32) -> Result<f64, String> {
    let python = celery_python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join("celery_map.py");
    let out = Command::new(python)
        .arg(&script)
        .args([format!("{url}/1"), tasks.to_string(), runs.to_string()])
        .current_dir(script.parent().unwrap_or(Path::new(".")))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "celery_map.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    crate::python::value(&script, &out.stdout)
}
