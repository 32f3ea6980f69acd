//! `WriteBuffer`: memory a producer writes an object into before it is stored, so that the
//! object is written once, where it will be read (write-in-place puts).

use std::fmt;
use std::ops::{Deref, DerefMut};

use std::marker::PhantomData;

use bytes::Bytes;

use crate::codec::pod_trailer;
use crate::connectors::Reservation;
use crate::error::{Error, Result};
use crate::{PodCodec, PodElement};

/// A buffer of a fixed length to write one object into, then store without another copy.
///
/// Ask a connector or a store for one ([`Connector::alloc`](crate::Connector::alloc),
/// [`Store::alloc`](crate::Store::alloc)), fill it through `&mut [u8]`, and hand it back
/// ([`Connector::put_buffer`](crate::Connector::put_buffer),
/// [`Store::put_buffer`](crate::Store::put_buffer), [`Store::proxy_buffer`](crate::Store::proxy_buffer)).
///
/// Where the memory is depends on the connector:
///
/// - a [`ZmqConnector`](crate::ZmqConnector) with same-host shared memory hands out a slot of
///   its pre-faulted arena for objects of at least its shared-memory threshold (64 KiB by
///   default): the producer's writes are the object's only copy, and a reader on the same
///   host maps exactly those bytes (no copy into shared memory at put or at the first read,
///   no page faults on the hot path). The slot counts against the arena's capacity from the
///   moment it is handed out; dropped without being stored, it goes back to the arena;
/// - every other connector, and small objects, get an ordinary zeroed heap buffer, and
///   storing it is an ordinary put (no copy either: the buffer becomes the `Bytes`).
///
/// [`is_shared_memory`](Self::is_shared_memory) tells which. A shared-memory slot may start
/// with an earlier object's bytes of this process: write every byte you mean to store. A
/// buffer handed to another connector than the one that made it is copied once and stored
/// there (never lost).
///
/// # Examples
/// ```
/// use bytes::Bytes;
/// use proxy_core::{Proxy, Store, ZmqOptions};
///
/// let connector = ZmqOptions::default().build()?;
/// let store = Store::new("write-buffer-doc", connector);
/// let mut buffer = store.alloc(1 << 20)?;          // 1 MiB to write into
/// for (i, byte) in buffer.iter_mut().enumerate() {
///     *byte = (i % 251) as u8;
/// }
/// let proxy: Proxy<Bytes> = store.proxy_buffer(buffer)?;
/// assert_eq!(proxy.len(), 1 << 20);
/// assert_eq!(proxy[1000], (1000 % 251) as u8);
/// # Ok::<(), proxy_core::Error>(())
/// ```
pub struct WriteBuffer {
    place: Place,
}

enum Place {
    Heap(Vec<u8>),
    Shared(Reservation),
}

impl WriteBuffer {
    /// A zeroed heap buffer of `len` bytes (what connectors without shared memory hand out).
    pub fn heap(len: usize) -> WriteBuffer {
        WriteBuffer {
            place: Place::Heap(vec![0; len]),
        }
    }

    /// A buffer over a reserved shared-memory slot.
    pub(crate) fn shared(reservation: Reservation) -> WriteBuffer {
        WriteBuffer {
            place: Place::Shared(reservation),
        }
    }

    /// Its length in bytes (fixed when it was made).
    pub fn len(&self) -> usize {
        match &self.place {
            Place::Heap(data) => data.len(),
            Place::Shared(reservation) => reservation.len(),
        }
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it is a slot of a peer's shared memory (written where same-host readers map
    /// it) rather than heap memory.
    pub fn is_shared_memory(&self) -> bool {
        matches!(self.place, Place::Shared(_))
    }

    /// The bytes as an ordinary `Bytes`: the heap buffer itself, or a copy of a shared
    /// memory slot (which then goes back to its arena). Connectors that cannot store a
    /// buffer in place store this.
    pub fn into_bytes(self) -> Bytes {
        match self.place {
            Place::Heap(data) => Bytes::from(data),
            Place::Shared(reservation) => Bytes::copy_from_slice(reservation.as_slice()),
        }
    }

    /// The shared-memory slot, or the buffer back if it is heap memory.
    pub(crate) fn into_reservation(self) -> Result<Reservation, WriteBuffer> {
        match self.place {
            Place::Shared(reservation) => Ok(reservation),
            heap @ Place::Heap(_) => Err(WriteBuffer { place: heap }),
        }
    }
}

impl Deref for WriteBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.place {
            Place::Heap(data) => data,
            Place::Shared(reservation) => reservation.as_slice(),
        }
    }
}

impl DerefMut for WriteBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.place {
            Place::Heap(data) => data,
            Place::Shared(reservation) => reservation.as_mut_slice(),
        }
    }
}

