//! `OwnedProxy<T>`: a proxy that evicts its object when its last owner is dropped, and the
//! one path that may change a stored object ([`OwnedProxy::borrow_mut`]).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Codec, DefaultCodec};
use crate::connector::Capability;
use crate::error::{Error, Result};
use crate::proxy::Proxy;
use crate::store::Store;

/// A proxy that owns its object: when the last clone of it is dropped, the object is
/// evicted from the store. Made by [`Store::owned_proxy`](crate::Store::owned_proxy).
///
/// Clones share ownership. [`OwnedProxy::borrow`] gives a plain [`Proxy`] view whose lifetime
/// the borrow checker ties to the owner, so a view cannot be used after the object is gone.
///
/// # Changing the object
/// Keys are write-once, with one exception: the owner of an object may change it.
/// [`OwnedProxy::borrow_mut`] hands out a guard that derefs mutably to a copy of the value
/// and writes it back under the same key when dropped (or when
/// [`commit`](OwnedProxyMut::commit)ted, which returns a failure). The
/// borrow checker makes the guard exclusive (it borrows the owner mutably); because clones
/// share ownership, `borrow_mut` also needs this to be the only clone (like
/// [`Arc::get_mut`]). Proxies that already resolved the old value elsewhere keep it; every
/// cache of this process forgets it, and later fetches see the new one. The connector must
/// support [`Connector::overwrite`](crate::Connector::overwrite) (local, file, redis and
/// multi connectors over them do): `borrow_mut` on a connector that says it cannot
/// ([`Connector::supports`](crate::Connector::supports), the ZeroMQ connector) is refused at
/// once with [`Error::Config`].
///
/// # A write-back that fails on drop
/// A drop cannot return an error, so a failed write-back on drop (the object was evicted
/// meanwhile, the store is unreachable) cannot go unnoticed in two other ways: it is logged at
/// `error` level (target `proxy_core::owned`, with the key and the error), and it is kept on
/// the owner, where [`OwnedProxy::write_back_error`] shows it until
/// [`OwnedProxy::take_write_back_error`] takes it or a later write-back succeeds. The owner
/// keeps the value that is still stored. Use [`commit`](OwnedProxyMut::commit) to get the
/// error where it happens.
///
/// [`clone_object`](OwnedProxy::clone_object) stores a copy under a new key (ProxyStore's
/// `clone` of an owned proxy); `Clone` shares this one.
///
/// # Moving ownership to another process
/// Serializing an owned proxy moves ownership to whoever deserializes it: the serialized
/// form is a proxy, the deserialized value is an `OwnedProxy` that evicts on drop, and the
/// owner that was serialized (with all its clones) no longer evicts; it stays usable as a
/// view. Serialize an owned proxy once; [`OwnedProxy::disown`] gives up ownership entirely.
///
/// ```
/// use proxy_core::{LocalConnector, OwnedProxy, Proxy, Store};
///
/// let store = Store::new("owned-doc", LocalConnector::new());
/// let mut owned = store.owned_proxy(vec![7u8; 1024])?;
/// let key = Proxy::key(OwnedProxy::borrow(&owned)).clone();
/// assert_eq!(owned.len(), 1024);
///
/// // Change it in place: written back under the same key.
/// let mut value = OwnedProxy::borrow_mut(&mut owned)?;
/// value.push(8);
/// value.commit()?;
/// assert_eq!(store.get::<Vec<u8>>(&key)?.unwrap().len(), 1025);
///
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
    /// The failure of the last write-back that failed on drop, until taken or until a later
    /// write-back succeeds.
    write_back_error: Mutex<Option<Arc<Error>>>,
}

impl<T, C> Owner<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    fn write_back_error(&self) -> MutexGuard<'_, Option<Arc<Error>>> {
        // Every update replaces the whole value: a poisoned lock still holds a valid one.
        self.write_back_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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
                write_back_error: Mutex::new(None),
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

    /// Whether this owner (and its clones) still evicts the object on drop: `false` after
    /// it was serialized (ownership moved) or disowned.
    pub fn is_owner(this: &Self) -> bool {
        this.owner.armed.load(Ordering::Acquire)
    }

    /// A guard that derefs mutably to a copy of the object and writes it back under the same
    /// key when dropped (a failed write-back is logged) or
    /// [`commit`](OwnedProxyMut::commit)ted (a failure is returned).
    ///
    /// Fails with [`Error::Config`] when other clones of this owner exist (they would see
    /// the object change under them) or when the store's connector says it cannot overwrite
    /// objects ([`Capability::Overwrite`]), and with the store's error when the object
    /// cannot be resolved.
    pub fn borrow_mut(this: &mut Self) -> Result<OwnedProxyMut<'_, T, C>>
    where
        T: Clone,
    {
        let clones = Arc::strong_count(&this.owner);
        let key = Proxy::key(&this.owner.proxy).clone();
        let what = format!("owned proxy {key}");
        let describe = |message: String| Error::Config {
            what: what.clone(),
            message,
        };
        if Arc::get_mut(&mut this.owner).is_none() {
            return Err(describe(format!(
                "borrow_mut needs the only owner, and {clones} clones share this one"
            )));
        }
        let store = Proxy::store(&this.owner.proxy)?;
        if store.connector().supports(Capability::Overwrite) == Some(false) {
            return Err(describe(format!(
                "borrow_mut needs a connector that can {}, and the connector of store `{}` \
                 cannot: the changed object could not be written back",
                Capability::Overwrite,
                store.name(),
            ))
            .in_store(store.name(), Some(&key)));
        }
        let value = T::clone(&*Proxy::get(&this.owner.proxy)?);
        let owner = Arc::get_mut(&mut this.owner)
            .ok_or_else(|| describe("a clone appeared during borrow_mut".into()))?;
        Ok(OwnedProxyMut {
            owner,
            value: Some(value),
        })
    }

    /// The failure of the last write-back that failed when its guard was dropped, kept until
    /// [`take_write_back_error`](OwnedProxy::take_write_back_error) or a later successful
    /// write-back (see "A write-back that fails on drop" in the [type's docs](OwnedProxy)).
    pub fn write_back_error(this: &Self) -> Option<Arc<Error>> {
        this.owner.write_back_error().clone()
    }

    /// Takes the failure that [`write_back_error`](OwnedProxy::write_back_error) shows,
    /// leaving none.
    pub fn take_write_back_error(this: &Self) -> Option<Arc<Error>> {
        this.owner.write_back_error().take()
    }

    /// Stores a copy of the object under a new key and returns its owner (ProxyStore's
    /// `clone` of an owned proxy). The two objects are independent from then on.
    pub fn clone_object(this: &Self) -> Result<OwnedProxy<T, C>> {
        let store = Proxy::store(&this.owner.proxy)?;
        let value = Proxy::get(&this.owner.proxy)?;
        let key = store.put_with::<T, C>(&value)?;
        Ok(OwnedProxy::new(Proxy::resolved(store, key, value)))
    }
}

