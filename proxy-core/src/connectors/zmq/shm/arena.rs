//! The owner's side: an arena of pre-faulted shared memory segments that large objects are
//! copied into once, recycled slot by slot.
//!
//! Objects are grouped by size class (four classes per doubling, page multiples). Each class
//! has segments of up to [`SLOTS_PER_SEGMENT`] slots (about [`SEGMENT_TARGET`] bytes),
//! each segment one sealed memory file, allocated and mapped once (no page fault when an
//! object is written). A stored object is a [`Bytes`] whose owner holds its slot: local gets
//! share it, and when the last handle is dropped (the object was evicted and nobody in this
//! process reads it any more) the slot is released:
//!
//! 1. its generation is bumped to the next odd number (free), so descriptors handed out for
//!    the old object stop matching;
//! 2. it is reused only once its pin count is 0, that is when no reader in another process
//!    still holds its bytes; while the new object is copied in, the generation stays odd,
//!    and only after the copy are the object's id and then the next even generation stored
//!    (`Release`), which the descriptor carries.
//!
//! A reader pins (increments) first and then checks the generation; the owner bumps the
//! generation first and then checks the pins (both sequentially consistent), so either the
//! owner sees the pin and waits, or the reader sees the new generation and backs off. A
//! reader accepts only an even generation equal to its descriptor's and the object id it
//! asked for, so even a forged descriptor naming a slot's next generation never pins a slot
//! while its bytes are being written (see `layout`).
//!
//! A reader that crashes while holding pins leaks its slots until this process ends (the
//! kernel frees the memory files with it); at most every slot of the arena, which is
//! bounded by its capacity. Objects that do not fit (arena full, or no more segments can be
//! created) stay on the heap and travel over TCP.
//!
//! **Pools.** Segments hold either this process's own objects ([`Pool::Local`], bounded by
//! the capacity) or objects other processes stored here ([`Pool::Remote`]): the bytes of the
//! remote pool's segments, free slots included, count against the peer's quota, so a store
//! into it names the most bytes that pool may reserve, and a new segment is sized to fit.
//!
//! **Giving memory back.** A segment whose every slot is free and unpinned is returned to
//! the operating system (unmapped and closed, and marked retired for readers' caches) once it
//! has stayed so for the idle time ([`Arena::release_idle`], called by the server thread),
//! or at once when a new segment would not fit otherwise ([`Arena::release_free`], and in
//! `allocate`). A segment with an object in it, with a slot a reader has pinned, or used
//! within the idle time stays mapped and pre-faulted. Nothing is ever unmapped while an object
//! of this process or a reader's pin may still use it: a stored object's slot keeps its
//! segment alive, and a pinned slot keeps it from being released. A reader that still has
//! the segment mapped keeps the pages until its cache drops the retired mapping; it can only
//! read odd (free) generations there, so it finds no object and reads over TCP.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::descriptor::Descriptor;
use super::layout::{self, Layout, PAGE};
use super::sys::{self, Mapping};

/// Bytes a segment aims at (fewer for classes above it: one slot each).
pub(crate) const SEGMENT_TARGET: u64 = 16 << 20;
/// Most slots in one segment.
pub(crate) const SLOTS_PER_SEGMENT: u64 = layout::MAX_SLOTS;
/// Most segments (open memory files) per arena.
const MAX_SEGMENTS: usize = 512;

/// Where a process's large objects live in shared memory. Clones share the arena.
#[derive(Clone, Debug)]
pub(crate) struct Arena {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    min_size: u64,
    capacity: u64,
    boot: [u8; 16],
    pid: u32,
    /// Bytes of objects held (their lengths).
    held: AtomicU64,
    state: Mutex<State>,
}

