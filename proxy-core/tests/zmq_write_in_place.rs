//! Write-in-place puts (`alloc` / `put_buffer`): with shared memory on, a producer writes an
//! object straight into a slot of its peer's arena, the slot is published as the object, and
//! a same-host reader maps exactly those bytes. The reader here is a second peer of this
//! process, a client of the owner's endpoint that opens its segments through `/proc/PID/fd`
//! as a peer in another process would.

use bytes::Bytes;
use proxy_core::{Connector, LocalConnector, Proxy, Store, WriteBuffer, ZmqConnector, ZmqOptions};

const THRESHOLD: usize = 64 << 10;

fn peer(options: ZmqOptions) -> ZmqConnector {
    options.build().expect("start a zmq peer")
}

fn fill(buffer: &mut [u8], seed: u8) {
    for (i, byte) in buffer.iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut data = vec![0; len];
    fill(&mut data, seed);
    data
}

#[test]
fn objects_written_in_place_are_stored_where_written_and_mapped_by_same_host_readers() {
    let owner = peer(ZmqOptions::default());
    let reader = peer(ZmqOptions::default());
    let sizes = [
        (1000, false),
        (THRESHOLD - 1, false),
        (THRESHOLD, true),
        ((1 << 20) + 8, true),
        ((16 << 20) + 5, true),
    ];
    for (index, (len, shared)) in sizes.into_iter().enumerate() {
        let mut buffer = owner.alloc(len).expect("alloc");
        assert_eq!(buffer.len(), len);
        assert_eq!(buffer.is_shared_memory(), shared, "{len} bytes");
        fill(&mut buffer, index as u8);
        let written_at = buffer.as_ptr();
        let key = owner.put_buffer(buffer).expect("put buffer");

        // The stored object is the buffer itself: written once, never copied at put.
        let stored = owner.get(&key).expect("get").expect("stored");
        assert_eq!(stored.len(), len);
        if shared {
            assert_eq!(
                stored.as_ptr(),
                written_at,
                "{len} bytes were copied at put"
            );
        }
        let (before, located) = (reader.mapped_reads(), reader.located_reads());
        let read = reader.get(&key).expect("get").expect("present");
        assert!(
            read[..] == pattern(len, index as u8)[..],
            "{len} bytes read back differently"
        );
        assert_eq!(
            reader.located_reads() - located,
            u64::from(shared),
            "{len} bytes: read at its location, with no request"
        );
        assert_eq!(
            reader.mapped_reads() - before,
            u64::from(shared),
            "{len} bytes"
        );
        owner.evict(&key).expect("evict");
        assert_eq!(reader.get(&key).expect("get after evict"), None);
    }
    assert_eq!(
        owner.shared_memory_bytes().0,
        0,
        "evicted objects left bytes held"
    );
}

#[test]
fn a_buffer_dropped_without_being_stored_goes_back_to_the_arena() {
    let owner = peer(ZmqOptions::default());
    let first = owner.alloc(1 << 20).expect("alloc");
    assert!(first.is_shared_memory());
    let slot = first.as_ptr();
    let (held, reserved) = owner.shared_memory_bytes();
    assert_eq!(held, 0, "an unstored buffer counts as held");
    drop(first);
    for _ in 0..100 {
        let again = owner.alloc(1 << 20).expect("alloc");
        assert!(again.is_shared_memory());
        assert_eq!(again.as_ptr(), slot, "the dropped slot was not reused");
    }
    assert_eq!(owner.shared_memory_bytes(), (0, reserved), "the arena grew");
    assert_eq!(owner.object_count(), Some(0));
}

