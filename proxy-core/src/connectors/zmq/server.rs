//! `PeerServer`: the thread that serves this process's objects to other peers.
//!
//! The thread owns a `ROUTER` socket (bound to the peer's endpoint) and an `inproc` `PULL`
//! socket on which [`PeerServer::stop`] tells it to finish. It answers requests in the
//! [`wire`](super::wire) format from the [`ObjectMap`] it shares with the connectors of this
//! process. Every message is untrusted: a malformed one gets an error reply, is counted in
//! [`PeerServer::rejected`], and the server goes on.
//!
//! A process-wide table of live servers, keyed by endpoint, lets a connector rebuilt from its
//! configuration in the same process reach the same server and objects.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::auth::{self, Binding, Refusal, Secret, Verifier};
use super::connections::{self, Connections};
use super::context;
use super::frame::{message_into_bytes, send_bytes};
use super::hardened;
use super::objects::{ObjectMap, Refused};
use super::options::ZmqOptions;
use super::shm::{Arena, Descriptor};
use super::stats::PeerStats;
use super::wire::{error_reply_header, Header, Op, Status, FLAG_SHARED_MEMORY, HEADER_LEN};
use super::zap;
use crate::error::{Error, Result};

/// How often the server thread looks at its stop flag if the stop message went missing.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Where a header holds the incarnation (see [`wire`](super::wire)).
const INCARNATION_FIELD: std::ops::Range<usize> = 64..72;

/// Rejected requests logged per second at most; the rest are counted and summarised.
const LOGGED_REJECTIONS_PER_SECOND: u32 = 10;

/// Complete messages the `ROUTER` queues per connection before it stops reading from that
/// connection (libzmq's default is 1,000). Each may be as large as the maximum message size,
/// so this bounds what one member's connection can make the peer hold while the server
/// thread is busy (64 x the maximum message size instead of 1,000 x); TCP's own flow
/// control then holds the sender back. Our clients keep at most 64 requests in flight per
/// connection ([`client::WINDOW`](super::client::WINDOW)), so this never holds them back.
const ROUTER_RCVHWM: i32 = 64;

/// A running (or stopped) peer server.
pub(crate) struct PeerServer {
    endpoint: String,
    /// Whether `endpoint` was advertised rather than bound.
    advertised: bool,
    /// The random id drawn when this server started.
    incarnation: u64,
    secret: Option<Secret>,
    objects: Arc<ObjectMap>,
    control_endpoint: String,
    shared: Arc<ServerShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The server's ZAP domain (with a secret), unregistered when the server is dropped.
    _zap: Option<zap::Registration>,
    /// The process that started it: a child forked from that process has a copy of this
    /// value but not the server thread, so it is not running there.
    pid: u32,
}

/// What the server thread and its handle both see.
#[derive(Debug, Default)]
struct ServerShared {
    stopping: AtomicBool,
    rejected: AtomicU64,
    /// Requests answered (refused ones included).
    answered: AtomicU64,
    /// Bytes of request payloads hashed (only those of requests whose header proof held).
    payload_bytes_hashed: AtomicU64,
    /// The limits the server was started with (reported by `STATS`).
    max_message_size: u64,
    max_bytes: u64,
    /// Connections open now.
    connections: AtomicU64,
    /// Connections dropped to stay within the connection limit.
    connections_dropped: AtomicU64,
    /// Handshakes refused (no valid connection token).
    handshakes_refused: AtomicU64,
}

impl ServerShared {
    /// The server's counters now.
    fn stats(&self, objects: &ObjectMap) -> PeerStats {
        let arena = objects.shm_stats().unwrap_or_default();
        PeerStats {
            shared_memory_bytes: arena.held,
            shared_memory_reserved: arena.reserved,
            shared_memory_remote_reserved: arena.remote_reserved,
            shared_memory_capacity: arena.capacity,
            quota_used: objects.remote_charged(),
            objects: objects.len() as u64,
            bytes: objects.bytes(),
            rejected_requests: self.rejected.load(Ordering::Relaxed),
            requests: self.answered.load(Ordering::Relaxed),
            remote_bytes: objects.remote_bytes(),
            max_bytes: self.max_bytes,
            max_message_size: self.max_message_size,
        }
    }
}

