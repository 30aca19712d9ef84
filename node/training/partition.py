"""Splitting one labelled dataset among organisations, the way FL papers simulate non-IID data.

``partition(y, num_orgs, scheme, seed)`` returns one sorted int64 index array per organisation.
Schemes:

    iid             a random permutation cut into num_orgs near-equal parts (sizes differ by <= 1)
    dirichlet:ALPHA label skew (Hsu et al. 2019; NIID-Bench, Li et al. 2022): for every class,
                    the proportions going to each organisation are drawn from Dirichlet(ALPHA);
                    small ALPHA (0.1) is very skewed, large (100) is near IID
    shards:K        pathological skew (McMahan et al. 2017): num_orgs*K shards, each inside one
                    class, K per organisation, so an organisation holds at most K classes
    skew:DEF        the classes are dealt into num_orgs disjoint groups; each organisation keeps
                    every example of its group plus a fraction DEF (0..1) of every other class

iid, dirichlet and shards are partitions: every index goes to exactly one organisation. skew is
not: the DEF-fraction of a class held by others is sampled independently per organisation
(without replacement within one organisation), so organisations may share those examples, and
an example may be held by its group's owner and by others at the same time. Every index is held
by at least its owner.

Minimum sizes. iid and shards never leave an organisation empty (they need len(y) >= num_orgs,
resp. >= num_orgs*K). dirichlet guarantees ``min_samples`` examples per organisation (default
``min(10, len(y) // num_orgs)``; pass the batch size to promise one full batch): like
NIID-Bench it redraws the proportions while some organisation falls short, up to 100 draws,
keeps the draw with the largest minimum, and if even that falls short it moves randomly chosen
examples from the largest organisations to the short ones, which perturbs the label skew
slightly but always ends. skew gives every organisation at least its own classes.

Everything is a deterministic function of (y, num_orgs, scheme, seed, min_samples) for a given
numpy version (numpy's ``default_rng``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

SCHEMES_HELP = (
    "valid schemes: 'iid'; 'dirichlet:ALPHA' with ALPHA > 0 (e.g. dirichlet:0.5); "
    "'shards:K' with K >= 1 classes per organisation (e.g. shards:2); "
    "'skew:DEF' with 0 <= DEF <= 1 the fraction of every other class (e.g. skew:0.2)"
)

DIRICHLET_MAX_DRAWS = 100


class Scheme(NamedTuple):
    kind: str  # "iid", "dirichlet", "shards" or "skew"
    param: float | int | None


def parse_scheme(scheme: str) -> Scheme:
    """Parse a scheme string; ValueError listing the valid schemes if it is not one."""
    if not isinstance(scheme, str):
        raise ValueError(f"partition scheme must be a string, got {scheme!r}; {SCHEMES_HELP}")
    kind, sep, arg = scheme.strip().partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind == "iid" and not sep:
        return Scheme("iid", None)
    if kind in ("dirichlet", "skew") and sep:
        try:
            value = float(arg)
        except ValueError:
            value = math.nan
        if kind == "dirichlet" and math.isfinite(value) and value > 0:
            return Scheme("dirichlet", value)
        if kind == "skew" and 0.0 <= value <= 1.0:
            return Scheme("skew", value)
        what = "ALPHA must be a number > 0" if kind == "dirichlet" else "DEF must be a number in [0, 1]"
        raise ValueError(f"bad partition scheme {scheme!r}: {what}; {SCHEMES_HELP}")
    if kind == "shards" and sep:
        if arg.isdigit() and int(arg) >= 1:
            return Scheme("shards", int(arg))
        raise ValueError(f"bad partition scheme {scheme!r}: K must be an integer >= 1; {SCHEMES_HELP}")
    raise ValueError(f"unknown partition scheme {scheme!r}; {SCHEMES_HELP}")


def partition(
    y: np.ndarray, num_orgs: int, scheme: str, seed: int, *, min_samples: int | None = None
) -> list[np.ndarray]:
    """Indices into ``y`` for each of ``num_orgs`` organisations (sorted int64 arrays).

    ``min_samples`` applies to dirichlet (see the module docstring); the other schemes ignore it.
    """
    parsed = parse_scheme(scheme)
    labels = _check_labels(y)
    _check_int("num_orgs", num_orgs, 1)
    _check_int("seed", seed, 0)
    n = len(labels)
    if n < num_orgs:
        raise ValueError(f"cannot give {num_orgs} organisations at least one example each from {n} examples")
    rng = np.random.default_rng(seed)
    if parsed.kind == "iid":
        parts = np.array_split(rng.permutation(n), num_orgs)
    elif parsed.kind == "dirichlet":
        if min_samples is None:
            min_samples = min(10, n // num_orgs)
        _check_int("min_samples", min_samples, 1)
        if min_samples * num_orgs > n:
            raise ValueError(
                f"cannot give {num_orgs} organisations {min_samples} examples each from {n} examples; "
                "lower min_samples or the number of organisations"
            )
        parts = _dirichlet(labels, num_orgs, float(parsed.param), min_samples, rng)  # type: ignore[arg-type]
    elif parsed.kind == "shards":
        parts = _shards(labels, num_orgs, int(parsed.param), rng)  # type: ignore[arg-type]
    else:
        parts = _skew(labels, num_orgs, float(parsed.param), rng)  # type: ignore[arg-type]
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def check_partition(workload: str, scheme: str, num_orgs: int, seed: int, data: str | None = None) -> None:
    """`InputError` unless the built-in `workload`'s training data splits into `num_orgs` shares
    by `scheme`: a command checks this before it starts anything, not after its nodes fail."""
    from ..errors import InputError
    from .workloads import get_workload

    parse_scheme(scheme)
    y_train = get_workload(workload).load_data(data)[1]
    try:
        partition(y_train, num_orgs, scheme, seed)
    except ValueError as exc:
        raise InputError(f"{workload} cannot be split {scheme} among {num_orgs} organisations: {exc}") from exc


def label_counts(y: np.ndarray, parts: list[np.ndarray], num_classes: int | None = None) -> np.ndarray:
    """Examples per (organisation, class): the label distribution a report shows."""
    labels = _check_labels(y)
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    return np.stack([np.bincount(labels[p], minlength=k) for p in parts]) if parts else np.zeros((0, k), np.int64)


# --------------------------------------------------------------------------- schemes


def _by_class(labels: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


def _dirichlet(
    labels: np.ndarray, num_orgs: int, alpha: float, min_samples: int, rng: np.random.Generator
) -> list[np.ndarray]:
    classes = _by_class(labels)
    best: list[np.ndarray] | None = None
    best_min = -1
    for _ in range(DIRICHLET_MAX_DRAWS):
        chunks: list[list[np.ndarray]] = [[] for _ in range(num_orgs)]
        for idx in classes:
            idx = rng.permutation(idx)
            p = rng.dirichlet(np.full(num_orgs, alpha))
            if not np.isfinite(p).all() or p.sum() <= 0:  # underflow at tiny alpha: all to one org
                p = np.eye(num_orgs)[rng.integers(num_orgs)]
            cuts = np.floor(np.cumsum(p)[:-1] * len(idx)).astype(np.int64)
            for j, piece in enumerate(np.split(idx, np.clip(cuts, 0, len(idx)))):
                chunks[j].append(piece)
        parts = [np.concatenate(c) for c in chunks]
        smallest = min(len(p) for p in parts)
        if smallest > best_min:
            best, best_min = parts, smallest
        if smallest >= min_samples:
            return parts
    assert best is not None
    return _top_up(best, min_samples, rng)


def _top_up(parts: list[np.ndarray], min_samples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Move random examples from the largest organisations to those below min_samples."""
    parts = [p.copy() for p in parts]
    for d in range(len(parts)):
        while len(parts[d]) < min_samples:
            donor = int(np.argmax([len(p) for p in parts]))
            give = min(min_samples - len(parts[d]), len(parts[donor]) - min_samples)
            take = rng.permutation(len(parts[donor]))[:give]
            parts[d] = np.concatenate([parts[d], parts[donor][take]])
            parts[donor] = np.delete(parts[donor], take)
    return parts


