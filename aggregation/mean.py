"""Weighted averaging: FedAvg, its streaming form, and the semi-global synthesis of aggregates.

Definition (bit-exact on any IEEE-754 machine): with the updates in canonical order and n_i the
sample count of update i, every coordinate is

    acc = float64(n_0) * float64(x_0);  acc = acc + float64(n_i) * float64(x_i)  for i = 1, 2, ...
    result = dtype(acc / float64(sum of n_i))

Each step is one correctly rounded IEEE operation applied elementwise, so no summation tree,
memory layout, SIMD width or BLAS can change the bits. Summing n_i * x_i and dividing once (rather
than multiplying by n_i / N) makes identical float32 updates average to themselves exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._core import (
    CHUNK,
    AggregationError,
    Inputs,
    Model,
    UpdateSource,
    check_weight,
    chunks,
    hash_bytes,
    raise_non_finite,
)


def _weighted_sum_layer(
    flats: Sequence[np.ndarray],
    weights: Sequence[float],
    out: np.ndarray,
    divisor: float,
    acc_buf: np.ndarray,
    tmp_buf: np.ndarray,
) -> None:
    """out = dtype(sum_i w_i * x_i / divisor) in float64, accumulated in list order, chunk by chunk."""
    w = [np.float64(x) for x in weights]
    d = np.float64(divisor)
    for s, e in chunks(out.shape[0], acc_buf.shape[0]):
        acc = acc_buf[: e - s]
        tmp = tmp_buf[: e - s]
        acc[...] = flats[0][s:e]
        acc *= w[0]
        for x, wi in zip(flats[1:], w[1:]):
            tmp[...] = x[s:e]
            tmp *= wi
            acc += tmp
        acc /= d
        out[s:e] = acc


#: Threads that sum disjoint halves of a large layer. Every coordinate still gets the same
#: sequence of IEEE operations, so the bits do not depend on the thread count; numpy releases the
#: GIL inside each operation.
THREADS = max(1, min(2, os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None


def _split_sum_layer(flats, weights, out, divisor, bufs) -> None:
    """`_weighted_sum_layer` over contiguous parts of the layer, one per buffer pair, in parallel
    when the layer spans more than one chunk per part."""
    global _pool
    length, size = out.shape[0], bufs[0][0].shape[0]
    parts = len(bufs) if length >= 2 * size else 1
    if parts == 1:
        _weighted_sum_layer(flats, weights, out, divisor, *bufs[0])
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="fedavg")
    step = -(-length // parts)
    step = -(-step // size) * size  # whole chunks per part
    bounds = [(s, min(length, s + step)) for s in range(0, length, step)]

    def run(i: int) -> None:
        s, e = bounds[i]
        with np.errstate(over="ignore", invalid="ignore"):
            _weighted_sum_layer([x[s:e] for x in flats], weights, out[s:e], divisor, *bufs[i])

    for f in [_pool.submit(run, i) for i in range(len(bounds))]:
        f.result()


def weighted_mean(inputs: Inputs, weights: Sequence[float] | None = None) -> Model:
    """FedAvg over already-ordered inputs (shared by fedavg, multi-Krum and the registry)."""
    weights = inputs.weights if weights is None else list(weights)
    total = 0.0
    for w in weights:
        total += w
    result: Model = {}
    size = inputs.chunk_for(CHUNK)
    bufs = [(np.empty(size, dtype=np.float64), np.empty(size, dtype=np.float64)) for _ in range(THREADS)]
    for name, shape, dtype, flats in inputs.layers():
        out = np.empty(flats[0].shape[0], dtype=dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            _split_sum_layer(flats, weights, out, total, bufs)
        if not np.isfinite(out).all():
            raise_non_finite(inputs, name, flats)
        result[name] = out.reshape(shape)
        del flats
    return result


def fedavg(
    updates: Sequence[UpdateSource],
    weights: Sequence[int | float],
    *,
    hashes: Sequence[bytes | str] | None = None,
) -> Model:
    """FedAvg: average weighted by sample counts (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from Decentralized Data").

    weights: the sample count n_i behind each update (>= 0, not all zero, exact up to 2**53).
    hashes: the sha256 of each update; when given, updates are summed in ascending hash order,
    which makes the result bit-identical for any input order, run or machine.
    Reads one layer of every update at a time; dict inputs are never copied.
    """
    return weighted_mean(Inputs(updates, "fedavg", weights=weights, hashes=hashes))


def merge_aggregates(
    aggregates: Sequence[UpdateSource],
    sample_counts: Sequence[int | float],
    *,
    hashes: Sequence[bytes | str] | None = None,
) -> Model:
    """Semi-global synthesis: merge aggregates (e.g. cluster models) weighted by the samples behind each (Swarm Learning, Warnat-Herresthal et al. 2021; hierarchical FedAvg).

    sample_counts: total samples behind each aggregate. Same arithmetic and determinism as fedavg
    (pass the aggregates' hashes for a result independent of their order). Merging FedAvg
    aggregates of disjoint groups equals FedAvg over all their updates up to the rounding of each
    aggregate to the model dtype.
    """
    return weighted_mean(Inputs(aggregates, "merge_aggregates", weights=sample_counts, hashes=hashes))


class FedAvgStream:
    """FedAvg with two models in memory: the float64 sum and the update being added (as in Swarm Learning's merge).

    Add updates in ascending hash order (the canonical order); ``result()`` is bit-identical to
    ``fedavg(updates, weights, hashes=hashes)`` on the same updates.
    """

    def __init__(self) -> None:
        self._acc: dict[str, np.ndarray] = {}
        self._meta: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._total = 0.0
        self._count = 0
        self._last_hash: bytes | None = None

    @property
    def count(self) -> int:
        return self._count

    def add(self, update: UpdateSource, weight: int | float, hash: bytes | str | None = None) -> None:
        """Add one update with its sample count; hashes, when given, must strictly increase."""
        w = check_weight(weight, self._count, "fedavg stream")
        if hash is not None:
            raw = hash_bytes(hash, self._count)
            if self._last_hash is not None and raw <= self._last_hash:
                raise AggregationError(
                    "fedavg stream: updates must be added in ascending hash order (canonical order); "
                    f"{raw.hex()} came after {self._last_hash.hex()}"
                )
            self._last_hash = raw
        elif self._last_hash is not None:
            raise AggregationError("fedavg stream: give a hash for every update or for none")
        inputs = Inputs([update], "fedavg stream")
        if self._count and inputs.names != sorted(self._acc):
            raise AggregationError("fedavg stream: update has different tensor names than the first one")
        wf = np.float64(w)
        tmp_buf = np.empty(inputs.chunk_for(CHUNK), dtype=np.float64)
        for name, shape, dtype, (flat,) in inputs.layers():
            if self._count == 0:
                self._meta[name] = (shape, dtype)
                self._acc[name] = np.empty(flat.shape[0], dtype=np.float64)
            elif self._meta[name] != (shape, dtype):
                s0, d0 = self._meta[name]
                raise AggregationError(
                    f"fedavg stream: tensor {name!r} is {dtype}{list(shape)}, the first update had {d0}{list(s0)}"
                )
            acc = self._acc[name]
            with np.errstate(over="ignore", invalid="ignore"):
                for s, e in chunks(flat.shape[0], tmp_buf.shape[0]):
                    if self._count == 0:
                        a = acc[s:e]
                        a[...] = flat[s:e]
                        a *= wf
                    else:
                        tmp = tmp_buf[: e - s]
                        tmp[...] = flat[s:e]
                        tmp *= wf
                        acc[s:e] += tmp
            del flat
        self._total += w
        self._count += 1

    def result(self) -> Model:
        """The weighted mean of everything added so far, in the models' dtype."""
        if self._count == 0:
            raise AggregationError("fedavg stream: no update was added")
        if self._total == 0:
            raise AggregationError("fedavg stream: all weights are zero")
        out: Model = {}
        d = np.float64(self._total)
        for name in sorted(self._acc):
            shape, dtype = self._meta[name]
            with np.errstate(over="ignore", invalid="ignore"):
                o = (self._acc[name] / d).astype(dtype)
            if not np.isfinite(o).all():
                raise AggregationError(
                    f"fedavg stream: the result for {name!r} is not finite: an update held NaN or "
                    "infinity, or values overflow the dtype; filter non-finite updates first"
                )
            out[name] = o.reshape(shape)
        return out

