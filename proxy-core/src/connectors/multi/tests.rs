use bytes::Bytes;

use super::*;
use crate::connectors::{FileConnector, LocalConnector};

const SMALL_LIMIT: u64 = 4096;

/// A local child for objects up to 4 KiB and a file child for bigger ones.
fn local_and_file() -> (MultiConnector, LocalConnector, FileConnector) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = FileConnector::new(dir.path()).expect("file connector");
    // Keep the directory for the rest of the test process; it is removed with /tmp.
    std::mem::forget(dir);
    let local = LocalConnector::new();
    let multi = MultiConnector::builder()
        .child(
            "small",
            local.clone(),
            RoutingPolicy::new().with_max_size(SMALL_LIMIT),
        )
        .child(
            "large",
            file.clone(),
            RoutingPolicy::new().with_min_size(SMALL_LIMIT + 1),
        )
        .build()
        .expect("build");
    (multi, local, file)
}

crate::conformance_tests!(local_and_file().0);

#[cfg(feature = "redis")]
mod with_a_redis_child {
    use super::*;
    use crate::connectors::RedisConnector;
    use crate::testing::{RedisServer, WithServer};

    /// `None` (the test is skipped) without `redis-server`.
    fn local_and_redis() -> Option<MultiConnector> {
        let server = RedisServer::start_or_skip()?;
        let redis = RedisConnector::new(server.url()).expect("connect");
        MultiConnector::builder()
            .child(
                "small",
                LocalConnector::new(),
                RoutingPolicy::new().with_max_size(SMALL_LIMIT),
            )
            .child(
                "redis",
                WithServer::new(redis, server),
                RoutingPolicy::new(),
            )
            .build()
            .map(Some)
            .expect("build")
    }

    crate::conformance_tests!(skippable: local_and_redis());

    #[test]
    fn large_objects_land_in_redis() {
        let Some(multi) = local_and_redis() else {
            return;
        };
        let key = multi.put(Bytes::from(vec![7u8; 10_000])).expect("put");
        assert_eq!(key.route(), Some("redis"));
        let redis = multi.child("redis").expect("redis child");
        let stored = redis
            .get(&key.clone().with_route(None))
            .expect("get from redis");
        assert_eq!(stored.map(|b| b.len()), Some(10_000));
        let small = multi.put(Bytes::from_static(b"small")).expect("put");
        assert_eq!(small.route(), Some("small"));
        let local = multi.child("small").expect("small child");
        assert!(
            local
                .exists(&small.clone().with_route(None))
                .expect("exists"),
            "small object not in the local child"
        );
        // The same id under the local child's own name: nothing is stored there.
        assert!(
            !local
                .exists(&Key::new(small.connector(), key.id()))
                .expect("exists"),
            "large object in the local child"
        );
        assert_eq!(
            local.object_count(),
            Some(1),
            "large object in the local child"
        );
    }
}

#[test]
fn small_and_large_objects_land_where_the_policy_says() {
    let (multi, local, file) = local_and_file();
    let sizes = [0usize, 1, 4096, 4097, 100_000];
    for size in sizes {
        let key = multi.put(Bytes::from(vec![1u8; size])).expect("put");
        let in_local = local.exists(&key).unwrap_or(false);
        let in_file = file.exists(&key).unwrap_or(false);
        if size as u64 <= SMALL_LIMIT {
            assert_eq!(key.route(), Some("small"), "{size} bytes");
            assert!(
                in_local && !in_file,
                "{size} bytes must be in the local child only"
            );
        } else {
            assert_eq!(key.route(), Some("large"), "{size} bytes");
            assert!(
                in_file && !in_local,
                "{size} bytes must be in the file child only"
            );
        }
    }
    assert_eq!(local.object_count(), Some(3));
    assert_eq!(file.object_count(), Some(2));
    assert_eq!(multi.object_count(), Some(5));
}

#[test]
fn batches_are_split_per_child_and_keep_their_order() {
    let (multi, local, file) = local_and_file();
    let data: Vec<Bytes> = [10usize, 5000, 20, 9000, 30]
        .iter()
        .map(|&n| Bytes::from(vec![n as u8; n]))
        .collect();
    let keys = multi.put_batch(data.clone()).expect("put_batch");
    let routes: Vec<_> = keys.iter().map(|k| k.route()).collect();
    assert_eq!(
        routes,
        [
            Some("small"),
            Some("large"),
            Some("small"),
            Some("large"),
            Some("small")
        ]
    );
    assert_eq!(
        (local.object_count(), file.object_count()),
        (Some(3), Some(2))
    );
    let reversed: Vec<Key> = keys.iter().rev().cloned().collect();
    let got = multi.get_batch(&reversed).expect("get_batch");
    let expected: Vec<Option<Bytes>> = data.into_iter().rev().map(Some).collect();
    assert_eq!(got, expected);
}

