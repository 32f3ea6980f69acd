//! The crate's one error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::key::Key;

/// Result type of every fallible operation in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a store, a connector, a proxy or the registry.
///
/// Every variant carries the context needed to act on it: the key, the peer, the path or the
/// store involved. Tests (and callers) match on the variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key made by one kind of connector was handed to another kind.
    #[error("key {key} was made by a `{}` connector, not by this `{expected}` connector", key.connector())]
    WrongConnector {
        /// The key that was rejected.
        key: Key,
        /// The kind of connector that rejected it.
        expected: String,
    },

    /// The object named by a key is not (or no longer) stored.
    #[error("object {key} not found in store `{store}`")]
    NotFound {
        /// The store that was asked.
        store: String,
        /// The missing key.
        key: Key,
    },

    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`"read"`, `"write"`, `"rename"`, ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A value could not be encoded or decoded.
    #[error("could not {action} a value of type `{type_name}`: {message}")]
    Codec {
        /// `"encode"` or `"decode"`.
        action: &'static str,
        /// The Rust type being converted.
        type_name: &'static str,
        /// What the codec reported.
        message: String,
    },

    /// A remote peer did not answer in time.
    ///
    /// When the peer's address is a loopback one, the message adds a hint: such an address
    /// reaches only the host that wrote the key, the usual cause of a timeout across hosts.
    #[error("peer {peer} did not answer {operation} within {timeout:?}{}", loopback_hint(.peer))]
    Timeout {
        /// The peer's endpoint.
        peer: String,
        /// The operation that timed out, with its key when it has one.
        operation: String,
        /// The configured timeout.
        timeout: Duration,
    },

    /// A remote peer kept a request waiting while moving fewer bytes than the minimum rate
    /// (a trickling peer, or one that only sends heartbeats): the request was given up.
    #[error("peer {peer} too slow: {operation}: {bytes} bytes in {elapsed:?}, below the minimum of {min_rate} bytes/s")]
    TooSlow {
        /// The peer's endpoint.
        peer: String,
        /// The operation given up, with its key when it has one.
        operation: String,
        /// Bytes the connection moved during the last window.
        bytes: u64,
        /// The window those bytes were counted over.
        elapsed: Duration,
        /// The minimum rate asked for, in bytes per second.
        min_rate: u64,
    },

    /// A remote peer or server answered with an error (it was reached, and said no).
    /// One that could not be reached at all is [`Error::Unreachable`].
    #[error("peer {peer}: {message}")]
    Peer {
        /// The peer's endpoint or server address.
        peer: String,
        /// What went wrong.
        message: String,
    },

    /// A remote peer or server could not be reached: the connection was refused, could not
    /// be opened, or was lost during the operation; nothing was answered. A peer that
    /// accepts the connection but never answers is a [`Error::Timeout`] instead (ZeroMQ
    /// connects in the background, so a dead ZeroMQ peer shows as a timeout).
    #[error("peer {peer} unreachable: {message}")]
    Unreachable {
        /// The peer's endpoint or server address.
        peer: String,
        /// What was being done, and what the connection reported.
        message: String,
    },

    /// An object is larger than a maximum message size: the peer's (a put) or this
    /// process's (a get), so it was refused rather than sent.
    #[error("peer {peer}: {operation} refused: {size} bytes is larger than the maximum message size of {limit} bytes ({whose})")]
    TooLarge {
        /// The peer's endpoint.
        peer: String,
        /// The operation, with its object.
        operation: String,
        /// The object's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
        /// Whose limit it is (`"the peer's"` or `"this process's"`).
        whose: &'static str,
    },

    /// A peer refused a put because the bytes it holds for remote puts would exceed its
    /// limit (`--max-bytes`, `ZmqOptions::with_max_bytes`); nothing was stored.
    #[error("peer {peer}: {operation} refused: {size} more bytes would exceed its limit of {limit} bytes for objects stored by other processes ({message})")]
    QuotaExceeded {
        /// The peer's endpoint.
        peer: String,
        /// The operation, with its object.
        operation: String,
        /// The object's size in bytes.
        size: u64,
        /// The peer's limit in bytes.
        limit: u64,
        /// The peer's own words (how much it holds).
        message: String,
    },

    /// A peer refused a request that did not prove knowledge of its cluster secret (or
    /// replayed an earlier one); nothing was done.
    #[error("peer {peer}: {operation} refused: not authenticated: {message}")]
    Unauthenticated {
        /// The peer's endpoint.
        peer: String,
        /// The operation, with its object.
        operation: String,
        /// The peer's reason (never the secret).
        message: String,
    },

    /// A key names a peer endpoint whose process is not the one that stored it: the key's
    /// incarnation (the random id its owner drew at start) differs from the one answering
    /// there. Its owner restarted since (the object is gone), or another process answers at
    /// the same address (two hosts that both bound loopback, or one advertising another's
    /// address); the message says which it can tell. Counts as [`ErrorKind::NotFound`]: the
    /// object is not at that address.
    #[error("peer {peer}: {operation}: {message}")]
    WrongIncarnation {
        /// The endpoint the key names.
        peer: String,
        /// The operation, with its key.
        operation: String,
        /// What the mix-up is and how to fix it.
        message: String,
    },

    /// A message on the wire did not follow the protocol.
    #[error("protocol error with {peer}: {message}")]
    Protocol {
        /// The peer that sent (or was sent) the malformed message.
        peer: String,
        /// What was wrong with it.
        message: String,
    },

    /// A configuration could not be used to build a connector or a store.
    #[error("invalid configuration for {what}: {message}")]
    Config {
        /// What was being configured.
        what: String,
        /// Why the configuration was rejected.
        message: String,
    },

    /// The connector was closed and can no longer be used.
    #[error("connector {connector} is closed")]
    Closed {
        /// A description of the closed connector.
        connector: String,
    },

    /// An object is already stored under a key that can be written only once (a future's
    /// key set twice, or [`Connector::put_at`](crate::Connector::put_at) on a taken key).
    #[error("an object is already stored under {key} in {connector} (keys are write-once)")]
    KeyTaken {
        /// The key that was written before.
        key: Key,
        /// A description of the connector that refused the write.
        connector: String,
    },

    /// A future's value was not set before its polling timeout ran out.
    #[error("future {key} in store `{store}` was not set within {waited:?}")]
    NotSet {
        /// The store the future belongs to.
        store: String,
        /// The future's key.
        key: Key,
        /// How long the resolve waited.
        waited: Duration,
    },

    /// A store is already registered under this name.
    #[error("a store named `{name}` is already registered")]
    StoreExists {
        /// The contested name.
        name: String,
    },

    /// No store is registered under this name.
    #[error("no store named `{name}` is registered")]
    UnknownStore {
        /// The name that was looked up.
        name: String,
    },

    /// Something was attached to, or asked of, a lifetime that has ended (closed, dropped or
    /// expired); nothing was done.
    #[error("lifetime `{lifetime}` has ended: cannot {operation}")]
    LifetimeClosed {
        /// The lifetime's name.
        lifetime: String,
        /// What was refused, with its object (`attach object KEY`, `extend by 5s`).
        operation: String,
    },

    /// A lifetime ended, but some of its objects could not be evicted (the others were).
    ///
    /// Its [kind](Error::kind) is [`ErrorKind::LifetimeEvict`], whatever the failures were;
    /// `err.root().kind()` is the kind of the first failure.
    #[error("lifetime `{lifetime}`: could not evict {} of its {objects} objects; the first failure: {source}", failed.len())]
    LifetimeEvict {
        /// The lifetime's name.
        lifetime: String,
        /// The keys of the objects that could not be evicted.
        failed: Vec<Key>,
        /// How many objects the lifetime tried to evict.
        objects: usize,
        /// The first failure.
        #[source]
        source: Box<Error>,
    },

    /// A background fetch of a batch of objects ([`Proxy::prefetch`](crate::Proxy::prefetch),
    /// the dataflow's `resolve`) failed; every object of the batch that could not be fetched
    /// on its own either reports it once, instead of fetching again (which would cost a dead
    /// peer's timeout once more per object).
    #[error("{key} was not fetched: its background fetch failed: {source}")]
    Prefetch {
        /// The object that was not fetched.
        key: Key,
        /// Why its fetch failed (shared by the objects that failed with it).
        #[source]
        source: std::sync::Arc<Error>,
    },

    /// A stream producer was asked to send to a topic it has closed
    /// ([`StreamProducer::close_topics`](crate::stream::StreamProducer::close_topics)).
    #[error("stream topic `{topic}` is closed: nothing more can be sent to it")]
    TopicClosed {
        /// The closed topic.
        topic: String,
    },

    /// A stream's event channel ended without an end-of-stream event: its publisher was
    /// dropped, disconnected or died mid-stream, or the broker closed the connection.
    #[error("stream {stream}: {message}")]
    StreamEnded {
        /// Where the events came from (a channel, a publisher's endpoint, a Redis topic).
        stream: String,
        /// What ended it.
        message: String,
    },

    /// An operation of a store failed; the source says why.
    #[error("store `{store}`, key {key}: {source}")]
    Store {
        /// The store's name.
        store: String,
        /// The key involved (or `-` for operations without one).
        key: KeyContext,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },
}

