//! The dataflow operators across worker threads: every record arrives once with the right
//! content, and every store is empty when the dataflow completes.

use std::sync::{Arc, Mutex};

use dataflow_plugin::{AutoProxy, Proxied, ProxyRecords, ReleaseProxies, Resolve, ResolveError};
use proxy_core::{
    register_store, Connector, ErrorKind, Key, LocalConnector, Proxy, Store, ZmqOptions,
};
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Concat, Exchange, Input, Inspect, Probe};
use timely::Config;

/// A record whose content says where it came from, so mix-ups are caught.
fn record(i: u64, len: usize) -> Vec<u8> {
    let mut data = vec![(i % 251) as u8; len];
    data[..8].copy_from_slice(&i.to_le_bytes());
    data
}

fn check(data: &[u8], len: usize) -> u64 {
    assert_eq!(data.len(), len);
    let i = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    assert!(
        data[8..].iter().all(|&b| b == (i % 251) as u8),
        "record {i} corrupted"
    );
    i
}

/// Runs `records` (of `len` bytes) from worker 0 through `proxy → route → resolve` on
/// `config`, returning (worker, record index) for every record seen at a consumer.
/// Worker threads that serialize every record they exchange, as separate processes do.
fn process_binary(workers: usize) -> Config {
    Config {
        communication: timely::CommunicationConfig::ProcessBinary(workers),
        worker: timely::WorkerConfig::default(),
    }
}

fn run(
    config: Config,
    store: Store,
    records: u64,
    len: usize,
    broadcast: bool,
) -> Vec<(usize, u64)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    timely::execute(config, move |worker| {
        let index = worker.index();
        let store = store.clone();
        let sink = Arc::clone(&sink);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(move |scope| {
            let (input, stream) = scope.new_input::<Vec<Vec<u8>>>();
            let proxies = stream.proxy(&store);
            let routed = if broadcast {
                proxies.broadcast()
            } else {
                proxies.exchange(|p| Proxy::key(p).id() as u64)
            };
            let probe = routed
                .resolve()
                .inspect(move |data| sink.lock().expect("lock").push((index, check(data, len))))
                .probe()
                .0;
            (input, probe)
        });
        for round in 0..4u64 {
            if index == 0 {
                for i in (round * records / 4)..((round + 1) * records / 4) {
                    input.send(record(i, len));
                }
            }
            input.advance_to(round + 1);
            while probe.less_than(input.time()) {
                worker.step_or_park(Some(std::time::Duration::from_millis(100)));
            }
        }
    })
    .expect("execute")
    .join()
    .into_iter()
    .for_each(|r| r.expect("worker failed"));
    let mut seen = seen.lock().expect("lock").clone();
    seen.sort();
    seen
}

#[test]
fn threads_exchange_every_record_once_and_leave_nothing() {
    let connector = LocalConnector::new();
    let store = Store::new("df-threads", connector.clone());
    let seen = run(Config::process(3), store, 40, 100_000, false);
    let mut ids: Vec<u64> = seen.iter().map(|(_, i)| *i).collect();
    ids.sort();
    assert_eq!(
        ids,
        (0..40).collect::<Vec<_>>(),
        "every record exactly once"
    );
    let workers: std::collections::HashSet<usize> = seen.iter().map(|(w, _)| *w).collect();
    assert!(
        workers.len() > 1,
        "exchange spread records over workers: {workers:?}"
    );
    assert_eq!(
        connector.object_count(),
        Some(0),
        "objects left in the store"
    );
}

#[test]
fn serialized_proxies_are_fetched_through_the_registry() {
    // ProcessBinary serializes records between workers, as between processes: consumers
    // receive bare keys and must fetch through the registered store.
    let connector = LocalConnector::new();
    let store = Store::builder("df-binary", connector.clone())
        .with_cache_size(0)
        .build();
    register_store(&store).expect("register");
    let seen = run(process_binary(2), store, 24, 50_000, false);
    assert_eq!(seen.len(), 24);
    let ids: std::collections::BTreeSet<u64> = seen.iter().map(|(_, i)| *i).collect();
    assert_eq!(ids.len(), 24);
    assert_eq!(connector.object_count(), Some(0));
}

