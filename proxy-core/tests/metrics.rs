//! Per-key metrics: per operation and key, count, bytes, total, min, max and last time;
//! cache answers counted; the per-key view is bounded.

use std::time::Duration;

use bytes::Bytes;
use proxy_core::{Key, LocalConnector, Store, DEFAULT_METRICS_KEYS};

fn metered(name: &str) -> Store {
    Store::builder(name, LocalConnector::new())
        .with_metrics(true)
        .build()
}

#[test]
fn each_key_has_its_own_counters() {
    let store = metered("metrics-per-key");
    let a = store.put(&vec![1u8; 100]).expect("put a");
    let b = store.put_bytes(Bytes::from(vec![2u8; 10])).expect("put b");
    store.get::<Vec<u8>>(&a).expect("get").expect("a"); // miss
    store.get::<Vec<u8>>(&a).expect("get").expect("a"); // hit
    store.get_bytes(&b).expect("get").expect("b");
    store.get_bytes(&b).expect("get").expect("b");
    assert!(store.exists(&a).expect("exists"), "answered from the cache");
    assert!(store.exists(&b).expect("exists"), "asked the connector");
    store.evict(&b).expect("evict");

    let m = store.metrics().expect("metrics");
    let ka = m.key(&a).expect("a is followed");
    assert_eq!(
        (ka.put.count, ka.put.bytes),
        (1, 100),
        "Vec<u8> is stored as is"
    );
    assert_eq!((ka.get.count, ka.cache_hits), (1, 1));
    assert_eq!((ka.exists.count, ka.exists_cache_hits), (0, 1));
    assert_eq!(ka.evict.count, 0);

    let kb = m.key(&b).expect("b is followed");
    assert_eq!((kb.get.count, kb.get.bytes, kb.cache_hits), (2, 20, 0));
    assert_eq!((kb.exists.count, kb.exists_cache_hits), (1, 0));
    assert_eq!(kb.evict.count, 1);

    // Store-wide: exists answered from the cache are counted apart.
    assert_eq!((m.exists.count, m.exists_cache_hits), (1, 1));
    assert_eq!((m.cache_hits, m.cache_misses), (1, 1));
    assert!(m.key(&Key::random("local")).is_none());
}

#[test]
fn times_have_min_max_last_and_total() {
    let store = metered("metrics-times");
    let key = store.put_bytes(Bytes::from_static(b"x")).expect("put");
    for _ in 0..5 {
        store.get_bytes(&key).expect("get");
    }
    let m = store.metrics().expect("metrics");
    for stats in [m.get, m.key(&key).expect("followed").get] {
        assert_eq!(stats.count, 5);
        assert!(
            stats.min <= stats.last && stats.last <= stats.max,
            "{stats:?}"
        );
        assert!(
            stats.min <= stats.mean() && stats.mean() <= stats.max,
            "{stats:?}"
        );
        assert!(stats.max <= stats.time, "{stats:?}");
        assert!(stats.time > Duration::ZERO);
    }
    assert_eq!(m.evict.min, Duration::ZERO, "no eviction ran");
}

#[test]
fn a_batch_counts_once_store_wide_and_once_per_key() {
    let store = metered("metrics-batch");
    let proxies = store.proxy_batch(vec![1u32, 2, 3]).expect("batch");
    let keys: Vec<Key> = proxies
        .iter()
        .map(|p| proxy_core::Proxy::key(p).clone())
        .collect();
    let m = store.metrics().expect("metrics");
    assert_eq!(m.put.count, 1);
    for key in &keys {
        let k = m.key(key).expect("followed");
        assert_eq!((k.put.count, k.put.bytes), (1, 4));
    }
    store
        .get_batch_with::<u32, proxy_core::DefaultCodec>(&keys)
        .expect("batch get");
    let m = store.metrics().expect("metrics");
    assert_eq!(m.get.count, 1);
    assert!(keys
        .iter()
        .all(|k| m.key(k).expect("followed").get.count == 1));
}

#[test]
fn the_per_key_view_is_bounded() {
    let store = Store::builder("metrics-bounded", LocalConnector::new())
        .with_metrics(true)
        .with_metrics_keys(3)
        .build();
    let keys: Vec<Key> = (0..5u8).map(|i| store.put(&i).expect("put")).collect();
    store.get::<u8>(&keys[0]).expect("get"); // now among the 3 most recent
    let m = store.metrics().expect("metrics");
    assert_eq!(m.keys.len(), 3);
    assert!(m.key(&keys[0]).is_some());
    assert!(m.key(&keys[1]).is_none() && m.key(&keys[2]).is_none());
    assert_eq!(m.put.count, 5, "the totals count every operation");

    let off = Store::builder("metrics-no-keys", LocalConnector::new())
        .with_metrics(true)
        .with_metrics_keys(0)
        .build();
    off.put(&1u8).expect("put");
    let m = off.metrics().expect("metrics");
    assert!(m.keys.is_empty());
    assert_eq!(m.put.count, 1);
    assert_eq!(store.config().metrics_keys, 3);
    assert_eq!(
        Store::from_config(&store.config())
            .expect("rebuild")
            .config()
            .metrics_keys,
        3
    );
    assert_eq!(
        metered("metrics-default").config().metrics_keys,
        DEFAULT_METRICS_KEYS
    );
}
