"""Fixtures: every connector of proxystore_rs, and the Rust example the interop tests run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxystore_rs import FileConnector
from proxystore_rs import ZmqConnector


def require_all() -> bool:
    """Whether a missing prerequisite is a failure (``.ci/run`` sets this) or a skip."""
    return os.environ.get('PROXYSTORE_TESTS_REQUIRE_ALL', '').lower() in ('1', 'true', 'yes')


@pytest.fixture
def zmq_connector() -> Iterator[ZmqConnector]:
    with ZmqConnector() as connector:
        yield connector


@pytest.fixture
def zmq_tcp_connector() -> Iterator[ZmqConnector]:
    with ZmqConnector(shared_memory=False) as connector:
        yield connector


@pytest.fixture
def file_connector(tmp_path: Path) -> Iterator[FileConnector]:
    with FileConnector(str(tmp_path / 'store')) as connector:
        yield connector


@pytest.fixture(params=['zmq_connector', 'zmq_tcp_connector', 'file_connector'])
def connector(request: pytest.FixtureRequest) -> Any:
    """Each connector in turn: the conformance tests run against all of them."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def array_reduce() -> str:
    """The Rust example binary ``array_reduce`` (tests/python.rs builds it and names it in
    PROXYSTORE_RS_ARRAY_REDUCE)."""
    path = os.environ.get('PROXYSTORE_RS_ARRAY_REDUCE')
    if not path or not os.path.exists(path):
        message = (
            'PROXYSTORE_RS_ARRAY_REDUCE does not name the built example array_reduce '
            '(run these tests through `cargo test --test python`)'
        )
        if require_all():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def proxy_peer() -> str:
    """The standalone peer binary ``proxy-peer`` (tests/python.rs names it in
    PROXYSTORE_RS_PEER)."""
    path = os.environ.get('PROXYSTORE_RS_PEER')
    if not path or not os.path.exists(path):
        message = (
            'PROXYSTORE_RS_PEER does not name the built proxy-peer binary '
            '(run these tests through `cargo test --workspace`)'
        )
        if require_all():
            pytest.fail(message)
        pytest.skip(message)
    return path
