//! Operational metrics through the [`metrics`] facade, for Prometheus and the like.
//!
//! The library records; it compiles no exporter. A binary installs one (for example
//! `metrics-exporter-prometheus`, as `proxy-peer --metrics-listen` does) and calls
//! [`describe`] once so that every metric has its help text and unit. Without an installed
//! recorder, recording is a load and a branch.
//!
//! Names follow Prometheus conventions (units in the name, `_total` for counters). Every
//! metric of a peer server carries the label `peer` (its endpoint); request metrics carry
//! `op` (`get`, `exists`, `evict`, `put`, `limits`, `stats`, or `malformed`) and `outcome`
//! (`ok`, `not_found`, `shared`, `error`, `too_large`, `over_quota`, `unauthenticated`,
//! `wrong_peer`, `no_session` on the server; `ok`, `timeout`, `too_slow`, `refused`,
//! `protocol`, `not_found`, `other` on the client).
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `proxystore_peer_objects` | gauge | peer | objects the peer holds |
//! | `proxystore_peer_bytes` | gauge | peer | bytes of the objects it holds |
//! | `proxystore_peer_remote_bytes` | gauge | peer | bytes of the objects other processes stored (the quota charges each of them its bytes plus a fixed overhead) |
//! | `proxystore_peer_quota_bytes` | gauge | peer | the byte quota for remote puts |
//! | `proxystore_peer_shared_memory_bytes` | gauge | peer | object bytes held in same-host shared memory |
//! | `proxystore_peer_shared_memory_reserved_bytes` | gauge | peer | shared memory segments' bytes |
//! | `proxystore_peer_connections` | gauge | peer | connections the peer has open (accepted and not yet closed) |
//! | `proxystore_peer_connection_refusals_total` | counter | peer, reason | connections the peer dropped or refused (reason: `limit`, dropped to stay within its connection limit; `handshake`, a client without a valid connection token) |
//! | `proxystore_peer_requests_total` | counter | peer, op, outcome | requests answered |
//! | `proxystore_peer_refusals_total` | counter | peer, reason | requests refused (reason: an outcome other than ok, not_found, shared) |
//! | `proxystore_peer_received_bytes_total` | counter | peer | bytes of requests received (headers and payloads) |
//! | `proxystore_peer_sent_bytes_total` | counter | peer | bytes of replies sent (headers and payloads; a shared memory reply counts its descriptor) |
//! | `proxystore_peer_request_duration_seconds` | histogram | peer, op | time to answer a request, from its receipt to its reply |
//! | `proxystore_client_requests_total` | counter | op, outcome | requests this process sent to other peers |
//! | `proxystore_client_exchange_duration_seconds` | histogram | op | time of one exchange (a pipelined batch of requests) |
//! | `proxystore_client_sent_bytes_total` | counter | op | payload bytes this process sent in requests |
//! | `proxystore_client_received_bytes_total` | counter | op | payload bytes it received in replies |

use std::time::Duration;

