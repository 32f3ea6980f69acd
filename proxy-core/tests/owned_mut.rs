//! Mutable owned proxies: write-back under the same key, copies under new keys, ownership
//! moved by serializing.

use proxy_core::{
    Capability, Connector, Error, FileConnector, Key, LocalConnector, OwnedProxy, Proxy, Store,
    ZmqConnector,
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

/// A connector that cannot overwrite (ZeroMQ's) is refused at `borrow_mut`, with an error
/// that says why, not later when the guard writes back (on drop, where it could only log).
#[test]
fn borrow_mut_on_a_connector_that_cannot_overwrite_is_refused_at_once() {
    let store = Store::new("owned-mut-zmq", ZmqConnector::new().expect("zmq"));
    assert_eq!(
        store.connector().supports(Capability::Overwrite),
        Some(false)
    );
    let mut owned = store.owned_proxy(1u64).expect("owned");
    let key = key_of(&owned);
    let err = OwnedProxy::borrow_mut(&mut owned).expect_err("zmq cannot overwrite");
    assert!(matches!(err.root(), Error::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("overwrite"), "{text}");
    assert!(text.contains(&key.to_string()), "{text}");
    assert_eq!(*store.get::<u64>(&key).expect("get").expect("stored"), 1);
}

/// A write-back that fails when the guard drops is logged at error level and kept on the
/// owner, where `write_back_error` shows it (and `take_write_back_error` clears it); a later
/// successful write-back clears it too.
#[test]
fn a_failed_write_back_on_drop_is_kept_for_the_owner_to_see() {
    let store = Store::new("owned-mut-drop-fails", LocalConnector::new());
    let mut owned = store.owned_proxy(String::from("before")).expect("owned");
    let key = key_of(&owned);
    assert!(OwnedProxy::write_back_error(&owned).is_none());
    {
        let mut value = OwnedProxy::borrow_mut(&mut owned).expect("borrow_mut");
        value.push_str(" and after");
        store.evict(&key).expect("evicted behind the owner's back");
    } // the write-back fails here
    let err = OwnedProxy::write_back_error(&owned).expect("the failure is kept");
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains(&key.to_string()), "{err}");
    assert_eq!(*owned, "before", "the owner keeps the value it had");
    assert!(OwnedProxy::take_write_back_error(&owned).is_some());
    assert!(OwnedProxy::write_back_error(&owned).is_none(), "taken");

    // Fails again, then a successful commit clears it.
    let store = Store::new("owned-mut-drop-recovers", LocalConnector::new());
    let mut owned = store.owned_proxy(1u32).expect("owned");
    let key = key_of(&owned);
    {
        let mut value = OwnedProxy::borrow_mut(&mut owned).expect("borrow_mut");
        *value = 2;
        store.evict(&key).expect("evict");
    }
    assert!(OwnedProxy::write_back_error(&owned).is_some());
    store
        .connector()
        .put_at(&key, bincode_u32(1))
        .expect("the object is back");
    let mut value = OwnedProxy::borrow_mut(&mut owned).expect("borrow_mut");
    *value = 3;
    value.commit().expect("commit");
    assert!(
        OwnedProxy::write_back_error(&owned).is_none(),
        "cleared by a good write-back"
    );
    assert_eq!(*owned, 3);
}

fn bincode_u32(value: u32) -> bytes::Bytes {
    bytes::Bytes::from(value.to_le_bytes().to_vec())
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
