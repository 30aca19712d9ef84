"""Centered clipping (Karimireddy, He, Jaggi 2021, "Learning from History for Byzantine Robust
Optimization"), in the stateless form a round can verify.

The paper centres each round on the previous aggregate's momentum; a round here carries no state
between rounds, so the centre starts at the coordinate-wise median of the round's updates (a
robust estimate any verifier recomputes bit for bit). Then, `iters` times, over the whole model
as one vector:

    v <- v + (1/n) * sum_i (x_i - v) * min(1, tau / ||x_i - v||)

An update farther than `tau` from the centre moves it by at most `tau / n`, whatever its size or
direction, so a minority cannot drag the centre far; an update within `tau` counts in full, so on
heterogeneous honest data the rule stays close to the mean instead of the median. `tau = 0` (the
default) picks the radius each round as the median of ||x_i - v_0||: scale-free, and half the
updates are never clipped in the first step.

Deterministic: canonical order, float64, fixed-lane sums (the same primitives as geomedian). A
verifier allows the registry's tolerance, as for every iterative rule. Memory: one float64 copy of
the model plus one layer of every update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._core import LANES, Inputs, Model, UpdateSource, block_chunk, chunks, lane_sum
from .bounds import median
from .robust import _lanes, _load_padded, check_float, check_int, coordinate_median, to_model


def centered_clipping(
    updates: Sequence[UpdateSource],
    weights: Sequence[int | float] | None = None,
    *,
    tau: float = 0.0,
    iters: int = 3,
    hashes: Sequence[bytes | str] | None = None,
) -> Model:
    """Centered clipping from the coordinate median; see the module. Unweighted (weights are
    accepted and ignored: sample counts are the attacker's to claim). tau in [0, 1e30] (0: the
    round's median distance to the median), iters in [1, 100]."""
    tau = check_float("cclip", "tau", tau, 0.0, 1e30)
    iters = check_int("cclip", "iters", iters, 1, 100)
    inputs = Inputs(updates, "cclip", weights=weights, hashes=hashes)
    start = coordinate_median(updates, hashes=hashes)
    centre = {}
    for name in inputs.names:  # one layer at a time: the float32 start and the float64 centre never both whole
        centre[name] = np.asarray(start.pop(name), dtype=np.float64).ravel()
    radius = tau
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(iters):
            dist = [math.sqrt(d2) for d2 in _distances2(inputs, centre)]
            if step == 0 and tau == 0.0:
                radius = median(dist)
            coef = [1.0 if d <= radius else radius / d for d in dist]
            _move(inputs, centre, coef)
    return to_model(inputs, centre, "cclip")


def _distances2(inputs: Inputs, centre: dict[str, np.ndarray]) -> list[float]:
    """||x_i - centre||^2 for every update, fixed-lane float64 sums."""
    n = inputs.n
    lanes = np.zeros((n, LANES))
    size = inputs.chunk_for(block_chunk(n))
    xb = np.empty((n, size))
    db = np.empty((n, size))
    cb = np.empty((1, size))
    for name, _shape, _dtype, flats in inputs.layers():
        for s, e in chunks(flats[0].shape[0], size):
            mp = _load_padded(flats, xb, s, e)
            c = cb[:, :mp]
            c[0, : e - s] = centre[name][s:e]
            c[0, e - s :] = 0.0
            d = db[:, :mp]
            np.subtract(xb[:, :mp], c, out=d)
            np.multiply(d, d, out=d)
            lanes += _lanes(d)
        del flats
    return [lane_sum(lanes[i]) for i in range(n)]


def _move(inputs: Inputs, centre: dict[str, np.ndarray], coef: Sequence[float]) -> None:
    """centre <- centre + (1/n) * sum_i coef_i (x_i - centre), the sum in canonical order, float64,
    in place: each chunk of the centre is read for its own new value only, so memory stays one
    float64 copy of the model."""
    n = inputs.n
    c = [np.float64(x) for x in coef]
    size = inputs.chunk_for(block_chunk(n))
    xb = np.empty((n, size))
    acc = np.empty(size)
    tmp = np.empty(size)
    for name, _shape, _dtype, flats in inputs.layers():
        v = centre[name]
        for s, e in chunks(flats[0].shape[0], size):
            _load_padded(flats, xb, s, e)
            m = e - s
            np.subtract(xb[0, :m], v[s:e], out=acc[:m])
            acc[:m] *= c[0]
            for i in range(1, n):
                np.subtract(xb[i, :m], v[s:e], out=tmp[:m])
                tmp[:m] *= c[i]
                acc[:m] += tmp[:m]
            acc[:m] /= np.float64(n)
            np.add(v[s:e], acc[:m], out=v[s:e])
        del flats
