//! `ObjectMap`: the objects a peer serves, shared by its connectors and its server thread.
//!
//! The map also counts the bytes of objects that other processes stored here (remote puts),
//! so that the server can hold them to a quota.
//!
//! With a shared memory [`Arena`], an object of at least its threshold is copied into it once
//! (the map then holds a `Bytes` over the mapping, and the descriptor a same-host reader
//! needs):
//!
//! - up to [`LAZY_MAX`] bytes, when a same-host reader first asks for it ([`ObjectMap::share`],
//!   on the server thread): objects only read in this process, or only over TCP, are never
//!   copied, and the copy runs beside the thread that put the object, not in it;
//! - above it, when this process stores it (in the storing thread), so that the server thread
//!   never stalls for long on a copy (its clients would see that as silence); objects above
//!   it that other processes put here stay on the heap.
//!
//! Objects below the threshold, and those that do not fit in the arena, stay on the heap.
//!
//! **The quota** (`max_bytes`) holds what the peer keeps for other processes: each remote
//! object is charged [`REMOTE_OBJECT_OVERHEAD`] bytes, plus its bytes while it is on the heap,
//! and every byte of the shared memory segments made for remote objects (the arena's
//! [`Pool::Remote`]: objects, their rounding to a size class, and free slots until the
//! segment is returned to the operating system). A remote object is copied into shared
//! memory only if that keeps the charge within the quota (its heap bytes are then no longer
//! charged, its segment is); otherwise it stays on the heap and is read over TCP. A remote put
//! over the quota first returns the remote pool's wholly free segments to the operating
//! system, then is refused if it still does not fit. So put, map and evict cycles, one size
//! class after another, cannot make a peer hold more shared memory than its quota.
//!
//! With a secret, replies prove a digest of the object ([`auth`](super::auth)); the map keeps
//! each object's digest once computed: at put for objects above [`LAZY_MAX`] (in the storing
//! thread, as the shared memory copy), from the request proof for remote puts, and on the
//! first read over TCP for the rest ([`ObjectMap::digest`]), so no object is hashed twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;

use super::auth;
use super::shm::{Arena, ArenaStats, Descriptor, Pool, Reservation};

/// What each object another process stores here costs against the quota besides its bytes:
/// its entry in the map, the received message's bookkeeping and the allocator's rounding
/// (about 290 bytes were measured per empty object). Without it, empty objects would be free
/// and a client could grow a peer without bound under any byte quota.
pub(crate) const REMOTE_OBJECT_OVERHEAD: u64 = 320;

/// Largest object copied into shared memory on the first same-host read rather than at put
/// (a copy of this size takes a few milliseconds of the server thread).
pub(crate) const LAZY_MAX: usize = 16 << 20;

/// Objects by id. Every operation is one lookup, insert or remove, so a panic elsewhere can
/// never leave the map half-updated and a poisoned lock is safe to keep using.
#[derive(Debug, Default)]
pub(crate) struct ObjectMap {
    objects: RwLock<HashMap<u128, Stored>>,
    /// Where large objects go, if shared memory is on.
    arena: Option<Arena>,
    remote_bytes: AtomicU64,
    /// How many objects other processes stored here (each charged
    /// [`REMOTE_OBJECT_OVERHEAD`] against the quota).
    remote_objects: AtomicU64,
    /// Bytes of remote objects that are in shared memory (their segments are charged
    /// instead; written only under the map's write lock).
    remote_shared: AtomicU64,
    /// Serialises what can raise the charge against the quota (a remote put, a remote
    /// object's copy into shared memory), so that each check sees the others' effect.
    admission: Mutex<()>,
    /// Bytes of every object stored (written only under the map's write lock).
    bytes: AtomicU64,
    /// Whether large objects are hashed when stored (the peer proves its replies).
    digest_at_put: bool,
}

/// One stored object.
#[derive(Debug, Clone)]
struct Stored {
    bytes: Bytes,
    /// Where it is in shared memory, if it is there.
    shared: Option<Descriptor>,
    /// Whether another process stored it (a remote put: its bytes count against the quota).
    remote: bool,
    /// Its [`digest`](super::auth::digest), once computed.
    digest: Option<[u8; 32]>,
}

impl Stored {
    fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// Why [`ObjectMap::insert_remote`] did not store an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The id is taken.
    Taken,
    /// The quota would be exceeded; the bytes already charged (objects' bytes plus their
    /// overhead).
    OverQuota(u64),
}

