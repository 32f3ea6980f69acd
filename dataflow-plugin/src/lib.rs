//! Timely Dataflow operators that move large records as lazy proxies.
//!
//! In a dataflow whose records are large (model weights, arrays, images, frames), the
//! operators of this crate store each record with a [`proxy_core::Store`] and send a
//! [`Proxy`](proxy_core::Proxy) in its place: about 200 bytes naming the object and the
//! peer that holds it. `exchange`, `broadcast` and every other operator move the proxies
//! unchanged; at the consumer, [`Resolve::resolve`] fetches the bytes peer to peer (with the
//! ZeroMQ connector, or any other) and hands on the values.
//!
//! - [`ProxyRecords::proxy`]: every record becomes a proxy.
//! - [`AutoProxy::auto_proxy`]: only records over a size threshold become proxies
//!   ([`Proxied`] derefs to the record either way); [`AutoProxy::auto_proxy_by`]: only those
//!   a predicate picks (by variant, field or content).
//! - [`Resolve::resolve`]: proxies back to values, prefetching each arriving batch;
//!   [`Resolve::try_resolve`]: the same, with the records that cannot be fetched sent to a
//!   stream of [`ResolveError`]s instead of failing the worker.
//! - [`ReleaseProxies::release_proxies`]: where proxies are read by your own operators.
//! - [`StreamSource::stream_source`]: another program's stream
//!   ([`proxy_core::stream::StreamConsumer`]) as a timely stream, whose frontier closes at
//!   the end of the stream; [`StreamSink::stream_sink`]: a timely stream's records sent to a
//!   topic of a [`proxy_core::stream::StreamProducer`].
//!
//! Stored objects live while the dataflow may still read them: each producing operator
//! remembers what it stored at each time, and evicts it once every consumer has passed that
//! time. When a dataflow completes, the stores it used are empty again.
//!
//! The rule that follows: every operator that reads proxies must be upstream of a release
//! point (`resolve` is its own). A branch that reads proxies in its own operator without
//! ending in [`ReleaseProxies::release_proxies`] may find objects already evicted once the
//! other branches are done. A dataflow without any release point evicts nothing, so proxies
//! captured out of it stay readable.
//!
//! [`cluster::execute`] runs a timely cluster that fails fast: a startup deadline and
//! heartbeats between the processes, ending every process with an error naming a host that
//! never joined or fell silent.
//!
//! The operators need totally ordered timestamps (`u64`, `usize`, ...).

pub mod cluster;
mod error;
mod lifetime;
pub mod operators;
mod proxied;
mod resolvable;

pub use error::{Error, ResolveError};
pub use operators::{
    AutoProxy, ProxyInPlace, ProxyRecords, ReleaseProxies, Resolve, StreamSink, StreamSource,
};
pub use proxied::Proxied;
pub use resolvable::Resolvable;
