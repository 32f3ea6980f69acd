//! Futures: proxies to values that do not exist yet (ProxyStore's `Store.future`).
//!
//! [`Store::future`] reserves a key ([`Connector::new_key`](crate::Connector::new_key)(crate::Connector::new_key)) and
//! returns a [`StoreFuture`]: a setter and a source of proxies. The proxies can be sent
//! anywhere (serialized, through a dataflow) before the value is set; resolving one polls
//! the store with backoff ([`Polling`]) until the value appears or the timeout runs out
//! ([`Error::NotSet`](crate::Error::NotSet), naming the store and the key). The value is set once: a second `set`,
//! here or in another process, fails with [`Error::KeyTaken`](crate::Error::KeyTaken) and leaves the first value.
//!
//! ```
//! use std::time::Duration;
//! use proxy_core::{LocalConnector, Polling, Proxy, Store};
//!
//! let store = Store::new("future-doc", LocalConnector::new());
//! let future = store.future::<Vec<u32>>()?;
//! let proxy: Proxy<Vec<u32>> = future.proxy();
//!
//! let consumer = std::thread::spawn(move || proxy.iter().sum::<u32>()); // waits for the value
//! future.set(&vec![1, 2, 3])?;
//! assert_eq!(consumer.join().unwrap(), 6);
//! assert!(future.set(&vec![4]).unwrap_err().is_already_exists()); // set once only
//!
//! // An unset future times out with an error naming the store and the key.
//! let never = store
//!     .future::<u8>()?
//!     .with_polling(Polling::default().with_timeout(Some(Duration::from_millis(20))));
//! let err = Proxy::resolve(&never.proxy()).unwrap_err();
//! assert!(err.is_timeout());
//! # Ok::<(), proxy_core::Error>(())
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Codec, DefaultCodec};
use crate::error::Result;
use crate::key::Key;
use crate::proxy::Proxy;
use crate::registry::Registry;
use crate::store::{Store, StoreConfig};

pub use crate::polling::Polling;

/// A value to be set later, and the proxies that stand for it meanwhile (ProxyStore's
/// `Store.future`): see the [module docs](crate::future) and [`Store::future`].
///
/// A `StoreFuture` is `Clone`, `Send` and `Sync`, and serializes like a proxy (store config,
/// key, polling policy; never the value), so the setter can be handed to another thread or
/// process: whoever sets it first wins, every later `set` fails with [`Error::KeyTaken`](crate::Error::KeyTaken).
pub struct StoreFuture<T, C = DefaultCodec> {
    config: Arc<StoreConfig>,
    key: Key,
    polling: Polling,
    evict_on_read: bool,
    store: Option<Store>,
    value: PhantomData<fn() -> (T, C)>,
}

impl<T, C> Clone for StoreFuture<T, C> {
    fn clone(&self) -> Self {
        StoreFuture {
            config: Arc::clone(&self.config),
            key: self.key.clone(),
            polling: self.polling,
            evict_on_read: self.evict_on_read,
            store: self.store.clone(),
            value: PhantomData,
        }
    }
}

impl<T, C> fmt::Debug for StoreFuture<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreFuture")
            .field("store", &self.config.name)
            .field("key", &self.key)
            .field("polling", &self.polling)
            .field("evict_on_read", &self.evict_on_read)
            .finish()
    }
}

impl<T, C> StoreFuture<T, C> {
    pub(crate) fn new(store: Store, key: Key) -> Self {
        StoreFuture {
            config: Arc::clone(store.shared_config()),
            key,
            polling: Polling::default(),
            evict_on_read: false,
            store: Some(store),
            value: PhantomData,
        }
    }

    /// This future with another polling policy for the proxies it makes from now on.
    #[must_use]
    pub fn with_polling(mut self, polling: Polling) -> Self {
        self.polling = polling;
        self
    }

    /// This future with proxies (made from now on) whose value is evicted right after the
    /// first successful resolve of any of them, in whichever process (ProxyStore's
    /// `store.future(evict=True)`; see [`Store::proxy_evict_on_read`]). Later resolves of
    /// other proxies fail with [`Error::NotFound`](crate::Error::NotFound), or, being
    /// proxies of a future, wait until their polling timeout ([`Error::NotSet`](crate::Error::NotSet)).
    ///
    /// ```
    /// use proxy_core::{LocalConnector, Store};
    ///
    /// let store = Store::new("future-evict-doc", LocalConnector::new());
    /// let future = store.future::<String>()?.with_evict_on_read(true);
    /// let proxy = future.proxy();
    /// future.set(&"once".to_string())?;
    /// assert_eq!(proxy.as_str(), "once"); // resolves, then evicts
    /// assert!(!future.done()?);
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    #[must_use]
    pub fn with_evict_on_read(mut self, evict: bool) -> Self {
        self.evict_on_read = evict;
        self
    }

    /// Whether the proxies this future makes evict the value after their first resolve.
    pub fn evicts_on_read(&self) -> bool {
        self.evict_on_read
    }

    /// The polling policy of the proxies this future makes.
    pub fn polling(&self) -> &Polling {
        &self.polling
    }

    /// The key the value will be stored under.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The store's name.
    pub fn store_name(&self) -> &str {
        &self.config.name
    }

    /// The store: the one that made the future, or (after deserializing) the one registered
    /// under its name, rebuilt from its config if needed.
    pub fn store(&self) -> Result<Store> {
        match &self.store {
            Some(store) => Ok(store.clone()),
            None => Registry::global().get_or_rebuild(&self.config),
        }
    }

