//! Futures (`Store::future`): proxies sent before their value exists, resolved by polling,
//! set once, in one process and across processes with every connector.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::wait_until;
use proxy_core::{
    register_store, Connector, Error, ErrorKind, FileConnector, LocalConnector, MultiConnector,
    Polling, Proxy, RoutingPolicy, Store, StoreFuture, ZmqConnector,
};

/// How many gets `store` has made (its metrics must be on).
fn gets(store: &Store) -> u64 {
    store.metrics().expect("metrics on").get.count
}

fn short(ms: u64) -> Polling {
    Polling::default()
        .with_interval(Duration::from_millis(1))
        .with_max_interval(Duration::from_millis(5))
        .with_timeout(Some(Duration::from_millis(ms)))
}

#[test]
fn a_proxy_made_before_the_value_resolves_once_it_is_set() {
    let store = Store::builder("future-basic", LocalConnector::new())
        .with_metrics(true)
        .build();
    let future = store.future::<Vec<u64>>().expect("future");
    let proxy = future.proxy();
    assert!(Proxy::is_future(&proxy));
    assert!(!future.done().expect("done"));
    assert!(!store.exists(future.key()).expect("exists"));

    let waiting = {
        let proxy = proxy.clone();
        std::thread::spawn(move || proxy.iter().sum::<u64>())
    };
    // Set only once the resolver has looked and missed: it is waiting.
    wait_until("the resolver's first look", || gets(&store) >= 1);
    future.set(&vec![1, 2, 3, 4]).expect("set");
    assert_eq!(waiting.join().expect("resolver thread"), 10);
    assert!(future.done().expect("done"));
    assert_eq!(*future.wait().expect("wait"), vec![1, 2, 3, 4]);
    assert_eq!(Proxy::key(&proxy), future.key());
}

/// ProxyStore's `store.future(evict=True)`: the value is evicted after the first successful
/// resolve of a proxy of the future, also of a proxy that travelled (serialized).
#[test]
fn an_evict_on_read_future_evicts_its_value_after_the_first_resolve() {
    let store = Store::new("future-evict-on-read", LocalConnector::new());
    let future = store
        .future::<Vec<u64>>()
        .expect("future")
        .with_evict_on_read(true);
    assert!(future.evicts_on_read());
    let proxy = future.proxy();
    assert!(Proxy::evicts_on_read(&proxy) && Proxy::is_future(&proxy));
    let travelled: Proxy<Vec<u64>> =
        bincode::deserialize(&bincode::serialize(&proxy).expect("serialize")).expect("deserialize");
    assert!(Proxy::evicts_on_read(&travelled));

    future.set(&vec![5, 6]).expect("set");
    assert!(store.exists(future.key()).expect("exists"));
    assert_eq!(*travelled, vec![5, 6]);
    assert!(
        !future.done().expect("done"),
        "evicted after the first read"
    );
    assert!(!store.exists(future.key()).expect("exists"));

    // A future without the flag keeps its value.
    let keeps = store.future::<u8>().expect("future");
    assert!(!keeps.evicts_on_read() && !Proxy::evicts_on_read(&keeps.proxy()));
    keeps.set(&1).expect("set");
    assert_eq!(*keeps.proxy(), 1);
    assert!(keeps.done().expect("done"));
}

/// ProxyStore's store metrics time `store.future` per key: so do ours
/// (`KeyMetrics::future`, `MetricsSnapshot::future`), next to the set (a put) and the reads.
#[test]
fn a_futures_key_has_its_own_metrics() {
    let store = Store::builder("future-metrics", LocalConnector::new())
        .with_metrics(true)
        .build();
    let future = store.future::<u32>().expect("future");
    let metrics = store.metrics().expect("metrics on");
    assert_eq!(metrics.future.count, 1);
    let key = metrics
        .key(future.key())
        .expect("the future's key is followed");
    assert_eq!((key.future.count, key.put.count), (1, 0));

    future.set(&7).expect("set");
    assert_eq!(*future.proxy(), 7);
    let metrics = store.metrics().expect("metrics on");
    let key = metrics.key(future.key()).expect("the future's key");
    assert_eq!((key.future.count, key.put.count), (1, 1));
    assert_eq!(key.put.bytes, 4, "the set is counted as the key's put");
    assert!(key.get.count >= 1);
}

