//! `ObjectMap`: the objects a peer serves, shared by its connectors and its server thread.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

/// Objects by id. Every operation is one lookup, insert or remove, so a panic elsewhere can
/// never leave the map half-updated and a poisoned lock is safe to keep using.
#[derive(Debug, Default)]
pub(crate) struct ObjectMap {
    objects: RwLock<HashMap<u128, Bytes>>,
}

impl ObjectMap {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<u128, Bytes>> {
        self.objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<u128, Bytes>> {
        self.objects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The object (a shared handle on the stored buffer, not a copy).
    pub(crate) fn get(&self, id: u128) -> Option<Bytes> {
        self.read().get(&id).cloned()
    }

    /// Several objects under one lock.
    pub(crate) fn get_many(&self, ids: impl Iterator<Item = u128>) -> Vec<Option<Bytes>> {
        let objects = self.read();
        ids.map(|id| objects.get(&id).cloned()).collect()
    }

    /// Whether an object is stored under `id`.
    pub(crate) fn contains(&self, id: u128) -> bool {
        self.read().contains_key(&id)
    }

    /// Stores `data` under `id` unless the id is taken; says whether it stored it.
    pub(crate) fn insert_new(&self, id: u128, data: Bytes) -> bool {
        match self.write().entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(data);
                true
            }
        }
    }

    /// Stores several objects under fresh ids.
    pub(crate) fn insert_many(&self, items: impl Iterator<Item = (u128, Bytes)>) {
        self.write().extend(items);
    }

    /// Removes the object, if any.
    pub(crate) fn remove(&self, id: u128) {
        self.write().remove(&id);
    }

    /// How many objects are stored.
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    /// Removes every object.
    pub(crate) fn clear(&self) {
        self.write().clear();
    }
}
