//! Behaviour of the store registry, global and isolated.

mod common;

use std::sync::{Arc, Barrier};

use common::unique;
use proxy_core::{
    get_store, register_store, register_store_exist_ok, register_store_scoped, unregister_store,
    Error, FileConnector, LocalConnector, Proxy, Registry, Store,
};

#[test]
fn register_get_unregister_in_the_global_registry() {
    let store = Store::new(unique("global"), LocalConnector::new());
    assert!(get_store(store.name()).is_none());
    register_store(&store).expect("register");
    let found = get_store(store.name()).expect("registered");
    assert!(found.same_store(&store));
    assert!(Registry::global()
        .names()
        .contains(&store.name().to_string()));

    let removed = unregister_store(store.name()).expect("was registered");
    assert!(removed.same_store(&store));
    assert!(get_store(store.name()).is_none());
    assert!(
        unregister_store(store.name()).is_none(),
        "unregistered twice"
    );
    // The name is free again.
    register_store(&store).expect("register again");
    unregister_store(store.name());
}

#[test]
fn a_taken_name_is_an_error() {
    let name = unique("taken");
    let first = Store::new(name.clone(), LocalConnector::new());
    let second = Store::new(name.clone(), LocalConnector::new());
    register_store(&first).expect("register");
    for contender in [&second, &first] {
        let err = register_store(contender).expect_err("name is taken");
        assert!(
            matches!(&err, Error::StoreExists { name: n } if *n == name),
            "{err:?}"
        );
        assert!(err.to_string().contains(&name), "{err}");
    }
    assert!(
        get_store(&name).expect("registered").same_store(&first),
        "replaced"
    );
    unregister_store(&name);
}

#[test]
fn separate_registries_are_isolated() {
    let name = unique("isolated");
    let a = Registry::new();
    let b = Registry::new();
    let store = Store::new(name.clone(), LocalConnector::new());
    a.register(&store).expect("register in a");
    assert!(a.get(&name).is_some());
    assert!(b.get(&name).is_none(), "registries share entries");
    assert!(
        get_store(&name).is_none(),
        "leaked into the global registry"
    );
    // The same name may be taken in each registry.
    let other = Store::new(name.clone(), LocalConnector::new());
    b.register(&other).expect("register in b");
    assert!(b.get(&name).expect("in b").same_store(&other));
    assert!(a.get(&name).expect("in a").same_store(&store));
    assert_eq!(a.names(), vec![name.clone()]);
    assert!(a.unregister(&name).is_some());
    assert!(a.names().is_empty());
    assert!(b.get(&name).is_some());
}

#[test]
fn names_are_sorted() {
    let registry = Registry::new();
    for name in ["c", "a", "b"] {
        registry
            .register(&Store::new(name, LocalConnector::new()))
            .expect("register");
    }
    assert_eq!(registry.names(), vec!["a", "b", "c"]);
}

#[test]
fn get_or_rebuild_prefers_the_registered_store() {
    let registry = Registry::new();
    let store = Store::new(unique("prefer"), LocalConnector::new());
    registry.register(&store).expect("register");
    let got = registry
        .get_or_rebuild(&store.config())
        .expect("get_or_rebuild");
    assert!(got.same_store(&store));
}

