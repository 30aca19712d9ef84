"""Rule ids and parameters as stored on chain, mapped to the pure functions.

A task on chain names its rule by a short ASCII id (bytes32, zero-padded) and stores the rule's
parameters as canonical JSON bytes (``encode_params``): compact, keys sorted, ASCII, every
parameter present with defaults filled in, values validated. Two equal parameter sets therefore
always have identical bytes, and the leader and every verifier decode the same values.

Every rule also takes the bounding parameters of ``BOUNDS`` (bounds.py): ``weight_cap`` clips each
sample-count claim at a multiple of the round's median claim (for the rules that use weights),
``max_norm`` / ``norm_cap`` bound each update's change from the parent, ``norm_clip`` says
whether an update beyond the bound is scaled back onto it or excluded, ``norm_drop`` excludes
changes far beyond the round's median, and ``direction`` excludes changes that point away from
the round's consensus (the median change and the parent's own step). ``bound`` applies them;
``bucket`` makes the rule run over seeded bucket means (bucketing.py), in ``aggregate``;
``aggregate`` is what the leader and the verifiers call: it orders the updates by hash and
applies the rule. ``aggregates_match`` is how a verifier compares its recomputation with the
leader's aggregate: bit for bit for the exact rules, within ``tolerance`` for the others.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._core import AggregationError, Model, UpdateSource
from .bounds import bound_updates, cap_weights, noised_norm_bound
from .bucketing import bucketed
from .clipping import centered_clipping
from .mean import fedavg
from .robust import (
    bulyan,
    check_float,
    check_int,
    coordinate_median,
    geometric_median,
    krum,
    multi_krum,
    trimmed_mean,
)

_MAX_COUNT = 2**16


@dataclass(frozen=True)
class Param:
    """One rule parameter: its JSON type, default and allowed range."""

    name: str
    kind: str  # "int", "float", "bool" or "int|null"
    default: Any
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    doc: str = ""

    @property
    def allowed(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.lo is None:
            return self.kind
        rng = f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        what = "integer" if self.kind.startswith("int") else "number"
        return f"{what} in {rng}" + (" or null" if self.kind == "int|null" else "")

    def check(self, rule_id: str, value: Any) -> Any:
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise AggregationError(f"{rule_id} parameter {self.name!r} must be true or false; got {value!r}")
            return bool(value)
        if self.kind == "int|null" and value is None:
            return None
        if self.kind.startswith("int"):
            assert self.lo is not None and self.hi is not None
            return check_int(rule_id, self.name, value, int(self.lo), int(self.hi))
        assert self.lo is not None and self.hi is not None
        return check_float(
            rule_id, self.name, value, self.lo, self.hi, lo_open=self.lo_open, hi_open=self.hi_open
        )


@dataclass(frozen=True)
class Rule:
    """An aggregation rule as a task names it on chain."""

    id: str
    title: str
    paper: str
    params: tuple[Param, ...]
    function: Callable[..., Model]
    exact: bool
    tolerance_of: Callable[[dict[str, Any]], tuple[float, float]] | None = None
    #: Whether the rule weighs updates by their sample counts (a member's own claim).
    uses_weights: bool = False

    @property
    def all_params(self) -> tuple[Param, ...]:
        return self.params + BOUNDS

    def validate(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Parameters with defaults filled in and every value checked; unknown names refused."""
        params = dict(params or {})
        known = {p.name for p in self.all_params}
        unknown = sorted(set(params) - known)
        if unknown:
            have = ", ".join(sorted(known)) or "none"
            raise AggregationError(f"{self.id} has no parameter {unknown[0]!r}; its parameters are: {have}")
        return {p.name: p.check(self.id, params.get(p.name, p.default)) for p in self.all_params}

    def own(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The rule's own parameters out of a validated set (without the bounds)."""
        mine = {p.name for p in self.params}
        return {k: v for k, v in params.items() if k in mine}

    def tolerance(self, params: Mapping[str, Any] | None = None) -> tuple[float, float] | None:
        if self.exact or self.tolerance_of is None:
            return None
        return self.tolerance_of(self.validate(params))

    def __call__(
        self,
        updates: Sequence[UpdateSource],
        weights: Sequence[int | float] | None,
        hashes: Sequence[bytes | str] | None,
        params: Mapping[str, Any] | None = None,
    ) -> Model:
        return self.function(updates, weights, hashes=hashes, **self.own(self.validate(params)))


#: Allowed relative difference (over the whole model, L2) for rules verified within a tolerance,
#: on top of a few units in the last place of the model's dtype.
SELECTION_RTOL = 1e-6

_F = Param("f", "int", 1, 0, _MAX_COUNT, doc="number of Byzantine updates to tolerate")

#: Bounds every rule takes (bounds.py), applied before it by the leader, the verifiers and the audit.
BOUNDS = (
    Param("weight_cap", "float", 3.0, 0.0, 1e6, doc="clip each sample-count claim at this multiple of the "
          "round's median claim (0: no cap); only rules that use weights see them"),
    Param("max_norm", "float", 0.0, 0.0, 1e30, doc="bound on ||update - parent||_2 (0: none)"),
    Param("norm_cap", "float", 10.0, 0.0, 1e6, doc="bound on ||update - parent||_2 at this multiple of the "
          "round's median (0: none); with max_norm, the smaller bound holds"),
    Param("norm_clip", "bool", True, doc="true: scale an update beyond the bound back onto it; false: exclude it"),
    Param("norm_drop", "float", 0.0, 0.0, 1e6, doc="exclude an update whose ||update - parent||_2 exceeds this "
          "multiple of the round's median (0: none); applied before the norm bound"),
    Param("direction", "bool", False, doc="exclude an update whose change points away from the round's consensus "
          "(the coordinate median of the changes and the parent's own step); the medians of the norm bounds "
          "are then taken over the updates left"),
    Param("direction_ratio", "float", 0.25, 0.0, 1.0, doc="with direction: an update is aligned when its cosine "
          "with the consensus is positive and above this multiple of the round's median cosine"),
    Param("bucket", "int", 1, 1, _MAX_COUNT, doc="bucketing: the rule aggregates the unweighted means of buckets of "
          "this many updates, shuffled by the round's on-chain seed (1: no bucketing)"),
    # Differential privacy (node/training/privacy.py): what every member promises to release.
    Param("dp_clip", "float", 0.0, 0.0, 1e6, doc="DP clipping bound: of each example's gradient (example level) or "
          "of the whole update's change (dp_client); 0: no differential privacy"),
    Param("dp_noise", "float", 0.0, 0.0, 1e6, doc="DP noise multiplier: Gaussian noise of standard deviation "
          "dp_noise x dp_clip"),
    Param("dp_delta", "float", 1e-5, 0.0, 1.0, lo_open=True, hi_open=True, doc="the delta of the (epsilon, delta) "
          "every member reports"),
    Param("dp_epsilon", "float", 0.0, 0.0, 1e6, doc="privacy budget: a member does not train once one more round "
          "would spend more (0: no budget)"),
    Param("dp_sample_rate", "float", 0.2, 0.0, 1.0, lo_open=True, doc="example-level DP-SGD: each step takes each "
          "example with this probability"),
    Param("dp_steps", "int", 0, 0, 10**7, doc="example-level DP-SGD steps a round (0: round(1 / dp_sample_rate))"),
    Param("dp_client", "bool", False, doc="client-level DP (the update clipped and noised as a whole) instead of "
          "example-level DP-SGD; leader and verifiers then exclude an update whose change is too long for the "
          "promised clip and noise"),
)

RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "fedavg",
            "FedAvg: mean weighted by sample counts",
            "McMahan et al. 2017",
            (),
            lambda u, w, hashes: fedavg(u, w, hashes=hashes),
            exact=True,
            uses_weights=True,
        ),
        Rule(
            "median",
            "coordinate-wise median",
            "Yin et al. 2018",
            (),
            lambda u, w, hashes: coordinate_median(u, w, hashes=hashes),
            exact=True,
        ),
        Rule(
            "trimmed_mean",
            "coordinate-wise trimmed mean",
            "Yin et al. 2018",
            (Param("beta", "float", 0.2, 0.0, 0.5, hi_open=True, doc="fraction cut from each end"),),
            lambda u, w, hashes, beta: trimmed_mean(u, beta, w, hashes=hashes),
            exact=True,
        ),
        Rule(
            "geomedian",
            "geometric median (smoothed weighted Weiszfeld)",
            "Pillutla, Kakade, Harchaoui 2022",
            (
                Param("eps", "float", 1e-6, 0.0, 1.0, lo_open=True, doc="smoothing: distances below eps count as eps"),
                Param("max_iter", "int", 100, 1, 10000, doc="iteration cap"),
                Param("tol", "float", 1e-6, 0.0, 1.0, hi_open=True, doc="stop when ||v_k - v_k-1|| <= tol ||v_k||"),
            ),
            lambda u, w, hashes, eps, max_iter, tol: geometric_median(
                u, w, max_iter=max_iter, tol=tol, eps=eps, hashes=hashes
            ),
            exact=False,
            tolerance_of=lambda p: (max(10 * p["tol"], SELECTION_RTOL), 0.0),
            uses_weights=True,
        ),
        Rule(
            "cclip",
            "centered clipping from the coordinate median",
            "Karimireddy, He, Jaggi 2021",
            (
                Param("tau", "float", 0.0, 0.0, 1e30, doc="clipping radius (0: the round's median distance to the "
                      "coordinate median)"),
                Param("iters", "int", 3, 1, 100, doc="clipping steps"),
            ),
            lambda u, w, hashes, tau, iters: centered_clipping(u, w, tau=tau, iters=iters, hashes=hashes),
            exact=False,
            tolerance_of=lambda p: (SELECTION_RTOL, 0.0),
        ),
        Rule(
            "krum",
            "Krum",
            "Blanchard et al. 2017",
            (_F,),
            lambda u, w, hashes, f: krum(u, f, w, hashes=hashes),
            exact=False,
            tolerance_of=lambda p: (SELECTION_RTOL, 0.0),
        ),
        Rule(
            "multikrum",
            "Multi-Krum",
            "Blanchard et al. 2017",
            (
                _F,
                Param("m", "int|null", None, 1, _MAX_COUNT, doc="updates averaged; null means n - f"),
                Param("weighted", "bool", False, doc="weight the average by sample counts (as Flower does)"),
            ),
            lambda u, w, hashes, f, m, weighted: multi_krum(u, f, m, w, weighted=weighted, hashes=hashes),
            exact=False,
            tolerance_of=lambda p: (SELECTION_RTOL, 0.0),
            uses_weights=True,  # when its `weighted` parameter is true
        ),
        Rule(
            "bulyan",
            "Bulyan over recursive Krum",
            "El Mhamdi, Guerraoui, Rouault 2018",
            (_F,),
            lambda u, w, hashes, f: bulyan(u, f, w, hashes=hashes),
            exact=False,
            tolerance_of=lambda p: (SELECTION_RTOL, 0.0),
        ),
    )
}


