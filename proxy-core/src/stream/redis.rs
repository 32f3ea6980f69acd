//! Redis as a stream's broker (feature `redis`): pub/sub channels, and lists as queues.
//!
//! - [`RedisPublisher`] / [`RedisSubscriber`]: `PUBLISH` to a channel named by the topic;
//!   every subscriber connected at the time receives every message, and messages published
//!   while nobody subscribes are lost (Redis pub/sub keeps nothing). A subscriber is
//!   subscribed when [`RedisSubscriber::connect`] returns. Redis disconnects a subscriber that
//!   falls too far behind (`client-output-buffer-limit pubsub`): it then gets
//!   [`Error::StreamEnded`], or an error naming the events lost.
//! - [`RedisQueuePublisher`] / [`RedisQueueSubscriber`]: `RPUSH` to a list named by the topic,
//!   `BLPOP` from it: messages wait in Redis until read, and each reaches one subscriber
//!   (several consumers share the work).
//!
//! Each message carries the same envelope as on ZeroMQ (see the stream module's ZeroMQ
//! notes): under the cluster secret (`PROXYSTORE_SECRET`, `PROXYSTORE_SECRET_FILE`, or
//! `with_secret`) a MAC that subscribers check, and sequence numbers that make replays fail.
//! A producer that dies leaves its consumers waiting: their
//! [timeout](super::StreamConsumerBuilder::with_timeout) bounds the wait.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use redis::Commands;

use super::pubsub::{Publisher, Subscriber};
use super::seal::{Opener, Sealer, StreamKey, SEAL_LEN};
use crate::connectors::{secret_from_env, ZmqSecret};
use crate::error::{Error, Result};

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a command may take (not a blocking read).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages a pub/sub subscriber's reading thread holds before it stops reading.
const BUFFERED: usize = 1024;

fn env_key() -> Result<Option<StreamKey>> {
    Ok(secret_from_env()?.as_ref().map(StreamKey::from_secret))
}

fn key_from_file(path: &Path) -> Result<StreamKey> {
    crate::connectors::read_secret_file(path).map(|secret| StreamKey::from_secret(&secret))
}

/// The server's address, without any password, for messages.
fn server_of(client: &redis::Client) -> String {
    format!("redis://{}", client.get_connection_info().addr())
}

fn redis_error(server: &str, operation: &str, e: &redis::RedisError) -> Error {
    if e.is_timeout() {
        return Error::Timeout {
            peer: server.to_string(),
            operation: operation.to_string(),
            timeout: COMMAND_TIMEOUT,
        };
    }
    if e.is_connection_dropped() || e.is_io_error() {
        return Error::StreamEnded {
            stream: server.to_string(),
            message: format!("{operation}: the connection to the server was lost: {e}"),
        };
    }
    Error::Peer {
        peer: server.to_string(),
        message: format!("{operation}: {e}"),
    }
}

fn connect(url: &str) -> Result<(redis::Client, redis::Connection, String)> {
    let config = |message: String| Error::Config {
        what: "redis stream".to_string(),
        message,
    };
    let client = redis::Client::open(url).map_err(|e| config(format!("invalid url: {e}")))?;
    let server = server_of(&client);
    let connection = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|e| redis_error(&server, "connect", &e))?;
    connection
        .set_write_timeout(Some(COMMAND_TIMEOUT))
        .and_then(|()| connection.set_read_timeout(Some(COMMAND_TIMEOUT)))
        .map_err(|e| redis_error(&server, "set timeouts", &e))?;
    Ok((client, connection, server))
}

/// The envelope and the message, as one value.
fn sealed(sealer: &mut Sealer, topic: &str, message: &[u8]) -> Bytes {
    let seal = sealer.seal(topic, message);
    let mut sealed = BytesMut::with_capacity(SEAL_LEN + message.len());
    sealed.put_slice(&seal);
    sealed.put_slice(message);
    sealed.freeze()
}

/// The message inside a sealed value, once its envelope is checked.
fn open(opener: &mut Opener, source: &str, topic: &str, value: Vec<u8>) -> Result<Bytes> {
    if value.len() < SEAL_LEN {
        return Err(Error::Protocol {
            peer: source.to_string(),
            message: format!(
                "a stream message of {} bytes, shorter than its envelope",
                value.len()
            ),
        });
    }
    let mut value = Bytes::from(value);
    let message = value.split_off(SEAL_LEN);
    opener.open(source, topic, &value, &message)?;
    Ok(message)
}

