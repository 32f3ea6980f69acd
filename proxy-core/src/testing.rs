//! Test fixtures shared by this crate's tests and by other crates' tests and benchmarks
//! (enable the `integration` feature): a real `redis-server` on a free loopback port, and
//! [`require_or_skip`], the one way a test handles a prerequisite (a server binary, root) that
//! the machine lacks.
//!
//! # Skipping
//!
//! A test that needs something a fresh machine may not have asks [`require_or_skip`] (or a
//! fixture built on it, such as [`RedisServer::start_or_skip`]). When the prerequisite is
//! missing the test returns early and one line per prerequisite and test binary is printed
//! (past the test harness's output capture) saying what was skipped and how to run it. With
//! [`REQUIRE_ALL_VAR`] (`PROXYSTORE_TESTS_REQUIRE_ALL=1`, set by `.ci/run`) a missing
//! prerequisite fails the test instead.
//!
//! ```
//! use proxy_core::testing::require_or_skip;
//!
//! fn have_root() -> Result<(), String> {
//!     Err("not running as root".to_string())
//! }
//!
//! # std::env::remove_var(proxy_core::testing::REQUIRE_ALL_VAR);
//! let Some(()) = require_or_skip(
//!     "the network-namespace tests",
//!     "run them as root: sudo -E cargo test --test netns",
//!     have_root(),
//! ) else {
//!     return; // skipped (one line was printed)
//! };
//! # unreachable!();
//! ```

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{Connector, Result};

/// The environment variable that turns skips into failures: when it is set to `1` (or `true`),
/// a test whose prerequisite is missing fails. `.ci/run` sets it.
pub const REQUIRE_ALL_VAR: &str = "PROXYSTORE_TESTS_REQUIRE_ALL";

/// Whether [`REQUIRE_ALL_VAR`] demands every test to run (`1`, `true`, `yes`).
pub fn tests_require_all() -> bool {
    std::env::var(REQUIRE_ALL_VAR).is_ok_and(|value| {
        matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes"
        )
    })
}

/// [`require_or_skip`] for a test that must run as root (network namespaces, another
/// user's files): `Some(())` as root, else a skip (or, under [`REQUIRE_ALL_VAR`], a failure)
/// naming `skipped`.
pub fn require_root(skipped: &str) -> Option<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    require_or_skip(
        skipped,
        "run the tests as root (CI does)",
        if root {
            Ok(())
        } else {
            Err("not running as root".to_string())
        },
    )
}

/// Gives a test what it needs, or decides that it is skipped.
///
/// `prerequisite` is `Ok(value)` when the machine has what the test needs, or `Err(reason)`
/// (say, "redis-server is not on PATH"). On `Err`, returns `None` after printing one line, once
/// per `skipped` and process, naming what was skipped, why, and `how_to_run` it. The line goes
/// straight to the process's stderr, so `cargo test` shows it even for passing tests.
///
/// # Panics
/// On `Err` when [`REQUIRE_ALL_VAR`] is set ([`tests_require_all`]): a machine that is meant to
/// run everything fails the test instead of skipping it.
#[must_use = "a test must return early when its prerequisite is missing"]
pub fn require_or_skip<T>(
    skipped: &str,
    how_to_run: &str,
    prerequisite: std::result::Result<T, String>,
) -> Option<T> {
    let reason = match prerequisite {
        Ok(value) => return Some(value),
        Err(reason) => reason,
    };
    if tests_require_all() {
        panic!("{skipped} cannot run: {reason} ({REQUIRE_ALL_VAR} is set, so this is a failure; {how_to_run})");
    }
    static REPORTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let first = REPORTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashSet::new)
        .insert(skipped.to_string());
    if first {
        // Not `eprintln!`: the test harness captures that for passing tests.
        let line = format!(
            "SKIPPED {skipped}: {reason}; {how_to_run} (set {REQUIRE_ALL_VAR}=1 to make this a failure)\n"
        );
        // Nothing useful to do if stderr is gone.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
    None
}