impl fmt::Debug for PeerServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerServer")
            .field("endpoint", &self.endpoint)
            .field("incarnation", &format_args!("{:016x}", self.incarnation))
            .field("objects", &self.objects.len())
            .field("running", &self.is_running())
            .finish()
    }
}

fn live_servers() -> &'static Mutex<HashMap<String, Weak<PeerServer>>> {
    static LIVE: OnceLock<Mutex<HashMap<String, Weak<PeerServer>>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running server of this process bound to `endpoint`, if there is one.
pub(crate) fn live_server(endpoint: &str) -> Option<Arc<PeerServer>> {
    lock(live_servers())
        .get(endpoint)
        .and_then(Weak::upgrade)
        .filter(|server| server.is_running())
}

impl PeerServer {
    /// Binds a `ROUTER` socket as `options` (already [resolved](ZmqOptions::resolve)) say
    /// and starts serving on a new thread.
    pub(crate) fn start(options: &ZmqOptions) -> Result<Arc<PeerServer>> {
        options.check_exposure()?;
        hardened::check_library(options.interface(), hardened::library_is_hardened())?;
        let bind = options.bind_description();
        let zmq_error = |action: &str, e: zmq::Error| Error::Peer {
            peer: bind.clone(),
            message: format!("could not {action} the peer server socket: {e}"),
        };
        let context = context();
        let router = context
            .socket(zmq::ROUTER)
            .map_err(|e| zmq_error("create", e))?;
        router
            .set_linger(0)
            .map_err(|e| zmq_error("configure", e))?;
        router
            .set_maxmsgsize(options.wire_limit_option())
            .map_err(|e| zmq_error("configure", e))?;
        router
            .set_ipv6(options.uses_ipv6())
            .map_err(|e| zmq_error("configure", e))?;
        router
            .set_rcvhwm(ROUTER_RCVHWM)
            .map_err(|e| zmq_error("configure", e))?;
        // With a secret, only clients that show a connection token finish the handshake
        // (see `zap`): a stranger's bytes are never buffered as messages.
        let zap = match options.secret() {
            Some(secret) => {
                zap::ensure_handler().map_err(|message| Error::Peer {
                    peer: bind.clone(),
                    message,
                })?;
                let registration = zap::Registration::new(secret);
                router
                    .set_zap_domain(registration.domain())
                    .map_err(|e| zmq_error("configure", e))?;
                router
                    .set_plain_server(true)
                    .map_err(|e| zmq_error("configure", e))?;
                Some(registration)
            }
            None => None,
        };
        let limit =
            connections::effective_limit(options.max_connections(), connections::open_file_limit());
        let connections =
            Connections::watch(&router, limit).map_err(|e| zmq_error("monitor", e))?;
        options.bind(&router)?;
        let port = bound_port(&router).ok_or_else(|| Error::Peer {
            peer: bind.clone(),
            message: "the bound socket did not report its port".to_string(),
        })?;
        let endpoint = options.advertised_endpoint(port)?;
        let incarnation = new_incarnation();

        let control_endpoint = format!("inproc://proxy-core-zmq-server-{}", crate::ids::new_id());
        let control = context
            .socket(zmq::PULL)
            .map_err(|e| zmq_error("create", e))?;
        control
            .bind(&control_endpoint)
            .map_err(|e| zmq_error("bind the control socket of", e))?;

        let shm = options.shm();
        let arena = if shm.enabled {
            Arena::new(shm.min_size, shm.capacity)
        } else {
            None
        };
        if let (Some(arena), (len, count)) = (&arena, shm.prewarm) {
            if count > 0 {
                arena.prewarm(len, count);
            }
        }
        let objects =
            Arc::new(ObjectMap::with_arena(arena).with_digests_at_put(options.secret().is_some()));
        let shared = Arc::new(ServerShared {
            max_message_size: options.get_max_message_size(),
            max_bytes: options.max_bytes(),
            ..ServerShared::default()
        });
        let mut limits = Limits {
            endpoint: endpoint.clone(),
            incarnation,
            max_message_size: options.get_max_message_size(),
            max_bytes: options.max_bytes(),
            verifier: options
                .secret()
                .cloned()
                .map(|secret| Verifier::new(secret, options.max_sessions())),
            log: RejectionLog::default(),
            shm_idle: shm.idle,
        };
        let thread = {
            let objects = Arc::clone(&objects);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("zmq-peer-{port}"))
                .spawn(move || serve(router, control, connections, &objects, &shared, &mut limits))
                .map_err(|e| Error::Peer {
                    peer: endpoint.clone(),
                    message: format!("could not start the peer server thread: {e}"),
                })?
        };
        tracing::debug!(
            peer = %endpoint,
            incarnation = %format_args!("{incarnation:016x}"),
            authenticated = options.secret().is_some(),
            max_connections = limit,
            "zmq peer server started"
        );
        let server = Arc::new(PeerServer {
            endpoint: endpoint.clone(),
            advertised: options.advertises_address(),
            incarnation,
            secret: options.secret().cloned(),
            objects,
            control_endpoint,
            shared,
            thread: Mutex::new(Some(thread)),
            _zap: zap,
            pid: crate::process_id::current(),
        });
        lock(live_servers()).insert(endpoint, Arc::downgrade(&server));
        Ok(server)
    }

    /// The endpoint other peers reach this server at (the one written into keys).
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The random id this server drew when it started (never 0).
    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether the endpoint was advertised (`PROXYSTORE_ZMQ_ADVERTISE`) rather than bound.
    pub(crate) fn advertised(&self) -> bool {
        self.advertised
    }

    /// The secret this server requires, if any.
    pub(crate) fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// The objects this server serves.
    pub(crate) fn objects(&self) -> &ObjectMap {
        &self.objects
    }

    /// Whether the server still serves (it has not been stopped).
    pub(crate) fn is_running(&self) -> bool {
        !self.shared.stopping.load(Ordering::Acquire) && self.pid == crate::process_id::current()
    }

    /// How many malformed requests the server has answered with an error.
    pub(crate) fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Bytes of request payloads this server has hashed to check them against their proven
    /// digest (a request whose header proof fails is refused before its payload is read).
    #[cfg(test)]
    pub(crate) fn payload_bytes_hashed(&self) -> u64 {
        self.shared.payload_bytes_hashed.load(Ordering::Relaxed)
    }

    /// Connections open now, dropped to stay within the limit, and refused at the
    /// handshake, as the server thread last counted them.
    #[cfg(test)]
    pub(crate) fn connection_counts(&self) -> (u64, u64, u64) {
        (
            self.shared.connections.load(Ordering::Relaxed),
            self.shared.connections_dropped.load(Ordering::Relaxed),
            self.shared.handshakes_refused.load(Ordering::Relaxed),
        )
    }

    /// The server's counters ([`PeerStats`]), read here without a request.
    pub(crate) fn stats(&self) -> PeerStats {
        self.shared.stats(&self.objects)
    }

    /// Stops the server thread, waits for it, and drops the objects. Idempotent.
    pub(crate) fn stop(&self) {
        if self.pid != crate::process_id::current() {
            // A copy inherited through fork(): the thread, the sockets and the memory they
            // serve are the parent's. Joining a thread this process does not have, or
            // closing the parent's sockets, must not happen; the copy is left as it is.
            std::mem::forget(lock(&self.thread).take());
            return;
        }
        self.shared.stopping.store(true, Ordering::Release);
        {
            let mut live = lock(live_servers());
            if live
                .get(&self.endpoint)
                .is_some_and(|entry| std::ptr::eq(entry.as_ptr(), self))
            {
                live.remove(&self.endpoint);
            }
        }
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            // Wake the thread at once; if this fails it still sees the flag within
            // STOP_CHECK_INTERVAL.
            if let Ok(wake) = context().socket(zmq::PUSH) {
                let _ = wake.set_linger(100);
                if wake.connect(&self.control_endpoint).is_ok() {
                    let _ = wake.send(&b"stop"[..], zmq::DONTWAIT);
                }
            }
            // The thread catches nothing that could panic; a panic there is a bug worth
            // surfacing, but not by panicking again inside `Drop`.
            let _ = thread.join();
        }
        self.objects.clear();
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh random non-zero incarnation.
fn new_incarnation() -> u64 {
    loop {
        let id = crate::ids::new_id() as u64;
        if id != 0 {
            return id;
        }
    }
}

