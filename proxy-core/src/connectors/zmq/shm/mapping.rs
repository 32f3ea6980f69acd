//! The reader's side: turns a [`Descriptor`] from a peer on this machine into a `Bytes`
//! over the peer's shared memory, without copying (or, with copy-on-read, a copy of it).
//!
//! Before anything is mapped, the reader checks what it can about the file the descriptor
//! names: its `/proc/PID/fd/FD`, opened read-only (`O_RDONLY | O_NOCTTY | O_NONBLOCK`), is a
//! regular tmpfs file of this process's own user (root too reads no one else's), sealed
//! against shrinking and growing, fully allocated, and exactly as long as the descriptor
//! says, at most [`MAX_SEGMENT_LEN`]. Only then is it mapped read-only (`PROT_READ`, nothing
//! pre-faulted) and its header (magic, token, owner, layout) read with atomic loads; only
//! then is its slot table (at most a page) mapped read-write, through a second descriptor
//! that must name the same file, so that the reader can pin slots. A hostile descriptor
//! therefore costs at most a page or two, whatever the file's size. Before any slot is
//! pinned, the process the descriptor names must be the peer that answered (it holds the
//! endpoint's listening socket, see `sys::serves`).
//! Mappings are cached per segment (every later object in it reuses them), at most
//! [`MAX_CACHED`] segments and [`MAX_CACHED_BYTES`] bytes; those no object uses are dropped
//! once their owner has exited or retired them.
//!
//! The reader pins the slot and then loads its generation: it must be even (a finished
//! object), equal to the descriptor's, and the slot's object id the one asked for. The
//! returned `Bytes` unpins the slot when its last clone is dropped.
//!
//! Whatever stops this (another machine, a file that cannot be opened, an object evicted in
//! the meantime) is a [`Miss`]: the caller asks again over TCP. Numbers in a descriptor that
//! do not fit the segment are a [`Miss::Invalid`], which the caller reports as an error.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::descriptor::Descriptor;
use super::layout::{self, Layout};
use super::sys::{self, Mapping};

/// Most segments kept mapped by this process (beyond this, unused mappings are dropped).
const MAX_CACHED: usize = 1024;
/// Most bytes of segments kept mapped by this process.
const MAX_CACHED_BYTES: u64 = 64 << 30;
/// Largest segment a reader maps (an owner's segments are at most its largest object plus
/// a page; objects larger than this travel over TCP).
pub(crate) const MAX_SEGMENT_LEN: u64 = 64 << 30;
/// Most peers remembered as unreachable through shared memory.
const MAX_UNUSABLE: usize = 4096;
/// Most (peer, process) pairs remembered as checked.
const MAX_VERIFIED: usize = 4096;
/// How often reads look for cached mappings whose owner has gone.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Why a descriptor did not give the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Miss {
    /// The owner runs on another machine (or another boot of this one).
    OtherHost,
    /// The segment cannot be opened or mapped here (another user, another PID namespace,
    /// the owner has exited, not the peer that answered, ...): the reason.
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

/// What the reader asked for, to check a descriptor against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    /// The peer that answered (its process must own the segment); `None` only in tests of
    /// this module.
    pub(crate) peer: Option<&'a str>,
    /// The object asked for.
    pub(crate) object_id: u128,
    /// The most bytes the reader accepts (its maximum message size, as over TCP).
    pub(crate) max_len: u64,
    /// Copy the bytes out of the mapping (and unpin at once) rather than hand them out in
    /// place.
    pub(crate) copy: bool,
}

/// A segment of another process (or of another connector of this one), mapped here: the
/// whole file read-only, and its slot table read-write.
#[derive(Debug)]
struct Mapped {
    data: Mapping,
    table: Mapping,
    layout: Layout,
    pid: u32,
}

type SegmentId = (u32, u32, u128);