/// Objects a peer holds.
pub const PEER_OBJECTS: &str = "proxystore_peer_objects";
/// Bytes of the objects a peer holds.
pub const PEER_BYTES: &str = "proxystore_peer_bytes";
/// Bytes of the objects other processes stored on a peer.
pub const PEER_REMOTE_BYTES: &str = "proxystore_peer_remote_bytes";
/// A peer's byte quota for remote puts.
pub const PEER_QUOTA_BYTES: &str = "proxystore_peer_quota_bytes";
/// Object bytes a peer holds in same-host shared memory.
pub const PEER_SHM_BYTES: &str = "proxystore_peer_shared_memory_bytes";
/// Bytes of a peer's shared memory segments.
pub const PEER_SHM_RESERVED_BYTES: &str = "proxystore_peer_shared_memory_reserved_bytes";
/// Connections a peer has open.
pub const PEER_CONNECTIONS: &str = "proxystore_peer_connections";
/// Connections a peer dropped or refused, by reason (`limit`, `handshake`).
pub const PEER_CONNECTION_REFUSALS: &str = "proxystore_peer_connection_refusals_total";
/// Requests a peer answered, by operation and outcome.
pub const PEER_REQUESTS: &str = "proxystore_peer_requests_total";
/// Requests a peer refused, by reason.
pub const PEER_REFUSALS: &str = "proxystore_peer_refusals_total";
/// Bytes of requests a peer received.
pub const PEER_RECEIVED_BYTES: &str = "proxystore_peer_received_bytes_total";
/// Bytes of replies a peer sent.
pub const PEER_SENT_BYTES: &str = "proxystore_peer_sent_bytes_total";
/// Time a peer took to answer a request.
pub const PEER_REQUEST_DURATION: &str = "proxystore_peer_request_duration_seconds";
/// Requests this process sent to other peers, by operation and outcome.
pub const CLIENT_REQUESTS: &str = "proxystore_client_requests_total";
/// Time of one client exchange.
pub const CLIENT_EXCHANGE_DURATION: &str = "proxystore_client_exchange_duration_seconds";
/// Payload bytes this process sent in requests.
pub const CLIENT_SENT_BYTES: &str = "proxystore_client_sent_bytes_total";
/// Payload bytes this process received in replies.
pub const CLIENT_RECEIVED_BYTES: &str = "proxystore_client_received_bytes_total";

/// Every metric name this crate records.
pub const METRICS: &[&str] = &[
    PEER_OBJECTS,
    PEER_BYTES,
    PEER_REMOTE_BYTES,
    PEER_QUOTA_BYTES,
    PEER_SHM_BYTES,
    PEER_SHM_RESERVED_BYTES,
    PEER_CONNECTIONS,
    PEER_CONNECTION_REFUSALS,
    PEER_REQUESTS,
    PEER_REFUSALS,
    PEER_RECEIVED_BYTES,
    PEER_SENT_BYTES,
    PEER_REQUEST_DURATION,
    CLIENT_REQUESTS,
    CLIENT_EXCHANGE_DURATION,
    CLIENT_SENT_BYTES,
    CLIENT_RECEIVED_BYTES,
];

/// Gives every metric its help text and unit in the installed recorder. Call it once after
/// installing an exporter.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(PEER_OBJECTS, Unit::Count, "Objects the peer holds");
    describe_gauge!(
        PEER_BYTES,
        Unit::Bytes,
        "Bytes of the objects the peer holds"
    );
    describe_gauge!(
        PEER_REMOTE_BYTES,
        Unit::Bytes,
        "Bytes of the objects other processes stored on the peer (the quota charges each its bytes plus a fixed overhead)"
    );
    describe_gauge!(
        PEER_QUOTA_BYTES,
        Unit::Bytes,
        "The peer's byte quota for remote puts"
    );
    describe_gauge!(
        PEER_SHM_BYTES,
        Unit::Bytes,
        "Object bytes the peer holds in same-host shared memory"
    );
    describe_gauge!(
        PEER_SHM_RESERVED_BYTES,
        Unit::Bytes,
        "Bytes of the peer's shared memory segments"
    );
    describe_gauge!(
        PEER_CONNECTIONS,
        Unit::Count,
        "Connections the peer has open"
    );
    describe_counter!(
        PEER_CONNECTION_REFUSALS,
        Unit::Count,
        "Connections the peer dropped or refused, by reason (limit, handshake)"
    );
    describe_counter!(PEER_REQUESTS, Unit::Count, "Requests the peer answered");
    describe_counter!(
        PEER_REFUSALS,
        Unit::Count,
        "Requests the peer refused, by reason"
    );
    describe_counter!(
        PEER_RECEIVED_BYTES,
        Unit::Bytes,
        "Bytes of requests the peer received"
    );
    describe_counter!(
        PEER_SENT_BYTES,
        Unit::Bytes,
        "Bytes of replies the peer sent"
    );
    describe_histogram!(
        PEER_REQUEST_DURATION,
        Unit::Seconds,
        "Time the peer took to answer a request, from its receipt to its reply"
    );
    describe_counter!(
        CLIENT_REQUESTS,
        Unit::Count,
        "Requests this process sent to peers"
    );
    describe_histogram!(
        CLIENT_EXCHANGE_DURATION,
        Unit::Seconds,
        "Time of one exchange with a peer (a pipelined batch of requests)"
    );
    describe_counter!(
        CLIENT_SENT_BYTES,
        Unit::Bytes,
        "Payload bytes sent in requests"
    );
    describe_counter!(
        CLIENT_RECEIVED_BYTES,
        Unit::Bytes,
        "Payload bytes received in replies"
    );
}

