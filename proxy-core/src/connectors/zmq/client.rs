//! Requests to other peers, over one `DEALER` socket per (thread, peer).
//!
//! libzmq sockets must not be shared between threads, so each thread keeps its own sockets in
//! a thread-local table keyed by the peer's endpoint. [`exchange`] pipelines a list of
//! requests to one peer: it keeps up to [`WINDOW`] requests in flight and pairs each reply
//! with its request by request id, so N requests cost about one round trip plus transfer.
//!
//! Any failure (a timeout, a malformed or unexpected reply, an error reply) discards the
//! socket: replies still in flight die with it, so a late answer can never be taken for the
//! answer to a later request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::auth::{self, Binding, Secret};
use super::context;
use super::cooldown;
use super::frame::{message_into_bytes, send_bytes};
use super::liveness::Liveness;
use super::options::ZmqOptions;
use super::shm::Descriptor;
use super::stats::PeerStats;
use super::wire::{Header, Op, Status, FLAG_SHARED_MEMORY};
use super::zap;
use crate::error::{Error, Result};

/// Requests in flight per pipelined exchange: enough to hide the round trip, well below
/// libzmq's default high-water marks (1000 messages) so that no reply is ever dropped.
pub(crate) const WINDOW: usize = 64;
/// Sockets kept per thread; beyond this an arbitrary idle one is closed.
const MAX_SOCKETS_PER_THREAD: usize = 64;
/// Longest wait for a reply before looking at the connection's progress: how much a dead
/// peer's timeout may overshoot.
const PROGRESS_CHECK: Duration = Duration::from_millis(50);
/// Shortest window over which a request's connection is held to the minimum rate (the
/// window is the timeout when that is longer).
const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);
/// Bytes counted as progress per request beyond the largest message accepted (ZMTP framing,
/// the header, an error message): past that, bytes cannot be a reply in transit.
const REPLY_SLACK: u64 = 64 << 10;
/// Longest endpoint accepted from a key.
const MAX_ENDPOINT_LEN: usize = 256;

/// One request to a peer.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// What to do.
    pub(crate) op: Op,
    /// The object it is about.
    pub(crate) object_id: u128,
    /// The object, for `PUT`.
    pub(crate) payload: Option<Bytes>,
    /// For `GET`: this process can map the peer's shared memory if they share a machine.
    pub(crate) shared_memory: bool,
    /// The incarnation of the peer the request is for (from the key; 0: not known, then a
    /// put or evict names the one this socket learnt).
    pub(crate) incarnation: u64,
}

impl Request {
    /// A request without payload or flags.
    pub(crate) fn new(op: Op, object_id: u128) -> Request {
        Request {
            op,
            object_id,
            payload: None,
            shared_memory: false,
            incarnation: 0,
        }
    }

    /// The same request, for the peer's incarnation `incarnation` (0: not known).
    pub(crate) fn for_incarnation(mut self, incarnation: Option<u64>) -> Request {
        self.incarnation = incarnation.unwrap_or(0);
        self
    }
}

/// A peer's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Done (`GET` carries the object).
    Ok(Option<Bytes>),
    /// The object is not stored there.
    NotFound,
    /// What the peer accepts and who it is (answer to `LIMITS`).
    Limits(PeerLimits),
    /// The peer's counters (answer to `STATS`).
    Stats(PeerStats),
    /// Where the object is in the peer's shared memory (answer to a `GET` that offered to
    /// map it).
    Shared(Descriptor),
    /// The peer did not take a destructive request in this socket's session (forgotten, or
    /// the sequence number used): a new session is opened and the request sent again.
    NoSession,
}

/// A peer's answer to `LIMITS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerLimits {
    /// The largest message the peer accepts.
    pub(crate) max_message_size: u64,
    /// The random id the peer drew when it started.
    pub(crate) incarnation: u64,
    /// The session it opened for this socket (0 when the peer has no secret).
    pub(crate) session: u64,
}

/// A client socket connected to one peer.
struct PeerSocket {
    socket: zmq::Socket,
    liveness: Liveness,
    next_request_id: u64,
    timeout: Duration,
    min_rate: u64,
    max_message_size: i64,
    secret: Option<Secret>,
    /// What the peer said to `LIMITS`, once asked (before the first put or evict).
    limits: Option<PeerLimits>,
    /// The next request's sequence number (strictly increasing; starts at random).
    next_sequence: u64,
    /// When the socket was made (with a secret, its connection token's time).
    opened: Instant,
}