#[test]
fn broadcast_reaches_every_worker_and_evicts_after_the_last_reader() {
    let connector = LocalConnector::new();
    let store = Store::builder("df-broadcast", connector.clone())
        .with_cache_size(0)
        .build();
    register_store(&store).expect("register");
    let seen = run(process_binary(3), store, 12, 20_000, true);
    assert_eq!(seen.len(), 3 * 12, "each of 3 workers reads all 12");
    for w in 0..3 {
        let mine: Vec<u64> = seen
            .iter()
            .filter(|(x, _)| *x == w)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(mine, (0..12).collect::<Vec<_>>(), "worker {w}");
    }
    assert_eq!(connector.object_count(), Some(0));
}

#[test]
fn auto_proxy_keeps_small_records_inline() {
    let connector = LocalConnector::new();
    let store = Store::new("df-auto", connector.clone());
    let kinds = Arc::new(Mutex::new(Vec::new()));
    let values = Arc::new(Mutex::new(Vec::new()));
    let (k, v) = (Arc::clone(&kinds), Arc::clone(&values));
    timely::execute(Config::process(2), move |worker| {
        let (k, v, store) = (Arc::clone(&k), Arc::clone(&v), store.clone());
        let index = worker.index();
        worker.dataflow::<u64, _, _>(move |scope| {
            let (mut input, stream) = scope.new_input::<Vec<Vec<u8>>>();
            stream
                .auto_proxy(&store, 4096)
                .inspect(move |r: &Proxied<Vec<u8>>| {
                    k.lock().expect("lock").push((r.len(), r.is_stored()))
                })
                .exchange(|r| r.len() as u64)
                .resolve()
                .inspect(move |r| v.lock().expect("lock").push(r.len()));
            if index == 0 {
                for len in [10usize, 4096, 4097, 1 << 20, 100] {
                    input.send(vec![1u8; len]);
                }
            }
        });
    })
    .expect("execute")
    .join()
    .into_iter()
    .for_each(|r| r.expect("worker failed"));
    let mut kinds = kinds.lock().expect("lock").clone();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            (10, false),
            (100, false),
            (4096, false),
            (4097, true),
            (1 << 20, true)
        ],
        "at or under the threshold inline, over it stored"
    );
    let mut values = values.lock().expect("lock").clone();
    values.sort();
    assert_eq!(values, vec![10, 100, 4096, 4097, 1 << 20]);
    assert_eq!(connector.object_count(), Some(0));
}

/// A record with a small and a large kind, for a policy by variant (ProxyStore's by type).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
enum Item {
    Label(u64),
    Blob(Vec<u8>),
}