def normalize_rule_id(rule_id: str | bytes) -> str:
    """A rule id from a str or from its bytes32 form on chain (ASCII, zero-padded on the right)."""
    if isinstance(rule_id, (bytes, bytearray)):
        raw = bytes(rule_id).rstrip(b"\x00")
        try:
            rule_id = raw.decode("ascii")
        except UnicodeDecodeError:
            raise AggregationError(f"rule id {bytes(rule_id)!r} is not ASCII") from None
    if not isinstance(rule_id, str):
        raise AggregationError(f"rule id must be a str or bytes32; got {type(rule_id).__name__}")
    return rule_id


def rule_id_bytes32(rule_id: str) -> bytes:
    """The bytes32 form of a rule id for the chain: ASCII, zero-padded on the right."""
    rule = get_rule(rule_id)
    return rule.id.encode("ascii").ljust(32, b"\x00")


#: Named settings of a rule and its bounds, chosen by measurement (docs/aggregation.md, "Robustness
#: on heterogeneous data"). A task stores the rule id and the full parameters, never the preset's
#: name: what the chain says is what runs.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # FedAvg over the updates that point along the round's consensus and whose change is at most
    # 3x the median (norm_drop), each clipped at 2x the median (norm_cap).
    "robust": ("fedavg", {"direction": True, "norm_drop": 3.0, "norm_cap": 2.0, "weight_cap": 3.0}),
}


