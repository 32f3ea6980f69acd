//! The store registry: stores by name, so deserialized proxies find their store.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use crate::error::{Error, Result};
use crate::store::{Store, StoreConfig};

/// Stores by name. The process-wide registry ([`Registry::global`], and the free functions
/// [`register_store`], [`get_store`], [`unregister_store`]) is where a deserialized
/// [`Proxy`](crate::Proxy) looks for its store; separate registries are useful in tests.
#[derive(Debug, Default)]
pub struct Registry {
    stores: RwLock<HashMap<String, Store>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Store>> {
        // Each operation is a single insert, lookup or remove: a poisoned map is consistent.
        self.stores.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Store>> {
        self.stores.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `store` under its name. Fails with [`Error::StoreExists`] if the name is
    /// taken (even by a clone of the same store).
    pub fn register(&self, store: &Store) -> Result<()> {
        let mut stores = self.write();
        if stores.contains_key(store.name()) {
            return Err(Error::StoreExists {
                name: store.name().to_string(),
            });
        }
        stores.insert(store.name().to_string(), store.clone());
        Ok(())
    }

    /// The store registered under `name`.
    pub fn get(&self, name: &str) -> Option<Store> {
        self.read().get(name).cloned()
    }

    /// Removes and returns the store registered under `name`.
    pub fn unregister(&self, name: &str) -> Option<Store> {
        self.write().remove(name)
    }

    /// The names of the registered stores, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The store registered under `config.name`, or a store rebuilt from `config` and
    /// registered (if another thread registers one first, that one is returned).
    pub fn get_or_rebuild(&self, config: &StoreConfig) -> Result<Store> {
        if let Some(store) = self.get(&config.name) {
            return Ok(store);
        }
        let rebuilt = Store::from_config(config)?;
        let mut stores = self.write();
        Ok(stores.entry(config.name.clone()).or_insert(rebuilt).clone())
    }
}

/// Registers `store` in the process-wide registry ([`Registry::register`]).
pub fn register_store(store: &Store) -> Result<()> {
    Registry::global().register(store)
}

/// The store registered under `name` in the process-wide registry.
pub fn get_store(name: &str) -> Option<Store> {
    Registry::global().get(name)
}

/// Removes the store registered under `name` from the process-wide registry.
pub fn unregister_store(name: &str) -> Option<Store> {
    Registry::global().unregister(name)
}
