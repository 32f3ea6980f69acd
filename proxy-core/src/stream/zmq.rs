//! ZeroMQ PUB/SUB: events straight from the producer's process to its subscribers.
//!
//! The publisher binds an `XPUB` socket; each subscriber connects a `SUB` socket to it (as
//! ProxyStore's ZeroMQ shim: no broker). A message is three frames: the topic followed by a
//! zero byte (so that subscribing to `a` does not also deliver topic `ab`), the
//! [envelope](super::seal) (publisher id, per-topic sequence number, time, proof), and the
//! encoded event batch.
//!
//! - Nothing is dropped silently: the publisher blocks when a subscriber lags by the high
//!   water mark (`ZMQ_XPUB_NODROP`), for at most the send timeout, then reports
//!   [`Error::Timeout`]; a subscriber reports a gap in the sequence numbers as an error.
//! - Under the cluster secret every message carries a MAC keyed by a key derived from the
//!   secret with the streams' own context; subscribers refuse messages without a valid one,
//!   replays (a sequence number at or below the last accepted), and a stream recorded earlier.
//!   Messages are authenticated, not encrypted: anyone who can connect reads the events (keys
//!   and metadata), so a publisher bound to an interface other than loopback needs the
//!   secret (or [`insecure`](ZmqStreamOptions::insecure)), and keys grant nothing without
//!   the secret when the store is a ZeroMQ peer with one.
//! - A subscriber learns that its publisher is gone (it closed, or its process died) from
//!   the connection (a socket monitor's `DISCONNECTED`, ZMTP heartbeats for a host that
//!   vanished): once the messages already received are read, the next read is
//!   [`Error::StreamEnded`] instead of a wait.
//! - A subscriber that connects late misses what was published before its subscription
//!   arrived (PUB/SUB has no history): [`ZmqPublisher::wait_for_subscribers`] waits until
//!   the expected subscribers are there.
//! - The publisher has its own ZeroMQ context, so that [`close`](Publisher::close) can wait
//!   (at most the close timeout) until queued messages are handed to the kernel; the
//!   process-wide context of the peers cannot be ended for that. Subscribers use the
//!   process-wide one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::pubsub::{Publisher, Subscriber};
use super::seal::{Opener, Sealer, StreamKey, SEAL_LEN};
use crate::connectors::{
    check_library, is_loopback, library_is_hardened, secret_from_env, zmq_context, ZmqSecret,
};
use crate::error::{Error, Result};

/// The largest message a subscriber takes, and the largest subscription a publisher takes,
/// by default (`PROXYSTORE_STREAM_MAX_MESSAGE_SIZE`).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 16 << 20;
/// Messages queued per subscriber before the publisher waits, by default.
pub const DEFAULT_HIGH_WATER_MARK: i32 = 1000;
/// The longest a publisher waits for a lagging subscriber, by default
/// (`PROXYSTORE_STREAM_SEND_TIMEOUT`).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest [`close`](Publisher::close) waits for queued messages to leave, by default.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a subscriber checks that its publisher's host is alive (a ZMTP heartbeat), by
/// default; five missed ones end the connection.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);

const ENV_MAX_MESSAGE_SIZE: &str = "PROXYSTORE_STREAM_MAX_MESSAGE_SIZE";
const ENV_SEND_TIMEOUT: &str = "PROXYSTORE_STREAM_SEND_TIMEOUT";
const ENV_INSECURE: &str = "PROXYSTORE_INSECURE";

/// Options of a [`ZmqPublisher`] and a [`ZmqSubscriber`].
///
/// Settings come from the builder methods, then the environment, then the defaults: the
/// cluster secret (`PROXYSTORE_SECRET`, `PROXYSTORE_SECRET_FILE`: the one the ZeroMQ peers
/// use), `PROXYSTORE_INSECURE`, `PROXYSTORE_STREAM_MAX_MESSAGE_SIZE` (bytes) and
/// `PROXYSTORE_STREAM_SEND_TIMEOUT` (a duration). The secret never shows in `Debug`.
#[derive(Debug, Clone)]
#[must_use]
pub struct ZmqStreamOptions {
    interface: String,
    port: u16,
    address: Option<String>,
    secret: Option<ZmqSecret>,
    secret_file: Option<PathBuf>,
    insecure: bool,
    max_message_size: Option<u64>,
    high_water_mark: i32,
    send_timeout: Option<Duration>,
    close_timeout: Duration,
    heartbeat: Duration,
}

