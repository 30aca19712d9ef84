"""The election: the secrets members commit to, the seed the contract draws from the secrets
opened in a round, and the candidate order (leader of each attempt, then its verifiers) that
follows from it. Any member or auditor recomputes the election from the chain with these functions.

Commit-reveal, one step ahead: every update (or reveal) carries `commitment(next_secret, member)`,
and a member's next update opens it. A round's seed is therefore the XOR of secrets each fixed
before the round opened: the last submitter knows the seed but can only choose whether to take
part, never what it is. A round in which nobody had a commitment to open (round 1) has a reveal
phase: once the window has closed, the participants reveal the secrets their updates committed to
(each committing to a next one). The seed of epoch e is keccak(abi.encode(acc, task, round, e)),
where acc starts at `seed_start(task, round, parent)` and every opened secret is XORed into it.
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


def seed_start(task: int, round_: int, parent: str | bytes) -> bytes:
    """Mirror of FedLedger._openRound: the value the round's secret accumulator starts at,
    keccak256(abi.encode(task, round, parent)) (the same as the inputs digest's start)."""
    return keccak(abi_encode(["uint256", "uint256", "bytes32"], [task, round_, to_bytes32(parent)]))


def derive_seed(acc: str | bytes, task: int, round_: int, epoch: int) -> str:
    """Mirror of FedLedger._seedOf: keccak(abi.encode(acc, task, round, epoch)) as hex, where acc is
    `seed_start` XOR every secret opened in the round so far."""
    data = abi_encode(["bytes32", "uint256", "uint256", "uint16"], [to_bytes32(acc), task, round_, epoch])
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
