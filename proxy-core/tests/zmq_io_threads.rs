//! The process's ZeroMQ context runs the I/O threads asked for before its first use.
//!
//! One test in its own binary (so its own process): nothing has created the context yet.

use bytes::Bytes;
use proxy_core::{Connector, Error, ZmqConnector};

#[test]
fn io_threads_set_before_first_use_are_the_ones_running() {
    ZmqConnector::set_io_threads(3).expect("before first use, any count from 1 to 64");
    // Until the context exists the choice can still change.
    ZmqConnector::set_io_threads(2).expect("still before first use");
    assert!(matches!(
        ZmqConnector::set_io_threads(0),
        Err(Error::Config { .. })
    ));

    // Several readers of one peer, each thread with its own client socket.
    let owner = ZmqConnector::new().expect("owner");
    let keys: Vec<_> = (0..4u8)
        .map(|i| owner.put(Bytes::from(vec![i; 1 << 16])).expect("put"))
        .collect();
    std::thread::scope(|scope| {
        for (i, key) in keys.iter().enumerate() {
            scope.spawn(move || {
                let reader = ZmqConnector::client(Default::default()).expect("reader");
                let data = reader.get(key).expect("get").expect("present");
                assert_eq!(data, Bytes::from(vec![i as u8; 1 << 16]));
            });
        }
    });

    assert_eq!(ZmqConnector::io_threads(), 2);
    ZmqConnector::set_io_threads(2).expect("the running count is accepted");
    assert!(matches!(
        ZmqConnector::set_io_threads(4),
        Err(Error::Config { .. })
    ));
    assert_eq!(ZmqConnector::io_threads(), 2);
}