/// Whose objects a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Pool {
    /// Objects this process stored itself (bounded by the arena's capacity).
    Local,
    /// Objects other processes stored here (remote puts): the pool's segments count against
    /// the peer's quota.
    Remote,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes of segments held (both pools).
    reserved: u64,
    /// Bytes of the remote pool's segments.
    remote_reserved: u64,
    /// Every segment held, by token.
    segments: HashMap<u128, SegmentUse>,
    /// Released slots by pool and slot size (some possibly still pinned by readers).
    released: HashMap<(Pool, u64), Vec<Slot>>,
}

/// A segment held, and how much of it is in use.
#[derive(Debug)]
struct SegmentUse {
    segment: Arc<Segment>,
    /// Slots not holding an object (released, possibly pinned).
    free: u64,
    /// When a slot was last taken or given back.
    since: Instant,
}

impl SegmentUse {
    /// Whether no object of this process is in the segment.
    fn is_free(&self) -> bool {
        self.free == self.segment.layout.slot_count
    }
}

/// One slot of one segment.
#[derive(Debug)]
struct Slot {
    segment: Arc<Segment>,
    index: u64,
}

/// A memory file of this process, mapped.
#[derive(Debug)]
struct Segment {
    fd: OwnedFd,
    mapping: Mapping,
    layout: Layout,
    token: u128,
    pool: Pool,
}

/// What [`Arena::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ArenaStats {
    /// Bytes of objects held in shared memory.
    pub(crate) held: u64,
    /// Bytes of shared memory segments held (held objects, their rounding, free slots not
    /// yet returned to the operating system).
    pub(crate) reserved: u64,
    /// Of those, bytes of the segments that hold objects other processes stored here.
    pub(crate) remote_reserved: u64,
    /// Segments held.
    pub(crate) segments: usize,
    /// The most bytes of segments the arena holds.
    pub(crate) capacity: u64,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The slot size for an object of `len` bytes: `len` rounded up to a quarter of its power
/// of two, and to whole pages (at most 25% wasted).
pub(crate) fn size_class(len: u64) -> u64 {
    let len = len.max(PAGE);
    let top = 1u64 << (63 - len.leading_zeros());
    let step = (top / 4).max(PAGE);
    len.div_ceil(step).saturating_mul(step)
}