def _shards(labels: np.ndarray, num_orgs: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    classes = _by_class(labels)
    total = num_orgs * k
    if total < len(classes):
        raise ValueError(
            f"shards:{k} with {num_orgs} organisations makes {total} shards for {len(classes)} classes; "
            "each class needs at least one shard, so use a larger K or more organisations"
        )
    if total > len(labels):
        raise ValueError(f"shards:{k} with {num_orgs} organisations needs at least {total} examples, got {len(labels)}")
    # Shards per class: one each, then D'Hondt on class sizes, so shard sizes stay as even as
    # class boundaries allow and no shard straddles two classes (a McMahan-style shard of a
    # label-sorted array can, which would give an organisation more than K classes).
    sizes = np.array([len(c) for c in classes], dtype=np.float64)
    counts = np.ones(len(classes), dtype=np.int64)
    for _ in range(total - len(classes)):
        quotient = np.where(counts < sizes, sizes / counts, -1.0)
        counts[int(np.argmax(quotient))] += 1
    shards = [s for idx, c in zip(classes, counts) for s in np.array_split(rng.permutation(idx), c)]
    order = rng.permutation(total)
    return [np.concatenate([shards[s] for s in order[i * k : (i + 1) * k]]) for i in range(num_orgs)]


def _skew(labels: np.ndarray, num_orgs: int, fraction: float, rng: np.random.Generator) -> list[np.ndarray]:
    values = np.unique(labels)
    if len(values) < num_orgs:
        raise ValueError(
            f"skew needs at least one class per organisation: {len(values)} classes for {num_orgs} "
            "organisations; use dirichlet:ALPHA or iid instead"
        )
    groups = np.array_split(rng.permutation(values), num_orgs)
    classes = {int(c): np.flatnonzero(labels == c) for c in values}
    parts = []
    for group in groups:
        own = set(int(c) for c in group)
        pieces = [classes[c] for c in sorted(own)]
        for c in sorted(classes):
            if c not in own:
                idx = classes[c]
                take = int(math.floor(fraction * len(idx) + 0.5))
                pieces.append(rng.choice(idx, size=take, replace=False))
        parts.append(np.concatenate(pieces))
    return parts


# --------------------------------------------------------------------------- validation


def _check_labels(y: Any) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError("labels are empty: nothing to partition")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise ValueError("labels must be non-negative class ids")
    return labels


def _check_int(name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
