//! A same-host get of a large object reads the owner's shared memory in place.
//!
//! A counting global allocator records every Rust allocation of 1 MiB or more: a 64 MiB
//! get from another peer on this machine must cause none, and the bytes it returns must lie
//! in a shared mapping of one of the owner's memory files (`/proc/self/maps` names them
//! `/memfd:proxystore-zmq`), not in anything this process allocated.

#[path = "support/large_allocations.rs"]
mod large_allocations;

use bytes::Bytes;
use large_allocations::large_allocations_during;
use proxy_core::{Connector, ZmqConnector};

/// The line of `/proc/self/maps` whose range holds `ptr..ptr + len`, if any.
fn mapping_of(ptr: *const u8, len: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    let (start, end) = (ptr as usize, ptr as usize + len);
    maps.lines()
        .find(|line| {
            let range = line.split_whitespace().next().unwrap_or_default();
            let mut bounds = range.split('-').map(|b| usize::from_str_radix(b, 16));
            matches!(
                (bounds.next(), bounds.next()),
                (Some(Ok(low)), Some(Ok(high))) if low <= start && end <= high
            )
        })
        .map(str::to_string)
}

#[test]
fn a_same_host_get_of_64_mib_returns_the_owners_shared_pages_without_a_copy() {
    let owner = ZmqConnector::new().expect("owner peer");
    let reader = ZmqConnector::new().expect("reader peer");
    let data = Bytes::from(
        (0..64usize << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let key = owner.put(data.clone()).expect("put");
    let small = owner.put(Bytes::from_static(b"warm")).expect("put");
    reader.get(&small).expect("warm-up get");

    let (fetched, large) = large_allocations_during(|| reader.get(&key));
    let fetched = fetched.expect("get").expect("present");
    assert_eq!(
        large, 0,
        "a same-host get of 64 MiB made {large} Rust allocations of 1 MiB or more"
    );
    assert_eq!(
        reader.mapped_reads(),
        1,
        "the get did not map shared memory"
    );
    assert!(fetched == data, "the mapped object differs");

    let line = mapping_of(fetched.as_ptr(), fetched.len()).expect("the bytes are mapped");
    assert!(
        line.contains("/memfd:proxystore-zmq") && line.contains(" r--s "),
        "the reader's bytes are not in a shared, read-only mapping of the owner's memory file: {line}"
    );
    // The owner's copy is another mapping of the same file: the reader shares its pages.
    let on_owner = owner.get(&key).expect("get").expect("present");
    assert_ne!(on_owner.as_ptr(), fetched.as_ptr());
    let owner_line = mapping_of(on_owner.as_ptr(), on_owner.len()).expect("mapped");
    assert!(owner_line.contains("/memfd:proxystore-zmq"), "{owner_line}");
    let inode = |line: &str| line.split_whitespace().nth(4).map(str::to_string);
    assert_eq!(
        inode(&line),
        inode(&owner_line),
        "the reader mapped another file than the owner's"
    );
}
