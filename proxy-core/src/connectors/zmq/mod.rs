//! `ZmqConnector`: objects served peer to peer over ZeroMQ.
//!
//! - `options`: how a peer binds and waits ([`ZmqOptions`]) and what travels ([`ZmqConfig`]);
//! - `wire`: the versioned wire format;
//! - `frame`: payload frames without copies;
//! - `objects`: the map of objects a peer serves;
//! - `server`: the peer server thread (`ROUTER`);
//! - `client`: per-thread `DEALER` sockets and pipelined requests.

mod client;
mod frame;
mod objects;
mod options;
mod server;
mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use self::client::{exchange, Answer, Request};
pub use self::options::{ZmqConfig, ZmqOptions};
use self::server::PeerServer;
use self::wire::Op;
use crate::config::ConnectorConfig;
use crate::connector::{check_kind, Connector};
use crate::error::{Error, Result};
use crate::key::Key;

const KIND: &str = "zmq";

/// The process's one ZeroMQ context, shared by every server and client socket.
fn context() -> zmq::Context {
    static CONTEXT: OnceLock<zmq::Context> = OnceLock::new();
    CONTEXT.get_or_init(zmq::Context::new).clone()
}

/// Objects served peer to peer: each process keeps the objects it puts and serves them to
/// the others over ZeroMQ.
///
/// - [`put`](Connector::put) stores the bytes in this process's map, with no network round
///   trip, and returns a key naming this peer's endpoint (`tcp://127.0.0.1:PORT` by default).
/// - [`get`](Connector::get), [`exists`](Connector::exists) and [`evict`](Connector::evict)
///   read this process's map for its own keys, and ask the owning peer's server for others.
///   [`get_batch`](Connector::get_batch) pipelines its requests to each peer.
/// - A peer that does not answer within the [timeout](ZmqOptions::with_timeout) gives
///   [`Error::Timeout`] naming the peer; a peer that refuses a request gives [`Error::Peer`].
/// - [`config`](Connector::config) rebuilds, in this process, a connector on the same server
///   and objects; in another process, a connector that reads every peer's objects and starts
///   its own server on its first `put`.
/// - [`close`](Connector::close) stops this peer's server and drops its objects.
///
/// Clones share the server. Large payloads cross the sockets without being copied on either
/// side. The wire format is documented in the source of `connectors/zmq/wire.rs`.
///
/// ```
/// use bytes::Bytes;
/// use proxy_core::{Connector, ZmqConnector};
///
/// // Two peers (here in one process; usually in two).
/// let alice = ZmqConnector::new()?;
/// let bob = ZmqConnector::new()?;
///
/// let key = alice.put(Bytes::from_static(b"hello"))?; // stays in alice's memory
/// assert_eq!(key.peer(), alice.endpoint());
///
/// // Bob fetches it from alice's server; the key says where to go.
/// assert_eq!(bob.get(&key)?, Some(Bytes::from_static(b"hello")));
/// bob.evict(&key)?;
/// assert!(!alice.exists(&key)?);
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ZmqConnector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: ZmqOptions,
    server: OnceLock<Arc<PeerServer>>,
    /// Serialises the lazy start of the server.
    starting: Mutex<()>,
    closed: AtomicBool,
}