macro_rules! secret_methods {
    () => {
        /// Proves (or checks) messages with the cluster secret `secret` instead of the
        /// environment's.
        #[must_use]
        pub fn with_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
            self.set_key(Some(StreamKey::from_secret(&ZmqSecret::new(
                secret.as_ref(),
            ))));
            self
        }

        /// Proves (or checks) messages with the cluster secret read from `path`.
        ///
        /// # Errors
        /// [`Error::Io`] or [`Error::Config`] when the file cannot be read or is empty.
        pub fn with_secret_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
            self.set_key(Some(key_from_file(path.as_ref())?));
            Ok(self)
        }
    };
}

/// Publishes a stream's events to Redis pub/sub channels (one per topic).
pub struct RedisPublisher {
    connection: Option<redis::Connection>,
    server: String,
    sealer: Sealer,
    list: bool,
}

/// Publishes a stream's events to Redis lists (one per topic), read by
/// [`RedisQueueSubscriber`]s.
pub struct RedisQueuePublisher(RedisPublisher);

impl std::fmt::Debug for RedisPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(if self.list {
            "RedisQueuePublisher"
        } else {
            "RedisPublisher"
        })
        .field("server", &self.server)
        .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RedisQueuePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl RedisPublisher {
    /// Connects to the server at `url` (`redis://[:password@]host:port[/db]`), with the
    /// environment's cluster secret if any.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad url or secret, a connection error naming the server.
    pub fn connect(url: &str) -> Result<RedisPublisher> {
        let (_, connection, server) = connect(url)?;
        Ok(RedisPublisher {
            connection: Some(connection),
            server,
            sealer: Sealer::new(env_key()?),
            list: false,
        })
    }

    fn set_key(&mut self, key: Option<StreamKey>) {
        self.sealer = Sealer::new(key);
    }

    secret_methods!();
}

impl RedisQueuePublisher {
    /// Connects to the server at `url`, as [`RedisPublisher::connect`].
    ///
    /// # Errors
    /// As [`RedisPublisher::connect`].
    pub fn connect(url: &str) -> Result<RedisQueuePublisher> {
        let mut publisher = RedisPublisher::connect(url)?;
        publisher.list = true;
        Ok(RedisQueuePublisher(publisher))
    }

    fn set_key(&mut self, key: Option<StreamKey>) {
        self.0.set_key(key);
    }

    secret_methods!();
}

impl Publisher for RedisPublisher {
    fn send_message(&mut self, topic: &str, message: Bytes) -> Result<()> {
        let value = sealed(&mut self.sealer, topic, &message);
        let server = self.server.clone();
        let list = self.list;
        let connection = self.connection.as_mut().ok_or_else(|| Error::Closed {
            connector: format!("redis stream publisher of {server}"),
        })?;
        let sent: redis::RedisResult<usize> = if list {
            connection.rpush(topic, &value[..])
        } else {
            connection.publish(topic, &value[..])
        };
        let operation = if list { "RPUSH" } else { "PUBLISH" };
        sent.map(|_| ())
            .map_err(|e| redis_error(&server, &format!("{operation} {topic}"), &e))
    }

    fn close(&mut self) -> Result<()> {
        self.connection = None;
        Ok(())
    }
}

