"""The election: the seed the contract derives when a round's window closes, and the candidate
order (leader of each attempt, then its verifiers) that follows from it. Any member or auditor
recomputes the election from the chain with these functions."""

from __future__ import annotations

from math import gcd
from typing import Sequence

from eth_abi import encode as abi_encode
from eth_utils import keccak

from .types import to_bytes32


def coprime_step(r: int, n: int) -> int:
    """Mirror of FedLedger.coprimeStep: the permutation step for n candidates."""
    if n <= 2:
        return 1
    s = 1 + (r % (n - 1))
    while gcd(s, n) != 1:
        s = 1 if s + 1 == n else s + 1
    return s


def derive_seed(parent_block_hash: str | bytes, task: int, round_: int, epoch: int, inputs_digest: str | bytes) -> str:
    """Mirror of the seed FedLedger derives at close: keccak(abi.encode(blockhash(closing block
    - 1), task, round, epoch, inputsDigest)), as hex."""
    data = abi_encode(
        ["bytes32", "uint256", "uint256", "uint16", "bytes32"],
        [to_bytes32(parent_block_hash), task, round_, epoch, to_bytes32(inputs_digest)],
    )
    return keccak(data).hex()


def election_order(seed: str | bytes, participants: Sequence[str]) -> list[str]:
    """The candidate order the contract fixes at close, recomputed from its seed and the
    participants in submission order: candidate i is participant (offset + i * step) mod n."""
    seed_b = to_bytes32(seed)
    n = len(participants)
    if n == 0:
        return []
    offset = int.from_bytes(seed_b, "big") % n
    step = coprime_step(int.from_bytes(keccak(seed_b), "big"), n)
    return [participants[(offset + i * step) % n] for i in range(n)]


def verifiers_for(order: Sequence[str], attempt: int, verifiers_per_round: int) -> list[str]:
    """The verifiers of an attempt: the next `verifiers_per_round` candidates after its leader."""
    n = len(order)
    k = min(verifiers_per_round, max(n - 1, 0))
    return [order[(attempt + 1 + j) % n] for j in range(k)]
