//! Behaviour of `OwnedProxy`: the object lives exactly as long as its owners.

mod common;

use common::unique;
use proxy_core::{Connector, FileConnector, Key, LocalConnector, OwnedProxy, Proxy, Store};

fn key_of<T: Send + Sync + 'static>(owned: &OwnedProxy<T>) -> Key
where
    proxy_core::DefaultCodec: proxy_core::Codec<T>,
{
    Proxy::key(OwnedProxy::borrow(owned)).clone()
}

#[test]
fn the_object_is_evicted_when_the_last_clone_drops_not_before() {
    let store = Store::new(unique("owned"), LocalConnector::new());
    let owned = store.owned_proxy(vec![1u32, 2, 3]).expect("owned_proxy");
    let key = key_of(&owned);
    let clones: Vec<_> = (0..3).map(|_| owned.clone()).collect();
    assert_eq!(owned.len(), 3);

    drop(owned);
    assert!(
        store.exists(&key).expect("exists"),
        "evicted while clones remain"
    );
    let mut clones = clones.into_iter();
    let last = clones.next().expect("clone");
    drop(clones);
    assert!(
        store.exists(&key).expect("exists"),
        "evicted while one owner remains"
    );
    assert_eq!(*last, vec![1, 2, 3]);

    drop(last);
    assert!(
        !store.exists(&key).expect("exists"),
        "not evicted after the last owner"
    );
    assert!(!store.is_cached(&key));
    assert!(store.get::<Vec<u32>>(&key).expect("get").is_none());
}

#[test]
fn the_last_owner_may_drop_on_another_thread() {
    let store = Store::new(unique("owned-thread"), LocalConnector::new());
    let owned = store
        .owned_proxy(String::from("moved"))
        .expect("owned_proxy");
    let key = key_of(&owned);
    let clone = owned.clone();
    drop(owned);
    std::thread::spawn(move || assert_eq!(&*clone, "moved"))
        .join()
        .expect("thread");
    assert!(!store.exists(&key).expect("exists"));
}

#[test]
fn disown_keeps_the_object() {
    let store = Store::new(unique("disown"), LocalConnector::new());
    let owned = store.owned_proxy(vec![5u8; 10]).expect("owned_proxy");
    let other_owner = owned.clone();
    let key = key_of(&owned);
    let proxy = OwnedProxy::disown(owned);
    drop(other_owner); // disowning applies to every clone
    assert!(
        store.exists(&key).expect("exists"),
        "a disowned object was evicted"
    );
    assert_eq!(proxy.len(), 10);
    drop(proxy);
    assert!(
        store.exists(&key).expect("exists"),
        "dropping a plain proxy evicted"
    );
    let lazy: Proxy<Vec<u8>> = store.proxy_from_key(key);
    assert_eq!(*lazy, vec![5u8; 10]);
}

#[test]
fn an_owned_file_object_is_removed_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = FileConnector::new(dir.path()).expect("fc");
    let store = Store::new(unique("owned-file"), connector.clone());
    let owned = store.owned_proxy(vec![0.25f64; 64]).expect("owned_proxy");
    assert_eq!(connector.object_count(), Some(1));
    drop(owned);
    assert_eq!(
        connector.object_count(),
        Some(0),
        "the file outlived its owner"
    );
}

#[test]
fn dropping_an_owner_whose_store_is_gone_does_not_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::new(
        unique("owned-gone"),
        FileConnector::new(dir.path()).expect("fc"),
    );
    let owned = store.owned_proxy(7u64).expect("owned_proxy");
    dir.close().expect("remove the directory");
    assert_eq!(*owned, 7, "the owner still holds its value");
    drop(owned); // evict finds nothing to remove: no panic
}
