//! `delegate_connector!`: a wrapper connector that writes only what it changes and forwards
//! every other operation of the `Connector` trait, optional ones included, so that it passes
//! the whole conformance suite and keeps the inner connector's capabilities.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use proxy_core::{
    delegate_connector, Capability, Connector, Key, LocalConnector, OwnedProxy, Result, Store,
    ZmqConnector,
};

/// Counts single puts; everything else is forwarded.
#[derive(Debug)]
struct CountingPuts {
    inner: Arc<dyn Connector>,
    puts: AtomicU64,
}

impl CountingPuts {
    fn new(inner: impl Connector + 'static) -> Self {
        CountingPuts {
            inner: Arc::new(inner),
            puts: AtomicU64::new(0),
        }
    }
}

impl Connector for CountingPuts {
    fn put(&self, data: Bytes) -> Result<Key> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.inner.put(data)
    }
    delegate_connector!(inner; except put);
}

/// The same wrapper written by hand with only the required methods: what a wrapper looked
/// like before, losing every optional operation to the trait's refusing defaults.
#[derive(Debug)]
struct HandWritten {
    inner: LocalConnector,
}

impl Connector for HandWritten {
    fn put(&self, data: Bytes) -> Result<Key> {
        self.inner.put(data)
    }
    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.inner.get(key)
    }
    fn exists(&self, key: &Key) -> Result<bool> {
        self.inner.exists(key)
    }
    fn evict(&self, key: &Key) -> Result<()> {
        self.inner.evict(key)
    }
    fn config(&self) -> proxy_core::ConnectorConfig {
        self.inner.config()
    }
}

proxy_core::conformance_tests!(CountingPuts::new(LocalConnector::new()));

#[test]
fn a_delegating_wrapper_keeps_every_optional_operation() {
    let wrapper = CountingPuts::new(LocalConnector::new());
    let key = wrapper.put(Bytes::from_static(b"a")).expect("put");
    assert_eq!(wrapper.puts.load(Ordering::Relaxed), 1, "its own put ran");
    wrapper
        .overwrite(&key, Bytes::from_static(b"b"))
        .expect("overwrite is forwarded");
    assert_eq!(
        wrapper.get(&key).expect("get"),
        Some(Bytes::from_static(b"b"))
    );
    let reserved = wrapper.new_key().expect("new_key is forwarded");
    wrapper
        .put_at(&reserved, Bytes::from_static(b"c"))
        .expect("put_at is forwarded");
    assert_eq!(wrapper.object_count(), Some(2));
    assert_eq!(wrapper.supports(Capability::Overwrite), Some(true));
    assert_eq!(wrapper.supports(Capability::ReservedKeys), Some(true));

    // Through a store: futures and owned write-backs work on the wrapper.
    let store = Store::new("delegate-store", wrapper);
    let future = store.future::<u32>().expect("future");
    future.set(&5).expect("set");
    let mut owned = store.owned_proxy(vec![1u8]).expect("owned");
    OwnedProxy::borrow_mut(&mut owned)
        .expect("borrow_mut")
        .push(2);
    assert_eq!(*owned, vec![1, 2]);

    // Written by hand, the same wrapper loses them all (the trait's defaults refuse), and
    // cannot say what it supports.
    let bare = HandWritten {
        inner: LocalConnector::new(),
    };
    let key = bare.put(Bytes::from_static(b"a")).expect("put");
    assert!(bare.overwrite(&key, Bytes::from_static(b"b")).is_err());
    assert!(bare.new_key().is_err());
    assert_eq!(bare.supports(Capability::Overwrite), None);
    assert_eq!(bare.object_count(), None);
}

#[test]
fn a_delegating_wrapper_says_what_its_inner_connector_cannot_do() {
    let wrapper = CountingPuts::new(ZmqConnector::new().expect("zmq"));
    assert_eq!(wrapper.supports(Capability::Overwrite), Some(false));
    let store = Store::new("delegate-zmq", wrapper);
    let mut owned = store.owned_proxy(1u64).expect("owned");
    let err = OwnedProxy::borrow_mut(&mut owned).expect_err("zmq cannot overwrite");
    assert!(err.to_string().contains("overwrite"), "{err}");
}