/// What a peer server records for one answered request.
pub(crate) struct Answered<'a> {
    pub(crate) peer: &'a str,
    pub(crate) op: &'static str,
    pub(crate) outcome: &'static str,
    pub(crate) refused: bool,
    pub(crate) received: u64,
    pub(crate) sent: u64,
    pub(crate) took: Duration,
}

/// Records one request a peer server answered.
pub(crate) fn peer_answered(answered: &Answered<'_>) {
    let peer = answered.peer.to_string();
    metrics::counter!(PEER_REQUESTS, "peer" => peer.clone(), "op" => answered.op, "outcome" => answered.outcome)
        .increment(1);
    if answered.refused {
        metrics::counter!(PEER_REFUSALS, "peer" => peer.clone(), "reason" => answered.outcome)
            .increment(1);
    }
    metrics::counter!(PEER_RECEIVED_BYTES, "peer" => peer.clone()).increment(answered.received);
    metrics::counter!(PEER_SENT_BYTES, "peer" => peer.clone()).increment(answered.sent);
    metrics::histogram!(PEER_REQUEST_DURATION, "peer" => peer, "op" => answered.op)
        .record(answered.took.as_secs_f64());
}

/// A peer server's holdings, set after each batch of requests.
pub(crate) struct Holdings {
    pub(crate) objects: u64,
    pub(crate) bytes: u64,
    pub(crate) remote_bytes: u64,
    pub(crate) quota: u64,
    pub(crate) shm_bytes: u64,
    pub(crate) shm_reserved: u64,
}

/// Records what a peer server holds now.
pub(crate) fn peer_holds(peer: &str, holdings: &Holdings) {
    let gauges = [
        (PEER_OBJECTS, holdings.objects),
        (PEER_BYTES, holdings.bytes),
        (PEER_REMOTE_BYTES, holdings.remote_bytes),
        (PEER_QUOTA_BYTES, holdings.quota),
        (PEER_SHM_BYTES, holdings.shm_bytes),
        (PEER_SHM_RESERVED_BYTES, holdings.shm_reserved),
    ];
    for (name, value) in gauges {
        metrics::gauge!(name, "peer" => peer.to_string()).set(value as f64);
    }
}

/// Records how many connections a peer server has open.
pub(crate) fn peer_connections(peer: &str, open: usize) {
    metrics::gauge!(PEER_CONNECTIONS, "peer" => peer.to_string()).set(open as f64);
}

/// Records a connection a peer server dropped or refused, and why (`limit`, `handshake`).
pub(crate) fn peer_connection_refused(peer: &str, reason: &'static str) {
    metrics::counter!(PEER_CONNECTION_REFUSALS, "peer" => peer.to_string(), "reason" => reason)
        .increment(1);
}

/// Records one client exchange of `requests` requests of operation `op`.
pub(crate) fn client_exchanged(
    op: &'static str,
    requests: u64,
    outcome: &'static str,
    took: Duration,
    sent: u64,
    received: u64,
) {
    metrics::counter!(CLIENT_REQUESTS, "op" => op, "outcome" => outcome).increment(requests);
    metrics::histogram!(CLIENT_EXCHANGE_DURATION, "op" => op).record(took.as_secs_f64());
    metrics::counter!(CLIENT_SENT_BYTES, "op" => op).increment(sent);
    metrics::counter!(CLIENT_RECEIVED_BYTES, "op" => op).increment(received);
}
