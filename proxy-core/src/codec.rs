//! Codecs: how Rust values become bytes and back.

use std::any::{type_name, Any};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

mod pod;
pub(crate) use pod::trailer as pod_trailer;
pub use pod::{PodArray, PodCodec, PodElement};

/// Turns values of type `T` into bytes and back.
///
/// A codec is a type, not a closure, so that it travels with a [`Proxy`](crate::Proxy)'s type
/// (`Proxy<T, C>`) to any thread or process that resolves it. Implement it on a unit struct:
///
/// ```
/// use bytes::Bytes;
/// use proxy_core::{Codec, Error, LocalConnector, Store};
///
/// /// Stores text as UTF-8 bytes, with no serde framing.
/// struct Utf8;
///
/// impl Codec<String> for Utf8 {
///     fn encode(value: &String) -> Result<Bytes, Error> {
///         Ok(Bytes::copy_from_slice(value.as_bytes()))
///     }
///     fn decode(bytes: Bytes) -> Result<String, Error> {
///         String::from_utf8(bytes.to_vec()).map_err(|e| Error::Codec {
///             action: "decode",
///             type_name: "String",
///             message: e.to_string(),
///         })
///     }
/// }
///
/// let store = Store::new("utf8-doc", LocalConnector::new());
/// let proxy = store.proxy_with::<String, Utf8>("hello".to_string())?;
/// assert_eq!(proxy.len(), 5);
/// let raw = store.connector().get(proxy_core::Proxy::key(&proxy))?;
/// assert_eq!(raw.as_deref(), Some(&b"hello"[..]));
/// # Ok::<(), proxy_core::Error>(())
/// ```
pub trait Codec<T>: 'static {
    /// Encodes a borrowed value.
    fn encode(value: &T) -> Result<Bytes>;

    /// Encodes an owned value; override it when owning the value avoids a copy.
    fn encode_owned(value: T) -> Result<Bytes> {
        Self::encode(&value)
    }

    /// Decodes a value from bytes produced by [`encode`](Codec::encode).
    ///
    /// The bytes may not be this process's alone: a get from a peer on the same machine
    /// returns, by default, a `Bytes` over the owner's shared memory (see
    /// [`ZmqOptions::with_shared_memory`](crate::ZmqOptions::with_shared_memory)). The owner
    /// never rewrites them while they are held, but a misbehaving process of the same user
    /// can open that memory and change them while `decode` runs. A codec that checks the
    /// bytes once and then relies on them staying checked (borrowing them as UTF-8 text, or
    /// as a validated zero-copy archive) should copy first (`bytes.to_vec()`, as the example
    /// above does), or the program should turn on
    /// [`with_shared_memory_copy_on_read`](crate::ZmqOptions::with_shared_memory_copy_on_read);
    /// owned values decoded by copying (serde, the built-in codecs) are unaffected once
    /// decoded.
    fn decode(bytes: Bytes) -> Result<T>;

    /// The length [`encode`](Codec::encode) would produce, if the codec can tell without
    /// encoding (used to decide whether a record is worth proxying).
    fn encoded_len(_value: &T) -> Option<u64> {
        None
    }
}

/// The default codec: compact binary serde (bincode) for any `Serialize + DeserializeOwned`
/// type, and an identity path for byte buffers.
///
/// - [`Bytes`] is stored as is and comes back as the very same buffer (no copy either way).
/// - `Vec<u8>` is stored as its raw bytes, with no serde framing: owned puts
///   ([`Store::proxy`](crate::Store::proxy)) move the vector without copying; gets hand the
///   buffer back without copying when no one else holds it, and copy it once otherwise.
///
/// # Reading with the wrong type
///
/// Decoding rejects bytes left over after the value, and bincode checks lengths, tags and
/// UTF-8, so most mismatches are an [`Error::Codec`]: a `Vec<f64>` read as a `String`, a
/// `u64` read as a `u32`, a struct read as a shorter one. bincode does not write type names,
/// so it cannot tell apart types with the same encoding: `u64`/`i64`/`f64` (any 8 bytes
/// are a valid value of each), a struct and a tuple or another struct with the same field
/// types in the same order, `Vec<T>` and `VecDeque<T>`, a newtype and its inner type. A
/// `Vec<u8>` or [`Bytes`] read accepts any bytes at all (the identity path). Keep one type per key (a typed
/// [`Proxy<T>`](crate::Proxy) does this for you).
///
/// bincode was chosen over postcard and MessagePack by the `codec` group of the criterion
/// benchmarks (`cargo bench -p benchmarks --bench store -- codec`): it encodes and decodes
/// numeric-heavy records fastest, and it is the format Timely itself uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultCodec;