impl Drop for PeerSocket {
    fn drop(&mut self) {
        // Before either socket closes (see `liveness`).
        self.liveness.stop(&mut self.socket);
    }
}

thread_local! {
    static SOCKETS: RefCell<HashMap<String, PeerSocket>> = RefCell::new(HashMap::new());
    /// The process `SOCKETS` were made in: after `fork()` the forking thread's table is a
    /// copy of sockets of the parent's context, which the child must not use (or close).
    static SOCKETS_PID: std::cell::Cell<u32> = std::cell::Cell::new(crate::process_id::current());
}

/// Forgets this thread's sockets if they were inherited through `fork()`.
fn forget_inherited_sockets(sockets: &mut HashMap<String, PeerSocket>) {
    let pid = crate::process_id::current();
    if SOCKETS_PID.with(|made_in| made_in.replace(pid)) != pid {
        std::mem::forget(std::mem::take(sockets));
    }
}

/// Sends `requests` to `peer` and returns the answers in the same order.
pub(crate) fn exchange(
    peer: &str,
    options: &ZmqOptions,
    requests: &[Request],
) -> Result<Vec<Answer>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let span = tracing::debug_span!(
        "zmq.exchange",
        peer,
        op = requests[0].op.name(),
        requests = requests.len(),
        sent_bytes = tracing::field::Empty,
        received_bytes = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let _entered = span.enter();
    let started = Instant::now();
    let result = with_socket(peer, options, requests, |socket| {
        run_in_session(socket, peer, requests)
    });
    record(&span, requests, &result, started.elapsed());
    result
}

/// Records an exchange in the process's metrics ([`telemetry`](crate::telemetry)) and on the
/// exchange's `span`.
fn record(
    span: &tracing::Span,
    requests: &[Request],
    result: &Result<Vec<Answer>>,
    took: Duration,
) {
    let sent = requests
        .iter()
        .map(|r| r.payload.as_ref().map_or(0, Bytes::len) as u64)
        .sum();
    let (outcome, received) = match result {
        Ok(answers) => (
            "ok",
            answers
                .iter()
                .map(|a| match a {
                    Answer::Ok(Some(data)) => data.len() as u64,
                    _ => 0,
                })
                .sum(),
        ),
        Err(error) => (
            match error {
                Error::Timeout { .. } => "timeout",
                Error::TooSlow { .. } => "too_slow",
                Error::Protocol { .. } => "protocol",
                other if other.is_not_found() => "not_found",
                other if other.is_refused() => "refused",
                _ => "other",
            },
            0,
        ),
    };
    span.record("sent_bytes", sent);
    span.record("received_bytes", received);
    span.record("outcome", outcome);
    crate::telemetry::client_exchanged(
        requests[0].op.name(),
        requests.len() as u64,
        outcome,
        took,
        sent,
        received,
    );
}

/// The incarnation of the peer at `peer`, asked with a `LIMITS` request on this thread's
/// socket the first time (the answer is kept with the socket, and serves its puts and
/// evicts too).
pub(crate) fn incarnation(peer: &str, options: &ZmqOptions) -> Result<u64> {
    let ask = Request::new(Op::Limits, 0);
    with_socket(peer, options, std::slice::from_ref(&ask), |socket| {
        limits(socket, peer).map(|limits| limits.incarnation)
    })
}