#[test]
fn eviction_while_a_reader_maps_an_in_place_object_leaves_its_bytes_unchanged() {
    // One segment's worth of slots, so new buffers compete for the evicted object's slot.
    let owner = peer(ZmqOptions::default().with_shared_memory_capacity(16 << 20));
    let reader = peer(ZmqOptions::default());
    let len = (1 << 20) + 8;
    let mut buffer = owner.alloc(len).expect("alloc");
    fill(&mut buffer, 7);
    let key = owner.put_buffer(buffer).expect("put");
    let held = reader.get(&key).expect("get").expect("present");
    assert_eq!(reader.mapped_reads(), 1);
    owner.evict(&key).expect("evict");

    // Every slot of the class written with other bytes and stored, until the arena is full.
    let mut others = Vec::new();
    loop {
        let mut buffer = owner.alloc(len).expect("alloc");
        if !buffer.is_shared_memory() {
            break;
        }
        buffer.fill(0xEE);
        others.push(owner.put_buffer(buffer).expect("put"));
        assert!(others.len() < 100, "the arena never filled");
    }
    assert!(!others.is_empty());
    assert!(
        held[..] == pattern(len, 7)[..],
        "an evicted in-place object changed under its reader"
    );
    for key in &others {
        owner.evict(key).expect("evict");
    }
}

#[test]
fn beyond_the_capacity_or_without_shared_memory_buffers_are_heap_and_stored_normally() {
    let small_arena = peer(ZmqOptions::default().with_shared_memory_capacity(2 << 20));
    let no_shm = peer(ZmqOptions::default().with_shared_memory(false));
    let reader = peer(ZmqOptions::default());
    for owner in [&small_arena, &no_shm] {
        let mut buffer = owner.alloc(4 << 20).expect("alloc");
        assert!(!buffer.is_shared_memory(), "{owner:?}");
        assert!(
            buffer.iter().all(|&b| b == 0),
            "a heap buffer starts zeroed"
        );
        fill(&mut buffer, 3);
        let key = owner.put_buffer(buffer).expect("put buffer");
        let read = reader.get(&key).expect("get").expect("present");
        assert!(read[..] == pattern(4 << 20, 3)[..]);
        owner.evict(&key).expect("evict");
    }
    assert_eq!(small_arena.shared_memory_bytes().0, 0);
}

#[test]
fn a_buffer_given_to_another_connector_is_copied_there_not_lost() {
    let owner = peer(ZmqOptions::default());
    let other = peer(ZmqOptions::default());
    let local = LocalConnector::new();
    for target in [&other as &dyn Connector, &local] {
        let mut buffer = owner.alloc(1 << 20).expect("alloc");
        assert!(buffer.is_shared_memory());
        fill(&mut buffer, 9);
        let key = target.put_buffer(buffer).expect("put buffer elsewhere");
        let read = target.get(&key).expect("get").expect("present");
        assert!(read[..] == pattern(1 << 20, 9)[..]);
    }
    assert_eq!(
        owner.object_count(),
        Some(0),
        "nothing was stored on the buffer's own peer"
    );
    assert_eq!(owner.shared_memory_bytes().0, 0);
}

#[test]
fn stores_hand_out_buffers_and_proxies_of_what_was_written() {
    let zmq = peer(ZmqOptions::default());
    let stores = [
        Store::new("in-place-zmq", zmq.clone()),
        Store::new("in-place-local", LocalConnector::new()),
    ];
    for store in stores {
        let mut buffer: WriteBuffer = store.alloc(300_000).expect("alloc");
        fill(&mut buffer, 5);
        let proxy: Proxy<Bytes> = store.proxy_buffer(buffer).expect("proxy buffer");
        assert!(proxy[..] == pattern(300_000, 5)[..]);
        let as_vec: Proxy<Vec<u8>> = store.proxy_from_key(Proxy::key(&proxy).clone());
        assert_eq!(as_vec.len(), 300_000);
        store.evict(Proxy::key(&proxy)).expect("evict");
    }
    assert_eq!(zmq.object_count(), Some(0));
}

/// Requests `owner` has answered (a `stats` request itself counts once, after it is read).
fn answered(reader: &ZmqConnector, owner: &ZmqConnector) -> u64 {
    let endpoint = owner.endpoint().expect("serving");
    reader.peer_stats(endpoint).expect("stats").requests
}

