//! Same-host shared memory between two `ZmqConnector` peers of one process: the reader is a
//! client of the owner's endpoint, exactly as a peer in another process on this machine
//! would be (it opens the owner's segments through `/proc/PID/fd`).

use std::time::Duration;

use bytes::Bytes;
use proxy_core::{Connector, Error, ZmqConnector, ZmqOptions};

mod common;
use common::wait_until;

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

fn peer(options: ZmqOptions) -> ZmqConnector {
    options.build().expect("start a zmq peer")
}

#[test]
fn same_host_gets_map_large_objects_and_send_small_ones_at_every_size() {
    let owner = peer(ZmqOptions::default());
    let reader = peer(ZmqOptions::default());
    let threshold = 64 << 10;
    let sizes = [
        (1000, false),
        (threshold - 1, false),
        (threshold, true),
        ((1 << 20) + 8, true),
        ((3 << 20) + 5, true),
        (16 << 20, true),
    ];
    let mut expected_mapped = 0;
    for (index, (len, mapped)) in sizes.into_iter().enumerate() {
        let data = pattern(len, index as u8);
        let key = owner.put(data.clone()).expect("put");
        let before = reader.mapped_reads();
        let read = reader.get(&key).expect("get").expect("present");
        assert!(read == data, "{len} bytes read back differently");
        assert_eq!(
            reader.mapped_reads() - before,
            u64::from(mapped),
            "{len} bytes: mapped or not as the threshold says"
        );
        expected_mapped += u64::from(mapped);
    }
    assert_eq!(reader.mapped_reads(), expected_mapped);

    // Batches map too, in order, beside missing and small objects.
    let large: Vec<Bytes> = (0..5).map(|i| pattern(200_000 + i, i as u8)).collect();
    let mut keys = owner.put_batch(large.clone()).expect("put batch");
    let small = owner.put(Bytes::from_static(b"small")).expect("put");
    let gone = owner.put(pattern(100_000, 9)).expect("put");
    owner.evict(&gone).expect("evict");
    keys.push(small);
    keys.push(gone);
    let before = reader.mapped_reads();
    let read = reader.get_batch(&keys).expect("get batch");
    assert_eq!(reader.mapped_reads() - before, 5);
    for (read, data) in read.iter().zip(&large) {
        assert_eq!(read.as_ref(), Some(data));
    }
    assert_eq!(read[5], Some(Bytes::from_static(b"small")));
    assert_eq!(read[6], None, "an evicted object is not found");
}

/// Puts objects of `len` bytes on `owner` and reads each once through `reader` (which copies
/// it into the owner's shared memory, in a free slot), dropping the read bytes, until one is
/// not mapped because the arena is full; returns the keys of those that were (still stored).
fn fill_the_arena(owner: &ZmqConnector, reader: &ZmqConnector, len: usize) -> Vec<proxy_core::Key> {
    let mut mapped = Vec::new();
    for seed in 0..200u8 {
        let data = pattern(len, seed);
        let key = owner.put(data.clone()).expect("put");
        let before = reader.mapped_reads();
        let read = reader.get(&key).expect("get").expect("present");
        assert!(read == data, "object {seed} read back differently");
        if reader.mapped_reads() == before {
            owner.evict(&key).expect("evict");
            return mapped;
        }
        mapped.push(key);
    }
    panic!("200 objects of {len} bytes fitted in an arena meant to hold one segment");
}