impl Default for ZmqStreamOptions {
    fn default() -> Self {
        ZmqStreamOptions {
            interface: "127.0.0.1".to_string(),
            port: 0,
            address: None,
            secret: None,
            secret_file: None,
            insecure: false,
            max_message_size: None,
            high_water_mark: DEFAULT_HIGH_WATER_MARK,
            send_timeout: None,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

impl ZmqStreamOptions {
    /// Loopback, a port the OS picks, the environment's secret if any.
    pub fn new() -> Self {
        Self::default()
    }

    /// The interface a publisher binds (default `127.0.0.1`; `0.0.0.0` for all, which needs
    /// [`with_address`](Self::with_address)). An interface other than loopback needs a
    /// secret, or [`insecure`](Self::insecure).
    pub fn with_interface(mut self, interface: impl Into<String>) -> Self {
        self.interface = interface.into();
        self
    }

    /// The port a publisher binds (default 0: the OS picks one; see
    /// [`ZmqPublisher::endpoint`]).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The host subscribers reach the publisher at, in [`ZmqPublisher::endpoint`] (default:
    /// the interface).
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The cluster secret: the publisher proves every message with it, the subscriber
    /// refuses messages that do not. Overrides the environment.
    pub fn with_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(ZmqSecret::new(secret.as_ref()));
        self.secret_file = None;
        self
    }

    /// The cluster secret, read from `path` (without a trailing newline) when the publisher
    /// or subscriber is made.
    pub fn with_secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret_file = Some(path.into());
        self.secret = None;
        self
    }

    /// Allows a publisher without a secret on an interface other than loopback, where
    /// anyone who reaches it reads the events and a forged publisher goes unnoticed.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// The largest message a subscriber accepts, in bytes (default 16 MiB): objects that
    /// travel inside their events must fit. Larger ones end the connection (libzmq's
    /// `ZMQ_MAXMSGSIZE`), which the subscriber reports as the publisher gone.
    pub fn with_max_message_size(mut self, bytes: u64) -> Self {
        self.max_message_size = Some(bytes);
        self
    }

    /// Messages queued for each subscriber before a publisher waits for it (default 1000).
    pub fn with_high_water_mark(mut self, messages: i32) -> Self {
        self.high_water_mark = messages.max(1);
        self
    }

    /// The longest a publisher waits for a subscriber that lags by the high water mark
    /// before [`Error::Timeout`] (default 60 s).
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(timeout);
        self
    }

    /// The longest [`close`](Publisher::close) waits for queued messages (default 10 s).
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How often a subscriber checks its connection with a heartbeat (default 2 s); a
    /// publisher that answers none for five intervals is taken as gone.
    pub fn with_heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_millis(10));
        self
    }

    fn key(&self) -> Result<Option<StreamKey>> {
        let secret = match (&self.secret, &self.secret_file) {
            (Some(secret), _) => Some(secret.clone()),
            (None, Some(path)) => Some(crate::connectors::read_secret_file(path)?),
            (None, None) => secret_from_env()?,
        };
        Ok(secret.as_ref().map(StreamKey::from_secret))
    }

    fn max_message_size(&self) -> Result<u64> {
        if let Some(bytes) = self.max_message_size {
            return Ok(bytes);
        }
        match std::env::var(ENV_MAX_MESSAGE_SIZE) {
            Ok(value) if !value.trim().is_empty() => {
                value.trim().parse().map_err(|_| Error::Config {
                    what: ENV_MAX_MESSAGE_SIZE.to_string(),
                    message: format!("{value:?} is not a number of bytes"),
                })
            }
            _ => Ok(DEFAULT_MAX_MESSAGE_SIZE),
        }
    }

    fn send_timeout(&self) -> Result<Duration> {
        if let Some(timeout) = self.send_timeout {
            return Ok(timeout);
        }
        match std::env::var(ENV_SEND_TIMEOUT) {
            Ok(value) if !value.trim().is_empty() => humantime::parse_duration(value.trim())
                .map_err(|e| Error::Config {
                    what: ENV_SEND_TIMEOUT.to_string(),
                    message: format!("{value:?} is not a duration: {e}"),
                }),
            _ => Ok(DEFAULT_SEND_TIMEOUT),
        }
    }

    fn insecure_allowed(&self) -> bool {
        self.insecure
            || std::env::var(ENV_INSECURE).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
    }
}