/// Who holds the object a key names.
enum Owner<'a> {
    /// This connector's own server: read the map.
    Here(&'a PeerServer),
    /// Another peer, by endpoint.
    Peer(&'a str),
}

impl ZmqConnector {
    /// A peer with the default options: its server bound to `tcp://127.0.0.1` on a port the
    /// OS chooses.
    pub fn new() -> Result<Self> {
        Self::with_options(ZmqOptions::default())
    }

    /// A peer with `options`, its server started and bound.
    pub fn with_options(options: ZmqOptions) -> Result<Self> {
        let connector = Self::client(options)?;
        connector.server()?;
        Ok(connector)
    }

    /// A connector that reads other peers' objects and starts its own server only when it
    /// first stores one.
    pub fn client(options: ZmqOptions) -> Result<Self> {
        options.validate()?;
        Ok(ZmqConnector {
            inner: Arc::new(Inner {
                options,
                server: OnceLock::new(),
                starting: Mutex::new(()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    pub(crate) fn from_config(config: &ZmqConfig) -> Result<Self> {
        let connector = Self::client(config.options.clone())?;
        if let Some(server) = config.endpoint.as_deref().and_then(server::live_server) {
            // Same process: share the server and its objects, do not start another.
            let _ = connector.inner.server.set(server);
        }
        Ok(connector)
    }

    /// The endpoint of this peer's server (the one its keys name), once it has started.
    pub fn endpoint(&self) -> Option<&str> {
        self.inner.server.get().map(|server| server.endpoint())
    }

    /// The options this connector was built with (a getter; to build a connector, start
    /// from [`ZmqOptions::default`] and finish with [`ZmqOptions::build`]).
    pub fn options(&self) -> &ZmqOptions {
        &self.inner.options
    }

    /// How many malformed or refused requests this peer's server has answered with an error.
    pub fn rejected_requests(&self) -> u64 {
        self.inner
            .server
            .get()
            .map_or(0, |server| server.rejected())
    }

    /// Stores `data` on the peer at `peer` (for example a standalone `proxy-peer`) instead of
    /// in this process, and returns its key.
    pub fn put_to(&self, peer: &str, data: Bytes) -> Result<Key> {
        self.check_open()?;
        let key = Key::random(KIND).with_peer(peer);
        if let Some(server) = self.own_server(peer) {
            server
                .objects()
                .insert_many(std::iter::once((key.id(), data)));
            return Ok(key);
        }
        let limit = self.inner.options.get_max_message_size();
        if data.len() as u64 > limit {
            return Err(Error::Peer {
                peer: peer.to_string(),
                message: format!(
                    "refusing to send an object of {} bytes, larger than the maximum message size ({limit} bytes)",
                    data.len()
                ),
            });
        }
        let request = Request {
            op: Op::Put,
            object_id: key.id(),
            payload: Some(data),
        };
        exchange(peer, &self.inner.options, std::slice::from_ref(&request))?;
        Ok(key)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        Ok(())
    }

    fn closed_error(&self) -> Error {
        Error::Closed {
            connector: format!("zmq peer {}", self.endpoint().unwrap_or("(no server)")),
        }
    }

    /// This connector's server, started now if it has not been.
    fn server(&self) -> Result<&PeerServer> {
        if let Some(server) = self.inner.server.get() {
            return self.running(server);
        }
        let _starting = self
            .inner
            .starting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.inner.server.get().is_none() {
            let server = PeerServer::start(&self.inner.options)?;
            let _ = self.inner.server.set(server);
        }
        match self.inner.server.get() {
            Some(server) => self.running(server),
            None => Err(self.closed_error()),
        }
    }

    fn running<'a>(&self, server: &'a PeerServer) -> Result<&'a PeerServer> {
        if server.is_running() {
            Ok(server)
        } else {
            Err(self.closed_error())
        }
    }

    fn own_server(&self, peer: &str) -> Option<&PeerServer> {
        self.inner
            .server
            .get()
            .filter(|server| server.endpoint() == peer)
            .map(|server| &**server)
    }

    fn owner<'k>(&'k self, key: &'k Key) -> Result<Owner<'k>> {
        check_kind(key, KIND)?;
        self.check_open()?;
        let peer = key.peer().ok_or_else(|| Error::Protocol {
            peer: "(none)".to_string(),
            message: format!("key {key} does not name the peer that owns it"),
        })?;
        match self.own_server(peer) {
            Some(server) => Ok(Owner::Here(self.running(server)?)),
            None => Ok(Owner::Peer(peer)),
        }
    }

    /// Asks `peer` one question about `key`.
    fn ask(&self, peer: &str, op: Op, key: &Key) -> Result<Answer> {
        let request = Request {
            op,
            object_id: key.id(),
            payload: None,
        };
        let mut answers = exchange(peer, &self.inner.options, std::slice::from_ref(&request))?;
        answers.pop().ok_or_else(|| Error::Protocol {
            peer: peer.to_string(),
            message: format!("no answer to {op} of {key}"),
        })
    }
}

impl Connector for ZmqConnector {
    fn put(&self, data: Bytes) -> Result<Key> {
        self.check_open()?;
        let server = self.server()?;
        let key = Key::random(KIND).with_peer(server.endpoint());
        server
            .objects()
            .insert_many(std::iter::once((key.id(), data)));
        Ok(key)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        match self.owner(key)? {
            Owner::Here(server) => Ok(server.objects().get(key.id())),
            Owner::Peer(peer) => match self.ask(peer, Op::Get, key)? {
                Answer::Ok(data) => Ok(data),
                Answer::NotFound => Ok(None),
            },
        }
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        match self.owner(key)? {
            Owner::Here(server) => Ok(server.objects().contains(key.id())),
            Owner::Peer(peer) => Ok(self.ask(peer, Op::Exists, key)? != Answer::NotFound),
        }
    }

    fn evict(&self, key: &Key) -> Result<()> {
        match self.owner(key)? {
            Owner::Here(server) => server.objects().remove(key.id()),
            Owner::Peer(peer) => {
                self.ask(peer, Op::Evict, key)?;
            }
        }
        Ok(())
    }

    fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
        self.check_open()?;
        let server = self.server()?;
        let keys: Vec<Key> = data
            .iter()
            .map(|_| Key::random(KIND).with_peer(server.endpoint()))
            .collect();
        server
            .objects()
            .insert_many(keys.iter().map(Key::id).zip(data));
        Ok(keys)
    }

    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        let mut results: Vec<Option<Bytes>> = vec![None; keys.len()];
        // Group the keys by owner, keeping each key's place in the batch.
        let mut here: Vec<usize> = Vec::new();
        let mut by_peer: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut own: Option<&PeerServer> = None;
        for (index, key) in keys.iter().enumerate() {
            match self.owner(key)? {
                Owner::Here(server) => {
                    own = Some(server);
                    here.push(index);
                }
                Owner::Peer(peer) => match by_peer.iter_mut().find(|(p, _)| *p == peer) {
                    Some((_, indices)) => indices.push(index),
                    None => by_peer.push((peer, vec![index])),
                },
            }
        }
        if let Some(server) = own {
            let found = server
                .objects()
                .get_many(here.iter().map(|&i| keys[i].id()));
            for (index, data) in here.into_iter().zip(found) {
                results[index] = data;
            }
        }
        for (peer, indices) in by_peer {
            let requests: Vec<Request> = indices
                .iter()
                .map(|&i| Request {
                    op: Op::Get,
                    object_id: keys[i].id(),
                    payload: None,
                })
                .collect();
            let answers = exchange(peer, &self.inner.options, &requests)?;
            for (index, answer) in indices.into_iter().zip(answers) {
                if let Answer::Ok(data) = answer {
                    results[index] = data;
                }
            }
        }
        Ok(results)
    }

    fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(server) = self.inner.server.get() {
            server.stop();
        }
        Ok(())
    }

    fn config(&self) -> ConnectorConfig {
        ConnectorConfig::Zmq(ZmqConfig {
            options: self.inner.options.clone(),
            endpoint: self.endpoint().map(str::to_string),
        })
    }

    fn object_count(&self) -> Option<usize> {
        Some(
            self.inner
                .server
                .get()
                .map_or(0, |server| server.objects().len()),
        )
    }
}

#[cfg(test)]
mod tests;
