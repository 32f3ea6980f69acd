//! The connector conformance suite: generic checks that every [`Connector`] must pass.
//!
//! Each check is a plain function over `&dyn Connector`, so a third-party connector can run
//! the same suite (enable the `integration` feature of `proxy-core`), and
//! [`conformance_tests!`](crate::conformance_tests) stamps one named `#[test]` per check.
//! The checks panic with a message naming the operation and key when the connector fails.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::connector::Connector;
use crate::error::Error;
use crate::key::Key;

/// Payload of `len` bytes with a pattern that depends on `seed`, so mixed-up objects differ.
pub fn payload(len: usize, seed: u8) -> Bytes {
    let mut data = vec![seed; len];
    // Mark a few positions so that truncation or reordering is caught without a slow loop.
    for (i, b) in data.iter_mut().enumerate().step_by(4093) {
        *b = seed.wrapping_add((i / 4093) as u8);
    }
    if let Some(last) = data.last_mut() {
        *last = seed ^ 0x5a;
    }
    Bytes::from(data)
}

fn get_some(connector: &dyn Connector, key: &Key) -> Bytes {
    match connector.get(key) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => panic!("get({key}) returned None for a stored object"),
        Err(e) => panic!("get({key}) failed: {e}"),
    }
}

/// Empty, small, 1 KiB and 64 MiB payloads come back byte for byte.
pub fn round_trip_payloads(connector: &dyn Connector) {
    for (len, seed) in [(0usize, 1u8), (1, 2), (1024, 3), (64 << 20, 4)] {
        let data = payload(len, seed);
        let key = connector
            .put(data.clone())
            .unwrap_or_else(|e| panic!("put of {len} bytes failed: {e}"));
        let back = get_some(connector, &key);
        assert_eq!(back.len(), len, "length of {key}");
        assert!(back == data, "content of {key} ({len} bytes) differs");
        connector
            .evict(&key)
            .unwrap_or_else(|e| panic!("evict({key}): {e}"));
    }
}

/// `exists` follows `put` and `evict`; `get` after `evict` is `None`.
pub fn exists_and_evict(connector: &dyn Connector) {
    let key = connector.put(payload(100, 7)).expect("put");
    assert!(
        connector.exists(&key).expect("exists"),
        "{key} missing after put"
    );
    connector.evict(&key).expect("evict");
    assert!(
        !connector.exists(&key).expect("exists"),
        "{key} present after evict"
    );
    assert_eq!(
        connector.get(&key).expect("get"),
        None,
        "{key} readable after evict"
    );
}

/// Evicting an object twice, or one that was never there, is not an error.
pub fn evict_twice(connector: &dyn Connector) {
    let key = connector.put(payload(10, 8)).expect("put");
    connector.evict(&key).expect("first evict");
    connector.evict(&key).expect("second evict must not fail");
}

/// Every `put` makes a new key, even for equal payloads, and evicting one leaves the other.
pub fn keys_are_distinct(connector: &dyn Connector) {
    let a = connector.put(payload(64, 9)).expect("put a");
    let b = connector.put(payload(64, 9)).expect("put b");
    assert_ne!(a, b, "two puts returned the same key");
    connector.evict(&a).expect("evict a");
    assert_eq!(get_some(connector, &b), payload(64, 9));
    connector.evict(&b).expect("evict b");
}

