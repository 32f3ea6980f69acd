"""ProxyStore 1.1 connectors backed by the Rust connectors of proxystore-rs.

Both classes satisfy ProxyStore's ``Connector`` and ``DeferrableConnector`` protocols, so
an unmodified ProxyStore program uses them with ``Store('name', ZmqConnector())``,
including proxies sent to other processes (the connector is rebuilt there from
``config()``) and ``Store.future``.

Keys are named tuples holding the Rust key's text (``zmq:<id>@tcp://host:port#...``); a
Rust program parses the same text with ``proxy_core::Key::from_str``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any
from typing import Callable
from typing import Generic
from typing import NamedTuple
from typing import TypeVar

from proxystore_rs._native import Buffer
from proxystore_rs._native import NativeConnector
from proxystore_rs._native import NativeError
from proxystore_rs._native import WriteBuf
from proxystore_rs.errors import KeyExistsError
from proxystore_rs.errors import translate


class ZmqKey(NamedTuple):
    """Key of an object held by a ZeroMQ peer (its text names the peer)."""

    text: str


class FileKey(NamedTuple):
    """Key of an object held in a file connector's directory."""

    text: str


KeyT = TypeVar('KeyT', ZmqKey, FileKey)
R = TypeVar('R')

# Native connectors inherited through fork(), kept referenced for the life of the process:
# dropping one would touch the parent's ZeroMQ state, which the child must leave alone.
_INHERITED: list[NativeConnector] = []


def _call(fn: Callable[..., R], *args: Any) -> R:
    try:
        return fn(*args)
    except NativeError as e:
        raise translate(e) from None


def _as_stored(obj: Any) -> Any:
    """What the Rust side takes for ``obj``: ``bytes`` and this package's buffers as they
    are (stored without a copy), anything else as a flat byte view (copied once there)."""
    if isinstance(obj, (bytes, Buffer)):
        return obj
    view = obj if isinstance(obj, memoryview) else memoryview(obj)
    if (
        isinstance(view.obj, Buffer)
        and view.contiguous
        and view.nbytes == len(view.obj)
    ):
        return view.obj
    if view.format != 'B' or view.ndim != 1:
        view = view.cast('B') if view.c_contiguous else memoryview(view.tobytes())
    return view


def _view(buffer: Buffer | None) -> memoryview | None:
    return None if buffer is None else memoryview(buffer)


