//! Behaviour of `Proxy<T>`: lazy resolution, errors and panics, extract, background fetches,
//! resolve-once under concurrency, and serialization as a factory.

mod common;

use std::hash::BuildHasher;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use common::{panic_message, unique, wait_until};
use proxy_core::{
    get_store, register_store, unregister_store, Error, FileConnector, Key, LocalConnector,
    LockedProxy, Proxy, Store,
};

fn metered(prefix: &str) -> Store {
    Store::builder(unique(prefix), LocalConnector::new())
        .with_metrics(true)
        .build()
}

/// A proxy to an object that has been evicted: it cannot resolve.
fn dangling(store: &Store) -> (Proxy<Vec<u64>>, Key) {
    let key = store.put(&vec![1u64, 2, 3]).expect("put");
    store.evict(&key).expect("evict");
    (store.proxy_from_key(key.clone()), key)
}

#[test]
fn proxy_from_key_is_unresolved_until_first_use() {
    let store = metered("lazy");
    let key = store.put(&vec![1u64, 2, 3]).expect("put");
    let proxy: Proxy<Vec<u64>> = store.proxy_from_key(key.clone());
    assert!(!Proxy::is_resolved(&proxy));
    assert_eq!(Proxy::key(&proxy), &key);
    assert_eq!(Proxy::store_name(&proxy), store.name());
    assert_eq!(
        store.metrics().expect("metrics").get.count,
        0,
        "fetched before use"
    );

    assert_eq!(proxy.iter().sum::<u64>(), 6); // first use
    assert!(Proxy::is_resolved(&proxy));
    assert_eq!(proxy.len(), 3); // later uses are free
    assert_eq!(store.metrics().expect("metrics").get.count, 1);
}

#[test]
fn store_proxy_starts_resolved_and_clones_share_the_value() {
    let store = metered("resolved");
    let proxy = store.proxy(String::from("value")).expect("proxy");
    assert!(Proxy::is_resolved(&proxy));
    let clone = proxy.clone();
    assert_eq!(clone, proxy);
    assert!(std::ptr::eq(&*clone, &*proxy), "clones must share one slot");
    assert_eq!(&*clone, "value");
    assert_eq!(store.metrics().expect("metrics").get.count, 0);
}

#[test]
fn resolve_of_an_evicted_object_is_a_not_found_error_naming_store_and_key() {
    let store = Store::new(unique("evicted"), LocalConnector::new());
    let (proxy, key) = dangling(&store);
    let err = Proxy::resolve(&proxy).expect_err("object was evicted");
    assert!(
        matches!(err.root(), Error::NotFound { store: s, key: k } if s == store.name() && *k == key),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(store.name()), "{text}");
    assert!(text.contains(&key.to_string()), "{text}");
    assert!(
        !Proxy::is_resolved(&proxy),
        "a failed resolve must leave the proxy unresolved"
    );
    assert!(Proxy::get(&proxy).is_err());

    // A second attempt reports the same error again.
    assert!(Proxy::resolve(&proxy).is_err());
}

#[test]
fn deref_of_an_unresolvable_proxy_panics_naming_store_and_key() {
    let store = Store::new(unique("deref-panic"), LocalConnector::new());
    let (proxy, key) = dangling(&store);
    let payload = catch_unwind(AssertUnwindSafe(|| proxy.len())).expect_err("deref must panic");
    let message = panic_message(payload);
    assert!(message.contains("could not resolve proxy"), "{message}");
    assert!(message.contains(store.name()), "{message}");
    assert!(message.contains(&key.to_string()), "{message}");
    assert!(message.contains("not found"), "cause missing: {message}");
    assert_eq!(message.matches(store.name()).count(), 1, "{message}");
    assert_eq!(message.matches(&key.to_string()).count(), 1, "{message}");
}

