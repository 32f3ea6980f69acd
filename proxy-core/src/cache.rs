//! The store's cache of deserialized objects.

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::key::Key;

type Entry = Arc<dyn Any + Send + Sync>;

/// A thread-safe LRU map from keys to decoded objects; capacity 0 disables it.
#[derive(Debug)]
pub(crate) struct ObjectCache {
    entries: Option<Mutex<LruCache<Key, Entry>>>,
}

impl ObjectCache {
    pub(crate) fn new(capacity: usize) -> Self {
        ObjectCache {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, LruCache<Key, Entry>>> {
        // Every operation on the LRU completes or does nothing, so a poisoned lock is usable.
        self.entries
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// The cached object under `key`, if it is cached as a `T`.
    pub(crate) fn get<T: Send + Sync + 'static>(&self, key: &Key) -> Option<Arc<T>> {
        let entry = self.lock()?.get(key).cloned()?;
        entry.downcast::<T>().ok()
    }

    pub(crate) fn insert<T: Send + Sync + 'static>(&self, key: Key, value: Arc<T>) {
        if let Some(mut entries) = self.lock() {
            entries.put(key, value);
        }
    }

    pub(crate) fn contains(&self, key: &Key) -> bool {
        self.lock().is_some_and(|entries| entries.contains(key))
    }

    pub(crate) fn remove(&self, key: &Key) {
        if let Some(mut entries) = self.lock() {
            entries.pop(key);
        }
    }

    pub(crate) fn clear(&self) {
        if let Some(mut entries) = self.lock() {
            entries.clear();
        }
    }
}
