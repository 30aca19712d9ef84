"""The inputs digest: the running commitment the contract keeps to every submitted update of a
round, which the election seed includes and the audit recomputes from the UpdateSubmitted events."""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak


def initial_digest(task: int, rnd: int, parent_sha: str) -> bytes:
    """Mirror of FedLedger._openRound: the inputs digest a round starts from."""
    return keccak(abi_encode(["uint256", "uint256", "bytes32"], [task, rnd, bytes.fromhex(parent_sha)]))


def next_digest(digest: bytes, member: str, sha: str, num_samples: int) -> bytes:
    """Mirror of FedLedger.submitUpdate: the running commitment to every (member, sha256, samples)."""
    return keccak(abi_encode(["bytes32", "address", "bytes32", "uint64"],
                             [digest, member, bytes.fromhex(sha), num_samples]))