#[test]
fn a_reader_that_knows_where_an_in_place_object_lies_reads_it_without_asking_the_owner() {
    let owner = peer(ZmqOptions::default());
    let reader = peer(ZmqOptions::default());
    let mut buffer = owner.alloc(1 << 20).expect("alloc");
    fill(&mut buffer, 11);
    let key = owner.put_buffer(buffer).expect("put");

    let before = answered(&reader, &owner);
    let read = reader.get(&key).expect("get").expect("present");
    assert!(read[..] == pattern(1 << 20, 11)[..]);
    assert_eq!(
        reader.located_reads(),
        1,
        "the object was not read at its location"
    );
    assert_eq!(
        answered(&reader, &owner),
        before + 1,
        "the owner answered a request for it (only the stats request should count)"
    );

    // Evicted: the location no longer holds, the owner is asked, and says it is gone.
    owner.evict(&key).expect("evict");
    assert_eq!(reader.get(&key).expect("get after evict"), None);
    assert_eq!(reader.located_reads(), 1);
}

#[test]
fn a_proxy_carries_the_location_and_a_forged_one_costs_only_a_request() {
    let owner = peer(ZmqOptions::default());
    let reader = peer(ZmqOptions::default());
    let store = Store::new("in-place-located", owner.clone());
    let mut buffer = store.alloc(300_000).expect("alloc");
    fill(&mut buffer, 13);
    let proxy: Proxy<Bytes> = store.proxy_buffer(buffer).expect("proxy");
    let key = Proxy::key(&proxy).clone();
    let wire = bincode::serialize(&proxy).expect("serialize");
    let plain: Proxy<Bytes> = store.proxy(Bytes::from_static(b"small")).expect("proxy");
    let plain_wire = bincode::serialize(&plain).expect("serialize");
    assert_eq!(
        wire.len(),
        plain_wire.len() + 8 + 80,
        "an in-place proxy carries its 80-byte location (and a length)"
    );
    assert!(
        wire.len() < 320,
        "an in-place proxy is {} bytes",
        wire.len()
    );

    // The location is the proxy's last field: the descriptor's 80 bytes. Forge each part a
    // reader checks; every forgery must cost a request, never wrong bytes or an error.
    let at = wire.len() - 80;
    let forgeries: [(&str, usize); 6] = [
        ("boot id", 0),
        ("pid", 16),
        ("token", 24),
        ("slot", 48),
        ("generation", 56),
        ("length", 72),
    ];
    for (part, offset) in forgeries {
        let mut forged = wire.clone();
        forged[at + offset] ^= 0x5a;
        let _: Proxy<Bytes> = bincode::deserialize(&forged).expect("deserialize");
        let located = reader.located_reads();
        let read = reader.get(&key).expect("get").expect("present");
        assert!(
            read[..] == pattern(300_000, 13)[..],
            "forged {part}: wrong bytes"
        );
        assert_eq!(
            reader.located_reads(),
            located,
            "forged {part} was believed"
        );
    }
    // The genuine location again: read in place, no request.
    let _: Proxy<Bytes> = bincode::deserialize(&wire).expect("deserialize");
    let located = reader.located_reads();
    assert!(reader.get(&key).expect("get").is_some());
    assert_eq!(reader.located_reads(), located + 1);
    store.evict(&key).expect("evict");
    store.evict(Proxy::key(&plain)).expect("evict");
}

#[test]
fn a_prewarmed_peer_makes_its_room_before_the_first_object() {
    let owner = peer(ZmqOptions::default().with_shared_memory_prewarm(1 << 20, 8));
    // The room is made on a background thread, right after the peer starts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while owner.shared_memory_bytes().1 < 8 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "no room made: {:?}",
            owner.shared_memory_bytes()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    fills_its_room_without_new_segments(&owner, 8);
}

