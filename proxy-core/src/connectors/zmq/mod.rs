//! `ZmqConnector`: objects served peer to peer over ZeroMQ.
//!
//! - `options`: how a peer binds and waits ([`ZmqOptions`]) and what travels ([`ZmqConfig`]);
//! - `context`: the process's ZeroMQ context and its I/O threads;
//! - `auth`: the cluster secret and the per-request proof of it;
//! - `secret`: where a secret comes from (length, file modes, new secret files);
//! - `wire`: the versioned wire format;
//! - `stats`: a peer's counters ([`PeerStats`]) and their wire layout;
//! - `frame`: payload frames without copies;
//! - `hardened`: whether the linked libzmq has proxy-core's patches;
//! - `objects`: the map of objects a peer serves;
//! - `server`: the peer server thread (`ROUTER`);
//! - `client`: per-thread `DEALER` sockets and pipelined requests;
//! - `shm`: same-host shared memory (the owner's arena, the reader's mappings);
//! - `liveness`: whether a client connection still moves bytes (timeouts measure silence).

mod auth;
mod client;
mod connections;
mod context;
mod cooldown;
mod frame;
mod hardened;
mod liveness;
mod objects;
mod options;
mod secret;
mod server;
mod shm;
mod stats;
mod wire;
mod zap;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use self::client::{exchange, Answer, Request};
use self::context::context;
use self::options::Placement;
pub use self::options::{ZmqConfig, ZmqOptions};
use self::server::PeerServer;
pub use self::stats::PeerStats;
// For the stream module's ZeroMQ publisher and subscriber (`proxy_core::stream`).
pub(crate) use self::auth::Secret as ZmqSecret;
// For `WriteBuffer` (write-in-place puts into the peer's shared memory).
pub(crate) use self::context::context as zmq_context;
pub(crate) use self::hardened::{check_library, library_is_hardened};
pub(crate) use self::options::{is_loopback, secret_from_env};
pub(crate) use self::secret::read_file_env as read_secret_file;
pub(crate) use self::shm::Reservation;
use self::wire::Op;
use crate::config::ConnectorConfig;
use crate::connector::{check_kind, Capability, Connector};
use crate::error::{Error, Result};
use crate::key::Key;

const KIND: &str = "zmq";

/// Objects served peer to peer: each process keeps the objects it puts and serves them to
/// the others over ZeroMQ.
///
/// - [`put`](Connector::put) stores the bytes in this process's map, with no network round
///   trip, and returns a key naming this peer's endpoint (`tcp://127.0.0.1:PORT` by default).
/// - [`get`](Connector::get), [`exists`](Connector::exists) and [`evict`](Connector::evict)
///   read this process's map for its own keys, and ask the owning peer's server for others.
///   [`get_batch`](Connector::get_batch) pipelines its requests to each peer.
/// - A peer that does not answer within the [timeout](ZmqOptions::with_timeout) gives
///   [`Error::Timeout`] naming the peer, one that moves bytes below the
///   [minimum rate](ZmqOptions::with_min_rate) (a trickle, heartbeats only) gives
///   [`Error::TooSlow`]; a peer that refuses a request gives [`Error::Peer`]. With a secret,
///   a reply without a valid proof of it is refused with [`Error::Protocol`].
/// - [`config`](Connector::config) rebuilds, in this process, a connector on the same server
///   and objects; in another process, a connector that reads every peer's objects and starts
///   its own server on its first `put`, bound and advertised as *that* process's own
///   configuration says ([`ZmqOptions::from_env`]): never at the address of the process that
///   made the config.
/// - [`ZmqConnector::remote`] (or [`ZmqOptions::with_remote`]) sends every put to a peer
///   elsewhere, such as a standalone `proxy-peer`; [`ZmqOptions::with_client_only`] makes a
///   connector that only reads.
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
///
/// # Processes and `fork()`
///
/// libzmq's sockets and this connector's server thread do not survive `fork()`. In a
/// child forked from a process that used ZeroMQ, a connector inherited through the fork
/// refuses to store, read or evict (an [`Error::Config`] naming the fork; before, a put there
/// went into a copy of the parent's map that nobody served), while connectors made in
/// the child, or rebuilt there from an inherited one's [`config`](Connector::config), work
/// with a ZeroMQ context and a server of their own.
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
    /// Gets of other peers' objects answered by mapping their shared memory.
    mapped_reads: AtomicU64,
    /// Of those, the ones read at a location a proxy carried, with no request.
    located_reads: AtomicU64,
    /// The process that made this connector: one inherited through `fork()` refuses to
    /// work (its server thread and sockets stayed in the parent).
    pid: u32,
}

