//! Large payloads cross `ZmqConnector`'s sockets without being copied into Rust buffers.
//!
//! A counting global allocator records every Rust allocation of 1 MiB or more. A 64 MiB
//! object fetched from (and stored on) another peer over TCP must not cause any: the sender
//! hands libzmq the stored buffer itself and the receiver keeps libzmq's buffer as its
//! `Bytes`. (libzmq's own receive buffer comes from C's `malloc`, which this allocator does
//! not see; that one buffer is the only place the payload is written on the way in.)
//!
//! Both peers turn same-host shared memory off, so that this measures the TCP path (the
//! shared memory path has its own test, `zmq_shared_memory_zero_copy.rs`).

#[path = "support/large_allocations.rs"]
mod large_allocations;

use bytes::Bytes;
use large_allocations::large_allocations_during;
use proxy_core::{Connector, ZmqConnector, ZmqOptions};

#[test]
fn sixty_four_mib_moves_between_peers_without_a_copy_into_rust_memory() {
    let tcp = || ZmqOptions::default().with_shared_memory(false);
    let owner: ZmqConnector = tcp().build().expect("owner peer");
    let reader: ZmqConnector = tcp().build().expect("reader peer");
    let data = Bytes::from(
        (0..64usize << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let key = owner.put(data.clone()).expect("put");
    // Warm up the reader's socket so that connection setup is not measured.
    let small = owner.put(Bytes::from_static(b"warm")).expect("put");
    reader.get(&small).expect("warm-up get");

    let (fetched, large) = large_allocations_during(|| reader.get(&key));
    let fetched = fetched.expect("remote get").expect("present");
    assert_eq!(
        large, 0,
        "a remote get of 64 MiB made {large} Rust allocations of 1 MiB or more"
    );
    assert!(fetched == data, "the fetched object differs");
    assert_eq!(reader.mapped_reads(), 0, "the get did not travel over TCP");

    let endpoint = owner.endpoint().expect("owner endpoint").to_string();
    let (stored, large) = large_allocations_during(|| reader.put_to(&endpoint, data.clone()));
    let stored = stored.expect("remote put");
    assert_eq!(
        large, 0,
        "a remote put of 64 MiB made {large} Rust allocations of 1 MiB or more"
    );
    let on_owner = owner.get(&stored).expect("get").expect("present");
    assert!(on_owner == data, "the stored object differs");
}