#[test]
fn auto_proxy_by_stores_exactly_what_the_predicate_picks() {
    let connector = LocalConnector::new();
    let store = Store::new("df-auto-by", connector.clone());
    let sent: Vec<Item> = (0..12u64)
        .map(|i| {
            if i % 3 == 0 {
                Item::Blob(record(i, 10 + i as usize))
            } else {
                Item::Label(i)
            }
        })
        .collect();
    let kinds = Arc::new(Mutex::new(Vec::new()));
    let values = Arc::new(Mutex::new(Vec::new()));
    let (k, v, items) = (Arc::clone(&kinds), Arc::clone(&values), sent.clone());
    // ProcessBinary: the proxies are serialized between the workers.
    timely::execute(process_binary(2), move |worker| {
        let (k, v, store, items) = (Arc::clone(&k), Arc::clone(&v), store.clone(), items.clone());
        let index = worker.index();
        worker.dataflow::<u64, _, _>(move |scope| {
            let (mut input, stream) = scope.new_input::<Vec<Item>>();
            stream
                // Small blobs too: the policy is by variant, not by size.
                .auto_proxy_by(&store, |item: &Item| matches!(item, Item::Blob(_)))
                .inspect(move |r: &Proxied<Item>| {
                    let stored = r.is_stored();
                    k.lock().expect("lock").push(((**r).clone(), stored))
                })
                .exchange(|r| match &**r {
                    Item::Label(i) => *i,
                    Item::Blob(data) => data.len() as u64,
                })
                .resolve()
                .inspect(move |r| v.lock().expect("lock").push(r.clone()));
            if index == 0 {
                for item in items {
                    input.send(item);
                }
            }
        });
    })
    .expect("execute")
    .join()
    .into_iter()
    .for_each(|r| r.expect("worker failed"));
    let kinds = kinds.lock().expect("lock").clone();
    assert_eq!(kinds.len(), sent.len());
    for (item, stored) in &kinds {
        assert_eq!(
            *stored,
            matches!(item, Item::Blob(_)),
            "blobs stored, labels inline: {item:?}"
        );
    }
    let mut values = values.lock().expect("lock").clone();
    values.sort();
    let mut expected = sent;
    expected.sort();
    assert_eq!(values, expected, "every record, equal after resolve");
    assert_eq!(
        connector.object_count(),
        Some(0),
        "objects left in the store"
    );
}

#[test]
fn release_proxies_evicts_for_custom_readers() {
    let connector = LocalConnector::new();
    let store = Store::new("df-release", connector.clone());
    let total = Arc::new(Mutex::new(0u64));
    let t = Arc::clone(&total);
    timely::example(move |scope| {
        let t = Arc::clone(&t);
        let (mut input, stream) = scope.new_input::<Vec<Vec<u64>>>();
        stream
            .proxy(&store)
            .map(move |p| {
                *t.lock().expect("lock") += p.iter().sum::<u64>();
            })
            .release_proxies();
        for i in 1..=10u64 {
            input.send(vec![i; 1000]);
        }
    });
    assert_eq!(*total.lock().expect("lock"), 55 * 1000);
    assert_eq!(connector.object_count(), Some(0));
}

#[test]
fn without_a_release_point_objects_outlive_the_dataflow() {
    let connector = LocalConnector::new();
    let store = Store::new("df-no-release", connector.clone());
    timely::example(move |scope| {
        let (mut input, stream) = scope.new_input::<Vec<Vec<u8>>>();
        stream.proxy(&store).inspect(|p| assert_eq!(p.len(), 10));
        input.send(vec![0u8; 10]);
        input.send(vec![0u8; 10]);
    });
    assert_eq!(
        connector.object_count(),
        Some(2),
        "captured proxies may still be read"
    );
}

#[test]
fn a_missing_object_fails_the_consumer_naming_the_key() {
    let store = Store::new("df-missing", LocalConnector::new());
    let key = store.put(&vec![5u8; 100]).expect("put");
    store.evict(&key).expect("evict");
    let missing: Proxy<Vec<u8>> = store.proxy_from_key(key.clone());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        timely::example(move |scope| {
            let (mut input, stream) = scope.new_input::<Vec<Proxy<Vec<u8>>>>();
            stream
                .resolve()
                .inspect(|_| panic!("a value arrived for an evicted object"));
            input.send(missing);
        })
    }));
    let payload = outcome.expect_err("the consumer must fail");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| "<not a string>".into());
    assert!(
        message.contains("df-missing"),
        "message names the store: {message}"
    );
    assert!(
        message.contains(&key.to_string()),
        "message names the key: {message}"
    );
    assert!(message.contains("not found"), "message says why: {message}");
}

