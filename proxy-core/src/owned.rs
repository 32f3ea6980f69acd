//! `OwnedProxy<T>`: a proxy that evicts its object when its last owner is dropped.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::codec::{Codec, DefaultCodec};
use crate::proxy::Proxy;

/// A proxy that owns its object: when the last clone of it is dropped, the object is
/// evicted from the store. Made by [`Store::owned_proxy`](crate::Store::owned_proxy).
///
/// Clones share ownership. [`OwnedProxy::borrow`] gives a plain [`Proxy`] view whose lifetime
/// the borrow checker ties to the owner, so a view cannot be used after the object is gone.
/// An owned proxy is deliberately not serializable: send a view (accepting that the owner
/// decides when the object goes) or [`OwnedProxy::disown`] it first.
///
/// ```
/// use proxy_core::{LocalConnector, OwnedProxy, Proxy, Store};
///
/// let store = Store::new("owned-doc", LocalConnector::new());
/// let owned = store.owned_proxy(vec![7u8; 1024])?;
/// let key = Proxy::key(OwnedProxy::borrow(&owned)).clone();
/// assert_eq!(owned.len(), 1024);
/// assert!(store.exists(&key)?);
/// drop(owned);
/// assert!(!store.exists(&key)?);
/// # Ok::<(), proxy_core::Error>(())
/// ```
pub struct OwnedProxy<T, C = DefaultCodec>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    owner: Arc<Owner<T, C>>,
}

struct Owner<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    proxy: Proxy<T, C>,
    armed: AtomicBool,
}

impl<T, C> Drop for Owner<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    fn drop(&mut self) {
        if !self.armed.load(Ordering::Acquire) {
            return;
        }
        let key = Proxy::key(&self.proxy);
        let evicted = Proxy::store(&self.proxy).and_then(|store| store.evict(key));
        if let Err(e) = evicted {
            // Drop cannot return an error; say what leaked and why.
            tracing::warn!(%key, error = %e, "could not evict an owned object: it leaks");
        }
    }
}

impl<T, C> OwnedProxy<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    /// Takes ownership of the object behind `proxy`.
    pub fn new(proxy: Proxy<T, C>) -> Self {
        OwnedProxy {
            owner: Arc::new(Owner {
                proxy,
                armed: AtomicBool::new(true),
            }),
        }
    }

    /// A plain proxy view of the object, valid while this owner is borrowed.
    // An associated function (`OwnedProxy::borrow(&p)`), so it cannot be confused with
    // `Borrow::borrow` at a call site, and never shadows a method of `T`.
    #[allow(clippy::should_implement_trait)]
    pub fn borrow(this: &Self) -> &Proxy<T, C> {
        &this.owner.proxy
    }

    /// Gives up ownership for every clone: the object will not be evicted on drop.
    pub fn disown(this: Self) -> Proxy<T, C> {
        this.owner.armed.store(false, Ordering::Release);
        this.owner.proxy.clone()
    }
}

impl<T, C> Clone for OwnedProxy<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    fn clone(&self) -> Self {
        OwnedProxy {
            owner: Arc::clone(&self.owner),
        }
    }
}

impl<T, C> Deref for OwnedProxy<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    type Target = T;

    fn deref(&self) -> &T {
        &self.owner.proxy
    }
}

impl<T, C> fmt::Debug for OwnedProxy<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedProxy")
            .field("proxy", &self.owner.proxy)
            .field("owners", &Arc::strong_count(&self.owner))
            .finish()
    }
}