impl Publisher for RedisQueuePublisher {
    fn send_message(&mut self, topic: &str, message: Bytes) -> Result<()> {
        self.0.send_message(topic, message)
    }

    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

type Received = std::result::Result<(String, Vec<u8>), Error>;

/// Subscribes to Redis pub/sub channels (one per topic).
///
/// A thread of its own reads the connection (Redis pushes messages as they are published)
/// into a bounded buffer; it stops when the subscriber is closed or dropped.
pub struct RedisSubscriber {
    rx: Receiver<Received>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    server: String,
    opener: Opener,
}

impl std::fmt::Debug for RedisSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSubscriber")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl RedisSubscriber {
    /// Connects to the server at `url` and subscribes to `topics` (at least one); returns
    /// once the server confirmed the subscriptions, so nothing published afterwards is
    /// missed.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad url, no topic or a bad secret; a connection error naming
    /// the server.
    pub fn connect<S: AsRef<str>>(
        url: &str,
        topics: impl IntoIterator<Item = S>,
    ) -> Result<RedisSubscriber> {
        let topics: Vec<String> = topics.into_iter().map(|t| t.as_ref().to_string()).collect();
        if topics.is_empty() {
            return Err(Error::Config {
                what: "redis stream subscriber".to_string(),
                message: "no topic to subscribe to".to_string(),
            });
        }
        let key = env_key()?;
        let (_, mut connection, server) = connect(url)?;
        let (tx, rx) = crossbeam_channel::bounded::<Received>(BUFFERED);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<()>>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = Arc::clone(&stop);
            let thread_server = server.clone();
            std::thread::Builder::new()
                .name("proxystore-redis-stream".to_string())
                .spawn(move || {
                    let server = thread_server;
                    let mut pubsub = connection.as_pubsub();
                    if let Err(e) = pubsub.subscribe(&topics) {
                        let _ = ready_tx.send(Err(redis_error(&server, "SUBSCRIBE", &e)));
                        return;
                    }
                    // Short reads, so that a closed subscriber is noticed soon.
                    if let Err(e) = pubsub.set_read_timeout(Some(Duration::from_millis(100))) {
                        let _ = ready_tx.send(Err(redis_error(&server, "set a timeout", &e)));
                        return;
                    }
                    let _ = ready_tx.send(Ok(()));
                    while !stop.load(Ordering::Relaxed) {
                        let received = match pubsub.get_message() {
                            Ok(message) => Ok((
                                message.get_channel_name().to_string(),
                                message.get_payload_bytes().to_vec(),
                            )),
                            Err(e) if e.is_timeout() => continue,
                            Err(e) => Err(redis_error(&server, "read a message", &e)),
                        };
                        let failed = received.is_err();
                        // Wait for room, but not past the subscriber's end.
                        let mut item = received;
                        loop {
                            match tx.send_timeout(item, Duration::from_millis(100)) {
                                Ok(()) => break,
                                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => {
                                    if stop.load(Ordering::Relaxed) {
                                        return;
                                    }
                                    item = back;
                                }
                                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return,
                            }
                        }
                        if failed {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::Peer {
                    peer: server.clone(),
                    message: format!("could not start the subscriber's thread: {e}"),
                })?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(Error::Peer {
                    peer: server,
                    message: "the subscriber's thread ended before subscribing".to_string(),
                })
            }
        }
        Ok(RedisSubscriber {
            rx,
            stop,
            reader: Some(reader),
            server,
            opener: Opener::new(key, true),
        })
    }

    fn set_key(&mut self, key: Option<StreamKey>) {
        self.opener = Opener::new(key, true);
    }

    secret_methods!();

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            // The reader notices within its read timeout (100 ms).
            let _ = reader.join();
        }
    }
}

impl Subscriber for RedisSubscriber {
    fn next_message(&mut self, wait: Option<Duration>) -> Result<Option<Bytes>> {
        let received = match wait {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => self.rx.recv_timeout(wait),
        };
        match received {
            Ok(Ok((topic, value))) => open(&mut self.opener, &self.server, &topic, value).map(Some),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(Error::StreamEnded {
                stream: self.server.clone(),
                message: "the subscription ended (the connection to the server was lost or closed)"
                    .to_string(),
            }),
        }
    }

    fn source(&self) -> String {
        self.server.clone()
    }

    fn close(&mut self) -> Result<()> {
        self.stop();
        Ok(())
    }
}

impl Drop for RedisSubscriber {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads a stream's events from a Redis list (`BLPOP`), written by a [`RedisQueuePublisher`].
pub struct RedisQueueSubscriber {
    connection: Option<redis::Connection>,
    server: String,
    topic: String,
    opener: Opener,
}

impl std::fmt::Debug for RedisQueueSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueueSubscriber")
            .field("server", &self.server)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl RedisQueueSubscriber {
    /// Connects to the server at `url` to read the list of `topic`.
    ///
    /// # Errors
    /// As [`RedisPublisher::connect`].
    pub fn connect(url: &str, topic: &str) -> Result<RedisQueueSubscriber> {
        let (_, connection, server) = connect(url)?;
        Ok(RedisQueueSubscriber {
            connection: Some(connection),
            server,
            topic: topic.to_string(),
            opener: Opener::new(env_key()?, false),
        })
    }

    fn set_key(&mut self, key: Option<StreamKey>) {
        self.opener = Opener::new(key, false);
    }

    secret_methods!();
}

impl Subscriber for RedisQueueSubscriber {
    fn next_message(&mut self, wait: Option<Duration>) -> Result<Option<Bytes>> {
        let server = self.server.clone();
        let connection = self.connection.as_mut().ok_or_else(|| Error::Closed {
            connector: format!("redis stream queue subscriber of {server}"),
        })?;
        // BLPOP's timeout is in seconds (fractions allowed); 0 would block for ever. Without
        // a wait, block in slices of a second.
        let slice = wait
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(1));
        connection
            .set_read_timeout(Some(slice + COMMAND_TIMEOUT))
            .map_err(|e| redis_error(&server, "set a timeout", &e))?;
        loop {
            let popped: redis::RedisResult<Option<(String, Vec<u8>)>> =
                connection.blpop(&self.topic, slice.as_secs_f64());
            match popped {
                Ok(Some((_, value))) => {
                    return open(&mut self.opener, &server, &self.topic, value).map(Some)
                }
                Ok(None) if wait.is_some() => return Ok(None),
                Ok(None) => continue,
                Err(e) => return Err(redis_error(&server, &format!("BLPOP {}", self.topic), &e)),
            }
        }
    }

