//! Codecs seen through a store: the identity path for byte buffers, and decode errors.

mod common;

use bytes::Bytes;
use common::unique;
use proxy_core::{
    BincodeCodec, Codec, DefaultCodec, Error, ErrorKind, LocalConnector, Proxy, Store,
};

fn local(prefix: &str) -> Store {
    Store::new(unique(prefix), LocalConnector::new())
}

#[test]
fn bytes_go_through_a_local_store_without_a_copy() {
    let store = Store::builder(unique("bytes-nocopy"), LocalConnector::new())
        .with_cache_size(0)
        .build();
    let data = Bytes::from(vec![0xabu8; 1 << 20]);
    let key = store.put(&data).expect("put");
    let back = store.get::<Bytes>(&key).expect("get").expect("present");
    assert_eq!(back.as_ptr(), data.as_ptr(), "1 MiB get copied the payload");
    assert_eq!(back.len(), 1 << 20);
    let raw = store.get_bytes(&key).expect("get_bytes").expect("present");
    assert_eq!(raw.as_ptr(), data.as_ptr(), "raw get copied the payload");
}

#[test]
fn vec_u8_is_stored_without_framing() {
    let store = local("vec-u8");
    let key = store.put(&vec![9u8, 8, 7]).expect("put");
    let raw = store.get_bytes(&key).expect("get_bytes").expect("present");
    assert_eq!(&raw[..], &[9, 8, 7]);
    // Bincode would have written a length prefix: BincodeCodec is the framed variant.
    let framed = <BincodeCodec as Codec<Vec<u8>>>::encode(&vec![9u8, 8, 7]).expect("encode");
    assert_eq!(framed.len(), 8 + 3);
}

#[test]
fn proxy_lazy_moves_a_vec_u8_and_fetches_it_back() {
    let store = local("lazy");
    let proxy = store.proxy_lazy(vec![5u8; 4096]).expect("proxy_lazy");
    assert!(!Proxy::is_resolved(&proxy));
    assert_eq!(proxy.len(), 4096);
    assert!(proxy.iter().all(|&b| b == 5));
}