fn zmq_error(endpoint: &str, action: &str, e: zmq::Error) -> Error {
    Error::Peer {
        peer: endpoint.to_string(),
        message: format!("{action}: {e}"),
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn set_int_option(socket: &mut zmq::Socket, option: u32, value: i32) -> zmq::Result<()> {
    // SAFETY: `socket` is a live socket of this thread; the option takes an int, whose
    // address and size are passed.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            option as i32,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: reads this thread's errno as libzmq set it.
        Err(zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }))
    }
}

/// The topic frame: the topic and a zero byte.
fn topic_frame(topic: &str) -> Result<Vec<u8>> {
    if topic.contains('\0') {
        return Err(Error::Config {
            what: "stream topic".to_string(),
            message: format!("{topic:?} contains a zero byte, which ZeroMQ topics cannot"),
        });
    }
    let mut frame = Vec::with_capacity(topic.len() + 1);
    frame.extend_from_slice(topic.as_bytes());
    frame.push(0);
    Ok(frame)
}

/// Publishes a stream's events on a ZeroMQ `XPUB` socket that subscribers connect to.
pub struct ZmqPublisher {
    context: zmq::Context,
    socket: Option<zmq::Socket>,
    endpoint: String,
    sealer: Sealer,
    send_timeout: Duration,
    /// Subscriptions by prefix (the topic frame, or empty for every topic): how many.
    subscriptions: HashMap<Vec<u8>, usize>,
}

impl std::fmt::Debug for ZmqPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqPublisher")
            .field("endpoint", &self.endpoint)
            .field("closed", &self.socket.is_none())
            .finish_non_exhaustive()
    }
}

impl ZmqPublisher {
    /// Binds a publisher as `options` say.
    ///
    /// # Errors
    /// [`Error::Config`] for an exposed interface without a secret (and not insecure), a
    /// wildcard interface without an address, or a secret file that cannot be read;
    /// [`Error::Peer`] when the socket cannot be bound.
    pub fn bind(options: ZmqStreamOptions) -> Result<ZmqPublisher> {
        let key = options.key()?;
        let config = |message: String| Error::Config {
            what: "zmq stream publisher".to_string(),
            message,
        };
        let interface = options.interface.clone();
        if key.is_none() && !is_loopback(&interface) && !options.insecure_allowed() {
            return Err(config(format!(
                "refusing to publish on interface {interface:?} without a secret: anyone who can reach it could read the events and impersonate the publisher. Set a cluster secret (ZmqStreamOptions::with_secret_file, PROXYSTORE_SECRET_FILE or PROXYSTORE_SECRET) or say insecure (ZmqStreamOptions::insecure, PROXYSTORE_INSECURE=1)"
            )));
        }
        check_library(&interface, library_is_hardened())?;
        let wildcard = matches!(interface.as_str(), "*" | "0.0.0.0" | "::" | "[::]");
        let host = match (&options.address, wildcard) {
            (Some(address), _) => address.clone(),
            (None, false) => interface.clone(),
            (None, true) => {
                return Err(config(format!(
                    "interface {interface:?} binds every interface: say which address subscribers reach (ZmqStreamOptions::with_address)"
                )))
            }
        };
        let max_message_size = options.max_message_size()?;
        let send_timeout = options.send_timeout()?;
        let bind_at = format!("tcp://{interface}:{}", options.port);
        let fail = |action: &str, e: zmq::Error| zmq_error(&bind_at, action, e);
        let context = zmq::Context::new();
        let mut socket = context
            .socket(zmq::XPUB)
            .map_err(|e| fail("create the publisher's socket", e))?;
        socket
            .set_xpub_verbose(true)
            .map_err(|e| fail("set XPUB_VERBOSE", e))?;
        set_int_option(&mut socket, zmq_sys::ZMQ_XPUB_VERBOSER, 1)
            .map_err(|e| fail("set XPUB_VERBOSER", e))?;
        set_int_option(&mut socket, zmq_sys::ZMQ_XPUB_NODROP, 1)
            .map_err(|e| fail("set XPUB_NODROP", e))?;
        socket
            .set_sndhwm(options.high_water_mark)
            .map_err(|e| fail("set SNDHWM", e))?;
        socket
            .set_sndtimeo(millis(send_timeout))
            .map_err(|e| fail("set SNDTIMEO", e))?;
        socket
            .set_maxmsgsize(i64::try_from(max_message_size).unwrap_or(i64::MAX))
            .map_err(|e| fail("set MAXMSGSIZE", e))?;
        socket
            .set_linger(millis(options.close_timeout))
            .map_err(|e| fail("set LINGER", e))?;
        if interface.contains(':') {
            socket.set_ipv6(true).map_err(|e| fail("set IPV6", e))?;
        }
        socket.bind(&bind_at).map_err(|e| fail("bind", e))?;
        let bound = match socket.get_last_endpoint() {
            Ok(Ok(endpoint)) => endpoint,
            _ => return Err(config(format!("{bind_at}: the bound endpoint is unknown"))),
        };
        let port = bound
            .rsplit_once(':')
            .map(|(_, port)| port.to_string())
            .unwrap_or_default();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let endpoint = format!("tcp://{host}:{port}");
        tracing::debug!(%endpoint, authenticated = key.is_some(), "stream publisher bound");
        Ok(ZmqPublisher {
            context,
            socket: Some(socket),
            endpoint,
            sealer: Sealer::new(key),
            send_timeout,
            subscriptions: HashMap::new(),
        })
    }