/// How long a freshly spawned server may take to answer `PING`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process on `127.0.0.1`, started on a free port, without persistence, and
/// killed when this value is dropped.
///
/// [`start_or_skip`](RedisServer::start_or_skip) is what tests use: on a machine without
/// `redis-server` it skips the test (see [`require_or_skip`]). [`start`](RedisServer::start)
/// panics instead, for benchmarks. A server that is installed but does not start is always a
/// failure.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    process: Option<Child>,
}

impl RedisServer {
    /// Starts a server without a password.
    ///
    /// # Panics
    /// If `redis-server` is not installed or does not start.
    #[must_use = "the server is killed when dropped"]
    pub fn start() -> Self {
        Self::start_with(None).unwrap_or_else(|missing| panic!("{missing}"))
    }

    /// Starts a server that requires `password` (`--requirepass`).
    ///
    /// # Panics
    /// If `redis-server` is not installed or does not start.
    #[must_use = "the server is killed when dropped"]
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_string())).unwrap_or_else(|missing| panic!("{missing}"))
    }

    /// Starts a server without a password, or returns `None` (after one printed line) when
    /// `redis-server` is not installed: the calling test returns early. See
    /// [`require_or_skip`].
    ///
    /// # Panics
    /// If `redis-server` is installed but does not start, or is missing while
    /// [`REQUIRE_ALL_VAR`] is set.
    #[must_use = "the server is killed when dropped"]
    pub fn start_or_skip() -> Option<Self> {
        Self::skip_if_missing(Self::start_with(None))
    }

    /// [`start_with_password`](RedisServer::start_with_password), skipping like
    /// [`start_or_skip`](RedisServer::start_or_skip).
    ///
    /// # Panics
    /// As [`start_or_skip`](RedisServer::start_or_skip).
    #[must_use = "the server is killed when dropped"]
    pub fn start_with_password_or_skip(password: &str) -> Option<Self> {
        Self::skip_if_missing(Self::start_with(Some(password.to_string())))
    }

    fn skip_if_missing(started: std::result::Result<Self, String>) -> Option<Self> {
        require_or_skip(
            "the tests that need a Redis server",
            "install redis-server (e.g. `apt-get install -y redis-server`) to run them",
            started,
        )
    }

    /// Starts a server; `Err` (a reason) only when `redis-server` is not installed.
    ///
    /// # Panics
    /// If `redis-server` is installed but does not start.
    fn start_with(password: Option<String>) -> std::result::Result<Self, String> {
        let mut server = RedisServer {
            port: 0,
            password,
            process: None,
        };
        // Another process may take the free port between our probe and the server's bind;
        // then the server exits at once and another port is tried.
        let mut last_failure = String::new();
        for _ in 0..5 {
            server.port = free_loopback_port();
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(SpawnError::NotInstalled) => {
                    return Err("redis-server is not installed (not on PATH)".to_string())
                }
                Err(SpawnError::Failed(failure)) => last_failure = failure,
            }
        }
        panic!("could not start redis-server: {last_failure}");
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/0`, with the password if the server has one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => self.url_without_password(),
        }
    }

    /// `redis://127.0.0.1:<port>/0`, without any password.
    pub fn url_without_password(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (as a crash would: no shutdown handshake) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // Errors mean the process already exited; either way it is gone after `wait`.
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts the server again on the same port (after [`stop`](RedisServer::stop)). It comes
    /// back empty.
    ///
    /// # Panics
    /// If the server does not start.
    pub fn restart(&mut self) {
        self.stop();
        match self.spawn() {
            Ok(()) => {}
            Err(SpawnError::NotInstalled) => {
                panic!("redis-server is gone from PATH: cannot restart it")
            }
            Err(SpawnError::Failed(failure)) => panic!(
                "could not restart redis-server on port {}: {failure}",
                self.port
            ),
        }
    }

    fn spawn(&mut self) -> std::result::Result<(), SpawnError> {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let mut process = command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SpawnError::NotInstalled
            } else {
                SpawnError::Failed(format!("spawning redis-server: {e}"))
            }
        })?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = process.try_wait() {
                return Err(SpawnError::Failed(format!(
                    "redis-server on port {port} exited at start with {status}"
                )));
            }
            if is_served_by(self.port, self.password.as_deref(), process.id()) {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = process.kill();
                let _ = process.wait();
                return Err(SpawnError::Failed(format!(
                    "redis-server on port {port} did not answer within {STARTUP_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Why `redis-server` did not start.
enum SpawnError {
    /// No `redis-server` executable on PATH: the test may be skipped.
    NotInstalled,
    /// It is installed but failed: always a test failure.
    Failed(String),
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Picks `n` distinct loopback ports that were free a moment ago (all held open while
/// choosing, so none repeats), between 20000 and 31999: below the kernel's ephemeral range
/// (32768 and up by default), from which ZeroMQ peers binding port 0 get theirs, so such a
/// peer cannot take one of these before the process meant to listen on it does. Consecutive
/// calls start their search at different ports. The one free-port helper of the tests, the
/// examples and the benchmarks (timely host files, test servers).
///
/// # Errors
/// [`Error::Config`](crate::Error::Config) when fewer than `n` ports are free there.
pub fn free_loopback_ports(n: usize) -> Result<Vec<u16>> {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(call.wrapping_mul(97))
        % SPAN;
    let mut listeners = Vec::with_capacity(n);
    for offset in 0..SPAN {
        if listeners.len() == n {
            break;
        }
        let port = (LOW + (start + offset) % SPAN) as u16;
        if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            listeners.push((port, listener));
        }
    }
    if listeners.len() < n {
        return Err(crate::Error::Config {
            what: format!("{n} free loopback ports"),
            message: format!(
                "only {} free between {LOW} and {}",
                listeners.len(),
                LOW + SPAN - 1
            ),
        });
    }
    Ok(listeners.into_iter().map(|(port, _)| port).collect())
}

/// One port from [`free_loopback_ports`].
///
/// # Panics
/// If no port is free (a test cannot go on without one).
pub fn free_loopback_port() -> u16 {
    match free_loopback_ports(1) {
        Ok(ports) => ports[0],
        Err(e) => panic!("{e}"),
    }
}

/// Whether the redis server answering on `port` is the process `pid` (and not, say, a server
/// another test started on the same port a moment earlier).
fn is_served_by(port: u16, password: Option<&str>, pid: u32) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let mut request = String::new();
    if let Some(password) = password {
        request.push_str(&format!("AUTH {password}\r\n"));
    }
    request.push_str("INFO server\r\n");
    if stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
        || stream.write_all(request.as_bytes()).is_err()
    {
        return false;
    }
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut chunk) {
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        let served_by = text
            .split_once("process_id:")
            .and_then(|(_, rest)| rest.split_once("\r\n"))
            .map(|(id, _)| id.trim().parse::<u32>());
        if let Some(id) = served_by {
            return id == Ok(pid);
        }
    }
    false
}

/// A connector bundled with the server it talks to, so that the server lives exactly as long
/// as the connector (and is killed when both are dropped). Forwards every operation.
#[derive(Debug)]
pub struct WithServer<C> {
    connector: C,
    server: RedisServer,
}

impl<C: Connector> WithServer<C> {
    /// Bundles `connector` with `server`.
    pub fn new(connector: C, server: RedisServer) -> Self {
        WithServer { connector, server }
    }

    /// The bundled connector.
    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// The bundled server.
    pub fn server(&self) -> &RedisServer {
        &self.server
    }
}

impl<C: Connector> Connector for WithServer<C> {
    crate::delegate_connector!(connector);
}
