//! `Proxy<T>`: a lazy, transparent reference to a stored object.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Codec, DefaultCodec};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::polling::Polling;
use crate::registry::Registry;
use crate::store::{Store, StoreConfig};

/// The most proxies one background job fetches with a single batched get.
const PREFETCH_CHUNK: usize = 16;

/// A lazy reference to an object of type `T` in a [`Store`], decoded with codec `C`.
///
/// A proxy [`Deref`]s to `T`: the first use fetches and decodes the object, later uses are
/// free. Clones share one slot, so concurrent first uses of clones fetch once. Serializing a
/// proxy writes only its *factory* (the store's [`StoreConfig`] and the [`Key`]): a few
/// dozen bytes whatever the size of `T`. A proxy deserialized in another process finds its
/// store in that process's [`Registry`] by name, or rebuilds it from the config and
/// registers it.
///
/// The proxy's own operations are associated functions (`Proxy::resolve(&p)`), so they never
/// shadow methods of `T`.
///
/// ```
/// use proxy_core::{LocalConnector, Proxy, Store};
///
/// let store = Store::new("proxy-doc", LocalConnector::new());
/// let key = store.put(&vec![1u32, 2, 3])?;
///
/// let proxy: Proxy<Vec<u32>> = store.proxy_from_key(key);
/// assert!(!Proxy::is_resolved(&proxy));
/// assert_eq!(proxy.iter().sum::<u32>(), 6); // resolves here
/// assert!(Proxy::is_resolved(&proxy));
///
/// let copy = proxy.clone();
/// let values: Vec<u32> = Proxy::extract(copy)?;
/// assert_eq!(values, vec![1, 2, 3]);
/// # Ok::<(), proxy_core::Error>(())
/// ```
///
/// # Panics
///
/// `Deref` cannot return an error: if the object cannot be fetched (evicted, peer down,
/// decode failure) it panics with a message naming the store, the key and the cause. Call
/// [`Proxy::resolve`] first to handle that case as an error value.
pub struct Proxy<T, C = DefaultCodec> {
    inner: Arc<Inner<T>>,
    codec: PhantomData<fn() -> C>,
}

struct Inner<T> {
    config: Arc<StoreConfig>,
    key: Key,
    /// Evict the object right after the first successful resolve (ProxyStore's `evict=True`).
    evict_on_read: bool,
    /// For the proxy of a [future](crate::StoreFuture): wait for the value this way when it
    /// is not stored yet, instead of failing with `NotFound`.
    polling: Option<Polling>,
    store: OnceLock<Store>,
    value: OnceLock<Arc<T>>,
    /// Held while fetching, so that clones resolving at once fetch only once. Holds why a
    /// background fetch of this object failed, which the next use reports (once) instead
    /// of fetching again.
    fetching: Mutex<Option<Arc<Error>>>,
}

impl<T> Inner<T> {
    fn lock_fetch(&self) -> MutexGuard<'_, Option<Arc<Error>>> {
        self.fetching
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T, C> Clone for Proxy<T, C> {
    fn clone(&self) -> Self {
        Proxy {
            inner: Arc::clone(&self.inner),
            codec: PhantomData,
        }
    }
}

impl<T, C> fmt::Debug for Proxy<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("store", &self.inner.config.name)
            .field("key", &self.inner.key)
            .field("resolved", &self.inner.value.get().is_some())
            .finish()
    }
}

impl<T, C> Proxy<T, C> {
    fn build(
        config: Arc<StoreConfig>,
        key: Key,
        store: Option<Store>,
        value: Option<Arc<T>>,
        evict_on_read: bool,
        polling: Option<Polling>,
    ) -> Self {
        let inner = Inner {
            config,
            key,
            evict_on_read,
            polling,
            store: OnceLock::new(),
            value: OnceLock::new(),
            fetching: Mutex::new(None),
        };
        if let Some(store) = store {
            let _ = inner.store.set(store);
        }
        if let Some(value) = value {
            let _ = inner.value.set(value);
        }
        Proxy {
            inner: Arc::new(inner),
            codec: PhantomData,
        }
    }