/// Runs `work` on this thread's socket to `peer` (connected now if there is none fit for
/// `options`), about `requests`; a failure drops the socket, and feeds the peer's
/// cool-down.
fn with_socket<T>(
    peer: &str,
    options: &ZmqOptions,
    requests: &[Request],
    work: impl FnOnce(&mut PeerSocket) -> Result<T>,
) -> Result<T> {
    check_endpoint(peer)?;
    cooldown::check(peer, options.peer_cooldown(), || describe(requests, 0))?;
    let outcome = SOCKETS.try_with(|sockets| {
        let mut sockets = sockets.borrow_mut();
        forget_inherited_sockets(&mut sockets);
        let reusable = sockets.get(peer).is_some_and(|s| {
            s.timeout == options.request_timeout()
                && s.min_rate == options.min_rate()
                && s.max_message_size == options.max_message_size_option()
                && s.secret.as_ref() == options.secret()
                // libzmq reconnects with the token the socket was made with: a socket is
                // replaced well before its token expires.
                && (s.secret.is_none() || s.opened.elapsed() < zap::TOKEN_REFRESH)
        });
        if !reusable {
            sockets.remove(peer);
            if sockets.len() >= MAX_SOCKETS_PER_THREAD {
                if let Some(evicted) = sockets.keys().next().cloned() {
                    sockets.remove(&evicted);
                }
            }
            sockets.insert(peer.to_string(), connect(peer, options)?);
        }
        let Some(socket) = sockets.get_mut(peer) else {
            return Err(peer_error(
                peer,
                "client socket vanished from the thread's table".to_string(),
            ));
        };
        let result = work(socket);
        if result.is_err() {
            sockets.remove(peer);
        }
        result
    });
    let result = outcome.unwrap_or_else(|_| {
        Err(peer_error(
            peer,
            "this thread is exiting and has no client sockets left".to_string(),
        ))
    });
    cooldown::observe(peer, options.peer_cooldown(), &result);
    result
}

/// Runs `requests` after asking the peer's limits where they are needed, and sends again,
/// once, in a new session, the destructive requests the peer did not take in this socket's
/// session (it forgot the session, or another sender used its sequence numbers).
fn run_in_session(
    socket: &mut PeerSocket,
    peer: &str,
    requests: &[Request],
) -> Result<Vec<Answer>> {
    prepare(socket, peer, requests)?;
    let mut answers = run(socket, peer, requests)?;
    let lost: Vec<usize> = (0..answers.len())
        .filter(|&i| answers[i] == Answer::NoSession)
        .collect();
    if lost.is_empty() {
        return Ok(answers);
    }
    socket.limits = None;
    let again: Vec<Request> = lost.iter().map(|&i| requests[i].clone()).collect();
    prepare(socket, peer, &again)?;
    for (index, answer) in lost.into_iter().zip(run(socket, peer, &again)?) {
        if answer == Answer::NoSession {
            return Err(Error::Unauthenticated {
                peer: peer.to_string(),
                operation: describe(std::slice::from_ref(&requests[index]), 0),
                message: "the peer refused it in a fresh session too (its sessions are being churned faster than this client can use one: another member may be flooding it)".to_string(),
            });
        }
        answers[index] = answer;
    }
    Ok(answers)
}

/// Asks the peer's limits, once per socket, when a request needs them: a put (refused here
/// when larger than the peer accepts, so that a size refusal is an error naming the limit and
/// never a dropped connection), a put or evict that does not know the peer's incarnation, or
/// a put or evict to a peer with a secret (they come within a session).
fn prepare(socket: &mut PeerSocket, peer: &str, requests: &[Request]) -> Result<()> {
    let needed = requests.iter().any(|r| {
        r.op == Op::Put
            || (r.op.is_destructive() && (r.incarnation == 0 || socket.secret.is_some()))
    });
    if !needed {
        return Ok(());
    }
    let limits = limits(socket, peer)?;
    let puts = requests.iter().filter(|r| r.op == Op::Put);
    if let Some(largest) = puts.max_by_key(|r| r.payload.as_ref().map_or(0, Bytes::len)) {
        let size = largest.payload.as_ref().map_or(0, Bytes::len) as u64;
        if size > limits.max_message_size {
            return Err(Error::TooLarge {
                peer: peer.to_string(),
                operation: describe(std::slice::from_ref(largest), 0),
                size,
                limit: limits.max_message_size,
                whose: "the peer's",
            });
        }
    }
    Ok(())
}

/// The peer's answer to `LIMITS`, asked on `socket` the first time.
fn limits(socket: &mut PeerSocket, peer: &str) -> Result<PeerLimits> {
    if let Some(limits) = socket.limits {
        return Ok(limits);
    }
    let ask = Request::new(Op::Limits, 0);
    let limits = match run(socket, peer, std::slice::from_ref(&ask))?.pop() {
        Some(Answer::Limits(limits)) => limits,
        other => {
            return Err(protocol_error(
                peer,
                format!("unexpected answer to a limits request: {other:?}"),
            ))
        }
    };
    if limits.incarnation == 0 || (socket.secret.is_some() && limits.session == 0) {
        return Err(protocol_error(
            peer,
            "its answer to a limits request names no incarnation or no session".to_string(),
        ));
    }
    socket.limits = Some(limits);
    Ok(limits)
}