fn bound_port(socket: &zmq::Socket) -> Option<u16> {
    let endpoint = socket.get_last_endpoint().ok()?.ok()?;
    endpoint.rsplit(':').next()?.parse().ok()
}

/// What the server thread enforces.
struct Limits {
    endpoint: String,
    incarnation: u64,
    max_message_size: u64,
    max_bytes: u64,
    verifier: Option<Verifier>,
    log: RejectionLog,
    /// How long a shared memory segment stays unused before it is returned to the OS.
    shm_idle: Duration,
}

/// How often the server thread looks for shared memory segments idle for `idle`: a quarter
/// of it, from 10 ms to 1 s (a segment is returned at most that long after its idle time).
fn release_check_interval(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Logs rejected requests at `warn`, at most [`LOGGED_REJECTIONS_PER_SECOND`] a second (a
/// client can trigger them at will), and how many were left out.
#[derive(Debug, Default)]
struct RejectionLog {
    second: Option<Instant>,
    logged: u32,
    skipped: u64,
}

impl RejectionLog {
    fn rejected(&mut self, endpoint: &str, from: &str, reason: &str) {
        let now = Instant::now();
        if self
            .second
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1))
        {
            if self.skipped > 0 {
                tracing::warn!(
                    peer = %endpoint,
                    skipped = self.skipped,
                    "zmq peer: more rejected requests were not logged"
                );
            }
            self.second = Some(now);
            self.logged = 0;
            self.skipped = 0;
        }
        if self.logged < LOGGED_REJECTIONS_PER_SECOND {
            self.logged += 1;
            tracing::warn!(peer = %endpoint, from = %from, reason = %reason, "zmq peer: request rejected");
        } else {
            self.skipped += 1;
        }
    }
}