#[test]
fn deref_panic_of_a_codec_failure_states_store_key_and_cause_once() {
    let store = Store::new(unique("deref-codec"), LocalConnector::new());
    let key = store.put(&vec![1.0f64, 2.0]).expect("put");
    let proxy: Proxy<String> = store.proxy_from_key(key.clone());
    let payload = catch_unwind(AssertUnwindSafe(|| proxy.len())).expect_err("deref must panic");
    let message = panic_message(payload);
    assert_eq!(message.matches(store.name()).count(), 1, "{message}");
    assert_eq!(message.matches(&key.to_string()).count(), 1, "{message}");
    assert!(message.contains("could not decode"), "{message}");
    store.evict(&key).expect("evict");
}

#[test]
#[should_panic(expected = "in store `deref-should-panic`: object not found")]
fn deref_of_an_unresolvable_proxy_panics() {
    // Only this test uses the name, and the store is never registered.
    let store = Store::new("deref-should-panic", LocalConnector::new());
    let (proxy, _) = dangling(&store);
    let _ = proxy.first();
}

#[test]
fn extract_takes_the_value_out_of_a_unique_proxy() {
    let store = metered("extract-unique");
    let proxy = store
        .proxy(vec![String::from("a"), String::from("b")])
        .expect("proxy");
    let key = Proxy::key(&proxy).clone();
    let values = Proxy::extract(proxy).expect("extract");
    assert_eq!(values, vec!["a", "b"]);
    assert_eq!(
        store.metrics().expect("metrics").get.count,
        0,
        "a unique resolved proxy must hand over its value without fetching"
    );
    assert!(
        store.exists(&key).expect("exists"),
        "extract must not evict"
    );
}

#[test]
fn extract_of_a_shared_proxy_fetches_a_copy_and_leaves_the_other_handle_usable() {
    let store = metered("extract-shared");
    let proxy = store.proxy(vec![1i32, -2, 3]).expect("proxy");
    let other = proxy.clone();
    let mut values = Proxy::extract(proxy).expect("extract");
    assert_eq!(
        store.metrics().expect("metrics").get.count,
        1,
        "shared extract fetches"
    );
    values.push(4);
    assert_eq!(
        *other,
        vec![1, -2, 3],
        "extract changed the other handle's value"
    );
    assert_eq!(values, vec![1, -2, 3, 4]);
}

#[test]
fn extract_of_an_unresolved_proxy_fetches_and_of_an_evicted_one_fails() {
    let store = Store::new(unique("extract-lazy"), LocalConnector::new());
    let key = store.put(&String::from("lazy")).expect("put");
    let proxy: Proxy<String> = store.proxy_from_key(key);
    assert_eq!(Proxy::extract(proxy).expect("extract"), "lazy");

    let (dangling, key) = dangling(&store);
    let err = Proxy::extract(dangling).expect_err("evicted");
    assert!(
        matches!(err.root(), Error::NotFound { key: k, .. } if *k == key),
        "{err:?}"
    );
}

#[test]
fn resolve_async_fetches_in_the_background() {
    let store = metered("async");
    let key = store.put(&vec![3.5f64; 1000]).expect("put");
    let proxy: Proxy<Vec<f64>> = store.proxy_from_key(key);
    Proxy::resolve_async(&proxy);
    wait_until("the background fetch", || Proxy::is_resolved(&proxy));
    assert_eq!(store.metrics().expect("metrics").get.count, 1);
    assert_eq!(proxy.len(), 1000);
    assert_eq!(proxy[999], 3.5);
    assert_eq!(
        store.metrics().expect("metrics").get.count,
        1,
        "deref fetched again"
    );
}

#[test]
fn resolve_async_then_immediate_deref_sees_the_value() {
    let store = metered("async-deref");
    let key = store.put(&String::from("soon")).expect("put");
    let proxy: Proxy<String> = store.proxy_from_key(key);
    Proxy::resolve_async(&proxy);
    assert_eq!(&*proxy, "soon");
    // Whichever of the background job and the deref came first fetched; the other found
    // the proxy resolved (the job, if it runs later, must not fetch again). The job holds a
    // clone of the proxy until it ends, and the proxy's hold on its value goes with the
    // last clone: wait for that before counting.
    let value = Proxy::get(&proxy).expect("resolved");
    let held = Arc::strong_count(&value);
    drop(proxy);
    wait_until("the background job to end", || {
        Arc::strong_count(&value) < held
    });
    assert_eq!(store.metrics().expect("metrics").get.count, 1);
}

