//! `StreamConsumer`: iterates a stream's objects as proxies, objects, or objects with their
//! metadata.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::events::{Event, EventBatch};
use super::filter::Filter;
use super::metadata::Metadata;
use super::pubsub::Subscriber;
use crate::codec::{Codec, DefaultCodec};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::proxy::Proxy;
use crate::registry::Registry;
use crate::store::Store;

/// How long a consumer waits for the next event by default
/// ([`StreamConsumerBuilder::with_timeout`], `PROXYSTORE_STREAM_TIMEOUT`).
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest wait for the next event (`PROXYSTORE_STREAM_TIMEOUT`: a duration such as
/// `30s` or `5m`, or `none` to wait as long as it takes).
pub(crate) const ENV_STREAM_TIMEOUT: &str = "PROXYSTORE_STREAM_TIMEOUT";

/// An item of a stream: a proxy of an object kept in a store, or the object itself when it
/// travelled inside its event (ProxyStore's `ProxyOr[T]`). Derefs to `T` either way.
pub enum ProxyOr<T, C = DefaultCodec> {
    /// The object is in a store; the proxy resolves it on first use.
    Proxy(Proxy<T, C>),
    /// The object came inside its event.
    Object(T),
}

impl<T: fmt::Debug, C> fmt::Debug for ProxyOr<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyOr::Proxy(proxy) => f.debug_tuple("Proxy").field(proxy).finish(),
            ProxyOr::Object(obj) => f.debug_tuple("Object").field(obj).finish(),
        }
    }
}

impl<T, C> ProxyOr<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    /// Whether this is a proxy.
    pub fn is_proxy(&self) -> bool {
        matches!(self, ProxyOr::Proxy(_))
    }

    /// The proxy, if this is one.
    pub fn as_proxy(&self) -> Option<&Proxy<T, C>> {
        match self {
            ProxyOr::Proxy(proxy) => Some(proxy),
            ProxyOr::Object(_) => None,
        }
    }

    /// Resolves a proxy now (nothing to do for an object); errors are returned, not panicked.
    pub fn resolve(&self) -> Result<()> {
        match self {
            ProxyOr::Proxy(proxy) => Proxy::resolve(proxy),
            ProxyOr::Object(_) => Ok(()),
        }
    }

    /// The object by value ([`Proxy::extract`] for a proxy).
    pub fn into_object(self) -> Result<T> {
        match self {
            ProxyOr::Proxy(proxy) => Proxy::extract(proxy),
            ProxyOr::Object(obj) => Ok(obj),
        }
    }
}

impl<T, C> Deref for ProxyOr<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    type Target = T;

    /// # Panics
    /// When a proxy cannot be resolved (as [`Proxy`]'s own `Deref`).
    fn deref(&self) -> &T {
        match self {
            ProxyOr::Proxy(proxy) => proxy,
            ProxyOr::Object(obj) => obj,
        }
    }
}

/// Builds a [`StreamConsumer`] ([`StreamConsumer::builder`]).
#[must_use = "a builder does nothing until `build` is called"]
pub struct StreamConsumerBuilder<T, C = DefaultCodec> {
    subscriber: Box<dyn Subscriber>,
    filter: Option<Box<dyn Filter>>,
    timeout: Option<Option<Duration>>,
    registry: Option<&'static Registry>,
    types: PhantomData<fn() -> (T, C)>,
}

impl<T, C> fmt::Debug for StreamConsumerBuilder<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamConsumerBuilder")
            .field("subscriber", &self.subscriber)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<T, C: Codec<T>> StreamConsumerBuilder<T, C> {
    /// Drops the events whose metadata the filter picks (`true`: dropped). A dropped object
    /// that was to be evicted once consumed is evicted.
    pub fn with_filter(mut self, filter: impl Filter + 'static) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    /// The longest wait for the next event before [`Error::Timeout`] (`None`: as long as it
    /// takes). Default: `PROXYSTORE_STREAM_TIMEOUT`, else [`DEFAULT_STREAM_TIMEOUT`] (60 s).
    /// A publisher that is gone is usually reported sooner ([`Error::StreamEnded`]: a
    /// dropped in-process channel, a ZeroMQ publisher that disconnected); the timeout bounds
    /// the rest (a producer that died while its broker lives on, one that hangs).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The registry where stores named by the events are looked up, or rebuilt and
    /// registered (default: the process-wide one).
    pub fn with_registry(mut self, registry: &'static Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The consumer.
    ///
    /// # Errors
    /// [`Error::Config`] when `PROXYSTORE_STREAM_TIMEOUT` is set (and no timeout was given)
    /// but is not a duration or `none`.
    pub fn build(self) -> Result<StreamConsumer<T, C>> {
        let timeout = match self.timeout {
            Some(timeout) => timeout,
            None => timeout_from_env(std::env::var(ENV_STREAM_TIMEOUT).ok().as_deref())?,
        };
        Ok(StreamConsumer {
            subscriber: Some(Mutex::new(self.subscriber)),
            filter: self.filter,
            timeout,
            registry: self.registry.unwrap_or_else(Registry::global),
            stores: HashMap::new(),
            pending: VecDeque::new(),
            pending_store: None,
            ended: false,
            types: PhantomData,
        })
    }
}

/// The timeout `PROXYSTORE_STREAM_TIMEOUT` says (`value`), or the default when unset.
pub(crate) fn timeout_from_env(value: Option<&str>) -> Result<Option<Duration>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(Some(DEFAULT_STREAM_TIMEOUT));
    };
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    humantime::parse_duration(value)
        .map(Some)
        .map_err(|e| Error::Config {
            what: ENV_STREAM_TIMEOUT.to_string(),
            message: format!("{value:?} is not a duration (such as 30s) or `none`: {e}"),
        })
}

