//! `ContextLifetime`: objects that live until a scope ends.

use std::fmt;

use super::attached::{next_name, Attached};
use super::Lifetime;
use crate::error::Result;
use crate::key::Key;
use crate::store::Store;

/// A scope: the objects attached to it are evicted when it is [closed](Lifetime::close) or
/// dropped (ProxyStore's `ContextLifetime`, whose `with` block is a Rust scope here).
///
/// [`close`](Lifetime::close) reports failed evictions; a drop cannot, so it evicts what it
/// can and logs each failure with `tracing::warn!` (it never panics). Objects of several
/// stores may be attached to one scope. The scope can be shared between threads by
/// reference (it is `Send + Sync`); it is not `Clone`, since one value must own the end of
/// the scope.
///
/// ```
/// use proxy_core::{ContextLifetime, Lifetime, LocalConnector, Proxy, Store};
///
/// let store = Store::new("context-doc", LocalConnector::new());
/// let (key, proxy_key) = {
///     let scope = ContextLifetime::new();
///     let key = store.put_in(&vec![1u8; 64], &scope)?;
///     let proxy = store.proxy_in(String::from("lives in the scope"), &scope)?;
///     assert_eq!(proxy.len(), 18);
///     (key, Proxy::key(&proxy).clone())
/// }; // the scope ends: both objects are evicted
/// assert!(!store.exists(&key)? && !store.exists(&proxy_key)?);
///
/// // `close` ends it early and reports failures; adding afterwards is an error.
/// let scope = ContextLifetime::named("step-3");
/// let key = store.put_in(&7u64, &scope)?;
/// scope.close()?;
/// assert!(!store.exists(&key)?);
/// assert!(store.put_in(&8u64, &scope).is_err());
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[must_use = "a scope evicts its objects when dropped: bind it to a variable"]
pub struct ContextLifetime {
    attached: Attached,
}

impl ContextLifetime {
    /// A new, open scope with a name unique in this process (`context-N`).
    pub fn new() -> Self {
        Self::named(next_name("context"))
    }

    /// A new, open scope named `name` (errors and logs name it).
    pub fn named(name: impl Into<String>) -> Self {
        ContextLifetime {
            attached: Attached::new(name.into()),
        }
    }

    /// How many objects are attached and not evicted yet.
    pub fn len(&self) -> usize {
        self.attached.len()
    }

    /// Whether no object is attached (or all were evicted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for ContextLifetime {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifetime for ContextLifetime {
    fn name(&self) -> &str {
        self.attached.name()
    }

    fn add_keys(&self, store: &Store, keys: &[Key]) -> Result<()> {
        self.attached.add(store, keys)
    }

    fn close(&self) -> Result<()> {
        self.attached.close()
    }

    fn is_closed(&self) -> bool {
        self.attached.is_closed()
    }
}

impl Drop for ContextLifetime {
    fn drop(&mut self) {
        if let Err(error) = self.attached.close() {
            tracing::warn!(
                lifetime = %self.attached.name(),
                %error,
                "a scope ended but some of its objects could not be evicted: they leak"
            );
        }
    }
}

impl fmt::Debug for ContextLifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ContextLifetime")
            .field(&self.attached)
            .finish()
    }
}