#[test]
fn the_highest_priority_wins_and_ties_go_to_the_first_declared() {
    let (low, high, tied) = (
        LocalConnector::new(),
        LocalConnector::new(),
        LocalConnector::new(),
    );
    let multi = MultiConnector::builder()
        .child("low", low, RoutingPolicy::new())
        .child("high", high.clone(), RoutingPolicy::new().with_priority(5))
        .child("tied", tied, RoutingPolicy::new().with_priority(5))
        .build()
        .expect("build");
    let key = multi.put(Bytes::from_static(b"x")).expect("put");
    assert_eq!(key.route(), Some("high"));
    assert!(high.exists(&key).expect("exists"));
    assert_eq!(multi.route_for(1, &[]).expect("route"), "high");
}

#[test]
fn tags_pick_a_child_that_carries_them_all() {
    let (fast, durable) = (LocalConnector::new(), LocalConnector::new());
    let multi = MultiConnector::builder()
        .child("fast", fast.clone(), RoutingPolicy::new().with_priority(10))
        .child(
            "durable",
            durable.clone(),
            RoutingPolicy::new().with_tag("durable").with_tag("shared"),
        )
        .build()
        .expect("build");
    let untagged = multi.put(Bytes::from_static(b"a")).expect("put");
    assert_eq!(untagged.route(), Some("fast"));
    let tagged = multi
        .put_tagged(Bytes::from_static(b"b"), &["durable"])
        .expect("put_tagged");
    assert_eq!(tagged.route(), Some("durable"));
    assert!(durable.exists(&tagged).expect("exists") && !fast.exists(&tagged).expect("exists"));
    let both = multi
        .put_batch_tagged(vec![Bytes::from_static(b"c")], &["durable", "shared"])
        .expect("batch");
    assert_eq!(both[0].route(), Some("durable"));

    let err = multi
        .put_tagged(Bytes::from_static(b"c"), &["durable", "gpu"])
        .expect_err("no child has gpu");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("gpu"), "{err}");
}

#[test]
fn an_object_no_child_admits_is_an_error_naming_its_size() {
    let multi = MultiConnector::builder()
        .child(
            "tiny",
            LocalConnector::new(),
            RoutingPolicy::new().with_max_size(10),
        )
        .child(
            "mid",
            LocalConnector::new(),
            RoutingPolicy::new().with_min_size(100).with_max_size(200),
        )
        .build()
        .expect("build");
    let err = multi
        .put(Bytes::from(vec![0u8; 50]))
        .expect_err("50 bytes fit nowhere");
    let text = err.to_string();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        text.contains("50 bytes") && text.contains("tiny") && text.contains("mid"),
        "{text}"
    );
    let err = multi.put_batch(vec![Bytes::from_static(b"ok"), Bytes::from(vec![0u8; 300])]);
    assert!(err.is_err(), "a batch with an unroutable object must fail");
}

#[test]
fn keys_without_a_known_route_are_refused() {
    let (multi, local, _file) = local_and_file();
    let unrouted = local.put(Bytes::from_static(b"x")).expect("put");
    let unknown = unrouted.clone().with_route(Some("elsewhere".into()));
    for key in [&unrouted, &unknown] {
        for result in [
            multi.get(key).err(),
            multi.exists(key).err(),
            multi.evict(key).err(),
        ] {
            let err = result.expect("must be refused");
            assert!(matches!(err, Error::WrongConnector { .. }), "{err:?}");
            assert!(err.to_string().contains("multi(small, large)"), "{err}");
        }
    }
    let good = multi.put(Bytes::from_static(b"y")).expect("put");
    let err = multi
        .get_batch(&[good, unknown])
        .expect_err("one bad key fails the batch");
    assert!(err.to_string().contains("elsewhere"), "{err}");
}

#[test]
fn config_nests_the_children_and_rebuilds_them() {
    let (multi, _local, file) = local_and_file();
    let key = multi.put(Bytes::from(vec![3u8; 5000])).expect("put");
    let config = multi.config();
    let ConnectorConfig::Multi { children } = &config else {
        panic!("expected a multi config, got {config:?}");
    };
    let names: Vec<&str> = children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["small", "large"]);
    assert_eq!(
        children[0].policy,
        RoutingPolicy::new().with_max_size(SMALL_LIMIT)
    );
    assert_eq!(children[1].connector, file.config());

    let wire = bincode::serialize(&config).expect("serialize");
    let back: ConnectorConfig = bincode::deserialize(&wire).expect("deserialize");
    assert_eq!(back, config);
    let rebuilt = back.build().expect("build");
    assert_eq!(rebuilt.get(&key).expect("get").map(|b| b.len()), Some(5000));
    assert_eq!(
        rebuilt.put(Bytes::from_static(b"s")).expect("put").route(),
        Some("small")
    );
}

