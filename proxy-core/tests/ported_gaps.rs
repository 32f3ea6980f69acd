//! ProxyStore's tests of the features issue 22 added, ported: each test names the one it
//! ports. From `tests/connectors/multi_test.py` (policy tags), `tests/proxy/` (the
//! `ProxyLocker` tests), `tests/store/store_metrics_test.py` (the future's key metrics), and
//! the pattern of ProxyStore's pipelined-task workflow (`store.future(evict=True)` chained
//! through tasks). `test_proxy_locker_attr_access` has no runtime counterpart: a
//! `LockedProxy` has no `Deref`, so using the value without unlocking does not compile (a
//! `compile_fail` doc test of `LockedProxy`).

mod common;

use bytes::Bytes;
use common::unique;
use proxy_core::{
    register_store, Connector, FileConnector, LocalConnector, LockedProxy, MultiConnector, Proxy,
    RoutingPolicy, Store,
};

/// `test_policy_subset_tags_validation`: a put's subset tags must all be carried.
#[test]
fn policy_subset_tags_validation() {
    let none = RoutingPolicy::new();
    assert!(none.admits_with_tags(1, &[], &[]));
    assert!(!none.admits_with_tags(1, &["anything"], &[]));
    let ab = RoutingPolicy::new().with_tag("a").with_tag("b");
    assert!(ab.admits_with_tags(1, &["a"], &[]));
    assert!(ab.admits_with_tags(1, &["a", "b"], &[]));
    assert!(!ab.admits_with_tags(1, &["other"], &[]));
}

/// `test_policy_superset_tags_validation`: a put's superset tags must include every tag the
/// policy requires, and may hold more.
#[test]
fn policy_superset_tags_validation() {
    let none = RoutingPolicy::new();
    assert!(none.admits_with_tags(1, &[], &[]));
    assert!(none.admits_with_tags(1, &[], &["anything"]));
    let ab = RoutingPolicy::new()
        .with_required_tag("a")
        .with_required_tag("b");
    assert!(ab.admits_with_tags(1, &[], &["a", "b", "c"]));
    assert!(!ab.admits_with_tags(1, &[], &["a"]));
    assert!(!ab.admits_with_tags(1, &[], &["c"]));
}

/// `test_multi_connector_policy_tags`: subset tags pick the child that carries them,
/// superset tags the child whose required tags they include.
#[test]
fn multi_connector_policy_tags() {
    let (c1, c2) = (LocalConnector::new(), LocalConnector::new());
    let multi = MultiConnector::builder()
        .child(
            "c1",
            c1.clone(),
            RoutingPolicy::new()
                .with_priority(1)
                .with_tag("a")
                .with_tag("b"),
        )
        .child(
            "c2",
            c2.clone(),
            RoutingPolicy::new()
                .with_priority(2)
                .with_required_tag("x")
                .with_required_tag("y"),
        )
        .build()
        .expect("build");
    let value = Bytes::from_static(b"value");

    let key = multi
        .put_with_tags(value.clone(), &["a"], &[])
        .expect("put");
    assert_eq!(key.route(), Some("c1"));
    assert_eq!((c1.object_count(), c2.object_count()), (Some(1), Some(0)));

    let key = multi
        .put_with_tags(value, &[], &["x", "y", "z"])
        .expect("put");
    assert_eq!(key.route(), Some("c2"));
    assert_eq!((c1.object_count(), c2.object_count()), (Some(1), Some(1)));
}

/// `test_proxy_locker`: unlocking gives the proxy back, which resolves to the value.
#[test]
fn proxy_locker() {
    let store = Store::new(unique("ported-locker"), LocalConnector::new());
    let proxy: Proxy<Vec<u32>> = store.proxy_lazy(vec![1, 2, 3]).expect("proxy");
    let locker = LockedProxy::new(proxy);
    let unlocked = locker.unlock();
    assert_eq!(*unlocked, vec![1, 2, 3]);
}

/// `test_proxy_locker_serialization`: a locked proxy stays unresolved, also through a
/// serialization round trip.
#[test]
fn proxy_locker_serialization() {
    let store = Store::new(unique("ported-locker-ser"), LocalConnector::new());
    register_store(&store).expect("register");
    let proxy: Proxy<Vec<u32>> = store.proxy_lazy(vec![1, 2, 3]).expect("proxy");
    let locker = LockedProxy::new(proxy);
    assert!(!Proxy::is_resolved(&locker.clone().unlock()));
    let locker: LockedProxy<Vec<u32>> =
        bincode::deserialize(&bincode::serialize(&locker).expect("serialize"))
            .expect("deserialize");
    assert!(!Proxy::is_resolved(&locker.unlock()));
}

/// `test_store_single_key_operations`, its future part: the future's key has its own
/// `store.future` timing (a file store, as there).
#[test]
fn store_single_key_operations_future() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(
        unique("ported-future-metrics"),
        FileConnector::new(dir.path()).expect("file connector"),
    )
    .with_metrics(true)
    .with_populate_target(false)
    .build();
    let future = store.future::<String>().expect("future");
    let metrics = store.metrics().expect("metrics on");
    let key = metrics
        .key(future.key())
        .expect("the future's key has metrics");
    assert_eq!(key.future.count, 1);
}

/// ProxyStore's pipelined-task workflow: each task reads its input through an evict-on-read
/// proxy and sets the next task's future (`store.future(evict=True)`); every intermediate
/// object is gone once read, and the last one once the caller reads it.
#[test]
fn pipelined_tasks_over_evict_on_read_futures_leave_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::new(
        unique("ported-pipeline"),
        FileConnector::new(dir.path()).expect("file connector"),
    );
    let mut input: Proxy<Vec<u8>> = store.proxy_evict_on_read(vec![1u8; 1024]).expect("proxy");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let output = store
            .future::<Vec<u8>>()
            .expect("future")
            .with_evict_on_read(true);
        let next = output.proxy();
        let task_input = input;
        tasks.push(std::thread::spawn(move || {
            let mut data = Proxy::extract(task_input).expect("the task's input");
            data.iter_mut().for_each(|byte| *byte += 1);
            output.set(&data).expect("set the next task's input");
        }));
        input = next;
    }
    assert_eq!(*input, vec![5u8; 1024]);
    for task in tasks {
        task.join().expect("task");
    }
    assert_eq!(
        store.connector().object_count(),
        Some(0),
        "every object read once and evicted"
    );
}
