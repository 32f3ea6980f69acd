//! `LocalConnector`: objects kept in this process's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use bytes::Bytes;

use crate::config::ConnectorConfig;
use crate::connector::{check_kind, Capability, Connector};
use crate::error::Result;
use crate::key::Key;

const KIND: &str = "local";

/// Objects kept in this process's memory, in a map shared by all clones of the connector.
///
/// `get` hands back the stored [`Bytes`] without copying. The connector's
/// [`config`](Connector::config) names its map, so rebuilding it in the same process (for
/// example when a [`Proxy`](crate::Proxy) is deserialized) reaches the same objects.
///
/// ```
/// use bytes::Bytes;
/// use proxy_core::{Connector, LocalConnector};
///
/// let connector = LocalConnector::new();
/// let key = connector.put(Bytes::from_static(b"hello"))?;
/// assert_eq!(connector.clone().get(&key)?, Some(Bytes::from_static(b"hello")));
/// connector.evict(&key)?;
/// assert!(!connector.exists(&key)?);
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LocalConnector {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    id: u64,
    objects: RwLock<HashMap<u128, Bytes>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Ok(mut maps) = live_maps().lock() {
            maps.remove(&self.id);
        }
    }
}

/// The maps alive in this process, so that a connector rebuilt from its config finds its map.
fn live_maps() -> &'static Mutex<HashMap<u64, Weak<Shared>>> {
    static MAPS: OnceLock<Mutex<HashMap<u64, Weak<Shared>>>> = OnceLock::new();
    MAPS.get_or_init(Default::default)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl LocalConnector {
    /// A connector with a new, empty map.
    pub fn new() -> Self {
        Self::with_id(
            NEXT_ID.fetch_add(1, Ordering::Relaxed) | (u64::from(std::process::id()) << 32),
        )
    }

    /// The connector whose map has identity `id` in this process, made empty if none is alive.
    pub(crate) fn with_id(id: u64) -> Self {
        let mut maps = live_maps()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(shared) = maps.get(&id).and_then(Weak::upgrade) {
            return LocalConnector { shared };
        }
        let shared = Arc::new(Shared {
            id,
            objects: RwLock::new(HashMap::new()),
        });
        maps.insert(id, Arc::downgrade(&shared));
        LocalConnector { shared }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u128, Bytes>> {
        // A panic while holding the lock cannot leave the map half-updated (each operation
        // is one insert or remove), so a poisoned lock is safe to keep using.
        self.shared
            .objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u128, Bytes>> {
        self.shared
            .objects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for LocalConnector {
    fn default() -> Self {
        Self::new()
    }
}

impl Connector for LocalConnector {
    fn put(&self, data: Bytes) -> Result<Key> {
        let key = Key::random(KIND);
        self.write().insert(key.id(), data);
        Ok(key)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        check_kind(key, KIND)?;
        Ok(self.read().get(&key.id()).cloned())
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        check_kind(key, KIND)?;
        Ok(self.read().contains_key(&key.id()))
    }

    fn evict(&self, key: &Key) -> Result<()> {
        check_kind(key, KIND)?;
        self.write().remove(&key.id());
        Ok(())
    }

    fn overwrite(&self, key: &Key, data: Bytes) -> Result<()> {
        check_kind(key, KIND)?;
        match self.write().get_mut(&key.id()) {
            Some(slot) => {
                *slot = data;
                Ok(())
            }
            None => Err(crate::error::Error::NotFound {
                store: format!("local connector {}", self.shared.id),
                key: key.clone(),
            }),
        }
    }

    fn new_key(&self) -> Result<Key> {
        Ok(Key::random(KIND))
    }

    fn put_at(&self, key: &Key, data: Bytes) -> Result<()> {
        check_kind(key, KIND)?;
        match self.write().entry(key.id()) {
            std::collections::hash_map::Entry::Occupied(_) => Err(crate::error::Error::KeyTaken {
                key: key.clone(),
                connector: format!("local connector {}", self.shared.id),
            }),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(data);
                Ok(())
            }
        }
    }

    fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
        let keys: Vec<Key> = data.iter().map(|_| Key::random(KIND)).collect();
        let mut objects = self.write();
        for (key, bytes) in keys.iter().zip(data) {
            objects.insert(key.id(), bytes);
        }
        Ok(keys)
    }

    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        for key in keys {
            check_kind(key, KIND)?;
        }
        let objects = self.read();
        Ok(keys.iter().map(|k| objects.get(&k.id()).cloned()).collect())
    }

    fn config(&self) -> ConnectorConfig {
        ConnectorConfig::Local { id: self.shared.id }
    }

    fn object_count(&self) -> Option<usize> {
        Some(self.read().len())
    }

    fn supports(&self, capability: Capability) -> Option<bool> {
        match capability {
            Capability::Overwrite | Capability::ReservedKeys => Some(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::conformance_tests!(LocalConnector::new());

    #[test]
    fn get_returns_the_stored_buffer_without_copying() {
        let connector = LocalConnector::new();
        let data = Bytes::from(vec![1u8; 1 << 20]);
        let key = connector.put(data.clone()).expect("put");
        let back = connector.get(&key).expect("get").expect("present");
        assert_eq!(back.as_ptr(), data.as_ptr(), "get copied the payload");
    }

    #[test]
    fn rebuilding_from_config_reaches_the_same_map() {
        let connector = LocalConnector::new();
        let key = connector.put(Bytes::from_static(b"x")).expect("put");
        let rebuilt = connector.config().build().expect("build");
        assert_eq!(
            rebuilt.get(&key).expect("get"),
            Some(Bytes::from_static(b"x"))
        );
        let other = LocalConnector::new();
        assert_eq!(
            other.get(&key).expect("get"),
            None,
            "separate maps must not share objects"
        );
    }
}