    pub(crate) fn resolved(store: Store, key: Key, value: Arc<T>) -> Self {
        let config = Arc::clone(store.shared_config());
        Self::build(config, key, Some(store), Some(value), false, None)
    }

    pub(crate) fn from_store(store: Store, key: Key) -> Self {
        let config = Arc::clone(store.shared_config());
        Self::build(config, key, Some(store), None, false, None)
    }

    /// An unresolved proxy whose object is evicted after its first successful resolve.
    pub(crate) fn evicting_on_read(store: Store, key: Key) -> Self {
        let config = Arc::clone(store.shared_config());
        Self::build(config, key, Some(store), None, true, None)
    }

    /// The proxy of a future: unresolved, waiting for the value as `polling` says.
    pub(crate) fn future(
        config: Arc<StoreConfig>,
        key: Key,
        store: Option<Store>,
        polling: Polling,
        evict_on_read: bool,
    ) -> Self {
        Self::build(config, key, store, None, evict_on_read, Some(polling))
    }

    /// Whether this is the proxy of a [future](crate::StoreFuture): its first use waits for
    /// the value to be set.
    pub fn is_future(this: &Self) -> bool {
        this.inner.polling.is_some()
    }

    /// Whether the object is evicted right after the first successful resolve of this
    /// proxy (or of any copy of it): see [`Store::proxy_evict_on_read`].
    pub fn evicts_on_read(this: &Self) -> bool {
        this.inner.evict_on_read
    }

    /// The key of the object this proxy stands for.
    pub fn key(this: &Self) -> &Key {
        &this.inner.key
    }

    /// The name of the store holding the object.
    pub fn store_name(this: &Self) -> &str {
        &this.inner.config.name
    }

    /// Whether the object has been fetched (or was never stored away from this proxy).
    pub fn is_resolved(this: &Self) -> bool {
        this.inner.value.get().is_some()
    }

    /// The store holding the object: the one the proxy was made by, or (for a deserialized
    /// proxy) the one registered under the store's name, rebuilt from its config if needed.
    pub fn store(this: &Self) -> Result<Store> {
        if let Some(store) = this.inner.store.get() {
            return Ok(store.clone());
        }
        let store = Registry::global().get_or_rebuild(&this.inner.config)?;
        Ok(this.inner.store.get_or_init(|| store).clone())
    }
}