class _RustConnector(Generic[KeyT]):
    """The ProxyStore connector protocol over one native connector."""

    _key_type: type[KeyT]
    # Whether the native connector holds state that does not survive fork() (ZeroMQ).
    _rebuilt_after_fork = False

    def __init__(self, native: NativeConnector) -> None:
        self._native_connector = native
        self._pid = os.getpid()
        self._closed = False

    @property
    def _native(self) -> NativeConnector:
        # A connector inherited through fork() (multiprocessing's default start method on
        # Linux) is rebuilt in the child from its configuration: ZeroMQ does not survive a
        # fork, and the Rust side refuses an inherited connector. The rebuilt one reads
        # every peer's objects, the parent's included, and serves the child's own puts.
        if self._rebuilt_after_fork and self._pid != os.getpid():
            inherited = self._native_connector
            _INHERITED.append(inherited)
            self._native_connector = _call(NativeConnector.from_config, inherited.config())
            self._pid = os.getpid()
        return self._native_connector

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self._native!r})'

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def native(self) -> NativeConnector:
        """The Rust connector this one wraps."""
        return self._native

    def close(self) -> None:
        """Close the connector (idempotent)."""
        if not self._closed:
            self._closed = True
            _call(self._native.close)

    def config(self) -> dict[str, Any]:
        """The configuration that rebuilds this connector in any process.

        It never holds the cluster secret: a process that rebuilds a ZeroMQ connector
        takes its own (``PROXYSTORE_SECRET``/``PROXYSTORE_SECRET_FILE``), or, next to the
        live peer it came from, that peer's.
        """
        return {'rust_config': _call(self._native.config)}

    @staticmethod
    def _rebuilt(rust_config: str) -> NativeConnector:
        return _call(NativeConnector.from_config, rust_config)

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        """The connector ``config()`` describes, rebuilt in this process (ProxyStore
        itself rebuilds with ``cls(**config)``, which does the same)."""
        return cls(**config)

    def put(self, obj: Any) -> KeyT:
        """Store a bytes-like object; ``bytes`` are stored without a copy."""
        return self._key_type(_call(self._native.put, _as_stored(obj)))

    def put_batch(self, objs: Sequence[Any]) -> list[KeyT]:
        """Store several bytes-like objects; keys in the same order."""
        texts = _call(self._native.put_batch, [_as_stored(o) for o in objs])
        return [self._key_type(t) for t in texts]

    def get(self, key: KeyT) -> memoryview | None:
        """The object under ``key`` as a read-only ``memoryview`` over the fetched bytes
        (no copy: shared memory of the owner on one host), or ``None``."""
        return _view(_call(self._native.get, key.text))

    def get_batch(self, keys: Sequence[KeyT]) -> list[memoryview | None]:
        """The objects under ``keys`` (``None`` where missing), in order."""
        found = _call(self._native.get_batch, [k.text for k in keys])
        return [_view(b) for b in found]

    def exists(self, key: KeyT) -> bool:
        """Whether an object is stored under ``key``."""
        return _call(self._native.exists, key.text)

    def evict(self, key: KeyT) -> None:
        """Remove the object under ``key``; a missing key is not an error."""
        _call(self._native.evict, key.text)

    def new_key(self, obj: Any = None) -> KeyT:
        """A fresh key for ``set`` (what ``Store.future`` uses); ``obj`` is ignored."""
        return self._key_type(_call(self._native.new_key))

    def set(self, key: KeyT, obj: Any) -> None:
        """Store ``obj`` under a key from ``new_key``.

        Keys are write-once: setting the same bytes again is a no-op (as ProxyStore's
        protocol allows a repeated ``set``), other bytes raise ``KeyExistsError`` and the
        first object stays.
        """
        data = _as_stored(obj)
        try:
            _call(self._native.set, key.text, data)
        except KeyExistsError:
            stored = self.get(key)
            if stored is None or stored != memoryview(data):
                raise

    def alloc(self, size: int) -> WriteBuf:
        """A writable buffer of ``size`` bytes that ``put_buffer`` stores without another
        copy (on a ZeroMQ peer with shared memory: a slot readers on this host map)."""
        return _call(self._native.alloc, size)

    def put_buffer(self, buffer: WriteBuf) -> KeyT:
        """Store a buffer from ``alloc`` once filled (every view of it released first)."""
        return self._key_type(_call(self._native.put_buffer, buffer))


