//! The reader's side: turns a [`Descriptor`] from a peer on this machine into a `Bytes`
//! over the peer's shared memory, without copying.
//!
//! The reader opens the segment through `/proc/PID/fd/FD` (the kernel allows it only to the
//! owner's user, or root), checks that the file is sealed against shrinking and that its
//! header carries the descriptor's token, maps it once (mappings are cached per segment and
//! reused for every later object in it), pins the slot and checks its generation. The
//! returned `Bytes` unpins the slot when its last clone is dropped.
//!
//! Whatever stops this (another machine, a file that cannot be opened, an object evicted in
//! the meantime) is a [`Miss`]: the caller asks again over TCP. Numbers in a descriptor that
//! do not fit the segment are a [`Miss::Invalid`], which the caller reports as an error.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use super::descriptor::Descriptor;
use super::layout::{self, Layout};
use super::sys::{self, Mapping};

/// Most segments kept mapped by this process (beyond this, unused mappings are dropped).
const MAX_CACHED: usize = 1024;
/// Most peers remembered as unreachable through shared memory.
const MAX_UNUSABLE: usize = 4096;

/// Why a descriptor did not give the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Miss {
    /// The owner runs on another machine (or another boot of this one).
    OtherHost,
    /// The segment cannot be opened or mapped here (another user, another PID namespace,
    /// the owner has exited, ...): the reason.
    Unusable(String),
    /// The object was evicted (its slot moved on) since the descriptor was made.
    Stale,
    /// The descriptor does not fit the segment it names: the reason.
    Invalid(String),
}

impl Miss {
    /// Whether shared memory with this peer will not work next time either.
    pub(crate) fn is_lasting(&self) -> bool {
        matches!(self, Miss::OtherHost | Miss::Unusable(_))
    }
}

/// A segment of another process (or of another connector of this one), mapped here.
#[derive(Debug)]
struct Mapped {
    mapping: Mapping,
    layout: Layout,
}

type SegmentId = (u32, u32, u128);

fn cache() -> &'static Mutex<HashMap<SegmentId, Arc<Mapped>>> {
    static CACHE: OnceLock<Mutex<HashMap<SegmentId, Arc<Mapped>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn unusable_peers() -> &'static Mutex<HashSet<String>> {
    static PEERS: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    PEERS.get_or_init(Default::default)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether an earlier attempt showed that `peer`'s shared memory cannot be read here.
pub(crate) fn is_unusable(peer: &str) -> bool {
    lock(unusable_peers()).contains(peer)
}

/// Remembers that `peer`'s shared memory cannot be read here: later gets ask for bytes.
pub(crate) fn mark_unusable(peer: &str, miss: &Miss) {
    tracing::debug!(peer = %peer, reason = ?miss, "zmq: reading this peer over TCP, not shared memory");
    let mut peers = lock(unusable_peers());
    if peers.len() >= MAX_UNUSABLE {
        peers.clear();
    }
    peers.insert(peer.to_string());
}

/// The object `descriptor` names, read in place from its owner's shared memory.
pub(crate) fn read(descriptor: &Descriptor) -> Result<Bytes, Miss> {
    if sys::boot_id() != Some(descriptor.boot) {
        return Err(Miss::OtherHost);
    }
    let mapped = mapped(descriptor)?;
    if mapped.mapping.len() as u64 != descriptor.segment_len {
        return Err(Miss::Invalid(format!(
            "shared memory descriptor says the segment is {} bytes; it is {}",
            descriptor.segment_len,
            mapped.mapping.len()
        )));
    }
    let layout = mapped.layout;
    let fits = descriptor.slot < layout.slot_count
        && descriptor.offset == layout.slot_offset(descriptor.slot)
        && descriptor.len <= layout.slot_size;
    if !fits {
        return Err(Miss::Invalid(format!(
            "shared memory descriptor names slot {} at {} ({} bytes), outside a segment of {} slots of {} bytes",
            descriptor.slot, descriptor.offset, descriptor.len, layout.slot_count, layout.slot_size
        )));
    }
    let (Some(pins), Some(generation)) = (
        layout::pins(&mapped.mapping, descriptor.slot),
        layout::generation(&mapped.mapping, descriptor.slot),
    ) else {
        return Err(Miss::Invalid("slot table outside the segment".to_string()));
    };
    // Pin, then check the generation (the owner bumps it, then checks the pins).
    pins.fetch_add(1, Ordering::SeqCst);
    if generation.load(Ordering::SeqCst) != descriptor.generation {
        pins.fetch_sub(1, Ordering::SeqCst);
        return Err(Miss::Stale);
    }
    Ok(Bytes::from_owner(PinnedObject {
        mapped,
        slot: descriptor.slot,
        offset: descriptor.offset,
        len: descriptor.len,
    }))
}