impl<T, C> Proxy<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    fn value(&self) -> Result<&Arc<T>> {
        if let Some(value) = self.inner.value.get() {
            return Ok(value);
        }
        let mut fetching = self.inner.lock_fetch();
        if let Some(value) = self.inner.value.get() {
            return Ok(value);
        }
        if let Some(failure) = fetching.take() {
            return Err(Error::Prefetch {
                key: self.inner.key.clone(),
                source: failure,
            });
        }
        let store = Self::store(self)?;
        let key = &self.inner.key;
        tracing::debug!(store = %store.name(), %key, "resolve");
        let value = self.fetch(&store, || store.get_with::<T, C>(key))?;
        self.evict_if_read_once(&store)?;
        Ok(self.inner.value.get_or_init(|| value))
    }

    /// Fetches and decodes the object now, if not done yet; errors are returned, not panicked.
    pub fn resolve(this: &Self) -> Result<()> {
        this.value().map(|_| ())
    }

    /// A shared handle to the resolved object.
    pub fn get(this: &Self) -> Result<Arc<T>> {
        this.value().cloned()
    }

    /// Starts fetching the object on a background thread and returns at once. The next use
    /// waits only for what is left of the fetch. Errors surface at that use.
    pub fn resolve_async(this: &Self) {
        if Self::is_resolved(this) {
            return;
        }
        let proxy = this.clone();
        crate::background::spawn(move || {
            let _ = Proxy::resolve(&proxy);
        });
    }

    /// Starts fetching all unresolved `proxies` in the background, spread over the fetch
    /// threads in batched gets of up to 16 objects (one
    /// [`Connector::get_batch`](crate::Connector::get_batch) each), so the fetches overlap
    /// each other and whatever the caller does meanwhile.
    pub fn resolve_all_async<'a>(proxies: impl IntoIterator<Item = &'a Self>)
    where
        Self: 'a,
    {
        Self::prefetch(proxies, None);
    }

    /// Like [`resolve_all_async`](Proxy::resolve_all_async), returning a [`Prefetch`] handle
    /// that tells when every background fetch has finished (successfully or not), and calling
    /// `notify` (if given) from the fetch thread each time a batch finishes.
    pub fn prefetch<'a>(
        proxies: impl IntoIterator<Item = &'a Self>,
        notify: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> Prefetch
    where
        Self: 'a,
    {
        let pending: Vec<Self> = proxies
            .into_iter()
            .filter(|p| !Self::is_resolved(p))
            .cloned()
            .collect();
        let chunks: Vec<Vec<Self>> = pending
            .chunks(chunk_size(pending.len()))
            .map(<[Self]>::to_vec)
            .collect();
        let remaining = Arc::new(AtomicUsize::new(chunks.len()));
        for chunk in chunks {
            let remaining = Arc::clone(&remaining);
            let notify = notify.clone();
            crate::background::spawn(move || {
                // Count the batch as finished even if fetching it panics (a codec is user
                // code), so that `is_done` and `notify` never wait forever.
                let _finished = BatchFinished { remaining, notify };
                Self::fetch_chunk(&chunk);
                drop(chunk);
            });
        }
        Prefetch { remaining }
    }

    fn fetch_chunk(chunk: &[Self]) {
        // Hold each proxy's fetch lock for the whole batch, so a use that arrives meanwhile
        // waits for this fetch instead of starting its own.
        let mut locked: Vec<(&Self, MutexGuard<'_, Option<Arc<Error>>>)> = chunk
            .iter()
            .filter_map(|p| match p.inner.fetching.try_lock() {
                Ok(guard) => Some((p, guard)),
                // A fetch that panicked earlier poisoned the lock; it guards no data.
                Err(TryLockError::Poisoned(poisoned)) => Some((p, poisoned.into_inner())),
                Err(TryLockError::WouldBlock) => None,
            })
            .filter(|(p, _)| !Self::is_resolved(p))
            .collect();
        while let Some((first, _)) = locked.first() {
            let Ok(store) = Self::store(first) else {
                return; // each use will report the error itself
            };
            let (same, rest): (Vec<_>, Vec<_>) = locked
                .into_iter()
                .partition(|(p, _)| p.inner.config.name == store.name());
            locked = rest;
            let mut same = same;
            let keys: Vec<Key> = same.iter().map(|(p, _)| p.inner.key.clone()).collect();
            match store.get_batch_with::<T, C>(&keys) {
                Ok(values) => {
                    for ((proxy, _guard), value) in same.iter().zip(values) {
                        // An evict-on-read object that cannot be evicted stays unresolved:
                        // the use reports the error.
                        if let Some(value) = value {
                            if proxy.evict_if_read_once(&store).is_ok() {
                                let _ = proxy.inner.value.set(value);
                            }
                        }
                    }
                }
                Err(_) if same.len() > 1 => {
                    // One object (its owner silent, its bytes bad) fails the whole batch:
                    // fetch each on its own, so that the others still arrive. Objects of a
                    // peer that just timed out fail at once (the ZeroMQ connector's
                    // cool-down), so a dead peer costs one timeout, not one per object.
                    for (proxy, failure) in same.iter_mut() {
                        let fetched = store.get_with::<T, C>(&proxy.inner.key);
                        proxy.keep_prefetched(&store, fetched, failure);
                    }
                }
                Err(error) => {
                    if let Some((proxy, failure)) = same.first_mut() {
                        proxy.keep_prefetched(&store, Err(error), failure);
                    }
                }
            }
        }
    }

    /// Keeps what a background fetch of this proxy's object gave: the value, or the error
    /// for the next use to report. An object not stored (yet: a future's use polls for it)
    /// is left for the use to look up again.
    fn keep_prefetched(
        &self,
        store: &Store,
        fetched: Result<Option<Arc<T>>>,
        failure: &mut Option<Arc<Error>>,
    ) {
        match fetched {
            Ok(None) => {}
            Ok(Some(value)) => {
                if self.evict_if_read_once(store).is_ok() {
                    let _ = self.inner.value.set(value);
                }
            }
            Err(error) if error.is_not_found() || self.inner.polling.is_some() => {}
            Err(error) => *failure = Some(Arc::new(error)),
        }
    }

    /// The object by value. Takes it out of the proxy when this was the last handle to it;
    /// otherwise decodes a fresh copy from the store.
    pub fn extract(this: Self) -> Result<T> {
        let inner = match Arc::try_unwrap(this.inner) {
            Ok(inner) => inner,
            Err(shared) => {
                let proxy: Self = Proxy {
                    inner: shared,
                    codec: PhantomData,
                };
                return Self::fetch_fresh(&proxy);
            }
        };
        let proxy_key = inner.key.clone();
        let evict_on_read = inner.evict_on_read;
        let polling = inner.polling;
        let config = Arc::clone(&inner.config);
        let store = inner.store.into_inner();
        match inner.value.into_inner().map(Arc::try_unwrap) {
            Some(Ok(value)) => Ok(value),
            _ => {
                let proxy = Self::build(config, proxy_key, store, None, evict_on_read, polling);
                Self::fetch_fresh(&proxy)
            }
        }
    }

    fn fetch_fresh(this: &Self) -> Result<T> {
        let store = Self::store(this)?;
        let key = &this.inner.key;
        let bytes = this.fetch(&store, || store.get_bytes(key))?;
        let value = C::decode(bytes).map_err(|e| e.in_store(store.name(), Some(key)))?;
        this.evict_if_read_once(&store)?;
        Ok(value)
    }

    /// What `get` finds: at once, or for a future's proxy once the value is set (polling).
    /// A missing object is [`Error::NotFound`]; a future not set in time is
    /// [`Error::NotSet`].
    fn fetch<V>(&self, store: &Store, mut get: impl FnMut() -> Result<Option<V>>) -> Result<V> {
        let key = &self.inner.key;
        let found = match &self.inner.polling {
            None => get()?,
            Some(polling) => match polling.wait(get)? {
                Ok(value) => Some(value),
                Err(waited) => {
                    return Err(Error::NotSet {
                        store: store.name().to_string(),
                        key: key.clone(),
                        waited,
                    })
                }
            },
        };
        found.ok_or_else(|| Error::NotFound {
            store: store.name().to_string(),
            key: key.clone(),
        })
    }

    /// Evicts the object of an evict-on-read proxy after a successful read.
    fn evict_if_read_once(&self, store: &Store) -> Result<()> {
        if self.inner.evict_on_read {
            store.evict(&self.inner.key)?;
        }
        Ok(())
    }
}