/// Writes `count` objects of 1 MiB in place into a peer that made room for them beforehand,
/// and checks that they needed no new segment (then evicts them).
fn fills_its_room_without_new_segments(owner: &ZmqConnector, count: u8) {
    let (held, reserved) = owner.shared_memory_bytes();
    assert_eq!(held, 0, "making room stored nothing");
    assert!(
        reserved >= u64::from(count) << 20,
        "room for {count} MiB: {reserved} bytes reserved"
    );
    let keys: Vec<_> = (0..count)
        .map(|seed| {
            let mut buffer = owner.alloc(1 << 20).expect("alloc");
            assert!(buffer.is_shared_memory());
            fill(&mut buffer, seed);
            owner.put_buffer(buffer).expect("put")
        })
        .collect();
    assert_eq!(
        owner.shared_memory_bytes().1,
        reserved,
        "the first objects still needed new segments"
    );
    for key in &keys {
        owner.evict(key).expect("evict");
    }
}

#[test]
fn room_made_on_request_is_there_when_the_call_returns() {
    let owner = peer(ZmqOptions::default());
    assert_eq!(owner.shared_memory_bytes(), (0, 0), "nothing made before");
    let ready = owner.prewarm_shared_memory(1 << 20, 6).expect("prewarm");
    assert_eq!(ready, 6);
    fills_its_room_without_new_segments(&owner, 6);

    // Below the threshold, with shared memory off, or on a client: no room, no error.
    assert_eq!(owner.prewarm_shared_memory(16, 4).expect("small"), 0);
    let off = peer(ZmqOptions::default().with_shared_memory(false));
    assert_eq!(off.prewarm_shared_memory(1 << 20, 4).expect("off"), 0);
    // The capacity stops it: room for two objects at most.
    let small = peer(ZmqOptions::default().with_shared_memory_capacity(3 << 20));
    let made = small.prewarm_shared_memory(1 << 20, 8).expect("capped");
    assert!(
        (1..8).contains(&made),
        "{made} slots of 1 MiB in 3 MiB of capacity"
    );
    assert!(small.shared_memory_bytes().1 <= 3 << 20);
}

#[test]
fn numeric_arrays_written_in_place_read_back_with_pod_codec() {
    use proxy_core::{PodArray, PodCodec};
    let owner = peer(ZmqOptions::default());
    let reader = peer(ZmqOptions::default());
    let zmq: Store<PodCodec> = Store::builder("pod-in-place", owner.clone())
        .with_codec::<PodCodec>()
        .build();
    let local: Store<PodCodec> = Store::builder("pod-in-place-local", LocalConnector::new())
        .with_codec::<PodCodec>()
        .build();
    for store in [&zmq, &local] {
        let mut samples = store.alloc_pod::<f64>(100_000).expect("alloc");
        assert_eq!(samples.len(), 100_000);
        for (i, x) in samples.iter_mut().enumerate() {
            *x = i as f64 * 0.25;
        }
        let proxy: Proxy<PodArray<f64>, PodCodec> = store
            .proxy_buffer(samples.into_write_buffer())
            .expect("proxy");
        assert_eq!(proxy[4], 1.0);
        let key = Proxy::key(&proxy).clone();
        let vector = store.get::<Vec<f64>>(&key).expect("get").expect("stored");
        assert_eq!(vector.len(), 100_000);
        assert_eq!(vector[99_999], 99_999.0 * 0.25);
        assert!(
            store.get::<Vec<f32>>(&key).is_err(),
            "another element type is refused"
        );
    }
    // Across peers the same bytes, mapped.
    let mut pixels = zmq.alloc_pod::<u16>(1 << 16).expect("alloc");
    assert!(pixels.is_shared_memory());
    pixels.fill(7);
    let key = zmq.put_buffer(pixels.into_write_buffer()).expect("put");
    let raw = reader.get(&key).expect("get").expect("present");
    let read: PodArray<u16> =
        <PodCodec as proxy_core::Codec<PodArray<u16>>>::decode(raw).expect("decode");
    assert!(read.iter().all(|&p| p == 7) && read.len() == 1 << 16);
    assert!(
        zmq.alloc_pod::<u64>(usize::MAX).is_err(),
        "an impossible size is an error"
    );
}