/// The server thread: serves until stopped, then stops the connection monitor (before its
/// receiving end closes, see `connections`).
fn serve(
    mut router: zmq::Socket,
    control: zmq::Socket,
    mut connections: Connections,
    objects: &ObjectMap,
    shared: &ServerShared,
    limits: &mut Limits,
) {
    serve_until_stopped(
        &mut router,
        &control,
        &mut connections,
        objects,
        shared,
        limits,
    );
    connections.stop(&mut router);
    crate::telemetry::peer_connections(&limits.endpoint, 0);
}

/// Reads the connection monitor's events, drops connections beyond the limit, and records
/// the counts.
fn watch_connections(connections: &mut Connections, shared: &ServerShared, endpoint: &str) {
    let changes = connections.update();
    if changes.dropped > 0 {
        shared
            .connections_dropped
            .fetch_add(changes.dropped, Ordering::Relaxed);
        for _ in 0..changes.dropped {
            crate::telemetry::peer_connection_refused(endpoint, "limit");
        }
        tracing::debug!(
            peer = %endpoint,
            dropped = changes.dropped,
            limit = connections.limit(),
            "zmq peer: connections dropped to stay within the connection limit"
        );
    }
    if changes.refused > 0 {
        shared
            .handshakes_refused
            .fetch_add(changes.refused, Ordering::Relaxed);
        for _ in 0..changes.refused {
            crate::telemetry::peer_connection_refused(endpoint, "handshake");
        }
    }
    if changes.count_changed {
        shared
            .connections
            .store(connections.open() as u64, Ordering::Relaxed);
        crate::telemetry::peer_connections(endpoint, connections.open());
    }
}