impl Arena {
    /// An arena for objects of at least `min_size` bytes, creating at most `capacity` bytes
    /// of segments; `None` where shared memory cannot be used (no boot id to tell readers
    /// which machine this is).
    pub(crate) fn new(min_size: u64, capacity: u64) -> Option<Arena> {
        let boot = sys::boot_id()?;
        Some(Arena {
            inner: Arc::new(Inner {
                min_size: min_size.max(1),
                capacity,
                boot,
                pid: crate::process_id::current(),
                held: AtomicU64::new(0),
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// Copies `data`, an object of this process, into shared memory and returns it as a
    /// `Bytes` over the mapping, with its descriptor; `None` when it is below the size
    /// threshold or does not fit (then the caller keeps the heap copy).
    pub(crate) fn store(&self, id: u128, data: &[u8]) -> Option<(Bytes, Descriptor)> {
        self.store_in(Pool::Local, id, data, u64::MAX)
    }

    /// [`store`](Self::store) into `pool`, whose segments may then hold at most `limit`
    /// bytes in all (a new segment is made only that small; a free slot of the object's
    /// class is taken whatever the limit, since it reserves nothing more).
    pub(crate) fn store_in(
        &self,
        pool: Pool,
        id: u128,
        data: &[u8],
        limit: u64,
    ) -> Option<(Bytes, Descriptor)> {
        let mut reservation = self.reserve(pool, data.len() as u64, limit)?;
        reservation.as_mut_slice().copy_from_slice(data);
        reservation.publish(id).ok()
    }

    /// Takes a free slot of `len` bytes in `pool` (within `limit`, as in
    /// [`store_in`](Self::store_in)) for an object to be written in place: `None` when `len`
    /// is below the size threshold or does not fit. The slot's bytes are the caller's alone
    /// until [`Reservation::publish`]; no reader can pin it meanwhile (its generation is odd).
    pub(crate) fn reserve(&self, pool: Pool, len: u64, limit: u64) -> Option<Reservation> {
        if len < self.inner.min_size {
            return None;
        }
        let class = size_class(len);
        let slot = self.allocate(pool, class, limit)?;
        let offset = slot.segment.layout.slot_offset(slot.index);
        let free = layout::generation(&slot.segment.mapping, slot.index)?.load(Ordering::SeqCst);
        // Cannot fail (the class holds `len`, a free slot's generation is odd); if it did,
        // the slot stays out of use rather than be written outside or published twice (and
        // its segment is never released).
        slot.segment.mapping.slice(offset, len)?;
        if free % 2 == 0 {
            return None;
        }
        Some(Reservation {
            arena: Arc::clone(&self.inner),
            slot: Some(slot),
            offset,
            len,
            free_generation: free,
        })
    }

    /// Creates room for `count` objects of `len` bytes in the local pool on a background
    /// thread: takes that many slots at once (so that distinct slots, and segments, are
    /// made, pre-faulted), then gives them back to the free list, where puts and
    /// [`reserve`](Self::reserve) find them. Stops at the capacity.
    pub(crate) fn prewarm(&self, len: u64, count: u32) {
        let arena = self.clone();
        let spawned = std::thread::Builder::new()
            .name("proxystore-shm-prewarm".to_string())
            .spawn(move || {
                let made = arena.make_room(len, count);
                tracing::debug!(
                    objects = made,
                    bytes = len,
                    "zmq peer: shared memory prewarmed"
                );
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "zmq peer: could not start prewarming shared memory");
        }
    }

    /// Makes room for `count` objects of `len` bytes in the local pool now, on this thread:
    /// takes that many slots at once (distinct slots, so their segments are made and
    /// pre-faulted), then gives them back to the free list. Returns how many slots there
    /// are (fewer than `count` when the capacity stops it, 0 below the threshold).
    pub(crate) fn make_room(&self, len: u64, count: u32) -> u32 {
        let held: Vec<Reservation> = (0..count)
            .map_while(|_| self.reserve(Pool::Local, len, u64::MAX))
            .collect();
        u32::try_from(held.len()).unwrap_or(u32::MAX)
    }

    /// Whether `reservation` is a slot of this arena (and not of another peer's).
    pub(crate) fn holds(&self, reservation: &Reservation) -> bool {
        Arc::ptr_eq(&self.inner, &reservation.arena)
    }

    /// What the arena holds.
    pub(crate) fn stats(&self) -> ArenaStats {
        let state = lock(&self.inner.state);
        ArenaStats {
            held: self.inner.held.load(Ordering::Acquire),
            reserved: state.reserved,
            remote_reserved: state.remote_reserved,
            segments: state.segments.len(),
            capacity: self.inner.capacity,
        }
    }

    /// Returns to the operating system every segment that has had no object and no pinned
    /// slot for at least `idle`; the bytes released.
    pub(crate) fn release_idle(&self, idle: Duration) -> u64 {
        self.release_idle_at(idle, Instant::now())
    }

    /// [`release_idle`](Self::release_idle) as if it were `now`.
    fn release_idle_at(&self, idle: Duration, now: Instant) -> u64 {
        let released = lock(&self.inner.state)
            .release_free(|used| now.saturating_duration_since(used.since) >= idle);
        // Unmapped here, after the lock.
        released
            .iter()
            .map(|segment| segment.mapping.len() as u64)
            .sum()
    }

    /// Returns to the operating system every segment of `pool` that has no object and no
    /// pinned slot, however recently used (to make room under the quota); the bytes
    /// released.
    pub(crate) fn release_free(&self, pool: Pool) -> u64 {
        let released = lock(&self.inner.state).release_free(|used| used.segment.pool == pool);
        released
            .iter()
            .map(|segment| segment.mapping.len() as u64)
            .sum()
    }

    /// A free, unpinned slot of `class` bytes in `pool`: a released one, else one of a new
    /// segment, which keeps the pool's segments within `limit` bytes and the arena's within
    /// its capacity (wholly free segments are returned to the operating system first if
    /// that makes it fit).
    fn allocate(&self, pool: Pool, class: u64, limit: u64) -> Option<Slot> {
        // Declared before the guard, so dropped (unmapped) after it is released.
        let mut unmapped: Vec<Arc<Segment>> = Vec::new();
        let mut state = lock(&self.inner.state);
        let now = Instant::now();
        if let Some(released) = state.released.get_mut(&(pool, class)) {
            // The most recently released first: its pages are the likeliest to be cached.
            let ready = released.iter().rposition(|slot| {
                layout::pins(&slot.segment.mapping, slot.index)
                    .is_some_and(|pins| pins.load(Ordering::SeqCst) == 0)
            });
            if let Some(at) = ready {
                let slot = released.swap_remove(at);
                if let Some(used) = state.segments.get_mut(&slot.segment.token) {
                    used.free = used.free.saturating_sub(1);
                    used.since = now;
                }
                return Some(slot);
            }
        }
        let mut layout = None;
        for attempt in 0..2 {
            // As many slots as the segment target and the room left allow (the header
            // takes at most a page per 255 slots).
            let pool_reserved = match pool {
                Pool::Local => 0,
                Pool::Remote => state.remote_reserved,
            };
            let capacity_left = self.inner.capacity.saturating_sub(state.reserved);
            let pool_left = limit.saturating_sub(pool_reserved);
            let left = capacity_left.min(pool_left);
            let room = left.saturating_sub(PAGE) / class;
            let slots = (SEGMENT_TARGET / class)
                .clamp(1, SLOTS_PER_SEGMENT)
                .min(room);
            layout = Layout::new(class, slots)
                .filter(|layout| layout.total_len() <= left && state.segments.len() < MAX_SEGMENTS);
            if layout.is_some() || attempt > 0 {
                break;
            }
            // Segments that hold nothing make room: this pool's for its limit, any for the
            // capacity or the count of segments.
            let by_capacity = capacity_left <= pool_left || state.segments.len() >= MAX_SEGMENTS;
            let freed = state.release_free(|used| by_capacity || used.segment.pool == pool);
            if freed.is_empty() {
                break;
            }
            unmapped.extend(freed);
        }
        let layout = layout?;
        let size = layout.total_len();
        let slots = layout.slot_count;
        // Created under the lock: puts of this class wait for it rather than all create one.
        let segment = match Segment::create(layout, pool) {
            Ok(segment) => Arc::new(segment),
            Err(error) => {
                tracing::debug!(%error, bytes = size, "zmq peer: no shared memory segment; object stays on the heap");
                return None;
            }
        };
        state.reserved += size;
        if pool == Pool::Remote {
            state.remote_reserved += size;
        }
        state.segments.insert(
            segment.token,
            SegmentUse {
                segment: Arc::clone(&segment),
                free: slots - 1,
                since: now,
            },
        );
        let released = state.released.entry((pool, class)).or_default();
        released.extend((1..slots).map(|index| Slot {
            segment: Arc::clone(&segment),
            index,
        }));
        Some(Slot { segment, index: 0 })
    }
}

impl State {
    /// Takes out every segment with no object and no pinned slot that `release` selects,
    /// with its free slots; the caller drops them (which unmaps and closes them and marks
    /// them retired), preferably after releasing the lock.
    fn release_free(&mut self, release: impl Fn(&SegmentUse) -> bool) -> Vec<Arc<Segment>> {
        let chosen: Vec<u128> = self
            .segments
            .iter()
            .filter(|(_, used)| used.is_free() && release(used) && !used.segment.is_pinned())
            .map(|(token, _)| *token)
            .collect();
        let mut out = Vec::with_capacity(chosen.len());
        for token in chosen {
            let Some(used) = self.segments.remove(&token) else {
                continue;
            };
            let segment = used.segment;
            let size = segment.layout.total_len();
            self.reserved = self.reserved.saturating_sub(size);
            if segment.pool == Pool::Remote {
                self.remote_reserved = self.remote_reserved.saturating_sub(size);
            }
            let key = (segment.pool, segment.layout.slot_size);
            if let Some(released) = self.released.get_mut(&key) {
                released.retain(|slot| slot.segment.token != token);
                if released.is_empty() {
                    self.released.remove(&key);
                }
            }
            tracing::debug!(
                bytes = size,
                pool = ?segment.pool,
                "zmq peer: shared memory segment returned to the operating system"
            );
            out.push(segment);
        }
        out
    }
}

impl Inner {
    /// Takes back a slot whose object is gone from this process.
    fn release(&self, slot: Slot, len: u64) {
        // Even (published) to odd (free): descriptors of the old object stop matching.
        if let Some(generation) = layout::generation(&slot.segment.mapping, slot.index) {
            generation.fetch_add(1, Ordering::SeqCst);
        }
        self.held.fetch_sub(len, Ordering::AcqRel);
        self.give_back_unpublished(slot);
    }

    /// Puts a free slot (odd generation, nothing counted as held) back on its class's free
    /// list: a reserved slot that never held a published object, or one just released.
    fn give_back_unpublished(&self, slot: Slot) {
        let key = (slot.segment.pool, slot.segment.layout.slot_size);
        let mut state = lock(&self.state);
        if let Some(used) = state.segments.get_mut(&slot.segment.token) {
            used.free += 1;
            used.since = Instant::now();
        }
        state.released.entry(key).or_default().push(slot);
    }
}

impl Segment {
    fn create(layout: Layout, pool: Pool) -> std::io::Result<Segment> {
        let fd = sys::create_memory_file("proxystore-zmq", layout.total_len())?;
        let mapping = sys::map(fd.as_fd(), layout.total_len())?;
        let token = crate::ids::new_id();
        layout.write_header(&mapping, token, crate::process_id::current());
        Ok(Segment {
            fd,
            mapping,
            layout,
            token,
            pool,
        })
    }

    /// Whether a reader has pinned any slot (it may still read an object there).
    fn is_pinned(&self) -> bool {
        (0..self.layout.slot_count).any(|slot| {
            // A slot table that cannot be read counts as pinned: never released.
            layout::pins(&self.mapping, slot).is_none_or(|pins| pins.load(Ordering::SeqCst) != 0)
        })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Tells readers' caches that nothing new will come from this segment.
        if let Some(retired) = layout::retired(&self.mapping) {
            retired.store(1, Ordering::SeqCst);
        }
    }
}

/// A free slot taken for an object that is being written in place ([`Arena::reserve`]).
///
/// Until [`publish`](Self::publish) the slot's generation stays odd, so no reader in another
/// process accepts a descriptor for it, and it is on no free list, so no other object takes
/// it: its bytes are this value's alone. Dropped unpublished, the slot goes back to the free
/// list as it was (still odd, nothing published).
pub(crate) struct Reservation {
    arena: Arc<Inner>,
    slot: Option<Slot>,
    offset: u64,
    len: u64,
    /// The slot's (odd) generation when it was taken.
    free_generation: u64,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("len", &self.len)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// The object's length.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// The object's bytes, as written so far (a recycled slot starts with an earlier object
    /// of this process).
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.slot
            .as_ref()
            .and_then(|slot| slot.segment.mapping.slice(self.offset, self.len))
            .unwrap_or_default()
    }

    /// The object's bytes, to write.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        let Some(slot) = &self.slot else {
            return &mut [];
        };
        if slot.segment.mapping.slice(self.offset, self.len).is_none() {
            return &mut [];
        }
        // SAFETY: `offset..offset + len` is inside the mapping (checked just above, and in
        // `reserve`), which is mapped writable by this process and lives as long as the
        // segment this slot holds. The slot is this reservation's alone (see the type's
        // docs), and `&mut self` makes this the only view of it until it is dropped.
        unsafe {
            std::slice::from_raw_parts_mut(
                slot.segment.mapping.as_ptr().add(self.offset as usize),
                self.len as usize,
            )
        }
    }

    /// Publishes the written bytes as object `id`: stores the id and then the next (even)
    /// generation, after which readers may map it. Returns the object as a `Bytes` over the
    /// mapping with its descriptor; the reservation back if its slot table cannot be
    /// written (it cannot happen for a slot `reserve` returned; the caller then copies the
    /// bytes out).
    pub(crate) fn publish(mut self, id: u128) -> Result<(Bytes, Descriptor), Reservation> {
        let Some(slot) = self.slot.take() else {
            return Err(self);
        };
        let segment = &slot.segment;
        let fd = u32::try_from(segment.fd.as_raw_fd()).ok();
        let (Some(fd), Some(generation), Some((id_low, id_high)), Some(object_len)) = (
            fd,
            layout::generation(&segment.mapping, slot.index),
            layout::object_id(&segment.mapping, slot.index),
            layout::object_len(&segment.mapping, slot.index),
        ) else {
            self.slot = Some(slot);
            return Err(self);
        };
        // Published: the id, then the even generation after the bytes (`SeqCst`: a reader
        // that loads it sees the whole object and its id).
        id_low.store(id as u64, Ordering::Relaxed);
        id_high.store((id >> 64) as u64, Ordering::Relaxed);
        object_len.store(self.len, Ordering::Relaxed);
        let published = self.free_generation.wrapping_add(1);
        generation.store(published, Ordering::SeqCst);
        let descriptor = Descriptor {
            boot: self.arena.boot,
            pid: self.arena.pid,
            fd,
            token: segment.token,
            segment_len: segment.mapping.len() as u64,
            slot: slot.index,
            generation: published,
            offset: self.offset,
            len: self.len,
        };
        self.arena.held.fetch_add(self.len, Ordering::AcqRel);
        let stored = StoredObject {
            arena: Arc::clone(&self.arena),
            slot: Some(slot),
            offset: self.offset,
            len: self.len,
        };
        Ok((Bytes::from_owner(stored), descriptor))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.arena.give_back_unpublished(slot);
        }
    }
}

/// The owner of a stored object's bytes: its slot, released on drop.
struct StoredObject {
    arena: Arc<Inner>,
    slot: Option<Slot>,
    offset: u64,
    len: u64,
}

impl AsRef<[u8]> for StoredObject {
    fn as_ref(&self) -> &[u8] {
        self.slot
            .as_ref()
            .and_then(|slot| slot.segment.mapping.slice(self.offset, self.len))
            .unwrap_or_default()
    }
}

impl Drop for StoredObject {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.arena.release(slot, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> Arena {
        Arena::new(64 << 10, 256 << 20).expect("boot id")
    }

    /// Pins (`+1`) or unpins (`-1`) the released slot at `ptr` as a reader would.
    fn pin(arena: &Arena, ptr: *const u8, delta: i64) {
        let state = lock(&arena.inner.state);
        let slot = state
            .released
            .values()
            .flatten()
            .find(|slot| slot.segment.mapping.contains(ptr))
            .expect("released slot");
        let pins = layout::pins(&slot.segment.mapping, slot.index).expect("pins");
        if delta > 0 {
            pins.fetch_add(1, Ordering::SeqCst);
        } else {
            pins.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn size_classes_round_up_by_at_most_a_quarter() {
        assert_eq!(size_class(1), PAGE);
        assert_eq!(size_class(64 << 10), 64 << 10);
        assert_eq!(size_class((64 << 10) + 1), 80 << 10);
        assert_eq!(size_class((1 << 20) + 8), (1 << 20) + (256 << 10));
        assert_eq!(size_class(16 << 20), 16 << 20);
        for len in [4097u64, 70_000, 1 << 20, 3 << 20, (16 << 20) + 1, 1 << 30] {
            let class = size_class(len);
            assert!(
                class >= len && class.is_multiple_of(PAGE),
                "{len} -> {class}"
            );
            assert!(class - len <= len / 4 + PAGE, "{len} -> {class}");
        }
    }

    #[test]
    fn small_objects_stay_out_and_large_ones_round_trip() {
        let arena = arena();
        assert!(arena.store(1001, &[1u8; 1000]).is_none());
        let data: Vec<u8> = (0..(1 << 20) + 8).map(|i| (i % 251) as u8).collect();
        let (bytes, descriptor) = arena.store(1002, &data).expect("stored");
        assert_eq!(&bytes[..], &data[..]);
        assert_eq!(descriptor.len, data.len() as u64);
        assert_eq!(descriptor.pid, std::process::id());
        assert_eq!(arena.stats().held, data.len() as u64);
        drop(bytes);
        assert_eq!(arena.stats().held, 0);
    }

    #[test]
    fn the_last_released_slot_is_reused_first_with_a_new_generation() {
        let arena = arena();
        let (first, before) = arena.store(1003, &[1u8; 100_000]).expect("stored");
        let clone = first.clone();
        drop(first);
        let (other, during) = arena.store(1004, &[3u8; 100_000]).expect("stored");
        assert_ne!(
            during.slot, before.slot,
            "a slot still held in this process was reused"
        );
        drop(clone);
        let (second, after) = arena.store(1005, &[2u8; 100_000]).expect("stored");
        assert_eq!((after.token, after.slot), (before.token, before.slot));
        assert_eq!(after.generation, before.generation + 2);
        assert!(second.iter().all(|&b| b == 2));
        assert!(other.iter().all(|&b| b == 3));
        assert_eq!(arena.stats().segments, 1);
    }

    #[test]
    fn a_pinned_slot_is_not_reused_until_unpinned() {
        let arena = Arena::new(64 << 10, 1 << 30).expect("boot id");
        // Above the segment target: one slot per segment, so reuse is visible.
        let big = vec![5u8; (SEGMENT_TARGET + 1) as usize];
        let (first, _) = arena.store(1006, &big).expect("stored");
        let ptr = first.as_ptr();
        drop(first);
        let (second, _) = arena.store(1007, &big).expect("stored");
        assert_eq!(second.as_ptr(), ptr, "a released, unpinned slot is reused");
        drop(second);
        pin(&arena, ptr, 1);
        let (third, _) = arena.store(1008, &big).expect("stored");
        assert_ne!(third.as_ptr(), ptr, "a pinned slot was reused");
        assert_eq!(arena.stats().segments, 2);
        pin(&arena, ptr, -1);
        let (fourth, _) = arena.store(1009, &big).expect("stored");
        assert_eq!(fourth.as_ptr(), ptr, "an unpinned slot is reusable again");
        drop((third, fourth));
    }

    #[test]
    fn a_segment_free_for_the_idle_time_is_released_and_one_in_use_kept() {
        let arena = arena();
        let idle = Duration::from_secs(10);
        let (gone, _) = arena.store(1020, &[1u8; 100_000]).expect("stored");
        let (kept, _) = arena.store(1021, &[2u8; 1 << 20]).expect("stored");
        let both = arena.stats();
        assert_eq!(both.segments, 2);
        drop(gone);
        // Used moments ago: kept, pre-faulted, for the next object of its class.
        assert_eq!(arena.release_idle(idle), 0);
        assert_eq!(arena.stats().reserved, both.reserved);
        // Free for the idle time: returned; the one holding an object stays.
        let later = Instant::now() + idle;
        let released = arena.release_idle_at(idle, later);
        assert!(released > 0);
        let after = arena.stats();
        assert_eq!(
            (after.segments, after.reserved),
            (1, both.reserved - released)
        );
        assert_eq!(arena.release_idle_at(idle, later + idle * 100), 0);
        assert!(kept.iter().all(|&b| b == 2));
        // The class works again (a new segment).
        let (again, _) = arena.store(1022, &[3u8; 100_000]).expect("stored");
        assert!(again.iter().all(|&b| b == 3));
        assert_eq!(arena.stats().segments, 2);
        drop((kept, again));
        assert!(arena.release_idle_at(idle, Instant::now() + idle) > 0);
        assert_eq!(arena.stats().reserved, 0);
    }

    #[test]
    fn a_segment_with_a_pinned_slot_is_never_released() {
        let arena = Arena::new(64 << 10, 1 << 30).expect("boot id");
        let big = vec![5u8; (SEGMENT_TARGET + 1) as usize];
        let (object, _) = arena.store(1023, &big).expect("stored");
        let ptr = object.as_ptr();
        drop(object);
        pin(&arena, ptr, 1);
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(arena.release_idle_at(Duration::ZERO, far), 0);
        assert_eq!(arena.release_free(Pool::Local), 0);
        assert_eq!(arena.stats().segments, 1, "a pinned segment was released");
        pin(&arena, ptr, -1);
        assert!(arena.release_idle_at(Duration::ZERO, far) > SEGMENT_TARGET);
        assert_eq!(arena.stats().segments, 0);
    }

    #[test]
    fn free_segments_of_other_classes_make_room() {
        // Before: segments were kept until the process ended, so a capacity filled by one
        // class turned every other class away even when all of it was free.
        let arena = Arena::new(64 << 10, 40 << 20).expect("boot id");
        let (first, _) = arena.store(1024, &vec![1u8; 20 << 20]).expect("fits");
        drop(first);
        let (other, _) = arena
            .store(1025, &vec![2u8; 24 << 20])
            .expect("the free 20 MiB segment made room for a 24 MiB one");
        assert!(arena.stats().reserved <= 40 << 20);
        assert_eq!(arena.stats().segments, 1);
        drop(other);
    }

    #[test]
    fn the_remote_pool_stays_within_its_limit() {
        let arena = arena();
        let limit = 3 << 20;
        let object = vec![7u8; 1 << 20];
        let mut held = Vec::new();
        for id in 0..10 {
            match arena.store_in(Pool::Remote, id, &object, limit) {
                Some((bytes, _)) => held.push(bytes),
                None => break,
            }
            let stats = arena.stats();
            assert!(stats.remote_reserved <= limit, "{stats:?}");
            assert_eq!(stats.remote_reserved, stats.reserved);
        }
        assert_eq!(held.len(), 2, "two 1 MiB slots and a header fit in 3 MiB");
        // Local objects do not take the remote pool's slots, nor count in it.
        let (local, _) = arena.store(99, &object).expect("local");
        assert!(arena.stats().reserved > arena.stats().remote_reserved);
        // Freed: released at once on demand (a quota refusal), local segments kept.
        drop(held);
        assert!(arena.release_free(Pool::Remote) > 0);
        assert_eq!(arena.stats().remote_reserved, 0);
        assert_eq!(arena.stats().segments, 1);
        drop(local);
    }

    #[test]
    fn the_capacity_bounds_the_segments() {
        let arena = Arena::new(64 << 10, 40 << 20).expect("boot id");
        let big = vec![1u8; 20 << 20];
        let (kept, _) = arena.store(1010, &big).expect("first fits");
        assert!(
            arena.store(1011, &big).is_none(),
            "a second 20 MiB segment exceeds 40 MiB"
        );
        assert!(arena.stats().reserved <= 40 << 20);
        drop(kept);
        assert!(
            arena.store(1012, &big).is_some(),
            "the released slot is reused"
        );
    }
}
