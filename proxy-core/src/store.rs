//! The `Store`: typed objects over a connector, with a codec, a cache and metrics.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cache::{self, ObjectCache};
use crate::codec::{Codec, DefaultCodec};
use crate::config::ConnectorConfig;
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::metrics::{Metrics, MetricsSnapshot, Op, DEFAULT_METRICS_KEYS};

/// What a layer built on the store does when a store closes (see [`on_close`]).
pub(crate) type CloseHook = fn(&Store) -> Result<()>;

fn hooks() -> &'static std::sync::Mutex<Vec<CloseHook>> {
    static HOOKS: std::sync::OnceLock<std::sync::Mutex<Vec<CloseHook>>> =
        std::sync::OnceLock::new();
    HOOKS.get_or_init(Default::default)
}

/// Registers `hook` (once) to run on every [`Store::close`], before the connector closes:
/// how the static lifetime evicts a closing store's objects and the registry forgets it,
/// without the store importing either.
pub(crate) fn on_close(hook: CloseHook) {
    let mut hooks = hooks()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !hooks.iter().any(|known| std::ptr::fn_addr_eq(*known, hook)) {
        hooks.push(hook);
    }
}

fn close_hooks() -> Vec<CloseHook> {
    hooks()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// The default number of decoded objects a store caches.
pub const DEFAULT_CACHE_SIZE: usize = 16;

/// Everything needed to rebuild a store in another process: what a serialized
/// [`Proxy`](crate::Proxy) carries besides its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The store's name (its identity in a [`Registry`](crate::Registry)).
    pub name: String,
    /// How to rebuild the connector.
    pub connector: ConnectorConfig,
    /// How many decoded objects to cache (0 disables the cache).
    pub cache_size: usize,
    /// Whether to collect [`metrics`](Store::metrics).
    pub metrics: bool,
    /// How many keys the metrics follow individually
    /// ([`StoreBuilder::with_metrics_keys`]).
    #[serde(default = "default_metrics_keys")]
    pub metrics_keys: usize,
    /// Whether [`Store::proxy`] returns proxies that already hold their value
    /// ([`StoreBuilder::with_populate_target`]).
    #[serde(default = "default_populate_target")]
    pub populate_target: bool,
}

fn default_metrics_keys() -> usize {
    DEFAULT_METRICS_KEYS
}

fn default_populate_target() -> bool {
    true
}

/// A named store of Rust objects over a [`Connector`].
///
/// `Store` is cheap to clone; clones share the connector, the cache and the metrics.
/// Values are encoded with a [`Codec`] ([`DefaultCodec`] unless a `*_with` method names
/// another). `get` returns `Arc<T>`, so a cache hit hands out the cached object without
/// decoding it again.
///
/// ```
/// use proxy_core::{LocalConnector, Proxy, Store};
///
/// let store = Store::new("store-doc", LocalConnector::new());
/// let key = store.put(&vec![1.5f64, 2.5])?;
/// assert_eq!(*store.get::<Vec<f64>>(&key)?.unwrap(), vec![1.5, 2.5]);
///
/// // A proxy resolves itself on first use and derefs to the value.
/// let proxy = store.proxy(String::from("a large object"))?;
/// assert_eq!(proxy.len(), 14);
/// store.evict(Proxy::key(&proxy))?;
/// store.evict(&key)?;
/// assert!(!store.exists(&key)?);
/// # Ok::<(), proxy_core::Error>(())
/// ```
pub struct Store<C = DefaultCodec> {
    inner: Arc<Inner>,
    /// The store's default codec: used by every typed call that does not name another.
    codec: PhantomData<fn() -> C>,
}

impl<C> Clone for Store<C> {
    fn clone(&self) -> Self {
        Store {
            inner: Arc::clone(&self.inner),
            codec: PhantomData,
        }
    }
}

struct Inner {
    name: String,
    connector: Arc<dyn Connector>,
    config: Arc<StoreConfig>,
    cache: Arc<ObjectCache>,
    metrics: Option<Metrics>,
}

