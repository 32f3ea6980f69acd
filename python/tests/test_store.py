"""ProxyStore's own Store, proxies and futures on these connectors, within a process and
across processes."""

from __future__ import annotations

import hashlib
import multiprocessing
from typing import Any

import numpy as np
import pytest
from proxystore.proxy import Proxy
from proxystore.proxy import extract
from proxystore.serialize import deserialize
from proxystore.store import Store
from proxystore.store.utils import get_key

from proxystore_rs import ZmqConnector
from proxystore_rs import arrays

SPAWN = multiprocessing.get_context('spawn')


def digest(data: Any) -> str:
    if isinstance(data, Proxy):
        data = extract(data)
    return hashlib.sha256(memoryview(data).cast('B')).hexdigest()


def name(connector: Any, what: str) -> str:
    # ProxyStore registers stores by name in each process: one name per connector.
    return f'{what}-{type(connector).__name__}-{id(connector)}'


def test_store_put_get_proxy_and_evict(connector: Any) -> None:
    with Store(name(connector, 'store'), connector, cache_size=0, populate_target=False) as store:
        key = store.put({'a': [1, 2, 3]})
        assert store.get(key) == {'a': [1, 2, 3]}
        proxy = store.proxy(list(range(100)), evict=True)
        assert isinstance(proxy, Proxy)
        assert sum(proxy) == 4950
        assert not store.exists(get_key(proxy))
        store.evict(key)
        assert store.get(key) is None


def test_store_future_resolves_in_the_same_process(connector: Any) -> None:
    with Store(name(connector, 'future'), connector) as store:
        future = store.future(polling_timeout=10)
        proxy = future.proxy()
        assert not future.done()
        future.set_result([4, 5])
        assert future.done()
        assert future.result() == [4, 5]
        assert proxy == [4, 5]


def _resolve_in_child(proxy: Any, out: Any) -> None:
    out.put(digest(proxy))


def _set_future_in_child(future: Any) -> None:
    future.set_result(np.arange(5, dtype=np.float64))


def _serve_from_child(out: Any, evict: Any, done: Any) -> None:
    with Store('rs-child', ZmqConnector(), register=True) as store:
        payload = np.arange(1 << 19, dtype=np.float64)  # 4 MiB
        proxy = store.proxy(payload)
        out.put((proxy, digest(payload)))
        evict.wait(60)
        store.evict(get_key(proxy))
        store.put(np.zeros(1 << 19))  # may take the evicted object's memory
        out.put('evicted')
        done.wait(60)


def test_a_proxy_resolves_in_another_process() -> None:
    payload = np.random.default_rng(1).integers(0, 255, 1 << 20, dtype=np.uint8).tobytes()
    with Store('rs-xproc', ZmqConnector(), register=True) as store:
        proxy = store.proxy(payload)
        out = SPAWN.Queue()
        child = SPAWN.Process(target=_resolve_in_child, args=(proxy, out))
        child.start()
        try:
            assert out.get(timeout=60) == digest(payload)
        finally:
            child.join(60)
        assert child.exitcode == 0


def test_a_future_set_in_another_process_resolves_here() -> None:
    with Store(
        'rs-xfuture',
        ZmqConnector(),
        serializer=arrays.serialize,
        deserializer=arrays.deserialize,
        register=True,
    ) as store:
        future = store.future(polling_timeout=60)
        child = SPAWN.Process(target=_set_future_in_child, args=(future,))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        np.testing.assert_array_equal(future.result(), np.arange(5, dtype=np.float64))


def test_an_object_of_another_process_is_read_from_its_shared_memory() -> None:
    out, evict, done = SPAWN.Queue(), SPAWN.Event(), SPAWN.Event()
    child = SPAWN.Process(target=_serve_from_child, args=(out, evict, done))
    child.start()
    try:
        proxy, expected = out.get(timeout=60)
        reader = ZmqConnector(client_only=True)
        data = reader.get(get_key(proxy))
        assert data is not None
        assert reader.mapped_reads == 1, 'a same-host get maps the owner memory'
        np.testing.assert_array_equal(deserialize(data), np.arange(1 << 19, dtype=np.float64))
        assert digest(proxy) == expected
        before = digest(data)
        # The owner evicts the object and stores another while this view is alive: the
        # view keeps the bytes it was given.
        evict.set()
        assert out.get(timeout=60) == 'evicted'
        assert digest(data) == before
        assert reader.get(get_key(proxy)) is None
    finally:
        evict.set()
        done.set()
        child.join(60)
    assert child.exitcode == 0


@pytest.mark.parametrize('shared_memory', [True, False])
def test_a_proxy_resolves_in_another_process_with_and_without_shared_memory(
    shared_memory: bool,
) -> None:
    connector = ZmqConnector(shared_memory=shared_memory)
    with Store('rs-xproc-tcp', connector, register=True) as store:
        proxy = store.proxy(b'x' * 300_000)
        out = SPAWN.Queue()
        child = SPAWN.Process(target=_resolve_in_child, args=(proxy, out))
        child.start()
        try:
            assert out.get(timeout=60) == digest(b'x' * 300_000)
        finally:
            child.join(60)
        assert child.exitcode == 0


def test_the_lighter_deserializer_reads_what_proxystore_writes(connector: Any) -> None:
    from proxystore_rs.serialize import deserialize as light

    with Store(
        name(connector, 'light'),
        connector,
        deserializer=light,
        cache_size=0,
    ) as store:
        for value in (b'raw bytes' * 100, 'text \u00e9', [1, 'two'], np.arange(3)):
            got = store.get(store.put(value))
            assert type(got) is type(value)
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(got, value)
            else:
                assert got == value