impl ObjectMap {
    /// A map that keeps large objects in `arena`.
    pub(crate) fn with_arena(arena: Option<Arena>) -> ObjectMap {
        ObjectMap {
            arena,
            ..ObjectMap::default()
        }
    }

    /// This map, hashing objects larger than [`LAZY_MAX`] when they are stored (`on`: the
    /// peer has a secret and proves the digests of the objects it sends).
    pub(crate) fn with_digests_at_put(mut self, on: bool) -> ObjectMap {
        self.digest_at_put = on;
        self
    }

    /// `data` as this process stores it: copied into shared memory now if it is larger than
    /// [`LAZY_MAX`] (smaller ones are copied when a same-host reader asks, see [`share`](Self::share)).
    fn place(&self, id: u128, data: Bytes) -> Stored {
        let large = data.len() > LAZY_MAX;
        let digest = (large && self.digest_at_put).then(|| auth::digest(&data));
        let eager = self.arena.as_ref().filter(|_| large);
        match eager.and_then(|arena| arena.store(id, &data)) {
            Some((bytes, descriptor)) => Stored {
                bytes,
                shared: Some(descriptor),
                remote: false,
                digest,
            },
            None => Stored {
                bytes: data,
                shared: None,
                remote: false,
                digest,
            },
        }
    }

