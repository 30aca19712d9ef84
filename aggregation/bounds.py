"""Bounds on what one update can do, applied before any rule: its weight and the size of its change.

Weights (sample counts) are claims a member makes about itself. ``cap_weights`` clips each claim
at ``cap`` times the median claim of the round, so a member that lies about its data buys at most
a bounded share of the aggregate: with n members and ``cap`` c, at most c / (n - 1 + c).

Updates are checked by the L2 norm of their change from the parent model, ``||x - parent||``
over all tensors together (norm bounding, Sun et al. 2019, "Can You Really Backdoor Federated
Learning?"). The bound is an absolute ``max_norm``, or ``norm_cap`` times the median change of
the round, or the smaller of both; an update beyond it is either scaled back onto the bound
(``parent + (x - parent) * bound / norm``) or excluded.

Determinism: the norms are fixed-lane float64 sums with an exactly rounded final sum (as the Krum
family's distances), the median is an exact comparison, and the scaling is one IEEE operation per
coordinate in float64 before the cast to the model's dtype; the leader, every verifier and the
audit get the same decisions and the same bits on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._core import LANES, AggregationError, UpdateSource, chunks, lane_sum, padded

CHUNK_ELEMENTS = 1 << 16


def median(values: Sequence[float]) -> float:
    """The median of a non-empty list (the mean of the two middle values for an even count)."""
    s = sorted(float(v) for v in values)
    if not s:
        raise AggregationError("median of no values")
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2.0


def cap_weights(weights: Sequence[float], cap: float) -> list[float]:
    """Each weight clipped at `cap` x the median weight (cap 0: unchanged)."""
    ws = [float(w) for w in weights]
    if cap <= 0 or not ws:
        return ws
    limit = cap * median(ws)
    return [min(w, limit) for w in ws]


def _tensor(src: UpdateSource, name: str) -> np.ndarray:
    return np.asarray(src.get_tensor(name) if hasattr(src, "get_tensor") else src[name])


def _names(src: UpdateSource) -> list[str]:
    return sorted(src.keys())


def change_norm(update: UpdateSource, parent: UpdateSource, names: Sequence[str] | None = None) -> float:
    """||update - parent||_2 over the tensors `names` (default: all of the parent's), in float64
    with fixed-lane partial sums; inf when it overflows float64."""
    lanes = np.zeros(LANES)
    buf = np.empty(CHUNK_ELEMENTS)
    for name in sorted(names if names is not None else _names(parent)):
        x = np.ascontiguousarray(_tensor(update, name)).reshape(-1)
        p = np.ascontiguousarray(_tensor(parent, name)).reshape(-1)
        if x.shape != p.shape:
            raise AggregationError(f"tensor {name!r} has {x.size} values, the parent's has {p.size}")
        for s, e in chunks(x.shape[0], CHUNK_ELEMENTS):
            m, mp = e - s, padded(e - s)
            d = buf[:mp]
            with np.errstate(over="ignore", invalid="ignore"):
                np.subtract(x[s:e], p[s:e], out=d[:m], dtype=np.float64)
                d[m:] = 0.0
                np.multiply(d, d, out=d)
            lanes += np.add.reduce(d.reshape(-1, LANES), axis=0)
    total = lane_sum(lanes)
    return math.sqrt(total) if math.isfinite(total) else math.inf


class Clipped:
    """An update scaled back onto a norm bound: parent + (x - parent) * scale, per tensor, in
    float64, then the update's dtype. Read lazily, like any update source."""

    def __init__(self, update: UpdateSource, parent: UpdateSource, scale: float):
        self._update, self._parent, self._scale = update, parent, float(scale)

    def keys(self) -> list[str]:
        return list(self._update.keys())

    def get_tensor(self, name: str) -> np.ndarray:
        x = _tensor(self._update, name)
        p = np.asarray(_tensor(self._parent, name), dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            out = (np.asarray(x, dtype=np.float64) - p) * np.float64(self._scale) + p
        return out.astype(x.dtype)


def norm_bound(norms: Sequence[float], max_norm: float, norm_cap: float) -> float | None:
    """The bound for this round: `max_norm`, `norm_cap` x the median finite norm, the smaller of
    both, or None when neither is set."""
    bounds = []
    if max_norm > 0:
        bounds.append(max_norm)
    if norm_cap > 0:
        finite = [n for n in norms if math.isfinite(n)]
        if finite:
            bounds.append(norm_cap * median(finite))
    return min(bounds) if bounds else None


def bound_updates(
    updates: Sequence[UpdateSource],
    parent: UpdateSource | None,
    *,
    max_norm: float = 0.0,
    norm_cap: float = 0.0,
    clip: bool = True,
    names: Sequence[str] | None = None,
) -> tuple[list[UpdateSource], list[int], list[int], list[float]]:
    """Apply the norm bound: (sources, excluded positions, clipped positions, norms). Updates
    within the bound come back as given; with `clip` those beyond it come back scaled onto it,
    without it they are excluded (and so are updates whose change overflows float64)."""
    if max_norm <= 0 and norm_cap <= 0:
        return list(updates), [], [], []
    if parent is None:
        raise AggregationError("a norm bound needs the parent model")
    norms = [change_norm(u, parent, names) for u in updates]
    bound = norm_bound(norms, max_norm, norm_cap)
    out: list[UpdateSource] = []
    excluded: list[int] = []
    clipped: list[int] = []
    for i, (u, n) in enumerate(zip(updates, norms)):
        if bound is None or n <= bound:
            out.append(u)
        elif clip and math.isfinite(n) and n > 0:
            out.append(Clipped(u, parent, bound / n))
            clipped.append(i)
        else:
            out.append(u)
            excluded.append(i)
    return out, excluded, clipped, norms
