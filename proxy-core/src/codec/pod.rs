//! `PodCodec`: plain numeric arrays stored as their raw memory, decoded without parsing.

use std::any::type_name;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Codec;
use crate::error::{Error, Result};

/// Stores plain numeric arrays (`Vec<f64>`, `Vec<u32>`, ...) as their raw memory, followed by
/// a small trailer, and decodes them without parsing a single element.
///
/// [`DefaultCodec`](crate::DefaultCodec) (bincode) writes and reads a `Vec<f64>` element by
/// element. `PodCodec` copies the vector's memory in one `memcpy` when encoding a borrowed
/// vector, and not at all when encoding an owned one with room for the trailer
/// ([`Store::proxy`](crate::Store::proxy) and the other owned puts). It decodes to:
///
/// - [`PodArray<T>`]: a view of the fetched buffer (`Deref<Target = [T]>`) with no copy at
///   all when the buffer is aligned for `T` (a buffer from the allocator or the OS is, for
///   elements of up to 8 bytes: the in-memory connector hands back the very buffer that was
///   put), and one `memcpy` into an aligned buffer otherwise ([`PodArray::is_view`] tells
///   which);
/// - `Vec<T>`: one `memcpy` into a new vector (a `Vec<T>` cannot adopt a byte buffer).
///
/// # When to use it
///
/// For large arrays of plain numbers: samples, features, matrices in row-major order,
/// gradients, images as `u8`/`u16`/`f32`. The element types are the primitive integers and
/// floats ([`PodElement`]); for structs, strings, maps or nested vectors use
/// [`DefaultCodec`](crate::DefaultCodec). For a few elements the difference does not matter.
///
/// # Format and endianness
///
/// The elements are stored in the writer's native byte order, not converted to a fixed one:
/// that is what lets a reader use them in place. Every process that reads an object must
/// therefore have the same endianness as the one that wrote it (every x86-64 and AArch64
/// Linux or macOS host is little-endian). The trailer records the writer's byte order, and a
/// reader of the other one gets an [`Error::Codec`] rather than scrambled numbers.
///
/// The trailer ([`PodCodec::TRAILER_LEN`] bytes, after the elements so that they start at the
/// buffer's own, allocator-aligned, address) holds a magic number, a format version, the
/// element type's tag and size, the byte order and the element count. Decoding checks all of
/// them, so bytes that were not written by `PodCodec` for this element type are an
/// [`Error::Codec`]: reading `f64`s as `u64`s or as `f32`s, a truncated object, an object
/// written by another codec. Hostile bytes never panic the reader.
///
/// # Examples
/// ```
/// use proxy_core::{LocalConnector, PodArray, PodCodec, Proxy, Store};
///
/// let store: Store<PodCodec> = Store::builder("pod-doc", LocalConnector::new())
///     .with_codec::<PodCodec>()
///     .build();
/// let samples: Vec<f64> = (0..1_000).map(|i| i as f64 * 0.5).collect();
///
/// // Owned puts move the vector's buffer into the store (no copy with spare capacity).
/// let proxy: Proxy<Vec<f64>, PodCodec> = store.proxy_lazy(samples.clone())?;
/// let key = Proxy::key(&proxy).clone();
///
/// // Read back as a view of the stored buffer: no parsing, no copy here.
/// let view = store.get::<PodArray<f64>>(&key)?.expect("stored");
/// assert_eq!(view.len(), 1_000);
/// assert_eq!(view[3], 1.5);
/// assert_eq!(&view[..], &samples[..]);
///
/// // Or as a vector (one memcpy).
/// let vector = store.get::<Vec<f64>>(&key)?.expect("stored");
/// assert_eq!(*vector, samples);
///
/// // The wrong element type is an error, not garbage.
/// assert!(store.get::<Vec<u64>>(&key).is_err());
///
/// // Proxies work as with any codec.
/// let proxy: Proxy<Vec<f32>, PodCodec> = store.proxy(vec![1.0f32; 4])?;
/// assert_eq!(proxy.iter().sum::<f32>(), 4.0);
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PodCodec;