#[derive(Default)]
struct Cache {
    segments: HashMap<SegmentId, Arc<Mapped>>,
    bytes: u64,
    swept: Option<Instant>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn unusable_peers() -> &'static Mutex<HashSet<String>> {
    static PEERS: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    PEERS.get_or_init(Default::default)
}

/// The process found serving each peer endpoint.
fn verified_peers() -> &'static Mutex<HashMap<String, u32>> {
    static PEERS: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    PEERS.get_or_init(Default::default)
}

/// Held while a new segment is opened, checked and mapped, and while a peer's process is
/// checked: readers that race for the same new segment (every fetch thread at the start of a
/// transfer) do the work once and the others find the result, instead of each scanning
/// `/proc` and mapping the segment again. Reads of cached segments never take it.
fn first_use() -> &'static Mutex<()> {
    static FIRST_USE: Mutex<()> = Mutex::new(());
    &FIRST_USE
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

/// Checks (once per endpoint and process) that process `pid` serves `peer`.
fn check_peer(peer: &str, pid: u32) -> Result<(), Miss> {
    let verified = || lock(verified_peers()).get(peer) == Some(&pid);
    if verified() {
        return Ok(());
    }
    let _first = lock(first_use());
    if verified() {
        return Ok(());
    }
    sys::serves(pid, peer).map_err(Miss::Unusable)?;
    let mut verified = lock(verified_peers());
    if verified.len() >= MAX_VERIFIED {
        verified.clear();
    }
    verified.insert(peer.to_string(), pid);
    Ok(())
}

/// The object `descriptor` names, read from its owner's shared memory: in place, or copied
/// out with `wanted.copy`.
pub(crate) fn read(descriptor: &Descriptor, wanted: &Wanted<'_>) -> Result<Bytes, Miss> {
    if sys::boot_id() != Some(descriptor.boot) {
        return Err(Miss::OtherHost);
    }
    if descriptor.len > wanted.max_len {
        return Err(Miss::Invalid(format!(
            "shared memory descriptor names {} bytes, more than the {} this process accepts",
            descriptor.len, wanted.max_len
        )));
    }
    let mapped = mapped(descriptor)?;
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
    // Only the peer that answered hands out its segments (checked once per peer and
    // process; mapping first is safe: nothing was faulted in, and the numbers are checked).
    if let Some(peer) = wanted.peer {
        check_peer(peer, descriptor.pid)?;
    }
    let (Some(pins), Some(generation), Some((id_low, id_high)), Some(object_len)) = (
        layout::pins(&mapped.table, descriptor.slot),
        layout::generation(&mapped.table, descriptor.slot),
        layout::object_id(&mapped.table, descriptor.slot),
        layout::object_len(&mapped.table, descriptor.slot),
    ) else {
        return Err(Miss::Invalid("slot table outside the segment".to_string()));
    };
    // Pin, then check the generation (the owner makes it odd, then checks the pins): an
    // even generation equal to the descriptor's is a finished object that stays put.
    pins.fetch_add(1, Ordering::SeqCst);
    let found = generation.load(Ordering::SeqCst);
    if found != descriptor.generation || found % 2 != 0 {
        pins.fetch_sub(1, Ordering::SeqCst);
        return Err(Miss::Stale);
    }
    let id = u128::from(id_low.load(Ordering::Acquire))
        | (u128::from(id_high.load(Ordering::Acquire)) << 64);
    if id != wanted.object_id {
        pins.fetch_sub(1, Ordering::SeqCst);
        return Err(Miss::Invalid(format!(
            "shared memory descriptor names object {id:032x}, not {:032x} that was asked for",
            wanted.object_id
        )));
    }
    let len = object_len.load(Ordering::Acquire);
    if len != descriptor.len {
        pins.fetch_sub(1, Ordering::SeqCst);
        return Err(Miss::Invalid(format!(
            "shared memory descriptor names {} bytes of object {id:032x}, which has {len}",
            descriptor.len
        )));
    }
    let pinned = PinnedObject {
        mapped,
        slot: descriptor.slot,
        offset: descriptor.offset,
        len: descriptor.len,
    };
    pinned
        .mapped
        .data
        .populate(descriptor.offset, descriptor.len);
    if wanted.copy {
        // Copied while pinned; the pin goes with `pinned`.
        return pinned
            .mapped
            .data
            .copy_out(descriptor.offset, descriptor.len)
            .map(Bytes::from)
            .ok_or_else(|| Miss::Invalid("object outside the segment".to_string()));
    }
    Ok(Bytes::from_owner(pinned))
}

