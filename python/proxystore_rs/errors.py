"""Exceptions raised by proxystore_rs, one class per kind of Rust error.

Each class also derives from the built-in exception a Python program would expect for
that failure (a timeout is a ``TimeoutError``, a refused request a ``PermissionError``),
so ``except TimeoutError`` works as well as ``except proxystore_rs.PeerTimeoutError``.
Every exception has ``kind``: the name of the Rust ``ErrorKind``.
"""

from __future__ import annotations

from proxystore_rs._native import NativeError


class ProxyStoreRsError(Exception):
    """Base class of every error a proxystore_rs connector raises."""

    kind: str = 'Other'

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class ObjectNotFoundError(ProxyStoreRsError, LookupError):
    """The key names an object that cannot be found (e.g. an earlier run of its peer)."""


class PeerTimeoutError(ProxyStoreRsError, TimeoutError):
    """A peer or a wait did not answer in time (or stayed below the minimum rate)."""


class PeerUnreachableError(ProxyStoreRsError, ConnectionError):
    """A peer could not be reached."""


class RefusedError(ProxyStoreRsError, PermissionError):
    """A peer refused the request: its size, its quota, or its authentication."""


class KeyExistsError(ProxyStoreRsError, ValueError):
    """An object is already stored under a write-once key (a future set twice)."""


class ConfigError(ProxyStoreRsError, ValueError):
    """An option, a configuration or a key's text was rejected."""


class CodecError(ProxyStoreRsError, ValueError):
    """Bytes could not be decoded as the type asked for."""


class ClosedError(ProxyStoreRsError):
    """The connector is closed."""


class StorageIOError(ProxyStoreRsError, OSError):
    """A filesystem operation failed (a file connector's directory or files)."""


class ProtocolError(ProxyStoreRsError):
    """A message broke the wire protocol."""


_BY_KIND: dict[str, type[ProxyStoreRsError]] = {
    'NotFound': ObjectNotFoundError,
    'Timeout': PeerTimeoutError,
    'Unreachable': PeerUnreachableError,
    'Refused': RefusedError,
    'AlreadyExists': KeyExistsError,
    'Config': ConfigError,
    'WrongConnector': ConfigError,
    'Codec': CodecError,
    'Closed': ClosedError,
    'Protocol': ProtocolError,
    'Io': StorageIOError,
}


def translate(error: NativeError) -> ProxyStoreRsError:
    """The exception of this package for an error of the Rust side."""
    kind, message = error.args
    cls = _BY_KIND.get(kind, ProxyStoreRsError)
    return cls(message, kind)
