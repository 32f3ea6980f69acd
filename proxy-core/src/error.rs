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
    #[error("peer {peer} did not answer {operation} within {timeout:?}")]
    Timeout {
        /// The peer's endpoint.
        peer: String,
        /// The operation that timed out, with its key when it has one.
        operation: String,
        /// The configured timeout.
        timeout: Duration,
    },

    /// A remote peer or server answered with an error, or could not be reached.
    #[error("peer {peer}: {message}")]
    Peer {
        /// The peer's endpoint or server address.
        peer: String,
        /// What went wrong.
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

impl Error {
    /// Wraps this error with the store (and key) it happened in.
    pub(crate) fn in_store(self, store: &str, key: Option<&Key>) -> Error {
        match self {
            // Already carries a store context or says which store: do not nest twice.
            e @ (Error::Store { .. } | Error::NotFound { .. }) => e,
            other => Error::Store {
                store: store.to_string(),
                key: KeyContext(key.cloned()),
                source: Box::new(other),
            },
        }
    }

    /// The innermost error, looking through [`Error::Store`] context wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::Store { source, .. } => source.root(),
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