#[test]
fn a_proxy_resolves_from_the_store_cache() {
    let store = metered("from-cache");
    let key = store.put(&String::from("cached")).expect("put");
    let cached = store.get::<String>(&key).expect("get").expect("present");
    let proxy: Proxy<String> = store.proxy_from_key(key);
    let value = Proxy::get(&proxy).expect("resolve");
    assert!(
        Arc::ptr_eq(&value, &cached),
        "resolve decoded a cached object again"
    );
    assert_eq!(store.metrics().expect("metrics").get.count, 1);
}

#[test]
fn resolve_async_of_an_evicted_object_leaves_the_error_for_resolve() {
    let store = Store::new(unique("async-evicted"), LocalConnector::new());
    let (proxy, _) = dangling(&store);
    Proxy::resolve_async(&proxy);
    let err = Proxy::resolve(&proxy).expect_err("evicted");
    assert!(matches!(err.root(), Error::NotFound { .. }), "{err:?}");
}

#[test]
fn prefetch_resolves_every_proxy_and_notifies_once_per_batch() {
    let store = metered("prefetch");
    let keys: Vec<Key> = (0..64u64).map(|i| store.put(&i).expect("put")).collect();
    let proxies: Vec<Proxy<u64>> = keys
        .iter()
        .map(|k| store.proxy_from_key(k.clone()))
        .collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let notify: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let prefetch = Proxy::prefetch(&proxies, Some(Arc::clone(&notify)));
    wait_until("the prefetch", || prefetch.is_done());
    // 64 proxies spread over the 4 fetch threads, in batches of at most 16: four batches,
    // four notifications.
    wait_until("four notifications", || calls.load(Ordering::SeqCst) == 4);
    assert!(
        proxies.iter().all(Proxy::is_resolved),
        "prefetch left proxies unresolved"
    );
    let m = store.metrics().expect("metrics");
    assert_eq!(m.get.count, 4, "each batch must be one batched get");
    for (i, proxy) in proxies.iter().enumerate() {
        assert_eq!(**proxy, i as u64);
    }
    assert_eq!(
        store.metrics().expect("metrics").get.count,
        4,
        "deref fetched again"
    );
    // Each batch job holds the callback until it ends: once this is the last handle, no
    // notification can come any more.
    wait_until("every batch job to end", || Arc::strong_count(&notify) == 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "notified more than once per batch"
    );
}

#[test]
fn prefetch_of_nothing_is_done_at_once() {
    let store = metered("prefetch-none");
    let resolved = store.proxy(1u8).expect("proxy");
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let notify: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let prefetch = Proxy::prefetch([&resolved], Some(Arc::clone(&notify)));
    assert!(prefetch.is_done(), "nothing to fetch, yet not done");
    // No job was started that could still call it: nothing else holds the callback.
    assert_eq!(Arc::strong_count(&notify), 1, "a job holds the callback");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(store.metrics().expect("metrics").get.count, 0);
}

#[test]
fn a_failing_prefetch_finishes_and_leaves_the_proxy_unresolved() {
    let store = Store::new(unique("prefetch-fail"), LocalConnector::new());
    let (missing, key) = dangling(&store);
    let present: Proxy<Vec<u64>> = store.proxy_from_key(store.put(&vec![9u64]).expect("put"));
    let others: Vec<Proxy<Vec<u64>>> = (0..6u64)
        .map(|i| store.proxy_from_key(store.put(&vec![i]).expect("put")))
        .collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    // Eight proxies over 4 fetch threads: four batches of two, the missing object sharing
    // its batch with `present`.
    let prefetch = Proxy::prefetch(
        [&missing, &present].into_iter().chain(&others),
        Some(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })),
    );
    wait_until("the failed prefetch to finish", || prefetch.is_done());
    wait_until("four notifications", || calls.load(Ordering::SeqCst) == 4);
    assert!(
        others.iter().all(Proxy::is_resolved),
        "other batches resolved"
    );
    assert!(
        !Proxy::is_resolved(&missing),
        "an evicted object cannot resolve"
    );
    assert!(
        Proxy::is_resolved(&present),
        "one missing object blocked the batch"
    );
    let err = Proxy::resolve(&missing).expect_err("still missing");
    assert!(
        matches!(err.root(), Error::NotFound { key: k, .. } if *k == key),
        "{err:?}"
    );
}

