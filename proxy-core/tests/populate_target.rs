//! `StoreBuilder::with_populate_target`: whether `proxy` returns proxies holding their value.

use proxy_core::{LocalConnector, Proxy, Store};

fn store(name: &str, populate: bool) -> Store {
    Store::builder(name, LocalConnector::new())
        .with_metrics(true)
        .with_populate_target(populate)
        .build()
}

#[test]
fn by_default_proxies_hold_their_value() {
    let store = Store::new("populate-default", LocalConnector::new());
    assert!(store.populate_target());
    let proxy = store.proxy(String::from("held")).expect("proxy");
    assert!(Proxy::is_resolved(&proxy));
}

#[test]
fn without_populate_target_proxies_fetch_on_first_use() {
    let store = store("populate-off", false);
    let proxy = store.proxy(vec![1u32, 2, 3]).expect("proxy");
    assert!(!Proxy::is_resolved(&proxy));
    assert_eq!(store.metrics().expect("metrics").get.count, 0);
    assert_eq!(*proxy, vec![1, 2, 3]);
    assert!(Proxy::is_resolved(&proxy));
    assert_eq!(store.metrics().expect("metrics").get.count, 1, "one fetch");

    let batch = store.proxy_batch(vec![5u8, 6]).expect("batch");
    assert!(batch.iter().all(|p| !Proxy::is_resolved(p)));
    assert_eq!(*batch[1], 6);

    let owned = store.owned_proxy(7u64).expect("owned");
    assert!(!Proxy::is_resolved(proxy_core::OwnedProxy::borrow(&owned)));
    assert_eq!(*owned, 7);
}

#[test]
fn the_choice_is_carried_in_the_config() {
    let store = store("populate-config", false);
    assert!(!store.config().populate_target);
    let rebuilt = Store::from_config(&store.config()).expect("rebuild");
    assert!(!rebuilt.populate_target());
    let proxy = rebuilt.proxy(1u8).expect("proxy");
    assert!(!Proxy::is_resolved(&proxy));
}
