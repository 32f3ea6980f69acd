"""Processes started with fork() (multiprocessing's default on Linux before Python 3.14):
ZeroMQ does not survive a fork, so an inherited ZmqConnector is rebuilt in the child from
its configuration. The child reads the parent's objects and serves its own puts.

Before: the child's puts went into its copy of the parent peer's map and were lost (the
parent's key had no object), and libzmq state shared with the parent could abort it."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from proxystore.proxy import extract
from proxystore.store import Store
from proxystore.store import get_store

from proxystore_rs import ZmqConnector

FORK = multiprocessing.get_context('fork')


def _read_parents_proxy(proxy: Any, out: Any) -> None:
    out.put(bytes(extract(proxy)))


def _make_a_proxy(name: str, out: Any, done: Any) -> None:
    store = get_store(name)
    assert store is not None
    out.put(store.proxy(b'from the child' * 1000))
    done.wait(60)


@pytest.fixture
def store() -> Any:
    with Store('rs-fork', ZmqConnector(), register=True, populate_target=False) as store:
        # The parent uses its connector before forking (sockets, a server thread).
        assert extract(store.proxy(b'warm')) == b'warm'
        yield store


def test_a_forked_child_reads_the_parents_objects(store: Any) -> None:
    proxy = store.proxy(b'from the parent' * 1000)
    out = FORK.Queue()
    child = FORK.Process(target=_read_parents_proxy, args=(proxy, out))
    child.start()
    try:
        assert out.get(timeout=60) == b'from the parent' * 1000
    finally:
        child.join(60)
    assert child.exitcode == 0


def test_objects_a_forked_child_stores_are_served_to_the_parent(store: Any) -> None:
    out, done = FORK.Queue(), FORK.Event()
    child = FORK.Process(target=_make_a_proxy, args=(store.name, out, done))
    child.start()
    try:
        proxy = out.get(timeout=60)
        assert extract(proxy) == b'from the child' * 1000
    finally:
        done.set()
        child.join(60)
    assert child.exitcode == 0
    # The parent's peer is unaffected by the child.
    assert extract(store.proxy(b'still here')) == b'still here'