#[test]
fn concurrent_derefs_of_clones_fetch_once() {
    let store = Store::builder(unique("once"), LocalConnector::new())
        .with_metrics(true)
        .with_cache_size(0)
        .build();
    let key = store.put(&vec![7u64; 1 << 17]).expect("put");
    let proxy: Proxy<Vec<u64>> = store.proxy_from_key(key);
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let proxy = proxy.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                proxy.iter().sum::<u64>()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), 7 << 17);
    }
    let m = store.metrics().expect("metrics");
    assert_eq!(m.get.count, 1, "8 clones fetched {} times", m.get.count);
    assert!(Proxy::is_resolved(&proxy));
}

#[test]
fn a_serialized_proxy_is_small_and_carries_no_payload() {
    let store = Store::new(unique("wire"), LocalConnector::new());
    let proxy = store.proxy(vec![0xabu8; 1 << 20]).expect("proxy");
    let wire = bincode::serialize(&proxy).expect("serialize");
    assert!(
        wire.len() < 200,
        "a proxy of 1 MiB serialized to {} bytes",
        wire.len()
    );
    assert!(
        !wire.windows(16).any(|w| w.iter().all(|&b| b == 0xab)),
        "the payload leaked into the serialized proxy"
    );
}

#[test]
fn a_deserialized_proxy_uses_the_registered_store() {
    let store = Store::builder(unique("wire-registered"), LocalConnector::new())
        .with_metrics(true)
        .build();
    register_store(&store).expect("register");
    let proxy = store.proxy(vec![1u16, 2, 3]).expect("proxy");
    let wire = bincode::serialize(&proxy).expect("serialize");
    let received: Proxy<Vec<u16>> = bincode::deserialize(&wire).expect("deserialize");
    assert!(
        !Proxy::is_resolved(&received),
        "a deserialized proxy starts unresolved"
    );
    assert_eq!(received, proxy);
    assert_eq!(*received, vec![1, 2, 3]);
    let used = Proxy::store(&received).expect("store");
    assert!(used.same_store(&store), "did not use the registered store");
    assert_eq!(store.metrics().expect("metrics").get.count, 1);
    unregister_store(store.name());
}

#[test]
fn a_deserialized_proxy_rebuilds_an_unregistered_store_and_registers_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique("wire-rebuild");
    let wire = {
        // The producing side: a file store that is never registered, gone after this block.
        let store = Store::new(name.clone(), FileConnector::new(dir.path()).expect("fc"));
        let proxy = store.proxy(vec![String::from("x"); 3]).expect("proxy");
        bincode::serialize(&proxy).expect("serialize")
    };
    assert!(
        get_store(&name).is_none(),
        "test premise: the store is not registered"
    );

    let received: Proxy<Vec<String>> = bincode::deserialize(&wire).expect("deserialize");
    assert!(!Proxy::is_resolved(&received));
    assert_eq!(Proxy::store_name(&received), name);
    Proxy::resolve(&received).expect("resolve through a rebuilt store");
    assert_eq!(*received, vec!["x", "x", "x"]);

    let registered = get_store(&name).expect("the rebuilt store must be registered");
    let used = Proxy::store(&received).expect("store");
    assert!(used.same_store(&registered));
    match &registered.config().connector {
        proxy_core::ConnectorConfig::File { dir: d, .. } => assert_eq!(d, dir.path()),
        other => panic!("rebuilt the wrong connector: {other:?}"),
    }
    // A second proxy from the same wire bytes finds the now registered store.
    let again: Proxy<Vec<String>> = bincode::deserialize(&wire).expect("deserialize");
    assert!(Proxy::store(&again).expect("store").same_store(&registered));
    unregister_store(&name);
}