fn peer_error(peer: &str, message: String) -> Error {
    Error::Peer {
        peer: peer.to_string(),
        message,
    }
}

fn protocol_error(peer: &str, message: String) -> Error {
    Error::Protocol {
        peer: peer.to_string(),
        message,
    }
}

/// Refuses endpoints that are not `tcp://` or `ipc://` addresses, or that libzmq's bindings
/// could not take (they panic on an interior NUL).
fn check_endpoint(peer: &str) -> Result<()> {
    let known_transport = peer.starts_with("tcp://") || peer.starts_with("ipc://");
    if !known_transport || peer.len() > MAX_ENDPOINT_LEN || peer.contains('\0') {
        return Err(peer_error(
            peer,
            "not a peer endpoint (expected tcp://HOST:PORT or ipc://PATH)".to_string(),
        ));
    }
    Ok(())
}

fn connect(peer: &str, options: &ZmqOptions) -> Result<PeerSocket> {
    let fail = |e: zmq::Error| peer_error(peer, format!("could not connect: {e}"));
    let socket = context().socket(zmq::DEALER).map_err(fail)?;
    let timeout = options.request_timeout();
    let timeout_ms = i32::try_from(timeout.as_millis())
        .unwrap_or(i32::MAX)
        .max(1);
    socket.set_linger(0).map_err(fail)?;
    socket.set_sndtimeo(timeout_ms).map_err(fail)?;
    socket
        .set_maxmsgsize(options.wire_limit_option())
        .map_err(fail)?;
    socket.set_ipv6(true).map_err(fail)?;
    if let Some(secret) = options.secret() {
        // The connection token a peer with a secret asks for in the handshake (see `zap`).
        socket
            .set_plain_username(Some(zap::USERNAME))
            .map_err(fail)?;
        socket
            .set_plain_password(Some(&zap::TokenKey::of(secret).token()))
            .map_err(fail)?;
    }
    let liveness = Liveness::watch(&socket).map_err(fail)?;
    socket.connect(peer).map_err(fail)?;
    Ok(PeerSocket {
        socket,
        liveness,
        next_request_id: 1,
        timeout,
        min_rate: options.min_rate(),
        max_message_size: options.max_message_size_option(),
        secret: options.secret().cloned(),
        limits: None,
        // Random, so that (session, sequence) pairs of different sockets differ too.
        next_sequence: (crate::ids::new_id() as u64 >> 2).max(1),
        opened: Instant::now(),
    })
}

/// What an exchange is doing, for error messages.
fn describe(requests: &[Request], answered: usize) -> String {
    match requests {
        [one] => format!("{} of object {:032x}", one.op, one.object_id),
        many => format!(
            "{} of {} objects ({answered} answered)",
            many[0].op,
            many.len()
        ),
    }
}

/// How a request's wait is bounded: silence for the timeout, or (once a window has passed)
/// fewer bytes than the minimum rate in a window.
///
/// Every byte the kernel saw counts (a large reply in transit is not silence), but a
/// trickle does not keep a request alive: the bytes of each window must reach
/// `min_rate x window`. ZMTP heartbeats are bytes like any other to the kernel; a peer that
/// only sends them moves a few bytes a window and fails the floor, and a heartbeat flood
/// fast enough to pass it counts at most `budget` bytes (the largest replies the exchange
/// could be waiting for), after which it is silence.
struct Deadline {
    timeout: Duration,
    min_rate: u64,
    window: Duration,
    /// Silence from here on fails the request.
    silent_until: Instant,
    /// Where the current rate window started, and the bytes counted in it.
    window_start: Instant,
    window_bytes: u64,
    /// Bytes that may still count as progress.
    budget: u64,
}

/// Why a request stopped waiting.
enum Expired {
    /// Nothing moved for the timeout.
    Silent,
    /// The bytes of the last window.
    TooSlow { bytes: u64, elapsed: Duration },
}

impl Deadline {
    fn new(timeout: Duration, min_rate: u64, budget: u64) -> Deadline {
        let now = Instant::now();
        Deadline {
            timeout,
            min_rate,
            window: timeout.max(MIN_RATE_WINDOW),
            silent_until: now + timeout,
            window_start: now,
            window_bytes: 0,
            budget,
        }
    }

