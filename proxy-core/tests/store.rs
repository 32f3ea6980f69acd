//! Behaviour of the typed `Store` layer: put/get/exists/evict, the object cache, metrics,
//! custom codecs, batches, configs and error context.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use common::unique;
use proxy_core::{
    Codec, Error, FileConnector, Key, LocalConnector, Proxy, Store, DEFAULT_CACHE_SIZE,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    values: Vec<f64>,
    tags: Option<Vec<(u32, f32)>>,
}

fn record(id: u64) -> Record {
    Record {
        id,
        name: format!("record {id}"),
        values: (0..100).map(|i| i as f64 * 0.5).collect(),
        tags: Some(vec![(1, 1.5), (2, 2.5)]),
    }
}

fn local(prefix: &str) -> Store {
    Store::new(unique(prefix), LocalConnector::new())
}

fn metered(prefix: &str) -> Store {
    Store::builder(unique(prefix), LocalConnector::new())
        .with_metrics(true)
        .build()
}

/// Put, get, exists and evict one value of type `T`, checking each step.
fn round_trip<T>(store: &Store, value: T)
where
    T: Serialize
        + serde::de::DeserializeOwned
        + PartialEq
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let key = store.put(&value).expect("put");
    assert!(
        store.exists(&key).expect("exists"),
        "{key} missing after put"
    );
    let back = store.get::<T>(&key).expect("get").expect("stored value");
    assert_eq!(*back, value);
    store.evict(&key).expect("evict");
    assert!(
        !store.exists(&key).expect("exists"),
        "{key} present after evict"
    );
    assert!(store.get::<T>(&key).expect("get after evict").is_none());
}

#[test]
fn put_get_exists_evict_for_several_types() {
    for store in [
        local("types-local"),
        Store::new(
            unique("types-file"),
            FileConnector::new(tempdir().path()).expect("fc"),
        ),
    ] {
        round_trip(&store, 42u64);
        round_trip(&store, String::from("héllo wörld"));
        round_trip(&store, vec![1.5f64, -2.25, f64::MAX]);
        round_trip(&store, record(7));
        round_trip(&store, Some((1u8, -1i64, 'x')));
        round_trip(
            &store,
            HashMap::from([("a".to_string(), vec![1u32]), ("b".to_string(), vec![])]),
        );
        round_trip(&store, vec![0u8, 1, 2, 255]);
        round_trip(&store, Bytes::from_static(b"raw bytes"));
        round_trip(&store, Vec::<String>::new());
    }
}

/// A temporary directory that lives for the whole test binary (file stores built in a
/// loop outlive the expression that made them).
fn tempdir() -> &'static tempfile::TempDir {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
}

#[test]
fn get_of_a_missing_key_is_none() {
    let store = local("missing");
    let never_stored = Key::random("local");
    assert!(store.get::<String>(&never_stored).expect("get").is_none());
    assert!(!store.exists(&never_stored).expect("exists"));
    assert!(store.get_bytes(&never_stored).expect("get_bytes").is_none());
    // Evicting something that is not there is fine.
    store.evict(&never_stored).expect("evict of a missing key");
}

