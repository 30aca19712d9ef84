"""Which updates went into an aggregate, as the leader publishes it on chain: two bitmaps over the
round's participants in submission order (bit i is byte i // 8, bit i % 8): `included` (in the
aggregate) and `unavailable` (the leader declared it could not fetch them in time). An update in
neither was excluded for its content, by the reason code every verifier and the audit reproduce.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eth_abi import encode as abi_encode
from eth_utils import keccak


def bitmap(indices: Iterable[int], n: int) -> bytes:
    """The bitmap of `indices` over `n` participants."""
    out = bytearray((n + 7) // 8)
    for i in indices:
        if not 0 <= i < n:
            raise ValueError(f"participant {i} is not among the round's {n}")
        out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def indices(bits: bytes, n: int) -> list[int]:
    """The participants a bitmap names, ascending."""
    return [i for i in range(n) if i // 8 < len(bits) and bits[i // 8] >> (i % 8) & 1]


def inclusion_hash(included: bytes, unavailable: bytes) -> str:
    """keccak256(abi.encode(included, unavailable)), as the contract stores it."""
    return keccak(abi_encode(["bytes", "bytes"], [included, unavailable])).hex()


def bitmaps_for(participants: Sequence[str], included: Iterable[str], unavailable: Iterable[str]) -> tuple[bytes, bytes]:
    """The two bitmaps for members named by address (case-insensitive), over `participants`."""
    position = {p.lower(): i for i, p in enumerate(participants)}
    n = len(participants)
    return (bitmap([position[m.lower()] for m in included], n), bitmap([position[m.lower()] for m in unavailable], n))
