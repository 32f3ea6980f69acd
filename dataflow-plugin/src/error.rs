//! The crate's error type.

use proxy_core::{ErrorKind, Key};
use serde::{Deserialize, Serialize};

/// What can go wrong in this crate. Operators cannot return errors to the dataflow's
/// author, so they fail (panic) with this error's message, which names the store, the key
/// and, for peer-to-peer stores, the peer (in the key); except
/// [`try_resolve`](crate::Resolve::try_resolve), which sends a [`ResolveError`] record
/// instead. The `Cluster*`, `Host*` and `Timely` variants come from [`crate::cluster`].
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
    /// A stream source or sink ([`StreamSource`](crate::StreamSource),
    /// [`StreamSink`](crate::StreamSink)) could not read or send its stream.
    #[error("{operator}: {source}")]
    Stream {
        /// The operator (`stream_source`, `stream_sink`) and its topic, if any.
        operator: String,
        /// Why.
        #[source]
        source: proxy_core::Error,
    },
    /// A process of the cluster was not heard from within the startup deadline.
    #[error(
        "cluster: process {process} ({address}) did not join within the startup deadline of \
         {deadline:?}: it did not start, exited, or cannot be reached (check that it runs and \
         that UDP and TCP to {address} are open; PROXYSTORE_CLUSTER_STARTUP sets the deadline)"
    )]
    HostNeverJoined {
        /// The missing process's index.
        process: usize,
        /// Its address in the hostfile.
        address: String,
        /// The startup deadline.
        deadline: std::time::Duration,
    },
    /// Timely's connection phase did not finish within the startup deadline, although every
    /// process answers heartbeats.
    #[error(
        "cluster: process {process}: timely's connection phase did not finish within the startup \
         deadline of {deadline:?}, though every process answers heartbeats; check that timely's \
         TCP ports are reachable: {addresses}"
    )]
    ClusterConnect {
        /// This process's index.
        process: usize,
        /// The startup deadline.
        deadline: std::time::Duration,
        /// Every process's address.
        addresses: String,
    },
    /// A process of the cluster fell silent for the heartbeats allowed.
    #[error(
        "cluster: lost process {process} ({address}): silent for {silent:?} ({misses} heartbeats \
         of {heartbeat:?} missed{}); it died, froze or its network is down",
        if *never_heard { ", and none ever received: is UDP to its timely port blocked?" } else { "" }
    )]
    HostLost {
        /// The silent process's index.
        process: usize,
        /// Its address in the hostfile.
        address: String,
        /// How long it has been silent.
        silent: std::time::Duration,
        /// The heartbeat interval.
        heartbeat: std::time::Duration,
        /// Heartbeats missed before a host is lost.
        misses: u32,
        /// Whether no heartbeat of it ever arrived (only timely's connection).
        never_heard: bool,
    },
    /// The watchdog could not start for this process's address.
    #[error("cluster: this process's address {address}: {reason}")]
    ClusterSetup {
        /// This process's address in the hostfile.
        address: String,
        /// What failed.
        reason: String,
    },
    /// A `PROXYSTORE_CLUSTER_*` variable has a value that cannot be used.
    #[error("{variable}={value:?}: {reason}")]
    ClusterConfig {
        /// The variable.
        variable: String,
        /// Its value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// Timely could not start (its own message).
    #[error("timely: {message}")]
    Timely {
        /// Timely's message.
        message: String,
    },
}

impl Error {
    /// The exit status the cluster watchdog ends a process with for this error:
    /// [`EXIT_NEVER_JOINED`](crate::cluster::EXIT_NEVER_JOINED) or
    /// [`EXIT_HOST_LOST`](crate::cluster::EXIT_HOST_LOST); `None` for other errors.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Error::HostNeverJoined { .. } | Error::ClusterConnect { .. } => {
                Some(crate::cluster::EXIT_NEVER_JOINED)
            }
            Error::HostLost { .. } => Some(crate::cluster::EXIT_HOST_LOST),
            _ => None,
        }
    }
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

/// An [`Error::Resolve`] as a record; any other error is handed back.
impl TryFrom<Error> for ResolveError {
    type Error = Error;

    fn try_from(error: Error) -> Result<Self, Error> {
        match error {
            Error::Resolve { store, key, source } => Ok(ResolveError {
                store,
                key,
                kind: source.kind(),
                message: source.to_string(),
            }),
            other => Err(other),
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