#[test]
fn a_multi_connector_can_be_a_child() {
    let inner_local = LocalConnector::new();
    let inner = MultiConnector::builder()
        .child("mem", inner_local.clone(), RoutingPolicy::new())
        .build()
        .expect("inner");
    let outer = MultiConnector::builder()
        .child("tier", inner, RoutingPolicy::new())
        .build()
        .expect("outer");
    let key = outer.put(Bytes::from_static(b"deep")).expect("put");
    assert_eq!(key.route(), Some("tier/mem"));
    assert_eq!(
        outer.get(&key).expect("get"),
        Some(Bytes::from_static(b"deep"))
    );
    assert!(inner_local.exists(&key).expect("exists"));
    let rebuilt = outer.config().build().expect("rebuild");
    assert!(rebuilt.exists(&key).expect("exists"));
}

#[test]
fn the_builder_rejects_bad_children() {
    let cases = [
        (MultiConnector::builder(), "at least one child"),
        (
            MultiConnector::builder().child("a/b", LocalConnector::new(), RoutingPolicy::new()),
            "a/b",
        ),
        (
            MultiConnector::builder().child("", LocalConnector::new(), RoutingPolicy::new()),
            "non-empty",
        ),
        (
            MultiConnector::builder()
                .child("x", LocalConnector::new(), RoutingPolicy::new())
                .child("x", LocalConnector::new(), RoutingPolicy::new()),
            "two children are named `x`",
        ),
    ];
    for (builder, expected) in cases {
        let err = builder.build().expect_err(expected);
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[test]
fn a_failed_batch_leaves_no_objects_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = FileConnector::new(dir.path()).expect("file connector");
    drop(dir); // Writes to the child now fail: its directory is gone.
    let local = LocalConnector::new();
    let multi = MultiConnector::builder()
        .child(
            "small",
            local.clone(),
            RoutingPolicy::new().with_max_size(10),
        )
        .child("broken", broken, RoutingPolicy::new().with_min_size(11))
        .build()
        .expect("build");
    let data = vec![
        Bytes::from_static(b"a"),
        Bytes::from(vec![0u8; 100]),
        Bytes::from_static(b"b"),
    ];
    let err = multi
        .put_batch(data)
        .expect_err("the broken child cannot store");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_eq!(
        local.object_count(),
        Some(0),
        "objects stored before the failure were left behind"
    );
}

/// A local child active on `node-*` hosts and a file child active on `login*` hosts.
fn by_host(hostname: &str, dir: &std::path::Path) -> MultiConnector {
    MultiConnector::builder()
        .with_hostname(hostname)
        .child(
            "compute",
            LocalConnector::new(),
            RoutingPolicy::new().with_host_pattern("node-*"),
        )
        .child(
            "login",
            FileConnector::new(dir).expect("file"),
            RoutingPolicy::new().with_host_pattern("login*"),
        )
        .build()
        .expect("build")
}

#[test]
fn host_patterns_pick_the_child_active_on_this_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let on_node = by_host("node-7", dir.path());
    assert_eq!(on_node.hostname(), "node-7");
    assert_eq!(on_node.dormant_children().collect::<Vec<_>>(), ["login"]);
    let key = on_node.put(Bytes::from_static(b"n")).expect("put");
    assert_eq!(key.route(), Some("compute"));

    let on_login = by_host("login2", dir.path());
    let key = on_login.put(Bytes::from_static(b"l")).expect("put");
    assert_eq!(key.route(), Some("login"));

    let elsewhere = by_host("laptop", dir.path());
    let err = elsewhere
        .put(Bytes::from_static(b"x"))
        .expect_err("no active child");
    assert!(err.to_string().contains("laptop"), "{err}");
}