/// Iterates a stream's objects (ProxyStore's `StreamConsumer`): events come from a
/// [`Subscriber`]; each stored object is handed out as a proxy (or fetched, with
/// [`next_object`](Self::next_object)), each object that travelled inside its event as
/// itself.
///
/// - As an [`Iterator`] of `Result<ProxyOr<T, C>>`, or with [`next_item`](Self::next_item):
///   proxies (of stored objects) or objects. A proxy of an object sent to be evicted once
///   consumed evicts it when it is first resolved, so it resolves once: clones share the
///   value, a proxy rebuilt from its key does not find the object.
/// - [`next_object`](Self::next_object), [`iter_objects`](Self::iter_objects): the objects
///   themselves, fetched at once (and evicted then, when so sent).
/// - [`next_with_metadata`](Self::next_with_metadata),
///   [`next_object_with_metadata`](Self::next_object_with_metadata) and their iterators:
///   with each object's [`Metadata`].
///
/// The end of the stream (the first end-of-stream event the subscriber delivers, as in
/// ProxyStore) ends iteration: `Ok(None)` from then on. An error (a malformed or refused
/// message, a store error, a [timeout](StreamConsumerBuilder::with_timeout), a publisher
/// gone) is returned once; iteration can go on after it, reading the next event.
///
/// Stores named by the events are looked up by name in the registry, or rebuilt from their
/// configuration and registered (as deserialized proxies are);
/// [`close_with_stores`](Self::close_with_stores) closes them.
pub struct StreamConsumer<T, C = DefaultCodec> {
    // In a mutex only to make the consumer `Sync` (timely's closures must be): every use is
    // through `&mut self` and `Mutex::get_mut`, which never locks.
    subscriber: Option<Mutex<Box<dyn Subscriber>>>,
    filter: Option<Box<dyn Filter>>,
    timeout: Option<Duration>,
    registry: &'static Registry,
    stores: HashMap<String, Store<C>>,
    pending: VecDeque<Event>,
    pending_store: Option<Store<C>>,
    ended: bool,
    types: PhantomData<fn() -> (T, C)>,
}

impl<T, C> fmt::Debug for StreamConsumer<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamConsumer")
            .field("subscriber", &self.subscriber)
            .field("timeout", &self.timeout)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// An event with an object, and the store it is in.
enum Next<C> {
    Stored {
        metadata: Metadata,
        key: Key,
        evict: bool,
        store: Store<C>,
    },
    Inline {
        metadata: Metadata,
        object: bytes::Bytes,
    },
}