    /// A reply arrived: the peer is alive and the rate window starts again.
    fn answered(&mut self) {
        let now = Instant::now();
        self.silent_until = now + self.timeout;
        self.window_start = now;
        self.window_bytes = 0;
    }

    /// The connection moved `bytes` since the last look.
    fn moved(&mut self, bytes: u64) {
        let counted = bytes.min(self.budget);
        self.budget -= counted;
        if counted > 0 {
            self.silent_until = Instant::now() + self.timeout;
            self.window_bytes = self.window_bytes.saturating_add(counted);
        }
    }

    /// How long the next wait may last, or why the request must stop waiting.
    fn remaining(&mut self) -> std::result::Result<Duration, Expired> {
        let now = Instant::now();
        let remaining = self.silent_until.saturating_duration_since(now);
        if remaining.is_zero() {
            return Err(Expired::Silent);
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        if self.min_rate > 0 && elapsed >= self.window {
            let floor = (self.min_rate as f64 * elapsed.as_secs_f64()) as u64;
            if self.window_bytes < floor {
                return Err(Expired::TooSlow {
                    bytes: self.window_bytes,
                    elapsed,
                });
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        let to_window_end = self
            .window
            .saturating_sub(now.saturating_duration_since(self.window_start));
        Ok(remaining.min(to_window_end.max(Duration::from_millis(1))))
    }
}

fn run(socket: &mut PeerSocket, peer: &str, requests: &[Request]) -> Result<Vec<Answer>> {
    let first_id = socket.next_request_id;
    socket.next_request_id = first_id.wrapping_add(requests.len() as u64);
    let (timeout, min_rate) = (socket.timeout, socket.min_rate);
    let timed_out = |answered| Error::Timeout {
        peer: peer.to_string(),
        operation: describe(requests, answered),
        timeout,
    };
    let expired = |why: Expired, answered| match why {
        Expired::Silent => timed_out(answered),
        Expired::TooSlow { bytes, elapsed } => Error::TooSlow {
            peer: peer.to_string(),
            operation: describe(requests, answered),
            bytes,
            elapsed,
            min_rate,
        },
    };

    let mut answers: Vec<Option<Answer>> = vec![None; requests.len()];
    // Each request's nonce and proof, which its reply's proof must cover (with a secret).
    let mut bindings: Vec<Binding> = Vec::with_capacity(requests.len());
    let (mut sent, mut answered) = (0usize, 0usize);
    // The most bytes all replies (and puts) of this exchange can take on the wire.
    let budget = requests.iter().fold(0u64, |total, request| {
        let upload = request.payload.as_ref().map_or(0, Bytes::len) as u64;
        total
            .saturating_add(upload)
            .saturating_add(socket.max_message_size.max(0) as u64)
            .saturating_add(REPLY_SLACK)
    });
    // The wait ends after `timeout` of silence, or when the connection moves less than the
    // minimum rate over a window (a trickle is not progress).
    let mut deadline = Deadline::new(timeout, min_rate, budget);
    // Traffic before this exchange is not progress of it.
    let uploading = requests.iter().any(|r| r.payload.is_some());
    socket.liveness.moved(uploading);
    while answered < requests.len() {
        while sent < requests.len() && sent - answered < WINDOW {
            let request_id = first_id.wrapping_add(sent as u64);
            let sequence = socket.next_sequence;
            socket.next_sequence = sequence.wrapping_add(1);
            let sent_request = send_request(
                &mut socket.socket,
                &Sending {
                    request_id,
                    sequence,
                    limits: socket.limits,
                    accepted: socket.max_message_size as u64,
                },
                &requests[sent],
                socket.secret.as_ref(),
            );
            match sent_request {
                Ok(binding) => {
                    bindings.push(binding);
                    sent += 1;
                }
                Err(zmq::Error::EAGAIN) => return Err(timed_out(answered)),
                Err(e) => {
                    return Err(peer_error(
                        peer,
                        format!("could not send {}: {e}", describe(requests, answered)),
                    ))
                }
            }
        }
        let remaining = deadline.remaining().map_err(|why| expired(why, answered))?;
        // Wait for the next reply in `recv` itself (no separate poll: one call less per
        // reply, which shows on small objects), at most PROGRESS_CHECK at a time.
        let wait_ms = i32::try_from(remaining.min(PROGRESS_CHECK).as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        socket
            .socket
            .set_rcvtimeo(wait_ms)
            .map_err(|e| peer_error(peer, format!("could not wait for a reply: {e}")))?;
        if let Some((header, payload)) = receive_reply(&socket.socket, peer)? {
            let index = header.request_id.wrapping_sub(first_id) as usize;
            let Some(request) = requests
                .get(index)
                .filter(|_| index < sent && answers[index].is_none())
            else {
                // Not an answer to anything in flight: ignore it rather than trust it.
                continue;
            };
            if header.op != request.op || header.object_id != request.object_id {
                return Err(protocol_error(
                    peer,
                    format!(
                        "reply to request {} is about {} of {:032x}, not {}",
                        header.request_id,
                        header.op,
                        header.object_id,
                        describe(std::slice::from_ref(request), 0)
                    ),
                ));
            }
            if let (Some(secret), Some(binding)) = (&socket.secret, bindings.get(index)) {
                if !secret.verify_reply(&header, binding, payload.as_deref()) {
                    return Err(unproven_reply(peer, request, &header, payload.as_deref()));
                }
            }
            answers[index] = Some(read_answer(
                peer,
                request,
                &header,
                payload,
                socket.max_message_size as u64,
            )?);
            answered += 1;
            deadline.answered();
        } else {
            deadline.moved(socket.liveness.moved(uploading));
            if let Some(refusal) = socket.liveness.refused() {
                return Err(Error::Unauthenticated {
                    peer: peer.to_string(),
                    operation: describe(requests, answered),
                    message: refusal.describe(socket.secret.is_some()),
                });
            }
        }
    }
    answers
        .into_iter()
        .map(|answer| {
            answer.ok_or_else(|| protocol_error(peer, "a request was left unanswered".to_string()))
        })
        .collect()
}

/// The error for a reply whose proof does not verify: a refusal of authentication says the
/// peer's secret differs (an error, never data, so nothing forged gets through); anything
/// else is a protocol error.
fn unproven_reply(peer: &str, request: &Request, header: &Header, payload: Option<&[u8]>) -> Error {
    let what = describe(std::slice::from_ref(request), 0);
    if header.status == Status::Unauthenticated {
        return Error::Unauthenticated {
            peer: peer.to_string(),
            operation: what,
            message: format!(
                "{} (and its reply carries no valid proof either: the peer's secret is not this process's)",
                payload.map(excerpt).unwrap_or_default()
            ),
        };
    }
    let why = if header.proof == [0; 32] {
        "it carries no proof (the peer has no secret, or something on the path rewrote it)"
    } else {
        "its proof does not match this process's secret and request (another secret, or the reply was changed, replayed or made up on the path)"
    };
    protocol_error(
        peer,
        format!("reply to {what} is not authenticated: {why}; refused"),
    )
}

/// What a socket adds to each request it sends.
struct Sending {
    request_id: u64,
    sequence: u64,
    /// The peer's answer to `LIMITS`, if asked: its incarnation, this socket's session.
    limits: Option<PeerLimits>,
    /// The largest object this process accepts.
    accepted: u64,
}

/// Sends one request; returns its binding (what its reply's proof must cover).
fn send_request(
    socket: &mut zmq::Socket,
    sending: &Sending,
    request: &Request,
    secret: Option<&Secret>,
) -> zmq::Result<Binding> {
    let mut header = Header::request(request.op, sending.request_id, request.object_id);
    if request.shared_memory && request.op == Op::Get {
        header.flags = FLAG_SHARED_MEMORY;
    }
    header.size = match (&request.payload, request.op) {
        (Some(payload), _) => payload.len() as u64,
        (None, Op::Get) => sending.accepted,
        (None, _) => 0,
    };
    header.sequence = sending.sequence;
    header.incarnation = request.incarnation;
    if let Some(limits) = sending.limits {
        header.session = limits.session;
        if header.incarnation == 0 && request.op.is_destructive() {
            header.incarnation = limits.incarnation;
        }
    }
    if let Some(secret) = secret {
        if let Some(payload) = &request.payload {
            header.digest = auth::digest(payload);
        }
        secret.sign(&mut header);
    }
    let binding = auth::binding(&header);
    let header = header.encode();
    match &request.payload {
        Some(payload) => {
            socket.send(&header[..], zmq::SNDMORE)?;
            send_bytes(socket, payload, 0)?;
        }
        None => socket.send(&header[..], 0)?,
    }
    Ok(binding)
}

/// The next reply, or `None` when none came within the socket's receive timeout.
fn receive_reply(socket: &zmq::Socket, peer: &str) -> Result<Option<(Header, Option<Bytes>)>> {
    let first = match socket.recv_msg(0) {
        Ok(frame) => frame,
        Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(None),
        Err(e) => return Err(peer_error(peer, format!("could not receive a reply: {e}"))),
    };
    let mut more = first.get_more();
    let mut payload = None;
    let mut extra = 0usize;
    while more {
        let frame = socket
            .recv_msg(0)
            .map_err(|e| peer_error(peer, format!("could not receive a reply: {e}")))?;
        more = frame.get_more();
        if payload.is_none() {
            payload = Some(message_into_bytes(frame));
        } else {
            extra += 1;
        }
    }
    let header = Header::decode(&first).map_err(|e| {
        let said = payload
            .as_ref()
            .map(|p| format!(" (it says: {})", excerpt(p)))
            .unwrap_or_default();
        protocol_error(peer, format!("malformed reply: {}{said}", e.message))
    })?;
    if extra > 0 {
        return Err(protocol_error(
            peer,
            format!("reply has {extra} frames too many"),
        ));
    }
    Ok(Some((header, payload)))
}

fn read_answer(
    peer: &str,
    request: &Request,
    header: &Header,
    payload: Option<Bytes>,
    accepted: u64,
) -> Result<Answer> {
    let what = describe(std::slice::from_ref(request), 0);
    let said = |payload: &Option<Bytes>| payload.as_ref().map(|p| excerpt(p)).unwrap_or_default();
    let request_size = request.payload.as_ref().map_or(0, Bytes::len) as u64;
    match (header.status, payload) {
        (Status::Error, payload) => Err(peer_error(
            peer,
            format!("refused {what}: {}", said(&payload)),
        )),
        (Status::TooLarge, _) if request.op == Op::Get => Err(Error::TooLarge {
            peer: peer.to_string(),
            operation: what,
            size: header.size,
            limit: accepted,
            whose: "this process's",
        }),
        (Status::TooLarge, _) => Err(Error::TooLarge {
            peer: peer.to_string(),
            operation: what,
            size: request_size,
            limit: header.size,
            whose: "the peer's",
        }),
        (Status::OverQuota, payload) => Err(Error::QuotaExceeded {
            peer: peer.to_string(),
            operation: what,
            size: request_size,
            limit: header.size,
            message: said(&payload),
        }),
        (Status::Unauthenticated, payload) => Err(Error::Unauthenticated {
            peer: peer.to_string(),
            operation: what,
            message: said(&payload),
        }),
        (Status::NotFound, None) if matches!(request.op, Op::Get | Op::Exists) => {
            Ok(Answer::NotFound)
        }
        (Status::Ok, Some(data)) if request.op == Op::Get => Ok(Answer::Ok(Some(data))),
        (Status::Shared, Some(payload)) if request.op == Op::Get && request.shared_memory => {
            Descriptor::decode(&payload)
                .map(Answer::Shared)
                .map_err(|message| protocol_error(peer, format!("{what}: {message}")))
        }
        (Status::Ok, None) if request.op == Op::Limits => Ok(Answer::Limits(PeerLimits {
            max_message_size: header.size,
            incarnation: header.incarnation,
            session: header.session,
        })),
        (Status::NoSession, _) if request.op.is_destructive() => Ok(Answer::NoSession),
        // The object of a key of another incarnation is not at this peer: evicting it is done.
        (Status::WrongPeer, _) if request.op == Op::Evict => Ok(Answer::Ok(None)),
        (Status::WrongPeer, payload) => Err(Error::WrongIncarnation {
            peer: peer.to_string(),
            operation: what,
            message: said(&payload),
        }),
        (Status::Ok, Some(data)) if request.op == Op::Stats => PeerStats::decode(&data)
            .map(Answer::Stats)
            .map_err(|message| {
                protocol_error(peer, format!("malformed reply to {what}: {message}"))
            }),
        (Status::Ok, None) if !matches!(request.op, Op::Get | Op::Stats) => Ok(Answer::Ok(None)),
        (status, payload) => Err(protocol_error(
            peer,
            format!(
                "unexpected reply to {what}: status {status:?} {} payload",
                if payload.is_some() { "with" } else { "without" }
            ),
        )),
    }
}

/// At most 200 characters of a peer's message, lossily decoded.
fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
}