#[test]
fn a_deserialized_proxy_whose_store_cannot_be_rebuilt_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique("wire-unbuildable");
    let wire = {
        let store = Store::new(name.clone(), FileConnector::new(dir.path()).expect("fc"));
        bincode::serialize(&store.proxy(1u32).expect("proxy")).expect("serialize")
    };
    let path = dir.path().to_path_buf();
    dir.close().expect("remove the store directory");

    let received: Proxy<u32> = bincode::deserialize(&wire).expect("deserialize");
    let err = Proxy::resolve(&received).expect_err("directory is gone");
    assert!(
        matches!(err.root(), Error::Io { path: p, .. } if *p == path),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&name), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        get_store(&name).is_none(),
        "a store that failed to build was registered"
    );
}

/// A codec whose first decode panics, as user code may; later decodes work.
struct PanicOnceCodec;

static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl proxy_core::Codec<u32> for PanicOnceCodec {
    fn encode(value: &u32) -> proxy_core::Result<bytes::Bytes> {
        Ok(bytes::Bytes::copy_from_slice(&value.to_le_bytes()))
    }

    fn decode(bytes: bytes::Bytes) -> proxy_core::Result<u32> {
        if !PANICKED.swap(true, Ordering::SeqCst) {
            panic!("decode panicked on purpose");
        }
        let array: [u8; 4] = bytes[..].try_into().expect("4 bytes");
        Ok(u32::from_le_bytes(array))
    }
}

#[test]
fn a_prefetch_whose_decode_panics_still_finishes_and_a_later_one_works() {
    let store = Store::new(unique("prefetch-panic"), LocalConnector::new());
    let key = store.put_with::<u32, PanicOnceCodec>(&5).expect("put");
    let proxy: Proxy<u32, PanicOnceCodec> = store.proxy_from_key_with(key);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let notify: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let prefetch = Proxy::prefetch([&proxy], Some(Arc::clone(&notify)));
    wait_until("the panicked prefetch to finish", || prefetch.is_done());
    wait_until("the notification", || calls.load(Ordering::SeqCst) == 1);
    assert!(!Proxy::is_resolved(&proxy));

    // The panic must not stop later background fetches of the same proxy.
    let prefetch = Proxy::prefetch([&proxy], Some(notify));
    wait_until("the second prefetch", || prefetch.is_done());
    wait_until("the second notification", || {
        calls.load(Ordering::SeqCst) == 2
    });
    assert!(
        Proxy::is_resolved(&proxy),
        "the second prefetch did not fetch"
    );
    assert_eq!(*proxy, 5);
}

#[test]
fn an_evict_on_read_proxy_evicts_after_its_first_resolve() {
    let store = Store::new(unique("evict-on-read"), LocalConnector::new());
    let proxy = store.proxy_evict_on_read(vec![4u64; 100]).expect("proxy");
    assert!(Proxy::evicts_on_read(&proxy));
    assert!(!Proxy::is_resolved(&proxy));
    let key = Proxy::key(&proxy).clone();
    // Sent elsewhere before anyone read it: the copy carries the flag.
    let wire = bincode::serialize(&proxy).expect("serialize");
    let copy: Proxy<Vec<u64>> = bincode::deserialize(&wire).expect("deserialize");
    assert!(Proxy::evicts_on_read(&copy));

    assert!(store.exists(&key).expect("exists"));
    assert_eq!(proxy.iter().sum::<u64>(), 400);
    assert!(
        !store.exists(&key).expect("exists"),
        "evicted after the read"
    );
    assert!(!store.is_cached(&key));
    assert_eq!(proxy.len(), 100, "the resolved proxy keeps its value");
    // The object was read once: the copy finds it gone.
    assert!(Proxy::resolve(&copy)
        .expect_err("already read")
        .is_not_found());
}

