"""Bucketing before a robust rule (Karimireddy, He, Jaggi 2022, "Byzantine-Robust Learning on
Heterogeneous Datasets via Bucketing"): shuffle the updates with a seed, average them in buckets of
`s`, and hand the bucket means to the robust rule. Averaging shrinks the spread that
heterogeneous honest data puts between updates, which is what lets a few attackers hide inside it;
a bucket holds at most a few attackers, so the robust rule still sees a minority of bad means.

The shuffle is a keccak-driven Fisher-Yates over the updates in canonical (hash) order:
    for i = n-1 .. 1: j = uint256(keccak256(seed || uint256(i))) mod (i + 1); swap(i, j)
so every verifier that knows the seed gets the same buckets bit for bit. Bucket means use FedAvg's
arithmetic with equal weights (float64, canonical order inside the bucket).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from ._core import AggregationError, Inputs, Model, UpdateSource, canonical_order
from .mean import weighted_mean


def shuffle(n: int, seed: bytes) -> list[int]:
    """The seeded permutation of positions 0..n-1 (see the module)."""
    # Imported here: the rules (and the trainer, which imports them) stay importable where only
    # numpy and torch are installed, as in the Flower comparison's environment.
    from eth_utils import keccak

    if len(seed) != 32:
        raise AggregationError(f"bucketing needs a 32-byte seed, got {len(seed)} bytes")
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int.from_bytes(keccak(seed + i.to_bytes(32, "big")), "big") % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def bucketed(
    inner: Callable[[list[Model], list[bytes]], Model],
    updates: Sequence[UpdateSource],
    s: int,
    seed: bytes,
    hashes: Sequence[bytes | str],
) -> Model:
    """`inner` applied to the means of buckets of `s` updates, shuffled by `seed`. `inner` gets the
    bucket means and a hash for each (the sha256 of the member hashes in it, which fixes its order)."""
    if s < 1:
        raise AggregationError(f"bucket size must be at least 1, got {s}")
    n = len(updates)
    canon = canonical_order(hashes, n)
    raw = [bytes.fromhex(h) if isinstance(h, str) else bytes(h) for h in hashes]
    order = [canon[k] for k in shuffle(n, seed)]
    means: list[Model] = []
    mean_hashes: list[bytes] = []
    for start in range(0, n, s):
        group = order[start:start + s]
        inputs = Inputs([updates[i] for i in group], "bucketing", weights=[1.0] * len(group),
                        hashes=[raw[i] for i in group])
        means.append(weighted_mean(inputs))
        mean_hashes.append(hashlib.sha256(b"".join(raw[i] for i in sorted(group, key=lambda i: raw[i]))).digest())
    return inner(means, mean_hashes)