/// The kind of an [`Error`], with the context wrappers looked through ([`Error::kind`]).
///
/// Serializable, so that records describing a failure can travel between dataflow workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object is not (or no longer) stored ([`Error::NotFound`]; a key of another
    /// incarnation of its peer: [`Error::WrongIncarnation`]).
    NotFound,
    /// A peer, a server or a wait did not finish in time ([`Error::Timeout`], a peer below
    /// the minimum rate: [`Error::TooSlow`], or a future not set in time: [`Error::NotSet`]).
    Timeout,
    /// Refused by policy: a peer or server answered with an error ([`Error::Peer`]), or
    /// refused a request for its size, its quota or its authentication
    /// ([`Error::TooLarge`], [`Error::QuotaExceeded`], [`Error::Unauthenticated`]). Neither
    /// a write-once key written twice ([`ErrorKind::AlreadyExists`]) nor a peer that could
    /// not be reached ([`ErrorKind::Unreachable`]) counts.
    Refused,
    /// A value could not be encoded or decoded, e.g. read as the wrong type
    /// ([`Error::Codec`]).
    Codec,
    /// A filesystem operation failed ([`Error::Io`]).
    Io,
    /// A message broke the wire protocol ([`Error::Protocol`]).
    Protocol,
    /// A configuration was rejected ([`Error::Config`]).
    Config,
    /// The connector, a lifetime or a stream is closed ([`Error::Closed`],
    /// [`Error::LifetimeClosed`], [`Error::TopicClosed`], [`Error::StreamEnded`]).
    Closed,
    /// A key was handed to the wrong kind of connector ([`Error::WrongConnector`]).
    WrongConnector,
    /// A registry conflict or lookup failure ([`Error::StoreExists`],
    /// [`Error::UnknownStore`]).
    Registry,
    /// Anything else.
    Other,
    // Added after `Other` so that the serialized forms of the older kinds keep their index.
    /// An object is already stored under a write-once key: a future set twice, a
    /// [`put_at`](crate::Connector::put_at) on a taken key ([`Error::KeyTaken`]).
    AlreadyExists,
    /// A peer or server could not be reached: connection refused, not opened, or lost
    /// ([`Error::Unreachable`]).
    Unreachable,
    /// A lifetime ended and some of its objects could not be evicted
    /// ([`Error::LifetimeEvict`]); `err.root().kind()` says why the first one failed.
    LifetimeEvict,
}