#[test]
fn a_key_of_another_connector_kind_is_an_error_naming_the_store() {
    let store = local("foreign");
    let foreign = Key::random("file");
    let err = store
        .get::<String>(&foreign)
        .expect_err("wrong connector kind");
    assert!(
        matches!(err.root(), Error::WrongConnector { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(store.name()), "{text}");
    assert!(text.contains(&foreign.to_string()), "{text}");
}

#[test]
fn evict_drops_the_cached_object() {
    let store = local("evict-cache");
    let key = store.put(&record(1)).expect("put");
    assert!(!store.is_cached(&key), "put must not cache");
    store.get::<Record>(&key).expect("get").expect("present");
    assert!(store.is_cached(&key), "get must cache");
    store.evict(&key).expect("evict");
    assert!(!store.is_cached(&key), "evict left the object in the cache");
    assert!(store.get::<Record>(&key).expect("get").is_none());
}

#[test]
fn a_cache_hit_returns_the_same_arc() {
    let store = local("ptr-eq");
    let key = store.put(&record(2)).expect("put");
    let first = store.get::<Record>(&key).expect("get").expect("present");
    let second = store.get::<Record>(&key).expect("get").expect("present");
    assert!(Arc::ptr_eq(&first, &second), "cache hit decoded again");
    // Clones of the store share the cache.
    let third = store
        .clone()
        .get::<Record>(&key)
        .expect("get")
        .expect("present");
    assert!(Arc::ptr_eq(&first, &third), "clones do not share the cache");
}

#[test]
fn cache_size_zero_never_caches() {
    let store = Store::builder(unique("nocache"), LocalConnector::new())
        .with_cache_size(0)
        .with_metrics(true)
        .build();
    let key = store.put(&record(3)).expect("put");
    let first = store.get::<Record>(&key).expect("get").expect("present");
    assert!(!store.is_cached(&key));
    let second = store.get::<Record>(&key).expect("get").expect("present");
    assert!(
        !Arc::ptr_eq(&first, &second),
        "a disabled cache returned a cached object"
    );
    assert_eq!(*first, *second);
    let m = store.metrics().expect("metrics");
    assert_eq!(m.get.count, 2, "both gets must reach the connector");
    assert_eq!(m.cache_hits, 0);
}

#[test]
fn default_cache_holds_16_and_evicts_the_least_recently_used() {
    assert_eq!(DEFAULT_CACHE_SIZE, 16);
    let store = local("lru");
    let keys: Vec<Key> = (0..17u64).map(|i| store.put(&i).expect("put")).collect();
    for key in &keys[..16] {
        store.get::<u64>(key).expect("get").expect("present");
    }
    assert!(
        keys[..16].iter().all(|k| store.is_cached(k)),
        "16 objects fit"
    );

    // Touch the oldest, so the second oldest becomes the least recently used.
    store.get::<u64>(&keys[0]).expect("get").expect("present");
    store.get::<u64>(&keys[16]).expect("get").expect("present");
    assert!(
        store.is_cached(&keys[16]),
        "the newest object must be cached"
    );
    assert!(
        store.is_cached(&keys[0]),
        "a recently used object was pushed out"
    );
    assert!(
        !store.is_cached(&keys[1]),
        "the least recently used object stayed"
    );
    assert_eq!(keys.iter().filter(|k| store.is_cached(k)).count(), 16);

    // Pushed out of the cache is not gone from the store.
    assert_eq!(
        *store.get::<u64>(&keys[1]).expect("get").expect("present"),
        1
    );
}

#[test]
fn default_cache_pushes_out_the_oldest_on_the_17th_get() {
    let store = local("lru-17");
    let keys: Vec<Key> = (0..17u64).map(|i| store.put(&i).expect("put")).collect();
    for key in &keys {
        store.get::<u64>(key).expect("get").expect("present");
    }
    assert!(
        !store.is_cached(&keys[0]),
        "the oldest must be pushed out by the 17th"
    );
    assert!(keys[1..].iter().all(|k| store.is_cached(k)));
}

#[test]
fn metrics_count_operations_bytes_and_cache_hits() {
    let store = metered("metrics");
    let value = vec![7u64; 100];
    let encoded = 8 + 8 * 100; // bincode: u64 length prefix, then the elements
    let key = store.put(&value).expect("put");
    let m = store.metrics().expect("metrics enabled");
    assert_eq!((m.put.count, m.put.bytes), (1, encoded));
    assert_eq!(m.get.count, 0);

    store.get::<Vec<u64>>(&key).expect("get").expect("present"); // miss
    store.get::<Vec<u64>>(&key).expect("get").expect("present"); // hit
    store.get::<Vec<u64>>(&key).expect("get").expect("present"); // hit
    let m = store.metrics().expect("metrics");
    assert_eq!(
        (m.get.count, m.get.bytes),
        (1, encoded),
        "hits must not reach the connector"
    );
    assert_eq!((m.cache_hits, m.cache_misses), (2, 1));

    let missing = Key::random("local");
    assert!(store.get::<Vec<u64>>(&missing).expect("get").is_none());
    assert!(!store.exists(&missing).expect("exists"));
    store.evict(&key).expect("evict");
    let m = store.metrics().expect("metrics");
    assert_eq!((m.get.count, m.get.bytes), (2, encoded));
    assert_eq!((m.cache_hits, m.cache_misses), (2, 2));
    assert_eq!(m.exists.count, 1);
    assert_eq!(m.evict.count, 1);
    assert!(m.put.mean() <= m.put.time);

    // Raw byte operations are counted too.
    let raw = store
        .put_bytes(Bytes::from(vec![1u8; 1000]))
        .expect("put_bytes");
    store.get_bytes(&raw).expect("get_bytes").expect("present");
    let m = store.metrics().expect("metrics");
    assert_eq!((m.put.count, m.put.bytes), (2, encoded + 1000));
    assert_eq!((m.get.count, m.get.bytes), (3, encoded + 1000));
}

#[test]
fn metrics_are_none_when_disabled() {
    let store = local("no-metrics");
    let key = store.put(&1u8).expect("put");
    store.get::<u8>(&key).expect("get");
    assert!(store.metrics().is_none());
}

#[test]
fn metrics_are_shared_by_clones() {
    let store = metered("metrics-clones");
    let clone = store.clone();
    clone.put(&1u32).expect("put");
    assert_eq!(store.metrics().expect("metrics").put.count, 1);
}

/// A custom codec: little-endian `u32`s back to back, with no length prefix.
struct Le32;

impl Codec<Vec<u32>> for Le32 {
    fn encode(value: &Vec<u32>) -> proxy_core::Result<Bytes> {
        Ok(Bytes::from(
            value
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        ))
    }

    fn decode(bytes: Bytes) -> proxy_core::Result<Vec<u32>> {
        if !bytes.len().is_multiple_of(4) {
            return Err(Error::Codec {
                action: "decode",
                type_name: "Vec<u32> (Le32)",
                message: format!("{} bytes is not a multiple of 4", bytes.len()),
            });
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

#[test]
fn put_with_a_custom_codec_stores_its_encoding() {
    let store = local("codec-put");
    let value = vec![1u32, 0x0403_0201, u32::MAX];
    let key = store.put_with::<_, Le32>(&value).expect("put_with");
    let raw = store.get_bytes(&key).expect("get_bytes").expect("present");
    assert_eq!(
        &raw[..],
        &[1, 0, 0, 0, 1, 2, 3, 4, 255, 255, 255, 255],
        "stored bytes are not the custom encoding"
    );
    let back = store
        .get_with::<Vec<u32>, Le32>(&key)
        .expect("get_with")
        .expect("present");
    assert_eq!(*back, value);
    // The default codec would have written a length prefix.
    let default_key = store.put(&value).expect("put");
    let default_raw = store
        .get_bytes(&default_key)
        .expect("get_bytes")
        .expect("present");
    assert_eq!(default_raw.len(), 8 + 12);
}

#[test]
fn proxy_with_a_custom_codec_resolves_through_it() {
    let store = local("codec-proxy");
    let value: Vec<u32> = (0..1000).collect();
    let proxy = store
        .proxy_with::<_, Le32>(value.clone())
        .expect("proxy_with");
    assert!(Proxy::is_resolved(&proxy), "a fresh proxy holds its value");
    assert_eq!(*proxy, value);
    let raw = store
        .get_bytes(Proxy::key(&proxy))
        .expect("get_bytes")
        .expect("present");
    assert_eq!(raw.len(), 4000, "stored bytes are not the custom encoding");
    assert_eq!(&raw[4..8], &1u32.to_le_bytes());

    let lazy: Proxy<Vec<u32>, Le32> = store.proxy_from_key_with(Proxy::key(&proxy).clone());
    assert!(!Proxy::is_resolved(&lazy));
    assert_eq!(lazy.len(), 1000);
    assert_eq!(lazy[999], 999);
}

#[test]
fn proxy_batch_stores_every_object() {
    let store = metered("batch");
    let objs: Vec<Record> = (0..5).map(record).collect();
    let proxies = store.proxy_batch(objs.clone()).expect("proxy_batch");
    assert_eq!(proxies.len(), 5);
    let m = store.metrics().expect("metrics");
    assert_eq!(m.put.count, 1, "a batch is one put");
    let mut keys: Vec<&Key> = proxies.iter().map(Proxy::key).collect();
    keys.sort_by_key(|k| k.id());
    keys.dedup();
    assert_eq!(keys.len(), 5, "keys must be distinct");
    for (proxy, obj) in proxies.iter().zip(&objs) {
        assert!(Proxy::is_resolved(proxy));
        assert_eq!(**proxy, *obj);
        let stored = store
            .get::<Record>(Proxy::key(proxy))
            .expect("get")
            .expect("present");
        assert_eq!(*stored, *obj, "batch stored objects in the wrong order");
    }
    assert!(store
        .proxy_batch(Vec::<Record>::new())
        .expect("empty batch")
        .is_empty());
}

#[test]
fn from_config_round_trip_local() {
    let store = Store::builder(unique("config-local"), LocalConnector::new())
        .with_cache_size(3)
        .with_metrics(true)
        .build();
    let key = store.put(&record(9)).expect("put");
    let config = store.config();
    let wire = bincode::serialize(&config).expect("serialize config");
    let config_back = bincode::deserialize(&wire).expect("deserialize config");
    assert_eq!(config, config_back);

    let rebuilt = Store::from_config(&config_back).expect("from_config");
    assert_eq!(rebuilt.config(), config);
    assert_eq!(rebuilt.name(), store.name());
    assert!(
        !rebuilt.same_store(&store),
        "from_config builds a new store handle"
    );
    assert!(rebuilt.metrics().is_some());
    // In the same process a rebuilt local connector reaches the same map.
    assert_eq!(
        *rebuilt.get::<Record>(&key).expect("get").expect("present"),
        record(9)
    );
    let key2 = rebuilt.put(&1u8).expect("put");
    assert!(store.exists(&key2).expect("exists"));
}

#[test]
fn from_config_round_trip_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(
        unique("config-file"),
        FileConnector::new(dir.path()).expect("file connector"),
    )
    .with_cache_size(0)
    .build();
    let key = store.put(&record(10)).expect("put");
    let rebuilt = Store::from_config(&store.config()).expect("from_config");
    assert_eq!(rebuilt.config(), store.config());
    assert_eq!(rebuilt.config().cache_size, 0);
    assert!(rebuilt.metrics().is_none());
    assert_eq!(
        *rebuilt.get::<Record>(&key).expect("get").expect("present"),
        record(10)
    );
    rebuilt.evict(&key).expect("evict");
    assert!(!store.exists(&key).expect("exists"));
}

#[test]
fn a_removed_file_store_directory_gives_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let store = Store::new(unique("gone"), FileConnector::new(&path).expect("fc"));
    let key = store.put(&record(11)).expect("put before removal");
    let config = store.config();
    dir.close().expect("remove the directory");

    let err = store
        .put(&record(12))
        .expect_err("put into a removed directory");
    match err.root() {
        Error::Io { path: p, .. } => assert!(p.starts_with(&path), "{p:?} not under {path:?}"),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(store.name()), "{text}");

    // A get is an error naming the directory (the store itself is gone), not a panic and
    // not a silent "missing object".
    let err = store
        .get::<Record>(&key)
        .expect_err("get from a removed directory");
    assert!(
        matches!(err.root(), Error::Io { path: p, .. } if *p == path),
        "{err:?}"
    );

    let err = Store::from_config(&config).expect_err("rebuild over a removed directory");
    assert!(
        matches!(err.root(), Error::Io { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn close_empties_the_cache() {
    let store = local("close");
    let key = store.put(&5u16).expect("put");
    store.get::<u16>(&key).expect("get");
    assert!(store.is_cached(&key));
    store.close().expect("close");
    assert!(!store.is_cached(&key));
}

#[test]
fn a_cached_object_of_another_type_is_decoded_again() {
    let store = local("retype");
    let key = store.put(&vec![1u8, 2, 3]).expect("put");
    let bytes = store.get::<Vec<u8>>(&key).expect("get").expect("present");
    assert_eq!(*bytes, vec![1, 2, 3]);
    // Same key, other type: the cached Vec<u8> must not be handed out as Bytes.
    let raw = store.get::<Bytes>(&key).expect("get").expect("present");
    assert_eq!(&raw[..], &[1, 2, 3]);
}

/// A connector whose `get` pauses after reading, so an eviction can slip in between.
#[derive(Debug)]
struct PausingGet {
    inner: LocalConnector,
    read: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    resume: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl proxy_core::Connector for PausingGet {
    fn put(&self, data: bytes::Bytes) -> proxy_core::Result<proxy_core::Key> {
        self.inner.put(data)
    }
    fn get(&self, key: &proxy_core::Key) -> proxy_core::Result<Option<bytes::Bytes>> {
        let found = self.inner.get(key)?;
        self.read.lock().expect("lock").send(()).expect("signal");
        self.resume.lock().expect("lock").recv().expect("resume");
        Ok(found)
    }
    fn exists(&self, key: &proxy_core::Key) -> proxy_core::Result<bool> {
        self.inner.exists(key)
    }
    fn evict(&self, key: &proxy_core::Key) -> proxy_core::Result<()> {
        self.inner.evict(key)
    }
    fn config(&self) -> proxy_core::ConnectorConfig {
        self.inner.config()
    }
}

#[test]
fn a_get_racing_an_evict_does_not_bring_the_object_back_into_the_cache() {
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel();
    let connector = PausingGet {
        inner: LocalConnector::new(),
        read: std::sync::Mutex::new(read_tx),
        resume: std::sync::Mutex::new(resume_rx),
    };
    let store = Store::new(unique("evict-race"), connector);
    let key = store.put(&7u32).expect("put");
    let reader = {
        let (store, key) = (store.clone(), key.clone());
        std::thread::spawn(move || store.get::<u32>(&key).expect("get"))
    };
    read_rx.recv().expect("the get read the object");
    store.evict(&key).expect("evict while the get is in flight");
    resume_tx.send(()).expect("resume");
    assert_eq!(reader.join().expect("reader").as_deref(), Some(&7));
    assert!(
        !store.is_cached(&key),
        "the evicted object came back into the cache"
    );
    assert!(!store.exists(&key).expect("exists"));
}