impl PodCodec {
    /// Bytes of the trailer written after the elements. An owned vector encodes without a
    /// copy when its spare capacity holds this many bytes
    /// (`Vec::with_capacity(n + PodCodec::TRAILER_LEN / size_of::<T>())`); otherwise the
    /// allocator grows it first (in place or by remapping for large buffers, at worst one
    /// copy).
    pub const TRAILER_LEN: usize = TRAILER_LEN;
}

const TRAILER_LEN: usize = 16;
const MAGIC: [u8; 4] = *b"PODA";
const VERSION: u8 = 1;
const LITTLE: u8 = 1;
const BIG: u8 = 2;
const NATIVE: u8 = if cfg!(target_endian = "little") {
    LITTLE
} else {
    BIG
};

mod sealed {
    pub trait Sealed {}
}

/// An element type that [`PodCodec`] stores: the primitive integers (`u8` to `u128`, `i8` to
/// `i128`) and floats (`f32`, `f64`). Every bit pattern of these types is a valid value, so
/// bytes can be reinterpreted as them after checked casts (`bytemuck`), never with
/// `unsafe` code of this crate.
///
/// Sealed: the tag that identifies the type in the trailer must stay unique.
pub trait PodElement:
    bytemuck::Pod + Send + Sync + Serialize + DeserializeOwned + sealed::Sealed
{
    /// The type's tag in the trailer.
    #[doc(hidden)]
    const TAG: u8;
}

macro_rules! pod_elements {
    ($($t:ty => $tag:expr),* $(,)?) => {
        $(
            impl sealed::Sealed for $t {}
            impl PodElement for $t {
                const TAG: u8 = $tag;
            }
        )*
        /// The name of the element type with this tag, for error messages.
        fn tag_name(tag: u8) -> &'static str {
            match tag {
                $($tag => stringify!($t),)*
                _ => "an unknown type",
            }
        }
    };
}

pod_elements! {
    u8 => 1, u16 => 2, u32 => 3, u64 => 4, u128 => 5,
    i8 => 6, i16 => 7, i32 => 8, i64 => 9, i128 => 10,
    f32 => 11, f64 => 12,
}

fn decode_error<V>(message: impl fmt::Display) -> Error {
    Error::Codec {
        action: "decode",
        type_name: type_name::<V>(),
        message: message.to_string(),
    }
}

fn encode_error<V>(message: impl fmt::Display) -> Error {
    Error::Codec {
        action: "encode",
        type_name: type_name::<V>(),
        message: message.to_string(),
    }
}

/// The trailer for `count` elements of `T` (also written by [`PodBuffer`](crate::PodBuffer)).
pub(crate) fn trailer<T: PodElement>(count: usize) -> [u8; TRAILER_LEN] {
    let mut out = [0u8; TRAILER_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = T::TAG;
    // Element sizes are at most 16 bytes.
    out[6] = std::mem::size_of::<T>() as u8;
    out[7] = NATIVE;
    out[8..].copy_from_slice(&(count as u64).to_le_bytes());
    out
}

/// Checks `bytes` as an encoding of elements of `T`, read as a value of type `V`; returns the
/// number of elements. Every field is checked, so hostile bytes give an error.
fn check<T: PodElement, V>(bytes: &[u8]) -> Result<usize> {
    let Some(payload_len) = bytes.len().checked_sub(TRAILER_LEN) else {
        return Err(decode_error::<V>(format_args!(
            "{} bytes is shorter than the {TRAILER_LEN}-byte PodCodec trailer",
            bytes.len()
        )));
    };
    let t = &bytes[payload_len..];
    if t[..4] != MAGIC {
        return Err(decode_error::<V>(
            "no PodCodec trailer at the end (the object was written by another codec?)",
        ));
    }
    if t[4] != VERSION {
        return Err(decode_error::<V>(format_args!(
            "PodCodec format version {} (this build reads version {VERSION})",
            t[4]
        )));
    }
    if t[5] != T::TAG || usize::from(t[6]) != std::mem::size_of::<T>() {
        return Err(decode_error::<V>(format_args!(
            "the object holds elements of type {} ({} bytes each), not {}",
            tag_name(t[5]),
            t[6],
            type_name::<T>()
        )));
    }
    if t[7] != NATIVE {
        let order = |o: u8| match o {
            LITTLE => "little-endian",
            BIG => "big-endian",
            _ => "unknown-endian",
        };
        return Err(decode_error::<V>(format_args!(
            "written on a {} host, read on a {} one: PodCodec stores native byte order",
            order(t[7]),
            order(NATIVE)
        )));
    }
    let mut count = [0u8; 8];
    count.copy_from_slice(&t[8..]);
    let count = u64::from_le_bytes(count);
    let expected = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(std::mem::size_of::<T>()));
    if expected != Some(payload_len) {
        return Err(decode_error::<V>(format_args!(
            "the trailer announces {count} elements of {} bytes, but {payload_len} bytes precede it",
            std::mem::size_of::<T>()
        )));
    }
    Ok(payload_len / std::mem::size_of::<T>())
}

