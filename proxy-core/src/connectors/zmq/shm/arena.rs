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

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

#[derive(Debug, Default)]
struct State {
    /// Bytes of segments created.
    reserved: u64,
    segments: usize,
    /// Released slots by slot size (some possibly still pinned by readers).
    released: HashMap<u64, Vec<Slot>>,
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
}

/// What [`Arena::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ArenaStats {
    /// Bytes of objects held in shared memory.
    pub(crate) held: u64,
    /// Bytes of shared memory segments created (held objects, their rounding, free slots).
    pub(crate) reserved: u64,
    /// Segments created.
    pub(crate) segments: usize,
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
                pid: std::process::id(),
                held: AtomicU64::new(0),
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// Copies `data` into shared memory and returns it as a `Bytes` over the mapping, with
    /// its descriptor; `None` when it is below the size threshold or does not fit (then the
    /// caller keeps the heap copy).
    pub(crate) fn store(&self, id: u128, data: &[u8]) -> Option<(Bytes, Descriptor)> {
        let len = data.len() as u64;
        if len < self.inner.min_size {
            return None;
        }
        let class = size_class(len);
        let slot = self.allocate(class)?;
        let segment = &slot.segment;
        let offset = segment.layout.slot_offset(slot.index);
        let generation = layout::generation(&segment.mapping, slot.index)?;
        let (id_low, id_high) = layout::object_id(&segment.mapping, slot.index)?;
        let free = generation.load(Ordering::SeqCst);
        // Cannot fail (the class holds `len`, a free slot's generation is odd); if it did,
        // the slot stays out of use rather than be written outside or published twice.
        segment.mapping.slice(offset, len)?;
        if free % 2 == 0 {
            return None;
        }
        // SAFETY: `offset..offset + len` is inside the mapping (checked above) and the slot
        // is ours alone: it was free, and no reader reads it (its generation is odd, which
        // readers refuse, and its pin count was 0 after it became odd).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                segment.mapping.as_ptr().add(offset as usize),
                data.len(),
            );
        }
        // Published: the id, then the even generation after the bytes (`Release`: a reader
        // that loads it sees the whole object and its id).
        id_low.store(id as u64, Ordering::Relaxed);
        id_high.store((id >> 64) as u64, Ordering::Relaxed);
        let generation = free.wrapping_add(1);
        layout::generation(&segment.mapping, slot.index)?.store(generation, Ordering::SeqCst);
        let descriptor = Descriptor {
            boot: self.inner.boot,
            pid: self.inner.pid,
            fd: u32::try_from(segment.fd.as_raw_fd()).ok()?,
            token: segment.token,
            segment_len: segment.mapping.len() as u64,
            slot: slot.index,
            generation,
            offset,
            len,
        };
        self.inner.held.fetch_add(len, Ordering::AcqRel);
        let stored = StoredObject {
            arena: Arc::clone(&self.inner),
            slot: Some(slot),
            offset,
            len,
        };
        Some((Bytes::from_owner(stored), descriptor))
    }

    /// What the arena holds.
    pub(crate) fn stats(&self) -> ArenaStats {
        let state = lock(&self.inner.state);
        ArenaStats {
            held: self.inner.held.load(Ordering::Acquire),
            reserved: state.reserved,
            segments: state.segments,
        }
    }

    /// A free, unpinned slot of `class` bytes: a released one, else one of a new segment.
    fn allocate(&self, class: u64) -> Option<Slot> {
        let mut state = lock(&self.inner.state);
        if let Some(released) = state.released.get_mut(&class) {
            // The most recently released first: its pages are the likeliest to be cached.
            let ready = released.iter().rposition(|slot| {
                layout::pins(&slot.segment.mapping, slot.index)
                    .is_some_and(|pins| pins.load(Ordering::SeqCst) == 0)
            });
            if let Some(at) = ready {
                return Some(released.swap_remove(at));
            }
        }
        // As many slots as the segment target and the capacity left allow (the header
        // takes at most a page per 255 slots).
        let left = self.inner.capacity.saturating_sub(state.reserved);
        let room = left.saturating_sub(PAGE) / class;
        let slots = (SEGMENT_TARGET / class)
            .clamp(1, SLOTS_PER_SEGMENT)
            .min(room);
        let layout = Layout::new(class, slots)?;
        let size = layout.total_len();
        if state.segments >= MAX_SEGMENTS || size > left {
            return None;
        }
        // Created under the lock: puts of this class wait for it rather than all create one.
        let segment = match Segment::create(layout) {
            Ok(segment) => Arc::new(segment),
            Err(error) => {
                tracing::debug!(%error, bytes = size, "zmq peer: no shared memory segment; object stays on the heap");
                return None;
            }
        };
        state.reserved += size;
        state.segments += 1;
        let released = state.released.entry(class).or_default();
        released.extend((1..slots).map(|index| Slot {
            segment: Arc::clone(&segment),
            index,
        }));
        Some(Slot { segment, index: 0 })
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
        let class = slot.segment.layout.slot_size;
        lock(&self.state)
            .released
            .entry(class)
            .or_default()
            .push(slot);
    }
}

impl Segment {
    fn create(layout: Layout) -> std::io::Result<Segment> {
        let fd = sys::create_memory_file("proxystore-zmq", layout.total_len())?;
        let mapping = sys::map(fd.as_fd(), layout.total_len())?;
        let token = crate::ids::new_id();
        layout.write_header(&mapping, token, std::process::id());
        Ok(Segment {
            fd,
            mapping,
            layout,
            token,
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