impl<T> StreamConsumer<T> {
    /// A builder of a consumer of `subscriber`'s events, with the [`DefaultCodec`] (for
    /// another codec: [`StreamConsumer::builder_with_codec`]).
    pub fn builder(subscriber: impl Subscriber + 'static) -> StreamConsumerBuilder<T>
    where
        DefaultCodec: Codec<T>,
    {
        StreamConsumer::builder_with_codec(subscriber)
    }

    /// A consumer of `subscriber`'s events with the default settings.
    ///
    /// # Errors
    /// As [`StreamConsumerBuilder::build`].
    pub fn new(subscriber: impl Subscriber + 'static) -> Result<StreamConsumer<T>>
    where
        DefaultCodec: Codec<T>,
    {
        StreamConsumer::builder(subscriber).build()
    }
}

impl<T, C: Codec<T>> StreamConsumer<T, C> {
    /// A builder of a consumer with codec `C` (the producer's).
    pub fn builder_with_codec(
        subscriber: impl Subscriber + 'static,
    ) -> StreamConsumerBuilder<T, C> {
        StreamConsumerBuilder {
            subscriber: Box::new(subscriber),
            filter: None,
            timeout: None,
            registry: None,
            types: PhantomData,
        }
    }

    /// Whether the end of the stream was reached.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The longest wait for the next event (`None`: no limit).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn subscriber(&mut self) -> Result<&mut Box<dyn Subscriber>> {
        self.subscriber
            .as_mut()
            .map(|s| s.get_mut().unwrap_or_else(PoisonError::into_inner))
            .ok_or_else(|| Error::Closed {
                connector: "stream consumer (its subscriber was handed back or closed)".to_string(),
            })
    }

    fn store_for(&mut self, config: &crate::store::StoreConfig) -> Result<Store<C>> {
        if let Some(store) = self.stores.get(&config.name) {
            return Ok(store.clone());
        }
        let store = self.registry.get_or_rebuild(config)?.with_codec::<C>();
        self.stores.insert(config.name.clone(), store.clone());
        Ok(store)
    }

    /// The next batch from the subscriber, within the timeout.
    fn next_batch(&mut self) -> Result<EventBatch> {
        let timeout = self.timeout;
        let deadline = timeout.map(|t| Instant::now() + t);
        let subscriber = self.subscriber()?;
        loop {
            let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Some(message) = subscriber.next_message(wait)? {
                return EventBatch::decode(&message, &subscriber.source());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout {
                    peer: subscriber.source(),
                    operation: "wait for the next stream event".to_string(),
                    timeout: timeout.unwrap_or_default(),
                });
            }
        }
    }

    /// The next event with an object, before filtering; `None` at the end of the stream.
    fn next_event(&mut self) -> Result<Option<Next<C>>> {
        loop {
            if self.ended {
                return Ok(None);
            }
            match self.pending.pop_front() {
                Some(Event::EndOfStream) => {
                    self.ended = true;
                    self.pending.clear();
                    return Ok(None);
                }
                Some(Event::Object { metadata, object }) => {
                    return Ok(Some(Next::Inline { metadata, object }))
                }
                Some(Event::Key {
                    metadata,
                    key,
                    evict,
                }) => {
                    // A batch with key events always names its store (checked on decode).
                    let store = self.pending_store.clone().ok_or_else(|| Error::Protocol {
                        peer: "stream".to_string(),
                        message: "a stored object without a store".to_string(),
                    })?;
                    return Ok(Some(Next::Stored {
                        metadata,
                        key,
                        evict,
                        store,
                    }));
                }
                None => {
                    let batch = self.next_batch()?;
                    self.pending_store = match &batch.store {
                        Some(config) => Some(self.store_for(config)?),
                        None => None,
                    };
                    self.pending = batch.events.into();
                }
            }
        }
    }

    /// The next event the filter keeps; evicts the dropped ones that were to be evicted.
    fn next_kept(&mut self) -> Result<Option<Next<C>>> {
        loop {
            let Some(next) = self.next_event()? else {
                return Ok(None);
            };
            let metadata = match &next {
                Next::Stored { metadata, .. } | Next::Inline { metadata, .. } => metadata,
            };
            if !self.filter.as_ref().is_some_and(|f| f.drops(metadata)) {
                return Ok(Some(next));
            }
            if let Next::Stored {
                key,
                evict: true,
                store,
                ..
            } = &next
            {
                store.evict(key)?;
            }
        }
    }

    /// The next item with its metadata: a proxy of a stored object (evicting on its first
    /// resolve when so sent), or the object itself. `Ok(None)` at the end of the stream.
    ///
    /// # Errors
    /// See [`StreamConsumer`].
    pub fn next_with_metadata(&mut self) -> Result<Option<(Metadata, ProxyOr<T, C>)>>
    where
        T: Send + Sync + 'static,
    {
        Ok(match self.next_kept()? {
            None => None,
            Some(Next::Inline { metadata, object }) => {
                Some((metadata, ProxyOr::Object(C::decode(object)?)))
            }
            Some(Next::Stored {
                metadata,
                key,
                evict,
                store,
            }) => {
                let proxy = if evict {
                    Proxy::evicting_on_read(store.erased(), key)
                } else {
                    store.proxy_from_key_with::<T, C>(key)
                };
                Some((metadata, ProxyOr::Proxy(proxy)))
            }
        })
    }