/// A mutable borrow of an owned object ([`OwnedProxy::borrow_mut`]): writes the object back
/// under its key when dropped or committed.
pub struct OwnedProxyMut<'a, T, C = DefaultCodec>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    owner: &'a mut Owner<T, C>,
    /// `None` only after the value was written back.
    value: Option<T>,
}

impl<T, C> OwnedProxyMut<'_, T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    /// Writes the object back now and reports a failure (the drop would only log it). On
    /// failure the owner keeps the value that is still stored.
    pub fn commit(mut self) -> Result<()> {
        self.write_back()
    }

    fn write_back(&mut self) -> Result<()> {
        let Some(value) = self.value.take() else {
            return Ok(());
        };
        let key = Proxy::key(&self.owner.proxy).clone();
        let store = Proxy::store(&self.owner.proxy)?;
        let bytes = C::encode(&value).map_err(|e| e.in_store(store.name(), Some(&key)))?;
        crate::cache::invalidate(&key);
        let written = store
            .connector()
            .overwrite(&key, bytes)
            .map_err(|e| e.in_store(store.name(), Some(&key)));
        // Also after the write: a get that raced with it must not keep the old value cached.
        crate::cache::invalidate(&key);
        written?;
        self.owner.proxy = Proxy::resolved(store, key, Arc::new(value));
        *self.owner.write_back_error() = None;
        Ok(())
    }
}

impl<T, C> Drop for OwnedProxyMut<'_, T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    fn drop(&mut self) {
        if let Err(e) = self.write_back() {
            // Drop cannot return an error: log it loudly and keep it on the owner
            // (`OwnedProxy::write_back_error`); `commit` returns it instead.
            tracing::error!(
                key = %Proxy::key(&self.owner.proxy),
                error = %e,
                "could not write back a changed owned object: the store keeps the old value \
                 (OwnedProxy::write_back_error has the error; commit() returns it)"
            );
            *self.owner.write_back_error() = Some(Arc::new(e));
        }
    }
}

impl<T, C> Deref for OwnedProxyMut<'_, T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    type Target = T;

    fn deref(&self) -> &T {
        match &self.value {
            Some(value) => value,
            // Only `write_back` takes the value, and it runs from `commit(self)` or `drop`.
            None => unreachable!("an OwnedProxyMut is used after its write-back"),
        }
    }
}

impl<T, C> DerefMut for OwnedProxyMut<'_, T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(value) => value,
            None => unreachable!("an OwnedProxyMut is used after its write-back"),
        }
    }
}

impl<T, C> fmt::Debug for OwnedProxyMut<'_, T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedProxyMut")
            .field("key", Proxy::key(&self.owner.proxy))
            .finish_non_exhaustive()
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

impl<T, C> Serialize for OwnedProxy<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    /// Serializes the proxy and moves ownership to the deserialized copy: this owner and
    /// its clones stop evicting the object on drop.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let serialized = self.owner.proxy.serialize(serializer)?;
        self.owner.armed.store(false, Ordering::Release);
        Ok(serialized)
    }
}

impl<'de, T, C> Deserialize<'de> for OwnedProxy<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    /// An owner of the object: it evicts the object when its last clone is dropped.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Proxy::deserialize(deserializer).map(OwnedProxy::new)
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
            .field("owns", &self.owner.armed.load(Ordering::Acquire))
            .finish()
    }
}

/// Owned proxies, made by a store.
impl<Dc: 'static> Store<Dc> {
    /// Stores `obj` and returns an [`OwnedProxy`]: the object is evicted when the last
    /// clone of the owned proxy is dropped.
    pub fn owned_proxy<T>(&self, obj: T) -> Result<OwnedProxy<T, Dc>>
    where
        T: Send + Sync + 'static,
        Dc: Codec<T>,
    {
        self.owned_proxy_with::<T, Dc>(obj)
    }

    /// Like [`owned_proxy`](Store::owned_proxy), with codec `C`.
    pub fn owned_proxy_with<T, C>(&self, obj: T) -> Result<OwnedProxy<T, C>>
    where
        T: Send + Sync + 'static,
        C: Codec<T>,
    {
        Ok(OwnedProxy::new(self.proxy_with::<T, C>(obj)?))
    }
}
