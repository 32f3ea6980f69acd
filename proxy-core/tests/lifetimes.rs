//! Lifetimes through the public API: a scope evicts when it ends, a lease when it expires,
//! the static lifetime when the store closes; attaching after the end is an error.

mod common;

use std::time::Duration;

use common::{unique, wait_until};
use proxy_core::{
    ContextLifetime, Error, ErrorKind, FileConnector, Key, LeaseLifetime, Lifetime, LocalConnector,
    Proxy, StaticLifetime, Store, ZmqConnector,
};

fn local(prefix: &str) -> Store {
    Store::new(unique(prefix), LocalConnector::new())
}

fn exists(store: &Store, key: &Key) -> bool {
    store.exists(key).expect("exists")
}

#[test]
fn dropping_a_scope_evicts_its_objects_and_only_those() {
    let store = local("scope-drop");
    let outside = store.put(&"not attached".to_string()).expect("put");
    let (key, proxy) = {
        let scope = ContextLifetime::new();
        let key = store.put_in(&vec![1u32, 2, 3], &scope).expect("put_in");
        let proxy = store.proxy_in(vec![9u8; 4096], &scope).expect("proxy_in");
        assert_eq!(scope.len(), 2);
        // Cached by the get: the eviction must drop it from the cache too.
        assert_eq!(
            *store.get::<Vec<u32>>(&key).expect("get").unwrap(),
            [1, 2, 3]
        );
        assert!(store.is_cached(&key));
        assert!(exists(&store, &key) && exists(&store, Proxy::key(&proxy)));
        assert!(!scope.is_closed());
        (key, proxy)
    };
    assert!(!exists(&store, &key), "scope dropped, object still stored");
    assert!(!store.is_cached(&key), "evicted object still cached");
    assert!(store.get::<Vec<u32>>(&key).expect("get").is_none());
    assert!(!exists(&store, Proxy::key(&proxy)));
    assert!(
        exists(&store, &outside),
        "an object outside the scope was evicted"
    );
    // The proxy made by `proxy_in` held its value; a copy that never resolved cannot.
    assert_eq!(proxy.len(), 4096);
    let unresolved: Proxy<Vec<u8>> = store.proxy_from_key(Proxy::key(&proxy).clone());
    assert_eq!(
        Proxy::resolve(&unresolved).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn close_evicts_every_object_and_reports_the_ones_it_could_not() {
    let store = local("scope-close");
    let files = tempfile::tempdir().expect("tempdir");
    let file_store = Store::new(
        unique("scope-close-file"),
        FileConnector::new(files.path()).expect("file connector"),
    );
    let scope = ContextLifetime::named("close-reports");
    let keys: Vec<Key> = (0..3u64)
        .map(|i| store.put_in(&i, &scope).expect("put_in"))
        .collect();
    let file_key = file_store.put_in(&7u64, &scope).expect("put_in file");
    // A key of another connector attached through the local store: its eviction fails.
    let foreign = file_store.put(&8u64).expect("put");
    scope.add_key(&store, foreign.clone()).expect("add_key");
    assert_eq!(scope.len(), 5);

    let err = scope.close().expect_err("one eviction must fail");
    match &err {
        Error::LifetimeEvict {
            lifetime,
            failed,
            objects,
            ..
        } => {
            assert_eq!(lifetime, "close-reports");
            assert_eq!(failed, &vec![foreign.clone()]);
            assert_eq!(*objects, 5);
        }
        other => panic!("expected LifetimeEvict, got {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::LifetimeEvict, "{err}");
    assert_eq!(err.root().kind(), ErrorKind::WrongConnector, "{err}");
    assert!(err.to_string().contains("close-reports"), "{err}");
    // Every other object was evicted anyway.
    for key in &keys {
        assert!(!exists(&store, key));
    }
    assert!(!exists(&file_store, &file_key));
    assert!(
        exists(&file_store, &foreign),
        "the foreign object is not the store's"
    );
    assert!(scope.is_closed() && scope.is_empty());
    // Closing again (and the drop after it) does nothing.
    scope.close().expect("second close");
}

#[test]
fn attaching_to_a_closed_scope_fails_and_leaves_nothing_behind() {
    let store = local("scope-closed");
    let scope = ContextLifetime::named("finished");
    scope.close().expect("close");

    let before = store.connector().object_count();
    let err = store.put_in(&1u64, &scope).expect_err("closed");
    assert!(
        matches!(&err, Error::LifetimeClosed { lifetime, operation }
            if lifetime == "finished" && operation.starts_with("attach object")),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(store.proxy_in(vec![1u8], &scope).is_err());
    assert_eq!(
        store.connector().object_count(),
        before,
        "an object stored for a closed lifetime was left behind"
    );

    let key = store.put(&2u64).expect("put");
    assert!(matches!(
        scope.add_key(&store, key.clone()),
        Err(Error::LifetimeClosed { .. })
    ));
    let proxy: Proxy<u64> = store.proxy_from_key(key.clone());
    assert!(scope.add_proxy(&proxy).is_err());
    assert!(exists(&store, &key), "a refused attach must not evict");
}

#[test]
fn a_proxy_made_in_a_scope_resolves_on_another_thread_until_the_scope_ends() {
    let store = Store::builder(unique("scope-thread"), LocalConnector::new())
        .with_cache_size(0)
        .build();
    let scope = ContextLifetime::new();
    let proxy = store
        .proxy_in((0..1000u32).collect::<Vec<_>>(), &scope)
        .expect("proxy_in");
    let key = Proxy::key(&proxy).clone();
    // Another thread gets an unresolved copy (as one deserialized from the wire would be).
    let wire = bincode::serialize(&proxy).expect("serialize");
    let sum = std::thread::scope(|s| {
        s.spawn(|| {
            let received: Proxy<Vec<u32>> = bincode::deserialize(&wire).expect("deserialize");
            assert!(!Proxy::is_resolved(&received));
            // The thread may also attach what it uses to the shared scope.
            scope.add_proxy(&received).expect("add_proxy");
            received.iter().sum::<u32>()
        })
        .join()
        .expect("thread")
    });
    assert_eq!(sum, 999 * 1000 / 2);
    assert_eq!(scope.len(), 1, "the same key attached twice counts once");
    drop(scope);
    assert!(!exists(&store, &key));
    let late: Proxy<Vec<u32>> = bincode::deserialize(&wire).expect("deserialize");
    assert!(Proxy::resolve(&late).unwrap_err().is_not_found());
}

#[test]
fn a_scope_holds_keys_of_several_stores_with_any_codec() {
    let a = local("scope-multi-a");
    let b = local("scope-multi-b").with_codec::<proxy_core::BincodeCodec>();
    let scope = ContextLifetime::new();
    let ka = a.put_in(&1u8, &scope).expect("a");
    let kb = b.put_in(&2u8, &scope).expect("b");
    let kc = a
        .put_in_with::<String, proxy_core::BincodeCodec>(&"c".to_string(), &scope)
        .expect("c");
    let pb = b
        .proxy_in_with::<u8, proxy_core::DefaultCodec>(3, &scope)
        .expect("pb");
    // Through a `dyn Lifetime`, with `add_keys`.
    let kd = b.put(&4u8).expect("d");
    let dynamic: &dyn Lifetime = &scope;
    dynamic
        .add_keys(
            &b.with_codec::<proxy_core::DefaultCodec>(),
            std::slice::from_ref(&kd),
        )
        .expect("add_keys");
    assert_eq!(scope.len(), 5);
    drop(scope);
    assert!(!exists(&a, &ka) && !exists(&a, &kc));
    let b = b.with_codec::<proxy_core::DefaultCodec>();
    assert!(!exists(&b, &kb) && !exists(&b, Proxy::key(&pb)) && !exists(&b, &kd));
}

/// A short lease with `attach` done on it: a lease that expired before `attach` could run
/// (a loaded machine) is replaced by a longer one, so the test never depends on timing.
fn short_lease<T>(
    mut attach: impl FnMut(&LeaseLifetime) -> proxy_core::Result<T>,
) -> (LeaseLifetime, T) {
    let mut expiry = Duration::from_millis(20);
    loop {
        let lease = LeaseLifetime::new(expiry);
        match attach(&lease) {
            Ok(value) => return (lease, value),
            Err(e) if e.kind() == ErrorKind::Closed && expiry < Duration::from_secs(60) => {
                expiry *= 4;
            }
            Err(e) => panic!("attach to a lease: {e}"),
        }
    }
}

#[test]
fn a_lease_evicts_its_objects_when_it_expires_even_with_no_handle_left() {
    let store = local("lease-expire");
    let (lease, (key, proxy)) = short_lease(|lease| {
        let key = store.put_in(&vec![5u8; 100], lease)?;
        let proxy = store.proxy_in(5u64, &lease.clone())?;
        Ok((key, proxy))
    });
    drop(lease);
    wait_until("the lease to expire", || {
        !exists(&store, &key) && !exists(&store, Proxy::key(&proxy))
    });
}

#[test]
fn dropping_every_handle_of_a_lease_does_not_end_it() {
    let store = local("lease-drop");
    let lease = LeaseLifetime::new(Duration::from_secs(3600));
    let key = store.put_in(&1u8, &lease).expect("put_in");
    drop(lease);
    assert!(
        exists(&store, &key),
        "dropping the handle evicted the object"
    );
}

#[test]
fn an_expired_lease_refuses_extensions_and_objects() {
    let store = local("lease-expired");
    let (lease, key) = short_lease(|lease| store.put_in(&1u8, lease));
    wait_until("the lease to expire", || lease.is_closed());
    assert!(!exists(&store, &key));
    assert_eq!(lease.expires_in(), None);
    assert!(matches!(
        lease.extend(Duration::from_secs(1)),
        Err(Error::LifetimeClosed { operation, .. }) if operation.starts_with("extend")
    ));
    assert!(store.put_in(&2u8, &lease).is_err());
}

#[test]
fn extending_a_lease_postpones_its_expiry() {
    let store = local("lease-extend");
    let (lease, (key, before)) = short_lease(|lease| {
        let key = store.put_in(&1u32, lease)?;
        let before = lease.expires_in();
        lease.extend(Duration::from_secs(3600))?;
        Ok((key, before))
    });
    let before = before.expect("open before the extension");
    let after = lease.expires_in().expect("open");
    assert!(
        after > before + Duration::from_secs(3000),
        "{before:?} -> {after:?}"
    );
    // A lease made now that expires in `before` ends after this one's first deadline; the
    // timer looks at leases in deadline order, so once the probe ended, the timer has been
    // past this lease's first deadline.
    let probe = LeaseLifetime::new(before);
    let probe_key = store.put(&2u32).expect("put");
    probe.add_key(&store, probe_key.clone()).expect("add_key");
    drop(probe);
    wait_until("the probe lease to expire", || !exists(&store, &probe_key));
    assert!(
        !lease.is_closed(),
        "an extended lease expired at its old deadline"
    );
    assert!(exists(&store, &key));
    lease.close().expect("close");
    assert!(!exists(&store, &key));
}

#[test]
fn a_lease_of_any_length_does_not_overflow() {
    let lease = LeaseLifetime::new(Duration::MAX);
    lease.extend(Duration::MAX).expect("extend");
    let left = lease.expires_in().expect("open");
    assert!(left > Duration::from_secs(365 * 24 * 3600), "{left:?}");
    lease.close().expect("close");
}

#[test]
fn closing_a_lease_early_evicts_at_once() {
    let store = local("lease-close");
    let lease = LeaseLifetime::new(Duration::from_secs(3600));
    let keys: Vec<Key> = (0..4u32)
        .map(|i| store.put_in(&i, &lease).expect("put_in"))
        .collect();
    assert!(keys.iter().all(|k| exists(&store, k)));
    lease.close().expect("close");
    assert!(keys.iter().all(|k| !exists(&store, k)));
    assert!(lease.is_closed() && lease.is_empty());
    let err = store.put_in(&9u32, &lease).expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(err.to_string().contains(lease.name()), "{err}");
}

#[test]
fn the_static_lifetime_ends_with_the_store() {
    let store = local("static-close");
    let other = local("static-other");
    let key = store.put_in(&1u64, &StaticLifetime).expect("put_in");
    let proxy = store.proxy_in(2u64, &StaticLifetime).expect("proxy_in");
    let kept = other.put_in(&3u64, &StaticLifetime).expect("put_in other");
    // A clone closing is the store closing.
    store.clone().close().expect("close");
    assert!(!exists(&store, &key) && !exists(&store, Proxy::key(&proxy)));
    assert!(
        exists(&other, &kept),
        "another store's static object was evicted"
    );
    assert!(
        !StaticLifetime.is_closed(),
        "closing a store must not end the lifetime"
    );
    other.close().expect("close other");
    assert!(!exists(&other, &kept));
}

#[test]
fn lifetimes_over_zmq_peers() {
    let alice = Store::new(unique("life-zmq-a"), ZmqConnector::new().expect("alice"));
    let bob = Store::new(unique("life-zmq-b"), ZmqConnector::new().expect("bob"));
    let scope = ContextLifetime::new();
    let big = alice
        .proxy_in(vec![3u8; 1 << 20], &scope)
        .expect("alice proxy_in");
    let small = bob
        .put_in(&"bob's".to_string(), &scope)
        .expect("bob put_in");
    // Bob reads Alice's object from her peer while the scope is open.
    let fetched = bob
        .get_bytes(Proxy::key(&big))
        .expect("get from alice")
        .expect("stored");
    assert_eq!(fetched.len(), 1 << 20);
    drop(scope);
    assert!(bob.get_bytes(Proxy::key(&big)).expect("get").is_none());
    assert!(!exists(&alice, Proxy::key(&big)) && !exists(&bob, &small));

    // Bob attaches Alice's object to his lease: evicted through her peer at expiry.
    let key = alice.put(&vec![1u32; 16]).expect("put");
    let (lease, ()) = short_lease(|lease| lease.add_key(&bob, key.clone()));
    drop(lease);
    wait_until("the zmq lease to expire", || !exists(&alice, &key));
}

#[test]
fn a_batch_and_a_future_attached_to_a_scope_are_evicted_with_it() {
    let store = local("scope-batch-future");
    let scope = ContextLifetime::new();
    let proxies = store
        .proxy_batch_in(vec![vec![1u8; 10], vec![2u8; 20], vec![3u8; 30]], &scope)
        .expect("proxy_batch_in");
    let future = store.future_in::<String>(&scope).expect("future_in");
    future.set(&"set before the end".to_string()).expect("set");
    assert_eq!(scope.len(), 4);
    let keys: Vec<Key> = proxies.iter().map(|p| Proxy::key(p).clone()).collect();
    assert!(keys.iter().all(|k| exists(&store, k)) && exists(&store, future.key()));
    scope.close().expect("close");
    assert!(keys.iter().all(|k| !exists(&store, k)));
    assert!(
        !exists(&store, future.key()),
        "the future's value outlived the scope"
    );
}

#[test]
fn a_batch_for_an_ended_lifetime_is_refused_and_leaves_nothing_behind() {
    let connector = LocalConnector::new();
    let store = Store::new(unique("batch-closed"), connector.clone());
    let scope = ContextLifetime::new();
    scope.close().expect("close");
    let err = store
        .proxy_batch_in(vec![1u64, 2, 3], &scope)
        .expect_err("the scope has ended");
    assert!(matches!(err, Error::LifetimeClosed { .. }), "{err:?}");
    assert!(store.future_in::<u8>(&scope).is_err());
    assert_eq!(proxy_core::Connector::object_count(&connector), Some(0));
}
