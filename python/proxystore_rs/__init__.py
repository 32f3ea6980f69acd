"""proxystore_rs: the Rust connectors of proxystore-rs for ProxyStore programs.

``ZmqConnector`` (a peer-to-peer ZeroMQ store with same-host shared memory) and
``FileConnector`` satisfy ProxyStore 1.1's ``Connector`` and ``DeferrableConnector``
protocols::

    from proxystore.store import Store
    from proxystore_rs import ZmqConnector

    with Store('demo', ZmqConnector()) as store:
        proxy = store.proxy([1, 2, 3])

``proxystore_rs.arrays`` (needs numpy) stores numpy arrays in the layout Rust's
``PodCodec`` reads in place, so Python producers and Rust dataflows exchange arrays without
copies; ``proxystore_rs.serialize`` (needs ProxyStore) has a deserializer for ProxyStore's
format that copies less. Neither is imported with the package: import them by name.
"""

from __future__ import annotations

from proxystore_rs._native import Buffer
from proxystore_rs._native import WriteBuf
from proxystore_rs.connectors import FileConnector
from proxystore_rs.connectors import FileKey
from proxystore_rs.connectors import ZmqConnector
from proxystore_rs.connectors import ZmqKey
from proxystore_rs.errors import ClosedError
from proxystore_rs.errors import CodecError
from proxystore_rs.errors import ConfigError
from proxystore_rs.errors import KeyExistsError
from proxystore_rs.errors import ObjectNotFoundError
from proxystore_rs.errors import PeerTimeoutError
from proxystore_rs.errors import PeerUnreachableError
from proxystore_rs.errors import ProtocolError
from proxystore_rs.errors import ProxyStoreRsError
from proxystore_rs.errors import RefusedError
from proxystore_rs.errors import StorageIOError

__all__ = [
    'Buffer',
    'ClosedError',
    'CodecError',
    'ConfigError',
    'FileConnector',
    'FileKey',
    'KeyExistsError',
    'ObjectNotFoundError',
    'PeerTimeoutError',
    'PeerUnreachableError',
    'ProtocolError',
    'ProxyStoreRsError',
    'RefusedError',
    'StorageIOError',
    'WriteBuf',
    'ZmqConnector',
    'ZmqKey',
]