/// Encodes a slice: one copy of its memory, then the trailer.
fn encode_slice<T: PodElement>(values: &[T]) -> Bytes {
    let payload: &[u8] = bytemuck::cast_slice(values);
    let mut out = Vec::with_capacity(payload.len() + TRAILER_LEN);
    out.extend_from_slice(payload);
    out.extend_from_slice(&trailer::<T>(values.len()));
    Bytes::from(out)
}

/// Copies checked payload bytes into a new, aligned vector (one memcpy).
fn copy_to_vec<T: PodElement>(payload: &[u8], count: usize) -> Vec<T> {
    let mut out = vec![T::zeroed(); count];
    bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(payload);
    out
}

/// A vector of elements whose memory backs a [`Bytes`] (the trailer included) without copy.
struct VecOwner<T>(Vec<T>);

impl<T: PodElement> AsRef<[u8]> for VecOwner<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

impl<T: PodElement> Codec<Vec<T>> for PodCodec {
    fn encode(value: &Vec<T>) -> Result<Bytes> {
        Ok(encode_slice(value))
    }

    /// Moves the vector's buffer into the bytes, with the trailer written into its spare
    /// capacity (grown first if it has none).
    fn encode_owned(mut value: Vec<T>) -> Result<Bytes> {
        let count = value.len();
        let size = std::mem::size_of::<T>();
        value.reserve_exact(TRAILER_LEN / size);
        for chunk in trailer::<T>(count).chunks_exact(size) {
            let element = bytemuck::try_pod_read_unaligned::<T>(chunk)
                .map_err(|e| encode_error::<Vec<T>>(format_args!("trailer: {e:?}")))?;
            value.push(element);
        }
        Ok(Bytes::from_owner(VecOwner(value)))
    }

    /// One copy into a new vector, after the checks.
    fn decode(bytes: Bytes) -> Result<Vec<T>> {
        let count = check::<T, Vec<T>>(&bytes)?;
        Ok(copy_to_vec(
            &bytes[..count * std::mem::size_of::<T>()],
            count,
        ))
    }

    fn encoded_len(value: &Vec<T>) -> Option<u64> {
        let payload = value.len().checked_mul(std::mem::size_of::<T>())?;
        u64::try_from(payload.checked_add(TRAILER_LEN)?).ok()
    }
}

impl<T: PodElement> Codec<PodArray<T>> for PodCodec {
    fn encode(value: &PodArray<T>) -> Result<Bytes> {
        match &value.storage {
            Storage::Shared { bytes, .. } => Ok(bytes.clone()),
            Storage::Owned(values) => Ok(encode_slice(values)),
        }
    }

    fn encode_owned(value: PodArray<T>) -> Result<Bytes> {
        match value.storage {
            Storage::Shared { bytes, .. } => Ok(bytes),
            Storage::Owned(values) => <PodCodec as Codec<Vec<T>>>::encode_owned(values),
        }
    }