/// The server thread's loop.
fn serve_until_stopped(
    router: &mut zmq::Socket,
    control: &zmq::Socket,
    connections: &mut Connections,
    objects: &ObjectMap,
    shared: &ServerShared,
    limits: &mut Limits,
) {
    let release_every = release_check_interval(limits.shm_idle);
    let interval = STOP_CHECK_INTERVAL.min(release_every).as_millis() as i64;
    let mut next_release = Instant::now() + release_every;
    while !shared.stopping.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= next_release {
            objects.release_idle_shared_memory(limits.shm_idle);
            next_release = now + release_every;
        }
        let (request_ready, stop_ready) = {
            let mut items = [
                router.as_poll_item(zmq::POLLIN),
                control.as_poll_item(zmq::POLLIN),
                connections.monitor().as_poll_item(zmq::POLLIN),
            ];
            match zmq::poll(&mut items, interval) {
                Ok(_) => (items[0].is_readable(), items[1].is_readable()),
                Err(zmq::Error::EINTR) => continue,
                // The context is gone or the sockets are unusable: nothing left to serve.
                Err(_) => return,
            }
        };
        if stop_ready {
            return;
        }
        watch_connections(connections, shared, &limits.endpoint);
        if request_ready {
            // Answer everything already queued before polling again (pipelined batches).
            while let Some((identity, mut request)) = receive_request(router) {
                let received_at = Instant::now();
                let received = request.header.as_ref().map_or(0, |frame| frame.len())
                    + request.payload.as_ref().map_or(0, |frame| frame.len());
                let op = request
                    .header
                    .as_ref()
                    .and_then(|frame| frame.get(4).copied())
                    .map_or("malformed", Op::name_of_byte);
                let from = request
                    .header
                    .as_mut()
                    .and_then(|frame| frame.gets("Peer-Address"))
                    .unwrap_or("unknown address")
                    .to_string();
                // What the reply's proof binds it to (zeros when the header is unreadable).
                let binding: Binding = request
                    .header
                    .as_ref()
                    .and_then(|frame| Header::decode(frame).ok())
                    .map_or(([0; 16], [0; 32]), |header| auth::binding(&header));
                let mut reply = answer(request, objects, shared, limits);
                reply.header[INCARNATION_FIELD].copy_from_slice(&limits.incarnation.to_le_bytes());
                if let Some(verifier) = &limits.verifier {
                    seal(&mut reply, verifier.secret(), &binding, objects);
                }
                shared.answered.fetch_add(1, Ordering::Relaxed);
                if let Some(reason) = &reply.rejected {
                    shared.rejected.fetch_add(1, Ordering::Relaxed);
                    limits.log.rejected(&limits.endpoint, &from, reason);
                }
                send_reply(router, identity, &reply);
                crate::telemetry::peer_answered(&crate::telemetry::Answered {
                    peer: &limits.endpoint,
                    op,
                    outcome: Status::outcome_of_byte(reply.header[5]),
                    refused: reply.rejected.is_some(),
                    received: received as u64,
                    sent: (HEADER_LEN + reply.payload.as_ref().map_or(0, Bytes::len)) as u64,
                    took: received_at.elapsed(),
                });
            }
            let stats = shared.stats(objects);
            crate::telemetry::peer_holds(
                &limits.endpoint,
                &crate::telemetry::Holdings {
                    objects: stats.objects,
                    bytes: stats.bytes,
                    remote_bytes: stats.remote_bytes,
                    quota: stats.max_bytes,
                    shm_bytes: stats.shared_memory_bytes,
                    shm_reserved: stats.shared_memory_reserved,
                },
            );
        }
    }
}

/// The frames of one request that followed the sender's routing id.
struct Incoming {
    header: Option<zmq::Message>,
    payload: Option<zmq::Message>,
    /// Frames beyond header and payload, dropped on arrival (only counted).
    extra_frames: usize,
}

