"""A deserializer for ProxyStore's format that copies less.

ProxyStore's ``deserialize`` wraps the fetched bytes in ``io.BytesIO`` and reads them
out again: for a ``memoryview`` (what this package's ``get`` returns, without a copy)
that is two copies of the object. This ``deserialize`` reads the same format (an
identifier line, then the serializer's bytes) and gives the same objects, with one copy
for ``bytes`` and ``str`` objects; every other kind goes to ProxyStore's own. Use it as a
store's deserializer::

    Store('name', ZmqConnector(), deserializer=proxystore_rs.serialize.deserialize)
"""

from __future__ import annotations

from typing import Any

from proxystore.serialize import deserialize as _proxystore_deserialize


def deserialize(data: Any) -> Any:
    """The object ProxyStore's ``serialize`` wrote into ``data``."""
    view = memoryview(data).cast('B')
    if view[:3] == b'BS\n':
        return bytes(view[3:])
    if view[:3] == b'US\n':
        return str(view[3:], 'utf-8')
    return _proxystore_deserialize(data)
