//! Tests against a real `redis-server`, one per test, on a free loopback port.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{RedisConnector, RedisOptions};
use crate::testing::{RedisServer, WithServer};
use crate::{Connector, ConnectorConfig, Error};

/// A connector on a fresh server, or `None` (the test is skipped) without `redis-server`.
fn served() -> Option<WithServer<RedisConnector>> {
    let server = RedisServer::start_or_skip()?;
    let connector = RedisConnector::new(server.url()).expect("connect to the test server");
    Some(WithServer::new(connector, server))
}

crate::conformance_tests!(skippable: served());

/// A plain client connection, to look at the server behind the connector's back.
fn raw_connection(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .and_then(|client| client.get_connection())
        .expect("raw connection to the test server")
}

fn raw_query(connection: &mut redis::Connection, command: &redis::Cmd) -> redis::Value {
    use redis::ConnectionLike;
    connection.req_command(command).expect("raw command")
}

/// How many times the server ran `command` (from `INFO commandstats`).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let mut connection = raw_connection(server);
    let info = match raw_query(&mut connection, redis::cmd("INFO").arg("commandstats")) {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("unexpected INFO reply {other:?}"),
    };
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a call count"))
}

#[test]
fn objects_live_under_the_configured_prefix() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let options = RedisOptions::new(server.url()).with_prefix("test-prefix:");
    let connector = RedisConnector::with_options(options).expect("connect");
    let key = connector.put(Bytes::from_static(b"abc")).expect("put");
    let redis_key = connector.redis_key(&key).expect("redis key");
    assert_eq!(redis_key, format!("test-prefix:{}", key.id_hex()));
    let mut raw = raw_connection(&server);
    assert_eq!(
        raw_query(&mut raw, redis::cmd("GET").arg(&redis_key)),
        redis::Value::BulkString(b"abc".to_vec())
    );
}

#[test]
fn batches_are_one_command_each() {
    let Some(served) = served() else { return };
    let data: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![i; 100])).collect();
    let keys = served.put_batch(data.clone()).expect("put_batch");
    let got = served.get_batch(&keys).expect("get_batch");
    assert_eq!(got, data.into_iter().map(Some).collect::<Vec<_>>());
    let server = served.server();
    assert_eq!(
        (calls(server, "mset"), calls(server, "set")),
        (1, 0),
        "put_batch must send one MSET"
    );
    assert_eq!(
        (calls(server, "mget"), calls(server, "get")),
        (1, 0),
        "get_batch must send one MGET"
    );
}

#[test]
fn connection_refused_names_the_server() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    server.stop();
    let err = RedisConnector::new(server.url()).expect_err("nothing listens there");
    let text = err.to_string();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
    assert!(text.contains("connection refused"), "{text}");
}

#[test]
fn a_wrong_password_is_an_auth_error_that_hides_the_password() {
    let Some(server) = RedisServer::start_with_password_or_skip("right-pw-4711") else {
        return;
    };
    let url = format!("redis://:wrong-pw-0815@127.0.0.1:{}/0", server.port());
    let err = RedisConnector::new(url).expect_err("wrong password");
    let (text, debug) = (err.to_string(), format!("{err:?}"));
    assert!(matches!(err, Error::Peer { .. }), "{debug}");
    assert!(text.contains("authentication failed"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
    for shown in [&text, &debug] {
        assert!(
            !shown.contains("wrong-pw-0815") && !shown.contains("right-pw-4711"),
            "{shown}"
        );
    }
}

#[test]
fn a_missing_password_is_an_auth_error() {
    let Some(server) = RedisServer::start_with_password_or_skip("right-pw-4711") else {
        return;
    };
    let err = RedisConnector::new(server.url_without_password()).expect_err("no password");
    let text = err.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
}

#[test]
fn the_right_password_works_and_stays_out_of_debug_output() {
    let Some(server) = RedisServer::start_with_password_or_skip("right-pw-4711") else {
        return;
    };
    let connector = RedisConnector::new(server.url()).expect("right password");
    let key = connector
        .put(Bytes::from_static(b"secret data"))
        .expect("put");
    assert_eq!(
        connector.get(&key).expect("get"),
        Some(Bytes::from_static(b"secret data"))
    );
    for shown in [
        format!("{connector:?}"),
        format!("{:?}", connector.config()),
    ] {
        assert!(!shown.contains("right-pw-4711"), "{shown}");
    }
}

#[test]
fn a_server_that_dies_gives_an_error_and_a_restarted_one_is_used_again() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let connector = RedisConnector::new(server.url()).expect("connect");
    let before = connector.put(Bytes::from_static(b"before")).expect("put");

    server.stop();
    let started = Instant::now();
    let err = connector.get(&before).expect_err("the server is gone");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", server.port())),
        "{err}"
    );
    let err = connector
        .put(Bytes::from_static(b"x"))
        .expect_err("still gone");
    assert!(err.to_string().contains("connection refused"), "{err}");

    server.restart();
    // The restarted server is empty; the same connector reconnects by itself.
    assert_eq!(connector.get(&before).expect("get after restart"), None);
    let after = connector
        .put(Bytes::from_static(b"after"))
        .expect("put after restart");
    assert_eq!(
        connector.get(&after).expect("get"),
        Some(Bytes::from_static(b"after"))
    );
}