#[test]
fn try_resolve_sends_failures_to_the_error_stream_and_still_evicts() {
    let connector = LocalConnector::new();
    let store = Store::new("df-try-resolve", connector.clone());
    register_store(&store).expect("register");
    let never_stored = Key::random("local");
    let evicted = Arc::new(Mutex::new(Vec::new()));
    let values = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (ev, v, e, missing) = (
        Arc::clone(&evicted),
        Arc::clone(&values),
        Arc::clone(&errors),
        never_stored.clone(),
    );
    // ProcessBinary: consumers receive bare keys and fetch through the registered store.
    let outcome = timely::execute(process_binary(2), move |worker| {
        let (ev, v, e, store) = (
            Arc::clone(&ev),
            Arc::clone(&v),
            Arc::clone(&e),
            store.clone(),
        );
        let index = worker.index();
        let missing: Proxy<Vec<u8>> = store.proxy_from_key(missing.clone());
        worker.dataflow::<u64, _, _>(move |scope| {
            let (mut input, stream) = scope.new_input::<Vec<Vec<u8>>>();
            let (mut strays, stray_proxies) = scope.new_input::<Vec<Proxy<Vec<u8>>>>();
            let evicting = store.clone();
            let mut seen = 0u64;
            let (ok, failed) = stream
                .proxy(&store)
                // Every odd record's object goes away before its consumer reads it.
                .map(move |p| {
                    if seen % 2 == 1 {
                        evicting.evict(Proxy::key(&p)).expect("evict");
                        ev.lock().expect("lock").push(Proxy::key(&p).clone());
                    }
                    seen += 1;
                    p
                })
                .concat(stray_proxies)
                .exchange(|p| Proxy::key(p).id() as u64)
                .try_resolve();
            ok.inspect(move |data| v.lock().expect("lock").push(check(data, 5000)));
            failed.inspect(move |f: &ResolveError| e.lock().expect("lock").push(f.clone()));
            if index == 0 {
                for i in 0..10 {
                    input.send(record(i, 5000));
                }
                strays.send(missing);
            }
        });
    })
    .expect("execute")
    .join();
    for result in outcome {
        result.expect("no worker failed");
    }

    let mut values = values.lock().expect("lock").clone();
    values.sort();
    assert_eq!(values, vec![0, 2, 4, 6, 8], "the records still stored");

    let errors = errors.lock().expect("lock").clone();
    let mut expected = evicted.lock().expect("lock").clone();
    assert_eq!(expected.len(), 5);
    expected.push(never_stored);
    let mut failed_keys: Vec<String> = errors.iter().map(|f| f.key.to_string()).collect();
    let mut expected: Vec<String> = expected.iter().map(ToString::to_string).collect();
    failed_keys.sort();
    expected.sort();
    assert_eq!(failed_keys, expected, "every evicted or unknown key, once");
    for failure in &errors {
        assert_eq!(failure.store, "df-try-resolve");
        assert_eq!(failure.kind, ErrorKind::NotFound, "{failure}");
        assert!(failure.message.contains("not found"), "{failure}");
        assert!(
            failure.to_string().contains(&failure.key.to_string()),
            "{failure}"
        );
    }
    assert_eq!(
        connector.object_count(),
        Some(0),
        "objects left in the store"
    );
}

#[test]
fn records_of_a_dead_peer_cost_one_timeout_not_one_each() {
    // A "host" that accepts TCP connections and never says a word: its kernel completes the
    // handshake, the process behind it is gone (or stopped).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = format!("tcp://{}", dead.local_addr().expect("address"));
    let timeout = std::time::Duration::from_secs(1);
    let connector = ZmqOptions::default()
        .with_timeout(timeout)
        .with_client_only()
        .build()
        .expect("connector");
    let store = Store::new("df-dead-peer", connector);
    const RECORDS: usize = 256;
    let proxies: Vec<Proxy<Vec<u8>>> = (0..RECORDS)
        .map(|i| store.proxy_from_key(Key::new("zmq", 1 + i as u128).with_peer(peer.clone())))
        .collect();
    let started = std::time::Instant::now();
    let (values, errors) = timely::example(move |scope| {
        use timely::dataflow::operators::{Capture, ToStream};
        let (values, errors) = proxies.to_stream(scope).try_resolve();
        (values.capture(), errors.capture())
    });
    let elapsed = started.elapsed();
    use timely::dataflow::operators::capture::Extract;
    let values: Vec<Vec<u8>> = values.extract().into_iter().flat_map(|(_, v)| v).collect();
    let errors: Vec<ResolveError> = errors
        .try_iter()
        .flat_map(|event| match event {
            timely::dataflow::operators::capture::Event::Messages(_, data) => data,
            _ => Vec::new(),
        })
        .collect();
    assert!(values.is_empty());
    assert_eq!(errors.len(), RECORDS, "every record on the error stream");
    for failure in &errors {
        assert_eq!(failure.kind, ErrorKind::Timeout, "{failure}");
        assert!(failure.message.contains(&peer), "names the peer: {failure}");
    }
    // One timeout per record would be 256 s (and was, with the prefetch's error dropped and
    // each record fetched again); a few timeouts allow for a loaded machine.
    assert!(
        elapsed < 30 * timeout,
        "{RECORDS} records of a dead peer took {elapsed:?} with a {timeout:?} timeout"
    );
}