#[test]
fn decoding_wrong_bytes_is_a_codec_error_naming_the_type() {
    let store = local("wrong-bytes");
    let key = store.put(&String::from("hello")).expect("put");
    let err = store
        .get::<Vec<u64>>(&key)
        .expect_err("a String is not a Vec<u64>");
    match err.root() {
        Error::Codec {
            action, type_name, ..
        } => {
            assert_eq!(*action, "decode");
            assert!(type_name.contains("Vec<u64>"), "{type_name}");
        }
        other => panic!("expected Error::Codec, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("Vec<u64>"), "{text}");
    assert!(text.contains(store.name()), "{text}");
    assert!(text.contains(&key.to_string()), "{text}");
    assert!(!store.is_cached(&key), "a failed decode must not be cached");

    // The same through a proxy: an error from resolve, naming the type.
    let proxy: Proxy<Vec<u64>> = store.proxy_from_key(key);
    let err = Proxy::resolve(&proxy).expect_err("resolve of wrong bytes");
    assert!(
        matches!(err.root(), Error::Codec { type_name, .. } if type_name.contains("Vec<u64>")),
        "{err:?}"
    );
    assert!(!Proxy::is_resolved(&proxy));
}

#[test]
fn truncated_bytes_are_a_codec_error() {
    let store = local("truncated");
    let full = <DefaultCodec as Codec<(u64, String)>>::encode(&(1, "abcdef".into())).expect("e");
    let key = store
        .put_bytes(full.slice(..full.len() - 2))
        .expect("put_bytes");
    let err = store.get::<(u64, String)>(&key).expect_err("truncated");
    assert!(
        matches!(err.root(), Error::Codec { type_name, .. } if type_name.contains("String")),
        "{err:?}"
    );
}

#[test]
fn encoded_len_agrees_with_what_the_store_writes() {
    let store = Store::builder(unique("encoded-len"), LocalConnector::new())
        .with_metrics(true)
        .build();
    let value = (3u32, vec![1.5f32; 17], String::from("abc"));
    store.put(&value).expect("put");
    let written = store.metrics().expect("metrics").put.bytes;
    assert_eq!(
        <DefaultCodec as Codec<_>>::encoded_len(&value),
        Some(written)
    );
}

#[test]
fn a_vec_f64_read_as_a_string_is_a_codec_error() {
    let store = local("f64-as-string");
    let key = store.put(&vec![1.0f64, 2.0]).expect("put");
    let err = store
        .get::<String>(&key)
        .expect_err("a Vec<f64> must not decode as a String");
    assert_eq!(err.kind(), ErrorKind::Codec, "{err:?}");
    assert!(err.to_string().contains("String"), "{err}");
    // The right type still reads it.
    assert_eq!(
        *store.get::<Vec<f64>>(&key).expect("get").expect("present"),
        vec![1.0, 2.0]
    );
}

#[test]
fn a_u64_read_as_a_u32_is_a_codec_error() {
    let store = local("u64-as-u32");
    let key = store.put(&0x0102_0304_0506_0708u64).expect("put");
    let err = store.get::<u32>(&key).expect_err("8 bytes are not a u32");
    assert_eq!(err.kind(), ErrorKind::Codec, "{err:?}");
    let proxy: Proxy<u32> = store.proxy_from_key(key.clone());
    assert_eq!(
        Proxy::resolve(&proxy).expect_err("resolve").kind(),
        ErrorKind::Codec
    );
    assert_eq!(
        *store.get::<u64>(&key).expect("get").expect("present"),
        0x0102_0304_0506_0708
    );
}

#[test]
fn trailing_bytes_after_a_value_are_rejected() {
    let store = local("trailing");
    let mut raw = <DefaultCodec as Codec<(u32, String)>>::encode(&(7, "x".into()))
        .expect("encode")
        .to_vec();
    raw.push(0);
    let key = store.put_bytes(Bytes::from(raw)).expect("put_bytes");
    let err = store
        .get::<(u32, String)>(&key)
        .expect_err("one byte too many");
    assert_eq!(err.kind(), ErrorKind::Codec, "{err:?}");
}

#[test]
fn the_bincode_format_is_unchanged_by_strict_decoding() {
    // Objects written before strict decoding (plain `bincode::serialize`) still read.
    let value = (5u64, String::from("five"), vec![0.5f32; 3]);
    let old = bincode::serialize(&value).expect("serialize");
    let new = <BincodeCodec as Codec<_>>::encode(&value).expect("encode");
    assert_eq!(&new[..], &old[..]);
}

/// Text as raw UTF-8 bytes, with no framing: a non-default codec for the tests below.
struct Utf8;

impl Codec<String> for Utf8 {
    fn encode(value: &String) -> Result<Bytes, Error> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }
    fn decode(bytes: Bytes) -> Result<String, Error> {
        String::from_utf8(bytes.to_vec()).map_err(|e| Error::Codec {
            action: "decode",
            type_name: "String",
            message: e.to_string(),
        })
    }
}

#[test]
fn a_store_default_codec_is_used_by_every_typed_call() {
    let store: Store<Utf8> = Store::builder(unique("default-codec"), LocalConnector::new())
        .with_codec::<Utf8>()
        .build();
    let raw = |key: &proxy_core::Key| store.get_bytes(key).expect("raw").expect("present");
    let s = |t: &str| t.to_string();

    let key = store.put(&s("put")).expect("put");
    assert_eq!(&raw(&key)[..], b"put");
    assert_eq!(
        *store.get::<String>(&key).expect("get").expect("some"),
        "put"
    );

    let keys = store.put_batch(&[s("a"), s("b")]).expect("put_batch");
    assert_eq!(&raw(&keys[1])[..], b"b");
    let got = store.get_batch::<String>(&keys).expect("get_batch");
    assert_eq!(*got[0].clone().expect("a"), "a");

    let proxy = store.proxy(s("proxy")).expect("proxy");
    assert_eq!(&raw(Proxy::key(&proxy))[..], b"proxy");
    let lazy = store.proxy_lazy(s("lazy")).expect("proxy_lazy");
    assert_eq!(&raw(Proxy::key(&lazy))[..], b"lazy");
    assert_eq!(*lazy, "lazy");
    let batch = store
        .proxy_batch(vec![s("x"), s("y")])
        .expect("proxy_batch");
    assert_eq!(&raw(Proxy::key(&batch[0]))[..], b"x");
    let owned = store.owned_proxy(s("owned")).expect("owned_proxy");
    assert_eq!(
        &raw(Proxy::key(proxy_core::OwnedProxy::borrow(&owned)))[..],
        b"owned"
    );
    let from_key: Proxy<String, Utf8> = store.proxy_from_key(key.clone());
    assert_eq!(*from_key, "put");

    // A serialized proxy decodes with the codec in its type after a rebuild elsewhere.
    let wire = bincode::serialize(&proxy).expect("serialize");
    let received: Proxy<String, Utf8> = bincode::deserialize(&wire).expect("deserialize");
    assert_eq!(*received, "proxy");

    // The `_with` variants override the default for one call.
    let framed = store
        .put_with::<String, DefaultCodec>(&s("framed"))
        .expect("put_with");
    assert_eq!(raw(&framed).len(), 8 + 6, "bincode frames the string");
    let framed_proxies = store
        .proxy_batch_with::<String, DefaultCodec>(vec![s("f")])
        .expect("proxy_batch_with");
    assert_eq!(raw(Proxy::key(&framed_proxies[0])).len(), 9);
    let lazy_framed = store
        .proxy_lazy_with::<String, DefaultCodec>(s("lf"))
        .expect("proxy_lazy_with");
    assert_eq!(*lazy_framed, "lf");
    let owned_framed = store
        .owned_proxy_with::<String, DefaultCodec>(s("of"))
        .expect("owned_proxy_with");
    assert_eq!(*owned_framed, "of");
    let framed_keys = store
        .put_batch_with::<String, DefaultCodec>(&[s("p")])
        .expect("put_batch_with");
    assert_eq!(raw(&framed_keys[0]).len(), 9);

    // The same store seen with the default codec shares everything.
    let plain: Store = store.with_codec();
    assert!(plain.same_store(&store));
    assert_eq!(
        *plain.get::<String>(&framed).expect("get").expect("some"),
        "framed"
    );
}
