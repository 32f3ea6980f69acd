//! What a proxy costs on a dataflow's channels: the README and the crate docs promise
//! "about 200 bytes (under 224)" for a proxy of an object of any size on the embedded ZeroMQ
//! peer (its key names the peer's endpoint and incarnation).

use proxy_core::{Proxy, Store, ZmqConnector};

#[test]
fn a_zmq_proxy_serializes_to_under_224_bytes_whatever_its_object() {
    let store = Store::new("proxy-size", ZmqConnector::new().expect("peer"));
    for len in [0usize, 1 << 10, 1 << 20, 16 << 20] {
        let proxy: Proxy<Vec<u8>> = store.proxy(vec![7u8; len]).expect("proxy");
        let size = bincode::serialized_size(&proxy).expect("serialize");
        assert!(
            (100..224).contains(&size),
            "a proxy of {len} bytes serializes to {size} bytes"
        );
        store.evict(Proxy::key(&proxy)).expect("evict");
    }
}
