"""Byzantine-robust rules: coordinate median, trimmed mean, geometric median, Krum, Multi-Krum, Bulyan.

Determinism. The coordinate rules (median, trimmed mean) use only exact comparisons and a sum in
ascending value order, so they are bit-identical for any input order and machine. Geometric
median and the Krum family reduce over all coordinates; those sums use a fixed lane order
(``_core.LANES``) with an exactly rounded final ``math.fsum`` and every other step is a single
IEEE operation, so this implementation reproduces them bit for bit as well. Their verification
tolerance (see the registry) is there for independent implementations, and for the Krum family
it covers only the averaging: a different *selection* is a different aggregate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from ._core import (
    LANES,
    AggregationError,
    Inputs,
    Model,
    UpdateSource,
    block_chunk,
    chunks,
    lane_sum,
    padded,
    raise_non_finite,
    work_dtype,
)
from ._sortnet import sort_rows
from .mean import weighted_mean

# ---------------------------------------------------------------------------------------------
# parameter checks shared with the registry


def check_int(rule: str, name: str, value: Any, lo: int, hi: int | None = None) -> int:
    rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise AggregationError(f"{rule} parameter {name!r} must be an integer {rng}; got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        raise AggregationError(f"{rule} parameter {name!r} must be an integer {rng}; got {value}")
    return value


def check_float(
    rule: str, name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
) -> float:
    rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise AggregationError(f"{rule} parameter {name!r} must be a number in {rng}; got {value!r}")
    x = float(value)
    ok = math.isfinite(x) and (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)
    if not ok:
        raise AggregationError(f"{rule} parameter {name!r} must be a number in {rng}; got {value!r}")
    return x


def trim_count(beta: float, n: int) -> int:
    """Updates cut from each end: floor(beta * n), exact on beta's shortest decimal form."""
    return math.floor(Fraction(repr(float(beta))) * n)


# ---------------------------------------------------------------------------------------------
# coordinate-wise rules


def _load_sorted_block(
    inputs: Inputs, name: str, flats: Sequence[np.ndarray], buf: np.ndarray, s: int, e: int
) -> None:
    """Copy coordinates [s, e) of every update into buf, making -0.0 into +0.0; refuse non-finite."""
    m = e - s
    zero = buf.dtype.type(0)
    for i, x in enumerate(flats):
        np.add(x[s:e], zero, out=buf[i, :m])  # -0.0 + 0.0 == +0.0: equal values become equal bits
    block = buf[:, :m]
    if not (np.isfinite(block.min()) and np.isfinite(block.max())):
        raise_non_finite(inputs, name, flats)


def _coordinate_rule(inputs: Inputs, k: int) -> Model:
    """Mean of the sorted values k .. n-k-1 of every coordinate (k = (n-1)//2 gives the median)."""
    n = inputs.n
    keep = list(range(k, n - k))
    outputs = tuple(keep)
    count = np.float64(len(keep))
    result: Model = {}
    for name, shape, dtype, flats in inputs.layers():
        length = flats[0].shape[0]
        out = np.empty(length, dtype=dtype)
        wd = work_dtype(dtype)
        size = min(block_chunk(n, wd.itemsize), max(length, 1))
        buf = np.empty((n, size), dtype=wd)
        acc_buf = np.empty(size, dtype=np.float64)
        for s, e in chunks(length, size):
            _load_sorted_block(inputs, name, flats, buf, s, e)
            rows = sort_rows(buf, e - s, outputs)
            if len(keep) == 1:
                out[s:e] = rows[keep[0]]  # a value of the input: exact
                continue
            acc = acc_buf[: e - s]
            acc[...] = rows[keep[0]]
            for r in keep[1:]:
                acc += rows[r]
            acc /= count
            out[s:e] = acc
        if not np.isfinite(out).all():
            raise_non_finite(inputs, name, flats, " (the float64 mean overflows the model dtype)")
        result[name] = out.reshape(shape)
        del flats
    return result


