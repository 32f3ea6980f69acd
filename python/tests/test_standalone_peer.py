"""An unmodified ProxyStore program on a standalone Rust peer (`proxy-peer`) that holds
its objects, with the cluster secret: the producer may go away, other processes resolve
its proxies, and the secret never leaves the processes that hold it."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proxystore.proxy import extract
from proxystore.store import Store

from proxystore_rs import PeerTimeoutError
from proxystore_rs import RefusedError
from proxystore_rs import ZmqConnector

SPAWN = multiprocessing.get_context('spawn')


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / 'cluster-secret'
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    os.write(fd, secrets.token_hex(32).encode())
    os.close(fd)
    return path


@pytest.fixture
def peer(proxy_peer: str, secret_file: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [proxy_peer, '--port', '0', '--secret-file', str(secret_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().strip()
        assert endpoint.startswith('tcp://'), endpoint
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def _resolve(proxy: Any, out: Any) -> None:
    out.put(hashlib.sha256(extract(proxy)).hexdigest())


def test_proxies_of_objects_on_a_standalone_peer_outlive_their_producer(
    peer: str,
    secret_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = secrets.token_bytes(1 << 20)
    store = Store(
        'rs-standalone',
        ZmqConnector(remote=peer, secret_file=str(secret_file)),
        register=True,
    )
    proxy = store.proxy(payload)
    config = pickle.dumps(store.config())
    store.close()  # the producer's connector is gone; the peer holds the object

    # The consumer process knows the secret from its own environment, not from the proxy.
    monkeypatch.setenv('PROXYSTORE_SECRET_FILE', str(secret_file))
    out = SPAWN.Queue()
    child = SPAWN.Process(target=_resolve, args=(proxy, out))
    child.start()
    try:
        assert out.get(timeout=60) == hashlib.sha256(payload).hexdigest()
    finally:
        child.join(60)
    assert child.exitcode == 0

    secret = secret_file.read_bytes().strip()
    for shown in (pickle.dumps(proxy), config, repr(store).encode()):
        assert secret not in shown
        assert bytes.fromhex(secret.decode()) not in shown


def test_a_client_without_the_secret_cannot_store_or_read(peer: str, secret_file: Path) -> None:
    member = ZmqConnector(remote=peer, secret_file=str(secret_file))
    key = member.put(b'members only')
    stranger = ZmqConnector(remote=peer, secret=secrets.token_bytes(32), timeout=1.0)
    with pytest.raises((RefusedError, PeerTimeoutError)):
        stranger.put(b'intruder')
    with pytest.raises((RefusedError, PeerTimeoutError)):
        stranger.get(key)
    assert member.get(key) == b'members only'
