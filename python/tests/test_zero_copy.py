"""What is and is not copied between Python and the Rust connectors."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from proxystore_rs import Buffer
from proxystore_rs import ZmqConnector
from proxystore_rs import arrays


def test_a_get_is_a_read_only_view_of_the_fetched_bytes(connector: Any) -> None:
    key = connector.put(b'abc' * 1000)
    view = connector.get(key)
    assert isinstance(view, memoryview)
    assert isinstance(view.obj, Buffer)
    assert view.readonly
    with pytest.raises(TypeError):
        view[0] = 1  # type: ignore[index]
    assert bytes(view) == b'abc' * 1000


def test_bytes_are_stored_without_a_copy(zmq_connector: ZmqConnector) -> None:
    payload = bytes(1 << 20)
    before = sys.getrefcount(payload)
    key = zmq_connector.put(payload)
    # The peer holds the very bytes object: one more reference, no second buffer.
    assert sys.getrefcount(payload) == before + 1
    zmq_connector.evict(key)
    assert sys.getrefcount(payload) == before


def test_mutable_buffers_are_copied_so_stored_objects_never_change(
    zmq_connector: ZmqConnector,
) -> None:
    data = bytearray(b'before')
    key = zmq_connector.put(data)
    data[:] = b'AFTER!'
    assert zmq_connector.get(key) == b'before'


def test_a_fetched_buffer_is_stored_again_without_a_copy(zmq_connector: ZmqConnector) -> None:
    key = zmq_connector.put(b'y' * 4096)
    view = zmq_connector.get(key)
    again = zmq_connector.put(view)
    assert zmq_connector.get(again) == b'y' * 4096


def test_a_write_buffer_cannot_be_stored_while_a_view_of_it_lives(
    zmq_connector: ZmqConnector,
) -> None:
    buffer = zmq_connector.alloc(16)
    view = memoryview(buffer)
    view[:] = b'0123456789abcdef'
    with pytest.raises(BufferError):
        zmq_connector.put_buffer(buffer)
    view.release()
    key = zmq_connector.put_buffer(buffer)
    assert zmq_connector.get(key) == b'0123456789abcdef'
    with pytest.raises(BufferError):
        memoryview(buffer)
    with pytest.raises(BufferError):
        zmq_connector.put_buffer(buffer)


def test_an_array_writer_computes_straight_into_shared_memory(
    zmq_connector: ZmqConnector,
) -> None:
    writer = arrays.ArrayWriter(zmq_connector, 1 << 18, np.float64)
    assert writer.is_shared_memory
    assert writer.array is not None
    np.multiply(np.arange(1 << 18, dtype=np.float64), 2.0, out=writer.array)
    key = writer.publish()
    got = arrays.get_array(zmq_connector, key, np.float64)
    assert got is not None
    np.testing.assert_array_equal(got, np.arange(1 << 18) * 2.0)


def test_an_array_writer_refuses_to_publish_while_its_array_is_referenced(
    zmq_connector: ZmqConnector,
) -> None:
    writer = arrays.ArrayWriter(zmq_connector, 8, np.int32)
    kept = writer.array
    with pytest.raises(BufferError):
        writer.publish()
    del kept
    key = writer.publish()
    assert arrays.get_array(zmq_connector, key).tolist() == [0] * 8


def test_room_made_beforehand_is_ready_for_buffers_written_in_place(
    zmq_connector: ZmqConnector, zmq_tcp_connector: ZmqConnector
) -> None:
    assert zmq_connector.prewarm_shared_memory(1 << 20, 4) == 4
    keys = []
    for seed in range(4):
        buffer = zmq_connector.alloc(1 << 20)
        assert buffer.is_shared_memory
        with memoryview(buffer) as view:
            view[:] = bytes([seed]) * (1 << 20)
        keys.append(zmq_connector.put_buffer(buffer))
    for seed, key in enumerate(keys):
        assert zmq_connector.get(key)[:4] == bytes([seed]) * 4
        zmq_connector.evict(key)
    assert zmq_connector.prewarm_shared_memory(16, 4) == 0, 'below the threshold'
    assert zmq_tcp_connector.prewarm_shared_memory(1 << 20, 4) == 0, 'shared memory off'


def test_an_impossible_write_buffer_size_is_an_error_not_a_crash(connector: Any) -> None:
    with pytest.raises(MemoryError):
        connector.alloc(2**62)
    with pytest.raises(OverflowError):
        connector.alloc(2**64)
    with pytest.raises(OverflowError):
        connector.alloc(-1)


def test_a_waiting_call_lets_other_threads_run() -> None:
    import socket
    import threading
    import time

    from proxystore_rs import PeerTimeoutError
    from proxystore_rs import ZmqKey

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    key = ZmqKey(f'zmq:{"ab" * 16}@tcp://127.0.0.1:{port}#{"12" * 8}')
    connector = ZmqConnector(timeout=1.0, client_only=True)
    done = threading.Event()

    def wait() -> None:
        with pytest.raises(PeerTimeoutError):
            connector.get(key)
        done.set()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.1)
    # Had the get kept the interpreter lock, this thread would run again only after the
    # one-second timeout, and find it done.
    assert not done.is_set()
    thread.join(10)
    assert done.is_set()


def test_threads_share_a_connector(zmq_connector: ZmqConnector) -> None:
    # 8 threads each put, get and evict 50 objects through one connector.
    from concurrent.futures import ThreadPoolExecutor

    def work(n: int) -> bool:
        for i in range(50):
            payload = f'{n}-{i}'.encode() * 100
            key = zmq_connector.put(payload)
            if zmq_connector.get(key) != payload:
                return False
            zmq_connector.evict(key)
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(8)))