/// The key an error is about, when there is one; displays as `-` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyContext(pub Option<Key>);

impl std::fmt::Display for KeyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(key) => write!(f, "{key}"),
            None => f.write_str("-"),
        }
    }
}

/// The hint added to a timeout of a peer whose endpoint (`tcp://HOST:PORT`) names loopback.
fn loopback_hint(peer: &str) -> String {
    // Only ZeroMQ peers: other servers (Redis) are configured differently.
    let Some(host) = peer
        .strip_prefix("tcp://")
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
    else {
        return String::new();
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        format!(
            " ({host} is a loopback address, which only the host that wrote the key can reach: \
             if the object was stored on another host, the process there must bind an address \
             other hosts can reach, for example with PROXYSTORE_ZMQ_INTERFACE=<its address> or \
             ZmqOptions::with_interface)"
        )
    } else {
        String::new()
    }
}

impl Error {
    /// Wraps this error with the store (and key) it happened in.
    pub(crate) fn in_store(self, store: &str, key: Option<&Key>) -> Error {
        match self {
            // Already carries a store context or says which store: do not nest twice.
            e @ (Error::Store { .. } | Error::NotFound { .. } | Error::NotSet { .. }) => e,
            other => Error::Store {
                store: store.to_string(),
                key: KeyContext(key.cloned()),
                source: Box::new(other),
            },
        }
    }