impl<C> fmt::Debug for Store<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.inner.name)
            .field("connector", &self.inner.connector)
            .field("cache_size", &self.inner.config.cache_size)
            .finish()
    }
}

/// Builds a [`Store`] with non-default settings ([`Store::builder`]).
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct StoreBuilder {
    name: String,
    connector: Arc<dyn Connector>,
    cache_size: usize,
    metrics: bool,
    metrics_keys: usize,
    populate_target: bool,
}

impl StoreBuilder {
    /// How many decoded objects to keep (default [`DEFAULT_CACHE_SIZE`]; 0 disables caching).
    pub fn with_cache_size(mut self, entries: usize) -> Self {
        self.cache_size = entries;
        self
    }

    /// Whether to count operations, bytes and time ([`Store::metrics`]).
    pub fn with_metrics(mut self, enabled: bool) -> Self {
        self.metrics = enabled;
        self
    }

    /// How many keys the metrics follow individually (default [`DEFAULT_METRICS_KEYS`]; the
    /// least recently used key is forgotten when a new one comes; 0 turns the per-key view
    /// off). The store-wide totals count every operation whatever this bound.
    pub fn with_metrics_keys(mut self, keys: usize) -> Self {
        self.metrics_keys = keys;
        self
    }

    /// Whether [`Store::proxy`] (and [`proxy_with`](Store::proxy_with),
    /// [`proxy_batch`](Store::proxy_batch), [`owned_proxy`](Store::owned_proxy)) returns a
    /// proxy that already holds the value (`true`, the default, ProxyStore's
    /// `populate_target=True`), or one that fetches it on first use like a proxy received
    /// from elsewhere (`false`: the value is moved into the codec and not kept). Carried in
    /// the store's config, so a rebuilt store behaves the same.
    pub fn with_populate_target(mut self, populate: bool) -> Self {
        self.populate_target = populate;
        self
    }

    /// Makes `C` the store's default codec: the typed calls that name no codec (`put`, `get`,
    /// `proxy`, ...) use it ([`Store::with_codec`]).
    pub fn with_codec<C>(self) -> CodecStoreBuilder<C> {
        CodecStoreBuilder {
            builder: self,
            codec: PhantomData,
        }
    }

    /// The store.
    pub fn build(self) -> Store {
        let config = StoreConfig {
            name: self.name.clone(),
            connector: self.connector.config(),
            cache_size: self.cache_size,
            metrics: self.metrics,
            metrics_keys: self.metrics_keys,
            populate_target: self.populate_target,
        };
        Store {
            codec: PhantomData,
            inner: Arc::new(Inner {
                name: self.name,
                connector: self.connector,
                config: Arc::new(config),
                cache: ObjectCache::new(self.cache_size),
                metrics: self.metrics.then(|| Metrics::new(self.metrics_keys)),
            }),
        }
    }
}

/// A [`StoreBuilder`] whose store gets a default codec `C` ([`StoreBuilder::with_codec`]).
#[derive(Debug)]
pub struct CodecStoreBuilder<C> {
    builder: StoreBuilder,
    codec: PhantomData<fn() -> C>,
}

impl<C> CodecStoreBuilder<C> {
    /// The store.
    pub fn build(self) -> Store<C> {
        self.builder.build().with_codec::<C>()
    }
}

impl Store {
    /// A store named `name` over `connector`, with the default cache and no metrics.
    pub fn new(name: impl Into<String>, connector: impl Connector + 'static) -> Store {
        Store::builder(name, connector).build()
    }

    /// A builder for a store with a chosen cache size or metrics.
    pub fn builder(name: impl Into<String>, connector: impl Connector + 'static) -> StoreBuilder {
        Store::builder_arc(name, Arc::new(connector))
    }