/// The segment `descriptor` names, mapped (from the cache, or now).
fn mapped(descriptor: &Descriptor) -> Result<Arc<Mapped>, Miss> {
    let id = (descriptor.pid, descriptor.fd, descriptor.token);
    if let Some(mapped) = lock(cache()).get(&id) {
        return Ok(Arc::clone(mapped));
    }
    let unusable = |what: &str, error: std::io::Error| {
        Miss::Unusable(format!(
            "{what} /proc/{}/fd/{}: {error}",
            descriptor.pid, descriptor.fd
        ))
    };
    let file = sys::open_process_file(descriptor.pid, descriptor.fd)
        .map_err(|e| unusable("cannot open", e))?;
    let size = sys::sealed_size(file.as_fd()).map_err(|e| unusable("cannot use", e))?;
    let mapping = sys::map(file.as_fd(), size).map_err(|e| unusable("cannot map", e))?;
    let layout = Layout::read_header(&mapping, descriptor.token).map_err(Miss::Unusable)?;
    let mapped = Arc::new(Mapped { mapping, layout });
    let mut cache = lock(cache());
    // A new segment is the moment to let go of the ones no object uses whose owner is gone
    // or has retired them: their pages stay allocated as long as they are mapped here.
    cache.retain(|&(pid, _, _), mapped| {
        Arc::strong_count(mapped) > 1 || (!mapped.is_retired() && sys::process_exists(pid))
    });
    if cache.len() >= MAX_CACHED {
        // Keep the mappings that objects still use.
        cache.retain(|_, mapped| Arc::strong_count(mapped) > 1);
    }
    if cache.len() < MAX_CACHED {
        return Ok(Arc::clone(cache.entry(id).or_insert(mapped)));
    }
    Ok(mapped)
}

impl Mapped {
    /// Whether the owner has let go of the segment.
    fn is_retired(&self) -> bool {
        layout::retired(&self.mapping).is_none_or(|flag| flag.load(Ordering::SeqCst) != 0)
    }
}

/// Forgets the cached mappings that no object uses any more (tests; the owner's death does
/// not need it: a mapping keeps its pages, and the cache is bounded).
#[cfg(test)]
pub(crate) fn forget_unused() {
    lock(cache()).retain(|_, mapped| Arc::strong_count(mapped) > 1);
}

/// The owner of a read object's bytes: a pin on its slot, dropped with the last clone.
struct PinnedObject {
    mapped: Arc<Mapped>,
    slot: u64,
    offset: u64,
    len: u64,
}

impl AsRef<[u8]> for PinnedObject {
    fn as_ref(&self) -> &[u8] {
        // Checked against the layout in `read`; the mapping cannot shrink (sealed).
        self.mapped
            .mapping
            .slice(self.offset, self.len)
            .unwrap_or_default()
    }
}

