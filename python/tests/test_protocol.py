"""ProxyStore 1.1's connector conformance checks (its tests/connectors/connector_test.py,
restated for these connectors), and the protocol's edges."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from proxystore.connectors.protocols import Connector
from proxystore.connectors.protocols import DeferrableConnector

import proxystore_rs
from proxystore_rs import ConfigError
from proxystore_rs import KeyExistsError
from proxystore_rs import ZmqConnector


def test_connectors_satisfy_both_protocols(connector: Any) -> None:
    assert isinstance(connector, Connector)
    assert isinstance(connector, DeferrableConnector)
    assert isinstance(repr(connector), str)


def test_put_get_exists_evict(connector: Any) -> None:
    value = b'a value'
    key = connector.put(value)
    assert connector.get(key) == value
    assert connector.exists(key)
    connector.evict(key)
    assert not connector.exists(key)
    assert connector.get(key) is None
    connector.evict(key)  # a missing key is not an error


def test_batches_keep_their_order(connector: Any) -> None:
    values = [b'first', b'', b'third' * 1000]
    keys = connector.put_batch(values)
    assert len(set(keys)) == 3
    assert connector.get_batch(keys) == values
    assert all(connector.exists(k) for k in keys)
    connector.evict(keys[1])
    assert connector.get_batch(keys) == [values[0], None, values[2]]
    for key in keys:
        connector.evict(key)
    assert connector.get_batch(keys) == [None, None, None]


def test_config_rebuilds_a_connector_of_the_same_type_that_reads_its_objects(
    connector: Any,
) -> None:
    key = connector.put(b'shared')
    config = connector.config()
    rebuilt = type(connector).from_config(pickle.loads(pickle.dumps(config)))
    assert isinstance(rebuilt, Connector)
    assert type(rebuilt) is type(connector)
    assert rebuilt.get(key) == b'shared'


def test_deferred_keys_are_empty_until_set_and_a_repeated_set_is_harmless(
    connector: Any,
) -> None:
    key = connector.new_key(b'ignored')
    assert not connector.exists(key)
    assert connector.get(key) is None
    connector.set(key, b'value')
    connector.set(key, b'value')
    assert connector.get(key) == b'value'


def test_setting_other_bytes_on_a_set_key_fails_and_keeps_the_first(connector: Any) -> None:
    key = connector.new_key()
    connector.set(key, b'first')
    with pytest.raises(KeyExistsError) as raised:
        connector.set(key, b'second')
    assert raised.value.kind == 'AlreadyExists'
    assert isinstance(raised.value, ValueError)
    assert connector.get(key) == b'first'


def test_keys_are_hashable_picklable_named_tuples(connector: Any) -> None:
    key = connector.put(b'x')
    assert pickle.loads(pickle.dumps(key)) == key
    assert {key: 1}[type(key)(key.text)] == 1
    assert key._fields == ('text',)


def test_every_buffer_kind_is_accepted(connector: Any) -> None:
    import numpy as np

    array = np.arange(10, dtype=np.float64)
    for obj in (
        bytearray(b'abc'),
        memoryview(b'abcdef')[1:4],
        array,
        array[::2],  # not contiguous: copied
        array.reshape(2, 5),
    ):
        key = connector.put(obj)
        expected = bytes(np.ascontiguousarray(obj)) if isinstance(obj, np.ndarray) else bytes(obj)
        assert connector.get(key) == expected


def test_a_malformed_key_is_a_config_error(connector: Any) -> None:
    with pytest.raises(ConfigError):
        connector.get(type(connector.put(b'x'))('not a key'))


def test_a_key_of_another_connector_kind_is_refused(
    zmq_connector: Any,
    file_connector: Any,
) -> None:
    key = file_connector.put(b'x')
    with pytest.raises(ConfigError):
        zmq_connector.get(proxystore_rs.ZmqKey(key.text))


def test_unknown_and_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        ZmqConnector(timeout=-1.0)
    with pytest.raises(ConfigError):
        ZmqConnector(secret=b'short')
    with pytest.raises(TypeError):
        ZmqConnector(no_such_option=1)  # type: ignore[call-arg]


def test_close_is_idempotent_and_a_closed_connector_refuses(tmp_path: Any) -> None:
    connector = ZmqConnector()
    key = connector.put(b'x')
    connector.close()
    connector.close()
    with pytest.raises(proxystore_rs.ClosedError):
        connector.put(b'y')
    del key


def test_file_connector_close_clears_its_directory(tmp_path: Any) -> None:
    store_dir = tmp_path / 'files'
    connector = proxystore_rs.FileConnector(str(store_dir), clear=False)
    connector.put(b'x')
    connector.close(clear=True)
    assert not store_dir.exists()


def test_the_package_imports_without_numpy_or_proxystore() -> None:
    import subprocess
    import sys

    code = (
        "import sys, proxystore_rs; "
        "assert 'numpy' not in sys.modules and 'proxystore' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('numpy', 'proxystore.')))"
    )
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