#[test]
fn a_dormant_child_rebuilt_from_a_config_is_not_built() {
    let dir = tempfile::tempdir().expect("tempdir");
    let on_login = by_host("login1", dir.path());
    let key = on_login.put(Bytes::from_static(b"on login")).expect("put");
    let ConnectorConfig::Multi { children } = on_login.config() else {
        panic!("a multi config");
    };
    // The login child's directory does not exist on a compute node: it must not be built.
    dir.close().expect("remove");

    let on_node = MultiConnector::from_configs_on_host(&children, "node-3").expect("rebuild");
    assert!(
        on_node.child("login").is_none(),
        "dormant children are not built"
    );
    assert!(on_node.child("compute").is_some());
    let err = on_node.get(&key).expect_err("dormant child");
    let text = err.to_string();
    assert!(
        text.contains("dormant") && text.contains("login") && text.contains("node-3"),
        "{text}"
    );
    assert_eq!(
        on_node.config(),
        ConnectorConfig::Multi { children },
        "the config still describes the dormant child"
    );
    assert_eq!(on_node.object_count(), Some(0));
    on_node.close().expect("close skips dormant children");
}

#[test]
fn nested_multi_connectors_are_rebuilt_for_the_same_host() {
    let inner = MultiConnector::builder()
        .child(
            "gpu",
            LocalConnector::new(),
            RoutingPolicy::new().with_host_pattern("gpu*"),
        )
        .child("any", LocalConnector::new(), RoutingPolicy::new())
        .build()
        .expect("inner");
    let outer = MultiConnector::builder()
        .child("inner", inner, RoutingPolicy::new())
        .build()
        .expect("outer");
    let ConnectorConfig::Multi { children } = outer.config() else {
        panic!("a multi config");
    };
    let on_gpu = MultiConnector::from_configs_on_host(&children, "gpu01").expect("rebuild");
    assert_eq!(
        on_gpu.put(Bytes::from_static(b"g")).expect("put").route(),
        Some("inner/gpu")
    );
    let on_cpu = MultiConnector::from_configs_on_host(&children, "cpu01").expect("rebuild");
    assert_eq!(
        on_cpu.put(Bytes::from_static(b"c")).expect("put").route(),
        Some("inner/any")
    );
}

#[test]
fn required_tags_keep_a_child_for_the_puts_that_ask_for_them() {
    let multi = MultiConnector::builder()
        .child(
            "archive",
            LocalConnector::new(),
            RoutingPolicy::new()
                .with_required_tag("archive")
                .with_priority(9),
        )
        .child(
            "default",
            LocalConnector::new(),
            RoutingPolicy::new().with_tag("fast"),
        )
        .build()
        .expect("build");
    let plain = multi.put(Bytes::from_static(b"p")).expect("put");
    assert_eq!(
        plain.route(),
        Some("default"),
        "despite the archive's priority"
    );
    let archived = multi
        .put_tagged(Bytes::from_static(b"a"), &["archive"])
        .expect("put");
    assert_eq!(archived.route(), Some("archive"));
    assert!(
        multi
            .put_tagged(Bytes::from_static(b"x"), &["archive", "fast"])
            .is_err(),
        "no child carries both"
    );
}

/// ProxyStore's superset tags: a put's superset tags route to any child whose required tags
/// they include, whatever other tags they hold (and carried tags play no part in them).
#[test]
fn superset_tags_route_to_a_child_whose_required_tags_they_include() {
    let gpu = LocalConnector::new();
    let multi = MultiConnector::builder()
        .child("any", LocalConnector::new(), RoutingPolicy::new())
        .child(
            "gpu",
            gpu.clone(),
            RoutingPolicy::new()
                .with_required_tag("gpu")
                .with_required_tag("pinned")
                .with_priority(5),
        )
        .build()
        .expect("build");
    let extra = ["pinned", "fp64", "gpu", "batch-7"];
    let key = multi
        .put_with_tags(Bytes::from_static(b"g"), &[], &extra)
        .expect("put");
    assert_eq!(
        key.route(),
        Some("gpu"),
        "extra superset tags do not matter"
    );
    assert_eq!(multi.route_for_tags(1, &[], &extra).expect("route"), "gpu");
    assert_eq!(gpu.object_count(), Some(1));
    let keys = multi
        .put_batch_with_tags(vec![Bytes::from_static(b"a"); 3], &[], &extra)
        .expect("batch");
    assert!(keys.iter().all(|k| k.route() == Some("gpu")), "{keys:?}");
    // Missing one required tag: the gpu child is out, the plain child takes it.
    let key = multi
        .put_with_tags(Bytes::from_static(b"g"), &[], &["gpu", "fp64"])
        .expect("put");
    assert_eq!(key.route(), Some("any"));
    // Subset tags must be carried: nothing carries `fp64`.
    let err = multi
        .put_with_tags(Bytes::from_static(b"g"), &["fp64"], &extra)
        .expect_err("no child carries fp64");
    assert!(err.to_string().contains("subset tags [\"fp64\"]"), "{err}");
}