    /// The endpoint subscribers connect to (`tcp://HOST:PORT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn socket(&self) -> Result<&zmq::Socket> {
        self.socket.as_ref().ok_or_else(|| Error::Closed {
            connector: format!("zmq stream publisher {}", self.endpoint),
        })
    }

    /// Reads the subscription messages that arrived, waiting at most `wait` for the first.
    fn read_subscriptions(&mut self, wait: Duration) -> Result<()> {
        let socket = self.socket()?;
        let mut timeout = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let mut changes = Vec::new();
        loop {
            match socket.poll(zmq::POLLIN, timeout) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(zmq_error(&self.endpoint, "poll", e)),
            }
            timeout = 0;
            match socket.recv_bytes(zmq::DONTWAIT) {
                Ok(message) => changes.push(message),
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => return Err(zmq_error(&self.endpoint, "read a subscription", e)),
            }
        }
        for message in changes {
            match message.split_first() {
                Some((1, prefix)) => *self.subscriptions.entry(prefix.to_vec()).or_default() += 1,
                Some((0, prefix)) => {
                    if let Some(count) = self.subscriptions.get_mut(prefix) {
                        *count = count.saturating_sub(1);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// How many subscriptions deliver `topic`: those to the topic and those to every topic
    /// (as the subscribers' connections announced them so far).
    ///
    /// # Errors
    /// [`Error::Closed`] after [`close`](Publisher::close).
    pub fn subscribers(&mut self, topic: &str) -> Result<usize> {
        self.read_subscriptions(Duration::ZERO)?;
        let frame = topic_frame(topic)?;
        Ok(self.subscriptions.get(&frame).copied().unwrap_or(0)
            + self.subscriptions.get(&Vec::new()).copied().unwrap_or(0))
    }

    /// Waits until at least `count` subscriptions deliver `topic` (PUB/SUB drops what is
    /// published before a subscription arrives).
    ///
    /// # Errors
    /// [`Error::Timeout`] when fewer came within `timeout`.
    pub fn wait_for_subscribers(
        &mut self,
        topic: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.subscribers(topic)? >= count {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    peer: self.endpoint.clone(),
                    operation: format!("wait for {count} subscribers of topic `{topic}`"),
                    timeout,
                });
            }
            self.read_subscriptions(left.min(Duration::from_millis(100)))?;
        }
    }
}

impl Publisher for ZmqPublisher {
    fn send_message(&mut self, topic: &str, message: Bytes) -> Result<()> {
        let frame = topic_frame(topic)?;
        self.read_subscriptions(Duration::ZERO)?;
        let seal = self.sealer.seal(topic, &message);
        let socket = self.socket()?;
        let sent = socket
            .send(frame, zmq::SNDMORE)
            .and_then(|()| socket.send(&seal[..], zmq::SNDMORE))
            .and_then(|()| socket.send(&message[..], 0));
        match sent {
            Ok(()) => Ok(()),
            Err(zmq::Error::EAGAIN) => Err(Error::Timeout {
                peer: self.endpoint.clone(),
                operation: format!(
                    "publish an event of topic `{topic}` (a subscriber stopped taking events: it is {} or more behind)",
                    socket.get_sndhwm().unwrap_or(0)
                ),
                timeout: self.send_timeout,
            }),
            Err(e) => Err(zmq_error(&self.endpoint, "publish an event", e)),
        }
    }

