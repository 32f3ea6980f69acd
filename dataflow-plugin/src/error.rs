//! The crate's error type.

use proxy_core::{ErrorKind, Key};
use serde::{Deserialize, Serialize};

/// What can go wrong in the operators of this crate. Operators cannot return errors to the
/// dataflow's author, so they fail (panic) with this error's message, which names the store,
/// the key and, for peer-to-peer stores, the peer (in the key); except
/// [`try_resolve`](crate::Resolve::try_resolve), which sends a [`ResolveError`] record
/// instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A proxied record could not be fetched.
    #[error("could not resolve {key} from store `{store}`: {source}")]
    Resolve {
        /// The store holding the record.
        store: String,
        /// The record's key (naming the owning peer, if any).
        key: Key,
        /// Why the fetch failed.
        #[source]
        source: proxy_core::Error,
    },
}

/// A record that [`try_resolve`](crate::Resolve::try_resolve) could not resolve, sent on its
/// stream of errors at the record's time instead of failing the worker.
///
/// It is ordinary exchangeable data (`Clone`, serde), so it can be routed, counted or
/// logged like any other record. The cause is kept as its [`ErrorKind`] (to branch on) and
/// its message, since a [`proxy_core::Error`] is neither `Clone` nor serializable. To retry,
/// rebuild a proxy from the key ([`Store::proxy_from_key`](proxy_core::Store::proxy_from_key)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("could not resolve {key} from store `{store}`: {message}")]
pub struct ResolveError {
    /// The store the record's proxy names.
    pub store: String,
    /// The record's key (naming the owning peer, if any).
    pub key: Key,
    /// What kind of failure it was ([`ErrorKind::NotFound`] for an evicted object).
    pub kind: ErrorKind,
    /// The cause, as the store reported it.
    pub message: String,
}

impl From<Error> for ResolveError {
    fn from(error: Error) -> Self {
        match error {
            Error::Resolve { store, key, source } => ResolveError {
                store,
                key,
                kind: source.kind(),
                message: source.to_string(),
            },
        }
    }
}

/// Fails an operator that received records without a timestamp (a batch sent under no
/// capability, which timely allows but which cannot be forwarded or tracked): failing
/// loudly is better than dropping the records.
pub(crate) fn untimed_batch(operator: &str, records: usize) -> ! {
    panic!(
        "{operator}: received {records} records sent under no capability; they carry no \
         timestamp and cannot be forwarded"
    )
}
