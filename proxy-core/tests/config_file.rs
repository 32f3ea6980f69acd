//! Store configurations as TOML files: every connector kind round-trips; errors name the path.

use std::time::Duration;

use proxy_core::{
    Connector, ConnectorConfig, Error, FileConnector, LocalConnector, MultiConnector, RedisOptions,
    RoutingPolicy, Store, StoreConfig, ZmqOptions,
};

fn round_trip(config: &StoreConfig) -> StoreConfig {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.toml");
    config.to_toml_file(&path).expect("save");
    let text = std::fs::read_to_string(&path).expect("read back");
    assert!(text.contains(&config.name), "{text}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["store.toml"], "no temporary file is left");
    let loaded = StoreConfig::from_toml_file(&path).expect("load");
    assert_eq!(&loaded, config, "{text}");
    loaded
}

fn store_config(name: &str, connector: impl Connector + 'static) -> StoreConfig {
    Store::builder(name, connector)
        .with_cache_size(7)
        .with_metrics(true)
        .with_metrics_keys(12)
        .with_populate_target(false)
        .build()
        .config()
}

#[test]
fn a_local_store_round_trips() {
    let config = store_config("toml-local", LocalConnector::new());
    let loaded = round_trip(&config);
    assert_eq!(loaded.cache_size, 7);
    assert!(!loaded.populate_target);
}

#[test]
fn a_file_store_round_trips_and_rebuilds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = FileConnector::new(dir.path())
        .expect("file")
        .with_clear_on_close(false);
    let key = connector
        .put(bytes::Bytes::from_static(b"via toml"))
        .expect("put");
    let loaded = round_trip(&store_config("toml-file", connector));
    let store = Store::from_config(&loaded).expect("rebuild");
    assert_eq!(
        store.get_bytes(&key).expect("get"),
        Some(bytes::Bytes::from_static(b"via toml"))
    );
}

#[test]
fn a_zmq_store_round_trips() {
    let connector = ZmqOptions::default()
        .with_timeout(Duration::from_millis(1500))
        .build()
        .expect("zmq");
    round_trip(&store_config("toml-zmq", connector));
}

#[test]
fn a_redis_config_round_trips_without_a_server() {
    let mut config = store_config("toml-redis", LocalConnector::new());
    config.connector = ConnectorConfig::Redis(
        RedisOptions::new("redis://127.0.0.1:6379/0")
            .with_prefix("cluster-a:")
            .with_io_timeout(Duration::from_millis(2500))
            .with_clear_on_close(true),
    );
    round_trip(&config);
}

#[test]
fn a_multi_store_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let multi = MultiConnector::builder()
        .child(
            "small",
            LocalConnector::new(),
            RoutingPolicy::new().with_max_size(1024).with_priority(2),
        )
        .child(
            "large",
            FileConnector::new(dir.path()).expect("file"),
            RoutingPolicy::new().with_min_size(1025).with_tag("durable"),
        )
        .build()
        .expect("multi");
    round_trip(&store_config("toml-multi", multi));
}

#[test]
fn a_missing_file_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.toml");
    let err = StoreConfig::from_toml_file(&path).expect_err("missing");
    assert!(
        matches!(err, Error::Io { path: ref p, .. } if *p == path),
        "{err:?}"
    );
}

#[test]
fn a_malformed_file_is_a_config_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"x\"\ncache_size = \"many\"\n").expect("write");
    let err = StoreConfig::from_toml_file(&path).expect_err("malformed");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("cache_size"), "{text}");
}

#[test]
fn a_hand_written_file_with_defaults_loads() {
    let config = StoreConfig::from_toml(
        "name = \"by-hand\"\ncache_size = 4\nmetrics = false\n\n[connector.File]\ndir = \"/srv/objects\"\n",
    )
    .expect("parse");
    assert_eq!(config.name, "by-hand");
    assert!(config.populate_target, "absent means the default");
    assert_eq!(config.metrics_keys, proxy_core::DEFAULT_METRICS_KEYS);
    assert_eq!(
        config.connector,
        ConnectorConfig::File {
            dir: "/srv/objects".into(),
            clear_on_close: true,
            recycled_files: None,
        }
    );
}
