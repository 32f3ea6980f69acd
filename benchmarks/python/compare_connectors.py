"""ProxyStore 1.1.0's own ZeroMQ connector against proxystore_rs's, side by side in one run.

Every get is a transfer from another process, and every byte it fetched is read (a sum
over the buffer as 64-bit words, the same function on both sides):

- ``proxystore-zmq``: ``proxystore_ex.connectors.dim.zmq.ZeroMQConnector`` (ProxyStore
  1.1's ZeroMQ connector, moved to proxystore-ex 0.1.5): the objects live in its server
  process, this process gets them over TCP on loopback.
- ``rs-tcp``: ``proxystore_rs.ZmqConnector(shared_memory=False)`` in a child process holds
  the objects; this process gets them over TCP on loopback.
- ``rs-shm``: the same with shared memory on (the default): same-host gets map the
  owner's memory.

Usage (a release build of the package in an environment with proxystore==1.1.0,
proxystore-ex==0.1.5 and numpy)::

    maturin develop --release --manifest-path python/Cargo.toml
    python benchmarks/python/compare_connectors.py [--sizes 1KiB,1MiB,64MiB] [--seconds 2]

Prints one row per mode and size: median get time, throughput, and the ratio to
``proxystore-zmq`` measured in the same run. With ``--store``, every get goes through
ProxyStore's ``Store.get`` (no cache; ProxyStore's own serialization of ``bytes``, whose
deserialization copies the object) instead of ``Connector.get``, and a fourth mode,
``rs-tcp-light``, is ``rs-tcp`` with ``proxystore_rs.serialize.deserialize`` as the store's
deserializer (one copy fewer).
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import time
from typing import Any

import numpy as np

SPAWN = multiprocessing.get_context('spawn')
UNITS = {'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30}


def parse_size(text: str) -> int:
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * factor
    return int(text)


def payload(size: int) -> bytes:
    return np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()


def checksum(data: Any) -> int:
    """Reads every byte: a sum of the 64-bit words, then the tail bytes."""
    view = memoryview(data).cast('B')
    words = len(view) // 8
    total = int(np.frombuffer(view, dtype=np.uint64, count=words).sum(dtype=np.uint64))
    return total + sum(view[words * 8 :])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def time_gets(get: Any, key: Any, expected: int, seconds: float, min_reps: int) -> list[float]:
    """Per-get seconds, each get's bytes checksummed, for `seconds` (at least `min_reps`)."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        data = get(key)
        value = checksum(data)
        times.append(time.perf_counter() - t0)
        if value != expected:
            raise AssertionError(f'checksum {value} != {expected}')
        del data
    return times


def _put(connector: Any, data: bytes, store: bool) -> Any:
    if not store:
        return connector.put(data)
    from proxystore.serialize import serialize

    return connector.put(serialize(data))


def _getter(connector: Any, store: bool, light: bool = False) -> Any:
    if not store:
        return connector.get
    from proxystore.serialize import deserialize
    from proxystore.store import Store

    if light:
        from proxystore_rs.serialize import deserialize
    return Store(
        f'bench-{id(connector)}',
        connector,
        cache_size=0,
        deserializer=deserialize,
    ).get


def _rust_owner(
    shared_memory: bool,
    sizes: list[int],
    store: bool,
    out: Any,
    done: Any,
) -> None:
    from proxystore_rs import ZmqConnector

    owner = ZmqConnector(shared_memory=shared_memory)
    keys = [_put(owner, payload(size), store) for size in sizes]
    out.put(keys)
    done.wait(3600)
    owner.close()


def bench_rust(
    shared_memory: bool,
    sizes: list[int],
    seconds: float,
    store: bool,
    light: bool = False,
) -> dict[int, list[float]]:
    from proxystore_rs import ZmqConnector

    out, done = SPAWN.Queue(), SPAWN.Event()
    owner = SPAWN.Process(target=_rust_owner, args=(shared_memory, sizes, store, out, done))
    owner.start()
    try:
        keys = out.get(timeout=120)
        reader = ZmqConnector(client_only=True, shared_memory=shared_memory)
        get = _getter(reader, store, light)
        results = {}
        for size, key in zip(sizes, keys):
            expected = checksum(payload(size))
            results[size] = time_gets(get, key, expected, seconds, 5)
        if shared_memory and reader.mapped_reads == 0:
            raise AssertionError('rs-shm read nothing from shared memory')
        if not shared_memory and reader.mapped_reads != 0:
            raise AssertionError('rs-tcp read from shared memory')
        return results
    finally:
        done.set()
        owner.join(60)


def bench_proxystore(sizes: list[int], seconds: float, store: bool) -> dict[int, list[float]]:
    from proxystore_ex.connectors.dim.zmq import ZeroMQConnector

    connector = ZeroMQConnector(port=free_port(), timeout=30)
    get = _getter(connector, store)
    try:
        results = {}
        for size in sizes:
            data = payload(size)
            key = _put(connector, data, store)
            results[size] = time_gets(get, key, checksum(data), seconds, 5)
            connector.evict(key)
        return results
    finally:
        connector.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='1KiB,1MiB,64MiB')
    parser.add_argument('--seconds', type=float, default=2.0, help='per mode and size')
    parser.add_argument('--store', action='store_true', help="through ProxyStore's Store.get")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(',')]

    runs = {
        'proxystore-zmq': bench_proxystore(sizes, args.seconds, args.store),
        'rs-tcp': bench_rust(False, sizes, args.seconds, args.store),
        'rs-shm': bench_rust(True, sizes, args.seconds, args.store),
    }
    if args.store:
        runs['rs-tcp-light'] = bench_rust(False, sizes, args.seconds, True, light=True)
    print(f'{"size":>8} {"mode":>15} {"gets":>6} {"median":>12} {"MB/s":>9} {"vs proxystore":>14}')
    for size in sizes:
        base = statistics.median(runs['proxystore-zmq'][size])
        for mode, results in runs.items():
            median = statistics.median(results[size])
            label = next(
                (f'{size // f}{u}' for u, f in reversed(UNITS.items()) if size % f == 0),
                str(size),
            )
            print(
                f'{label:>8} {mode:>15} {len(results[size]):>6} '
                f'{median * 1e6:>10.1f}us {size / median / 1e6:>9.1f} {base / median:>13.2f}x',
            )


if __name__ == '__main__':
    main()
