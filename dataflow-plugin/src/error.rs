//! The crate's error type.

use proxy_core::Key;

/// What can go wrong in the operators of this crate. Operators cannot return errors to the
/// dataflow's author, so they fail (panic) with this error's message, which names the store,
/// the key and, for peer-to-peer stores, the peer (in the key).
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

/// Fails an operator that received records without a timestamp (a batch sent under no
/// capability, which timely allows but which cannot be forwarded or tracked): failing
/// loudly is better than dropping the records.
pub(crate) fn untimed_batch(operator: &str, records: usize) -> ! {
    panic!(
        "{operator}: received {records} records sent under no capability; they carry no \
         timestamp and cannot be forwarded"
    )
}
