"""Fixtures for real js-ipfs daemons (npm `ipfs` 0.66.1, installed by `make setup`).

Each daemon costs 3-5 s to start and 200-500 MB of memory, so the session shares two: `ipfs_node`
(organisation A) and the second member of `ipfs_pair` (organisation B), swarm-connected over
127.0.0.1. `ipfs_daemon_factory` makes extra daemons for tests that need their own (crash and
restart); every daemon made here is stopped by a finalizer, even when a test fails.

A missing dev IPFS node is a failure that says how to install it, never a skip: a suite that
skips its storage tests on a machine without js-ipfs would pass without testing storage.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fedledger.node.storage.ipfs import IpfsClient
from fedledger.node.storage.daemon import IpfsDaemon, IpfsDaemonError, connect_all, jsipfs_cli, node_binary


def require_jsipfs() -> None:
    """Fail the test, saying how to install it, when the dev IPFS node (js-ipfs) is missing."""
    try:
        jsipfs_cli()
        node_binary()
    except IpfsDaemonError as e:
        pytest.fail(f"js-ipfs not installed: run `make setup`. {e}", pytrace=False)



class DaemonFactory:
    def __init__(self, tmp_path_factory: pytest.TempPathFactory):
        self._tmp = tmp_path_factory
        self.daemons: list[IpfsDaemon] = []

    def __call__(self, name: str, start: bool = True) -> IpfsDaemon:
        require_jsipfs()
        daemon = IpfsDaemon(self._tmp.mktemp(f"ipfs-{name}"), name)
        self.daemons.append(daemon)
        if start:
            daemon.start()
        return daemon

    def stop_all(self) -> None:
        errors = []
        for d in self.daemons:
            try:
                d.stop()
            except Exception as e:  # keep stopping the others
                errors.append(e)
        self.daemons.clear()
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def ipfs_daemon_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def ipfs_node(ipfs_daemon_factory: DaemonFactory) -> IpfsDaemon:
    """One running dev IPFS node (organisation A)."""
    return ipfs_daemon_factory("org-a")


@pytest.fixture(scope="session")
def _ipfs_second_node(ipfs_daemon_factory: DaemonFactory) -> IpfsDaemon:
    return ipfs_daemon_factory("org-b")


@pytest.fixture(scope="session")
def ipfs_pair(ipfs_node: IpfsDaemon, _ipfs_second_node: IpfsDaemon) -> tuple[IpfsDaemon, IpfsDaemon]:
    """Two running dev IPFS nodes (organisations A and B), connected to each other."""
    a, b = ipfs_node, _ipfs_second_node
    for d in (a, b):
        if not d.running:
            pytest.fail(f"session IPFS daemon {d.name} died; see {d.log_file}")
    connect_all([a, b])
    return a, b


@pytest.fixture
def ipfs_client(ipfs_node: IpfsDaemon) -> Iterator[IpfsClient]:
    with ipfs_node.client(timeout=30) as client:
        yield client