/// The next queued request and its sender's routing id, or `None` when there is none (or
/// the socket failed).
fn receive_request(router: &zmq::Socket) -> Option<(zmq::Message, Incoming)> {
    let identity = router.recv_msg(zmq::DONTWAIT).ok()?;
    let mut incoming = Incoming {
        header: None,
        payload: None,
        extra_frames: 0,
    };
    // The rest of a multipart message is delivered with its first frame, so these reads do
    // not wait. Frames past the payload are dropped one by one, keeping memory bounded by
    // the socket's maximum message size whatever a sender does.
    let mut more = identity.get_more();
    while more {
        let Ok(frame) = router.recv_msg(0) else { break };
        more = frame.get_more();
        if incoming.header.is_none() {
            incoming.header = Some(frame);
        } else if incoming.payload.is_none() {
            incoming.payload = Some(frame);
        } else {
            incoming.extra_frames += 1;
        }
    }
    Some((identity, incoming))
}

/// A reply to send: header bytes and optional payload.
struct Reply {
    header: [u8; HEADER_LEN],
    payload: Option<Bytes>,
    /// The stored object the payload is (its digest is kept with it).
    object: Option<u128>,
    /// Why the request was malformed or refused, if it was.
    rejected: Option<String>,
}

impl Reply {
    fn to(header: &Header, status: Status, payload: Option<Bytes>) -> Reply {
        Reply {
            header: header.reply(status).encode(),
            payload,
            object: None,
            rejected: None,
        }
    }

    /// An ok `GET` reply carrying the stored object `id`.
    fn object(header: &Header, id: u128, data: Bytes) -> Reply {
        Reply {
            object: Some(id),
            ..Reply::to(header, Status::Ok, Some(data))
        }
    }

    fn error(header: [u8; HEADER_LEN], message: String) -> Reply {
        Reply {
            header,
            payload: Some(Bytes::from(message.clone())),
            object: None,
            rejected: Some(message),
        }
    }

    /// A refusal with `status` whose size field carries `size`.
    fn refusal(request: &Header, status: Status, size: u64, message: String) -> Reply {
        let mut header = request.reply(status);
        header.size = size;
        Reply::error(header.encode(), message)
    }
}

