//! `Store` calls that store an object and attach it to a lifetime in one step.

use super::Lifetime;
use crate::codec::Codec;
use crate::error::Result;
use crate::future::StoreFuture;
use crate::key::Key;
use crate::proxy::Proxy;
use crate::store::Store;

impl<Dc: 'static> Store<Dc> {
    /// Encodes `obj` with the store's codec, stores it, and attaches it to `lifetime`: it is
    /// evicted when the lifetime ends (ProxyStore's `put(obj, lifetime=...)`). If the lifetime
    /// has already ended, the object is evicted again and
    /// [`Error::LifetimeClosed`](crate::Error::LifetimeClosed) returned.
    ///
    /// ```
    /// use proxy_core::{ContextLifetime, LocalConnector, Store};
    ///
    /// let store = Store::new("put-in-doc", LocalConnector::new());
    /// let scope = ContextLifetime::new();
    /// let key = store.put_in(&vec![1u16, 2, 3], &scope)?;
    /// assert_eq!(*store.get::<Vec<u16>>(&key)?.unwrap(), vec![1, 2, 3]);
    /// drop(scope);
    /// assert!(!store.exists(&key)?);
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    pub fn put_in<T>(&self, obj: &T, lifetime: &dyn Lifetime) -> Result<Key>
    where
        Dc: Codec<T>,
    {
        self.put_in_with::<T, Dc>(obj, lifetime)
    }

    /// Like [`put_in`](Store::put_in), with codec `C`.
    pub fn put_in_with<T, C: Codec<T>>(&self, obj: &T, lifetime: &dyn Lifetime) -> Result<Key> {
        let key = self.put_with::<T, C>(obj)?;
        self.attach(&key, lifetime)?;
        Ok(key)
    }

    /// Stores `obj`, attached to `lifetime`, and returns a proxy to it (resolved unless the
    /// store was built [`with_populate_target(false)`](crate::StoreBuilder::with_populate_target),
    /// as [`proxy`](Store::proxy)). A copy of the proxy that resolves after the lifetime
    /// ended fails with [`Error::NotFound`](crate::Error::NotFound).
    pub fn proxy_in<T>(&self, obj: T, lifetime: &dyn Lifetime) -> Result<Proxy<T, Dc>>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        self.proxy_in_with::<T, Dc>(obj, lifetime)
    }

    /// Like [`proxy_in`](Store::proxy_in), with codec `C`.
    pub fn proxy_in_with<T, C>(&self, obj: T, lifetime: &dyn Lifetime) -> Result<Proxy<T, C>>
    where
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        let proxy = self.proxy_with::<T, C>(obj)?;
        self.attach(Proxy::key(&proxy), lifetime)?;
        Ok(proxy)
    }

    /// Stores several objects with one batched put, attaches them all to `lifetime`, and
    /// returns their proxies (as [`proxy_batch`](Store::proxy_batch)). If the lifetime has
    /// ended, every object is evicted again and the error returned.
    ///
    /// ```
    /// use proxy_core::{LeaseLifetime, Lifetime, LocalConnector, Proxy, Store};
    /// use std::time::Duration;
    ///
    /// let store = Store::new("proxy-batch-in-doc", LocalConnector::new());
    /// let lease = LeaseLifetime::new(Duration::from_secs(60));
    /// let proxies = store.proxy_batch_in(vec![vec![1u8; 4], vec![2u8; 8]], &lease)?;
    /// assert_eq!(lease.len(), 2);
    /// lease.close()?; // before the minute is up
    /// assert!(!store.exists(Proxy::key(&proxies[0]))?);
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    pub fn proxy_batch_in<T>(
        &self,
        objs: Vec<T>,
        lifetime: &dyn Lifetime,
    ) -> Result<Vec<Proxy<T, Dc>>>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        self.proxy_batch_in_with::<T, Dc>(objs, lifetime)
    }

    /// Like [`proxy_batch_in`](Store::proxy_batch_in), with codec `C`.
    pub fn proxy_batch_in_with<T, C>(
        &self,
        objs: Vec<T>,
        lifetime: &dyn Lifetime,
    ) -> Result<Vec<Proxy<T, C>>>
    where
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        let proxies = self.proxy_batch_with::<T, C>(objs)?;
        let keys: Vec<Key> = proxies.iter().map(|p| Proxy::key(p).clone()).collect();
        self.attach_all(&keys, lifetime)?;
        Ok(proxies)
    }

    /// A [future](Store::future) whose key is attached to `lifetime`: its value (set or not)
    /// is evicted when the lifetime ends, so a future nobody sets or reads leaks no longer
    /// than the lifetime.
    pub fn future_in<T>(&self, lifetime: &dyn Lifetime) -> Result<StoreFuture<T, Dc>>
    where
        Dc: Codec<T>,
    {
        self.future_in_with::<T, Dc>(lifetime)
    }

    /// Like [`future_in`](Store::future_in), with codec `C`.
    pub fn future_in_with<T, C: Codec<T>>(
        &self,
        lifetime: &dyn Lifetime,
    ) -> Result<StoreFuture<T, C>> {
        let future = self.future_with::<T, C>()?;
        self.attach(future.key(), lifetime)?;
        Ok(future)
    }

    /// Attaches a just-stored object to `lifetime`, or evicts it if the lifetime has ended
    /// (so that a failed call leaves nothing behind).
    fn attach(&self, key: &Key, lifetime: &dyn Lifetime) -> Result<()> {
        self.attach_all(std::slice::from_ref(key), lifetime)
    }

    /// [`attach`](Self::attach) for several objects at once.
    fn attach_all(&self, keys: &[Key], lifetime: &dyn Lifetime) -> Result<()> {
        let attached = lifetime.add_keys(&self.erased(), keys);
        if let Err(error) = attached {
            for key in keys {
                if let Err(evict) = self.evict(key) {
                    tracing::warn!(
                        lifetime = %lifetime.name(),
                        %key,
                        error = %evict,
                        "could not evict an object stored for a lifetime that had ended: it leaks"
                    );
                }
            }
            return Err(error);
        }
        Ok(())
    }
}
