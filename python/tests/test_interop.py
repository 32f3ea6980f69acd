"""Python and Rust on one peer: arrays reduced by a Rust Timely dataflow (two processes)
and futures set on one side and resolved on the other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from proxystore.store import Store

from proxystore_rs import ZmqConnector
from proxystore_rs import ZmqKey
from proxystore_rs import arrays

TIMEOUT = 120


def test_a_future_made_in_rust_is_set_in_python(array_reduce: str) -> None:
    with ZmqConnector() as connector:
        waiter = subprocess.Popen(
            [array_reduce, 'future-wait'],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert waiter.stdout is not None
            line = waiter.stdout.readline()
            assert line.startswith('key '), line
            key = ZmqKey(line.split(' ', 1)[1].strip())
            assert not connector.exists(key)
            connector.set(key, arrays.serialize(np.array([1.0, 2.0, 3.5])))
            out, err = waiter.communicate(timeout=TIMEOUT)
        finally:
            waiter.kill()
        assert waiter.returncode == 0, err
        assert out.strip() == 'sum 6.5'


def test_a_proxystore_future_is_set_by_rust(array_reduce: str) -> None:
    with Store(
        'rs-interop-future',
        ZmqConnector(),
        serializer=arrays.serialize,
        deserializer=arrays.deserialize,
    ) as store:
        future = store.future(polling_timeout=TIMEOUT)
        key = future._factory.key
        assert not future.done()
        done = subprocess.run(
            [array_reduce, 'future-set', key.text],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert future.done()
        result = future.result()
        assert result.dtype == np.float32
        assert result.tolist() == [1.5, 2.5, 3.0]


def test_the_array_example_reduces_python_arrays_in_a_rust_dataflow(array_reduce: str) -> None:
    """python/examples/array_reduce.py: 8 arrays computed into shared memory, summed by a
    two-process Timely dataflow that reads each in place, the sum read back as an array."""
    example = Path(__file__).parent.parent / 'examples' / 'array_reduce.py'
    done = subprocess.run(
        [sys.executable, str(example), array_reduce],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 'every element is 28 (expected 28); 8 of 8 arrays were read in place' in done.stdout
