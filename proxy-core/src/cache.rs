//! The store's cache of deserialized objects.

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use lru::LruCache;

use crate::key::Key;

type Entry = Arc<dyn Any + Send + Sync>;

/// Every live cache of this process, so that an eviction through any store drops the object
/// from all of them (keys are random 128-bit ids, so a key names one object in every cache).
fn caches() -> &'static Mutex<Vec<Weak<ObjectCache>>> {
    static CACHES: OnceLock<Mutex<Vec<Weak<ObjectCache>>>> = OnceLock::new();
    CACHES.get_or_init(Mutex::default)
}

/// How many invalidation counters there are. A key is guarded by the counter its id picks,
/// so an eviction only stops the caching of gets that raced with it on the same counter:
/// with random 128-bit ids, a get of another object is held back with odds of 1 in this.
const EPOCH_SHARDS: usize = 1024;

/// Invalidation counters, bumped by every invalidation of a key that picks them: a get that
/// raced with one does not cache what it read.
static EPOCHS: [AtomicU64; EPOCH_SHARDS] = [const { AtomicU64::new(0) }; EPOCH_SHARDS];

fn epoch_slot(key: &Key) -> &'static AtomicU64 {
    // Ids are random (a CSPRNG's output), so their low bits spread keys evenly.
    &EPOCHS[(key.id() as usize) % EPOCH_SHARDS]
}

/// The invalidation epoch of `key`, to be read before a fetch and passed to
/// [`ObjectCache::insert_unless_invalidated`].
pub(crate) fn epoch(key: &Key) -> u64 {
    epoch_slot(key).load(Ordering::Acquire)
}

/// Drops the object under `key` from every cache of this process.
pub(crate) fn invalidate(key: &Key) {
    epoch_slot(key).fetch_add(1, Ordering::AcqRel);
    let live: Vec<Arc<ObjectCache>> = {
        let mut all = caches().lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|weak| weak.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    for cache in live {
        cache.remove(key);
    }
}

/// A thread-safe LRU map from keys to decoded objects; capacity 0 disables it.
#[derive(Debug)]
pub(crate) struct ObjectCache {
    entries: Option<Mutex<LruCache<Key, Entry>>>,
}

impl ObjectCache {
    /// A new cache, registered so that [`invalidate`] reaches it (a disabled one is not).
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        let cache = Arc::new(ObjectCache {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        });
        if cache.entries.is_some() {
            let mut all = caches().lock().unwrap_or_else(|p| p.into_inner());
            all.retain(|weak| weak.strong_count() > 0);
            all.push(Arc::downgrade(&cache));
        }
        cache
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

    /// Caches `value` unless an invalidation happened since `epoch` (it may have evicted
    /// this very object after it was read, and the cache must not bring it back).
    pub(crate) fn insert_unless_invalidated<T: Send + Sync + 'static>(
        &self,
        epoch: u64,
        key: &Key,
        value: &Arc<T>,
    ) {
        let Some(mut entries) = self.lock() else {
            return;
        };
        // Checked under the lock: an invalidation that comes later removes the entry
        // (it takes this lock too), one that came earlier is seen here.
        if epoch_slot(key).load(Ordering::Acquire) == epoch {
            entries.put(key.clone(), Arc::clone(value) as Entry);
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