fn answer(
    request: Incoming,
    objects: &ObjectMap,
    shared: &ServerShared,
    limits: &mut Limits,
) -> Reply {
    let Some(frame) = &request.header else {
        return Reply::error(
            error_reply_header(&Default::default()),
            "empty message: no header frame".to_string(),
        );
    };
    let header = match Header::decode(frame) {
        Ok(header) => header,
        Err(error) => return Reply::error(error_reply_header(&error), error.message),
    };
    let refuse = |message: String| Reply::error(header.reply(Status::Error).encode(), message);
    if header.status != Status::Ok {
        return refuse(format!(
            "{} request has status {:?}; requests must have status 0",
            header.op, header.status
        ));
    }
    if request.extra_frames > 0 {
        return refuse(format!(
            "{} request has {} frames too many",
            header.op, request.extra_frames
        ));
    }
    if header.op.request_has_payload() != request.payload.is_some() {
        return refuse(format!(
            "{} request {} a payload frame",
            header.op,
            if request.payload.is_some() {
                "must not have"
            } else {
                "needs"
            }
        ));
    }
    // The payload's digest: proven by the request, kept with a put object. The header's
    // proof is checked before the payload is hashed.
    let mut payload_digest = None;
    if let Some(verifier) = &mut limits.verifier {
        if let Err(Refusal { status, message }) = verifier.check(&header, limits.incarnation) {
            return Reply::refusal(&header, status, 0, message);
        }
        if let Some(payload) = &request.payload {
            shared
                .payload_bytes_hashed
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
        }
        if !auth::payload_matches(&header, request.payload.as_deref()) {
            return Reply::refusal(
                &header,
                Status::Unauthenticated,
                0,
                "the payload does not match the digest its request proves".to_string(),
            );
        }
        payload_digest = request.payload.is_some().then_some(header.digest);
    }
    if header.incarnation != 0 && header.incarnation != limits.incarnation {
        return Reply::refusal(
            &header,
            Status::WrongPeer,
            0,
            auth::wrong_incarnation(header.incarnation, limits.incarnation),
        );
    }
    let id = header.object_id;
    match header.op {
        Op::Get => match get(objects, &header, limits.max_bytes) {
            Some((data, _)) if data.len() as u64 > header.size => Reply::refusal(
                &header,
                Status::TooLarge,
                data.len() as u64,
                format!(
                    "object {id:032x} is {} bytes, more than the {} bytes the client accepts",
                    data.len(),
                    header.size
                ),
            ),
            // A reader that can map shared memory gets where the object is, not its bytes.
            Some((_, Some(descriptor))) if header.flags & FLAG_SHARED_MEMORY != 0 => Reply::to(
                &header,
                Status::Shared,
                Some(Bytes::copy_from_slice(&descriptor.encode())),
            ),
            Some((data, _)) => Reply::object(&header, id, data),
            None => Reply::to(&header, Status::NotFound, None),
        },
        Op::Exists => {
            let status = if objects.contains(id) {
                Status::Ok
            } else {
                Status::NotFound
            };
            Reply::to(&header, status, None)
        }
        Op::Evict => {
            objects.remove(id);
            Reply::to(&header, Status::Ok, None)
        }
        Op::Limits => {
            let mut reply = header.reply(Status::Ok);
            reply.size = limits.max_message_size;
            // With a secret, a (proven) LIMITS opens the session destructive requests need.
            if let Some(verifier) = &mut limits.verifier {
                reply.session = verifier.open_session();
            }
            Reply {
                header: reply.encode(),
                payload: None,
                object: None,
                rejected: None,
            }
        }
        Op::Stats => Reply::to(
            &header,
            Status::Ok,
            Some(Bytes::copy_from_slice(&shared.stats(objects).encode())),
        ),
        Op::Put => {
            let data = request.payload.map(message_into_bytes).unwrap_or_default();
            if data.len() as u64 != header.size {
                return refuse(format!(
                    "put header says {} bytes, the payload has {}",
                    header.size,
                    data.len()
                ));
            }
            let size = data.len() as u64;
            match objects.insert_remote(id, data, limits.max_bytes, payload_digest) {
                Ok(()) => Reply::to(&header, Status::Ok, None),
                Err(Refused::Taken) => refuse(format!(
                    "object {id:032x} is already stored (keys are write-once)"
                )),
                Err(Refused::OverQuota(held)) => Reply::refusal(
                    &header,
                    Status::OverQuota,
                    limits.max_bytes,
                    format!(
                        "storing {size} bytes would exceed this peer's limit of {} bytes for remote puts ({held} bytes charged: each object's bytes plus {} bytes of overhead, and the shared memory holding them)",
                        limits.max_bytes,
                        super::objects::REMOTE_OBJECT_OVERHEAD
                    ),
                ),
            }
        }
    }
}

/// The object a `GET` asks for, shared (copied into shared memory if it is not yet, and a
/// remote object only within `quota`) when the reader offered to map it.
fn get(objects: &ObjectMap, header: &Header, quota: u64) -> Option<(Bytes, Option<Descriptor>)> {
    if header.flags & FLAG_SHARED_MEMORY != 0 {
        objects.share(header.object_id, quota)
    } else {
        objects.get_shared(header.object_id)
    }
}

/// Writes the reply's proof: its header, the request it answers and its payload's digest
/// (an object's is the one kept with it, so objects are not hashed on every read).
fn seal(reply: &mut Reply, secret: &Secret, binding: &Binding, objects: &ObjectMap) {
    let digest = reply.payload.as_ref().map(|payload| match reply.object {
        Some(id) => objects.digest(id, payload),
        None => auth::digest(payload),
    });
    secret.seal_reply(&mut reply.header, binding, digest.as_ref());
}

fn send_reply(router: &mut zmq::Socket, identity: zmq::Message, reply: &Reply) {
    // A ROUTER drops replies to peers that are gone and never blocks; a failed send only
    // loses that one reply, which the client then reports as a timeout.
    if router.send(identity, zmq::SNDMORE).is_err() {
        return;
    }
    let header_flags = if reply.payload.is_some() {
        zmq::SNDMORE
    } else {
        0
    };
    if router.send(&reply.header[..], header_flags).is_err() {
        return;
    }
    if let Some(payload) = &reply.payload {
        let _ = send_bytes(router, payload, 0);
    }
}
