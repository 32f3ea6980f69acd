//! Test fixtures shared by this crate's tests and by other crates' tests and benchmarks
//! (enable the `integration` feature): a real `redis-server` on a free loopback port.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Connector, ConnectorConfig, Key, Result};

/// How long a freshly spawned server may take to answer `PING`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process on `127.0.0.1`, started on a free port, without persistence, and
/// killed when this value is dropped.
///
/// The fixture panics, with a message saying what to install or what failed, when the server
/// cannot be started: a test that needs redis fails rather than silently passing.
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
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a server that requires `password` (`--requirepass`).
    ///
    /// # Panics
    /// If `redis-server` is not installed or does not start.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_string()))
    }

    fn start_with(password: Option<String>) -> Self {
        let mut server = RedisServer {
            port: 0,
            password,
            process: None,
        };
        // Another process may take the free port between our probe and the server's bind;
        // then the server exits at once and another port is tried.
        let mut last_failure = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(failure) => last_failure = failure,
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
        if let Err(failure) = self.spawn() {
            panic!(
                "could not restart redis-server on port {}: {failure}",
                self.port
            );
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
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
                panic!(
                    "redis-server is not installed (or not on PATH): the redis tests need a real \
                     server. Install it, e.g. `apt-get install -y redis-server`."
                );
            }
            format!("spawning redis-server: {e}")
        })?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = process.try_wait() {
                return Err(format!(
                    "redis-server on port {port} exited at start with {status}"
                ));
            }
            if is_served_by(self.port, self.password.as_deref(), process.id()) {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = process.kill();
                let _ = process.wait();
                return Err(format!(
                    "redis-server on port {port} did not answer within {STARTUP_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free on the loopback interface a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port to find a free one: {e}"))
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
    fn put(&self, data: Bytes) -> Result<Key> {
        self.connector.put(data)
    }
    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.connector.get(key)
    }
    fn exists(&self, key: &Key) -> Result<bool> {
        self.connector.exists(key)
    }
    fn evict(&self, key: &Key) -> Result<()> {
        self.connector.evict(key)
    }
    fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
        self.connector.put_batch(data)
    }
    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        self.connector.get_batch(keys)
    }
    fn close(&self) -> Result<()> {
        self.connector.close()
    }
    fn config(&self) -> ConnectorConfig {
        self.connector.config()
    }
    fn object_count(&self) -> Option<usize> {
        self.connector.object_count()
    }
}