/// The segment `descriptor` names, mapped (from the cache, or now).
fn mapped(descriptor: &Descriptor) -> Result<Arc<Mapped>, Miss> {
    let id = (descriptor.pid, descriptor.fd, descriptor.token);
    if let Some(found) = cached(descriptor, id) {
        return found;
    }
    let _first = lock(first_use());
    if let Some(found) = cached(descriptor, id) {
        return found;
    }
    let unusable = |what: &str, error: std::io::Error| {
        Miss::Unusable(format!(
            "{what} /proc/{}/fd/{}: {error}",
            descriptor.pid, descriptor.fd
        ))
    };
    let file = sys::open_process_file(descriptor.pid, descriptor.fd)
        .map_err(|e| unusable("cannot open", e))?;
    let checked = sys::check_segment(file.as_fd(), descriptor.segment_len, MAX_SEGMENT_LEN)
        .map_err(|e| unusable("will not map", e))?;
    let data = sys::map_read_only(file.as_fd(), descriptor.segment_len)
        .map_err(|e| unusable("cannot map", e))?;
    let layout =
        Layout::read_header(&data, descriptor.token, descriptor.pid).map_err(Miss::Unusable)?;
    let writable = sys::reopen_read_write(descriptor.pid, descriptor.fd, checked)
        .map_err(|e| unusable("cannot open", e))?;
    let table = sys::map_table(writable.as_fd(), layout.data_offset)
        .map_err(|e| unusable("cannot map the slot table of", e))?;
    let mapped = Arc::new(Mapped {
        data,
        table,
        layout,
        pid: descriptor.pid,
    });
    #[cfg(test)]
    {
        *lock(times_mapped()).entry(id).or_default() += 1;
    }
    let mut cache = lock(cache());
    // A new segment is the moment to let go of the ones no object uses whose owner is gone
    // or has retired them: their pages stay allocated as long as they are mapped here.
    cache.sweep();
    let len = mapped.data.len() as u64;
    if cache.segments.len() >= MAX_CACHED || cache.bytes.saturating_add(len) > MAX_CACHED_BYTES {
        // Keep the mappings that objects still use.
        cache.retain(|mapped| Arc::strong_count(mapped) > 1);
    }
    if cache.segments.len() < MAX_CACHED && cache.bytes.saturating_add(len) <= MAX_CACHED_BYTES {
        cache.bytes += len;
        return Ok(Arc::clone(cache.segments.entry(id).or_insert(mapped)));
    }
    Ok(mapped)
}

/// The cached mapping of segment `id`, if there is one (checked against `descriptor`).
fn cached(descriptor: &Descriptor, id: SegmentId) -> Option<Result<Arc<Mapped>, Miss>> {
    let mut cache = lock(cache());
    if cache.swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
        cache.sweep();
    }
    let mapped = cache.segments.get(&id)?;
    if mapped.data.len() as u64 != descriptor.segment_len {
        return Some(Err(Miss::Invalid(format!(
            "shared memory descriptor says the segment is {} bytes; it is {}",
            descriptor.segment_len,
            mapped.data.len()
        ))));
    }
    Some(Ok(Arc::clone(mapped)))
}

impl Cache {
    fn retain(&mut self, mut keep: impl FnMut(&Arc<Mapped>) -> bool) {
        self.segments.retain(|_, mapped| keep(mapped));
        self.bytes = self
            .segments
            .values()
            .map(|mapped| mapped.data.len() as u64)
            .sum();
    }