#[test]
fn eviction_while_a_reader_holds_the_bytes_leaves_them_unchanged() {
    // Room for one segment of slots, so that a slot that is not reused shows as one object
    // fewer in shared memory rather than as a new segment.
    let owner = peer(ZmqOptions::default().with_shared_memory_capacity(16 << 20));
    let reader = peer(ZmqOptions::default());
    let len = (1 << 20) + 8;
    let original = pattern(len, 1);
    let key = owner.put(original.clone()).expect("put");
    let held = reader.get(&key).expect("get").expect("present");
    assert_eq!(reader.mapped_reads(), 1);

    owner.evict(&key).expect("evict");
    assert_eq!(reader.get(&key).expect("get after evict"), None);
    // Objects of the same size class, each read once so that it moves into shared memory,
    // until the arena is full: the evicted slot was released last, so without the reader's
    // pin the first of them would be written into the bytes `held` still reads.
    let others = fill_the_arena(&owner, &reader, len);
    assert!(
        !others.is_empty(),
        "no other object entered shared memory: the check below would be empty"
    );
    assert!(
        held == original,
        "an evicted object's bytes changed under its reader"
    );
    let (_, reserved) = owner.shared_memory_bytes();
    for key in &others {
        owner.evict(key).expect("evict");
    }
    drop(held);
    // Once the reader lets go, its slot is reused too: one object more than before fits,
    // in the same segments.
    let again = fill_the_arena(&owner, &reader, len);
    assert_eq!(
        again.len(),
        others.len() + 1,
        "the slot the reader held was not reused after it let go"
    );
    assert_eq!(owner.shared_memory_bytes().1, reserved, "the arena grew");
    for key in &again {
        owner.evict(key).expect("evict");
    }
    assert_eq!(owner.shared_memory_bytes(), (0, reserved));
}

#[test]
fn with_shared_memory_off_on_either_side_objects_travel_over_tcp() {
    let data = pattern(2 << 20, 3);
    for (owner_on, reader_on) in [(true, false), (false, true), (false, false)] {
        let owner = peer(ZmqOptions::default().with_shared_memory(owner_on));
        let reader = peer(ZmqOptions::default().with_shared_memory(reader_on));
        let key = owner.put(data.clone()).expect("put");
        let read = reader.get(&key).expect("get").expect("present");
        assert!(read == data);
        assert_eq!(
            reader.mapped_reads(),
            0,
            "owner {owner_on}, reader {reader_on}"
        );
        // Copied into shared memory only for a reader that can map it: never here.
        assert_eq!(owner.shared_memory_bytes().0, 0);
    }
}

#[test]
fn authenticated_peers_share_memory_and_unauthenticated_readers_get_nothing() {
    let owner = peer(ZmqOptions::default().with_secret("the cluster secret of this test"));
    let reader = peer(ZmqOptions::default().with_secret("the cluster secret of this test"));
    let stranger = peer(ZmqOptions::default().with_secret("another cluster secret entirely"));
    let anonymous = peer(ZmqOptions::default());
    let data = pattern(1 << 20, 4);
    let key = owner.put(data.clone()).expect("put");
    assert!(reader.get(&key).expect("get").expect("present") == data);
    assert_eq!(reader.mapped_reads(), 1);
    for outsider in [&stranger, &anonymous] {
        match outsider.get(&key) {
            Err(Error::Unauthenticated { .. }) => {}
            other => panic!(
                "an unauthenticated get answered {:?}",
                other.map(|o| o.map(|b| b.len()))
            ),
        }
        assert_eq!(outsider.mapped_reads(), 0);
    }
}

#[test]
fn objects_beyond_the_capacity_stay_on_the_heap_and_travel_over_tcp() {
    let owner = peer(ZmqOptions::default().with_shared_memory_capacity(4 << 20));
    let reader = peer(ZmqOptions::default());
    let first = pattern(3 << 20, 5);
    let second = pattern(3 << 20, 6);
    let first_key = owner.put(first.clone()).expect("put");
    let second_key = owner.put(second.clone()).expect("put");
    assert!(reader.get(&first_key).expect("get").expect("present") == first);
    assert_eq!(reader.mapped_reads(), 1);
    assert_eq!(owner.shared_memory_bytes().0, first.len() as u64);
    assert!(owner.shared_memory_bytes().1 <= 4 << 20);
    assert!(reader.get(&second_key).expect("get").expect("present") == second);
    assert_eq!(reader.mapped_reads(), 1, "the heap object came over TCP");
}

