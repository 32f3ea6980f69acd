//! Lifetimes: objects evicted together when a scope ends, a lease expires, or the process
//! (or the store) closes; ProxyStore's `ContextLifetime`, `LeaseLifetime` and
//! `StaticLifetime`.
//!
//! A [`Lifetime`] holds keys, of one store or several. Attach an object when storing it
//! ([`Store::put_in`], [`Store::proxy_in`] and their `_with` variants for another codec), or
//! later ([`Lifetime::add_key`], [`Lifetime::add_proxy`]). When the lifetime ends, each
//! object is evicted through its store ([`Store::evict`]), so no cache of the process serves
//! it afterwards. Attaching to a lifetime that has ended is an error
//! ([`Error::LifetimeClosed`](crate::Error::LifetimeClosed)); an object stored by `put_in` or
//! `proxy_in` for a lifetime that has ended is evicted again before the error is returned.
//!
//! | lifetime | ends | dropping the value |
//! |---|---|---|
//! | [`ContextLifetime`] | [`close`](Lifetime::close) or drop | evicts (failures are logged) |
//! | [`LeaseLifetime`] | expiry (postponed by [`extend`](LeaseLifetime::extend)) or `close` | nothing: the lease runs until expiry |
//! | [`StaticLifetime`] | [`Store::close`] (that store's objects), `close`, or normal process exit | (a unit value) |
//!
//! [`OwnedProxy`](crate::OwnedProxy) is the per-object alternative: the object lives as long
//! as its owners, and the borrow checker keeps views from outliving it.
//!
//! ```
//! use std::time::Duration;
//! use proxy_core::{ContextLifetime, LeaseLifetime, Lifetime, LocalConnector, Proxy, Store};
//!
//! let store = Store::new("lifetimes-doc", LocalConnector::new());
//! let other = Store::new("lifetimes-doc-other", LocalConnector::new());
//!
//! let scope = ContextLifetime::new();
//! let proxy = store.proxy_in(vec![1.0f64; 1024], &scope)?;
//! let key = other.put(&"attached later".to_string())?;
//! scope.add_key(&other, key.clone())?; // keys of several stores
//!
//! // A proxy used on another thread while the scope is open.
//! let sent = proxy.clone();
//! let sum = std::thread::spawn(move || sent.iter().sum::<f64>()).join().unwrap();
//! assert_eq!(sum, 1024.0);
//!
//! drop(scope); // evicts both objects
//! assert!(!store.exists(Proxy::key(&proxy))? && !other.exists(&key)?);
//!
//! // A lease ends by itself unless extended; `close` ends it now.
//! let lease = LeaseLifetime::new(Duration::from_secs(60));
//! let key = store.put_in(&42u32, &lease)?;
//! lease.extend(Duration::from_secs(60))?;
//! lease.close()?;
//! assert!(!store.exists(&key)?);
//! assert!(lease.extend(Duration::from_secs(1)).is_err());
//! # Ok::<(), proxy_core::Error>(())
//! ```

mod attach;
mod attached;
mod context;
mod lease;
mod static_lifetime;
mod timer;

pub use context::ContextLifetime;
pub use lease::LeaseLifetime;
pub use static_lifetime::StaticLifetime;

use crate::codec::Codec;
use crate::error::Result;
use crate::key::Key;
use crate::proxy::Proxy;
use crate::store::Store;

/// What every lifetime does: attach keys (of any store), end (evicting what is attached),
/// and tell whether it has ended (ProxyStore's `Lifetime` protocol; `is_closed` is its
/// `done`).
///
/// The required methods are object safe, so a `&dyn Lifetime` can be handed around
/// ([`Store::put_in`] takes one). [`add_key`](Lifetime::add_key) and
/// [`add_proxy`](Lifetime::add_proxy) are conveniences for concrete lifetimes; through a
/// `dyn Lifetime`, call [`add_keys`](Lifetime::add_keys).
pub trait Lifetime: Send + Sync + std::fmt::Debug {
    /// The lifetime's name, as errors and logs give it.
    fn name(&self) -> &str;

    /// Attaches objects of `store` by key: they are evicted through `store` when the lifetime
    /// ends. Attaching a key twice is harmless. Fails with
    /// [`Error::LifetimeClosed`](crate::Error::LifetimeClosed), attaching none, once the
    /// lifetime has ended.
    fn add_keys(&self, store: &Store, keys: &[Key]) -> Result<()>;

    /// Ends the lifetime now and evicts its objects. Every object is tried; if some could not
    /// be evicted, the error ([`Error::LifetimeEvict`](crate::Error::LifetimeEvict)) lists
    /// their keys and carries the first failure. Closing an ended lifetime does nothing.
    fn close(&self) -> Result<()>;

    /// Whether the lifetime has ended (closed, dropped or expired): ProxyStore's `done()`.
    fn is_closed(&self) -> bool;

    /// Attaches the object under `key` of `store` (a store of any default codec).
    fn add_key<C: 'static>(&self, store: &Store<C>, key: Key) -> Result<()>
    where
        Self: Sized,
    {
        self.add_keys(&store.erased(), std::slice::from_ref(&key))
    }

    /// Attaches the object behind `proxy`, through the proxy's store (for a proxy received
    /// from another process, the store registered under its name, or rebuilt from its config
    /// as [`Proxy::store`] does).
    fn add_proxy<T, C>(&self, proxy: &Proxy<T, C>) -> Result<()>
    where
        Self: Sized,
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        let store = Proxy::store(proxy)?;
        self.add_keys(&store, std::slice::from_ref(Proxy::key(proxy)))
    }
}