impl Drop for PinnedObject {
    fn drop(&mut self) {
        if let Some(pins) = layout::pins(&self.mapped.mapping, self.slot) {
            pins.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::arena::Arena;
    use super::*;

    fn stored(len: usize) -> (Arena, Bytes, Descriptor) {
        let arena = Arena::new(64 << 10, 256 << 20).expect("boot id");
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let (bytes, descriptor) = arena.store(&data).expect("stored");
        (arena, bytes, descriptor)
    }

    #[test]
    fn a_descriptor_reads_the_owners_bytes_in_place() {
        let (_arena, owned, descriptor) = stored(300_000);
        let read = read(&descriptor).expect("read");
        assert_eq!(read, owned);
        // A second mapping of the same pages, not a copy.
        assert_ne!(read.as_ptr(), owned.as_ptr());
        let again = super::read(&descriptor).expect("read again");
        let cached = lock(cache())
            .get(&(descriptor.pid, descriptor.fd, descriptor.token))
            .map(|mapped| mapped.mapping.contains(again.as_ptr()));
        assert_eq!(cached, Some(true), "the segment was mapped once and reused");
    }

    #[test]
    fn an_evicted_object_is_stale_and_a_read_one_keeps_its_bytes() {
        let (arena, owned, descriptor) = stored(300_000);
        let expected = owned.to_vec();
        let held = read(&descriptor).expect("read");
        drop(owned); // evicted in the owner
        assert_eq!(read(&descriptor), Err(Miss::Stale));
        // New objects of the class do not take the pinned slot.
        let others: Vec<_> = (0..70)
            .map(|i| arena.store(&vec![i as u8; 300_000]).expect("stored"))
            .collect();
        assert!(others
            .iter()
            .all(|(_, d)| d.slot != descriptor.slot || d.token != descriptor.token));
        assert_eq!(&held[..], &expected[..]);
        drop(held);
        drop(others);
        // Unpinned and released: the slot is taken again.
        let mut kept = Vec::new();
        let reused = (0..200).any(|_| {
            let (bytes, d) = arena.store(&[9u8; 300_000]).expect("stored");
            kept.push(bytes);
            (d.token, d.slot) == (descriptor.token, descriptor.slot)
        });
        assert!(reused, "the slot was never reused after its reader let go");
    }

    #[test]
    fn retired_segments_leave_the_cache_when_a_new_one_is_mapped() {
        let (arena, owned, descriptor) = stored(300_000);
        let id = (descriptor.pid, descriptor.fd, descriptor.token);
        drop(read(&descriptor).expect("read"));
        drop(owned);
        assert!(
            lock(cache()).contains_key(&id),
            "a live segment left the cache"
        );
        drop(arena); // the owner lets go of its segments: they retire
        let (_other_arena, _other, other) = stored(300_000);
        drop(read(&other).expect("read"));
        assert!(
            !lock(cache()).contains_key(&id),
            "a retired segment stayed mapped"
        );
    }

    #[test]
    fn hostile_descriptors_are_misses_or_errors_never_reads_outside() {
        let (_arena, _owned, good) = stored(100_000);
        let cases = [
            Descriptor {
                slot: 1 << 40,
                ..good
            },
            Descriptor {
                slot: u64::MAX,
                ..good
            },
            Descriptor {
                offset: good.offset + 4096,
                ..good
            },
            Descriptor {
                offset: u64::MAX - 3,
                ..good
            },
            Descriptor {
                len: u64::MAX,
                ..good
            },
            Descriptor {
                len: good.len * 1000,
                ..good
            },
            Descriptor {
                segment_len: good.segment_len + 1,
                ..good
            },
        ];
        for descriptor in cases {
            assert!(
                matches!(read(&descriptor), Err(Miss::Invalid(_))),
                "{descriptor:?}"
            );
        }
        let misses = [
            Descriptor {
                boot: [0; 16],
                ..good
            },
            Descriptor {
                pid: u32::MAX,
                ..good
            },
            Descriptor {
                fd: 1 << 30,
                ..good
            },
            Descriptor {
                token: good.token ^ 1,
                ..good
            },
            Descriptor {
                generation: good.generation + 1,
                ..good
            },
        ];
        for descriptor in misses {
            match read(&descriptor) {
                Ok(bytes) => panic!("{descriptor:?} read {} bytes", bytes.len()),
                Err(miss) => assert!(
                    !matches!(miss, Miss::Invalid(_)),
                    "{descriptor:?}: {miss:?}"
                ),
            }
        }
        // Standard input is a file, but not a sealed memory file.
        let stdin = Descriptor {
            fd: 0,
            token: 1,
            ..good
        };
        assert!(matches!(read(&stdin), Err(Miss::Unusable(_))));
        forget_unused();
    }
}