#[test]
fn remote_puts_are_shared_on_the_first_same_host_read_and_count_against_the_quota() {
    let owner = peer(ZmqOptions::default().with_max_bytes(3 << 20));
    let writer = peer(ZmqOptions::default().with_timeout(Duration::from_secs(5)));
    let endpoint = owner.endpoint().expect("endpoint").to_string();
    let data = pattern(2 << 20, 7);
    let key = writer.put_to(&endpoint, data.clone()).expect("remote put");
    assert_eq!(owner.remote_bytes(), data.len() as u64);
    assert_eq!(
        owner.shared_memory_bytes().0,
        0,
        "kept as received until read"
    );
    assert!(writer.get(&key).expect("get").expect("present") == data);
    assert_eq!(writer.mapped_reads(), 1);
    assert_eq!(owner.shared_memory_bytes().0, data.len() as u64);
    assert_eq!(
        owner.remote_bytes(),
        data.len() as u64,
        "still held to the quota"
    );
    match writer.put_to(&endpoint, pattern(2 << 20, 8)) {
        Err(Error::QuotaExceeded { .. }) => {}
        other => panic!("a put over the quota answered {other:?}"),
    }
    writer.evict(&key).expect("evict");
    assert_eq!(
        (owner.remote_bytes(), owner.shared_memory_bytes().0),
        (0, 0)
    );
}

#[test]
fn unused_shared_memory_returns_to_the_os_after_the_idle_time() {
    // Segments used to stay until the process ended (774 MiB after one put, read and evict
    // per size class); now one unused for the idle time is returned, while one holding an
    // object, or a slot a reader still holds, stays.
    let idle = Duration::from_millis(200);
    let owner = peer(ZmqOptions::default().with_shared_memory_idle(idle));
    let reader = peer(ZmqOptions::default());
    let endpoint = owner.endpoint().expect("endpoint").to_string();
    // Three size classes, so three segments; the reserved bytes after each first read.
    let kept_data = pattern(3 << 20, 1);
    let pinned_data = pattern(1 << 20, 2);
    let mut reserved = Vec::new();
    let mut keys = Vec::new();
    let mut pinned = None;
    for (index, data) in [
        kept_data.clone(),
        pinned_data.clone(),
        pattern(256 << 10, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let key = owner.put(data).expect("put");
        let read = reader.get(&key).expect("get").expect("present");
        if index == 1 {
            pinned = Some(read);
        }
        reserved.push(owner.shared_memory_bytes().1);
        keys.push(key);
    }
    assert_eq!(
        reader.mapped_reads(),
        3,
        "every object entered shared memory"
    );
    let [with_kept, with_pinned, with_all] = reserved[..] else {
        unreachable!()
    };
    assert!(0 < with_kept && with_kept < with_pinned && with_pinned < with_all);
    assert_eq!(
        reader
            .peer_stats(&endpoint)
            .expect("stats")
            .shared_memory_reserved,
        with_all
    );

    // The reader holds the second object's bytes when it is evicted, before the third.
    owner.evict(&keys[1]).expect("evict");
    owner.evict(&keys[2]).expect("evict");
    wait_until("the unused segment to be returned", || {
        owner.shared_memory_bytes().1 < with_all
    });
    // The second segment was free for longer, but a reader holds a slot of it.
    assert_eq!(owner.shared_memory_bytes().1, with_pinned);
    assert!(pinned_data == pinned.as_ref().expect("held"));
    drop(pinned);
    wait_until(
        "the segment no reader holds any more to be returned",
        || owner.shared_memory_bytes().1 == with_kept,
    );
    assert_eq!(
        reader
            .peer_stats(&endpoint)
            .expect("stats")
            .shared_memory_reserved,
        with_kept
    );
    // The object in use is still read in place.
    assert!(reader.get(&keys[0]).expect("get").expect("present") == kept_data);
    assert_eq!(reader.mapped_reads(), 4);

    owner.evict(&keys[0]).expect("evict");
    wait_until("every segment to be returned", || {
        owner.shared_memory_bytes() == (0, 0)
    });
}
