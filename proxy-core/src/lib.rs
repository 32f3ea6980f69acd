//! The ProxyStore model in Rust: stores of Rust objects over pluggable byte connectors, and
//! lazy, transparent proxies that move as a small factory (key and store config, about 160
//! bytes) and resolve where they are used.
//!
//! - [`Connector`]: a storage backend for raw [`Bytes`](bytes::Bytes): [`LocalConnector`]
//!   (process memory), [`FileConnector`] (a directory), and more in [`connectors`].
//! - [`Store`]: named; puts and gets typed objects through a [`Codec`], caches decoded
//!   objects, counts [`metrics`](Store::metrics).
//! - Codecs: [`DefaultCodec`] (bincode for any serde type, raw bytes as they are) and
//!   [`PodCodec`] for plain numeric arrays (raw memory, read in place as a [`PodArray`]).
//! - [`Proxy`]: derefs to the object, fetching it on first use; serializes as its factory.
//! - [`OwnedProxy`]: evicts its object when its last owner is dropped.
//! - [`StoreFuture`] ([`Store::future`]): a proxy to a value set later, resolved by polling
//!   ([`Polling`]); see [`future`].
//! - [`lifetimes`]: objects evicted together when a scope ends ([`ContextLifetime`]), a lease
//!   expires ([`LeaseLifetime`]) or the store or process closes ([`StaticLifetime`]);
//!   [`Store::put_in`] and [`Store::proxy_in`] attach an object as they store it.
//! - [`stream`]: streams of objects between programs (ProxyStore's `proxystore.stream`):
//!   [`StreamProducer`](stream::StreamProducer) and [`StreamConsumer`](stream::StreamConsumer)
//!   over an in-process channel, ZeroMQ PUB/SUB or Redis.
//! - [`Registry`]: stores by name, so that a proxy deserialized in another process finds
//!   (or rebuilds) its store.
//!
//! ```
//! use proxy_core::{register_store, LocalConnector, Proxy, Store};
//!
//! let store = Store::new("lib-doc", LocalConnector::new());
//! register_store(&store)?;
//!
//! // A proxy crosses a process boundary as a few bytes...
//! let proxy = store.proxy(vec![0.5f32; 1 << 16])?;
//! let wire = bincode::serialize(&proxy).unwrap();
//! assert!(wire.len() < 200);
//!
//! // ...and resolves where it is used.
//! let received: Proxy<Vec<f32>> = bincode::deserialize(&wire).unwrap();
//! assert!(!Proxy::is_resolved(&received));
//! assert_eq!(received.len(), 1 << 16);
//! # Ok::<(), proxy_core::Error>(())
//! ```
//!
//! # A default codec per store
//!
//! A store encodes with its default codec: [`DefaultCodec`] unless the builder names another
//! ([`StoreBuilder::with_codec`]). Every typed call that names no codec uses it (`put`, `get`,
//! `put_batch`, `get_batch`, `proxy`, `proxy_lazy`, `proxy_batch`, `owned_proxy`, ...), and each
//! has a `_with` variant for a one-off codec. The codec is part of the types (`Store<C>`,
//! `Proxy<T, C>`), so a proxy cannot be decoded with another codec by mistake, in this process
//! or another:
//!
//! ```
//! use bytes::Bytes;
//! use proxy_core::{Codec, Error, LocalConnector, Proxy, Store};
//!
//! /// Text as raw UTF-8, with no serde framing.
//! struct Utf8;
//!
//! impl Codec<String> for Utf8 {
//!     fn encode(value: &String) -> Result<Bytes, Error> {
//!         Ok(Bytes::copy_from_slice(value.as_bytes()))
//!     }
//!     fn decode(bytes: Bytes) -> Result<String, Error> {
//!         String::from_utf8(bytes.to_vec()).map_err(|e| Error::Codec {
//!             action: "decode",
//!             type_name: "String",
//!             message: e.to_string(),
//!         })
//!     }
//! }
//!
//! let store: Store<Utf8> = Store::builder("utf8-lib-doc", LocalConnector::new())
//!     .with_codec::<Utf8>()
//!     .build_registered()?;
//! let key = store.put(&"plain text".to_string())?; // no codec named: Utf8
//! assert_eq!(store.get_bytes(&key)?.as_deref(), Some(&b"plain text"[..]));
//!
//! let proxy: Proxy<String, Utf8> = store.proxy("sent as a proxy".to_string())?;
//! let wire = bincode::serialize(&proxy).unwrap();
//! let received: Proxy<String, Utf8> = bincode::deserialize(&wire).unwrap();
//! assert_eq!(*received, "sent as a proxy"); // decoded with Utf8 wherever it resolves
//!
//! // Another codec for one call: the `_with` variants.
//! let framed = store.put_with::<Vec<u32>, proxy_core::DefaultCodec>(&vec![1, 2])?;
//! assert_eq!(*store.get_with::<Vec<u32>, proxy_core::DefaultCodec>(&framed)?.unwrap(), vec![1, 2]);
//! store.close()?; // also unregisters it
//! # Ok::<(), proxy_core::Error>(())
//! ```

