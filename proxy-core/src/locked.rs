//! `LockedProxy<T>`: a proxy that cannot be resolved by accident (ProxyStore's
//! `ProxyLocker`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::DefaultCodec;
use crate::key::Key;
use crate::proxy::Proxy;

/// A [`Proxy`] behind a lock: it has no [`Deref`](std::ops::Deref) and no way to resolve, so
/// no method call, comparison, formatting or serialization can fetch the object by accident
/// while the proxy is handed through code that should not touch it (a dataflow that only
/// routes it, a queue, a log line). [`unlock`](LockedProxy::unlock) gives the proxy back
/// (ProxyStore's `ProxyLocker(proxy).unlock()`).
///
/// A locked proxy is `Clone`, `Send`, `Sync`, and serializes exactly as its proxy does (the
/// store's config and the key, never the value), so it can travel between threads, processes
/// and dataflow workers locked, and be unlocked where it is used. A proxy that was already
/// resolved stays resolved inside the lock.
///
/// ```
/// use proxy_core::{LocalConnector, LockedProxy, Proxy, Store};
///
/// let store = Store::builder("locked-doc", LocalConnector::new()).with_metrics(true).build();
/// let locked: LockedProxy<Vec<u32>> = Proxy::lock(store.proxy_lazy(vec![1, 2, 3])?);
///
/// // Passed around (cloned, serialized, deserialized): nothing is fetched.
/// let bytes = bincode::serialize(&locked).expect("serialize");
/// let travelled: LockedProxy<Vec<u32>> = bincode::deserialize(&bytes).expect("deserialize");
/// println!("{travelled:?}");
/// assert_eq!(store.metrics().unwrap().get.count, 0);
///
/// // Where the value is needed, unlock it.
/// let proxy = travelled.unlock();
/// assert_eq!(proxy.iter().sum::<u32>(), 6);
/// # Ok::<(), proxy_core::Error>(())
/// ```
///
/// Using the value without unlocking does not compile:
///
/// ```compile_fail
/// use proxy_core::{LocalConnector, Proxy, Store};
///
/// let store = Store::new("locked-doc-fail", LocalConnector::new());
/// let locked = Proxy::lock(store.proxy(vec![1u32, 2, 3]).unwrap());
/// let _ = locked.len(); // no Deref: a locked proxy is not a Vec
/// ```
pub struct LockedProxy<T, C = DefaultCodec> {
    proxy: Proxy<T, C>,
}

impl<T, C> LockedProxy<T, C> {
    /// Locks `proxy` (also [`Proxy::lock`]).
    pub fn new(proxy: Proxy<T, C>) -> Self {
        LockedProxy { proxy }
    }

    /// The proxy, which can resolve again.
    pub fn unlock(self) -> Proxy<T, C> {
        self.proxy
    }

    /// The key of the object behind the proxy.
    pub fn key(&self) -> &Key {
        Proxy::key(&self.proxy)
    }

    /// The name of the store holding the object.
    pub fn store_name(&self) -> &str {
        Proxy::store_name(&self.proxy)
    }

    /// Whether the proxy was resolved before it was locked.
    pub fn is_resolved(&self) -> bool {
        Proxy::is_resolved(&self.proxy)
    }
}

impl<T, C> Proxy<T, C> {
    /// Locks this proxy: see [`LockedProxy`].
    pub fn lock(this: Self) -> LockedProxy<T, C> {
        LockedProxy::new(this)
    }
}

impl<T, C> From<Proxy<T, C>> for LockedProxy<T, C> {
    fn from(proxy: Proxy<T, C>) -> Self {
        LockedProxy::new(proxy)
    }
}

impl<T, C> Clone for LockedProxy<T, C> {
    fn clone(&self) -> Self {
        LockedProxy {
            proxy: self.proxy.clone(),
        }
    }
}

impl<T, C> fmt::Debug for LockedProxy<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedProxy")
            .field("store", &self.store_name())
            .field("key", self.key())
            .finish()
    }
}

impl<T, C> PartialEq for LockedProxy<T, C> {
    /// By store and key, like [`Proxy`]'s: never by value.
    fn eq(&self, other: &Self) -> bool {
        self.proxy == other.proxy
    }
}

impl<T, C> Eq for LockedProxy<T, C> {}

impl<T, C> std::hash::Hash for LockedProxy<T, C> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.proxy.hash(state);
    }
}

impl<T, C> PartialOrd for LockedProxy<T, C> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T, C> Ord for LockedProxy<T, C> {
    /// By key, then store name, like [`Proxy`]'s.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.proxy.cmp(&other.proxy)
    }
}

impl<T, C> Serialize for LockedProxy<T, C> {
    /// As the proxy: its store's config and key.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.proxy.serialize(serializer)
    }
}

impl<'de, T, C> Deserialize<'de> for LockedProxy<T, C> {
    /// A locked proxy from a serialized proxy (locked or not).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Proxy::deserialize(deserializer).map(LockedProxy::new)
    }
}
