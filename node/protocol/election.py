"""The election: the secrets members commit to with their updates, the seed the contract draws
from the secrets they reveal once the window has closed, and the candidate order (leader of each
attempt, then its verifiers) that follows from it. Any member or auditor recomputes the election
from the chain with these functions.

Commit-reveal: with its update a member submits `commitment(secret, member)`; after the window
closes it reveals `secret`. The seed of a round's first epoch is keccak(abi.encode(XOR of the
revealed secrets, task, round, 0, inputsDigest)): fixed only once every input is, unknown to every
member until the last secret is out. A reopened round's epoch e draws keccak(abi.encode(XOR of the
secrets, task, round, e)).
"""

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


def commitment(secret: str | bytes, member: str) -> str:
    """What an update commits to: keccak256(abi.encode(secret, member)), as hex. Binding the member
    means nobody can copy another member's commitment and reveal its secret as their own."""
    return keccak(abi_encode(["bytes32", "address"], [to_bytes32(secret), member])).hex()


def xor_secrets(secrets: Sequence[str | bytes]) -> bytes:
    """The XOR of revealed secrets: the same whatever order they were revealed in."""
    acc = 0
    for s in secrets:
        acc ^= int.from_bytes(to_bytes32(s), "big")
    return acc.to_bytes(32, "big")


def derive_seed(reveal_acc: str | bytes, task: int, round_: int, epoch: int, inputs_digest: str | bytes) -> str:
    """Mirror of the seed FedLedger draws: for epoch 0, keccak(abi.encode(XOR of the revealed
    secrets, task, round, 0, inputsDigest)); for a reopened round's epoch e > 0,
    keccak(abi.encode(XOR of the secrets, task, round, e)). As hex."""
    if epoch == 0:
        data = abi_encode(["bytes32", "uint256", "uint256", "uint16", "bytes32"],
                          [to_bytes32(reveal_acc), task, round_, epoch, to_bytes32(inputs_digest)])
    else:
        data = abi_encode(["bytes32", "uint256", "uint256", "uint16"], [to_bytes32(reveal_acc), task, round_, epoch])
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
