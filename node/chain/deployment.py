"""Deploying FedLedger and the deployment file every member is handed.

The deployment file is what organisations share to join the same federation: chain id,
contract address, the ABI hash (so a node built from another contract version refuses to talk
to it), the deployment block (where lineage starts) and the admin. No keys, no secrets.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from ..errors import DeploymentError
from .client import ChainClient
from .contracts import load_artifact


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    address: str
    abi_sha256: str
    block: int
    admin: str
    tx_hash: str
    solc_version: str
    rpc_url: str | None = None

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Deployment":
        """Read and check a deployment file: `DeploymentError` naming the file and the key."""
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise DeploymentError(f"cannot read deployment file {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise DeploymentError(f"deployment file {path} is not valid JSON") from exc
        if not isinstance(data, dict):
            raise DeploymentError(f"deployment file {path} must hold a JSON object")
        names = list(cls.__dataclass_fields__)
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]}?" if close else f"the valid ones: {', '.join(names)}"
                raise DeploymentError(f"deployment file {path}: unknown key {key!r}; {hint}")
        missing = [k for k in ("chain_id", "address", "abi_sha256", "block", "admin", "tx_hash", "solc_version")
                   if k not in data]
        if missing:
            raise DeploymentError(f"deployment file {path} lacks {', '.join(missing)}")
        for key, ok, what in (
            ("chain_id", lambda v: _is_int(v) and v > 0, "a positive integer"),
            ("block", lambda v: _is_int(v) and v >= 0, "a block number (an integer, 0 or more)"),
            ("address", _is_address, "a contract address (0x and 40 hex digits)"),
            ("admin", _is_address, "an account address (0x and 40 hex digits)"),
            ("abi_sha256", lambda v: isinstance(v, str) and v != "", "the ABI's sha256 (a string)"),
            ("tx_hash", lambda v: isinstance(v, str), "a transaction hash (a string)"),
            ("solc_version", lambda v: isinstance(v, str), "a compiler version (a string)"),
            ("rpc_url", lambda v: v is None or (isinstance(v, str) and re.match(r"^https?://", v)),
             "null or an http:// URL"),
        ):
            if key in data and not ok(data[key]):
                raise DeploymentError(f"deployment file {path}: {key} must be {what}, got {json.dumps(data[key])}")
        return cls(**data)

    def client(self, rpc_url: str | None = None, account: LocalAccount | None = None, poa: bool = False,
               timeout: float = 60.0) -> ChainClient:
        """A client for this deployment; refuses a chain or contract version it was not made for."""
        url = rpc_url or self.rpc_url
        if not url:
            raise DeploymentError("no RPC URL: pass --rpc or put rpc_url in the node config")
        artifact = load_artifact()
        if artifact.abi_sha256 != self.abi_sha256:
            raise DeploymentError(
                f"this node's contract ABI ({artifact.abi_sha256[:12]}) differs from the deployed one "
                f"({self.abi_sha256[:12]}): install the fedledger version the consortium deployed"
            )
        client = ChainClient(url, self.address, account, poa=poa, timeout=timeout, artifact=artifact)
        if client.chain_id != self.chain_id:
            raise DeploymentError(
                f"{url} serves chain id {client.chain_id}, the deployment is on chain id {self.chain_id}"
            )
        if not client.has_code():
            raise DeploymentError(
                f"there is no contract at {self.address} on chain {self.chain_id} ({url}): the deployment file "
                "belongs to another chain, or the chain was reset; ask the consortium admin for the current one"
            )
        return client


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_address(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{40}", value) is not None


def deploy(rpc_url: str, account: LocalAccount, out: Path | None = None, poa: bool = False,
           record_rpc_url: bool = True) -> Deployment:
    """Deploy FedLedger with `account` as admin and (optionally) write the deployment file."""
    client = ChainClient(rpc_url, None, account, poa=poa)
    result = client.deploy()
    dep = Deployment(
        chain_id=client.chain_id,
        address=client.address,
        abi_sha256=client.artifact.abi_sha256,
        block=result.block_number,
        admin=account.address,
        tx_hash=result.tx_hash,
        solc_version=client.artifact.solc_version,
        rpc_url=rpc_url if record_rpc_url else None,
    )
    if out is not None:
        dep.save(out)
    return dep