    /// No copy when `bytes` is aligned for `T`; one copy into an aligned buffer otherwise.
    fn decode(bytes: Bytes) -> Result<PodArray<T>> {
        let count = check::<T, PodArray<T>>(&bytes)?;
        let payload = &bytes[..count * std::mem::size_of::<T>()];
        if count > 0 && bytemuck::try_cast_slice::<u8, T>(payload).is_ok() {
            return Ok(PodArray {
                storage: Storage::Shared { bytes, count },
            });
        }
        Ok(PodArray {
            storage: Storage::Owned(copy_to_vec(payload, count)),
        })
    }

    fn encoded_len(value: &PodArray<T>) -> Option<u64> {
        let payload = value.len().checked_mul(std::mem::size_of::<T>())?;
        u64::try_from(payload.checked_add(TRAILER_LEN)?).ok()
    }
}

/// An array of numbers decoded by [`PodCodec`]: a view of the fetched bytes when they are
/// aligned for `T` (no copy), or a vector they were copied into once otherwise.
///
/// Derefs to `[T]`; cheap to clone when it is a view (the bytes are shared). Encoding a view
/// again with `PodCodec` (putting it into another store, say) hands over the same bytes with
/// no copy. Serde (for dataflow exchange) writes it as a sequence of numbers.
///
/// ```
/// use proxy_core::PodArray;
///
/// let array = PodArray::from(vec![1u32, 2, 3]);
/// assert_eq!(array.iter().sum::<u32>(), 6);
/// assert_eq!(array.into_vec(), vec![1, 2, 3]);
/// ```
pub struct PodArray<T: PodElement> {
    storage: Storage<T>,
}

enum Storage<T> {
    /// The encoded bytes (elements then trailer), checked and aligned for `T`.
    Shared { bytes: Bytes, count: usize },
    /// Elements owned by this array (built from a vector, or copied from unaligned bytes).
    Owned(Vec<T>),
}

impl<T: PodElement> PodArray<T> {
    /// The elements, as a slice.
    pub fn as_slice(&self) -> &[T] {
        match &self.storage {
            // Checked when decoded (length, alignment), and `Bytes` never changes.
            Storage::Shared { bytes, count } => {
                bytemuck::cast_slice(&bytes[..count * std::mem::size_of::<T>()])
            }
            Storage::Owned(values) => values,
        }
    }

    /// Whether this array reads the fetched bytes in place (`true`), rather than a copy of
    /// them or a vector it was built from.
    pub fn is_view(&self) -> bool {
        matches!(self.storage, Storage::Shared { .. })
    }

    /// The elements as a vector: moved out when the array owns one, copied (one memcpy)
    /// from a view.
    pub fn into_vec(self) -> Vec<T> {
        match self.storage {
            Storage::Shared { .. } => self.as_slice().to_vec(),
            Storage::Owned(values) => values,
        }
    }
}

impl<T: PodElement> From<Vec<T>> for PodArray<T> {
    fn from(values: Vec<T>) -> Self {
        PodArray {
            storage: Storage::Owned(values),
        }
    }
}

impl<T: PodElement> Deref for PodArray<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: PodElement> AsRef<[T]> for PodArray<T> {
    fn as_ref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: PodElement> Clone for PodArray<T> {
    fn clone(&self) -> Self {
        let storage = match &self.storage {
            Storage::Shared { bytes, count } => Storage::Shared {
                bytes: bytes.clone(),
                count: *count,
            },
            Storage::Owned(values) => Storage::Owned(values.clone()),
        };
        PodArray { storage }
    }
}

impl<T: PodElement + PartialEq> PartialEq for PodArray<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// Shows the element type, the length and whether it is a view; not the elements, which
/// may be millions.
impl<T: PodElement> fmt::Debug for PodArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodArray")
            .field("element", &type_name::<T>())
            .field("len", &self.len())
            .field("view", &self.is_view())
            .finish()
    }
}

impl<T: PodElement> Serialize for PodArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.as_slice().serialize(serializer)
    }
}