    /// The digest of object `id`, whose bytes `data` the caller holds: the one kept with the
    /// object, else computed now and kept (unless the object changed meanwhile).
    pub(crate) fn digest(&self, id: u128, data: &Bytes) -> [u8; 32] {
        let same = |stored: &Stored| {
            stored.bytes.as_ptr() == data.as_ptr() && stored.bytes.len() == data.len()
        };
        if let Some(digest) = self
            .read()
            .get(&id)
            .filter(|stored| same(stored))
            .and_then(|stored| stored.digest)
        {
            return digest;
        }
        let digest = auth::digest(data);
        if let Some(stored) = self.write().get_mut(&id).filter(|stored| same(stored)) {
            stored.digest = Some(digest);
        }
        digest
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<u128, Stored>> {
        self.objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<u128, Stored>> {
        self.objects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The object (a shared handle on the stored buffer, not a copy).
    pub(crate) fn get(&self, id: u128) -> Option<Bytes> {
        self.read().get(&id).map(|stored| stored.bytes.clone())
    }

    /// The object and, if it is in shared memory, its descriptor.
    pub(crate) fn get_shared(&self, id: u128) -> Option<(Bytes, Option<Descriptor>)> {
        self.read()
            .get(&id)
            .map(|stored| (stored.bytes.clone(), stored.shared))
    }

    /// The object and its descriptor for a same-host reader: an object of at most
    /// [`LAZY_MAX`] bytes still on the heap is copied into shared memory now (once; later
    /// gets share the copy, and readers that got the heap bytes keep them). A remote
    /// object is copied only if the charge against `quota` stays within it (see the
    /// module's documentation).
    pub(crate) fn share(&self, id: u128, quota: u64) -> Option<(Bytes, Option<Descriptor>)> {
        let (bytes, shared, remote) = self
            .read()
            .get(&id)
            .map(|stored| (stored.bytes.clone(), stored.shared, stored.remote))?;
        let arena = match &self.arena {
            Some(arena) if shared.is_none() && bytes.len() <= LAZY_MAX => arena,
            _ => return Some((bytes, shared)),
        };
        // The copy happens without the map's lock; below the threshold or without room: the
        // heap.
        let copied = if remote {
            let _admission = self.admission();
            // Once copied, the object's heap bytes are no longer charged; what the remote
            // pool's segments may then hold is what the rest of the charge leaves.
            let rest = self
                .remote_charged_besides_segments()
                .saturating_sub(bytes.len() as u64);
            arena.store_in(Pool::Remote, id, &bytes, quota.saturating_sub(rest))
        } else {
            arena.store(id, &bytes)
        };
        let Some((copy, descriptor)) = copied else {
            return Some((bytes, None));
        };
        let mut objects = self.write();
        let stored = objects.get_mut(&id)?;
        if stored.shared.is_none()
            && stored.bytes.as_ptr() == bytes.as_ptr()
            && stored.bytes.len() == bytes.len()
        {
            stored.bytes = copy;
            stored.shared = Some(descriptor);
            if stored.remote {
                self.remote_shared
                    .fetch_add(stored.len() as u64, Ordering::AcqRel);
            }
        }
        // Otherwise another reader shared it first (or the id was reused): theirs stands.
        Some((stored.bytes.clone(), stored.shared))
    }

    /// What the shared memory arena holds, if shared memory is on.
    pub(crate) fn shm_stats(&self) -> Option<ArenaStats> {
        self.arena.as_ref().map(Arena::stats)
    }

    /// Returns to the operating system the shared memory segments that have held no object
    /// (and had no slot pinned by a reader) for `idle`; the bytes released.
    pub(crate) fn release_idle_shared_memory(&self, idle: Duration) -> u64 {
        self.arena
            .as_ref()
            .map_or(0, |arena| arena.release_idle(idle))
    }

    fn admission(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admission
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Several objects under one lock.
    pub(crate) fn get_many(&self, ids: impl Iterator<Item = u128>) -> Vec<Option<Bytes>> {
        let objects = self.read();
        ids.map(|id| objects.get(&id).map(|stored| stored.bytes.clone()))
            .collect()
    }

    /// Whether an object is stored under `id`.
    pub(crate) fn contains(&self, id: u128) -> bool {
        self.read().contains_key(&id)
    }

    /// Stores several objects under fresh ids.
    pub(crate) fn insert_many(&self, items: impl Iterator<Item = (u128, Bytes)>) {
        // Copies into shared memory happen before the lock is taken.
        let placed: Vec<(u128, Stored)> =
            items.map(|(id, data)| (id, self.place(id, data))).collect();
        let mut objects = self.write();
        for (id, data) in placed {
            self.bytes.fetch_add(data.len() as u64, Ordering::AcqRel);
            if let Some(replaced) = objects.insert(id, data) {
                self.bytes
                    .fetch_sub(replaced.len() as u64, Ordering::AcqRel);
                self.forget_remote(&replaced);
            }
        }
    }

    /// A shared memory slot of `len` bytes for an object this process will write in place
    /// (`None` without an arena, below its threshold, or when it does not fit).
    pub(crate) fn reserve(&self, len: usize) -> Option<Reservation> {
        self.arena
            .as_ref()?
            .reserve(Pool::Local, len as u64, u64::MAX)
    }

    /// Makes room in shared memory for `count` objects of `len` bytes now (see
    /// [`Arena::make_room`]); 0 without an arena.
    pub(crate) fn make_room(&self, len: usize, count: u32) -> u32 {
        self.arena
            .as_ref()
            .map_or(0, |arena| arena.make_room(len as u64, count))
    }

    /// Stores the object written into `reservation` under the fresh id `id`: published in
    /// place when the slot is this map's arena's, else copied (a slot of another peer's arena,
    /// or one that could not be published) as an ordinary put.
    pub(crate) fn insert_reserved(&self, id: u128, reservation: Reservation) {
        let published = match &self.arena {
            Some(arena) if arena.holds(&reservation) => reservation.publish(id),
            _ => Err(reservation),
        };
        let stored = match published {
            Ok((bytes, descriptor)) => {
                // Proxies of it carry where it is, so same-host readers need not ask.
                crate::locations::record(id, &descriptor.encode());
                Stored {
                    digest: (bytes.len() > LAZY_MAX && self.digest_at_put)
                        .then(|| auth::digest(&bytes)),
                    bytes,
                    shared: Some(descriptor),
                    remote: false,
                }
            }
            Err(reservation) => self.place(id, Bytes::copy_from_slice(reservation.as_slice())),
        };
        let mut objects = self.write();
        self.bytes.fetch_add(stored.len() as u64, Ordering::AcqRel);
        if let Some(replaced) = objects.insert(id, stored) {
            self.bytes
                .fetch_sub(replaced.len() as u64, Ordering::AcqRel);
            self.forget_remote(&replaced);
        }
    }

    /// Stores `data` under `id` if the id is free (a future's value set in this process);
    /// `false` when it is taken.
    pub(crate) fn insert_new(&self, id: u128, data: Bytes) -> bool {
        if self.contains(id) {
            return false;
        }
        let data = self.place(id, data);
        match self.write().entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                self.bytes.fetch_add(data.len() as u64, Ordering::AcqRel);
                slot.insert(data);
                true
            }
        }
    }

    /// Stores `data` from a remote put under `id` if the id is free and what remote puts
    /// are charged (their bytes plus [`REMOTE_OBJECT_OVERHEAD`] each) stays within `quota`;
    /// `digest` is its digest, if known.
    pub(crate) fn insert_remote(
        &self,
        id: u128,
        data: Bytes,
        quota: u64,
        digest: Option<[u8; 32]>,
    ) -> Result<(), Refused> {
        // Kept on the heap, in the buffer libzmq received it into: copying it into shared
        // memory here would stall the server thread (see `share` for the lazy copy).
        let stored = Stored {
            bytes: data,
            shared: None,
            remote: true,
            digest,
        };
        let size = stored.len() as u64;
        let _admission = self.admission();
        let fits = |charged: u64| {
            charged
                .saturating_add(size)
                .saturating_add(REMOTE_OBJECT_OVERHEAD)
                <= quota
        };
        if !fits(self.remote_charged()) {
            // Shared memory kept for remote objects that are gone makes room first.
            if let Some(arena) = &self.arena {
                arena.release_free(Pool::Remote);
            }
        }
        let mut objects = self.write();
        if objects.contains_key(&id) {
            return Err(Refused::Taken);
        }
        let charged = self.remote_charged();
        if !fits(charged) {
            return Err(Refused::OverQuota(charged));
        }
        self.remote_bytes.fetch_add(size, Ordering::AcqRel);
        self.remote_objects.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(size, Ordering::AcqRel);
        objects.insert(id, stored);
        Ok(())
    }

    /// Bytes held for remote puts.
    pub(crate) fn remote_bytes(&self) -> u64 {
        self.remote_bytes.load(Ordering::Acquire)
    }

    /// What remote puts are charged against the quota: [`REMOTE_OBJECT_OVERHEAD`] per
    /// object, the bytes of those on the heap, and the shared memory segments made for
    /// remote objects.
    pub(crate) fn remote_charged(&self) -> u64 {
        let segments = self
            .arena
            .as_ref()
            .map_or(0, |arena| arena.stats().remote_reserved);
        self.remote_charged_besides_segments()
            .saturating_add(segments)
    }

    /// [`remote_charged`](Self::remote_charged) without the segments: the overhead and the
    /// bytes of remote objects on the heap.
    fn remote_charged_besides_segments(&self) -> u64 {
        let on_heap = self
            .remote_bytes
            .load(Ordering::Acquire)
            .saturating_sub(self.remote_shared.load(Ordering::Acquire));
        self.remote_objects
            .load(Ordering::Acquire)
            .saturating_mul(REMOTE_OBJECT_OVERHEAD)
            .saturating_add(on_heap)
    }

    /// Bytes of every object stored.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Removes the object, if any.
    pub(crate) fn remove(&self, id: u128) {
        crate::locations::forget(id);
        let mut objects = self.write();
        if let Some(removed) = objects.remove(&id) {
            self.bytes.fetch_sub(removed.len() as u64, Ordering::AcqRel);
            self.forget_remote(&removed);
        }
    }

    /// How many objects are stored.
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    /// Takes a removed object's bytes off the remote-put count, if another process stored
    /// it (called under the map's write lock).
    fn forget_remote(&self, removed: &Stored) {
        if removed.remote {
            self.remote_bytes
                .fetch_sub(removed.len() as u64, Ordering::AcqRel);
            self.remote_objects.fetch_sub(1, Ordering::AcqRel);
            if removed.shared.is_some() {
                self.remote_shared
                    .fetch_sub(removed.len() as u64, Ordering::AcqRel);
            }
        }
    }

    /// Removes every object.
    pub(crate) fn clear(&self) {
        let mut objects = self.write();
        objects.clear();
        self.remote_bytes.store(0, Ordering::Release);
        self.remote_objects.store(0, Ordering::Release);
        self.remote_shared.store(0, Ordering::Release);
        self.bytes.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_objects_are_not_free() {
        // 300,000 empty remote puts under a 1 MiB quota were all accepted when only payload
        // bytes counted (about 290 bytes of memory each): now each costs its overhead.
        let map = ObjectMap::default();
        let quota = 1 << 20;
        let accepted = (0..300_000u128)
            .take_while(|&id| map.insert_remote(id, Bytes::new(), quota, None).is_ok())
            .count() as u64;
        assert_eq!(accepted, quota / REMOTE_OBJECT_OVERHEAD);
        assert_eq!(map.remote_bytes(), 0);
        assert!(map.remote_charged() <= quota);
        map.remove(0);
        assert!(
            map.insert_remote(1 << 100, Bytes::new(), quota, None)
                .is_ok(),
            "an evict frees room"
        );
    }

    #[test]
    fn bytes_follow_every_insert_and_removal() {
        let map = ObjectMap::default();
        map.insert_many(
            [
                (1, Bytes::from(vec![0u8; 10])),
                (2, Bytes::from(vec![0u8; 20])),
            ]
            .into_iter(),
        );
        assert!(map.insert_new(3, Bytes::from(vec![0u8; 5])));
        assert!(!map.insert_new(3, Bytes::from(vec![0u8; 500])), "taken");
        let quota = 1000;
        assert_eq!(
            map.insert_remote(4, Bytes::from(vec![0u8; 7]), quota, None),
            Ok(())
        );
        let charged = 7 + REMOTE_OBJECT_OVERHEAD;
        assert_eq!(map.remote_charged(), charged);
        assert_eq!(
            map.insert_remote(5, Bytes::from(vec![0u8; 700]), quota, None),
            Err(Refused::OverQuota(charged))
        );
        assert_eq!((map.len(), map.bytes(), map.remote_bytes()), (4, 42, 7));
        map.remove(2);
        map.remove(4);
        map.remove(99);
        assert_eq!((map.len(), map.bytes(), map.remote_bytes()), (2, 15, 0));
        assert_eq!(map.remote_charged(), 0);
        map.clear();
        assert_eq!((map.len(), map.bytes()), (0, 0));
    }

    #[test]
    fn remote_objects_in_shared_memory_are_charged_their_segments() {
        let arena = Arena::new(64 << 10, 1 << 30).expect("boot id");
        let map = ObjectMap::with_arena(Some(arena));
        let quota = 3 << 20;
        let object = Bytes::from(vec![5u8; 1 << 20]);
        map.insert_remote(1, object.clone(), quota, None)
            .expect("fits");
        assert_eq!(map.remote_charged(), (1 << 20) + REMOTE_OBJECT_OVERHEAD);
        // Shared: the heap bytes are no longer charged, the whole segment is, and the
        // segment was made only as large as the quota allows.
        let (_, descriptor) = map.share(1, quota).expect("stored");
        assert!(descriptor.is_some(), "copied into shared memory");
        let segments = map.shm_stats().expect("arena").remote_reserved;
        assert!(segments >= 1 << 20);
        assert_eq!(map.remote_charged(), segments + REMOTE_OBJECT_OVERHEAD);
        assert!(map.remote_charged() <= quota);
        // A second object does not fit beside the segment...
        assert!(matches!(
            map.insert_remote(2, object.clone(), quota, None),
            Err(Refused::OverQuota(_))
        ));
        // ...until the first is evicted: its free segment is returned to make room.
        map.remove(1);
        assert_eq!(
            map.remote_charged(),
            segments,
            "kept for reuse until needed"
        );
        map.insert_remote(2, object.clone(), quota, None)
            .expect("room made");
        assert_eq!(map.shm_stats().expect("arena").remote_reserved, 0);
        assert_eq!(map.remote_charged(), (1 << 20) + REMOTE_OBJECT_OVERHEAD);
        // Local objects never count.
        map.insert_many(std::iter::once((3, object.clone())));
        let _ = map.share(3, quota);
        assert_eq!(map.remote_charged(), (1 << 20) + REMOTE_OBJECT_OVERHEAD);
        assert!(map.shm_stats().expect("arena").reserved > 0);
    }

    #[test]
    fn digests_are_computed_once_and_kept_with_the_object() {
        let map = ObjectMap::default();
        let data = Bytes::from(vec![9u8; 1000]);
        map.insert_many(std::iter::once((1, data.clone())));
        assert_eq!(map.read().get(&1).and_then(|s| s.digest), None, "lazy");
        let digest = map.digest(1, &data);
        assert_eq!(digest, auth::digest(&data));
        assert_eq!(map.read().get(&1).and_then(|s| s.digest), Some(digest));
        // A remote put keeps the digest its request proved.
        let remote = Bytes::from_static(b"remote");
        map.insert_remote(2, remote.clone(), 1000, Some(auth::digest(&remote)))
            .expect("stored");
        assert_eq!(map.digest(2, &remote), auth::digest(&remote));
        // Bytes that are not the stored object's are hashed but never kept.
        let other = Bytes::from(vec![9u8; 1000]);
        map.remove(1);
        map.insert_many(std::iter::once((1, Bytes::from(vec![8u8; 1000]))));
        assert_eq!(map.digest(1, &other), auth::digest(&other));
        assert_eq!(map.read().get(&1).and_then(|s| s.digest), None);
        // Large objects are hashed when stored if the peer proves its replies.
        let eager = ObjectMap::default().with_digests_at_put(true);
        let large = Bytes::from(vec![1u8; LAZY_MAX + 1]);
        eager.insert_many(std::iter::once((3, large.clone())));
        assert_eq!(
            eager.read().get(&3).and_then(|s| s.digest),
            Some(auth::digest(&large))
        );
    }
}