#[test]
fn pooled_connections_recover_after_a_restart() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let connector = RedisConnector::new(server.url()).expect("connect");
    // Fill the pool with several idle connections.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..20 {
                    connector.put(Bytes::from_static(b"warm")).expect("put");
                }
            });
        }
    });
    server.restart();
    // Every pooled connection is dead now; the first command must still succeed.
    let key = connector
        .put(Bytes::from_static(b"fresh"))
        .expect("put after restart");
    assert!(connector.exists(&key).expect("exists"));
}

#[test]
fn a_server_that_does_not_answer_times_out() {
    // Accepts connections (the kernel does) but never replies.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let options = RedisOptions::new(format!("redis://127.0.0.1:{port}/0"))
        .with_connect_timeout(Duration::from_millis(300))
        .with_io_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = RedisConnector::with_options(options).expect_err("silent server");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, Error::Timeout { ref peer, .. } if peer.contains(&port.to_string())),
        "{err:?}"
    );
}

#[test]
fn a_closed_connector_refuses_operations() {
    let Some(served) = served() else { return };
    let key = served.put(Bytes::from_static(b"x")).expect("put");
    served.close().expect("close");
    served.close().expect("closing twice is fine");
    assert!(matches!(served.get(&key), Err(Error::Closed { .. })));
}

#[test]
fn config_round_trips_through_bincode_and_rebuilds() {
    let Some(server) = RedisServer::start_with_password_or_skip("pw-in-config") else {
        return;
    };
    let options = RedisOptions::new(server.url()).with_prefix("rt:");
    let connector = RedisConnector::with_options(options.clone()).expect("connect");
    let key = connector
        .put(Bytes::from_static(b"round trip"))
        .expect("put");
    let config = connector.config();
    assert_eq!(config, ConnectorConfig::Redis(options));
    let wire = bincode::serialize(&config).expect("serialize");
    let back: ConnectorConfig = bincode::deserialize(&wire).expect("deserialize");
    let rebuilt = back.build().expect("build");
    assert_eq!(
        rebuilt.get(&key).expect("get"),
        Some(Bytes::from_static(b"round trip"))
    );
}

#[test]
fn close_keeps_the_objects_by_default() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let connector = RedisConnector::new(server.url()).expect("connect");
    let key = connector.put(Bytes::from_static(b"stays")).expect("put");
    connector.close().expect("close");
    let other = RedisConnector::new(server.url()).expect("connect again");
    assert!(other.exists(&key).expect("exists"));
}

#[test]
fn close_can_delete_the_objects_under_its_prefix_only() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let clearing = RedisConnector::with_options(
        RedisOptions::new(server.url())
            .with_prefix("mine:")
            .with_clear_on_close(true),
    )
    .expect("connect");
    let keeper =
        RedisConnector::with_options(RedisOptions::new(server.url()).with_prefix("theirs:"))
            .expect("connect");
    // More than one SCAN page.
    let mine = clearing
        .put_batch(vec![Bytes::from_static(b"m"); 2500])
        .expect("put mine");
    let theirs = keeper.put(Bytes::from_static(b"t")).expect("put theirs");
    let mut raw = raw_connection(&server);
    raw_query(
        &mut raw,
        redis::cmd("SET").arg("mine:not-an-object").arg("x"),
    );

    clearing
        .config()
        .build()
        .expect("rebuild")
        .close()
        .expect("close clears");
    let probe = RedisConnector::with_options(RedisOptions::new(server.url()).with_prefix("mine:"))
        .expect("probe");
    for key in &mine {
        assert!(!probe.exists(key).expect("exists"), "{key} survived close");
    }
    assert!(
        keeper.exists(&theirs).expect("exists"),
        "another prefix was cleared"
    );
    assert_eq!(
        raw_query(&mut raw, redis::cmd("EXISTS").arg("mine:not-an-object")),
        redis::Value::Int(1),
        "a key that is not an object was deleted"
    );
    clearing.close().expect("closing twice is fine");
}