mod background;
mod cache;
mod codec;
mod config;
mod config_file;
mod connector;
mod connector_kinds;
pub mod connectors;
mod error;
pub mod future;
mod ids;
mod key;
pub mod lifetimes;
mod locations;
mod locked;
mod metrics;
mod owned;
mod polling;
mod process_id;
mod proxy;
mod registry;
mod store;
pub mod stream;
pub mod telemetry;
mod write_buffer;

#[cfg(any(test, doc, feature = "integration"))]
pub mod conformance;
#[cfg(any(test, feature = "integration"))]
pub mod testing;

pub use codec::{BincodeCodec, Codec, DefaultCodec, PodArray, PodCodec, PodElement};
pub use config::{ConnectorConfig, ExternalConfig};
pub use connector::{check_kind, Capability, Connector};
pub use connector_kinds::{is_connector_kind_registered, register_connector_kind};
#[cfg(feature = "redis")]
pub use connectors::RedisConnector;
pub use connectors::{FileConnector, LocalConnector, MultiConnector, RedisOptions, RoutingPolicy};
pub use connectors::{PeerStats, ZmqConfig, ZmqConnector, ZmqOptions};
pub use error::{Error, ErrorKind, KeyContext, Result};
pub use future::{Polling, StoreFuture};
pub use key::Key;
pub use lifetimes::{ContextLifetime, LeaseLifetime, Lifetime, StaticLifetime};
pub use locked::LockedProxy;
pub use metrics::{KeyMetrics, MetricsSnapshot, OpStats, DEFAULT_METRICS_KEYS};
pub use owned::{OwnedProxy, OwnedProxyMut};
pub use proxy::{Prefetch, Proxy};
pub use registry::{
    get_store, register_store, register_store_exist_ok, register_store_scoped, unregister_store,
    Registration, Registry,
};
pub use store::{CodecStoreBuilder, Store, StoreBuilder, StoreConfig, DEFAULT_CACHE_SIZE};
pub use write_buffer::{PodBuffer, WriteBuffer};
/// What [`delegate_connector!`] expands to refers to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use bytes::Bytes;
}
/// The ZeroMQ bindings this crate is built with (rust-zmq 0.10 over proxy-core's patched
/// libzmq, see `proxy-core/ZMQ.md`, Security). A program that needs raw ZeroMQ sockets next
/// to proxy-core uses these (`use proxy_core::zmq;`) rather than depending on crates.io's
/// `zmq`: two crates that build libzmq cannot be linked into one program (both declare
/// `links = "zmq"`, and Cargo refuses the second).
pub use zmq;

// The types this crate promises can be shared between threads (and timely workers): a
// change that breaks the promise fails to compile here, not in a user's program.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
    send_sync::<StoreConfig>();
    send_sync::<Key>();
    send_sync::<Proxy<Vec<u8>>>();
    send_sync::<LockedProxy<Vec<u8>>>();
    send_sync::<OwnedProxy<Vec<u8>>>();
    send_sync::<StoreFuture<Vec<u8>>>();
    send_sync::<Error>();
    send_sync::<stream::StreamProducer<Vec<u8>>>();
    send_sync::<stream::StreamConsumer<Vec<u8>>>();
    send_sync::<Registry>();
    send_sync::<ConnectorConfig>();
    send_sync::<std::sync::Arc<dyn Connector>>();
    send_sync::<LocalConnector>();
    send_sync::<FileConnector>();
    send_sync::<MultiConnector>();
    send_sync::<ZmqConnector>();
    send_sync::<ZmqOptions>();
    send_sync::<RedisOptions>();
    send_sync::<RoutingPolicy>();
    send_sync::<MetricsSnapshot>();
    send_sync::<ContextLifetime>();
    send_sync::<LeaseLifetime>();
    send_sync::<StaticLifetime>();
    send_sync::<Box<dyn Lifetime>>();
    #[cfg(feature = "redis")]
    send_sync::<RedisConnector>();
};