    fn source(&self) -> String {
        format!("{} (list {})", self.server, self.topic)
    }

    fn close(&mut self) -> Result<()> {
        self.connection = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    #[test]
    fn pubsub_messages_reach_every_subscriber_in_order() {
        let Some(server) = RedisServer::start_or_skip() else {
            return;
        };
        let mut publisher = RedisPublisher::connect(&server.url())
            .expect("publisher")
            .with_secret("r");
        let mut a = RedisSubscriber::connect(&server.url(), ["t"])
            .expect("a")
            .with_secret("r");
        let mut b = RedisSubscriber::connect(&server.url(), ["t", "u"])
            .expect("b")
            .with_secret("r");
        for m in ["1", "2", "3"] {
            publisher
                .send_message("t", Bytes::copy_from_slice(m.as_bytes()))
                .expect("send");
        }
        publisher
            .send_message("u", Bytes::from_static(b"u"))
            .expect("send");
        for subscriber in [&mut a, &mut b] {
            for m in ["1", "2", "3"] {
                let got = subscriber
                    .next_message(Some(Duration::from_secs(10)))
                    .expect("message");
                assert_eq!(got.as_deref(), Some(m.as_bytes()));
            }
        }
        assert_eq!(
            b.next_message(Some(Duration::from_secs(10)))
                .expect("u")
                .as_deref(),
            Some(&b"u"[..])
        );
        assert_eq!(
            a.next_message(Some(Duration::from_millis(50)))
                .expect("none"),
            None
        );
    }

    /// ProxyStore's `redis_test.py::test_basic_queue_publish_subscribe` and
    /// `test_basic_queue_timeout`.
    #[test]
    fn queue_messages_wait_until_read_and_an_empty_queue_times_out() {
        let Some(server) = RedisServer::start_or_skip() else {
            return;
        };
        let mut publisher = RedisQueuePublisher::connect(&server.url()).expect("publisher");
        for m in ["1", "2", "3"] {
            publisher
                .send_message("q", Bytes::copy_from_slice(m.as_bytes()))
                .expect("send");
        }
        publisher.close().expect("close");
        let mut subscriber = RedisQueueSubscriber::connect(&server.url(), "q").expect("subscriber");
        for m in ["1", "2", "3"] {
            let got = subscriber
                .next_message(Some(Duration::from_secs(10)))
                .expect("message");
            assert_eq!(got.as_deref(), Some(m.as_bytes()));
        }
        assert_eq!(
            subscriber
                .next_message(Some(Duration::from_millis(50)))
                .expect("empty"),
            None
        );
    }

    #[test]
    fn a_wrong_secret_or_a_forged_message_is_refused() {
        let Some(server) = RedisServer::start_or_skip() else {
            return;
        };
        let mut publisher = RedisQueuePublisher::connect(&server.url())
            .expect("publisher")
            .with_secret("one");
        publisher
            .send_message("q", Bytes::from_static(b"m"))
            .expect("send");
        let mut wrong = RedisQueueSubscriber::connect(&server.url(), "q")
            .expect("subscriber")
            .with_secret("two");
        assert!(matches!(
            wrong.next_message(Some(Duration::from_secs(10))),
            Err(Error::Unauthenticated { .. })
        ));
        // Bytes pushed by someone without the secret.
        let client = redis::Client::open(server.url()).expect("client");
        let mut raw = client.get_connection().expect("connection");
        let _: usize = raw.rpush("q", vec![1u8; 100]).expect("rpush");
        let _: usize = raw.rpush("q", vec![1u8; 3]).expect("rpush");
        let mut right = RedisQueueSubscriber::connect(&server.url(), "q")
            .expect("subscriber")
            .with_secret("one");
        for _ in 0..2 {
            assert!(right.next_message(Some(Duration::from_secs(10))).is_err());
        }
    }
}
