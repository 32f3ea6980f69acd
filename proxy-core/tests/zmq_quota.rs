//! A peer's byte quota for remote puts charges each object its overhead too: empty objects
//! are not free (300,000 empty puts under a 1 MiB quota were all accepted, +82 MiB resident).

use bytes::Bytes;
use proxy_core::{Connector, Error, ZmqConnector, ZmqOptions};

#[test]
fn empty_remote_puts_are_refused_past_the_quota() {
    const QUOTA: u64 = 1 << 20;
    let owner = ZmqOptions::default()
        .with_max_bytes(QUOTA)
        .build()
        .expect("owner");
    owner
        .put(Bytes::from_static(b"start the server"))
        .expect("own put");
    let endpoint = owner.endpoint().expect("endpoint").to_string();
    let writer = ZmqConnector::remote(&endpoint).expect("remote writer");

    let mut refused = None;
    for _ in 0..20 {
        match writer.put_batch(vec![Bytes::new(); 1000]) {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    match refused {
        Some(Error::QuotaExceeded { limit, message, .. }) => {
            assert_eq!(limit, QUOTA);
            assert!(message.contains("overhead"), "{message}");
        }
        other => panic!("20,000 empty puts under a 1 MiB quota: {other:?}"),
    }
    let stats = writer.peer_stats(&endpoint).expect("stats");
    // Each empty object is charged 320 bytes: at most 3,276 fit in 1 MiB.
    assert_eq!(ZmqConnector::REMOTE_OBJECT_OVERHEAD, 320);
    assert_eq!(stats.objects, 1 + QUOTA / 320, "{stats:?}");
    assert_eq!(stats.remote_bytes, 0);
}
