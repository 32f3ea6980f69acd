"""numpy arrays in PodCodec's layout: round trips, ProxyStore's serializer hooks, and
bytes that are not such an array."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from proxystore.store import Store

from proxystore_rs import arrays

DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32,
          np.int64, np.float32, np.float64]


@pytest.mark.parametrize('dtype', DTYPES)
def test_every_element_type_round_trips(dtype: Any) -> None:
    array = (np.arange(37) % 100).astype(dtype)
    data = arrays.serialize(array)
    assert len(data) == array.nbytes + arrays.TRAILER_LEN
    back = arrays.deserialize(data)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)
    assert not back.flags.writeable


def test_the_trailer_is_the_one_rust_documents() -> None:
    data = arrays.serialize(np.array([1.0, 2.0], dtype=np.float64))
    assert data[:16] == struct.pack('<2d', 1.0, 2.0)
    assert data[16:] == b'PODA' + bytes([1, 12, 8, 1]) + (2).to_bytes(8, 'little')


def test_arrays_are_stored_flat_in_c_order_and_other_byte_orders_are_converted() -> None:
    grid = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(arrays.deserialize(arrays.serialize(grid.T)), grid.T.ravel())
    swapped = np.arange(4, dtype='>f8' if np.little_endian else '<f8')
    back = arrays.deserialize(arrays.serialize(swapped))
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, np.arange(4.0))


def test_a_read_is_a_view_of_the_fetched_bytes(zmq_connector: Any) -> None:
    key = arrays.put_array(zmq_connector, np.arange(1000, dtype=np.float64))
    view = zmq_connector.get(key)
    array = arrays.deserialize(view)
    assert np.shares_memory(array, np.frombuffer(view, dtype=np.uint8))


def test_proxystore_stores_arrays_with_these_serializers(connector: Any) -> None:
    with Store(
        f'rs-arrays-{id(connector)}',
        connector,
        serializer=arrays.serialize,
        deserializer=arrays.deserialize,
    ) as store:
        proxy = store.proxy(np.linspace(0, 1, 11))
        assert float(np.sum(proxy)) == pytest.approx(5.5)


def test_unsupported_element_types_are_refused() -> None:
    for bad in (np.array([1 + 2j]), np.array(['a']), np.array([True])):
        with pytest.raises(TypeError):
            arrays.serialize(bad)


def _with(data: bytes, offset: int, value: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) - 16 + offset : len(out) - 16 + offset + len(value)] = value
    return bytes(out)


def test_bytes_that_are_not_such_an_array_are_errors() -> None:
    good = arrays.serialize(np.arange(4, dtype=np.float64))
    other_order = bytes([arrays.BIG if arrays.NATIVE_ORDER == arrays.LITTLE else arrays.LITTLE])
    cases = {
        'short': good[:10],
        'magic': _with(good, 0, b'XXXX'),
        'version': _with(good, 4, b'\x02'),
        'tag': _with(good, 5, b'\x63'),
        'size': _with(good, 6, b'\x04'),
        'order': _with(good, 7, other_order),
        'count': _with(good, 8, (5).to_bytes(8, 'little')),
        'huge count': _with(good, 8, (2**63).to_bytes(8, 'little')),
        'truncated': good[:8] + good[-16:],
    }
    for name, data in cases.items():
        with pytest.raises(arrays.ArrayFormatError):
            arrays.deserialize(data)
            pytest.fail(f'{name} was accepted')
    with pytest.raises(arrays.ArrayFormatError):
        arrays.deserialize(good, np.float32)
    with pytest.raises(arrays.ArrayFormatError):
        arrays.deserialize(b'BS\nnot an array at all!')