/// Who holds the object a key names.
enum Owner<'a> {
    /// This connector's own server: read the map.
    Here(&'a PeerServer),
    /// Another peer, by endpoint.
    Peer(&'a str),
}

impl ZmqConnector {
    /// What each object another process stores on a peer costs against its byte quota
    /// ([`ZmqOptions::with_max_bytes`]) besides its own bytes: 320 bytes (the map entry and
    /// bookkeeping; about 290 bytes were measured per empty object).
    pub const REMOTE_OBJECT_OVERHEAD: u64 = objects::REMOTE_OBJECT_OVERHEAD;

    /// A peer with the default options: its server bound to `tcp://127.0.0.1` on a port the
    /// OS chooses.
    pub fn new() -> Result<Self> {
        Self::with_options(ZmqOptions::default())
    }

    /// A peer with `options`, its server started and bound (unless its puts go to a
    /// [remote](ZmqOptions::with_remote) peer or it is [client-only](ZmqOptions::with_client_only)).
    pub fn with_options(options: ZmqOptions) -> Result<Self> {
        let serves = *options.placement() == Placement::Here;
        let connector = Self::client(options)?;
        if serves {
            connector.server()?;
        }
        Ok(connector)
    }

    /// A connector whose puts all go to the peer at `peer` (`tcp://HOST:PORT`, for example
    /// a standalone `proxy-peer`), with this process's other settings from the environment
    /// ([`ZmqOptions::from_env`]). It never serves; a [`Store`](crate::Store) on it puts and
    /// proxies as on any connector, and reads any peer's keys.
    ///
    /// ```
    /// use proxy_core::{Connector, Proxy, Store, ZmqConnector};
    ///
    /// let peer = ZmqConnector::new()?; // stands in for a `proxy-peer` on another host
    /// let remote = ZmqConnector::remote(peer.endpoint().unwrap())?;
    /// let store = Store::new("results", remote);
    /// let proxy = store.proxy(vec![1u32, 2, 3])?;
    /// assert_eq!(Proxy::key(&proxy).peer(), peer.endpoint());
    /// assert_eq!(*proxy, vec![1, 2, 3]);
    /// assert_eq!(peer.object_count(), Some(1));
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    pub fn remote(peer: &str) -> Result<Self> {
        Self::client(ZmqOptions::from_env()?.with_remote(peer))
    }

    /// A connector that reads other peers' objects and starts its own server only when it
    /// first stores one.
    pub fn client(options: ZmqOptions) -> Result<Self> {
        options.validate()?;
        let options = options.resolve()?;
        Ok(ZmqConnector {
            inner: Arc::new(Inner {
                options,
                server: OnceLock::new(),
                starting: Mutex::new(()),
                closed: AtomicBool::new(false),
                mapped_reads: AtomicU64::new(0),
                located_reads: AtomicU64::new(0),
                pid: crate::process_id::current(),
            }),
        })
    }

    /// The connector a [`ZmqConfig`] made elsewhere describes, rebuilt here: this process's
    /// own settings for where to bind, what to advertise and where puts go
    /// ([`ZmqOptions::rebuilt_here`], with variables from `lookup`). The secret never
    /// travels in a configuration: next to the live server it came from the connector
    /// takes that server's secret, elsewhere this process's own.
    pub(crate) fn from_config_with(
        config: &ZmqConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let live = config.endpoint.as_deref().and_then(server::live_server);
        let options = ZmqOptions::rebuilt_here(&config.options, lookup)?
            .or_secret(live.as_ref().and_then(|server| server.secret()));
        let connector = Self::client(options)?;
        if let Some(server) = live {
            // Same process: share the server and its objects, do not start another.
            let _ = connector.inner.server.set(server);
        }
        Ok(connector)
    }

    pub(crate) fn from_config(config: &ZmqConfig) -> Result<Self> {
        Self::from_config_with(config, |name| std::env::var(name).ok())
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

    /// Sets how many libzmq I/O threads this process's ZeroMQ context runs (the threads that
    /// move every byte of every connection, server and clients alike). It must be called
    /// before the process first uses a ZeroMQ connector: the context is shared by all of
    /// them and created then; afterwards asking for another count is an [`Error::Config`].
    ///
    /// Without it, `PROXYSTORE_ZMQ_IO_THREADS` (1 to 64) decides, else
    /// [`default_io_threads`](Self::default_io_threads) (one per four cores, 1 to 4). A peer
    /// that serves many readers at once needs several: with one, every reply goes out through
    /// one thread.
    ///
    /// ```
    /// use proxy_core::ZmqConnector;
    ///
    /// // Once the context exists, only the count it runs is accepted.
    /// let running = ZmqConnector::io_threads();
    /// assert!(ZmqConnector::set_io_threads(running).is_ok());
    /// assert!(ZmqConnector::set_io_threads(running + 1).is_err());
    /// ```
    pub fn set_io_threads(threads: usize) -> Result<()> {
        context::set_io_threads(threads)
    }

    /// The I/O thread count used when neither [`set_io_threads`](Self::set_io_threads) nor
    /// `PROXYSTORE_ZMQ_IO_THREADS` says otherwise: one per four cores, from 1 to 4 (libzmq's
    /// guide suggests about one per GB/s moved; on a small machine more threads only compete
    /// with the application for the cores).
    pub fn default_io_threads() -> usize {
        context::default_io_threads()
    }

    /// How many libzmq I/O threads this process's ZeroMQ context runs (see
    /// [`set_io_threads`](Self::set_io_threads)); creates the context if needed.
    pub fn io_threads() -> usize {
        context::io_threads()
    }

    /// How many malformed or refused requests this peer's server has answered with an error.
    pub fn rejected_requests(&self) -> u64 {
        self.inner
            .server
            .get()
            .map_or(0, |server| server.rejected())
    }

    /// Bytes of the objects other processes stored on this peer's server (remote puts);
    /// [`ZmqOptions::with_max_bytes`] limits them with their overhead and shared memory
    /// ([`PeerStats::quota_used`]).
    pub fn remote_bytes(&self) -> u64 {
        self.inner
            .server
            .get()
            .map_or(0, |server| server.objects().remote_bytes())
    }

    /// The counters of the peer at `peer` (a `proxy-peer`, or any process serving as a
    /// ZeroMQ peer): objects and bytes it holds, requests it refused, its quota and maximum
    /// message size. One request; a peer with a secret requires this connector's proof of it
    /// as for a get ([`Error::Unauthenticated`] otherwise). This connector's own server is read
    /// directly.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use proxy_core::{ZmqConnector, ZmqOptions};
    ///
    /// let peer = ZmqConnector::new()?; // stands in for a `proxy-peer`
    /// let endpoint = peer.endpoint().unwrap();
    /// let client = ZmqConnector::client(ZmqOptions::default())?;
    /// client.put_to(endpoint, Bytes::from(vec![0u8; 100]))?;
    ///
    /// let stats = client.peer_stats(endpoint)?;
    /// assert_eq!((stats.objects, stats.bytes, stats.remote_bytes), (1, 100, 100));
    /// assert_eq!(stats.rejected_requests, 0);
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    pub fn peer_stats(&self, peer: &str) -> Result<PeerStats> {
        self.check_open()?;
        if let Some(server) = self.own_server(peer) {
            return Ok(self.running(server)?.stats());
        }
        let request = Request::new(Op::Stats, 0);
        match exchange(peer, &self.inner.options, std::slice::from_ref(&request))?.pop() {
            Some(Answer::Stats(stats)) => Ok(stats),
            other => Err(Error::Protocol {
                peer: peer.to_string(),
                message: format!("unexpected answer to a stats request: {other:?}"),
            }),
        }
    }

    /// How many gets of other peers' objects this connector answered by mapping the owner's
    /// shared memory (same machine, see [`ZmqOptions::with_shared_memory`]) instead of
    /// receiving the bytes over TCP.
    pub fn mapped_reads(&self) -> u64 {
        self.inner.mapped_reads.load(Ordering::Relaxed)
    }

    /// How many of the [`mapped_reads`](Self::mapped_reads) needed no request at all: the
    /// object was written in place ([`Connector::alloc`]) and its proxy carried where it
    /// lies in the owner's shared memory, so this process read it there after checking the
    /// location as it checks any descriptor.
    pub fn located_reads(&self) -> u64 {
        self.inner.located_reads.load(Ordering::Relaxed)
    }

    /// Makes room in this peer's shared memory for `count` objects of `len` bytes now, and
    /// returns when it is there: the segments are created and pre-faulted on the calling
    /// thread, so the first `count` objects of that size written in place
    /// ([`Connector::alloc`]) or put find their slots ready. For a producer that knows the
    /// size of its objects and how many it keeps in flight, called before its timed or
    /// latency-sensitive part; [`ZmqOptions::with_shared_memory_prewarm`] does the same on
    /// a background thread when the peer starts. Starts the peer's server if it has not
    /// started.
    ///
    /// Returns how many slots are ready: `count`, or fewer when the shared memory capacity
    /// ([`ZmqOptions::with_shared_memory_capacity`]) stops it, and 0 when shared memory is
    /// off, `len` is below its threshold, or objects are placed on another peer. The room
    /// counts against the capacity like any segment and, left unused, returns to the
    /// operating system after the idle time.
    ///
    /// ```
    /// use proxy_core::ZmqOptions;
    ///
    /// let connector = ZmqOptions::default().build()?;
    /// let ready = connector.prewarm_shared_memory(1 << 20, 8)?;
    /// assert!(ready == 8 || ready == 0, "8 slots, or none without shared memory here");
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    pub fn prewarm_shared_memory(&self, len: usize, count: u32) -> Result<u32> {
        self.check_open()?;
        if !matches!(self.inner.options.placement(), Placement::Here) {
            return Ok(0);
        }
        Ok(self.server()?.objects().make_room(len, count))
    }

    /// Bytes of this peer's objects held in shared memory (0 when it is off or nothing is
    /// there), and bytes of shared memory segments it holds for them (held objects, their
    /// rounding to size classes, and free slots kept for reuse until the segment has been
    /// unused for [`ZmqOptions::with_shared_memory_idle`]).
    pub fn shared_memory_bytes(&self) -> (u64, u64) {
        self.inner
            .server
            .get()
            .and_then(|server| server.objects().shm_stats())
            .map_or((0, 0), |stats| (stats.held, stats.reserved))
    }

    /// Stores `data` on the peer at `peer` (for example a standalone `proxy-peer`) instead of
    /// in this process, and returns its key.
    pub fn put_to(&self, peer: &str, data: Bytes) -> Result<Key> {
        let mut keys = self.put_many_to(peer, vec![data])?;
        keys.pop().ok_or_else(|| Error::Protocol {
            peer: peer.to_string(),
            message: "no key for a put".to_string(),
        })
    }

    /// Stores every object of `data` on the peer at `peer`, in one pipelined exchange.
    fn put_many_to(&self, peer: &str, data: Vec<Bytes>) -> Result<Vec<Key>> {
        self.check_open()?;
        if let Some(server) = self.own_server(peer) {
            let keys: Vec<Key> = data.iter().map(|_| own_key(server)).collect();
            server
                .objects()
                .insert_many(keys.iter().map(Key::id).zip(data));
            return Ok(keys);
        }
        // Keys name the peer's incarnation, asked once per thread and peer. A peer that
        // restarted since refuses the puts as for another incarnation: ask again, once.
        let mut retried = false;
        loop {
            let incarnation = client::incarnation(peer, &self.inner.options)?;
            let keys: Vec<Key> = data.iter().map(|_| remote_key(peer, incarnation)).collect();
            match self.send_puts(peer, &keys, data.clone()) {
                Ok(()) => return Ok(keys),
                Err(Error::WrongIncarnation { .. }) if !retried => retried = true,
                Err(other) => return Err(other),
            }
        }
    }

    /// Sends a PUT of each object under its key's id to the remote `peer`, in one pipelined
    /// exchange, after checking every object against this process's maximum message size.
    fn send_puts(&self, peer: &str, keys: &[Key], data: Vec<Bytes>) -> Result<()> {
        let limit = self.inner.options.get_max_message_size();
        if let Some(large) = data.iter().find(|d| d.len() as u64 > limit) {
            return Err(Error::TooLarge {
                peer: peer.to_string(),
                operation: format!("put of an object of {} bytes", large.len()),
                size: large.len() as u64,
                limit,
                whose: "this process's",
            });
        }
        let requests: Vec<Request> = keys
            .iter()
            .zip(data)
            .map(|(key, data)| Request {
                payload: Some(data),
                ..Request::new(Op::Put, key.id()).for_incarnation(key.peer_incarnation())
            })
            .collect();
        exchange(peer, &self.inner.options, &requests).map(|_| ())
    }

    fn client_only_error(&self) -> Error {
        Error::Config {
            what: "zmq connector".to_string(),
            message: "this connector is client-only: it reads other peers' objects but stores none \
                      (build it without with_client_only to serve, or with_remote(peer) to store on a peer)"
                .to_string(),
        }
    }

    /// Refuses a connector inherited through `fork()`: libzmq's sockets and this
    /// connector's server thread do not survive it, and a put into the inherited copy of
    /// the server's map would be lost (nobody serves it). A connector made in the child, or
    /// one rebuilt there from this one's [`config`](Connector::config), works.
    fn check_process(&self) -> Result<()> {
        let pid = crate::process_id::current();
        if self.inner.pid == pid {
            return Ok(());
        }
        Err(Error::Config {
            what: "zmq connector".to_string(),
            message: format!(
                "made in process {} and inherited by process {pid} through fork(): ZeroMQ \
                 sockets and the peer's server thread do not survive a fork; make the \
                 connector in the child, rebuild it there from its config(), or start \
                 children with spawn or forkserver",
                self.inner.pid
            ),
        })
    }

    fn check_open(&self) -> Result<()> {
        self.check_process()?;
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
        self.check_process()?;
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
            Some(server) => {
                let server = self.running(server)?;
                match key.peer_incarnation() {
                    Some(incarnation) if incarnation != server.incarnation() => {
                        Err(mixed_up(key, server))
                    }
                    _ => Ok(Owner::Here(server)),
                }
            }
            None => Ok(Owner::Peer(peer)),
        }
    }

    /// Asks `peer` one question about `key`.
    fn ask(&self, peer: &str, op: Op, key: &Key) -> Result<Answer> {
        let request = Request::new(op, key.id()).for_incarnation(key.peer_incarnation());
        let mut answers = exchange(peer, &self.inner.options, std::slice::from_ref(&request))
            .map_err(|e| advertised_hint(e, &[key]))?;
        answers.pop().ok_or_else(|| Error::Protocol {
            peer: peer.to_string(),
            message: format!("no answer to {op} of {key}"),
        })
    }

    /// Gets the objects of `keys` from `peer`, read in place from its shared memory where the
    /// peer offers it and this process can map it, else over TCP.
    fn fetch(&self, peer: &str, keys: &[&Key]) -> Result<Vec<Option<Bytes>>> {
        let shared_memory = self.inner.options.shm().enabled && !shm::is_unusable(peer);
        // Objects whose proxies said where they lie in the owner's shared memory are read
        // there without a request, when the location holds; the rest are asked for.
        let mut located: Vec<Option<Bytes>> = keys
            .iter()
            .map(|key| {
                shared_memory
                    .then(|| self.read_located(peer, key))
                    .flatten()
            })
            .collect();
        let asked: Vec<&Key> = keys
            .iter()
            .zip(&located)
            .filter(|(_, read)| read.is_none())
            .map(|(key, _)| *key)
            .collect();
        if asked.len() < keys.len() {
            let mut fetched = if asked.is_empty() {
                Vec::new()
            } else {
                self.fetch_asking(peer, &asked, shared_memory)?
            }
            .into_iter();
            for slot in &mut located {
                if slot.is_none() {
                    *slot = fetched.next().flatten();
                }
            }
            return Ok(located);
        }
        self.fetch_asking(peer, keys, shared_memory)
    }

    /// The object of `key` read from `peer`'s shared memory at the location a proxy of it
    /// carried ([`locations`](crate::locations)), checked as a descriptor from the network
    /// is (same host, the process serving `peer`, segment token, slot, generation, the key's
    /// object id, length); `None` when there is no location or it does not hold (then the
    /// location is forgotten and the caller asks the owner).
    fn read_located(&self, peer: &str, key: &Key) -> Option<Bytes> {
        let location = crate::locations::get(key.id())?;
        let read = shm::Descriptor::decode(&location)
            .ok()
            .and_then(|descriptor| {
                let wanted = shm::Wanted {
                    peer: Some(peer),
                    object_id: key.id(),
                    max_len: self.inner.options.max_message_size(),
                    copy: self.inner.options.shm().copy_on_read,
                };
                shm::read(&descriptor, &wanted).ok()
            });
        match read {
            Some(bytes) => {
                self.inner.mapped_reads.fetch_add(1, Ordering::Relaxed);
                self.inner.located_reads.fetch_add(1, Ordering::Relaxed);
                Some(bytes)
            }
            None => {
                crate::locations::forget(key.id());
                None
            }
        }
    }

    /// Gets the objects of `keys` from `peer` with requests (see [`fetch`](Self::fetch)).
    fn fetch_asking(
        &self,
        peer: &str,
        keys: &[&Key],
        shared_memory: bool,
    ) -> Result<Vec<Option<Bytes>>> {
        let requests: Vec<Request> = keys
            .iter()
            .map(|key| Request {
                shared_memory,
                ..Request::new(Op::Get, key.id()).for_incarnation(key.peer_incarnation())
            })
            .collect();
        let answers =
            exchange(peer, &self.inner.options, &requests).map_err(|e| advertised_hint(e, keys))?;
        let ids: Vec<u128> = keys.iter().map(|key| key.id()).collect();
        let mut results = Vec::with_capacity(ids.len());
        // Objects to ask for again over TCP.
        let mut again = Vec::new();
        for (index, (answer, &object_id)) in answers.into_iter().zip(&ids).enumerate() {
            let wanted = shm::Wanted {
                peer: Some(peer),
                object_id,
                max_len: self.inner.options.max_message_size(),
                copy: self.inner.options.shm().copy_on_read,
            };
            results.push(match answer {
                Answer::Ok(data) => data,
                Answer::NotFound | Answer::Limits(_) | Answer::Stats(_) | Answer::NoSession => None,
                Answer::Shared(descriptor) => match shm::read(&descriptor, &wanted) {
                    Ok(bytes) => {
                        self.inner.mapped_reads.fetch_add(1, Ordering::Relaxed);
                        Some(bytes)
                    }
                    Err(shm::Miss::Invalid(message)) => {
                        return Err(Error::Protocol {
                            peer: peer.to_string(),
                            message,
                        })
                    }
                    Err(miss) => {
                        if miss.is_lasting() {
                            shm::mark_unusable(peer, &miss);
                        }
                        again.push(index);
                        None
                    }
                },
            });
        }
        if !again.is_empty() {
            let requests: Vec<Request> = again
                .iter()
                .map(|&index| {
                    Request::new(Op::Get, ids[index])
                        .for_incarnation(keys[index].peer_incarnation())
                })
                .collect();
            let answers = exchange(peer, &self.inner.options, &requests)
                .map_err(|e| advertised_hint(e, keys))?;
            for (index, answer) in again.into_iter().zip(answers) {
                if let Answer::Ok(data) = answer {
                    results[index] = data;
                }
            }
        }
        Ok(results)
    }
}

/// A fresh key for an object of this process's own `server`.
fn own_key(server: &PeerServer) -> Key {
    Key::random(KIND)
        .with_peer(server.endpoint())
        .with_peer_incarnation(server.incarnation())
        .with_advertised(server.advertised())
}

/// A fresh key for an object stored on the remote peer `peer` of incarnation `incarnation`.
fn remote_key(peer: &str, incarnation: u64) -> Key {
    Key::random(KIND)
        .with_peer(peer)
        .with_peer_incarnation(incarnation)
}

/// The error for a key that names this process's own endpoint but another incarnation.
fn mixed_up(key: &Key, server: &PeerServer) -> Error {
    let endpoint = server.endpoint();
    let loopback = endpoint.starts_with("tcp://127.")
        || endpoint.starts_with("tcp://[::1]")
        || endpoint.starts_with("tcp://localhost");
    let hint = if loopback {
        "another host bound the same loopback address and port and wrote this key there: loopback addresses name a different machine on every host, so each process must bind an address the others can reach (set PROXYSTORE_ZMQ_INTERFACE, or ZmqOptions::with_interface)"
    } else {
        "the key was written by an earlier run of a peer at this address (its objects are gone), or another process advertises this same address (check PROXYSTORE_ZMQ_ADVERTISE and PROXYSTORE_ZMQ_PORT on each host)"
    };
    Error::WrongIncarnation {
        peer: endpoint.to_string(),
        operation: format!("key {key}"),
        message: format!(
            "the key names this process's own endpoint but incarnation {:016x}, and this process is incarnation {:016x}: {hint}",
            key.peer_incarnation().unwrap_or(0),
            server.incarnation()
        ),
    }
}

/// Says, in a timeout at an address its owner advertised, that it was advertised.
fn advertised_hint(error: Error, keys: &[&Key]) -> Error {
    match error {
        Error::Timeout {
            peer,
            operation,
            timeout,
        } if keys.iter().any(|key| key.peer_is_advertised()) => Error::Timeout {
            operation: format!(
                "{operation}; {peer} is the address its owner advertised (PROXYSTORE_ZMQ_ADVERTISE or ZmqOptions::with_address), not one it bound: check that the name resolves and reaches that host from here"
            ),
            peer,
            timeout,
        },
        other => other,
    }
}

impl Connector for ZmqConnector {
    /// A slot of this process's shared memory arena when shared memory is on, the connector
    /// stores here (not `with_remote` or client-only) and `len` is at least the threshold
    /// and fits; else a heap buffer. See [`WriteBuffer`](crate::WriteBuffer).
    fn alloc(&self, len: usize) -> Result<crate::WriteBuffer> {
        self.check_open()?;
        if matches!(self.inner.options.placement(), Placement::Here) {
            if let Some(reservation) = self.server()?.objects().reserve(len) {
                return Ok(crate::WriteBuffer::shared(reservation));
            }
        }
        Ok(crate::WriteBuffer::heap(len))
    }

    /// Stores a buffer from [`alloc`](Connector::alloc): a shared memory slot is published
    /// where it was written (no copy); a heap buffer is an ordinary put.
    fn put_buffer(&self, buffer: crate::WriteBuffer) -> Result<Key> {
        self.check_open()?;
        match self.inner.options.placement() {
            Placement::Here => {}
            Placement::Remote(peer) => return self.put_to(peer, buffer.into_bytes()),
            Placement::ClientOnly => return Err(self.client_only_error()),
        }
        let server = self.server()?;
        let key = own_key(server);
        match buffer.into_reservation() {
            Ok(reservation) => server.objects().insert_reserved(key.id(), reservation),
            Err(heap) => server
                .objects()
                .insert_many(std::iter::once((key.id(), heap.into_bytes()))),
        }
        Ok(key)
    }

    fn put(&self, data: Bytes) -> Result<Key> {
        self.check_open()?;
        match self.inner.options.placement() {
            Placement::Here => {}
            Placement::Remote(peer) => return self.put_to(peer, data),
            Placement::ClientOnly => return Err(self.client_only_error()),
        }
        let server = self.server()?;
        let key = own_key(server);
        server
            .objects()
            .insert_many(std::iter::once((key.id(), data)));
        Ok(key)
    }

    /// A key naming the peer that will hold the value: this process's own peer (started now
    /// if needed), or the remote peer of a connector built `with_remote(peer)`.
    fn new_key(&self) -> Result<Key> {
        self.check_open()?;
        match self.inner.options.placement() {
            Placement::Here => Ok(own_key(self.server()?)),
            Placement::Remote(peer) => Ok(remote_key(
                peer,
                client::incarnation(peer, &self.inner.options)?,
            )),
            Placement::ClientOnly => Err(self.client_only_error()),
        }
    }

    /// Stores the value in the peer the key names: in this process when it is this
    /// connector's own peer, else with a remote put under the key's id (the peer refuses an
    /// id already taken: keys are write-once there too).
    fn put_at(&self, key: &Key, data: Bytes) -> Result<()> {
        match self.owner(key)? {
            Owner::Here(server) => {
                if server.objects().insert_new(key.id(), data) {
                    Ok(())
                } else {
                    Err(Error::KeyTaken {
                        key: key.clone(),
                        connector: format!("zmq peer {}", server.endpoint()),
                    })
                }
            }
            Owner::Peer(peer) => {
                match self.send_puts(peer, std::slice::from_ref(key), vec![data]) {
                    Ok(()) => Ok(()),
                    // The peer's refusal of an id it already holds (see `server::answer`).
                    Err(Error::Peer { message, .. }) if message.contains("is already stored") => {
                        Err(Error::KeyTaken {
                            key: key.clone(),
                            connector: format!("zmq peer {peer}"),
                        })
                    }
                    Err(other) => Err(other),
                }
            }
        }
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        match self.owner(key)? {
            Owner::Here(server) => Ok(server.objects().get(key.id())),
            Owner::Peer(peer) => Ok(self.fetch(peer, &[key])?.pop().flatten()),
        }
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        match self.owner(key)? {
            Owner::Here(server) => Ok(server.objects().contains(key.id())),
            Owner::Peer(peer) => Ok(self.ask(peer, Op::Exists, key)? != Answer::NotFound),
        }
    }

    fn evict(&self, key: &Key) -> Result<()> {
        crate::locations::forget(key.id());
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
        match self.inner.options.placement() {
            Placement::Here => {}
            Placement::Remote(peer) => return self.put_many_to(peer, data),
            Placement::ClientOnly => return Err(self.client_only_error()),
        }
        let server = self.server()?;
        let keys: Vec<Key> = data.iter().map(|_| own_key(server)).collect();
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
            let owned: Vec<&Key> = indices.iter().map(|&i| &keys[i]).collect();
            let found = self.fetch(peer, &owned)?;
            for (index, data) in indices.into_iter().zip(found) {
                results[index] = data;
            }
        }
        Ok(results)
    }

    fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        // A connector inherited through fork() closes only its own copy (the server
        // belongs to the parent; `PeerServer::stop` leaves an inherited one alone).
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

    /// Objects are never overwritten (a peer holds write-once objects); keys are reserved
    /// unless the connector is client-only.
    fn supports(&self, capability: Capability) -> Option<bool> {
        match capability {
            Capability::Overwrite => Some(false),
            Capability::ReservedKeys => Some(!matches!(
                self.inner.options.placement(),
                Placement::ClientOnly
            )),
        }
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
