//! Mutable owned proxies: write-back under the same key, copies under new keys, ownership
//! moved by serializing.

use proxy_core::{
    Connector, Error, FileConnector, Key, LocalConnector, OwnedProxy, Proxy, Store, ZmqConnector,
};

fn key_of<T>(owned: &OwnedProxy<T>) -> Key
where
    T: Send + Sync + 'static,
    proxy_core::DefaultCodec: proxy_core::Codec<T>,
{
    Proxy::key(OwnedProxy::borrow(owned)).clone()
}

#[test]
fn a_dropped_guard_writes_the_object_back_under_its_key() {
    let store = Store::new("owned-mut-drop", LocalConnector::new());
    let mut owned = store.owned_proxy(vec![1u32, 2]).expect("owned");
    let key = key_of(&owned);
    store
        .get::<Vec<u32>>(&key)
        .expect("get")
        .expect("cached now");
    {
        let mut value = OwnedProxy::borrow_mut(&mut owned).expect("borrow_mut");
        value.push(3);
    }
    assert_eq!(*owned, vec![1, 2, 3], "the owner sees the new value");
    assert_eq!(key_of(&owned), key, "same key");
    assert_eq!(
        *store.get::<Vec<u32>>(&key).expect("get").expect("stored"),
        vec![1, 2, 3],
        "the store (and its cache) has the new value"
    );
}

#[test]
fn commit_reports_a_failed_write_back() {
    let store = Store::new("owned-mut-commit", LocalConnector::new());
    let mut owned = store.owned_proxy(String::from("before")).expect("owned");
    let key = key_of(&owned);
    let mut value = OwnedProxy::borrow_mut(&mut owned).expect("borrow_mut");
    value.push_str(" and after");
    store.evict(&key).expect("evicted behind the owner's back");
    let err = value.commit().expect_err("nothing to overwrite");
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains(&key.to_string()), "{err}");
    assert!(!store.exists(&key).expect("exists"), "no resurrection");
    assert_eq!(*owned, "before", "the owner keeps the stored value");
}

#[test]
fn borrow_mut_needs_the_only_owner() {
    let store = Store::new("owned-mut-shared", LocalConnector::new());
    let mut owned = store.owned_proxy(5u8).expect("owned");
    let other = owned.clone();
    let err = OwnedProxy::borrow_mut(&mut owned).expect_err("shared");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    drop(other);
    *OwnedProxy::borrow_mut(&mut owned).expect("now unique") += 1;
    assert_eq!(*owned, 6);
}

#[test]
fn a_file_store_overwrites_atomically_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::new(
        "owned-mut-file",
        FileConnector::new(dir.path()).expect("file"),
    );
    let mut owned = store.owned_proxy(vec![0u8; 10]).expect("owned");
    let key = key_of(&owned);
    OwnedProxy::borrow_mut(&mut owned)
        .expect("borrow_mut")
        .extend_from_slice(&[1, 2]);
    let fresh = Store::from_config(&store.config()).expect("rebuild");
    let bytes = fresh.get_bytes(&key).expect("get").expect("stored");
    assert_eq!(bytes.len(), 12);
    assert_eq!(
        store.connector().object_count(),
        Some(1),
        "no temporary left"
    );
}

#[test]
fn a_connector_without_overwrite_refuses_and_keeps_the_object() {
    let store = Store::new("owned-mut-zmq", ZmqConnector::new().expect("zmq"));
    let mut owned = store.owned_proxy(1u64).expect("owned");
    let key = key_of(&owned);
    let mut value = OwnedProxy::borrow_mut(&mut owned).expect("borrow_mut");
    *value = 2;
    let err = value.commit().expect_err("zmq cannot overwrite");
    assert!(err.to_string().contains("overwrite"), "{err}");
    assert_eq!(*store.get::<u64>(&key).expect("get").expect("stored"), 1);
}

#[test]
fn clone_object_stores_an_independent_copy() {
    let store = Store::new("owned-clone-object", LocalConnector::new());
    let owned = store.owned_proxy(vec![9u16; 4]).expect("owned");
    let mut copy = OwnedProxy::clone_object(&owned).expect("copy");
    let (a, b) = (key_of(&owned), key_of(&copy));
    assert_ne!(a, b);
    OwnedProxy::borrow_mut(&mut copy).expect("borrow_mut")[0] = 1;
    assert_eq!(owned[0], 9, "the original is unchanged");
    assert_eq!(store.get::<Vec<u16>>(&b).expect("get").expect("copy")[0], 1);
    drop(copy);
    assert!(
        !store.exists(&b).expect("exists"),
        "the copy has its own owner"
    );
    assert!(store.exists(&a).expect("exists"));
}

#[test]
fn serializing_moves_ownership() {
    let store = Store::new("owned-serialize", LocalConnector::new());
    proxy_core::register_store(&store).expect("register");
    let owned = store.owned_proxy(String::from("moving")).expect("owned");
    let key = key_of(&owned);
    let wire = bincode::serialize(&owned).expect("serialize");
    assert!(!OwnedProxy::is_owner(&owned));
    drop(owned);
    assert!(
        store.exists(&key).expect("exists"),
        "the sender no longer evicts"
    );

    let received: OwnedProxy<String> = bincode::deserialize(&wire).expect("deserialize");
    assert!(OwnedProxy::is_owner(&received));
    assert_eq!(*received, "moving");
    drop(received);
    assert!(!store.exists(&key).expect("exists"), "the receiver evicts");
    proxy_core::unregister_store("owned-serialize");
}