def coordinate_median(
    updates: Sequence[UpdateSource],
    weights: Sequence[int | float] | None = None,
    *,
    hashes: Sequence[bytes | str] | None = None,
) -> Model:
    """Coordinate-wise median (Yin et al. 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates").

    Unweighted (weights are accepted and ignored, as sample counts are attacker-controlled).
    For an even number of updates the median is the float64 mean of the two middle values.
    Bit-identical for any input order and machine; -0.0 is returned as +0.0. Breakdown point:
    fewer than half of the updates may be arbitrary. Memory: one chunk of every update at a time.
    """
    inputs = Inputs(updates, "median", weights=weights, hashes=hashes)
    return _coordinate_rule(inputs, (inputs.n - 1) // 2)


def trimmed_mean(
    updates: Sequence[UpdateSource],
    beta: float = 0.2,
    weights: Sequence[int | float] | None = None,
    *,
    hashes: Sequence[bytes | str] | None = None,
) -> Model:
    """Coordinate-wise trimmed mean (Yin et al. 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates").

    beta in [0, 0.5): k = floor(beta * n) values are cut from each end of every coordinate (beta
    read as the decimal it is written as, so 0.29 * 100 cuts 29) and the rest averaged, summed in
    ascending order in float64. Unweighted. Bit-identical for any input order and machine.
    Tolerates up to k arbitrary updates.
    """
    beta = check_float("trimmed_mean", "beta", beta, 0.0, 0.5, hi_open=True)
    inputs = Inputs(updates, "trimmed_mean", weights=weights, hashes=hashes)
    return _coordinate_rule(inputs, trim_count(beta, inputs.n))


# ---------------------------------------------------------------------------------------------
# geometric median


def _load_padded(flats: Sequence[np.ndarray], xb: np.ndarray, s: int, e: int) -> int:
    """Copy coordinates [s, e) of every update into xb (float64), zero up to a whole lane; return the padded length."""
    m = e - s
    mp = padded(m)
    for i, x in enumerate(flats):
        xb[i, :m] = x[s:e]
    if mp > m:
        xb[:, m:mp] = 0.0
    return mp


def _lanes(block: np.ndarray) -> np.ndarray:
    """Per-lane sums of a (rows, k*LANES) block, sequential over k: shape (rows, LANES)."""
    rows = block.shape[0]
    return np.add.reduce(block.reshape(rows, -1, LANES), axis=1)


def _weiszfeld_pass(
    inputs: Inputs, coef: Sequence[float], previous: dict[str, np.ndarray] | None
) -> tuple[dict[str, np.ndarray], list[float], float, float]:
    """One pass over the data: v = sum(coef_i x_i) / sum(coef), then ||x_i - v||^2, ||v - previous||^2, ||v||^2."""
    n = inputs.n
    c = [np.float64(x) for x in coef]
    total = np.float64(0.0)
    for x in c:
        total += x
    dist_lanes = np.zeros((n, LANES))
    step_lanes = np.zeros((1, LANES))
    norm_lanes = np.zeros((1, LANES))
    size = inputs.chunk_for(block_chunk(n))
    xb = np.empty((n, size))
    db = np.empty((n, size))
    acc_buf = np.empty((1, size))
    tmp_buf = np.empty(size)
    estimate: dict[str, np.ndarray] = {}
    for name, _shape, _dtype, flats in inputs.layers():
        length = flats[0].shape[0]
        v = np.empty(length)
        for s, e in chunks(length, size):
            mp = _load_padded(flats, xb, s, e)
            acc = acc_buf[:, :mp]
            tmp = tmp_buf[:mp]
            np.multiply(xb[0, :mp], c[0], out=acc[0])
            for i in range(1, n):
                np.multiply(xb[i, :mp], c[i], out=tmp)
                acc[0] += tmp
            acc /= total
            v[s:e] = acc[0, : e - s]
            d = db[:, :mp]
            np.subtract(xb[:, :mp], acc, out=d)
            np.multiply(d, d, out=d)
            dist_lanes += _lanes(d)
            if previous is not None:
                dp = d[:1]
                dp[0, : e - s] = previous[name][s:e]
                dp[0, e - s :] = 0.0
                np.subtract(acc, dp, out=dp)
                np.multiply(dp, dp, out=dp)
                step_lanes += _lanes(dp)
            np.multiply(acc, acc, out=tmp[None, :])
            norm_lanes += _lanes(tmp[None, :])
        if not np.isfinite(v).all():
            raise_non_finite(inputs, name, flats)
        estimate[name] = v
        del flats
    dist2 = [lane_sum(dist_lanes[i]) for i in range(n)]
    return estimate, dist2, lane_sum(step_lanes[0]), lane_sum(norm_lanes[0])


def to_model(inputs: Inputs, flat: dict[str, np.ndarray], rule: str) -> Model:
    """A float64 estimate (flat, per tensor) cast back to each tensor's dtype and shape; a value the
    dtype cannot hold is an error, not an infinity in the global model. Consumes `flat` layer by
    layer, so the float64 estimate and the result are never both whole in memory."""
    result: Model = {}
    for name in inputs.names:
        shape, dtype = inputs._meta[name]
        out = flat.pop(name).astype(dtype)
        if not np.isfinite(out).all():
            raise AggregationError(f"{rule}: the result for {name!r} overflows {dtype}")
        result[name] = out.reshape(shape)
    return result


def geometric_median(
    updates: Sequence[UpdateSource],
    weights: Sequence[int | float] | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    eps: float = 1e-8,
    hashes: Sequence[bytes | str] | None = None,
    return_info: bool = False,
) -> Model | tuple[Model, dict[str, Any]]:
    """Geometric median by smoothed weighted Weiszfeld (Pillutla, Kakade, Harchaoui 2022, "Robust Aggregation for Federated Learning").

    Minimises sum_i w_i ||v - x_i|| over the whole model (all tensors as one vector), w_i the
    sample counts (uniform if None). Starts at the weighted mean; each iteration sets
    v <- sum(b_i x_i) / sum(b_i) with b_i = w_i / max(eps, ||v - x_i||).
    Stopping rule: after iteration k, stop if ||v_k - v_{k-1}|| <= tol * ||v_k||, or when k = max_iter
    (tol = 0 runs exactly max_iter iterations). max_iter in [1, 10000], tol in [0, 1), eps in (0, 1].
    Deterministic: canonical order, float64, fixed-lane sums; a verifier allows the registry's
    tolerance. Memory: two float64 copies of the model plus one chunk of every update.
    With return_info, also returns {"iterations", "converged", "objective", "relative_step"}.
    """
    max_iter = check_int("geomedian", "max_iter", max_iter, 1, 10000)
    tol = check_float("geomedian", "tol", tol, 0.0, 1.0, hi_open=True)
    eps = check_float("geomedian", "eps", eps, 0.0, 1.0, lo_open=True)
    inputs = Inputs(updates, "geomedian", weights=weights, hashes=hashes)
    w = inputs.weights
    with np.errstate(over="ignore", invalid="ignore"):
        estimate, dist2, _, _ = _weiszfeld_pass(inputs, w, None)
    iterations, converged, rel_step = 0, False, math.inf
    while iterations < max_iter:
        coef = [wi / max(eps, math.sqrt(d2)) for wi, d2 in zip(w, dist2)]
        with np.errstate(over="ignore", invalid="ignore"):
            estimate, dist2, step2, norm2 = _weiszfeld_pass(inputs, coef, estimate)
        iterations += 1
        step, norm = math.sqrt(step2), math.sqrt(norm2)
        rel_step = step / norm if norm > 0 else (0.0 if step == 0 else math.inf)
        if step <= tol * norm:
            converged = True
            break
    result = to_model(inputs, estimate, "geomedian")
    if not return_info:
        return result
    objective = 0.0
    for wi, d2 in zip(w, dist2):
        objective += wi * math.sqrt(d2)
    info = {
        "iterations": iterations,
        "converged": converged,
        "objective": objective,
        "relative_step": rel_step,
    }
    return result, info


# ---------------------------------------------------------------------------------------------
# Krum family


def _pairwise(inputs: Inputs) -> np.ndarray:
    """Squared Euclidean distances between all updates (canonical order), fixed-lane float64 sums."""
    n = inputs.n
    lanes = np.zeros((n, n, LANES))
    size = inputs.chunk_for(block_chunk(n))
    xb = np.empty((n, size))
    db = np.empty((n, size))
    for name, _shape, _dtype, flats in inputs.layers():
        for s, e in chunks(flats[0].shape[0], size):
            mp = _load_padded(flats, xb, s, e)
            for i in range(n - 1):
                d = db[: n - 1 - i, :mp]
                np.subtract(xb[i + 1 :, :mp], xb[i, :mp], out=d)
                np.multiply(d, d, out=d)
                lanes[i, i + 1 :] += _lanes(d)
        del flats
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = lane_sum(lanes[i, j])
    if not np.isfinite(dist).all():
        for name, _shape, _dtype, flats in inputs.layers():
            for pos, x in enumerate(flats):
                if not np.isfinite(x).all():
                    raise_non_finite(inputs, name, flats)
        raise AggregationError(f"{inputs.rule}: squared distances overflow float64; values are too large")
    return dist


def _scores(dist: np.ndarray, positions: Sequence[int], f: int) -> dict[int, float]:
    """Krum score of each position: sum of its n' - f - 2 smallest distances to the others (at least 1)."""
    k = min(max(1, len(positions) - f - 2), len(positions) - 1)
    scores = {}
    for i in positions:
        near = sorted(float(dist[i, j]) for j in positions if j != i)
        total = 0.0
        for x in near[:k]:
            total += x
        scores[i] = total
    return scores


def _best(scores: dict[int, float], count: int) -> list[int]:
    """The `count` lowest scores; ties go to the lower canonical position (lower hash)."""
    return sorted(scores, key=lambda i: (scores[i], i))[:count]


def _check_krum(rule: str, n: int, f: Any) -> int:
    f = check_int(rule, "f", f, 0)
    if not n > 2 * f + 2:
        raise AggregationError(
            f"{rule} needs n > 2f + 2 updates: got n={n}, f={f} "
            f"(needs at least {2 * f + 3} updates, or f <= {max(0, (n - 3) // 2)})"
        )
    return f


def krum_scores(
    updates: Sequence[UpdateSource], f: int, *, hashes: Sequence[bytes | str] | None = None
) -> list[float]:
    """Krum scores (Blanchard et al. 2017), one per update in the order given; lower is more central."""
    inputs = Inputs(updates, "krum", hashes=hashes)
    f = _check_krum("krum", inputs.n, f)
    with np.errstate(over="ignore", invalid="ignore"):
        dist = _pairwise(inputs)
    scores = _scores(dist, range(inputs.n), f)
    by_input = [0.0] * inputs.n
    for pos, original in enumerate(inputs.order):
        by_input[original] = scores[pos]
    return by_input


def krum(
    updates: Sequence[UpdateSource],
    f: int,
    weights: Sequence[int | float] | None = None,
    *,
    hashes: Sequence[bytes | str] | None = None,
) -> Model:
    """Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent").

    Returns a copy of the update whose squared distances to its n - f - 2 nearest neighbours sum
    lowest. f >= 0 with n > 2f + 2. Weights are ignored. Ties go to the lower hash. Scores are
    reproducible bit for bit (fixed-lane float64 sums), so the choice is too.
    """
    inputs = Inputs(updates, "krum", weights=weights, hashes=hashes)
    f = _check_krum("krum", inputs.n, f)
    with np.errstate(over="ignore", invalid="ignore"):
        dist = _pairwise(inputs)
    (chosen,) = _best(_scores(dist, range(inputs.n), f), 1)
    return inputs.single(chosen)


def multi_krum(
    updates: Sequence[UpdateSource],
    f: int,
    m: int | None = None,
    weights: Sequence[int | float] | None = None,
    *,
    weighted: bool = False,
    hashes: Sequence[bytes | str] | None = None,
) -> Model:
    """Multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent").

    Averages the m updates with the lowest Krum scores: uniformly as in the paper, or weighted by
    sample counts with weighted=True (what Flower's MultiKrum does). f >= 0 with n > 2f + 2;
    m in [1, n - f], default n - f. The mean uses FedAvg's fixed order, so the result is
    bit-identical whenever the selection is.
    """
    inputs = Inputs(updates, "multikrum", weights=weights, hashes=hashes)
    n = inputs.n
    f = _check_krum("multikrum", n, f)
    if m is None:
        m = n - f
    m = check_int("multikrum", "m", m, 1)
    if m > n - f:
        raise AggregationError(f"multikrum parameter 'm' must be in [1, n - f] = [1, {n - f}]; got {m}")
    if not isinstance(weighted, (bool, np.bool_)):
        raise AggregationError(f"multikrum parameter 'weighted' must be true or false; got {weighted!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        dist = _pairwise(inputs)
    chosen = _best(_scores(dist, range(n), f), m)
    sub = inputs.subset(chosen)
    if weighted:
        if not any(sub.weights):
            raise AggregationError("multikrum: the selected updates all have zero weight")
        return weighted_mean(sub)
    return weighted_mean(sub, [1.0] * sub.n)


def _bulyan_select(dist: np.ndarray, n: int, f: int) -> list[int]:
    """Recursive Krum: theta = n - 2f picks, each Krum over what remains (n' - f - 2 neighbours, at least 1)."""
    remaining = list(range(n))
    chosen: list[int] = []
    for _ in range(n - 2 * f):
        (best,) = _best(_scores(dist, remaining, f), 1)
        chosen.append(best)
        remaining.remove(best)
    return chosen


def bulyan(
    updates: Sequence[UpdateSource],
    f: int,
    weights: Sequence[int | float] | None = None,
    *,
    hashes: Sequence[bytes | str] | None = None,
) -> Model:
    """Bulyan (El Mhamdi, Guerraoui, Rouault 2018, "The Hidden Vulnerability of Distributed Learning in Byzantium").

    Picks theta = n - 2f updates by recursive Krum, then for every coordinate averages the
    beta = theta - 2f selected values closest to their median (dropping, 2f times, whichever end
    of the sorted values is farther from the median; the upper end on a tie). f >= 0 with
    n >= 4f + 3. Unweighted. Bit-identical whenever the selection is.
    """
    inputs = Inputs(updates, "bulyan", weights=weights, hashes=hashes)
    n = inputs.n
    f = check_int("bulyan", "f", f, 0)
    if n < 4 * f + 3:
        raise AggregationError(
            f"bulyan needs n >= 4f + 3 updates: got n={n}, f={f} "
            f"(needs at least {4 * f + 3} updates, or f <= {max(0, (n - 3) // 4)})"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        dist = _pairwise(inputs)
    chosen = _bulyan_select(dist, n, f)
    sub = inputs.subset(chosen)
    theta = sub.n
    beta = theta - 2 * f
    outputs = tuple(range(theta))
    result: Model = {}
    for name, shape, dtype, flats in sub.layers():
        length = flats[0].shape[0]
        out = np.empty(length, dtype=dtype)
        wd = work_dtype(dtype)
        size = min(block_chunk(theta, wd.itemsize), max(length, 1))
        buf = np.empty((theta, size), dtype=wd)
        for s, e in chunks(length, size):
            m = e - s
            _load_sorted_block(sub, name, flats, buf, s, e)
            rows = np.stack(sort_rows(buf, m, outputs)).astype(np.float64)
            if theta % 2:
                med = rows[theta // 2]
            else:
                med = (rows[theta // 2 - 1] + rows[theta // 2]) * 0.5
            lo = np.zeros(m, dtype=np.intp)
            hi = np.full(m, theta - 1, dtype=np.intp)
            cols = np.arange(m)
            for _ in range(2 * f):
                drop_low = (med - rows[lo, cols]) > (rows[hi, cols] - med)
                lo += drop_low
                hi -= ~drop_low
            acc = np.zeros(m)
            for r in range(theta):
                np.add(acc, rows[r], out=acc, where=(lo <= r) & (r <= hi))
            acc /= np.float64(beta)
            out[s:e] = acc
        if not np.isfinite(out).all():
            raise_non_finite(sub, name, flats)
        result[name] = out.reshape(shape)
        del flats
    return result
