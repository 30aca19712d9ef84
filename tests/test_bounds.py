"""Bounds on one update's influence (aggregation/bounds.py and the registry's `bound`): pure numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.aggregation import aggregate
from fedledger.aggregation.bounds import Clipped, bound_updates, cap_weights, change_norm, median
from fedledger.aggregation.registry import bound, encode_params, get_rule

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
    out, excluded, clipped, norms = bound_updates(updates, PARENT, norm_cap=10.0, clip=True)
    assert excluded == [] and clipped == [4]
    bound_ = 10.0 * median([n for n in norms if math.isfinite(n)])
    assert change_norm(out[4], PARENT) == pytest.approx(bound_, rel=1e-5)
    assert all(np.isfinite(out[4].get_tensor(k)).all() for k in PARENT)
    _, excluded, clipped, _ = bound_updates(updates, PARENT, norm_cap=10.0, clip=False)
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