class ZmqConnector(_RustConnector[ZmqKey]):
    """A ZeroMQ peer of proxystore-rs as a ProxyStore connector.

    Puts are held by this process's embedded peer (or, with ``remote``, by another
    peer such as a standalone ``proxy-peer``); gets fetch from whichever peer the key
    names, from shared memory when that peer runs on this host. Options left out keep
    what the environment says (``PROXYSTORE_ZMQ_*``, ``PROXYSTORE_SECRET``,
    ``PROXYSTORE_SECRET_FILE``) or the Rust defaults.

    Args:
        interface: Address to bind (default ``127.0.0.1``; ``0.0.0.0`` for all).
        address: Address to advertise in keys, when not the bound one.
        port: Port to bind (default: one the OS picks).
        port_range: ``(first, last)`` ports to try in turn.
        timeout: Seconds a request may take before ``PeerTimeoutError``.
        secret: The cluster secret (at least 16 bytes); required off loopback.
        secret_file: A file holding the cluster secret (mode 0600).
        insecure: Serve without a secret, also off loopback (not advised).
        max_bytes: Bytes other processes may store on this peer.
        max_message_size: Largest message accepted.
        shared_memory: Serve and read same-host objects through shared memory.
        shared_memory_capacity: Bytes of shared memory the peer may reserve.
        remote: Endpoint of the peer that holds this connector's puts.
        client_only: Never serve; puts fail, gets read any peer.
        rust_config: A configuration from ``config()`` to rebuild (what ProxyStore
            passes when it rebuilds the connector in another process); not to be
            combined with the other options.
    """

    _key_type = ZmqKey
    _rebuilt_after_fork = True

    def __init__(
        self,
        *,
        interface: str | None = None,
        address: str | None = None,
        port: int | None = None,
        port_range: tuple[int, int] | None = None,
        timeout: float | None = None,
        secret: bytes | str | None = None,
        secret_file: str | None = None,
        insecure: bool | None = None,
        max_bytes: int | None = None,
        max_message_size: int | None = None,
        shared_memory: bool | None = None,
        shared_memory_capacity: int | None = None,
        remote: str | None = None,
        client_only: bool | None = None,
        rust_config: str | None = None,
    ) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        options = {
            'interface': interface,
            'address': address,
            'port': port,
            'port_range': port_range,
            'timeout': timeout,
            'secret': secret,
            'secret_file': secret_file,
            'insecure': insecure,
            'max_bytes': max_bytes,
            'max_message_size': max_message_size,
            'shared_memory': shared_memory,
            'shared_memory_capacity': shared_memory_capacity,
            'remote': remote,
            'client_only': client_only,
        }
        given = {k: v for k, v in options.items() if v is not None}
        if rust_config is not None:
            if given:
                raise TypeError(
                    f'rust_config rebuilds a configured connector: '
                    f'it cannot be combined with {", ".join(sorted(given))}',
                )
            super().__init__(self._rebuilt(rust_config))
        else:
            super().__init__(_call(lambda: NativeConnector.zmq(**given)))

    def __repr__(self) -> str:
        return f'ZmqConnector(endpoint={self.endpoint!r})'

    @property
    def endpoint(self) -> str | None:
        """The endpoint of this process's peer (``tcp://host:port``), once it serves."""
        return self._native.endpoint

    @property
    def mapped_reads(self) -> int:
        """Gets of other peers' objects answered from their shared memory."""
        return self._native.mapped_reads

    def prewarm_shared_memory(self, size: int, count: int) -> int:
        """Make room in this peer's shared memory for ``count`` objects of ``size`` bytes
        now, so that the first ``alloc``/``put`` of that size do not pay for new segments
        and their page faults; returns how many slots are ready (0 with shared memory off
        or below its threshold, fewer than ``count`` at its capacity)."""
        return _call(self._native.prewarm_shared_memory, size, count)


class FileConnector(_RustConnector[FileKey]):
    """A directory of files as a ProxyStore connector (atomic puts: a reader never sees
    a partial object).

    Args:
        store_dir: The directory (created if missing).
        clear: Delete the directory when the connector is closed.
        rust_config: A configuration from ``config()`` to rebuild (what ProxyStore
            passes when it rebuilds the connector in another process).
    """

    _key_type = FileKey

    def __init__(
        self,
        store_dir: str,
        clear: bool = True,
        rust_config: str | None = None,
    ) -> None:
        if rust_config is not None:
            super().__init__(self._rebuilt(rust_config))
        else:
            super().__init__(_call(NativeConnector.file, str(store_dir), clear))
        self.store_dir = str(store_dir)
        self.clear = clear

    def __repr__(self) -> str:
        return f'FileConnector(store_dir={self.store_dir!r})'

    def config(self) -> dict[str, Any]:
        """The configuration that rebuilds this connector in any process."""
        return {'store_dir': self.store_dir, 'clear': self.clear, **super().config()}

    def close(self, clear: bool | None = None) -> None:
        """Close the connector; ``clear=True`` also deletes the directory."""
        super().close()
        if clear and self.store_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)
