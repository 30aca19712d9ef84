"""Bounds on what one update can do, applied before any rule: its weight, its direction and the
size of its change.

Weights (sample counts) are claims a member makes about itself. ``cap_weights`` clips each claim
at ``cap`` times the median claim of the round, so a member that lies about its data buys at most
a bounded share of the aggregate: with n members and ``cap`` c, at most c / (n - 1 + c).

Updates are checked by the L2 norm of their change from the parent model, ``||x - parent||``
over all tensors together (norm bounding, Sun et al. 2019, "Can You Really Backdoor Federated
Learning?"). The bound is an absolute ``max_norm``, or ``norm_cap`` times the median change of
the round, or the smaller of both; an update beyond it is either scaled back onto the bound
(``parent + (x - parent) * bound / norm``) or excluded.

The direction check (``direction_scores``, ``misaligned``) excludes an update whose change does
not point along the round's consensus: the coordinate median of the changes plus the parent's own
step from its parent (history no attacker of this round shapes). The medians of the norm bounds
are then taken over the updates left, so the excluded ones (IPM's tiny opposed updates) cannot
shrink them; ``norm_drop`` excludes changes beyond a multiple of that median.

Determinism: the norms are fixed-lane float64 sums with an exactly rounded final sum (as the Krum
family's distances), the median is an exact comparison, and the scaling is one IEEE operation per
coordinate in float64 before the cast to the model's dtype; the leader, every verifier and the
audit get the same decisions and the same bits on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

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


def direction_scores(
    updates: Sequence[UpdateSource],
    parent: UpdateSource,
    previous: UpdateSource | None,
    names: Sequence[str] | None = None,
) -> tuple[list[float], list[float]]:
    """(norms, scores): ||x_i - parent|| and how far each change points along the round's consensus,

        score_i = <d_i, m> / ||m|| + <d_i, s> / ||s||,   d_i = x_i - parent,

    where m is the coordinate-wise median of the changes (the mean of the two middle values for an
    even count) and s = parent - previous is the parent's own step (the last finalized round's
    move); a term whose vector is zero or absent (round 1 has no previous model) is left out.
    float64 elementwise, fixed-lane sums with an exactly rounded total, like `change_norm`: the same
    bits on every machine. One layer of every update is read at a time."""
    n = len(updates)
    if n == 0:
        return [], []
    dot_m = np.zeros((n, LANES))
    dot_s = np.zeros((n, LANES))
    sq = np.zeros((n, LANES))
    mm = np.zeros(LANES)
    ss = np.zeros(LANES)
    k = n // 2
    for name in sorted(names if names is not None else _names(parent)):
        p = np.ascontiguousarray(_tensor(parent, name)).reshape(-1)
        q = None if previous is None else np.ascontiguousarray(_tensor(previous, name)).reshape(-1)
        xs = [np.ascontiguousarray(_tensor(u, name)).reshape(-1) for u in updates]
        for i, x in enumerate(xs):
            if x.shape != p.shape:
                raise AggregationError(f"tensor {name!r} of update {i} has {x.size} values, the parent's has {p.size}")
        if q is not None and q.shape != p.shape:
            raise AggregationError(f"tensor {name!r} of the previous model has {q.size} values, the parent's has {p.size}")
        # Chunks of CHUNK_ELEMENTS, as change_norm: a lane adds its chunk's partial sum to its
        # running total, so the chunk length is part of the arithmetic (and the norms here are
        # change_norm's, bit for bit).
        d = np.empty((n, CHUNK_ELEMENTS))
        st = np.empty(CHUNK_ELEMENTS)
        for s, e in chunks(p.shape[0], CHUNK_ELEMENTS):
            m, mp = e - s, padded(e - s)
            block = d[:, :mp]
            with np.errstate(over="ignore", invalid="ignore"):
                for i, x in enumerate(xs):
                    np.subtract(x[s:e], p[s:e], out=block[i, :m], dtype=np.float64)
                block[:, m:] = 0.0
                srt = np.sort(block, axis=0)
                med = srt[k] if n % 2 else (srt[k - 1] + srt[k]) / 2.0
                mm += np.add.reduce((med * med).reshape(-1, LANES), axis=0)
                dot_m += np.add.reduce((block * med).reshape(n, -1, LANES), axis=1)
                sq += np.add.reduce((block * block).reshape(n, -1, LANES), axis=1)
                if q is not None:
                    step = st[:mp]
                    np.subtract(p[s:e], q[s:e], out=step[:m], dtype=np.float64)
                    step[m:] = 0.0
                    ss += np.add.reduce((step * step).reshape(-1, LANES), axis=0)
                    dot_s += np.add.reduce((block * step).reshape(n, -1, LANES), axis=1)
        del xs
    norms = []
    for i in range(n):
        t = lane_sum(sq[i])
        norms.append(math.sqrt(t) if math.isfinite(t) else math.inf)
    m_norm = math.sqrt(lane_sum(mm))
    s_norm = math.sqrt(lane_sum(ss)) if previous is not None else 0.0
    scores = []
    for i in range(n):
        score = 0.0
        if m_norm > 0 and math.isfinite(m_norm):
            score += lane_sum(dot_m[i]) / m_norm
        if s_norm > 0 and math.isfinite(s_norm):
            score += lane_sum(dot_s[i]) / s_norm
        scores.append(score)
    return norms, scores


def misaligned(norms: Sequence[float], scores: Sequence[float], ratio: float) -> list[int]:
    """Positions whose alignment a_i = score_i / ||d_i|| (proportional to the cosine between the
    change and the consensus direction) is not above max(0, ratio x the median alignment of the
    round). When no update is above it, none is excluded (there is no consensus to measure against).
    Plain float64 arithmetic and an exact median: the same decisions on every machine."""
    align = [sc / x if math.isfinite(sc) and math.isfinite(x) and x > 0 else -math.inf
             for sc, x in zip(scores, norms)]
    finite = [a for a in align if math.isfinite(a)]
    if not finite:
        return []
    threshold = max(0.0, ratio * median(finite))
    out = [i for i, a in enumerate(align) if not a > threshold]
    return out if len(out) < len(align) else []


@dataclass
class BoundResult:
    """What the bounds did to a round's updates, positions in the given order."""

    updates: list[UpdateSource]  # every update, the clipped ones replaced by their clipped view
    excluded: list[int]  # beyond the norm bound (`norm_exceeded`)
    clipped: list[int]  # scaled back onto the norm bound
    norms: list[float]  # ||x - parent|| of each update (empty when no bound was set)
    opposed: list[int] = field(default_factory=list)  # pointing away from the consensus (`opposed`)