impl<T, C> Deref for Proxy<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    type Target = T;

    fn deref(&self) -> &T {
        match self.value() {
            Ok(value) => value,
            Err(e) => panic!(
                "{}",
                resolve_failure(&self.inner.config.name, &self.inner.key, &e)
            ),
        }
    }
}

/// The message of a failed resolve: the store, the key and the cause, each stated once (the
/// cause's own store/key wrappers are looked through).
pub(crate) fn resolve_failure(store: &str, key: &Key, error: &Error) -> String {
    let prefix = format!("could not resolve proxy to {key} in store `{store}`");
    match error.root() {
        // Its own message repeats the store and the key.
        Error::NotFound { .. } => format!("{prefix}: object not found"),
        cause => format!("{prefix}: {cause}"),
    }
}

#[derive(Serialize)]
struct FactoryRef<'a> {
    store: &'a StoreConfig,
    key: &'a Key,
    evict_on_read: bool,
    polling: Option<&'a Polling>,
    /// Where the object lies, if this process knows ([`locations`](crate::locations)): a
    /// hint that lets a reader on the owner's host skip asking the owner.
    location: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Factory {
    store: StoreConfig,
    key: Key,
    evict_on_read: bool,
    polling: Option<Polling>,
    location: Option<Vec<u8>>,
}

impl<T, C> Serialize for Proxy<T, C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        FactoryRef {
            store: &self.inner.config,
            key: &self.inner.key,
            evict_on_read: self.inner.evict_on_read,
            polling: self.inner.polling.as_ref(),
            location: crate::locations::get(self.inner.key.id()),
        }
        .serialize(serializer)
    }
}