#[test]
fn an_evict_on_read_proxy_evicts_after_prefetch_and_extract() {
    let store = Store::new(unique("evict-on-read-paths"), LocalConnector::new());
    let prefetched = store.proxy_evict_on_read(String::from("p")).expect("proxy");
    let handle = Proxy::prefetch([&prefetched], None);
    while !handle.is_done() {
        std::thread::yield_now();
    }
    assert!(Proxy::is_resolved(&prefetched));
    assert!(!store.exists(Proxy::key(&prefetched)).expect("exists"));

    let extracted = store.proxy_evict_on_read(String::from("e")).expect("proxy");
    let key = Proxy::key(&extracted).clone();
    assert_eq!(Proxy::extract(extracted).expect("extract"), "e");
    assert!(!store.exists(&key).expect("exists"));

    // A plain proxy does not evict on read.
    let plain = store.proxy_lazy(String::from("x")).expect("proxy");
    assert!(!Proxy::evicts_on_read(&plain));
    Proxy::resolve(&plain).expect("resolve");
    assert!(store.exists(Proxy::key(&plain)).expect("exists"));
}

#[test]
fn proxies_sort_and_hash_by_key_without_fetching() {
    let store = Store::new(unique("order"), LocalConnector::new());
    // Dangling proxies: any fetch would fail, so sorting and hashing must not fetch.
    let mut proxies: Vec<Proxy<Vec<u64>>> = (0..8).map(|_| dangling(&store).0).collect();
    proxies.push(proxies[3].clone());
    proxies.sort();
    let keys: Vec<Key> = proxies.iter().map(|p| Proxy::key(p).clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // The lazily filled value is interior mutability, but hashing uses only the fixed key.
    #[allow(clippy::mutable_key_type)]
    let distinct: std::collections::HashSet<Proxy<Vec<u64>>> = proxies.into_iter().collect();
    assert_eq!(distinct.len(), 8);
    assert!(distinct.iter().all(|p| !Proxy::is_resolved(p)));
}

/// ProxyStore's `ProxyLocker`: a locked proxy goes through cloning, comparing, hashing,
/// formatting and a serialization round trip without fetching anything; `unlock` gives back a
/// proxy that resolves.
#[test]
fn a_locked_proxy_is_passed_around_unresolved_and_unlocks() {
    let store = metered("locked");
    let _registered = proxy_core::register_store_scoped(&store).expect("register");
    let proxy: Proxy<Vec<u64>> = store.proxy_lazy(vec![4, 5, 6]).expect("proxy");
    let key = Proxy::key(&proxy).clone();
    let locked: LockedProxy<Vec<u64>> = Proxy::lock(proxy);
    assert!(!locked.is_resolved());
    assert_eq!((locked.key(), locked.store_name()), (&key, store.name()));

    let copy = locked.clone();
    assert_eq!(copy, locked);
    let hasher = std::hash::RandomState::new();
    assert_eq!(hasher.hash_one(&copy), hasher.hash_one(&locked));
    assert!(format!("{copy:?}").contains("LockedProxy"));
    let wire = bincode::serialize(&copy).expect("serialize");
    let travelled: LockedProxy<Vec<u64>> = bincode::deserialize(&wire).expect("deserialize");
    // The locked form is the proxy's: an unlocked proxy reads it, and the other way round.
    let as_proxy: Proxy<Vec<u64>> = bincode::deserialize(&wire).expect("as a proxy");
    assert_eq!(Proxy::key(&as_proxy), &key);
    assert_eq!(
        store.metrics().expect("metrics").get.count,
        0,
        "nothing fetched"
    );

    let unlocked = travelled.unlock();
    assert_eq!(*unlocked, vec![4, 5, 6]);
    assert_eq!(store.metrics().expect("metrics").get.count, 1);
    // A resolved proxy stays resolved inside the lock.
    let relocked = LockedProxy::from(unlocked);
    assert!(relocked.is_resolved());
    assert_eq!(relocked.unlock().len(), 3);
}