#[test]
fn a_future_is_set_once_only() {
    let store = Store::new("future-once", LocalConnector::new());
    let future = store.future::<String>().expect("future");
    future.set(&"first".to_string()).expect("first set");
    let err = future.set(&"second".to_string()).expect_err("second set");
    assert!(
        matches!(err, Error::Store { .. } | Error::KeyTaken { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("write-once"), "{err}");
    // A clone is the same future: it cannot set it either.
    assert!(future.clone().set_owned("third".to_string()).is_err());
    assert_eq!(*future.wait().expect("value"), "first");
}

#[test]
fn an_unset_future_times_out_with_an_error_naming_store_and_key() {
    let store = Store::new("future-timeout", LocalConnector::new());
    let future = store
        .future::<u32>()
        .expect("future")
        .with_polling(short(30));
    let proxy = future.proxy();
    let err = Proxy::resolve(&proxy).expect_err("never set");
    assert!(err.is_timeout(), "{err:?}");
    match &err {
        Error::NotSet { store, key, waited } => {
            assert_eq!(store, "future-timeout");
            assert_eq!(key, future.key());
            assert!(*waited >= Duration::from_millis(30), "{waited:?}");
        }
        other => panic!("expected NotSet, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("future-timeout") && text.contains(&future.key().to_string()));
    // Still unresolved, and a later set makes the same proxy resolve.
    assert!(!Proxy::is_resolved(&proxy));
    future.set(&5).expect("set");
    assert_eq!(*proxy, 5);
}

#[test]
#[should_panic(expected = "was not set within")]
fn deref_of_an_unset_future_panics_with_the_timeout() {
    let store = Store::new("future-deref-panic", LocalConnector::new());
    let proxy = store
        .future::<u32>()
        .expect("future")
        .with_polling(short(10))
        .proxy();
    let _ = *proxy;
}

/// A prefetch does not wait for a future's value: one started before the values are set
/// finishes and leaves the proxies unresolved (a use then waits); one started after they
/// are set resolves every proxy before any use.
#[test]
fn prefetched_future_proxies_resolve_once_their_values_are_set() {
    let store = Store::new("future-prefetch", LocalConnector::new());
    let futures: Vec<StoreFuture<u32>> = (0..20).map(|_| store.future().expect("future")).collect();
    let proxies: Vec<Proxy<u32>> = futures.iter().map(StoreFuture::proxy).collect();
    let early = Proxy::prefetch(&proxies, None);
    wait_until("the early prefetch", || early.is_done());
    assert!(
        !proxies.iter().any(Proxy::is_resolved),
        "resolved before its value was set"
    );
    for (i, future) in futures.iter().enumerate() {
        future.set(&(i as u32)).expect("set");
    }
    let late = Proxy::prefetch(&proxies, None);
    wait_until("the late prefetch", || late.is_done());
    assert!(
        proxies.iter().all(Proxy::is_resolved),
        "a prefetch after the values were set left a proxy unresolved"
    );
    let sum: u32 = proxies.iter().map(|p| **p).sum();
    assert_eq!(sum, (0..20).sum());
}

#[test]
fn extract_of_a_future_proxy_waits_too() {
    let store = Store::builder("future-extract", LocalConnector::new())
        .with_metrics(true)
        .build();
    let future = store.future::<Vec<u8>>().expect("future");
    let proxy = future.proxy();
    let setter = future.clone();
    let watched = store.clone();
    let handle = std::thread::spawn(move || {
        // Set only once the extract has looked and missed: it is waiting.
        wait_until("the extract's first look", || gets(&watched) >= 1);
        setter.set_owned(vec![9; 100]).expect("set");
    });
    assert_eq!(Proxy::extract(proxy).expect("extract"), vec![9; 100]);
    handle.join().expect("setter");
}

#[test]
fn the_polling_policy_travels_with_a_serialized_proxy() {
    let store = Store::new("future-serde", LocalConnector::new());
    register_store(&store).expect("register");
    let future = store
        .future::<u64>()
        .expect("future")
        .with_polling(short(20));
    let wire = bincode::serialize(&future.proxy()).expect("serialize");
    let received: Proxy<u64> = bincode::deserialize(&wire).expect("deserialize");
    assert!(Proxy::is_future(&received));
    let err = Proxy::resolve(&received).expect_err("not set yet");
    assert!(err.is_timeout(), "{err}");

    // The setter crosses a serialization boundary too.
    let setter: StoreFuture<u64> =
        bincode::deserialize(&bincode::serialize(&future).expect("serialize")).expect("back");
    assert_eq!(setter.polling(), future.polling());
    setter
        .set(&77)
        .expect("set through the deserialized future");
    assert_eq!(*received, 77);
    store.close().expect("close");
}

#[test]
fn a_future_with_a_non_default_codec() {
    let store = Store::new("future-codec", LocalConnector::new());
    let future = store
        .future_with::<Vec<u32>, proxy_core::BincodeCodec>()
        .expect("future");
    future.set(&vec![3, 4]).expect("set");
    let proxy: Proxy<Vec<u32>, proxy_core::BincodeCodec> = future.proxy();
    assert_eq!(*proxy, vec![3, 4]);
}

#[test]
fn futures_work_on_every_connector_in_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let multi = MultiConnector::builder()
        .child("mem", LocalConnector::new(), RoutingPolicy::default())
        .build()
        .expect("multi");
    let connectors: Vec<(&str, Arc<dyn Connector>)> = vec![
        ("local", Arc::new(LocalConnector::new())),
        (
            "file",
            Arc::new(FileConnector::new(dir.path()).expect("file")),
        ),
        ("zmq", Arc::new(ZmqConnector::new().expect("zmq"))),
        ("multi", Arc::new(multi)),
    ];
    for (name, connector) in connectors {
        let store = Store::builder_arc(format!("future-every-{name}"), connector).build();
        let future = store.future::<String>().expect("future");
        let proxy = future.proxy();
        future.set(&format!("value in {name}")).expect("set");
        assert_eq!(*proxy, format!("value in {name}"), "{name}");
        assert!(future.set(&String::new()).is_err(), "{name}: set twice");
        store.evict(future.key()).expect("evict");
        store.close().expect("close");
    }
}

#[test]
fn a_zmq_future_can_be_set_by_a_client_of_the_owning_peer() {
    let owner = Store::builder("future-zmq-owner", ZmqConnector::new().expect("peer"))
        .with_cache_size(0)
        .build();
    let future = owner.future::<Vec<u16>>().expect("future");
    let peer = owner.connector().clone();
    // Another connector (here a second peer) sets it: a remote put under the key's id.
    let other = ZmqConnector::new().expect("second peer");
    let bytes = bincode::serialize(&vec![1u16, 2]).expect("encode");
    other
        .put_at(future.key(), bytes.clone().into())
        .expect("remote set");
    let err = other
        .put_at(future.key(), bytes.into())
        .expect_err("second remote set");
    assert!(matches!(err, Error::KeyTaken { .. }), "{err:?}");
    assert_eq!(*future.proxy(), vec![1, 2]);
    assert_eq!(peer.object_count(), Some(1));
}

// ---------------------------------------------------------------------------------------
// Across processes: the parent sends a proxy (or the future itself) to a child process.

const CHILD_ENV: &str = "PROXY_CORE_FUTURE_CHILD";
const TEST_NAME: &str = "child_process";

/// What the child does with what it reads from standard input.
#[derive(Clone, Copy)]
enum Role {
    /// Reads a proxy, says it is waiting, resolves it (the parent sets it meanwhile).
    Resolve,
    /// Reads a future and sets it.
    Set,
}

fn spawn_child(role: Role, wire: &[u8]) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            TEST_NAME,
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(
            CHILD_ENV,
            match role {
                Role::Resolve => "resolve",
                Role::Set => "set",
            },
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(wire)
        .expect("send to the child");
    child
}

fn values() -> Vec<u64> {
    (0..50_000u64).map(|i| i * 3).collect()
}

/// Both directions with one registered store: the child resolves a proxy the parent sets
/// later, then the child sets a future whose proxy the parent resolves.
fn across_processes(store: Store) {
    register_store(&store).expect("register");

    // 1. The child waits on the proxy; the parent sets the value once it knows it waits.
    let future = store.future::<Vec<u64>>().expect("future");
    let wire = bincode::serialize(&future.proxy()).expect("serialize proxy");
    let mut child = spawn_child(Role::Resolve, &wire);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("child: waiting") {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("child output") > 0,
            "child ended early"
        );
    }
    std::thread::sleep(Duration::from_millis(20));
    future.set(&values()).expect("set in the parent");
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("child output");
    let status = child.wait().expect("wait for the child");
    assert!(status.success(), "child failed: {status}\n{rest}");
    let expected_sum: u64 = values().iter().sum();
    assert!(
        rest.contains(&format!("child: resolved sum {expected_sum}")),
        "child said:\n{rest}"
    );

    // 2. The child sets a future the parent made; the parent's proxy resolves.
    let future = store.future::<Vec<u64>>().expect("future");
    let proxy = future.proxy();
    let wire = bincode::serialize(&future).expect("serialize future");
    let child = spawn_child(Role::Set, &wire);
    let output = child.wait_with_output().expect("child");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed:\n{said}");
    assert!(said.contains("child: set"), "child said:\n{said}");
    assert_eq!(*proxy, values());
    assert!(
        future.set(&Vec::new()).is_err(),
        "the child's set did not count"
    );
    store.evict(future.key()).expect("evict");
    store.close().expect("close");
}

#[test]
fn across_processes_zmq() {
    let store = Store::builder("future-mp-zmq", ZmqConnector::new().expect("peer"))
        .with_cache_size(0)
        .build();
    across_processes(store);
}

#[test]
fn across_processes_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder(
        "future-mp-file",
        FileConnector::new(dir.path()).expect("file"),
    )
    .with_cache_size(0)
    .build();
    across_processes(store);
}

#[cfg(all(feature = "redis", feature = "integration"))]
#[test]
fn across_processes_redis() {
    let Some(server) = proxy_core::testing::RedisServer::start_or_skip() else {
        return;
    };
    let connector = proxy_core::RedisConnector::new(server.url()).expect("redis");
    let store = Store::builder("future-mp-redis", connector)
        .with_cache_size(0)
        .build();
    across_processes(store);
}

/// The child process of the tests above; does nothing unless started by them.
#[test]
#[ignore = "started by the across_processes_* tests"]
fn child_process() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut wire = Vec::new();
    std::io::stdin().read_to_end(&mut wire).expect("read input");
    match role.as_str() {
        "resolve" => {
            let proxy: Proxy<Vec<u64>> = bincode::deserialize(&wire).expect("proxy");
            assert!(Proxy::is_future(&proxy));
            println!("child: waiting");
            std::io::stdout().flush().expect("flush");
            let sum: u64 = proxy.iter().sum();
            println!("child: resolved sum {sum}");
        }
        "set" => {
            let future: StoreFuture<Vec<u64>> = bincode::deserialize(&wire).expect("future");
            future.set(&values()).expect("set from the child");
            println!("child: set {}", future.key());
        }
        other => panic!("unknown role {other}"),
    }
}