    /// A proxy to the value. It can be used, cloned and sent at once; its first use waits
    /// for the value as the polling policy says.
    pub fn proxy(&self) -> Proxy<T, C> {
        Proxy::future(
            Arc::clone(&self.config),
            self.key.clone(),
            self.store.clone(),
            self.polling,
            self.evict_on_read,
        )
    }

    /// Whether the value has been set (and not evicted since).
    pub fn done(&self) -> Result<bool> {
        self.store()?.exists(&self.key)
    }
}

impl<T, C: Codec<T>> StoreFuture<T, C> {
    /// Sets the value: encodes it with codec `C` and stores it under the future's key.
    /// Fails with [`Error::KeyTaken`](crate::Error::KeyTaken) if it was set before (here or in another process).
    pub fn set(&self, value: &T) -> Result<()> {
        self.store()?.put_encoded_at(&self.key, C::encode(value))
    }

    /// Like [`set`](StoreFuture::set), moving the value into the codec (no copy of a
    /// `Vec<u8>` with the default codec).
    pub fn set_owned(&self, value: T) -> Result<()> {
        self.store()?
            .put_encoded_at(&self.key, C::encode_owned(value))
    }
}

impl<T, C> StoreFuture<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    /// Waits for the value as the polling policy says and returns it.
    pub fn wait(&self) -> Result<Arc<T>> {
        Proxy::get(&self.proxy())
    }
}

#[derive(Serialize)]
struct FutureRef<'a> {
    store: &'a StoreConfig,
    key: &'a Key,
    polling: &'a Polling,
    evict_on_read: bool,
}

#[derive(Deserialize)]
struct FutureFactory {
    store: StoreConfig,
    key: Key,
    polling: Polling,
    #[serde(default)]
    evict_on_read: bool,
}

impl<T, C> Serialize for StoreFuture<T, C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        FutureRef {
            store: &self.config,
            key: &self.key,
            polling: &self.polling,
            evict_on_read: self.evict_on_read,
        }
        .serialize(serializer)
    }
}

impl<'de, T, C> Deserialize<'de> for StoreFuture<T, C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let factory = FutureFactory::deserialize(deserializer)?;
        Ok(StoreFuture {
            config: Arc::new(factory.store),
            key: factory.key,
            polling: factory.polling,
            evict_on_read: factory.evict_on_read,
            store: None,
            value: PhantomData,
        })
    }
}

/// Futures, made by a store.
impl<Dc: 'static> Store<Dc> {
    /// A future: a key reserved now for a value set later, and proxies to that value that
    /// can be sent before it exists (ProxyStore's `Store.future`). See [`StoreFuture`].
    ///
    /// The connector must support reserved keys ([`Connector::new_key`](crate::Connector::new_key)); every connector
    /// of this crate does. A connector built to store on a remote peer reserves the key
    /// there.
    pub fn future<T>(&self) -> Result<StoreFuture<T, Dc>>
    where
        Dc: Codec<T>,
    {
        self.future_with::<T, Dc>()
    }

    /// Like [`future`](Store::future), with codec `C`.
    ///
    /// With [metrics](crate::StoreBuilder::with_metrics) on, the reservation is counted as
    /// a `future` operation, store-wide and for the future's key
    /// ([`KeyMetrics::future`](crate::KeyMetrics::future)); setting the value counts as the
    /// key's put.
    pub fn future_with<T, C: Codec<T>>(&self) -> Result<StoreFuture<T, C>> {
        let started = self.start();
        let key = self.connector().new_key().map_err(self.context(None))?;
        tracing::debug!(store = %self.name(), %key, "future");
        self.record_future(&key, started);
        Ok(StoreFuture::new(self.erased(), key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::error::Error;

    #[test]
    fn sleeps_grow_by_the_backoff_up_to_the_limit() {
        let polling = Polling::default()
            .with_interval(Duration::from_millis(2))
            .with_backoff(3.0)
            .with_max_interval(Duration::from_millis(20));
        let sleeps: Vec<u128> = polling.sleeps().take(4).map(|d| d.as_millis()).collect();
        assert_eq!(sleeps, vec![2, 6, 18, 20]);
    }

    #[test]
    fn hostile_policies_are_clamped() {
        for backoff in [f64::NAN, -1.0, 0.5, f64::INFINITY] {
            let polling = Polling::default()
                .with_interval(Duration::ZERO)
                .with_backoff(backoff)
                .with_max_interval(Duration::ZERO);
            let sleeps: Vec<Duration> = polling.sleeps().take(3).collect();
            assert!(
                sleeps.iter().all(|d| *d == Duration::from_micros(1)),
                "{backoff}: {sleeps:?}"
            );
        }
    }

    #[test]
    fn wait_stops_at_the_timeout_and_says_how_long_it_waited() {
        let polling = Polling::default().with_timeout(Some(Duration::from_millis(10)));
        let mut checks = 0;
        let outcome = polling
            .wait(|| {
                checks += 1;
                Ok(None::<()>)
            })
            .expect("no error");
        let waited = outcome.expect_err("never found");
        assert!(waited >= Duration::from_millis(10));
        assert!(checks >= 2, "checked {checks} times");
    }

    #[test]
    fn wait_returns_as_soon_as_the_value_is_there() {
        let mut checks = 0;
        let outcome = Polling::default().wait(|| {
            checks += 1;
            Ok((checks == 3).then_some(7))
        });
        assert_eq!(outcome.expect("no error"), Ok(7));
    }

    #[test]
    fn errors_of_a_check_end_the_wait() {
        let outcome = Polling::default().wait(|| -> Result<Option<()>> {
            Err(Error::Config {
                what: "test".to_string(),
                message: "boom".to_string(),
            })
        });
        assert!(outcome.is_err());
    }
}
