//! One connection to the Redis broker that survives the broker's restarts.
//!
//! The synchronous `redis` crate gives a plain connection and no manager: a dropped connection
//! stays dropped. A [`Broker`] wraps one connection and reconnects it with exponential backoff
//! (1 ms doubling to 1 s) when an operation fails for a reason that a new connection can cure
//! (I/O errors, a refused or reset connection, a server still loading its append-only file).
//! Two ways to run an operation:
//!
//! - [`Broker::run`] retries the whole operation on a fresh connection: only for operations
//!   that are *idempotent* (every script of the cluster is written so: a task submitted twice
//!   is added once, an outcome recorded twice is recorded once, a read names what it has seen);
//! - [`Broker::run_once`] retries only when the operation cannot have reached the server (the
//!   connection could not be made); after an ambiguous failure it reports [`Error::Broker`] (a
//!   queue's `put`/`get`, which would otherwise duplicate or lose an item).
//!
//! Errors that no reconnection cures (a wrong password: [`Error::Auth`]; a wrong type) are
//! reported at once. [`Broker::generation`] counts reconnections, so that a caller can look
//! again at what the broker may have changed behind a lost reply (a node re-reads the entries
//! it owns).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::error::{Error, Result};

/// Where the broker is and how to reach it.
#[derive(Clone, Debug)]
pub(crate) struct BrokerConfig {
    /// `redis://[user:password@]host:port[/db]`, `rediss://…` (TLS) or `unix:///path`.
    pub url: String,
    /// A PEM CA certificate to trust for `rediss://` instead of the system's roots.
    pub tls_ca: Option<Vec<u8>>,
    /// How long an operation keeps reconnecting before it fails (`None`: for ever).
    pub retry_for: Option<Duration>,
}

impl BrokerConfig {
    /// The URL without its password, for messages.
    pub(crate) fn display_url(&self) -> String {
        match (self.url.find("://"), self.url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://…@{}", &self.url[..scheme], &self.url[at + 1..])
            }
            _ => self.url.clone(),
        }
    }
}

/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the broker that reconnects.
pub(crate) struct Broker {
    config: Arc<BrokerConfig>,
    client: redis::Client,
    conn: Option<redis::Connection>,
    /// How many times a lost connection was replaced.
    generation: u64,
    /// The longest a reply may take (`None`: no limit); blocking reads add their own wait.
    read_timeout: Option<Duration>,
    /// How long an operation keeps reconnecting (starts as the config's).
    retry_for: Option<Duration>,
    /// Set by the owner to stop reconnecting at once (the party is shutting down).
    cancel: Option<Arc<AtomicBool>>,
}