    fn close(&mut self) -> Result<()> {
        if let Some(socket) = self.socket.take() {
            drop(socket);
            let started = Instant::now();
            // Waits until queued messages are handed to the kernel, at most the linger.
            let ended = self.context.destroy();
            tracing::debug!(endpoint = %self.endpoint, waited = ?started.elapsed(), "stream publisher closed");
            ended.map_err(|e| zmq_error(&self.endpoint, "close the publisher", e))?;
        }
        Ok(())
    }
}

impl Drop for ZmqPublisher {
    fn drop(&mut self) {
        if let Err(e) = Publisher::close(self) {
            tracing::warn!(endpoint = %self.endpoint, error = %e, "stream publisher: close failed");
        }
    }
}

/// Subscribes to a [`ZmqPublisher`]'s topics.
pub struct ZmqSubscriber {
    socket: zmq::Socket,
    monitor: Option<zmq::Socket>,
    endpoint: String,
    opener: Opener,
    /// The connection dropped and has not come back.
    down: bool,
}

impl std::fmt::Debug for ZmqSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqSubscriber")
            .field("endpoint", &self.endpoint)
            .field("down", &self.down)
            .finish_non_exhaustive()
    }
}

impl ZmqSubscriber {
    /// Connects to the publisher at `endpoint` (its [`ZmqPublisher::endpoint`]) and
    /// subscribes to `topics` (every topic when empty). The connection is made in the
    /// background; a publisher not there yet is retried until the consumer's timeout.
    ///
    /// # Errors
    /// [`Error::Config`] for a topic with a zero byte or an unreadable secret file;
    /// [`Error::Peer`] when the socket cannot be set up.
    pub fn connect<S: AsRef<str>>(
        endpoint: &str,
        topics: impl IntoIterator<Item = S>,
        options: ZmqStreamOptions,
    ) -> Result<ZmqSubscriber> {
        let key = options.key()?;
        let max_message_size = options.max_message_size()?;
        let fail = |action: &str, e: zmq::Error| zmq_error(endpoint, action, e);
        let socket = zmq_context()
            .socket(zmq::SUB)
            .map_err(|e| fail("create the subscriber's socket", e))?;
        socket.set_linger(0).map_err(|e| fail("set LINGER", e))?;
        socket
            .set_maxmsgsize(i64::try_from(max_message_size + SEAL_LEN as u64).unwrap_or(i64::MAX))
            .map_err(|e| fail("set MAXMSGSIZE", e))?;
        socket
            .set_rcvhwm(options.high_water_mark)
            .map_err(|e| fail("set RCVHWM", e))?;
        socket
            .set_heartbeat_ivl(millis(options.heartbeat))
            .map_err(|e| fail("set HEARTBEAT_IVL", e))?;
        socket
            .set_heartbeat_timeout(millis(options.heartbeat * 5))
            .map_err(|e| fail("set HEARTBEAT_TIMEOUT", e))?;
        if endpoint.contains('[') {
            socket.set_ipv6(true).map_err(|e| fail("set IPV6", e))?;
        }
        let mut any = false;
        for topic in topics {
            any = true;
            socket
                .set_subscribe(&topic_frame(topic.as_ref())?)
                .map_err(|e| fail("subscribe", e))?;
        }
        if !any {
            socket
                .set_subscribe(b"")
                .map_err(|e| fail("subscribe", e))?;
        }
        // Monitor before connecting, so that no event is missed. libzmq sends monitor
        // events with blocking sends: the receiving end takes any number (RCVHWM 0), and the
        // monitor is stopped before that end closes (Drop).
        let monitor_at = format!(
            "inproc://proxy-core-stream-monitor-{:032x}",
            crate::ids::new_id()
        );
        socket
            .monitor(
                &monitor_at,
                zmq::SocketEvent::CONNECTED as i32 | zmq::SocketEvent::DISCONNECTED as i32,
            )
            .map_err(|e| fail("monitor", e))?;
        let monitor = zmq_context()
            .socket(zmq::PAIR)
            .map_err(|e| fail("create the monitor socket", e))?;
        monitor.set_linger(0).map_err(|e| fail("set LINGER", e))?;
        monitor.set_rcvhwm(0).map_err(|e| fail("set RCVHWM", e))?;
        monitor
            .connect(&monitor_at)
            .map_err(|e| fail("connect the monitor", e))?;
        socket.connect(endpoint).map_err(|e| fail("connect", e))?;
        Ok(ZmqSubscriber {
            socket,
            monitor: Some(monitor),
            endpoint: endpoint.to_string(),
            opener: Opener::new(key, true),
            down: false,
        })
    }

