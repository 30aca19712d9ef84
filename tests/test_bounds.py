"""Bounds on one update's influence (aggregation/bounds.py and the registry's `bound`): pure numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.aggregation import aggregate
from fedledger.aggregation.bounds import (Clipped, bound_updates, cap_weights, change_norm, direction_scores, median,
                                          misaligned)
from fedledger.aggregation.registry import bound, encode_params, get_rule, resolve_rule

RNG = np.random.default_rng(7)
PARENT = {"w": RNG.normal(size=(50, 40)).astype(np.float32), "b": RNG.normal(size=(40,)).astype(np.float32)}


def honest(i: int, scale: float = 0.01) -> dict[str, np.ndarray]:
    r = np.random.default_rng(100 + i)
    return {k: (v + r.normal(scale=scale, size=v.shape)).astype(np.float32) for k, v in PARENT.items()}


def sha(i: int) -> str:
    return f"{i:064x}"


def test_the_median_of_even_and_odd_counts():
    assert median([3, 1, 2]) == 2 and median([4, 1, 3, 2]) == 2.5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=2, max_size=30), st.floats(1.0, 10.0))
def test_a_capped_claim_buys_at_most_its_bounded_share(honest_counts, cap):
    liar = 2**32 - 1
    ws = cap_weights(honest_counts + [liar], cap)
    share = ws[-1] / sum(ws)
    n = len(ws)
    # The liar's weight is at most cap x the median, and the median is at most the largest honest claim.
    assert ws[-1] <= cap * median(honest_counts + [liar]) + 1e-9
    assert share <= cap * max(honest_counts) / (cap * max(honest_counts) + sum(sorted(honest_counts)[: n - 1])) + 1e-9
    assert ws[:-1] == [min(float(w), cap * median(honest_counts + [liar])) for w in honest_counts]


def test_the_change_norm_matches_an_exact_reference_and_ignores_tensor_order():
    u = honest(1, scale=0.3)
    exact = math.sqrt(math.fsum(float(d) ** 2 for k in sorted(u)
                                for d in (u[k].astype(np.float64) - PARENT[k].astype(np.float64)).reshape(-1)))
    got = change_norm(u, PARENT)
    assert got == pytest.approx(exact, rel=1e-12)
    assert change_norm(dict(reversed(list(u.items()))), PARENT) == got  # bit-identical: sorted names, fixed lanes


def test_an_update_of_huge_finite_values_is_clipped_onto_the_bound_or_excluded():
    updates = [honest(i) for i in range(4)] + [{k: np.full_like(v, 3e38) for k, v in PARENT.items()}]
    r = bound_updates(updates, PARENT, norm_cap=10.0, clip=True)
    out, excluded, clipped, norms = r.updates, r.excluded, r.clipped, r.norms
    assert excluded == [] and clipped == [4]
    bound_ = 10.0 * median([n for n in norms if math.isfinite(n)])
    assert change_norm(out[4], PARENT) == pytest.approx(bound_, rel=1e-5)
    assert all(np.isfinite(out[4].get_tensor(k)).all() for k in PARENT)
    r = bound_updates(updates, PARENT, norm_cap=10.0, clip=False)
    excluded, clipped = r.excluded, r.clipped
    assert excluded == [4] and clipped == []


def test_fedavg_under_the_default_bounds_resists_a_huge_update_and_a_huge_claim():
    updates = [honest(i) for i in range(4)] + [{k: np.full_like(v, 3e38) for k, v in PARENT.items()}]
    weights = [100, 120, 90, 110, 2**32 - 1]
    hashes = [sha(i) for i in range(5)]
    b = bound("fedavg", None, updates, weights, hashes, parent=PARENT)
    assert b.clipped == [4] and max(b.weights) == pytest.approx(3 * 110)
    agg = aggregate("fedavg", encode_params("fedavg"), b.updates, b.weights, b.hashes)
    honest_mean = aggregate("fedavg", encode_params("fedavg"), updates[:4], weights[:4], hashes[:4])
    drift = change_norm(agg, honest_mean)
    assert drift < change_norm(b.updates[4], PARENT) / 2  # the attacker pulls at most its bounded share
    assert all(np.isfinite(agg[k]).all() for k in agg)


def test_bounds_off_leave_updates_and_weights_untouched():
    params = encode_params("fedavg", {"weight_cap": 0, "norm_cap": 0})
    updates = [honest(i) for i in range(3)]
    b = bound("fedavg", params, updates, [1, 2, 10**6], [sha(i) for i in range(3)], parent=None)
    assert b.updates == updates and b.weights == [1.0, 2.0, 1e6] and b.excluded == b.clipped == []


def test_rules_that_ignore_weights_are_not_capped_and_say_so():
    assert get_rule("fedavg").uses_weights and get_rule("geomedian").uses_weights
    assert not get_rule("median").uses_weights and not get_rule("trimmed_mean").uses_weights
    b = bound("median", None, [honest(0), honest(1)], [1, 10**9], [sha(0), sha(1)], parent=PARENT)
    assert b.weights == [1.0, 1e9]


def test_a_clipped_update_keeps_the_dtype_and_direction():
    u = honest(3, scale=1.0)
    c = Clipped(u, PARENT, 0.25)
    for k in PARENT:
        got = c.get_tensor(k)
        assert got.dtype == np.float32
        want = ((u[k].astype(np.float64) - PARENT[k]) * 0.25 + PARENT[k]).astype(np.float32)
        assert np.array_equal(got, want)


def test_a_norm_bound_without_the_parent_is_refused():
    with pytest.raises(ValueError, match="needs the parent"):
        bound("fedavg", None, [honest(0)], [1], [sha(0)], parent=None)


# --------------------------------------------------------------------------------------------
# The direction check and norm_drop (the `robust` preset): each attacker shape of the literature,
# against honest updates that share a direction, and the exact arithmetic verifiers rely on.

STEP = {k: RNG.normal(scale=0.02, size=v.shape).astype(np.float32) for k, v in PARENT.items()}  # the consensus


def along(i: int, noise: float = 0.02) -> dict[str, np.ndarray]:
    """An honest update: the shared step plus its own noise (heterogeneous data)."""
    r = np.random.default_rng(200 + i)
    return {k: (PARENT[k] + STEP[k] + r.normal(scale=noise, size=v.shape)).astype(np.float32)
            for k, v in PARENT.items()}


def change(u):
    return {k: u[k].astype(np.float64) - PARENT[k].astype(np.float64) for k in PARENT}


def test_direction_scores_match_an_exact_reference_bit_for_bit_in_any_tensor_order():
    ups = [along(i) for i in range(5)] + [{k: 2 * PARENT[k] - along(9)[k] for k in PARENT}]
    previous = {k: (PARENT[k] - STEP[k]).astype(np.float32) for k in PARENT}
    norms, scores = direction_scores(ups, PARENT, previous)
    ds = [np.concatenate([change(u)[k].ravel() for k in sorted(PARENT)]) for u in ups]
    med = np.median(np.stack(ds), axis=0)
    step = np.concatenate([(PARENT[k].astype(np.float64) - previous[k].astype(np.float64)).ravel()
                           for k in sorted(PARENT)])
    for i, d in enumerate(ds):
        want = d @ med / np.linalg.norm(med) + d @ step / np.linalg.norm(step)
        assert scores[i] == pytest.approx(want, rel=1e-9)
        assert norms[i] == change_norm(ups[i], PARENT)  # the same bits as the norm bound's own norm
    again = direction_scores([dict(reversed(list(u.items()))) for u in ups], PARENT, previous)
    assert again == (norms, scores)  # bit-identical: sorted names, fixed lanes, exact totals
    big_parent = {"w": np.random.default_rng(1).normal(size=(70_001,)).astype(np.float32)}  # two chunks
    big = [{"w": (big_parent["w"] + np.random.default_rng(i).normal(size=70_001)).astype(np.float32)} for i in range(3)]
    assert direction_scores(big, big_parent, None)[0] == [change_norm(u, big_parent) for u in big]


@pytest.mark.parametrize("attack", ["signflip", "ipm", "scaled_signflip"])
def test_an_update_pointing_away_from_the_consensus_is_excluded_as_opposed(attack):
    honest_ = [along(i) for i in range(7)]
    mean = {k: np.mean([change(u)[k] for u in honest_], axis=0) for k in PARENT}
    if attack == "ipm":  # Xie et al. 2019: -eps x the honest mean, tiny and opposite
        bad = [{k: (PARENT[k] - 0.1 * mean[k]).astype(np.float32) for k in PARENT}] * 3
    else:
        f = 4.0 if attack == "scaled_signflip" else 1.0
        bad = [{k: (PARENT[k] - f * change(u)[k]).astype(np.float32) for k in PARENT} for u in honest_[:3]]
    r = bound_updates(honest_ + bad, PARENT, direction=True)
    assert r.opposed == [7, 8, 9] and r.excluded == []


def test_an_update_barely_aligned_is_out_and_a_round_without_consensus_excludes_nothing():
    assert misaligned([1.0] * 4, [0.8, 0.8, 0.8, 0.1], 0.25) == [3]  # 0.1 is under 0.25 x the median 0.8
    assert misaligned([1.0] * 4, [0.8, 0.8, 0.8, 0.3], 0.25) == []
    assert misaligned([1.0] * 3, [-0.5, -0.1, 0.0], 0.25) == []  # nobody aligned: no consensus to measure
    assert misaligned([0.0, 1.0, math.inf], [0.0, 0.5, 0.5], 0.25) == [0, 2]  # no change, or no finite one
    assert misaligned([2.0, 1.0], [0.4, 0.3], 0.0) == []  # the ratio 0: positive is enough


def test_norm_drop_excludes_beyond_its_multiple_of_the_median_of_the_aligned_updates():
    honest_ = [along(i) for i in range(6)]
    big = {k: (PARENT[k] + 10 * change(honest_[0])[k]).astype(np.float32) for k in PARENT}  # aligned, 10x
    tiny = [{k: (PARENT[k] - 0.01 * STEP[k]).astype(np.float32) for k in PARENT}] * 3  # opposed, shrink the median
    r = bound_updates(honest_ + [big] + tiny, PARENT, direction=True, norm_drop=3.0, norm_cap=2.0)
    assert r.opposed == [7, 8, 9] and r.excluded == [6]
    med = median([r.norms[i] for i in range(7)])
    assert med == median(r.norms[:7]) and med > 10 * r.norms[7]  # the tiny ones did not set the bound
    for i in r.clipped:
        assert change_norm(r.updates[i], PARENT) == pytest.approx(2.0 * med, rel=1e-5)


def test_the_robust_preset_expands_to_fedavg_with_its_bounds_and_explicit_values_win():
    rule, params = resolve_rule("robust")
    assert rule == "fedavg" and params["direction"] is True and params["norm_drop"] == 3.0
    assert resolve_rule("robust", {"norm_drop": 5.0})[1]["norm_drop"] == 5.0
    assert resolve_rule("median", {}) == ("median", {})
    with pytest.raises(ValueError, match="presets: robust"):
        resolve_rule("sturdy")
    # What the chain stores is the rule and every parameter, never the preset's name.
    assert b'"direction":true' in encode_params(*resolve_rule("robust"))


def test_the_registry_bound_reports_opposed_updates_and_the_rule_never_sees_them():
    honest_ = [along(i) for i in range(6)]
    flipped = [{k: (PARENT[k] - 4 * change(u)[k]).astype(np.float32) for k in PARENT} for u in honest_[:2]]
    ups = honest_ + flipped
    b = bound("fedavg", dict(resolve_rule("robust")[1]), ups, [100] * 8, [sha(i) for i in range(8)], parent=PARENT)
    assert b.opposed == [6, 7] and b.hashes == [sha(i) for i in range(6)]
    out = aggregate("fedavg", resolve_rule("robust")[1], b.updates, b.weights, b.hashes)
    mean = {k: np.mean([change(u)[k] for u in honest_], axis=0) for k in PARENT}
    for k in PARENT:
        assert np.allclose(out[k].astype(np.float64) - PARENT[k], mean[k], atol=1e-6)
