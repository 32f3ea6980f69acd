"""Fixtures: every connector of proxystore_rs, and the Rust example the interop tests run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import proxystore_rs
from proxystore_rs import FileConnector
from proxystore_rs import ZmqConnector

# tests/python.rs assembles the package from this build; make sure that is what runs.
_expected = os.environ.get('PROXYSTORE_RS_PACKAGE_DIR')
if _expected is not None and not proxystore_rs.__file__.startswith(_expected):
    raise ImportError(
        f'proxystore_rs was imported from {proxystore_rs.__file__}, not from {_expected}',
    )


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


def built_binary(variable: str, what: str) -> str:
    """The path of a binary the Rust test build made, named by `variable` (tests/python.rs
    sets it); a skip, or under PROXYSTORE_TESTS_REQUIRE_ALL a failure, without it."""
    path = os.environ.get(variable)
    if not path or not os.path.exists(path):
        message = (
            f'{variable} does not name the built {what} '
            '(run these tests through `cargo test --workspace`)'
        )
        if require_all():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def array_reduce() -> str:
    """The Rust example binary ``array_reduce``."""
    return built_binary('PROXYSTORE_RS_ARRAY_REDUCE', 'example array_reduce')


@pytest.fixture
def proxy_peer() -> str:
    """The standalone peer binary ``proxy-peer``."""
    return built_binary('PROXYSTORE_RS_PEER', 'proxy-peer binary')