    /// One message if one is ready.
    fn try_recv(&mut self) -> Result<Option<Bytes>> {
        let frames = match self.socket.recv_multipart(zmq::DONTWAIT) {
            Ok(frames) => frames,
            Err(zmq::Error::EAGAIN) => return Ok(None),
            Err(e) => return Err(zmq_error(&self.endpoint, "receive an event", e)),
        };
        let protocol = |message: String| Error::Protocol {
            peer: self.endpoint.clone(),
            message,
        };
        let [topic, seal, message]: [Vec<u8>; 3] =
            frames.try_into().map_err(|frames: Vec<Vec<u8>>| {
                protocol(format!(
                    "a stream message of {} frames, not 3",
                    frames.len()
                ))
            })?;
        let topic = match topic.split_last() {
            Some((0, topic)) => std::str::from_utf8(topic)
                .map_err(|_| protocol("a stream topic that is not UTF-8".to_string()))?,
            _ => {
                return Err(protocol(
                    "a stream topic frame without its zero byte".to_string(),
                ))
            }
        };
        self.opener.open(&self.endpoint, topic, &seal, &message)?;
        Ok(Some(Bytes::from(message)))
    }

    /// Reads the monitor's events; whether the connection is down.
    fn read_monitor(&mut self) -> bool {
        let Some(monitor) = &self.monitor else {
            return self.down;
        };
        while let Ok(frames) = monitor.recv_multipart(zmq::DONTWAIT) {
            let Some(event) = frames.first().filter(|f| f.len() >= 2) else {
                continue;
            };
            match zmq::SocketEvent::from_raw(u16::from_le_bytes([event[0], event[1]])) {
                zmq::SocketEvent::CONNECTED => self.down = false,
                zmq::SocketEvent::DISCONNECTED => self.down = true,
                _ => {}
            }
        }
        self.down
    }

    fn stop_monitor(&mut self) {
        if let Some(monitor) = self.monitor.take() {
            // SAFETY: `socket` is a live socket owned by this value; a null endpoint stops
            // its monitor (libzmq closes its end of the monitor pair).
            unsafe {
                zmq_sys::zmq_socket_monitor(self.socket.as_mut_ptr(), std::ptr::null(), 0);
            }
            drop(monitor);
        }
    }
}

impl Subscriber for ZmqSubscriber {
    fn next_message(&mut self, wait: Option<Duration>) -> Result<Option<Bytes>> {
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            if let Some(message) = self.try_recv()? {
                return Ok(Some(message));
            }
            if self.read_monitor() {
                // Everything received before the connection dropped has been read.
                if let Some(message) = self.try_recv()? {
                    return Ok(Some(message));
                }
                return Err(Error::StreamEnded {
                    stream: self.endpoint.clone(),
                    message: "the publisher disconnected (it closed, or its process or host died) before the end of the stream".to_string(),
                });
            }
            let timeout = match deadline {
                None => -1,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    i64::try_from(left.as_millis()).unwrap_or(i64::MAX).max(1)
                }
            };
            let Some(monitor) = &self.monitor else {
                return Err(Error::Closed {
                    connector: format!("zmq stream subscriber of {}", self.endpoint),
                });
            };
            let mut items = [
                self.socket.as_poll_item(zmq::POLLIN),
                monitor.as_poll_item(zmq::POLLIN),
            ];
            zmq::poll(&mut items, timeout).map_err(|e| zmq_error(&self.endpoint, "poll", e))?;
        }
    }

    fn source(&self) -> String {
        self.endpoint.clone()
    }

    fn close(&mut self) -> Result<()> {
        self.stop_monitor();
        Ok(())
    }
}