impl<'de, T: PodElement> Deserialize<'de> for PodArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let values = Vec::<T>::deserialize(deserializer)?;
        Ok(PodArray::from(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Codec, DefaultCodec, LocalConnector, Store};
    use proptest::prelude::*;

    fn encode<T: PodElement>(values: &[T]) -> Bytes {
        <PodCodec as Codec<Vec<T>>>::encode(&values.to_vec()).expect("encode")
    }

    fn decode_vec<T: PodElement>(bytes: Bytes) -> Result<Vec<T>> {
        <PodCodec as Codec<Vec<T>>>::decode(bytes)
    }

    fn decode_array<T: PodElement>(bytes: Bytes) -> Result<PodArray<T>> {
        <PodCodec as Codec<PodArray<T>>>::decode(bytes)
    }

    /// The same bytes starting one byte further into a fresh buffer: misaligned for any
    /// element wider than a byte.
    fn misaligned(bytes: &Bytes) -> Bytes {
        let mut buf = Vec::with_capacity(bytes.len() + 1);
        buf.push(0u8);
        buf.extend_from_slice(bytes);
        Bytes::from(buf).slice(1..)
    }

    fn assert_codec_error<V: fmt::Debug>(result: Result<V>, needle: &str) {
        match result {
            Err(Error::Codec {
                action, message, ..
            }) => {
                assert_eq!(action, "decode");
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected a codec error mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn vectors_round_trip_with_the_layout_documented() {
        let values: Vec<f64> = (0..1000).map(|i| i as f64 / 3.0).collect();
        let bytes = encode(&values);
        assert_eq!(bytes.len(), 8 * 1000 + PodCodec::TRAILER_LEN);
        assert_eq!(&bytes[..8], &values[0].to_ne_bytes());
        assert_eq!(&bytes[8000..8004], b"PODA");
        assert_eq!(
            <PodCodec as Codec<Vec<f64>>>::encoded_len(&values),
            Some(bytes.len() as u64)
        );
        assert_eq!(decode_vec::<f64>(bytes.clone()).expect("vec"), values);
        assert_eq!(&decode_array::<f64>(bytes).expect("array")[..], &values[..]);
        let small: Vec<i16> = vec![-3, 0, 7, i16::MAX];
        assert_eq!(decode_vec::<i16>(encode(&small)).expect("i16"), small);
        let wide: Vec<u128> = vec![u128::MAX, 1 << 100];
        assert_eq!(decode_vec::<u128>(encode(&wide)).expect("u128"), wide);
    }

    #[test]
    fn owned_vectors_are_moved_into_the_bytes() {
        let mut values: Vec<f64> = Vec::with_capacity(1024 + PodCodec::TRAILER_LEN / 8);
        values.extend((0..1024).map(f64::from));
        let ptr = values.as_ptr() as *const u8;
        let expected = values.clone();
        let bytes = <PodCodec as Codec<Vec<f64>>>::encode_owned(values).expect("encode");
        assert_eq!(bytes.as_ptr(), ptr, "spare capacity: no copy");
        assert_eq!(bytes, encode(&expected), "same bytes as a borrowed encode");

        // Without spare capacity it still encodes (the vector grows first).
        let full = vec![1.5f32; 7];
        let bytes = <PodCodec as Codec<Vec<f32>>>::encode_owned(full.clone()).expect("encode");
        assert_eq!(decode_vec::<f32>(bytes).expect("decode"), full);
    }

    #[test]
    fn aligned_bytes_are_read_in_place() {
        let values: Vec<u64> = (0..4096).collect();
        let bytes = <PodCodec as Codec<Vec<u64>>>::encode_owned(values.clone()).expect("encode");
        let array = decode_array::<u64>(bytes.clone()).expect("decode");
        assert!(array.is_view());
        assert_eq!(array.as_ptr() as *const u8, bytes.as_ptr(), "no copy");
        assert_eq!(&array[..], &values[..]);
        // Encoding the view again hands over the same bytes.
        let again = <PodCodec as Codec<PodArray<u64>>>::encode(&array).expect("encode");
        assert_eq!(again.as_ptr(), bytes.as_ptr());
        let clone = array.clone();
        assert_eq!(clone.as_ptr(), array.as_ptr(), "clones share the bytes");
        assert_eq!(clone.into_vec(), values);
    }

    #[test]
    fn misaligned_bytes_are_copied_once_into_an_aligned_buffer() {
        let values: Vec<f64> = (0..100).map(|i| i as f64 * 1.25).collect();
        let bytes = misaligned(&encode(&values));
        assert_ne!(bytes.as_ptr() as usize % std::mem::align_of::<f64>(), 0);
        let array = decode_array::<f64>(bytes.clone()).expect("decode");
        assert!(!array.is_view(), "misaligned bytes cannot be viewed as f64");
        assert_eq!(&array[..], &values[..]);
        assert_eq!(decode_vec::<f64>(bytes).expect("vec"), values);
        // Bytes need no alignment.
        let raw: Vec<u8> = vec![1, 2, 3];
        let array = decode_array::<u8>(misaligned(&encode(&raw))).expect("u8");
        assert!(array.is_view());
        assert_eq!(&array[..], &raw[..]);
    }

    #[test]
    fn empty_arrays_round_trip() {
        let bytes = encode::<f64>(&[]);
        assert_eq!(bytes.len(), PodCodec::TRAILER_LEN);
        assert!(decode_vec::<f64>(bytes.clone()).expect("vec").is_empty());
        assert!(decode_array::<f64>(misaligned(&bytes))
            .expect("array")
            .is_empty());
        let owned = <PodCodec as Codec<Vec<u32>>>::encode_owned(Vec::new()).expect("owned");
        assert!(decode_array::<u32>(owned).expect("array").is_empty());
    }

    #[test]
    fn the_wrong_element_type_is_an_error() {
        let bytes = encode(&[1.0f64, 2.0]);
        assert_codec_error(decode_vec::<u64>(bytes.clone()), "f64");
        assert_codec_error(decode_vec::<f32>(bytes.clone()), "not f32");
        assert_codec_error(decode_array::<i64>(bytes.clone()), "elements of type f64");
        let err = decode_vec::<u64>(bytes).expect_err("u64");
        match err {
            Error::Codec { type_name, .. } => assert!(type_name.contains("u64"), "{type_name}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_lengths_and_foreign_bytes_are_errors() {
        let bytes = encode(&[1u32, 2, 3]);
        // Too short for a trailer.
        assert_codec_error(decode_vec::<u32>(bytes.slice(..5)), "shorter than");
        // Cut at the end: the trailer is no longer at the end.
        let cut = bytes.slice(..bytes.len() - 2);
        assert_codec_error(decode_vec::<u32>(cut), "no PodCodec trailer");
        // Cut at the front: the elements no longer match the count.
        assert_codec_error(decode_vec::<u32>(bytes.slice(2..)), "announces 3 elements");
        // An element too many or too few, trailer intact.
        let mut longer = vec![9u8; 4];
        longer.extend_from_slice(&bytes);
        assert_codec_error(
            decode_vec::<u32>(Bytes::from(longer)),
            "announces 3 elements",
        );
        let mut odd = vec![9u8; 3];
        odd.extend_from_slice(&bytes);
        assert_codec_error(
            decode_array::<u32>(Bytes::from(odd)),
            "announces 3 elements",
        );
        // A count that overflows.
        let mut huge = bytes.to_vec();
        let at = huge.len() - 8;
        huge[at..].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_codec_error(decode_vec::<u32>(Bytes::from(huge)), "announces");
        // Another version, the other byte order.
        let mut future = bytes.to_vec();
        let at = future.len() - PodCodec::TRAILER_LEN + 4;
        future[at] = 9;
        assert_codec_error(decode_vec::<u32>(Bytes::from(future)), "version 9");
        let mut foreign = bytes.to_vec();
        let at = foreign.len() - PodCodec::TRAILER_LEN + 7;
        foreign[at] = if NATIVE == LITTLE { BIG } else { LITTLE };
        assert_codec_error(decode_vec::<u32>(Bytes::from(foreign)), "host");
        // What another codec wrote.
        let bincode =
            <DefaultCodec as Codec<Vec<u32>>>::encode(&vec![1, 2, 3, 4, 5, 6]).expect("bincode");
        assert_codec_error(decode_vec::<u32>(bincode), "no PodCodec trailer");
    }

    #[test]
    fn a_store_with_pod_codec_puts_and_gets_arrays() {
        let store: Store<PodCodec> = Store::builder("pod-unit", LocalConnector::new())
            .with_cache_size(0)
            .with_codec::<PodCodec>()
            .build();
        let values: Vec<f64> = (0..10_000).map(|i| (i as f64).sqrt()).collect();
        let proxy = store.proxy_lazy(values.clone()).expect("proxy");
        let key = crate::Proxy::key(&proxy).clone();
        assert_eq!(*proxy, values);
        let raw = store.get_bytes(&key).expect("raw").expect("stored");
        let view = store
            .get::<PodArray<f64>>(&key)
            .expect("get")
            .expect("stored");
        assert!(view.is_view());
        assert_eq!(view.as_ptr() as *const u8, raw.as_ptr(), "read in place");
        assert_eq!(&view[..], &values[..]);
        assert!(store.get::<Vec<i64>>(&key).is_err(), "wrong element type");
    }

    #[test]
    fn serde_writes_the_numbers() {
        let array = PodArray::from(vec![1.5f32, -2.0]);
        let wire = bincode::serialize(&array).expect("serialize");
        assert_eq!(wire, bincode::serialize(&vec![1.5f32, -2.0]).expect("vec"));
        let back: PodArray<f32> = bincode::deserialize(&wire).expect("deserialize");
        assert_eq!(back, array);
        assert!(format!("{array:?}").contains("len: 2"));
    }

    proptest! {
        #[test]
        fn any_vector_round_trips(values in proptest::collection::vec(any::<u64>(), 0..300), shift in any::<bool>()) {
            // f64 from arbitrary bits (NaNs included), compared bit for bit.
            let floats: Vec<f64> = values.iter().map(|&b| f64::from_bits(b)).collect();
            let mut bytes = encode(&floats);
            if shift {
                bytes = misaligned(&bytes);
            }
            let back = decode_vec::<f64>(bytes.clone()).expect("vec");
            prop_assert_eq!(back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(), values.clone());
            let array = decode_array::<f64>(bytes).expect("array");
            prop_assert_eq!(array.iter().map(|f| f.to_bits()).collect::<Vec<_>>(), values);
        }

        #[test]
        fn any_bytes_decode_to_an_error_or_a_value_never_a_panic(data in proptest::collection::vec(any::<u8>(), 0..200), tail in any::<bool>()) {
            // Half of the cases end in a valid-looking trailer, so the deeper checks run.
            let mut data = data;
            if tail {
                let count = (data.len() / 4) as u64;
                data.extend_from_slice(&trailer::<u32>(count as usize));
            }
            let bytes = Bytes::from(data);
            let _ = decode_vec::<u32>(bytes.clone());
            let _ = decode_vec::<f64>(bytes.clone());
            let _ = decode_array::<u128>(bytes.clone());
            if let Ok(array) = decode_array::<u32>(bytes.clone()) {
                prop_assert_eq!(array.len() * 4 + TRAILER_LEN, bytes.len());
            }
        }

        #[test]
        fn truncated_encodings_are_errors(values in proptest::collection::vec(any::<i32>(), 1..100), cut in 1usize..64) {
            let bytes = encode(&values);
            let cut = cut.min(bytes.len());
            prop_assert!(decode_vec::<i32>(bytes.slice(..bytes.len() - cut)).is_err());
            prop_assert!(decode_vec::<i32>(bytes.slice(cut..)).is_err());
        }
    }
}