def resolve_rule(name: str, params: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(rule id, parameters) for a rule id or a preset name; parameters given explicitly override
    the preset's. Unknown names raise AggregationError listing the rules and presets."""
    if name in PRESETS:
        rule_id, preset = PRESETS[name]
        return rule_id, {**preset, **dict(params or {})}
    if normalize_rule_id(name) not in RULES:
        raise AggregationError(f"unknown aggregation rule {name!r}; known rules: {', '.join(RULES)}; "
                               f"presets: {', '.join(PRESETS)}")
    return name, dict(params or {})


def get_rule(rule_id: str | bytes) -> Rule:
    """The rule for an id (str or bytes32); ValueError listing the known ids otherwise."""
    key = normalize_rule_id(rule_id)
    try:
        return RULES[key]
    except KeyError:
        raise AggregationError(f"unknown aggregation rule {key!r}; known rules: {', '.join(RULES)}") from None


def encode_params(rule_id: str | bytes, params: Mapping[str, Any] | None = None) -> bytes:
    """Canonical bytes of a rule's parameters: compact JSON, keys sorted, ASCII, defaults filled in."""
    rule = get_rule(rule_id)
    values = rule.validate(params)
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise AggregationError(f"rule parameters name {k!r} twice")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise AggregationError(f"rule parameters may not contain {name}")


def decode_params(rule_id: str | bytes, data: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parameters from their on-chain bytes, validated and with defaults filled in (empty bytes = all defaults)."""
    rule = get_rule(rule_id)
    raw = data.encode("ascii") if isinstance(data, str) else bytes(data)
    if not raw.strip():
        return rule.validate({})
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise AggregationError(f"{rule.id} parameters are not ASCII JSON: {raw[:64]!r}") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise AggregationError(f"{rule.id} parameters are not valid JSON ({exc.msg}): {text[:64]!r}") from None
    if not isinstance(value, dict):
        raise AggregationError(f"{rule.id} parameters must be a JSON object; got {text[:64]!r}")
    return rule.validate(value)


def _params(rule: Rule, params: Mapping[str, Any] | bytes | bytearray | memoryview | None) -> dict[str, Any]:
    if isinstance(params, (bytes, bytearray, memoryview)):
        return decode_params(rule.id, params)
    return rule.validate(params)


@dataclass
class Bounded:
    """The updates of a round after the bounds: what the rule aggregates, and what was changed."""

    updates: list[UpdateSource]
    weights: list[float]
    hashes: list[bytes | str]
    excluded: list[int]  # positions (in the given order) beyond the norm bound, when not clipped
    clipped: list[int]  # positions scaled back onto the norm bound
    norms: list[float]  # ||update - parent|| of each given update (empty when no norm bound)
    opposed: list[int] = field(default_factory=list)  # positions excluded by the direction check


def bound(
    rule_id: str | bytes,
    params: Mapping[str, Any] | bytes | None,
    updates: Sequence[UpdateSource],
    weights: Sequence[int | float],
    hashes: Sequence[bytes | str],
    parent: UpdateSource | None = None,
    names: Sequence[str] | None = None,
    previous: UpdateSource | None = None,
) -> Bounded:
    """Apply the task's bounds (direction check, weight cap, norm bounds) to a round's updates, in
    the given order. `parent` is the round's parent model (needed when a norm bound or the
    direction check is set), `previous` the parent's own parent (None in round 1: the direction
    check then uses the round's median alone); `names` the tensors the norms are taken over
    (default: all of the parent's)."""
    rule = get_rule(rule_id)
    p = _params(rule, params)
    hard_max = 0.0
    if p["dp_client"] and p["dp_clip"] > 0 and parent is not None:  # what a clipped, noised change can be
        dims = sum(int(np.size(parent.get_tensor(k) if hasattr(parent, "get_tensor") else parent[k]))
                   for k in (names if names is not None else parent.keys()))
        hard_max = noised_norm_bound(p["dp_clip"], p["dp_noise"], dims)
    r = bound_updates(updates, parent, max_norm=p["max_norm"], norm_cap=p["norm_cap"], clip=p["norm_clip"],
                      names=names, direction=p["direction"], norm_drop=p["norm_drop"], previous=previous,
                      direction_ratio=p["direction_ratio"], hard_max=hard_max)
    out = set(r.excluded) | set(r.opposed)
    keep = [i for i in range(len(r.updates)) if i not in out]
    ws = [float(weights[i]) for i in keep]
    if rule.uses_weights and ws:
        ws = cap_weights(ws, p["weight_cap"])
    return Bounded([r.updates[i] for i in keep], ws, [hashes[i] for i in keep], r.excluded, r.clipped, r.norms,
                   r.opposed)


def aggregate(
    rule_id: str | bytes,
    params: Mapping[str, Any] | bytes | None,
    updates: Sequence[UpdateSource],
    weights: Sequence[int | float],
    hashes: Sequence[bytes | str],
    seed: bytes | None = None,
) -> Model:
    """Apply a task's rule: updates ordered by their sha256 (bytes or hex), weights = sample counts.

    params may be a dict or the encoded bytes from chain. Deterministic: the same updates give
    the same aggregate whatever their order (see ``tolerance`` for what a verifier allows). With
    ``bucket`` > 1 the rule runs over bucket means (bucketing.py), shuffled by `seed`: the round's
    32-byte on-chain seed of the epoch being aggregated; the means carry equal weights.
    """
    rule = get_rule(rule_id)
    if hashes is None:
        raise AggregationError(f"{rule.id}: give the sha256 of every update; they fix the order of aggregation")
    p = _params(rule, params)
    if p["bucket"] > 1:
        if seed is None:
            raise AggregationError(f"{rule.id} with bucket {p['bucket']} needs the round's seed to shuffle the updates")
        return bucketed(lambda means, hs: rule(means, [1.0] * len(means), hs, p), updates, p["bucket"], seed, hashes)
    return rule(updates, weights, hashes, p)


def tolerance(rule_id: str | bytes, params: Mapping[str, Any] | bytes | None = None) -> tuple[float, float] | None:
    """(rtol, atol) a verifier allows on the whole-model L2 difference, or None when bit-exact."""
    rule = get_rule(rule_id)
    return rule.tolerance(_params(rule, params))


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).reshape(-1).view(np.uint8)


def _sumsq(x: np.ndarray) -> float:
    x64 = np.asarray(x, dtype=np.float64).reshape(-1)
    return float(np.dot(x64, x64))


def aggregates_match(
    rule_id: str | bytes,
    params: Mapping[str, Any] | bytes | None,
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
) -> tuple[bool, str]:
    """Whether two aggregates agree under a rule: same schema and finite, then bit-identical or within tolerance.

    For tolerance rules: ||a - b|| <= max(rtol, 4 eps(dtype)) * max(||a||, ||b||) + atol, norms
    over all tensors together (the geometric median's stopping rule is on the whole model).
    Returns (agree, reason).
    """
    rule = get_rule(rule_id)
    tol = rule.tolerance(_params(rule, params))
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b))[:3], sorted(set(b) - set(a))[:3]
        return False, f"tensor names differ: only in the first {only_a}, only in the second {only_b}"
    names = sorted(a)
    for name in names:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.shape != y.shape or x.dtype != y.dtype:
            return False, f"{name!r} is {x.dtype}{list(x.shape)} in the first, {y.dtype}{list(y.shape)} in the second"
        if not np.issubdtype(x.dtype, np.floating):
            return False, f"{name!r} has non-floating dtype {x.dtype}"
        for label, arr in (("first", x), ("second", y)):
            if not np.isfinite(arr).all():
                return False, f"{name!r} of the {label} aggregate has non-finite values"
    if tol is None:
        for name in names:
            x, y = np.asarray(a[name]), np.asarray(b[name])
            if not np.array_equal(_bits(x), _bits(y)):
                differ = int(np.count_nonzero(x.reshape(-1) != y.reshape(-1)))
                worst = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0
                return False, (
                    f"{name!r}: {differ} of {x.size} values differ (max |a - b| = {worst:.3g}); "
                    f"{rule.id} must match bit for bit"
                )
        return True, f"bit-identical ({len(names)} tensors)"
    rtol, atol = tol
    rtol = max([rtol] + [4 * float(np.finfo(np.asarray(a[n]).dtype).eps) for n in names])
    diff2 = norm_a2 = norm_b2 = 0.0
    for name in names:
        x = np.asarray(a[name], dtype=np.float64)
        y = np.asarray(b[name], dtype=np.float64)
        diff2 += _sumsq(x - y)
        norm_a2 += _sumsq(x)
        norm_b2 += _sumsq(y)
    diff, scale = math.sqrt(diff2), math.sqrt(max(norm_a2, norm_b2))
    limit = rtol * scale + atol
    rel = diff / scale if scale else (0.0 if diff == 0 else math.inf)
    if diff <= limit:
        return True, f"within tolerance: ||a - b|| / ||a|| = {rel:.3g} <= {rtol:.3g}"
    return False, f"||a - b|| / ||a|| = {rel:.3g} exceeds the {rule.id} tolerance {rtol:.3g} (atol {atol:g})"