impl Drop for ZmqSubscriber {
    fn drop(&mut self) {
        self.stop_monitor();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ZmqStreamOptions {
        ZmqStreamOptions::new().with_secret("zmq-stream-unit")
    }

    fn receive(subscriber: &mut ZmqSubscriber) -> Result<Option<Bytes>> {
        subscriber.next_message(Some(Duration::from_secs(10)))
    }

    #[test]
    fn subscribers_get_their_topics_only_exactly_and_in_order() {
        let mut publisher = ZmqPublisher::bind(options()).expect("bind");
        let mut a = ZmqSubscriber::connect(publisher.endpoint(), ["a"], options()).expect("a");
        let mut all = ZmqSubscriber::connect(publisher.endpoint(), Vec::<&str>::new(), options())
            .expect("all");
        publisher
            .wait_for_subscribers("a", 2, Duration::from_secs(10))
            .expect("both subscribed");
        assert_eq!(publisher.subscribers("ab").expect("count"), 1);
        for (topic, message) in [("a", "1"), ("ab", "x"), ("a", "2")] {
            publisher
                .send_message(topic, Bytes::copy_from_slice(message.as_bytes()))
                .expect("send");
        }
        assert_eq!(receive(&mut a).expect("1").as_deref(), Some(&b"1"[..]));
        assert_eq!(receive(&mut a).expect("2").as_deref(), Some(&b"2"[..]));
        for expected in ["1", "x", "2"] {
            assert_eq!(
                receive(&mut all).expect("all").as_deref(),
                Some(expected.as_bytes())
            );
        }
        assert_eq!(
            a.next_message(Some(Duration::from_millis(20)))
                .expect("none"),
            None
        );
        assert!(publisher.send_message("bad\0topic", Bytes::new()).is_err());
    }

    #[test]
    fn a_closed_publisher_is_reported_after_its_last_messages() {
        let mut publisher = ZmqPublisher::bind(options()).expect("bind");
        let mut subscriber =
            ZmqSubscriber::connect(publisher.endpoint(), ["t"], options()).expect("connect");
        publisher
            .wait_for_subscribers("t", 1, Duration::from_secs(10))
            .expect("subscribed");
        for i in 0..100u32 {
            publisher
                .send_message("t", Bytes::copy_from_slice(&i.to_le_bytes()))
                .expect("send");
        }
        Publisher::close(&mut publisher).expect("close");
        for i in 0..100u32 {
            let message = receive(&mut subscriber)
                .expect("a message")
                .expect("in time");
            assert_eq!(&message[..], &i.to_le_bytes());
        }
        match receive(&mut subscriber) {
            Err(Error::StreamEnded { stream, message }) => {
                assert_eq!(stream, publisher.endpoint());
                assert!(message.contains("disconnected"), "{message}");
            }
            other => panic!("expected the end of the stream, got {other:?}"),
        }
        assert!(matches!(
            publisher.send_message("t", Bytes::new()),
            Err(Error::Closed { .. })
        ));
    }

    #[test]
    fn a_subscriber_with_another_secret_refuses_every_event() {
        let mut publisher = ZmqPublisher::bind(options()).expect("bind");
        let mut wrong = ZmqSubscriber::connect(
            publisher.endpoint(),
            ["t"],
            ZmqStreamOptions::new().with_secret("another"),
        )
        .expect("connect");
        publisher
            .wait_for_subscribers("t", 1, Duration::from_secs(10))
            .expect("subscribed");
        publisher
            .send_message("t", Bytes::from_static(b"m"))
            .expect("send");
        match receive(&mut wrong) {
            Err(Error::Unauthenticated { message, .. }) => {
                assert!(message.contains("proof does not match"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exposed_interfaces_need_a_secret_or_insecure() {
        let exposed = ZmqStreamOptions::new()
            .with_interface("0.0.0.0")
            .with_address("127.0.0.1");
        if std::env::var_os(ENV_INSECURE).is_none()
            && std::env::var_os("PROXYSTORE_SECRET").is_none()
            && std::env::var_os("PROXYSTORE_SECRET_FILE").is_none()
        {
            match ZmqPublisher::bind(exposed.clone()) {
                Err(Error::Config { message, .. }) => assert!(message.contains("without a secret")),
                other => panic!("{other:?}"),
            }
        }
        assert!(ZmqPublisher::bind(exposed.clone().insecure()).is_ok());
        assert!(ZmqPublisher::bind(exposed.with_secret("s")).is_ok());
        match ZmqPublisher::bind(
            ZmqStreamOptions::new()
                .with_interface("0.0.0.0")
                .with_secret("s"),
        ) {
            Err(Error::Config { message, .. }) => assert!(message.contains("with_address")),
            other => panic!("{other:?}"),
        }
        let debug = format!(
            "{:?}",
            ZmqStreamOptions::new().with_secret("hunter2-secret")
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