impl AsRef<[u8]> for WriteBuffer {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for WriteBuffer {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl fmt::Debug for WriteBuffer {
    /// Its length and where it is, never its bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBuffer")
            .field("len", &self.len())
            .field("shared_memory", &self.is_shared_memory())
            .finish()
    }
}

/// A [`WriteBuffer`] laid out as [`PodCodec`] stores an array of `T`: `count` elements to
/// write in place through `&mut [T]`, then the codec's trailer, written by
/// [`into_write_buffer`](Self::into_write_buffer). Made by
/// [`Store::alloc_pod`](crate::Store::alloc_pod).
///
/// Read back as [`PodArray<T>`](crate::PodArray) (a view of the stored bytes, no copy) or
/// `Vec<T>` with [`PodCodec`].
///
/// # Examples
/// ```
/// use proxy_core::{PodArray, PodCodec, Proxy, Store, ZmqOptions};
///
/// let store: Store<PodCodec> = Store::builder("pod-buffer-doc", ZmqOptions::default().build()?)
///     .with_codec::<PodCodec>()
///     .build();
/// let mut samples = store.alloc_pod::<f64>(100_000)?; // 800 KB, in shared memory on Linux
/// for (i, x) in samples.iter_mut().enumerate() {
///     *x = i as f64 * 0.5;
/// }
/// let proxy: Proxy<PodArray<f64>, PodCodec> = store.proxy_buffer(samples.into_write_buffer())?;
/// assert_eq!(proxy.len(), 100_000);
/// assert_eq!(proxy[3], 1.5);
/// # Ok::<(), proxy_core::Error>(())
/// ```
pub struct PodBuffer<T: PodElement> {
    buffer: WriteBuffer,
    count: usize,
    element: PhantomData<T>,
}

impl<T: PodElement> PodBuffer<T> {
    /// Lays `count` elements of `T` (and the trailer) out in `buffer`, which must be exactly
    /// their length and aligned for `T` (shared memory slots are page aligned; heap buffers
    /// come from the allocator).
    pub(crate) fn new(buffer: WriteBuffer, count: usize) -> Result<PodBuffer<T>> {
        let mut out = PodBuffer {
            buffer,
            count,
            element: PhantomData,
        };
        let expected = Self::encoded_len(count);
        if expected != Some(out.buffer.len()) {
            return Err(pod_error::<T>(format!(
                "a buffer of {} bytes for {count} elements",
                out.buffer.len()
            )));
        }
        if bytemuck::try_cast_slice_mut::<u8, T>(out.elements_mut()).is_err() {
            return Err(pod_error::<T>(
                "a buffer that is not aligned for its elements".to_string(),
            ));
        }
        Ok(out)
    }

    /// The bytes `count` elements of `T` take with [`PodCodec`]'s trailer.
    pub(crate) fn encoded_len(count: usize) -> Option<usize> {
        count
            .checked_mul(std::mem::size_of::<T>())?
            .checked_add(PodCodec::TRAILER_LEN)
    }

    fn elements_mut(&mut self) -> &mut [u8] {
        let end = self.buffer.len() - PodCodec::TRAILER_LEN;
        &mut self.buffer[..end]
    }

    /// How many elements it holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether it is a slot of a peer's shared memory (see [`WriteBuffer::is_shared_memory`]).
    pub fn is_shared_memory(&self) -> bool {
        self.buffer.is_shared_memory()
    }

    /// Writes [`PodCodec`]'s trailer after the elements and returns the buffer, ready for
    /// [`Store::put_buffer`](crate::Store::put_buffer) or
    /// [`Store::proxy_buffer`](crate::Store::proxy_buffer).
    pub fn into_write_buffer(mut self) -> WriteBuffer {
        let trailer = pod_trailer::<T>(self.count);
        let at = self.buffer.len() - PodCodec::TRAILER_LEN;
        self.buffer[at..].copy_from_slice(&trailer);
        self.buffer
    }
}

fn pod_error<T>(what: String) -> Error {
    Error::Codec {
        action: "encode",
        type_name: std::any::type_name::<T>(),
        message: format!("PodBuffer: {what}"),
    }
}

impl<T: PodElement> Deref for PodBuffer<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        let end = self.buffer.len() - PodCodec::TRAILER_LEN;
        // Checked in `new`: the length is a multiple of the element's and the start aligned.
        bytemuck::try_cast_slice(&self.buffer[..end]).unwrap_or_default()
    }
}

impl<T: PodElement> DerefMut for PodBuffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        bytemuck::try_cast_slice_mut(self.elements_mut()).unwrap_or_default()
    }
}

impl<T: PodElement> fmt::Debug for PodBuffer<T> {
    /// Its element type, count and where it is, never its values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodBuffer")
            .field("element", &std::any::type_name::<T>())
            .field("len", &self.count)
            .field("shared_memory", &self.is_shared_memory())
            .finish()
    }
}