def bound_updates(
    updates: Sequence[UpdateSource],
    parent: UpdateSource | None,
    *,
    max_norm: float = 0.0,
    norm_cap: float = 0.0,
    clip: bool = True,
    names: Sequence[str] | None = None,
    direction: bool = False,
    norm_drop: float = 0.0,
    previous: UpdateSource | None = None,
    direction_ratio: float = 0.25,
    hard_max: float = 0.0,
) -> BoundResult:
    """Apply the bounds, in this order:

    0. `hard_max` > 0: an update whose change is longer is excluded (`norm_exceeded`) before
       anything else (a differentially private task's bound, `noised_norm_bound`).
    1. `direction`: an update that is not aligned with the round's consensus (`misaligned`, over
       the updates step 0 left) is excluded as `opposed`.
    2. The reference norm is the median change norm of the updates still in.
    3. `norm_drop` > 0: an update whose change norm exceeds norm_drop x the reference is excluded.
    4. The norm bound (`max_norm`, `norm_cap` x the reference, or the smaller): with `clip` an
       update beyond it is scaled back onto it, without it excluded (so are updates whose change
       overflows float64).

    Updates within every bound come back as given."""
    if max_norm <= 0 and norm_cap <= 0 and norm_drop <= 0 and not direction and hard_max <= 0:
        return BoundResult(list(updates), [], [], [])
    if parent is None:
        raise AggregationError("a norm bound or a direction check needs the parent model")
    opposed: list[int] = []
    hard: set[int] = set()
    norms = [change_norm(u, parent, names) for u in updates] if hard_max > 0 or not direction else []
    if hard_max > 0:
        hard = {i for i, x in enumerate(norms) if not x <= hard_max}
    if direction:  # over the updates the DP bound left: what it excluded shapes no median
        rest = [i for i in range(len(updates)) if i not in hard]
        rest_norms, scores = direction_scores([updates[i] for i in rest], parent, previous, names)
        if not norms:
            norms = rest_norms  # no DP bound: every update is in `rest`, in order
        opposed = [rest[j] for j in misaligned(rest_norms, scores, direction_ratio)]
    gone = set(opposed) | hard
    reference = [x for i, x in enumerate(norms) if i not in gone and math.isfinite(x)]
    drop = norm_drop * median(reference) if norm_drop > 0 and reference else None
    bound = norm_bound(reference, max_norm, norm_cap)
    out: list[UpdateSource] = []
    excluded: list[int] = []
    clipped: list[int] = []
    for i, (u, x) in enumerate(zip(updates, norms)):
        if i in hard:
            out.append(u)
            excluded.append(i)
        elif i in gone:
            out.append(u)
        elif drop is not None and not x <= drop:
            out.append(u)
            excluded.append(i)
        elif bound is None or x <= bound:
            out.append(u)
        elif clip and math.isfinite(x) and x > 0:
            out.append(Clipped(u, parent, bound / x))
            clipped.append(i)
        else:
            out.append(u)
            excluded.append(i)
    return BoundResult(out, excluded, clipped, norms, opposed)


def noised_norm_bound(clip: float, noise: float, dims: int, tail: float = 40.0) -> float:
    """An upper bound on ||clipped change + N(0, (noise x clip)^2 I_d)|| that an honest member's
    differentially private update exceeds with probability below e^-tail (Laurent and Massart
    2000: P(chi2_d >= d + 2 sqrt(d t) + 2 t) <= e^-t)."""
    sigma = noise * clip
    return clip + sigma * math.sqrt(dims + 2.0 * math.sqrt(dims * tail) + 2.0 * tail)