impl Broker {
    /// Connects now: a broker that is down, or refuses the credentials, is an error at once.
    pub(crate) fn connect(config: Arc<BrokerConfig>) -> Result<Broker> {
        let client = open_client(&config)?;
        let mut broker = Broker {
            retry_for: config.retry_for,
            config,
            client,
            conn: None,
            generation: 0,
            read_timeout: Some(Duration::from_secs(30)),
            cancel: None,
        };
        let conn = broker
            .client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| broker.error(e))?;
        broker.conn = Some(conn);
        broker.run_once(|c| redis::cmd("PING").query::<()>(c))?;
        Ok(broker)
    }

    /// A second connection to the same broker.
    pub(crate) fn another(&self) -> Result<Broker> {
        Broker::connect(Arc::clone(&self.config))
    }

    /// How many times the connection was replaced.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The broker's settings.
    pub(crate) fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Sets how long operations keep reconnecting (`None`: for ever).
    pub(crate) fn set_retry_for(&mut self, limit: Option<Duration>) {
        self.retry_for = limit;
    }

    /// Stops reconnecting as soon as `flag` is set: the operation fails instead.
    pub(crate) fn cancel_on(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = Some(flag);
    }

    /// Sets how long a reply may take, on this and later connections (`None`: no limit).
    pub(crate) fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
        if let Some(c) = &self.conn {
            let _ = c.set_read_timeout(timeout);
        }
    }

    /// Runs an idempotent operation, reconnecting and running it again after a failure that
    /// a new connection can cure.
    pub(crate) fn run<T>(
        &mut self,
        mut op: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(1);
        loop {
            let attempt = match self.connection(started) {
                Ok(conn) => op(conn),
                Err(e) => return Err(e),
            };
            match attempt {
                Ok(v) => return Ok(v),
                Err(e) if curable(&e) => {
                    self.conn = None;
                    self.wait_before_retry(started, &mut backoff, &e)?;
                }
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    /// Runs an operation that must not run twice: after a failure that may have reached the
    /// server, reports it instead of running it again.
    pub(crate) fn run_once<T>(
        &mut self,
        op: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let conn = self.connection(Instant::now())?;
        op(conn).map_err(|e| {
            if curable(&e) {
                self.conn = None;
            }
            self.error(e)
        })
    }

    /// The live connection, made anew (with backoff) if the last one was lost.
    fn connection(&mut self, started: Instant) -> Result<&mut redis::Connection> {
        let mut backoff = Duration::from_millis(1);
        while self.conn.is_none() {
            match self.client.get_connection_with_timeout(CONNECT_TIMEOUT) {
                Ok(conn) => {
                    let _ = conn.set_read_timeout(self.read_timeout);
                    self.conn = Some(conn);
                    self.generation += 1;
                }
                Err(e) if curable(&e) => self.wait_before_retry(started, &mut backoff, &e)?,
                Err(e) => return Err(self.error(e)),
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Broker("no connection".into()))
    }

    /// Sleeps before the next attempt (this is the backoff, not a synchronisation), or gives
    /// up once the retry budget is spent.
    fn wait_before_retry(
        &self,
        started: Instant,
        backoff: &mut Duration,
        last: &RedisError,
    ) -> Result<()> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Acquire))
        {
            return Err(Error::Broker(format!(
                "{}: stopped reconnecting (shutting down): {last}",
                self.config.display_url()
            )));
        }
        if self
            .retry_for
            .is_some_and(|limit| started.elapsed() + *backoff > limit)
        {
            return Err(Error::Broker(format!(
                "{} could not be reached for {:.1} s: {last}",
                self.config.display_url(),
                started.elapsed().as_secs_f64()
            )));
        }
        std::thread::sleep(*backoff);
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        Ok(())
    }

    /// The library's error for a Redis error.
    fn error(&self, e: RedisError) -> Error {
        broker_error(&self.config, e)
    }
}

/// The library's error for a Redis error on the broker `config`.
pub(crate) fn broker_error(config: &BrokerConfig, e: RedisError) -> Error {
    let auth = matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm)
    ) || e.code().is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH");
    if auth {
        Error::Auth(format!("{} refused us: {e}", config.display_url()))
    } else {
        Error::Broker(format!("{}: {e}", config.display_url()))
    }
}

/// Whether a new connection may cure this error.
fn curable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::BusyLoading)
                | ErrorKind::Server(ServerErrorKind::TryAgain)
                | ErrorKind::Server(ServerErrorKind::MasterDown)
        )
}

/// A client for the broker URL, with the configured CA for TLS, and `TCP_NODELAY` (a request
/// or a reply never waits for the previous segment's acknowledgement).
fn open_client(config: &BrokerConfig) -> Result<redis::Client> {
    use redis::IntoConnectionInfo;
    let bad =
        |e: RedisError| Error::Broker(format!("bad broker URL {}: {e}", config.display_url()));
    let info = config.url.as_str().into_connection_info().map_err(bad)?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let info = info.set_tcp_settings(tcp);
    match &config.tls_ca {
        Some(ca) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        None => redis::Client::open(info),
    }
    .map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        let config = BrokerConfig {
            url: "redis://user:secret@host:6379/0".into(),
            tls_ca: None,
            retry_for: None,
        };
        assert_eq!(config.display_url(), "redis://…@host:6379/0");
    }

    #[test]
    fn a_broker_that_is_down_fails_within_the_retry_budget() {
        let dir = std::env::temp_dir().join(format!("mp-broker-{}", std::process::id()));
        let config = Arc::new(BrokerConfig {
            url: format!("unix://{}/absent.sock", dir.display()),
            tls_ca: None,
            retry_for: Some(Duration::from_millis(50)),
        });
        let started = Instant::now();
        assert!(matches!(Broker::connect(config), Err(Error::Broker(_))));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
