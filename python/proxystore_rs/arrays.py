"""Numeric arrays in the layout Rust's ``proxy_core::PodCodec`` reads in place.

The layout (``PodCodec`` format version 1): the elements, in C order and the host's byte
order, then a 16-byte trailer::

    offset 0   4 bytes  b'PODA'
    offset 4   1 byte   format version (1)
    offset 5   1 byte   element type tag (see TAGS)
    offset 6   1 byte   element size in bytes
    offset 7   1 byte   byte order: 1 little-endian, 2 big-endian
    offset 8   8 bytes  element count, unsigned little-endian

A Rust dataflow reads such an object as ``PodArray<f64>`` (a view, no copy) or
``Vec<f64>``; a Python program reads what Rust stored with ``PodCodec`` as a read-only
numpy array over the fetched bytes (no copy). Arrays are one-dimensional in this layout:
an n-dimensional array is stored flattened in C order, and ``deserialize`` gives it back
1-D (``reshape`` it; the shape is the application's to carry).

``serialize``/``deserialize`` plug into ProxyStore::

    store = Store('arrays', ZmqConnector(), serializer=arrays.serialize,
                  deserializer=arrays.deserialize)

``put_array`` writes an array straight into the store (into shared memory on a ZeroMQ
peer) with one copy, and ``ArrayWriter`` lets a producer compute into that memory
directly, with no copy at all.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import numpy as np

MAGIC = b'PODA'
VERSION = 1
TRAILER = struct.Struct('<4sBBBBQ')
TRAILER_LEN = TRAILER.size
LITTLE = 1
BIG = 2
NATIVE_ORDER = LITTLE if sys.byteorder == 'little' else BIG

#: Element type tags, as ``proxy_core::PodElement`` numbers them (no 128-bit types here).
TAGS: dict[np.dtype, int] = {
    np.dtype(np.uint8): 1,
    np.dtype(np.uint16): 2,
    np.dtype(np.uint32): 3,
    np.dtype(np.uint64): 4,
    np.dtype(np.int8): 6,
    np.dtype(np.int16): 7,
    np.dtype(np.int32): 8,
    np.dtype(np.int64): 9,
    np.dtype(np.float32): 11,
    np.dtype(np.float64): 12,
}
DTYPES: dict[int, np.dtype] = {tag: dtype for dtype, tag in TAGS.items()}


class ArrayFormatError(ValueError):
    """Bytes that are not an array in the PodCodec layout (or not of the expected type)."""


def _native_dtype(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype).newbyteorder('=')
    if dtype not in TAGS:
        raise TypeError(
            f'{dtype} is not a PodCodec element type '
            f'(supported: {", ".join(str(d) for d in TAGS)})',
        )
    return dtype


def trailer(dtype: Any, count: int) -> bytes:
    """The 16-byte trailer for ``count`` elements of ``dtype``."""
    dtype = _native_dtype(dtype)
    return TRAILER.pack(MAGIC, VERSION, TAGS[dtype], dtype.itemsize, NATIVE_ORDER, count)


def _contiguous(array: Any) -> np.ndarray:
    array = np.asarray(array)
    dtype = _native_dtype(array.dtype)
    return np.ascontiguousarray(array, dtype=dtype)


def serialize(array: Any) -> bytes:
    """The PodCodec encoding of ``array`` (flattened in C order): one copy."""
    array = _contiguous(array)
    return b''.join((memoryview(array).cast('B'), trailer(array.dtype, array.size)))


def parse(data: Any, dtype: Any = None) -> tuple[np.dtype, int]:
    """Check the trailer of ``data``; return its element type and count.

    Raises ``ArrayFormatError`` for anything that is not a PodCodec array (of ``dtype``,
    when given): short or truncated data, another format, another version, another
    element type, the other byte order.
    """
    view = memoryview(data).cast('B')
    if view.nbytes < TRAILER_LEN:
        raise ArrayFormatError(
            f'{view.nbytes} bytes is shorter than the {TRAILER_LEN}-byte PodCodec trailer',
        )
    magic, version, tag, size, order, count = TRAILER.unpack(view[-TRAILER_LEN:])
    if magic != MAGIC:
        raise ArrayFormatError(
            'no PodCodec trailer at the end (stored by another serializer?)',
        )
    if version != VERSION:
        raise ArrayFormatError(
            f'PodCodec format version {version} (this package reads {VERSION})',
        )
    found = DTYPES.get(tag)
    if found is None or found.itemsize != size:
        raise ArrayFormatError(f'unknown element type tag {tag} ({size} bytes)')
    if dtype is not None and found != _native_dtype(dtype):
        raise ArrayFormatError(f'the object holds {found} elements, not {np.dtype(dtype)}')
    if order != NATIVE_ORDER:
        raise ArrayFormatError(
            'written on a host of the other byte order: PodCodec stores native order',
        )
    if count * size != view.nbytes - TRAILER_LEN:
        raise ArrayFormatError(
            f'the trailer announces {count} elements of {size} bytes, '
            f'but {view.nbytes - TRAILER_LEN} bytes precede it',
        )
    return found, count


def deserialize(data: Any, dtype: Any = None) -> np.ndarray:
    """A read-only 1-D array over the elements of ``data`` (no copy)."""
    found, count = parse(data, dtype)
    array = np.frombuffer(data, dtype=found, count=count)
    array.flags.writeable = False
    return array


def put_array(connector: Any, array: Any) -> Any:
    """Store ``array`` with ``connector`` (a proxystore_rs connector) in the PodCodec
    layout, writing its elements once, straight into the stored object; return the key."""
    array = _contiguous(array)
    buffer = connector.alloc(array.nbytes + TRAILER_LEN)
    with memoryview(buffer) as view:
        view[: array.nbytes] = memoryview(array).cast('B')
        view[array.nbytes :] = trailer(array.dtype, array.size)
    return connector.put_buffer(buffer)


def get_array(connector: Any, key: Any, dtype: Any = None) -> np.ndarray | None:
    """The array under ``key`` as a read-only view of the fetched bytes, or ``None``."""
    data = connector.get(key)
    return None if data is None else deserialize(data, dtype)


class ArrayWriter:
    """An array of ``count`` elements living in memory the connector will store, so a
    producer computes straight into the stored object (no copy at all)::

        writer = ArrayWriter(connector, 1_000_000, np.float64)
        np.multiply(x, 2.0, out=writer.array)
        key = writer.publish()

    ``publish`` drops ``writer.array``; any other reference to that array (or a view
    of it) must be gone by then, or it raises ``BufferError``: the stored object must
    not change after it is stored.
    """

    def __init__(self, connector: Any, count: int, dtype: Any) -> None:
        dtype = _native_dtype(dtype)
        nbytes = count * dtype.itemsize
        self._connector = connector
        self._buffer = connector.alloc(nbytes + TRAILER_LEN)
        with memoryview(self._buffer) as view:
            view[nbytes:] = trailer(dtype, count)
        self.array: np.ndarray | None = np.frombuffer(
            self._buffer,
            dtype=dtype,
            count=count,
        )

    @property
    def is_shared_memory(self) -> bool:
        """Whether the array lies in a peer's shared memory (same-host readers map it)."""
        return self._buffer.is_shared_memory

    def publish(self) -> Any:
        """Store the array; return its key."""
        self.array = None
        return self._connector.put_buffer(self._buffer)