    /// Drops the mappings that no object uses whose owner has exited or retired them.
    fn sweep(&mut self) {
        self.swept = Some(Instant::now());
        self.retain(|mapped| {
            Arc::strong_count(mapped) > 1
                || (!mapped.is_retired() && sys::process_exists(mapped.pid))
        });
    }
}

impl Mapped {
    /// Whether the owner has let go of the segment.
    fn is_retired(&self) -> bool {
        layout::is_retired(&self.data)
    }
}

/// How many times each segment was mapped (tests).
#[cfg(test)]
fn times_mapped() -> &'static Mutex<HashMap<SegmentId, usize>> {
    static TIMES: OnceLock<Mutex<HashMap<SegmentId, usize>>> = OnceLock::new();
    TIMES.get_or_init(Default::default)
}

/// Forgets the cached mappings that no object uses any more (tests).
#[cfg(test)]
pub(crate) fn forget_unused() {
    lock(cache()).retain(|mapped| Arc::strong_count(mapped) > 1);
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
        // Checked against the layout in `read`; the mapping cannot shrink (sealed). See
        // `Mapping::slice` for what another process of the same user can still do.
        self.mapped
            .data
            .slice(self.offset, self.len)
            .unwrap_or_default()
    }
}

impl Drop for PinnedObject {
    fn drop(&mut self) {
        if let Some(pins) = layout::pins(&self.mapped.table, self.slot) {
            pins.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A process of this user (or of `nobody`, run as root) that holds open, as descriptor
/// [`HOLDER_FD`], a well-formed segment of one slot whose object `object_id` is `data`,
/// published (generation 2) and naming the holder's own pid (tests: a segment that is not
/// the answering peer's, or not this user's).
#[cfg(test)]
pub(crate) fn spawn_segment_holder(
    token: u128,
    object_id: u128,
    data: &[u8],
    as_nobody: bool,
) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let layout = Layout::new(layout::PAGE, 1).expect("layout");
    let mut image = vec![0u8; layout.total_len() as usize];
    image[..64].copy_from_slice(&layout.encode_header(token, 0));
    image[64..72].copy_from_slice(&2u64.to_le_bytes());
    image[80..96].copy_from_slice(&object_id.to_le_bytes());
    image[96..104].copy_from_slice(&(data.len() as u64).to_le_bytes());
    let start = layout.data_offset as usize;
    image[start..start + data.len()].copy_from_slice(data);
    let len = image.len() as libc::off_t;
    let mut command = std::process::Command::new("sleep");
    command.arg("600");
    // SAFETY: the closure makes only system calls (no allocation) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if as_nobody
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0)
            {
                return fail();
            }
            let pid = u64::from(libc::getpid() as u32).to_le_bytes();
            let raw = libc::memfd_create(c"segment-holder".as_ptr(), libc::MFD_ALLOW_SEALING);
            if raw < 0
                || libc::ftruncate(raw, len) != 0
                || libc::fallocate(raw, 0, 0, len) != 0
                || libc::pwrite(raw, image.as_ptr().cast(), image.len(), 0) < 0
                || libc::pwrite(raw, pid.as_ptr().cast(), 8, 56) < 0
                || libc::fcntl(
                    raw,
                    libc::F_ADD_SEALS,
                    libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
                ) != 0
                || libc::dup2(raw, HOLDER_FD as libc::c_int) != HOLDER_FD as libc::c_int
            {
                return fail();
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("a child holding a segment");
    let path = format!("/proc/{}/fd/{HOLDER_FD}", child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_link(&path)
        .is_ok_and(|link| link.to_string_lossy().contains("segment-holder"))
    {
        assert!(Instant::now() < deadline, "{path} never appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// The descriptor number of [`spawn_segment_holder`]'s segment.
#[cfg(test)]
pub(crate) const HOLDER_FD: u32 = 100;

/// A descriptor of the object of `len` bytes in the segment that [`spawn_segment_holder`]
/// started `holder` with (this machine's boot id, its slot 0, generation 2).
#[cfg(test)]
pub(crate) fn holder_descriptor(holder: &std::process::Child, token: u128, len: u64) -> Descriptor {
    Descriptor {
        boot: sys::boot_id().expect("boot id"),
        pid: holder.id(),
        fd: HOLDER_FD,
        token,
        segment_len: 2 * layout::PAGE,
        slot: 0,
        generation: 2,
        offset: layout::PAGE,
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::super::arena::Arena;
    use super::*;

    /// The object `id`, with nothing else to check (no peer), accepted at any length.
    fn want(id: u128) -> Wanted<'static> {
        Wanted {
            peer: None,
            object_id: id,
            max_len: u64::MAX,
            copy: false,
        }
    }

    /// An object stored under id 7.
    fn stored(len: usize) -> (Arena, Bytes, Descriptor) {
        let arena = Arena::new(64 << 10, 256 << 20).expect("boot id");
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let (bytes, descriptor) = arena.store(7, &data).expect("stored");
        (arena, bytes, descriptor)
    }

    #[test]
    fn a_descriptor_reads_the_owners_bytes_in_place() {
        let (_arena, owned, descriptor) = stored(300_000);
        let read = read(&descriptor, &want(7)).expect("read");
        assert_eq!(read, owned);
        // A second mapping of the same pages, not a copy.
        assert_ne!(read.as_ptr(), owned.as_ptr());
        let again = super::read(&descriptor, &want(7)).expect("read again");
        let cached = lock(cache())
            .segments
            .get(&(descriptor.pid, descriptor.fd, descriptor.token))
            .map(|mapped| mapped.data.contains(again.as_ptr()));
        assert_eq!(cached, Some(true), "the segment was mapped once and reused");
    }

    #[test]
    fn an_evicted_object_is_stale_and_a_read_one_keeps_its_bytes() {
        let (arena, owned, descriptor) = stored(300_000);
        let expected = owned.to_vec();
        let held = read(&descriptor, &want(7)).expect("read");
        drop(owned); // evicted in the owner
        assert_eq!(read(&descriptor, &want(7)), Err(Miss::Stale));
        // New objects of the class do not take the pinned slot.
        let others: Vec<_> = (0..70)
            .map(|i| arena.store(i, &vec![i as u8; 300_000]).expect("stored"))
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
            let (bytes, d) = arena.store(9, &[9u8; 300_000]).expect("stored");
            kept.push(bytes);
            (d.token, d.slot) == (descriptor.token, descriptor.slot)
        });
        assert!(reused, "the slot was never reused after its reader let go");
    }

    #[test]
    fn readers_racing_for_a_new_segment_map_it_once() {
        let (_arena, _owned, descriptor) = stored(300_000);
        let id = (descriptor.pid, descriptor.fd, descriptor.token);
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    start.wait();
                    drop(read(&descriptor, &want(7)).expect("read"));
                });
            }
        });
        assert_eq!(
            lock(times_mapped()).get(&id).copied(),
            Some(1),
            "eight readers mapped the segment more than once"
        );
    }

    #[test]
    fn retired_segments_leave_the_cache_when_a_new_one_is_mapped() {
        let (arena, owned, descriptor) = stored(300_000);
        let id = (descriptor.pid, descriptor.fd, descriptor.token);
        drop(read(&descriptor, &want(7)).expect("read"));
        drop(owned);
        assert!(
            lock(cache()).segments.contains_key(&id),
            "a live segment left the cache"
        );
        drop(arena); // the owner lets go of its segments: they retire
        let (_other_arena, _other, other) = stored(300_000);
        drop(read(&other, &want(7)).expect("read"));
        assert!(
            !lock(cache()).segments.contains_key(&id),
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
                matches!(read(&descriptor, &want(7)), Err(Miss::Invalid(_))),
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
            match read(&descriptor, &want(7)) {
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
        assert!(matches!(read(&stdin, &want(7)), Err(Miss::Unusable(_))));
        forget_unused();
    }

    /// A memory file of this process for hostile descriptors: `len` bytes, `header` at 0,
    /// allocated or left sparse, sealed against shrinking and growing.
    fn hostile_file(len: u64, header: &[u8], allocate: bool) -> std::os::fd::OwnedFd {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: plain system calls on a descriptor this function owns.
        unsafe {
            let raw = libc::memfd_create(
                c"hostile".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            );
            assert!(raw >= 0, "memfd_create");
            let fd = OwnedFd::from_raw_fd(raw);
            assert_eq!(libc::ftruncate(fd.as_raw_fd(), len as libc::off_t), 0);
            if allocate {
                assert_eq!(libc::fallocate(fd.as_raw_fd(), 0, 0, len as libc::off_t), 0);
            }
            let written = libc::pwrite(fd.as_raw_fd(), header.as_ptr().cast(), header.len(), 0);
            assert_eq!(written, header.len() as isize);
            let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            assert_eq!(libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals), 0);
            fd
        }
    }

    /// A descriptor of this process naming `fd`.
    fn naming(fd: &std::os::fd::OwnedFd, token: u128, segment_len: u64) -> Descriptor {
        use std::os::fd::AsRawFd;
        Descriptor {
            boot: sys::boot_id().expect("boot id"),
            pid: std::process::id(),
            fd: fd.as_raw_fd() as u32,
            token,
            segment_len,
            slot: 0,
            generation: 2,
            offset: layout::PAGE,
            len: 1 << 20,
        }
    }

    /// Runs the test `name` alone in a child process (so that its memory is measured without
    /// other tests running beside it); returns `true` in that child.
    fn alone(name: &str) -> bool {
        const CHILD: &str = "PROXY_CORE_SHM_TEST_ALONE";
        if std::env::var_os(CHILD).is_some() {
            return true;
        }
        let exe = std::env::current_exe().expect("test binary");
        let output = std::process::Command::new(exe)
            .args([name, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .expect("run the test alone");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{name} failed alone:\n{stdout}\n{stderr}"
        );
        println!("{stdout}");
        false
    }

    /// A number from `/proc/self/status` or `/proc/meminfo`, in KiB.
    fn kib(file: &str, field: &str) -> u64 {
        let text = std::fs::read_to_string(file).expect("proc file");
        text.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in {file}"))
    }

    /// What the reader holds of memory it allocated or mapped from shared memory
    /// (`RssAnon + RssShmem`, KiB): `VmRSS` also counts the test binary's own code pages as
    /// they are first run (`RssFile`), which moved it by hundreds of KiB from one build to
    /// the next.
    fn reader_kib() -> u64 {
        kib("/proc/self/status", "RssAnon") + kib("/proc/self/status", "RssShmem")
    }

    #[test]
    fn a_sparse_gigabyte_segment_costs_the_reader_at_most_a_few_pages() {
        if !alone("connectors::zmq::shm::mapping::tests::a_sparse_gigabyte_segment_costs_the_reader_at_most_a_few_pages") {
            return;
        }
        const GIB: u64 = 1 << 30;
        let token = 0x5eed_u128;
        let layout = Layout::new(GIB - layout::PAGE, 1).expect("layout");
        let file = hostile_file(GIB, &layout.encode_header(token, std::process::id()), false);
        let descriptor = naming(&file, token, GIB);
        let (rss, shmem) = (reader_kib(), kib("/proc/meminfo", "Shmem"));
        let outcome = read(&descriptor, &want(7)).map(|bytes| bytes.len());
        let (rss_after, shmem_after) = (reader_kib(), kib("/proc/meminfo", "Shmem"));
        // SAFETY: `stat` is plain data filled by `fstat` on a descriptor we own.
        let allocated = unsafe {
            use std::os::fd::AsRawFd;
            let mut stat: libc::stat = std::mem::zeroed();
            assert_eq!(libc::fstat(file.as_raw_fd(), &mut stat), 0);
            stat.st_blocks as u64 * 512
        };
        println!(
            "sparse 1 GiB segment: {outcome:?}; reader RssAnon+RssShmem {rss} -> {rss_after} KiB, \
             system Shmem {shmem} -> {shmem_after} KiB, file allocated {allocated} bytes"
        );
        forget_unused();
        assert!(outcome.is_err(), "a sparse segment was read");
        // A reader that faulted the segment in would grow by up to 1 GiB. The first read of a
        // process also grows it by about 1 MiB of its own (measured 0.7 to 1.2 MiB on this
        // project's 2-core VM: code pages, the mapping cache, the error's formatting), so the
        // bound leaves room for that and nothing like the segment.
        assert!(
            rss_after.saturating_sub(rss) < 16 << 10,
            "the reader's RSS grew by {} KiB",
            rss_after - rss
        );
        assert!(
            allocated <= 2 * layout::PAGE,
            "the reader made the kernel allocate {allocated} bytes of the file"
        );
    }

    #[test]
    fn header_words_that_overflow_are_an_error_not_a_panic() {
        let token = 77u128;
        let mut header = Layout::new(layout::PAGE, 1)
            .expect("layout")
            .encode_header(token, std::process::id());
        for (slot_size, slot_count, data_offset) in [
            (0u64, 1u64 << 60, 4096u64),
            (!4095, u64::MAX, u64::MAX),
            (1 << 62, 8, 4096),
            (0, 0, 0),
            (4096, 0, 4096),
        ] {
            header[24..32].copy_from_slice(&slot_size.to_le_bytes());
            header[32..40].copy_from_slice(&slot_count.to_le_bytes());
            header[40..48].copy_from_slice(&data_offset.to_le_bytes());
            let file = hostile_file(8 * layout::PAGE, &header, true);
            let descriptor = naming(&file, token, 8 * layout::PAGE);
            let outcome = std::panic::catch_unwind(|| read(&descriptor, &want(7)).map(|b| b.len()));
            match outcome {
                Ok(Err(_)) => {}
                Ok(Ok(len)) => panic!("{slot_size} x {slot_count}: read {len} bytes"),
                Err(_) => panic!("{slot_size} x {slot_count} at {data_offset}: panicked"),
            }
        }
        forget_unused();
    }

    #[test]
    fn root_reads_no_other_users_segment() {
        let Some(()) =
            crate::testing::require_root("shm::mapping root_reads_no_other_users_segment")
        else {
            return;
        };
        let token = 4242u128;
        let mut child = spawn_segment_holder(token, 7, b"nobody's bytes", true);
        let descriptor = holder_descriptor(&child, token, 14);
        let outcome = read(&descriptor, &want(7)).map(|bytes| bytes.len());
        let _ = child.kill();
        let _ = child.wait();
        forget_unused();
        match outcome {
            Err(Miss::Unusable(reason)) => assert!(reason.contains("user"), "{reason}"),
            other => panic!("root read nobody's segment: {other:?}"),
        }
    }

    #[test]
    fn a_forged_next_generation_never_reads_a_slot_being_written() {
        const LEN: usize = 4 << 20;
        let arena = Arena::new(64 << 10, 64 << 20).expect("boot id");
        let latest = Arc::new(Mutex::new(None::<(Descriptor, u128)>));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let owner = {
            let (arena, latest, stop) = (arena.clone(), Arc::clone(&latest), Arc::clone(&stop));
            let written = Arc::clone(&written);
            std::thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::Acquire) {
                    round += 1;
                    let data = vec![(round % 251) as u8 + 1; LEN];
                    let (bytes, descriptor) = arena.store(round.into(), &data).expect("stored");
                    *lock(&latest) = Some((descriptor, round.into()));
                    written.store(round, Ordering::Release);
                    drop(bytes); // evicted at once: the slot is refilled by the next round
                }
                round
            })
        };
        let (mut complete, mut refused, mut partial) = (0u32, 0u32, 0u32);
        // At least 3000 forged reads, while the owner writes at least 300 objects.
        let mut attempt = 0u64;
        while (attempt < 3000 || written.load(Ordering::Acquire) < 300) && !owner.is_finished() {
            let Some((seen, id)) = *lock(&latest) else {
                std::thread::yield_now();
                continue;
            };
            attempt += 1;
            // The slot's last object, then its next generations (free, then the next
            // object's) asking for the id the owner stores next, as a peer that knows it.
            let ahead = attempt % 3;
            let forged = Descriptor {
                generation: seen.generation + ahead,
                ..seen
            };
            match read(&forged, &want(if ahead == 0 { id } else { id + 1 })) {
                Ok(bytes) => {
                    if bytes.iter().all(|&b| b == bytes[0]) && bytes.len() == LEN {
                        complete += 1;
                    } else {
                        partial += 1;
                    }
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, Ordering::Release);
        let rounds = owner.join().expect("owner");
        forget_unused();
        println!("forged reads: {complete} complete, {refused} refused, {partial} partial; {rounds} objects written");
        assert_eq!(partial, 0, "a forged descriptor read a slot being written");
    }

    #[test]
    fn a_segment_of_another_process_than_the_answering_peer_is_refused() {
        let token = 99u128;
        let mut child = spawn_segment_holder(token, 7, b"the holder's bytes", false);
        let descriptor = holder_descriptor(&child, token, 18);
        // This process answers on `endpoint`; the segment is the holder's.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let endpoint = format!(
            "tcp://127.0.0.1:{}",
            listener.local_addr().expect("address").port()
        );
        let from_peer = Wanted {
            peer: Some(&endpoint),
            ..want(7)
        };
        let refused = read(&descriptor, &from_peer);
        // The same segment is well formed: only the peer check refused it.
        let unchecked = read(&descriptor, &want(7));
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            matches!(&refused, Err(Miss::Unusable(reason)) if reason.contains("not the peer")),
            "{refused:?}"
        );
        assert_eq!(unchecked.as_deref(), Ok(&b"the holder's bytes"[..]));
        drop(unchecked);
        forget_unused();
    }

    #[test]
    fn copy_on_read_returns_owned_bytes_and_leaves_no_pin() {
        let (_arena, owned, descriptor) = stored(300_000);
        let copy = Wanted {
            copy: true,
            ..want(7)
        };
        // An object read in place holds the mapping (and one pin) meanwhile.
        let in_place = read(&descriptor, &want(7)).expect("read");
        let mapped = lock(cache())
            .segments
            .get(&(descriptor.pid, descriptor.fd, descriptor.token))
            .map(Arc::clone)
            .expect("cached");
        assert!(mapped.data.contains(in_place.as_ptr()));
        let pins = layout::pins(&mapped.table, descriptor.slot).expect("pins");
        assert_eq!(pins.load(Ordering::SeqCst), 1);
        let copied = read(&descriptor, &copy).expect("read");
        assert_eq!(copied, owned);
        assert!(
            !mapped.data.contains(copied.as_ptr()),
            "copy-on-read returned bytes in the mapping"
        );
        assert_eq!(
            pins.load(Ordering::SeqCst),
            1,
            "the copy kept its slot pinned"
        );
        drop(in_place);
        assert_eq!(pins.load(Ordering::SeqCst), 0);
        drop(mapped);
        // A descriptor longer than the reader accepts is refused before anything is mapped.
        let small = Wanted {
            max_len: descriptor.len - 1,
            ..want(7)
        };
        assert!(matches!(read(&descriptor, &small), Err(Miss::Invalid(_))));
        // Another object's id in the slot: refused.
        assert!(matches!(read(&descriptor, &want(8)), Err(Miss::Invalid(_))));
        forget_unused();
    }
}
