//! Where objects are, as hints a proxy carries: opaque location bytes by object id, kept per
//! process.
//!
//! A connector that knows where an object lies in memory a reader on the same host can map
//! (the ZeroMQ peer, for objects written in place into its shared memory) records that
//! location here when it stores the object. A proxy of that object serializes the location
//! with its key ([`Proxy`](crate::Proxy)'s factory), and the deserializing process records it
//! here in turn, so that the connector there can read the object without asking its owner
//! first. A location is only ever a hint: the connector checks it as it checks any untrusted
//! location, and asks the owner when it does not hold.
//!
//! The map is bounded ([`MAX_LOCATIONS`], least recently used out first): a location that
//! fell out only costs a request.

use std::num::NonZeroUsize;
use std::sync::{Mutex, OnceLock};

use lru::LruCache;

/// Most locations a process keeps.
pub(crate) const MAX_LOCATIONS: usize = 65_536;

/// Largest location accepted from a proxy (the ZeroMQ peer's are 80 bytes).
pub(crate) const MAX_LOCATION_LEN: usize = 128;

fn locations() -> &'static Mutex<LruCache<u128, Vec<u8>>> {
    static LOCATIONS: OnceLock<Mutex<LruCache<u128, Vec<u8>>>> = OnceLock::new();
    LOCATIONS.get_or_init(|| {
        Mutex::new(LruCache::new(
            NonZeroUsize::new(MAX_LOCATIONS).unwrap_or(NonZeroUsize::MIN),
        ))
    })
}

fn lock() -> std::sync::MutexGuard<'static, LruCache<u128, Vec<u8>>> {
    locations()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records where object `id` is (ignored when longer than [`MAX_LOCATION_LEN`]).
pub(crate) fn record(id: u128, location: &[u8]) {
    if location.len() <= MAX_LOCATION_LEN {
        lock().put(id, location.to_vec());
    }
}

/// Where object `id` is, if known here.
pub(crate) fn get(id: u128) -> Option<Vec<u8>> {
    lock().get(&id).cloned()
}

/// Forgets where object `id` was (it was evicted, or its location did not hold).
pub(crate) fn forget(id: u128) {
    lock().pop(&id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_kept_bounded_and_forgotten() {
        let id = 0x10ca_7105_u128 << 64;
        record(id, &[1, 2, 3]);
        assert_eq!(get(id), Some(vec![1, 2, 3]));
        record(id + 1, &[0; MAX_LOCATION_LEN + 1]);
        assert_eq!(get(id + 1), None, "an oversized location is not kept");
        forget(id);
        assert_eq!(get(id), None);
    }
}