impl<'de, T, C> Deserialize<'de> for Proxy<T, C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let factory = Factory::deserialize(deserializer)?;
        if let Some(location) = &factory.location {
            crate::locations::record(factory.key.id(), location);
        }
        Ok(Self::build(
            Arc::new(factory.store),
            factory.key,
            None,
            None,
            factory.evict_on_read,
            factory.polling,
        ))
    }
}

impl<T, C> PartialEq for Proxy<T, C> {
    /// Two proxies are equal when they name the same object in the same store.
    fn eq(&self, other: &Self) -> bool {
        self.inner.key == other.inner.key && self.inner.config.name == other.inner.config.name
    }
}

impl<T, C> Eq for Proxy<T, C> {}

impl<T, C> std::hash::Hash for Proxy<T, C> {
    /// By key and store name, like `Eq`.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.key.hash(state);
        self.inner.config.name.hash(state);
    }
}

impl<T, C> PartialOrd for Proxy<T, C> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T, C> Ord for Proxy<T, C> {
    /// By key, then store name (consistent with `Eq`), never by value: sorting proxies (as
    /// timely's `capture`/`extract` does) fetches nothing.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.inner
            .key
            .cmp(&other.inner.key)
            .then_with(|| self.inner.config.name.cmp(&other.inner.config.name))
    }
}

/// Marks one prefetch batch finished when dropped, also when the fetch panicked.
struct BatchFinished {
    remaining: Arc<AtomicUsize>,
    notify: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Drop for BatchFinished {
    fn drop(&mut self) {
        self.remaining.fetch_sub(1, Ordering::AcqRel);
        if let Some(notify) = &self.notify {
            notify();
        }
    }
}

/// How many of `pending` proxies one background job fetches: the batch is spread over all
/// fetch threads (so large objects arrive in parallel and the first ones early), in batched
/// gets of at most [`PREFETCH_CHUNK`] (so many small objects share round trips).
fn chunk_size(pending: usize) -> usize {
    pending
        .div_ceil(crate::background::threads())
        .clamp(1, PREFETCH_CHUNK)
}

/// Tracks a background prefetch started by [`Proxy::prefetch`].
#[derive(Debug, Clone)]
pub struct Prefetch {
    remaining: Arc<AtomicUsize>,
}

impl Prefetch {
    /// Whether every batch of the prefetch has finished. A proxy that is still unresolved
    /// after that failed to fetch: resolving it reports why ([`Error::Prefetch`], once,
    /// without fetching again), or looks again for an object that was not stored.
    pub fn is_done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }
}