    /// Like [`builder`](Store::builder), for a connector that is already shared.
    pub fn builder_arc(name: impl Into<String>, connector: Arc<dyn Connector>) -> StoreBuilder {
        StoreBuilder {
            name: name.into(),
            connector,
            cache_size: DEFAULT_CACHE_SIZE,
            metrics: false,
            metrics_keys: DEFAULT_METRICS_KEYS,
            populate_target: true,
        }
    }

    /// Rebuilds a store from its [`config`](Store::config), in this process or another.
    pub fn from_config(config: &StoreConfig) -> Result<Store> {
        let connector = config
            .connector
            .build()
            .map_err(|e| e.in_store(&config.name, None))?;
        Ok(Store::builder_arc(config.name.clone(), connector)
            .with_cache_size(config.cache_size)
            .with_metrics(config.metrics)
            .with_metrics_keys(config.metrics_keys)
            .with_populate_target(config.populate_target)
            .build())
    }
}

impl<Dc: 'static> Store<Dc> {
    /// The same store (same connector, cache and metrics) with `C` as its default codec:
    /// typed calls without a codec of their own use `C`. This is how a store gets a default
    /// codec other than [`DefaultCodec`] (or use [`StoreBuilder::with_codec`]).
    pub fn with_codec<C>(&self) -> Store<C> {
        Store {
            inner: Arc::clone(&self.inner),
            codec: PhantomData,
        }
    }

    /// This store with the [`DefaultCodec`], as the registry and proxies hold it.
    pub(crate) fn erased(&self) -> Store {
        self.with_codec::<DefaultCodec>()
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The connector under the store.
    pub fn connector(&self) -> &Arc<dyn Connector> {
        &self.inner.connector
    }

    /// The configuration that rebuilds this store ([`Store::from_config`]).
    pub fn config(&self) -> StoreConfig {
        (*self.inner.config).clone()
    }

    pub(crate) fn shared_config(&self) -> &Arc<StoreConfig> {
        &self.inner.config
    }

    /// Whether two handles are clones of the same store.
    pub fn same_store<C>(&self, other: &Store<C>) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn context(&self, key: Option<&Key>) -> impl FnOnce(Error) -> Error + '_ {
        let key = key.cloned();
        move |e| e.in_store(&self.inner.name, key.as_ref())
    }

    /// Counts one operation on `keys` (a batch when several; none when unknown), store-wide
    /// and per key.
    fn record_keys(&self, op: Op, keys: &[Key], bytes: usize, started: Option<Instant>) {
        if let (Some(metrics), Some(started)) = (&self.inner.metrics, started) {
            metrics.record_keys(op, keys, bytes, started);
        }
    }

    /// Whether [`proxy`](Store::proxy) returns proxies that hold their value
    /// ([`StoreBuilder::with_populate_target`]).
    pub fn populate_target(&self) -> bool {
        self.inner.config.populate_target
    }

    /// Counts the reservation of a future's key ([`Store::future`](crate::Store::future)).
    pub(crate) fn record_future(&self, key: &Key, started: Option<Instant>) {
        self.record_keys(Op::Future, std::slice::from_ref(key), 0, started);
    }

    pub(crate) fn start(&self) -> Option<Instant> {
        self.inner.metrics.as_ref().map(|_| Instant::now())
    }

    /// Stores raw bytes, with no codec.
    pub fn put_bytes(&self, data: Bytes) -> Result<Key> {
        let started = self.start();
        self.put_encoded(started, Ok(data))
    }

    /// A buffer of `len` bytes to write an object into, then store without another copy
    /// ([`put_buffer`](Store::put_buffer), [`proxy_buffer`](Store::proxy_buffer)): with a
    /// ZeroMQ connector and shared memory on, a slot of the peer's pre-faulted shared memory
    /// that same-host readers map as it was written (see [`WriteBuffer`](crate::WriteBuffer)).
    ///
    /// What is written must be the object's encoding under the codec it will be read with:
    /// for `Bytes` and `Vec<u8>` with the default codec, the bytes themselves.
    pub fn alloc(&self, len: usize) -> Result<crate::WriteBuffer> {
        self.inner.connector.alloc(len).map_err(self.context(None))
    }

    /// A buffer for `count` elements of `T` laid out as [`PodCodec`](crate::PodCodec) stores
    /// them, to fill in place through `&mut [T]` and store with
    /// [`put_buffer`](Store::put_buffer) or [`proxy_buffer`](Store::proxy_buffer) after
    /// [`PodBuffer::into_write_buffer`](crate::PodBuffer::into_write_buffer); read it back
    /// with `PodCodec` as a [`PodArray<T>`](crate::PodArray) or `Vec<T>`.
    pub fn alloc_pod<T: crate::PodElement>(&self, count: usize) -> Result<crate::PodBuffer<T>> {
        let len = crate::PodBuffer::<T>::encoded_len(count).ok_or_else(|| Error::Codec {
            action: "encode",
            type_name: std::any::type_name::<T>(),
            message: format!("PodBuffer: {count} elements do not fit in memory"),
        })?;
        crate::PodBuffer::new(self.alloc(len)?, count)
    }

    /// Stores what was written into `buffer` (from [`alloc`](Store::alloc)) as a new object,
    /// with no codec, and returns its key.
    pub fn put_buffer(&self, buffer: crate::WriteBuffer) -> Result<Key> {
        let started = self.start();
        let len = buffer.len();
        let key = self
            .inner
            .connector
            .put_buffer(buffer)
            .map_err(self.context(None))?;
        tracing::debug!(store = %self.inner.name, %key, bytes = len, "put buffer");
        self.record_keys(Op::Put, std::slice::from_ref(&key), len, started);
        Ok(key)
    }

    /// The raw bytes stored under `key`, bypassing the codec and the cache.
    ///
    /// With a ZeroMQ connector and a peer on the same machine these are, by default, the
    /// owner's shared memory mapped read-only, not a copy: a misbehaving process of the same
    /// user can still change them while they are held (see
    /// [`Codec::decode`](crate::Codec::decode) and
    /// [`ZmqOptions::with_shared_memory_copy_on_read`](crate::ZmqOptions::with_shared_memory_copy_on_read)).
    pub fn get_bytes(&self, key: &Key) -> Result<Option<Bytes>> {
        let started = self.start();
        let bytes = self
            .inner
            .connector
            .get(key)
            .map_err(self.context(Some(key)))?;
        let len = bytes.as_ref().map(Bytes::len);
        tracing::debug!(store = %self.inner.name, %key, bytes = ?len, "get bytes");
        self.record_keys(
            Op::Get,
            std::slice::from_ref(key),
            len.unwrap_or(0),
            started,
        );
        Ok(bytes)
    }

    /// Encodes `obj` with the default codec and stores it.
    pub fn put<T>(&self, obj: &T) -> Result<Key>
    where
        Dc: Codec<T>,
    {
        self.put_with::<T, Dc>(obj)
    }

    /// Encodes `obj` with codec `C` and stores it.
    pub fn put_with<T, C: Codec<T>>(&self, obj: &T) -> Result<Key> {
        let started = self.start();
        self.put_encoded(started, C::encode(obj))
    }

    pub(crate) fn put_owned<T, C: Codec<T>>(&self, obj: T) -> Result<Key> {
        let started = self.start();
        self.put_encoded(started, C::encode_owned(obj))
    }

    /// Stores what a codec produced, counting the time since `started` (codec included).
    fn put_encoded(&self, started: Option<Instant>, encoded: Result<Bytes>) -> Result<Key> {
        let bytes = encoded.map_err(self.context(None))?;
        let len = bytes.len();
        let key = self
            .inner
            .connector
            .put(bytes)
            .map_err(self.context(None))?;
        tracing::debug!(store = %self.inner.name, %key, bytes = len, "put");
        self.record_keys(Op::Put, std::slice::from_ref(&key), len, started);
        Ok(key)
    }

    /// The object under `key`, decoded with the default codec; `None` if it is not stored.
    ///
    /// A cached object is returned without touching the connector.
    pub fn get<T>(&self, key: &Key) -> Result<Option<Arc<T>>>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        self.get_with::<T, Dc>(key)
    }

    /// The object under `key`, decoded with codec `C`.
    pub fn get_with<T, C>(&self, key: &Key) -> Result<Option<Arc<T>>>
    where
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        if let Some(hit) = self.cached::<T>(key) {
            tracing::debug!(store = %self.inner.name, %key, "get: cached");
            return Ok(Some(hit));
        }
        let started = self.start();
        let epoch = cache::epoch(key);
        let Some(bytes) = self
            .inner
            .connector
            .get(key)
            .map_err(self.context(Some(key)))?
        else {
            tracing::debug!(store = %self.inner.name, %key, "get: not found");
            self.record_keys(Op::Get, std::slice::from_ref(key), 0, started);
            return Ok(None);
        };
        let len = bytes.len();
        tracing::debug!(store = %self.inner.name, %key, bytes = len, "get");
        let value = Arc::new(C::decode(bytes).map_err(self.context(Some(key)))?);
        self.record_keys(Op::Get, std::slice::from_ref(key), len, started);
        self.cache_unless_evicted(epoch, key, &value);
        Ok(Some(value))
    }

    /// Several objects at once, decoded with the store's codec: one
    /// [`Connector::get_batch`] for those not cached; `None` for those not stored.
    pub fn get_batch<T>(&self, keys: &[Key]) -> Result<Vec<Option<Arc<T>>>>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        self.get_batch_with::<T, Dc>(keys)
    }

    /// Like [`get_batch`](Store::get_batch), with codec `C`.
    pub fn get_batch_with<T, C>(&self, keys: &[Key]) -> Result<Vec<Option<Arc<T>>>>
    where
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        let mut out: Vec<Option<Arc<T>>> = keys.iter().map(|k| self.cached::<T>(k)).collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let started = self.start();
        let epochs: Vec<u64> = missing.iter().map(|&i| cache::epoch(&keys[i])).collect();
        let asked: Vec<Key> = missing.iter().map(|&i| keys[i].clone()).collect();
        let fetched = self
            .inner
            .connector
            .get_batch(&asked)
            .map_err(self.context(asked.first()))?;
        let mut total = 0;
        for ((i, epoch), bytes) in missing.into_iter().zip(epochs).zip(fetched) {
            if let Some(bytes) = bytes {
                total += bytes.len();
                let value = Arc::new(C::decode(bytes).map_err(self.context(Some(&keys[i])))?);
                self.cache_unless_evicted(epoch, &keys[i], &value);
                out[i] = Some(value);
            }
        }
        tracing::debug!(store = %self.inner.name, objects = asked.len(), bytes = total, "get batch");
        self.record_keys(Op::Get, &asked, total, started);
        Ok(out)
    }

    /// Caches `value` unless an eviction happened since `epoch` (it may have evicted this
    /// very object after we read it, and the cache must not bring it back).
    fn cache_unless_evicted<T: Send + Sync + 'static>(
        &self,
        epoch: u64,
        key: &Key,
        value: &Arc<T>,
    ) {
        self.inner
            .cache
            .insert_unless_invalidated(epoch, key, value);
    }

    fn cached<T: Send + Sync + 'static>(&self, key: &Key) -> Option<Arc<T>> {
        let hit = self.inner.cache.get::<T>(key);
        if let Some(metrics) = &self.inner.metrics {
            metrics.cache(key, hit.is_some());
        }
        hit
    }

    /// Whether an object is stored under `key` (a cached object counts as stored).
    pub fn exists(&self, key: &Key) -> Result<bool> {
        if self.inner.cache.contains(key) {
            if let Some(metrics) = &self.inner.metrics {
                metrics.exists_cached(key);
            }
            return Ok(true);
        }
        let started = self.start();
        let found = self
            .inner
            .connector
            .exists(key)
            .map_err(self.context(Some(key)))?;
        self.record_keys(Op::Exists, std::slice::from_ref(key), 0, started);
        Ok(found)
    }

    /// Removes the object from the connector and from every cache of this process: this
    /// store's, and those of other stores over the same objects (a store rebuilt from a
    /// proxy's config, a clone registered under the same name), so no store of this process
    /// serves or reports it afterwards.
    pub fn evict(&self, key: &Key) -> Result<()> {
        let started = self.start();
        cache::invalidate(key);
        self.inner
            .connector
            .evict(key)
            .map_err(self.context(Some(key)))?;
        tracing::debug!(store = %self.inner.name, %key, "evict");
        self.record_keys(Op::Evict, std::slice::from_ref(key), 0, started);
        Ok(())
    }

    /// Drops the decoded object under `key` from every cache of this process, without
    /// evicting it from the connector. Consumers call it when they are done with an object
    /// that another process will evict, so that this process does not keep serving it.
    pub fn drop_cached(&self, key: &Key) {
        cache::invalidate(key);
    }

    /// Whether the decoded object under `key` is in this store's cache.
    pub fn is_cached(&self, key: &Key) -> bool {
        self.inner.cache.contains(key)
    }

    /// Encodes several objects with the store's codec and stores them with one
    /// [`Connector::put_batch`]; the keys come back in the same order.
    pub fn put_batch<T>(&self, objs: &[T]) -> Result<Vec<Key>>
    where
        Dc: Codec<T>,
    {
        self.put_batch_with::<T, Dc>(objs)
    }

    /// Like [`put_batch`](Store::put_batch), with codec `C`.
    pub fn put_batch_with<T, C: Codec<T>>(&self, objs: &[T]) -> Result<Vec<Key>> {
        let started = self.start();
        let encoded = objs
            .iter()
            .map(|o| C::encode(o))
            .collect::<Result<Vec<Bytes>>>()
            .map_err(self.context(None))?;
        let len = encoded.iter().map(Bytes::len).sum();
        let keys = self
            .inner
            .connector
            .put_batch(encoded)
            .map_err(self.context(None))?;
        tracing::debug!(store = %self.inner.name, objects = keys.len(), bytes = len, "put batch");
        self.record_keys(Op::Put, &keys, len, started);
        Ok(keys)
    }

    /// Stores what a codec produced under a reserved `key` (a future's value).
    pub(crate) fn put_encoded_at(&self, key: &Key, encoded: Result<Bytes>) -> Result<()> {
        let started = self.start();
        let bytes = encoded.map_err(self.context(Some(key)))?;
        let len = bytes.len();
        self.inner
            .connector
            .put_at(key, bytes)
            .map_err(self.context(Some(key)))?;
        tracing::debug!(store = %self.inner.name, %key, bytes = len, "set future");
        self.record_keys(Op::Put, std::slice::from_ref(key), len, started);
        Ok(())
    }

    /// Evicts the objects attached to the [`StaticLifetime`](crate::StaticLifetime) through
    /// this store, closes the connector, empties the cache, and unregisters the store from the
    /// process-wide [`Registry`](crate::Registry) if it is the store registered under its
    /// name. A failed eviction does not stop the rest; the first error is returned.
    pub fn close(&self) -> Result<()> {
        // The layers built on the store (lifetimes, the registry) said what they do when a
        // store closes: the store itself imports none of them.
        let mut first_error = Ok(());
        for hook in close_hooks() {
            let done = hook(&self.erased());
            if first_error.is_ok() {
                first_error = done;
            }
        }
        self.inner.cache.clear();
        let closed = self.inner.connector.close().map_err(self.context(None));
        first_error.and(closed)
    }

    /// The store's counters, if it was built with [`with_metrics(true)`](StoreBuilder::with_metrics).
    pub fn metrics(&self) -> Option<MetricsSnapshot> {
        self.inner.metrics.as_ref().map(Metrics::snapshot)
    }
}