    /// What kind of failure this is, looking through [`Error::Store`] context wrappers, so
    /// callers can branch on it without matching the wrappers by hand.
    ///
    /// ```
    /// use proxy_core::{ErrorKind, LocalConnector, Proxy, Store};
    ///
    /// let store = Store::new("kind-doc", LocalConnector::new());
    /// let key = store.put(&1u64)?;
    /// store.evict(&key)?;
    /// let proxy: Proxy<u64> = store.proxy_from_key(key);
    /// let err = Proxy::resolve(&proxy).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// assert!(err.is_not_found());
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    pub fn kind(&self) -> ErrorKind {
        let mut error = self;
        // Through the context wrappers only, not into a lifetime's failures: those are of
        // their own kind.
        while let Error::Store { source, .. } = error {
            error = source;
        }
        if let Error::LifetimeEvict { .. } = error {
            return ErrorKind::LifetimeEvict;
        }
        #[allow(unreachable_patterns)] // variants added by other modules map to `Other`
        match self.root() {
            Error::NotFound { .. } | Error::WrongIncarnation { .. } => ErrorKind::NotFound,
            Error::Timeout { .. } | Error::TooSlow { .. } | Error::NotSet { .. } => {
                ErrorKind::Timeout
            }
            Error::KeyTaken { .. } => ErrorKind::AlreadyExists,
            Error::Unreachable { .. } => ErrorKind::Unreachable,
            Error::Peer { .. }
            | Error::TooLarge { .. }
            | Error::QuotaExceeded { .. }
            | Error::Unauthenticated { .. } => ErrorKind::Refused,
            Error::Codec { .. } => ErrorKind::Codec,
            Error::Io { .. } => ErrorKind::Io,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Config { .. } => ErrorKind::Config,
            Error::Closed { .. }
            | Error::LifetimeClosed { .. }
            | Error::TopicClosed { .. }
            | Error::StreamEnded { .. } => ErrorKind::Closed,
            Error::WrongConnector { .. } => ErrorKind::WrongConnector,
            Error::StoreExists { .. } | Error::UnknownStore { .. } => ErrorKind::Registry,
            _ => ErrorKind::Other,
        }
    }

    /// Whether the object (or future value) is not stored: [`ErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// Whether a peer, server or wait ran out of time: [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// Whether a peer or server refused the request by policy (an error answer, a size or
    /// quota limit, a failed authentication): [`ErrorKind::Refused`]. Not for a key written
    /// twice ([`is_already_exists`](Error::is_already_exists)) nor for a peer that could not
    /// be reached ([`is_unreachable`](Error::is_unreachable)).
    pub fn is_refused(&self) -> bool {
        self.kind() == ErrorKind::Refused
    }

    /// Whether an object was already stored under a write-once key (a future set twice):
    /// [`ErrorKind::AlreadyExists`].
    ///
    /// ```
    /// use proxy_core::{LocalConnector, Store};
    ///
    /// let store = Store::new("already-exists-doc", LocalConnector::new());
    /// let future = store.future::<u32>()?;
    /// future.set(&1)?;
    /// let again = future.set(&2).unwrap_err();
    /// assert!(again.is_already_exists() && !again.is_refused());
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    pub fn is_already_exists(&self) -> bool {
        self.kind() == ErrorKind::AlreadyExists
    }

    /// Whether a peer or server could not be reached (connection refused, not opened, or
    /// lost): [`ErrorKind::Unreachable`]. A peer that never answers is a timeout
    /// ([`is_timeout`](Error::is_timeout)).
    pub fn is_unreachable(&self) -> bool {
        self.kind() == ErrorKind::Unreachable
    }