    /// The next item: a proxy or the object ([`next_with_metadata`](Self::next_with_metadata)
    /// without the metadata).
    ///
    /// # Errors
    /// See [`StreamConsumer`].
    pub fn next_item(&mut self) -> Result<Option<ProxyOr<T, C>>>
    where
        T: Send + Sync + 'static,
    {
        Ok(self.next_with_metadata()?.map(|(_, item)| item))
    }

    /// The next object with its metadata, fetched from its store now (and evicted from it,
    /// when so sent). `Ok(None)` at the end of the stream.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the store no longer has the object; see [`StreamConsumer`].
    pub fn next_object_with_metadata(&mut self) -> Result<Option<(Metadata, T)>> {
        Ok(match self.next_kept()? {
            None => None,
            Some(Next::Inline { metadata, object }) => Some((metadata, C::decode(object)?)),
            Some(Next::Stored {
                metadata,
                key,
                evict,
                store,
            }) => {
                let bytes = store.get_bytes(&key)?.ok_or_else(|| Error::NotFound {
                    store: store.name().to_string(),
                    key: key.clone(),
                })?;
                let obj = C::decode(bytes).map_err(|e| e.in_store(store.name(), Some(&key)))?;
                if evict {
                    store.evict(&key)?;
                }
                Some((metadata, obj))
            }
        })
    }

    /// The next object, fetched now ([`next_object_with_metadata`](Self::next_object_with_metadata)
    /// without the metadata).
    ///
    /// # Errors
    /// See [`next_object_with_metadata`](Self::next_object_with_metadata).
    pub fn next_object(&mut self) -> Result<Option<T>> {
        Ok(self.next_object_with_metadata()?.map(|(_, obj)| obj))
    }

    /// An iterator of items with their metadata, to the end of the stream.
    pub fn iter_with_metadata(
        &mut self,
    ) -> impl Iterator<Item = Result<(Metadata, ProxyOr<T, C>)>> + '_
    where
        T: Send + Sync + 'static,
    {
        std::iter::from_fn(move || self.next_with_metadata().transpose())
    }

    /// An iterator of objects, to the end of the stream.
    pub fn iter_objects(&mut self) -> impl Iterator<Item = Result<T>> + '_ {
        std::iter::from_fn(move || self.next_object().transpose())
    }

    /// An iterator of objects with their metadata, to the end of the stream.
    pub fn iter_objects_with_metadata(
        &mut self,
    ) -> impl Iterator<Item = Result<(Metadata, T)>> + '_ {
        std::iter::from_fn(move || self.next_object_with_metadata().transpose())
    }

    /// Closes the subscriber. The stores the consumer used stay open;
    /// [`close_with_stores`](Self::close_with_stores) closes them too.
    ///
    /// # Errors
    /// When the subscriber could not be closed.
    pub fn close(mut self) -> Result<()> {
        match self.subscriber.take() {
            Some(subscriber) => subscriber
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .close(),
            None => Ok(()),
        }
    }

    /// [`close`](Self::close), then closes (and unregisters) every store the consumer used.
    ///
    /// # Errors
    /// The first error; everything is closed all the same.
    pub fn close_with_stores(mut self) -> Result<()> {
        let stores: Vec<Store<C>> = self.stores.drain().map(|(_, store)| store).collect();
        let mut first = self.close();
        for store in stores {
            first = first.and(store.close());
        }
        first
    }

    /// Hands the subscriber back, open (to reuse it with another consumer). Events of a
    /// batch not consumed yet are lost.
    ///
    /// # Errors
    /// [`Error::Closed`] if it was handed back already.
    pub fn into_subscriber(mut self) -> Result<Box<dyn Subscriber>> {
        self.subscriber()?;
        self.subscriber
            .take()
            .map(|s| s.into_inner().unwrap_or_else(PoisonError::into_inner))
            .ok_or_else(|| Error::Closed {
                connector: "stream consumer".to_string(),
            })
    }
}

impl<T, C> Iterator for StreamConsumer<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    type Item = Result<ProxyOr<T, C>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_variable_takes_durations_or_none() {
        assert_eq!(
            timeout_from_env(None).ok(),
            Some(Some(DEFAULT_STREAM_TIMEOUT))
        );
        assert_eq!(
            timeout_from_env(Some(" ")).ok(),
            Some(Some(DEFAULT_STREAM_TIMEOUT))
        );
        assert_eq!(
            timeout_from_env(Some("250ms")).ok(),
            Some(Some(Duration::from_millis(250)))
        );
        assert_eq!(timeout_from_env(Some("None")).ok(), Some(None));
        assert!(matches!(
            timeout_from_env(Some("soon")),
            Err(Error::Config { .. })
        ));
    }
}
