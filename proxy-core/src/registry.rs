//! The store registry: stores by name, so deserialized proxies find their store.
//!
//! # Registration rules
//!
//! - [`Registry::register`] claims a free name. A name held by another store is an
//!   [`Error::StoreExists`]; a name held by this very store too, unless registered with
//!   [`Registry::register_exist_ok`].
//! - **A registered store takes over from a rebuilt one.** When a proxy is deserialized
//!   before its store is registered, [`Registry::get_or_rebuild`] registers a store rebuilt
//!   from the proxy's config. A later `register` of a store with the same name replaces that
//!   rebuilt store (no error): proxies resolved from then on use the registered store, and
//!   proxies that already hold the rebuilt one keep working through it. Both stay coherent:
//!   an eviction through either drops the object from every cache of this process (see
//!   [`Store::evict`]).
//! - A store registered in the process-wide registry is unregistered by its
//!   [`close`](Store::close).
//! - [`Registry::register_scoped`] returns a guard that unregisters the store when dropped.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use crate::error::{Error, Result};
use crate::store::{Store, StoreConfig};

/// One registered store, and whether the registry rebuilt it itself (from a proxy's config)
/// rather than being given it by the program.
#[derive(Debug)]
struct Entry {
    store: Store,
    rebuilt: bool,
}

/// Stores by name. The process-wide registry ([`Registry::global`], and the free functions
/// [`register_store`], [`get_store`], [`unregister_store`]) is where a deserialized
/// [`Proxy`](crate::Proxy) looks for its store; separate registries are useful in tests.
/// The module docs state the registration rules.
///
/// ```
/// use proxy_core::{get_store, register_store_scoped, LocalConnector, Store};
///
/// let store = Store::new("registry-doc", LocalConnector::new());
/// {
///     let _registered = register_store_scoped(&store)?;
///     assert!(get_store("registry-doc").is_some());
/// } // unregistered here
/// assert!(get_store("registry-doc").is_none());
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Registry {
    stores: RwLock<HashMap<String, Entry>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            // A store registered here is forgotten when it closes.
            crate::store::on_close(|store| {
                Registry::global().unregister_if_same(store);
                Ok(())
            });
            Registry::new()
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        // Each operation is a single insert, lookup or remove: a poisoned map is consistent.
        self.stores.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.stores.write().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, store: &Store, exist_ok: bool) -> Result<()> {
        let mut stores = self.write();
        if let Some(entry) = stores.get(store.name()) {
            let same = entry.store.same_store(store);
            if same && exist_ok {
                return Ok(());
            }
            if same || !entry.rebuilt {
                return Err(Error::StoreExists {
                    name: store.name().to_string(),
                });
            }
            // A store rebuilt from a proxy's config: the registered store takes over.
        }
        stores.insert(
            store.name().to_string(),
            Entry {
                store: store.clone(),
                rebuilt: false,
            },
        );
        Ok(())
    }

    /// Registers `store` under its name. Fails with [`Error::StoreExists`] if the name is
    /// taken (even by a clone of the same store), except by a store this registry rebuilt
    /// from a proxy's config: `store` replaces that one.
    pub fn register<C: 'static>(&self, store: &Store<C>) -> Result<()> {
        self.insert(&store.erased(), false)
    }

    /// Like [`register`](Registry::register), but registering a store that is already
    /// registered under its name (a clone of it) is not an error (ProxyStore's `exist_ok`).
    /// A different store holding the name still is.
    pub fn register_exist_ok<C: 'static>(&self, store: &Store<C>) -> Result<()> {
        self.insert(&store.erased(), true)
    }

    /// Registers `store` for as long as the returned guard lives: dropping the guard
    /// unregisters it (if it is still the store registered under its name).
    pub fn register_scoped<C: 'static>(&self, store: &Store<C>) -> Result<Registration<'_>> {
        self.register(store)?;
        Ok(Registration {
            registry: self,
            store: store.erased(),
        })
    }

    /// The store registered under `name`.
    pub fn get(&self, name: &str) -> Option<Store> {
        self.read().get(name).map(|e| e.store.clone())
    }

    /// Removes and returns the store registered under `name`.
    pub fn unregister(&self, name: &str) -> Option<Store> {
        self.write().remove(name).map(|e| e.store)
    }

    /// Unregisters `store` if it is the store registered under its name; returns whether it
    /// was. A different store registered under the same name stays.
    pub fn unregister_if_same<C: 'static>(&self, store: &Store<C>) -> bool {
        let mut stores = self.write();
        match stores.get(store.name()) {
            Some(entry) if entry.store.same_store(store) => {
                stores.remove(store.name());
                true
            }
            _ => false,
        }
    }

    /// The names of the registered stores, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The store registered under `config.name`, or a store rebuilt from `config` and
    /// registered (if another thread registers one first, that one is returned). A store the
    /// program registers later under the same name takes over from the rebuilt one.
    pub fn get_or_rebuild(&self, config: &StoreConfig) -> Result<Store> {
        if let Some(store) = self.get(&config.name) {
            return Ok(store);
        }
        let rebuilt = Store::from_config(config)?;
        let mut stores = self.write();
        Ok(stores
            .entry(config.name.clone())
            .or_insert(Entry {
                store: rebuilt,
                rebuilt: true,
            })
            .store
            .clone())
    }
}

/// A store registered for a scope ([`Registry::register_scoped`],
/// [`register_store_scoped`]): dropping it unregisters the store.
#[derive(Debug)]
#[must_use = "dropping the registration unregisters the store at once"]
pub struct Registration<'a> {
    registry: &'a Registry,
    store: Store,
}

impl Registration<'_> {
    /// The registered store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.unregister_if_same(&self.store);
    }
}

/// Registers `store` in the process-wide registry ([`Registry::register`]).
pub fn register_store<C: 'static>(store: &Store<C>) -> Result<()> {
    Registry::global().register(store)
}

/// Registers `store` in the process-wide registry, accepting a store that is already
/// registered ([`Registry::register_exist_ok`]).
pub fn register_store_exist_ok<C: 'static>(store: &Store<C>) -> Result<()> {
    Registry::global().register_exist_ok(store)
}

/// Registers `store` in the process-wide registry until the returned guard is dropped
/// ([`Registry::register_scoped`]).
pub fn register_store_scoped<C: 'static>(store: &Store<C>) -> Result<Registration<'static>> {
    Registry::global().register_scoped(store)
}

/// The store registered under `name` in the process-wide registry.
pub fn get_store(name: &str) -> Option<Store> {
    Registry::global().get(name)
}

/// Removes the store registered under `name` from the process-wide registry.
pub fn unregister_store(name: &str) -> Option<Store> {
    Registry::global().unregister(name)
}

impl crate::store::StoreBuilder {
    /// The store, registered in the process-wide [`Registry`](crate::Registry) (ProxyStore's
    /// `register=True`); its [`close`](Store::close) unregisters it. Fails like
    /// [`register_store`](crate::register_store) if the name is taken.
    pub fn build_registered(self) -> Result<Store> {
        let store = self.build();
        register_store(&store)?;
        Ok(store)
    }
}

impl<C: 'static> crate::store::CodecStoreBuilder<C> {
    /// The store, registered in the process-wide registry
    /// ([`StoreBuilder::build_registered`](crate::StoreBuilder::build_registered)).
    pub fn build_registered(self) -> Result<Store<C>> {
        let store = self.build();
        register_store(&store)?;
        Ok(store)
    }
}