/// Batches keep their order, and a missing key in a batch gives `None` in its place.
pub fn batches(connector: &dyn Connector) {
    let data: Vec<Bytes> = (0..12).map(|i| payload(i * 1000, i as u8)).collect();
    let keys = connector.put_batch(data.clone()).expect("put_batch");
    assert_eq!(keys.len(), data.len());
    let unique: HashSet<&Key> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "put_batch repeated a key");

    let missing = connector.put(payload(5, 1)).expect("put");
    connector.evict(&missing).expect("evict");
    let mut asked: Vec<Key> = keys.iter().rev().cloned().collect();
    asked.insert(3, missing);
    let got = connector.get_batch(&asked).expect("get_batch");
    assert_eq!(got.len(), asked.len());
    assert_eq!(got[3], None, "evicted key in a batch must give None");
    let mut expected: Vec<Option<Bytes>> = data.iter().rev().cloned().map(Some).collect();
    expected.insert(3, None);
    assert!(
        got == expected,
        "get_batch returned objects out of order or changed"
    );
    for key in &keys {
        connector.evict(key).expect("evict");
    }
    assert_eq!(
        connector.get_batch(&[]).expect("empty get_batch"),
        Vec::<Option<Bytes>>::new()
    );
    assert!(connector
        .put_batch(Vec::new())
        .expect("empty put_batch")
        .is_empty());
}

/// Eight threads put and read back at once; nothing is lost or mixed up.
pub fn concurrent_use(connector: Arc<dyn Connector>) {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 50;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let connector = Arc::clone(&connector);
            std::thread::spawn(move || {
                let mut keys = Vec::new();
                for i in 0..PER_THREAD {
                    let data = payload(100 + i * 37, (t * PER_THREAD + i) as u8);
                    let key = connector.put(data.clone()).expect("put");
                    assert_eq!(get_some(&*connector, &key), data, "thread {t} object {i}");
                    keys.push((key, data));
                }
                keys
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.join().expect("a worker thread panicked"));
    }
    assert_eq!(all.len(), THREADS * PER_THREAD);
    let unique: HashSet<&Key> = all.iter().map(|(k, _)| k).collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "concurrent puts returned a repeated key"
    );
    for (key, data) in &all {
        assert_eq!(&get_some(&*connector, key), data, "{key} changed");
        connector.evict(key).expect("evict");
    }
}

/// A key made by another kind of connector is refused with an error, never a panic.
pub fn foreign_key_is_an_error(connector: &dyn Connector) {
    let foreign = Key::random("conformance-foreign");
    let check = |what: &str, err: Option<Error>| match err {
        Some(e) => assert!(
            matches!(e.root(), Error::WrongConnector { .. }),
            "{what} of a foreign key gave {e:?}, expected WrongConnector"
        ),
        None => panic!("{what} of a foreign key succeeded"),
    };
    check("get", connector.get(&foreign).err());
    check("exists", connector.exists(&foreign).err());
    check("evict", connector.evict(&foreign).err());
    check(
        "get_batch",
        connector.get_batch(std::slice::from_ref(&foreign)).err(),
    );
}

/// A connector rebuilt from [`Connector::config`] reads what the original stored.
pub fn rebuilt_from_config(connector: &dyn Connector) {
    let data = payload(3000, 11);
    let key = connector.put(data.clone()).expect("put");
    let config = connector.config();
    let rebuilt = config
        .build()
        .unwrap_or_else(|e| panic!("building from {config:?} failed: {e}"));
    assert_eq!(get_some(&*rebuilt, &key), data);
    assert!(rebuilt.exists(&key).expect("exists"));
    rebuilt
        .evict(&key)
        .expect("evict through the rebuilt connector");
    assert!(
        !connector.exists(&key).expect("exists"),
        "evict through the rebuilt connector did not reach the original"
    );
}