/// The ways a store hands out proxies (the store itself knows nothing of proxies).
impl<Dc: 'static> Store<Dc> {
    /// Stores `obj` and returns a proxy to it. By default the proxy starts resolved (it holds
    /// `obj`), so using it in this process costs nothing; serializing it writes only the key
    /// and the store's config, and a deserialized copy fetches the object on first use. A
    /// store built [`with_populate_target(false)`](crate::StoreBuilder::with_populate_target) returns
    /// an unresolved proxy instead (like [`proxy_lazy`](Store::proxy_lazy)).
    pub fn proxy<T>(&self, obj: T) -> Result<Proxy<T, Dc>>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        self.proxy_with::<T, Dc>(obj)
    }

    /// Like [`proxy`](Store::proxy), with codec `C`.
    pub fn proxy_with<T, C>(&self, obj: T) -> Result<Proxy<T, C>>
    where
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        if !self.populate_target() {
            let key = self.put_owned::<T, C>(obj)?;
            return Ok(Proxy::from_store(self.erased(), key));
        }
        // Encode from a shared reference so the proxy can keep the value itself. Byte
        // buffers (`Bytes`) are shared, not copied, by the default codec.
        let key = self.put_with::<T, C>(&obj)?;
        Ok(Proxy::resolved(self.erased(), key, Arc::new(obj)))
    }

    /// Stores `obj`, moving it into the codec (no copy for `Vec<u8>` with the default codec),
    /// and returns an unresolved proxy: the first use fetches the object back.
    pub fn proxy_lazy<T>(&self, obj: T) -> Result<Proxy<T, Dc>>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        self.proxy_lazy_with::<T, Dc>(obj)
    }

    /// Like [`proxy_lazy`](Store::proxy_lazy), with codec `C`.
    pub fn proxy_lazy_with<T, C>(&self, obj: T) -> Result<Proxy<T, C>>
    where
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        let key = self.put_owned::<T, C>(obj)?;
        Ok(Proxy::from_store(self.erased(), key))
    }

    /// Stores `obj` and returns an unresolved proxy whose object is evicted right after its
    /// first successful resolve, by this proxy or any copy of it, in this process or another
    /// (ProxyStore's `proxy(obj, evict=True)`). Later resolves of other copies fail with
    /// [`Error::NotFound`]; use it for objects read exactly once.
    ///
    /// ```
    /// use proxy_core::{LocalConnector, Proxy, Store};
    ///
    /// let store = Store::new("evict-on-read-doc", LocalConnector::new());
    /// let proxy = store.proxy_evict_on_read(vec![1u32, 2, 3])?;
    /// let key = Proxy::key(&proxy).clone();
    /// assert!(store.exists(&key)?);
    /// assert_eq!(proxy.len(), 3); // resolves, then evicts
    /// assert!(!store.exists(&key)?);
    /// assert_eq!(proxy[2], 3); // the resolved proxy keeps its value
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    pub fn proxy_evict_on_read<T>(&self, obj: T) -> Result<Proxy<T, Dc>>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        self.proxy_evict_on_read_with::<T, Dc>(obj)
    }

    /// Like [`proxy_evict_on_read`](Store::proxy_evict_on_read), with codec `C`.
    pub fn proxy_evict_on_read_with<T, C>(&self, obj: T) -> Result<Proxy<T, C>>
    where
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        let key = self.put_owned::<T, C>(obj)?;
        Ok(Proxy::<T, C>::evicting_on_read(self.erased(), key))
    }

    /// Stores several objects with one [`Connector::put_batch`](crate::Connector::put_batch) and returns their proxies
    /// (resolved unless the store was built
    /// [`with_populate_target(false)`](crate::StoreBuilder::with_populate_target)).
    pub fn proxy_batch<T>(&self, objs: Vec<T>) -> Result<Vec<Proxy<T, Dc>>>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        self.proxy_batch_with::<T, Dc>(objs)
    }

    /// Like [`proxy_batch`](Store::proxy_batch), with codec `C`.
    pub fn proxy_batch_with<T, C>(&self, objs: Vec<T>) -> Result<Vec<Proxy<T, C>>>
    where
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        let keys = self.put_batch_with::<T, C>(&objs)?;
        let populate = self.populate_target();
        Ok(keys
            .into_iter()
            .zip(objs)
            .map(|(key, obj)| {
                if populate {
                    Proxy::resolved(self.erased(), key, Arc::new(obj))
                } else {
                    Proxy::from_store(self.erased(), key)
                }
            })
            .collect())
    }

    /// Stores what was written into `buffer` (from [`alloc`](Store::alloc)) and returns a
    /// proxy to it, decoded with the store's codec on first use: `Proxy<Bytes>` (or
    /// `Proxy<Vec<u8>>`) with the default codec. The object is written once, where it is
    /// kept; a reader in this process gets the stored buffer itself, one on the same host
    /// maps it (see [`WriteBuffer`](crate::WriteBuffer)).
    pub fn proxy_buffer<T>(&self, buffer: crate::WriteBuffer) -> Result<Proxy<T, Dc>>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        let key = self.put_buffer(buffer)?;
        Ok(Proxy::from_store(self.erased(), key))
    }

    /// A proxy to an object already stored under `key` (nothing is fetched until first use).
    pub fn proxy_from_key<T>(&self, key: Key) -> Proxy<T, Dc>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        Proxy::from_store(self.erased(), key)
    }

    /// Like [`proxy_from_key`](Store::proxy_from_key), with codec `C`.
    pub fn proxy_from_key_with<T, C>(&self, key: Key) -> Proxy<T, C>
    where
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        Proxy::from_store(self.erased(), key)
    }
}