fn codec_error<T>(action: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Codec {
        action,
        type_name: type_name::<T>(),
        message: e.to_string(),
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for DefaultCodec {
    fn encode(value: &T) -> Result<Bytes> {
        let any = value as &dyn Any;
        if let Some(bytes) = any.downcast_ref::<Bytes>() {
            return Ok(bytes.clone());
        }
        if let Some(vec) = any.downcast_ref::<Vec<u8>>() {
            return Ok(Bytes::copy_from_slice(vec));
        }
        BincodeCodec::encode(value)
    }

    fn encode_owned(value: T) -> Result<Bytes> {
        let mut slot = Some(value);
        let any = &mut slot as &mut dyn Any;
        if let Some(vec) = any.downcast_mut::<Option<Vec<u8>>>().and_then(Option::take) {
            return Ok(Bytes::from(vec));
        }
        match slot {
            Some(value) => Self::encode(&value),
            None => Err(codec_error::<T>("encode", "value vanished")),
        }
    }

    fn decode(bytes: Bytes) -> Result<T> {
        let mut out: Option<T> = None;
        let any = &mut out as &mut dyn Any;
        if let Some(slot) = any.downcast_mut::<Option<Bytes>>() {
            *slot = Some(bytes);
        } else if let Some(slot) = any.downcast_mut::<Option<Vec<u8>>>() {
            *slot = Some(Vec::from(bytes));
        } else {
            return BincodeCodec::decode(bytes);
        }
        out.ok_or_else(|| codec_error::<T>("decode", "identity path produced no value"))
    }

    fn encoded_len(value: &T) -> Option<u64> {
        let any = value as &dyn Any;
        if let Some(bytes) = any.downcast_ref::<Bytes>() {
            return Some(bytes.len() as u64);
        }
        if let Some(vec) = any.downcast_ref::<Vec<u8>>() {
            return Some(vec.len() as u64);
        }
        BincodeCodec::encoded_len(value)
    }
}

/// Plain bincode for every type, with no identity path for byte buffers.
///
/// Decoding is strict: the bytes must hold exactly one value of the requested type, so
/// reading an object as the wrong type fails with [`Error::Codec`] wherever the format can
/// tell (see [`DefaultCodec`] for what it cannot).
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeCodec;

/// bincode's classic format (fixed-width integers, as `bincode::serialize` writes it), but
/// strict on decode: bytes left over after the value are an error, not silently ignored.
fn bincode_options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
}

/// Encodes a connector's configuration ([`ExternalConfig`](crate::ExternalConfig)).
pub(crate) fn encode_config<C: Serialize>(config: &C) -> std::result::Result<Vec<u8>, String> {
    use bincode::Options;
    bincode_options()
        .serialize(config)
        .map_err(|e| e.to_string())
}

/// Decodes a connector's configuration encoded by [`encode_config`].
pub(crate) fn decode_config<C: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<C, String> {
    use bincode::Options;
    bincode_options()
        .deserialize(bytes)
        .map_err(|e| e.to_string())
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for BincodeCodec {
    fn encode(value: &T) -> Result<Bytes> {
        use bincode::Options;
        bincode_options()
            .serialize(value)
            .map(Bytes::from)
            .map_err(|e| codec_error::<T>("encode", e))
    }

    fn decode(bytes: Bytes) -> Result<T> {
        use bincode::Options;
        bincode_options()
            .deserialize(&bytes)
            .map_err(|e| codec_error::<T>("decode", e))
    }

    fn encoded_len(value: &T) -> Option<u64> {
        use bincode::Options;
        bincode_options().serialized_size(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn bytes_pass_through_without_copy() {
        let data = Bytes::from(vec![9u8; 4096]);
        let encoded = <DefaultCodec as Codec<Bytes>>::encode(&data).expect("encode");
        assert_eq!(encoded.as_ptr(), data.as_ptr());
        let decoded = <DefaultCodec as Codec<Bytes>>::decode(encoded).expect("decode");
        assert_eq!(decoded.as_ptr(), data.as_ptr());
    }

    #[test]
    fn owned_vec_moves_into_bytes_and_back() {
        let vec = vec![3u8; 4096];
        let ptr = vec.as_ptr();
        let encoded = <DefaultCodec as Codec<Vec<u8>>>::encode_owned(vec).expect("encode");
        assert_eq!(encoded.as_ptr(), ptr, "owned Vec<u8> was copied on encode");
        assert_eq!(encoded.len(), 4096, "identity path must not add framing");
        let decoded = <DefaultCodec as Codec<Vec<u8>>>::decode(encoded).expect("decode");
        assert_eq!(decoded.as_ptr(), ptr, "unique buffer was copied on decode");
    }

    #[test]
    fn encoded_len_matches_encode() {
        let value = (7u64, "seven".to_string(), vec![1u16; 100]);
        let encoded = <DefaultCodec as Codec<_>>::encode(&value).expect("encode");
        assert_eq!(
            <DefaultCodec as Codec<_>>::encoded_len(&value),
            Some(encoded.len() as u64)
        );
        let bytes = Bytes::from(vec![0u8; 333]);
        assert_eq!(
            <DefaultCodec as Codec<Bytes>>::encoded_len(&bytes),
            Some(333)
        );
    }

    #[test]
    fn serde_types_round_trip() {
        let value: BTreeMap<String, Vec<f64>> =
            [("a".to_string(), vec![1.0, 2.5]), ("b".to_string(), vec![])].into();
        let encoded = <DefaultCodec as Codec<_>>::encode(&value).expect("encode");
        let back: BTreeMap<String, Vec<f64>> = DefaultCodec::decode(encoded).expect("decode");
        assert_eq!(back, value);
    }

    #[test]
    fn garbage_gives_a_codec_error_naming_the_type() {
        let err = <DefaultCodec as Codec<(u64, String)>>::decode(Bytes::from_static(&[1, 2]))
            .expect_err("must fail");
        match err {
            Error::Codec {
                action, type_name, ..
            } => {
                assert_eq!(action, "decode");
                assert!(type_name.contains("String"), "{type_name}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