/// Text as raw UTF-8, no framing: a store default codec other than `DefaultCodec`.
struct Utf8;

impl proxy_core::Codec<String> for Utf8 {
    fn encode(value: &String) -> proxy_core::Result<bytes::Bytes> {
        Ok(bytes::Bytes::copy_from_slice(value.as_bytes()))
    }
    fn decode(bytes: bytes::Bytes) -> proxy_core::Result<String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| proxy_core::Error::Codec {
            action: "decode",
            type_name: "String",
            message: e.to_string(),
        })
    }
    fn encoded_len(value: &String) -> Option<u64> {
        Some(value.len() as u64)
    }
}

#[test]
fn proxy_auto_proxy_and_resolve_use_the_store_codec() {
    let connector = LocalConnector::new();
    let store: Store<Utf8> = Store::builder("df-codec", connector.clone())
        .with_codec::<Utf8>()
        .build();
    register_store(&store).expect("register");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let raw = Arc::new(Mutex::new(Vec::new()));
    let (sink, raw_sink) = (Arc::clone(&seen), Arc::clone(&raw));
    // ProcessBinary: the proxies are serialized between workers and decoded with Utf8.
    timely::execute(process_binary(2), move |worker| {
        let (sink, raw_sink, store) = (Arc::clone(&sink), Arc::clone(&raw_sink), store.clone());
        let index = worker.index();
        worker.dataflow::<u64, _, _>(move |scope| {
            let (mut input, stream) = scope.new_input::<Vec<String>>();
            let raw_store = store.clone();
            let proxied = stream
                .clone()
                .proxy(&store)
                .inspect(move |p: &Proxy<String, Utf8>| {
                    let bytes = raw_store
                        .get_bytes(Proxy::key(p))
                        .expect("raw")
                        .expect("stored");
                    raw_sink.lock().expect("lock").push(bytes.len());
                });
            let auto = stream
                .auto_proxy(&store, 4)
                .map(|p: Proxied<String, Utf8>| p);
            let sink2 = Arc::clone(&sink);
            proxied
                .exchange(|p| Proxy::key(p).id() as u64)
                .resolve()
                .inspect(move |s| sink.lock().expect("lock").push(format!("p:{s}")));
            auto.exchange(|p| p.len() as u64)
                .resolve()
                .inspect(move |s| sink2.lock().expect("lock").push(format!("a:{s}")));
            if index == 0 {
                for text in ["ab", "text that is stored"] {
                    input.send(text.to_string());
                }
            }
        });
    })
    .expect("execute")
    .join()
    .into_iter()
    .for_each(|r| r.expect("worker failed"));
    let mut seen = seen.lock().expect("lock").clone();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "a:ab",
            "a:text that is stored",
            "p:ab",
            "p:text that is stored"
        ]
    );
    let mut raw = raw.lock().expect("lock").clone();
    raw.sort();
    assert_eq!(raw, vec![2, 19], "stored unframed by the store's codec");
    assert_eq!(connector.object_count(), Some(0));
}
