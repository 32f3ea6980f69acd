//! A peer that went away costs its callers one timeout, not one per object: the ZeroMQ
//! connector's per-peer cool-down, and a prefetch that keeps its error for every proxy it
//! covered.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{Connector, Error, ErrorKind, Key, Proxy, Store, ZmqConnector, ZmqOptions};

const TIMEOUT: Duration = Duration::from_secs(1);

/// An endpoint whose kernel accepts connections while nothing behind it ever answers.
fn dead_peer() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = format!("tcp://{}", listener.local_addr().expect("address"));
    (listener, peer)
}

fn client(cooldown: Option<Duration>) -> ZmqConnector {
    let options = ZmqOptions::default()
        .with_timeout(TIMEOUT)
        .with_client_only();
    match cooldown {
        Some(cooldown) => options.with_peer_cooldown(cooldown),
        None => options,
    }
    .build()
    .expect("client")
}

fn key_of(peer: &str, id: u128) -> Key {
    Key::new("zmq", id).with_peer(peer.to_string())
}

#[test]
fn after_a_timeout_requests_to_that_peer_fail_at_once_and_say_they_were_not_sent() {
    let (_listener, peer) = dead_peer();
    // A cool-down longer than the test, so that a stalled machine cannot end it early.
    let connector = client(Some(Duration::from_secs(3600)));
    let first = connector.get(&key_of(&peer, 1)).expect_err("a dead peer");
    assert!(first.is_timeout(), "{first}");
    assert!(!first.to_string().contains("not sent"), "{first}");

    let started = Instant::now();
    for id in 2..50 {
        let err = connector
            .exists(&key_of(&peer, id))
            .expect_err("in cool-down");
        assert!(err.is_timeout(), "{err}");
        let message = err.to_string();
        assert!(message.contains(&peer), "names the peer: {message}");
        assert!(message.contains("not sent"), "{message}");
    }
    // 48 requests in the cool-down: none of them waited for the peer (each would take a
    // second). A generous bound: a loaded machine still answers these in milliseconds.
    assert!(
        started.elapsed() < 20 * TIMEOUT,
        "requests in the cool-down took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_cool_down_can_be_turned_off_and_then_every_request_waits() {
    let (_listener, peer) = dead_peer();
    let connector = client(Some(Duration::ZERO));
    for id in 1..3 {
        let err = connector.get(&key_of(&peer, id)).expect_err("a dead peer");
        assert!(err.is_timeout(), "{err}");
        assert!(!err.to_string().contains("not sent"), "sent: {err}");
    }
}

#[test]
fn a_live_peer_is_not_held_back_by_a_dead_one_in_the_same_prefetch() {
    let (_listener, dead) = dead_peer();
    let owner = ZmqConnector::new().expect("live peer");
    let live_keys: Vec<Key> = (0..8u8)
        .map(|i| owner.put(Bytes::from(vec![i; 100])).expect("put"))
        .collect();
    let store = Store::builder("dead-peer-mixed", client(None))
        .with_cache_size(0)
        .build();
    let mut proxies: Vec<Proxy<Bytes>> = Vec::new();
    for (i, key) in live_keys.iter().enumerate() {
        proxies.push(store.proxy_from_key(key.clone()));
        proxies.push(store.proxy_from_key(key_of(&dead, 100 + i as u128)));
    }
    let prefetch = Proxy::prefetch(&proxies, None);
    let deadline = Instant::now() + 60 * TIMEOUT;
    while !prefetch.is_done() {
        assert!(Instant::now() < deadline, "the prefetch never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    for (i, pair) in proxies.chunks(2).enumerate() {
        assert!(Proxy::is_resolved(&pair[0]), "live object {i} fetched");
        assert_eq!(&pair[0][..], &vec![i as u8; 100][..]);
        assert!(!Proxy::is_resolved(&pair[1]));
        // The use reports what the background fetch met, without asking the peer again
        // (which would cost another timeout each): a `Prefetch` error with its cause.
        let err = Proxy::resolve(&pair[1]).expect_err("dead peer");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(matches!(err, Error::Prefetch { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&dead), "names the peer: {message}");
        assert!(
            message.contains(&Proxy::key(&pair[1]).to_string()),
            "{message}"
        );
    }
}
