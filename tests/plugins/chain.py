"""Fixtures for a real Anvil chain: one process per test session, a fresh deployment per test.

A missing Anvil is a failure that says how to install it, never a skip."""

from __future__ import annotations

import pytest
from eth_account import Account

from fedledger.node.chain.client import ChainClient
from fedledger.node.chain.devnet import DEV_KEYS, AnvilNode, anvil_binary
from fedledger.node.errors import DevnetError


def require_anvil() -> None:
    """Fail the test, saying how to install it, when the Anvil binary from `make setup` is missing."""
    try:
        anvil_binary()
    except DevnetError as e:
        pytest.fail(f"Anvil not installed: run `make setup`. {e}", pytrace=False)


class Ledger:
    """A fresh FedLedger deployment: `admin` deployed it; `clients[i]` signs with dev key i."""

    def __init__(self, rpc_url: str):
        self.rpc_url = rpc_url
        self.accounts = [Account.from_key(k) for k in DEV_KEYS]
        self.admin = ChainClient(rpc_url, None, self.accounts[0])
        self.admin.deploy()
        self.address = self.admin.address
        self.clients = [self.admin] + [
            ChainClient(rpc_url, self.address, acct, artifact=self.admin.artifact) for acct in self.accounts[1:]
        ]
        self.w3 = self.admin.w3

    def client(self, i: int) -> ChainClient:
        return self.clients[i]

    def advance(self, seconds: int) -> None:
        """Move chain time forward and mine a block (test-only devnet calls)."""
        self.w3.provider.make_request("evm_increaseTime", [seconds])
        self.w3.provider.make_request("evm_mine", [])

    def now(self) -> int:
        return self.admin.block_timestamp()


@pytest.fixture(scope="session")
def anvil(tmp_path_factory):
    require_anvil()
    node = AnvilNode(run_dir=tmp_path_factory.mktemp("anvil")).start()
    yield node
    node.stop()


@pytest.fixture
def ledger(anvil) -> Ledger:
    return Ledger(anvil.rpc_url)