#[test]
fn get_or_rebuild_from_many_threads_registers_one_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Store::new(unique("race"), FileConnector::new(dir.path()).expect("fc")).config();
    let registry = Arc::new(Registry::new());
    let barrier = Arc::new(Barrier::new(16));
    let stores: Vec<Store> = (0..16)
        .map(|_| {
            let (registry, barrier, config) =
                (Arc::clone(&registry), Arc::clone(&barrier), config.clone());
            std::thread::spawn(move || {
                barrier.wait();
                registry.get_or_rebuild(&config).expect("get_or_rebuild")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let registered = registry.get(&config.name).expect("registered");
    for store in &stores {
        assert!(
            store.same_store(&registered),
            "threads got different stores"
        );
    }
    assert_eq!(registry.names().len(), 1);
}

#[test]
fn get_or_rebuild_of_an_unbuildable_config_registers_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Store::new(
        unique("unbuildable"),
        FileConnector::new(dir.path()).expect("fc"),
    )
    .config();
    dir.close().expect("remove");
    let registry = Registry::new();
    let err = registry
        .get_or_rebuild(&config)
        .expect_err("directory is gone");
    assert!(matches!(err.root(), Error::Io { .. }), "{err:?}");
    assert!(registry.names().is_empty());
}

#[test]
fn register_after_a_proxy_caused_a_rebuild_takes_over() {
    let connector = LocalConnector::new();
    let store = Store::new(unique("takeover"), connector.clone());
    let key = store.put(&41u64).expect("put");
    // A proxy arrives (deserialized) before the program registers its store.
    let wire = bincode::serialize(&store.proxy_from_key::<u64>(key.clone())).expect("ser");
    let early: Proxy<u64> = bincode::deserialize(&wire).expect("de");
    assert_eq!(*early, 41);
    let rebuilt = get_store(store.name()).expect("the registry rebuilt the store");
    assert!(!rebuilt.same_store(&store));

    register_store(&store).expect("registering after a rebuild must work");
    assert!(get_store(store.name())
        .expect("registered")
        .same_store(&store));
    let late: Proxy<u64> = bincode::deserialize(&wire).expect("de");
    assert!(Proxy::store(&late).expect("store").same_store(&store));

    // Once the program's store holds the name, a second registration is refused again.
    let other = Store::new(store.name(), LocalConnector::new());
    assert!(matches!(
        register_store(&other),
        Err(Error::StoreExists { .. })
    ));

    // Both stay coherent: evicting through the registered store empties the rebuilt one's
    // cache too, so the early proxy's store no longer serves the object.
    assert!(rebuilt.is_cached(&key));
    store.evict(&key).expect("evict");
    assert!(!rebuilt.is_cached(&key));
    assert!(!rebuilt.exists(&key).expect("exists"));
    assert!(rebuilt.get::<u64>(&key).expect("get").is_none());
    unregister_store(store.name());
}

#[test]
fn exist_ok_accepts_the_same_store_only() {
    let store = Store::new(unique("exist-ok"), LocalConnector::new());
    register_store(&store).expect("register");
    assert!(matches!(
        register_store(&store),
        Err(Error::StoreExists { .. })
    ));
    register_store_exist_ok(&store).expect("same store, exist_ok");
    register_store_exist_ok(&store.clone()).expect("a clone is the same store");
    let other = Store::new(store.name(), LocalConnector::new());
    let err = register_store_exist_ok(&other).expect_err("another store holds the name");
    assert!(matches!(err, Error::StoreExists { .. }), "{err:?}");
    assert!(get_store(store.name())
        .expect("registered")
        .same_store(&store));
    unregister_store(store.name());
}

#[test]
fn build_registered_registers_and_close_unregisters() {
    let name = unique("build-registered");
    let store = Store::builder(name.clone(), LocalConnector::new())
        .build_registered()
        .expect("build_registered");
    assert!(get_store(&name).expect("registered").same_store(&store));
    let twice = Store::builder(name.clone(), LocalConnector::new()).build_registered();
    assert!(matches!(twice, Err(Error::StoreExists { .. })));
    store.close().expect("close");
    assert!(
        get_store(&name).is_none(),
        "close must unregister the store"
    );
}

#[test]
fn close_leaves_another_store_registered_under_the_name() {
    let name = unique("close-other");
    let registered = Store::new(name.clone(), LocalConnector::new());
    register_store(&registered).expect("register");
    let other = Store::new(name.clone(), LocalConnector::new());
    other.close().expect("close");
    assert!(get_store(&name)
        .expect("still registered")
        .same_store(&registered));
    unregister_store(&name);
}

#[test]
fn a_scoped_registration_unregisters_on_drop() {
    let store = Store::new(unique("scoped"), LocalConnector::new());
    {
        let guard = register_store_scoped(&store).expect("register");
        assert!(guard.store().same_store(&store));
        assert!(get_store(store.name()).is_some());
        assert!(register_store_scoped(&store).is_err(), "name taken");
    }
    assert!(get_store(store.name()).is_none());
    // Dropping a guard whose store was replaced in the meantime leaves the new one.
    let registry = Registry::new();
    let guard = registry.register_scoped(&store).expect("register");
    registry.unregister(store.name());
    let newer = Store::new(store.name(), LocalConnector::new());
    registry.register(&newer).expect("register newer");
    drop(guard);
    assert!(registry.get(store.name()).expect("kept").same_store(&newer));
}