    /// Whether a lifetime ended with some of its objects not evicted:
    /// [`ErrorKind::LifetimeEvict`].
    pub fn is_lifetime_evict(&self) -> bool {
        self.kind() == ErrorKind::LifetimeEvict
    }

    /// The innermost error, looking through [`Error::Store`] context wrappers (and through
    /// [`Error::LifetimeEvict`] to its first failure, [`Error::Prefetch`] to its cause).
    pub fn root(&self) -> &Error {
        match self {
            Error::Store { source, .. } | Error::LifetimeEvict { source, .. } => source.root(),
            Error::Prefetch { source, .. } => source.root(),
            other => other,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_of_a_loopback_peer_says_why_it_may_be_unreachable() {
        let timeout = |peer: &str| {
            Error::Timeout {
                peer: peer.into(),
                operation: "get of object 1".into(),
                timeout: Duration::from_secs(1),
            }
            .to_string()
        };
        for peer in [
            "tcp://127.0.0.1:7000",
            "tcp://[::1]:7000",
            "tcp://localhost:7",
        ] {
            let message = timeout(peer);
            assert!(
                message.starts_with(&format!("peer {peer} did not answer")),
                "{message}"
            );
            assert!(message.contains("loopback"), "{message}");
            assert!(message.contains("PROXYSTORE_ZMQ_INTERFACE"), "{message}");
        }
        for peer in [
            "tcp://10.0.0.1:7000",
            "tcp://node-3:7000",
            "redis://127.0.0.1:6379/0",
        ] {
            assert!(!timeout(peer).contains("loopback"), "{peer}");
        }
    }

    #[test]
    fn kind_looks_through_store_wrappers() {
        let timeout = Error::Timeout {
            peer: "tcp://10.0.0.1:5000".into(),
            operation: "get".into(),
            timeout: Duration::from_secs(1),
        }
        .in_store("s", None);
        assert!(matches!(timeout, Error::Store { .. }));
        assert!(timeout.is_timeout() && !timeout.is_refused() && !timeout.is_not_found());

        let refused = Error::Peer {
            peer: "tcp://10.0.0.1:5000".into(),
            message: "request rejected".into(),
        }
        .in_store("s", None);
        assert!(refused.is_refused() && !refused.is_timeout());
        assert_eq!(refused.kind(), ErrorKind::Refused);

        let codec = Error::Codec {
            action: "decode",
            type_name: "u32",
            message: "trailing bytes".into(),
        };
        assert_eq!(codec.kind(), ErrorKind::Codec);
        assert_eq!(
            Error::StoreExists { name: "s".into() }.kind(),
            ErrorKind::Registry
        );
    }

    #[test]
    fn a_key_taken_is_already_exists_not_refused() {
        let taken = Error::KeyTaken {
            key: Key::new("local", 1),
            connector: "local".into(),
        }
        .in_store("s", None);
        assert_eq!(taken.kind(), ErrorKind::AlreadyExists);
        assert!(taken.is_already_exists());
        assert!(!taken.is_refused(), "refused means refused by policy");
    }

    #[test]
    fn an_unreachable_peer_is_its_own_kind() {
        let down = Error::Unreachable {
            peer: "redis://127.0.0.1:1/0".into(),
            message: "connect: connection refused".into(),
        }
        .in_store("s", None);
        assert_eq!(down.kind(), ErrorKind::Unreachable);
        assert!(down.is_unreachable() && !down.is_refused() && !down.is_timeout());
        assert!(down.to_string().contains("unreachable"), "{down}");
    }

    #[test]
    fn a_lifetime_evict_is_its_own_kind_and_its_root_says_why() {
        let failed = Error::LifetimeEvict {
            lifetime: "l".into(),
            failed: vec![Key::new("local", 1)],
            objects: 2,
            source: Box::new(Error::Timeout {
                peer: "tcp://10.0.0.1:5000".into(),
                operation: "evict".into(),
                timeout: Duration::from_secs(1),
            }),
        }
        .in_store("s", None);
        assert_eq!(failed.kind(), ErrorKind::LifetimeEvict);
        assert!(failed.is_lifetime_evict() && !failed.is_timeout());
        assert_eq!(failed.root().kind(), ErrorKind::Timeout);
    }
}