/// A key from `new_key` holds nothing until `put_at` stores under it, once: a second
/// `put_at` fails with [`Error::KeyTaken`] and leaves the first bytes (futures need this).
pub fn reserved_keys(connector: &dyn Connector) {
    let key = connector
        .new_key()
        .unwrap_or_else(|e| panic!("new_key failed: {e}"));
    let other = connector.new_key().expect("second new_key");
    assert_ne!(key, other, "new_key returned the same key twice");
    assert!(
        !connector.exists(&key).expect("exists"),
        "{key} exists before put_at"
    );
    assert_eq!(
        connector.get(&key).expect("get"),
        None,
        "{key} readable before put_at"
    );
    let first = payload(2048, 21);
    connector
        .put_at(&key, first.clone())
        .unwrap_or_else(|e| panic!("put_at({key}) failed: {e}"));
    assert!(
        get_some(connector, &key) == first,
        "content of {key} after put_at"
    );
    match connector.put_at(&key, payload(16, 22)) {
        Err(Error::KeyTaken { key: taken, .. }) => assert_eq!(taken, key),
        Err(other) => panic!("second put_at({key}) failed with {other}, not KeyTaken"),
        Ok(()) => panic!("second put_at({key}) succeeded: keys must be write-once"),
    }
    assert!(
        get_some(connector, &key) == first,
        "second put_at changed {key}"
    );
    connector.evict(&key).expect("evict");
    assert!(
        !connector.exists(&key).expect("exists"),
        "{key} after evict"
    );
    connector
        .evict(&other)
        .expect("evicting an unused reserved key");
}

/// Runs every check on `connector`.
pub fn run_all(connector: Arc<dyn Connector>) {
    round_trip_payloads(&*connector);
    exists_and_evict(&*connector);
    evict_twice(&*connector);
    keys_are_distinct(&*connector);
    batches(&*connector);
    foreign_key_is_an_error(&*connector);
    reserved_keys(&*connector);
    rebuilt_from_config(&*connector);
    concurrent_use(connector);
}

/// Stamps one `#[test]` per conformance check, each on a fresh connector from `$make`.
///
/// The tests live in a module named `connector_conformance`, so the macro can be used next to
/// `use proxy_core::conformance;`. With `skippable:` in front, `$make` is an
/// `Option<connector>`; `None` (a fixture that skipped, see `testing::require_or_skip`, feature
/// `integration`) makes every test return early.
///
/// ```ignore
/// proxy_core::conformance_tests!(MyConnector::new());
/// proxy_core::conformance_tests!(skippable: served_or_skip());
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (skippable: $make:expr) => {
        $crate::__conformance_tests_module!({ $make });
    };
    ($make:expr) => {
        $crate::__conformance_tests_module!({ ::std::option::Option::Some($make) });
    };
}

/// The body of [`conformance_tests!`]; not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests_module {
    ($make:block) => {
        mod connector_conformance {
            #[allow(unused_imports)]
            use super::*;

            fn make() -> ::std::option::Option<::std::sync::Arc<dyn $crate::Connector>> {
                let made = $make;
                made.map(|connector| {
                    ::std::sync::Arc::new(connector) as ::std::sync::Arc<dyn $crate::Connector>
                })
            }

            #[test]
            fn round_trip_payloads() {
                if let Some(connector) = make() {
                    $crate::conformance::round_trip_payloads(&*connector);
                }
            }
            #[test]
            fn exists_and_evict() {
                if let Some(connector) = make() {
                    $crate::conformance::exists_and_evict(&*connector);
                }
            }
            #[test]
            fn evict_twice() {
                if let Some(connector) = make() {
                    $crate::conformance::evict_twice(&*connector);
                }
            }
            #[test]
            fn keys_are_distinct() {
                if let Some(connector) = make() {
                    $crate::conformance::keys_are_distinct(&*connector);
                }
            }
            #[test]
            fn batches() {
                if let Some(connector) = make() {
                    $crate::conformance::batches(&*connector);
                }
            }
            #[test]
            fn foreign_key_is_an_error() {
                if let Some(connector) = make() {
                    $crate::conformance::foreign_key_is_an_error(&*connector);
                }
            }
            #[test]
            fn reserved_keys() {
                if let Some(connector) = make() {
                    $crate::conformance::reserved_keys(&*connector);
                }
            }
            #[test]
            fn rebuilt_from_config() {
                if let Some(connector) = make() {
                    $crate::conformance::rebuilt_from_config(&*connector);
                }
            }
            #[test]
            fn concurrent_use() {
                if let Some(connector) = make() {
                    $crate::conformance::concurrent_use(connector);
                }
            }
        }
    };
}
