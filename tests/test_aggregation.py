"""Properties of the aggregation rules: determinism, robustness, preconditions (hypothesis)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedledger.aggregation import (
    aggregate,
    bulyan,
    coordinate_median,
    fedavg,
    geometric_median,
    krum,
    multi_krum,
    trimmed_mean,
)

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SHAPES = {"conv.weight": (2, 3), "conv.bias": (3,), "scale": ()}


def sha(update: dict[str, np.ndarray]) -> bytes:
    h = hashlib.sha256()
    for name in sorted(update):
        h.update(name.encode())
        h.update(np.ascontiguousarray(update[name]).tobytes())
    return h.digest()


def hashes_of(updates) -> list[bytes]:
    return [sha(u) for u in updates]


def valid_params(rule: str, n: int) -> dict:
    """Parameters that satisfy every precondition for n updates."""
    return {
        "fedavg": {},
        "median": {},
        "trimmed_mean": {"beta": 0.25},
        "geomedian": {"max_iter": 50, "tol": 1e-7},
        "cclip": {"iters": 3},
        "krum": {"f": max(0, (n - 3) // 2)},
        "multikrum": {"f": max(0, (n - 3) // 2)},
        "bulyan": {"f": max(0, (n - 3) // 4)},
    }[rule]


MIN_N = {"fedavg": 1, "median": 1, "trimmed_mean": 1, "geomedian": 1, "cclip": 1, "krum": 3, "multikrum": 3,
         "bulyan": 3}
ALL_RULES = sorted(MIN_N)

finite32 = st.floats(-1e6, 1e6, width=32, allow_subnormal=True)


@st.composite
def update_sets(draw, min_n=1, max_n=8, elements=finite32):
    n = draw(st.integers(min_n, max_n))
    updates = []
    for i in range(n):
        update = {name: draw(hnp.arrays(np.float32, shape, elements=elements)) for name, shape in SHAPES.items()}
        # one distinct coordinate per update: identical updates would be one update submitted twice
        update["scale"] = np.asarray(np.float32(i) * np.float32(0.25))
        updates.append(update)
    weights = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n))
    return updates, weights


def assert_bits_equal(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


# --------------------------------------------------------------------------------------------
# determinism


@FAST
@given(data=st.data(), rule=st.sampled_from(ALL_RULES))
def test_every_rule_is_bit_identical_for_any_input_order(data, rule):
    updates, weights = data.draw(update_sets(min_n=MIN_N[rule], max_n=7))
    n = len(updates)
    params = valid_params(rule, n)
    perm = data.draw(st.permutations(range(n)))
    hashes = hashes_of(updates)
    a = aggregate(rule, params, updates, weights, hashes)
    b = aggregate(rule, params, [updates[i] for i in perm], [weights[i] for i in perm], [hashes[i] for i in perm])
    assert_bits_equal(a, b)


@FAST
@given(data=st.data())
def test_fedavg_without_hashes_depends_on_order_only_in_the_last_bits(data):
    updates, weights = data.draw(update_sets(min_n=2))
    perm = data.draw(st.permutations(range(len(updates))))
    a = fedavg(updates, weights)
    b = fedavg([updates[i] for i in perm], [weights[i] for i in perm])
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-6)


@FAST
@given(
    x=hnp.arrays(np.float32, (4, 3), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)),
    n=st.integers(1, 9),
    rule=st.sampled_from(ALL_RULES),
)
def test_identical_updates_aggregate_to_that_update(x, n, rule):
    n = max(n, MIN_N[rule])
    assume(np.abs(x).max() < 1e30)  # geomedian squares distances; fedavg multiplies by counts
    updates = [{"w": x.copy()} for _ in range(n)]
    hashes = [bytes([i]) * 32 for i in range(n)]
    out = aggregate(rule, valid_params(rule, n), updates, list(range(1, n + 1)), hashes)
    assert out["w"].dtype == np.float32
    np.testing.assert_array_equal(out["w"], x)


def test_fedavg_is_identical_for_contiguous_fortran_and_strided_inputs():
    rng = np.random.default_rng(3)
    base = [rng.standard_normal((40, 30)).astype(np.float32) for _ in range(5)]
    weights = [3, 1, 4, 1, 5]
    c = fedavg([{"w": b} for b in base], weights)
    f = fedavg([{"w": np.asfortranarray(b)} for b in base], weights)
    s = fedavg([{"w": np.repeat(b, 2, axis=1)[:, ::2]} for b in base], weights)
    assert_bits_equal(c, f)
    assert_bits_equal(c, s)


@pytest.mark.parametrize("rule", ALL_RULES)
def test_results_do_not_depend_on_the_chunk_size(rule, monkeypatch):
    from fedledger.aggregation import _core, mean, robust

    rng = np.random.default_rng(11)
    updates = [{"a": rng.standard_normal(1000).astype(np.float32), "b": rng.standard_normal((7, 77)).astype(np.float32)} for _ in range(7)]
    weights, hashes = [5, 3, 8, 1, 9, 2, 7], hashes_of(updates)
    params = valid_params(rule, 7)
    big = aggregate(rule, params, updates, weights, hashes)
    for module in (_core, mean, robust):
        monkeypatch.setattr(module, "CHUNK", 256, raising=False)
    small = aggregate(rule, params, updates, weights, hashes)
    assert_bits_equal(big, small)


# --------------------------------------------------------------------------------------------
# FedAvg


@FAST
@given(
    x=hnp.arrays(np.float32, (5,), elements=st.floats(-100, 100, width=32)),
    scales=st.lists(st.floats(-10, 10), min_size=1, max_size=8),
    counts=st.lists(st.integers(1, 1000), min_size=8, max_size=8),
)
def test_fedavg_of_scalar_multiples_is_the_weighted_mean_multiple(x, scales, counts):
    n = len(scales)
    counts = counts[:n]
    updates = [{"w": (np.float64(c) * x).astype(np.float32)} for c in scales]
    expected = sum(k * c for k, c in zip(counts, scales)) / sum(counts)
    out = fedavg(updates, counts)["w"]
    exact = sum(k * u["w"].astype(np.float64) for k, u in zip(counts, updates)) / sum(counts)
    np.testing.assert_allclose(out, exact, rtol=1e-6, atol=1e-30)
    # Each update c * x is rounded to float32 first: among subnormals (x near 1e-42) that rounding
    # alone is up to half a subnormal step, far beyond any relative tolerance.
    tiny = np.finfo(np.float32).smallest_subnormal
    np.testing.assert_allclose(out, expected * x.astype(np.float64), rtol=1e-5,
                               atol=1e-5 * np.abs(x).max(initial=0) + 2 * tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fedavg_follows_its_documented_float64_definition_bit_for_bit(dtype):
    rng = np.random.default_rng(12)
    updates = [{"w": rng.standard_normal(500).astype(dtype)} for _ in range(6)]
    weights = [7, 3, 11, 5, 2, 13]
    hashes = [bytes([9 - i]) * 32 for i in range(6)]  # canonical order is the reverse
    acc = None
    for i in reversed(range(6)):
        term = np.float64(weights[i]) * updates[i]["w"].astype(np.float64)
        acc = term if acc is None else acc + term
    expected = (acc / np.float64(sum(weights))).astype(dtype)
    assert fedavg(updates, weights, hashes=hashes)["w"].tobytes() == expected.tobytes()


@pytest.mark.parametrize("values", [(-0.0, 0.0, 0.0), (-0.0, -0.0, 0.0), (-0.0, 0.0, 0.0, -0.0, 0.0)])
def test_median_and_trimmed_mean_return_positive_zero_for_any_order_of_signed_zeros(values):
    import itertools

    results = set()
    for perm in itertools.permutations(values):
        updates = [{"w": np.array([v, 1.0], np.float32)} for v in perm]
        results.add(coordinate_median(updates)["w"].tobytes())
        results.add(trimmed_mean(updates, 0.2)["w"].tobytes())
    assert results == {np.array([0.0, 1.0], np.float32).tobytes()}


def test_fedavg_ignores_an_update_with_zero_samples():
    a, b = {"w": np.array([1.0, 2.0], np.float32)}, {"w": np.array([100.0, -7.0], np.float32)}
    np.testing.assert_array_equal(fedavg([a, b], [10, 0])["w"], a["w"])


def test_fedavg_rejects_all_zero_negative_and_wrong_number_of_weights():
    u = [{"w": np.ones(2, np.float32)}] * 2
    with pytest.raises(ValueError, match="all weights are zero"):
        fedavg(u, [0, 0])
    with pytest.raises(ValueError, match=r"weight 1 must be finite and >= 0"):
        fedavg(u, [1, -1])
    with pytest.raises(ValueError, match="2 updates but 3 weights"):
        fedavg(u, [1, 1, 1])
    with pytest.raises(ValueError, match="weight 0 must be a number"):
        fedavg(u, [True, 1])


# --------------------------------------------------------------------------------------------
# robustness


any32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@FAST
@given(data=st.data(), rule=st.sampled_from(["median", "trimmed_mean"]))
def test_median_and_trimmed_mean_stay_within_honest_values_up_to_their_breakdown_point(data, rule):
    n = data.draw(st.integers(1, 11))
    beta = data.draw(st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.4, 0.45]))
    # the median survives fewer than half; the trimmed mean as many as it cuts from each end
    max_bad = (n - 1) // 2 if rule == "median" else math.floor(beta * n)
    bad = data.draw(st.integers(0, max_bad))
    honest = data.draw(hnp.arrays(np.float32, (n - bad, 6), elements=st.floats(-1, 1, width=32)))
    outliers = data.draw(hnp.arrays(np.float32, (bad, 6), elements=any32))
    stacked = np.concatenate([honest, outliers])
    updates = [{"w": row} for row in stacked]
    out = coordinate_median(updates)["w"] if rule == "median" else trimmed_mean(updates, beta)["w"]
    assert np.all(out >= honest.min(axis=0)) and np.all(out <= honest.max(axis=0))


def test_median_of_even_count_is_the_float64_mean_of_the_two_middle_values():
    updates = [{"w": np.array([v], np.float32)} for v in (1.0, 2.0, 16777216.0, 16777218.0)]
    # float32 cannot hold (2 + 16777216) / 2 = 8388609; the float64 mean rounds once
    assert coordinate_median(updates)["w"][0] == np.float32(8388609.0)


@FAST
@given(data=st.data())
def test_krum_and_multikrum_select_only_honest_updates_when_n_exceeds_2f_plus_2(data):
    f = data.draw(st.integers(0, 3))
    n = data.draw(st.integers(2 * f + 3, 2 * f + 6))
    center = data.draw(hnp.arrays(np.float32, (6,), elements=st.floats(-10, 10, width=32)))
    honest = [center + np.float32(0.01) * data.draw(hnp.arrays(np.float32, (6,), elements=st.floats(-1, 1, width=32))) for _ in range(n - f)]
    attack = data.draw(st.sampled_from(["same-point", "spread", "near-cluster"]))
    far = data.draw(st.floats(100, 1e6))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    direction = rng.standard_normal(6)
    direction /= np.linalg.norm(direction)
    byzantine = []
    for j in range(f):
        if attack == "same-point":
            v = center + far * direction
        elif attack == "spread":
            v = center + far * rng.standard_normal(6)
        else:
            v = center + far * direction + rng.standard_normal(6)
        byzantine.append(v.astype(np.float32))
    updates = [{"w": u} for u in honest + byzantine]
    order = data.draw(st.permutations(range(n)))
    updates = [updates[i] for i in order]
    honest_bytes = {u.tobytes() for u in honest}
    assert krum(updates, f)["w"].tobytes() in honest_bytes
    # Multi-Krum's mean of the n - f best lies within the honest values
    mean = multi_krum(updates, f)["w"]
    lo, hi = np.min(honest, axis=0), np.max(honest, axis=0)
    assert np.all(mean >= lo) and np.all(mean <= hi)


def test_bulyan_ignores_f_far_outliers():
    rng = np.random.default_rng(5)
    honest = [rng.uniform(-1, 1, 20).astype(np.float32) for _ in range(9)]
    byzantine = [np.full(20, 1e20, np.float32), np.full(20, -1e20, np.float32)]
    out = bulyan([{"w": u} for u in honest + byzantine], 2)["w"]
    assert np.all(out >= np.min(honest, axis=0)) and np.all(out <= np.max(honest, axis=0))


def test_geometric_median_resists_a_minority_of_far_outliers_where_fedavg_does_not():
    rng = np.random.default_rng(6)
    honest = [rng.normal(0, 0.1, 50).astype(np.float32) for _ in range(7)]
    bad = [np.full(50, 1e4, np.float32) for _ in range(3)]
    updates = [{"w": u} for u in honest + bad]
    weights = [1] * 10
    assert np.abs(fedavg(updates, weights)["w"]).max() > 1000
    assert np.abs(geometric_median(updates, weights)["w"]).max() < 1.0


# --------------------------------------------------------------------------------------------
# preconditions


def ones(n):
    return [{"w": np.full(3, float(i), np.float32)} for i in range(n)]


@pytest.mark.parametrize("n,f", [(4, 1), (6, 2), (2, 0), (3, 1)])
def test_krum_rejects_n_not_greater_than_2f_plus_2(n, f):
    with pytest.raises(ValueError, match=rf"krum needs n > 2f \+ 2 updates: got n={n}, f={f}"):
        krum(ones(n), f)
    with pytest.raises(ValueError, match=r"multikrum needs n > 2f \+ 2"):
        multi_krum(ones(n), f)


def test_krum_accepts_n_equal_to_2f_plus_3_and_picks_an_honest_update():
    # The smallest n Krum allows for f = 1: four close updates and one far away.
    updates = [{"w": np.full(3, v, np.float32)} for v in (1.0, 1.1, 0.9, 1.05, 50.0)]
    chosen = krum(updates, 1)["w"]
    assert any(np.array_equal(chosen, u["w"]) for u in updates[:4]), chosen
    assert np.all(multi_krum(updates, 1)["w"] < 2.0)  # the outlier is never averaged in


@pytest.mark.parametrize("n,f", [(6, 1), (10, 2), (2, 0)])
def test_bulyan_rejects_n_below_4f_plus_3(n, f):
    with pytest.raises(ValueError, match=rf"bulyan needs n >= 4f \+ 3 updates: got n={n}, f={f}"):
        bulyan(ones(n), f)


def test_multikrum_rejects_m_above_n_minus_f():
    with pytest.raises(ValueError, match=r"'m' must be in \[1, n - f\] = \[1, 6\]; got 7"):
        multi_krum(ones(7), 1, m=7)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda u: trimmed_mean(u, 0.5), r"trimmed_mean parameter 'beta' must be a number in \[0, 0.5\); got 0.5"),
        (lambda u: trimmed_mean(u, -0.1), r"'beta' must be a number in \[0, 0.5\)"),
        (lambda u: geometric_median(u, max_iter=0), r"'max_iter' must be an integer in \[1, 10000\]; got 0"),
        (lambda u: geometric_median(u, tol=1.0), r"'tol' must be a number in \[0, 1\)"),
        (lambda u: geometric_median(u, eps=0.0), r"'eps' must be a number in \(0, 1\]"),
        (lambda u: krum(u, -1), r"krum parameter 'f' must be an integer >= 0; got -1"),
        (lambda u: krum(u, 1.5), r"krum parameter 'f' must be an integer >= 0; got 1.5"),
        (lambda u: multi_krum(u, 0, m=0), r"multikrum parameter 'm' must be an integer >= 1; got 0"),
        (lambda u: bulyan(u, True), r"bulyan parameter 'f' must be an integer"),
    ],
)
def test_rule_parameters_out_of_range_raise_errors_naming_parameter_and_range(call, message):
    with pytest.raises(ValueError, match=message):
        call(ones(7))


@pytest.mark.parametrize("rule", ALL_RULES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_every_rule_refuses_non_finite_updates_naming_the_update(rule, bad):
    updates = ones(7)
    updates[4] = {"w": np.array([0.0, bad, 1.0], np.float32)}
    with pytest.raises(ValueError, match=r"update 4 has non-finite values in 'w'"):
        aggregate(rule, valid_params(rule, 7), updates, [1] * 7, [bytes([i]) * 32 for i in range(7)])


def test_rules_refuse_updates_with_different_schemas():
    a = {"w": np.zeros((2, 2), np.float32)}
    with pytest.raises(ValueError, match=r"update 1 has different tensor names"):
        fedavg([a, {"v": np.zeros((2, 2), np.float32)}], [1, 1])
    with pytest.raises(ValueError, match=r"tensor 'w' of update 1 is float32\[4\], update 0 has float32\[2, 2\]"):
        coordinate_median([a, {"w": np.zeros(4, np.float32)}])
    with pytest.raises(ValueError, match=r"tensor 'w' of update 1 is float64\[2, 2\]"):
        krum([a, {"w": np.zeros((2, 2))}, a], 0)
    with pytest.raises(ValueError, match=r"dtype int64; aggregation needs floating tensors"):
        fedavg([{"n": np.zeros(2, np.int64)}], [1])
    with pytest.raises(ValueError, match="needs at least one update"):
        fedavg([], [])


def test_hashes_must_be_distinct_sha256_values():
    u = ones(3)
    with pytest.raises(ValueError, match="same hash"):
        fedavg(u, [1, 1, 1], hashes=[b"\x01" * 32, b"\x02" * 32, b"\x01" * 32])
    with pytest.raises(ValueError, match="must be a sha256 \\(32 bytes\\); got 4 bytes"):
        fedavg(u, [1, 1, 1], hashes=[b"abcd", b"\x02" * 32, b"\x03" * 32])
    with pytest.raises(ValueError, match="3 updates but 2 hashes"):
        fedavg(u, [1, 1, 1], hashes=[b"\x01" * 32, b"\x02" * 32])


def test_hex_and_raw_hashes_give_the_same_order():
    rng = np.random.default_rng(1)
    u = [{"w": rng.standard_normal(30).astype(np.float32)} for _ in range(5)]
    raw = hashes_of(u)
    a = fedavg(u, [1, 2, 3, 4, 5], hashes=raw)
    b = fedavg(u, [1, 2, 3, 4, 5], hashes=["0x" + h.hex() for h in raw])
    c = fedavg(u, [1, 2, 3, 4, 5], hashes=[h.hex().upper() for h in raw])
    assert_bits_equal(a, b)
    assert_bits_equal(a, c)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("rule", ALL_RULES)
def test_output_dtype_is_the_models_dtype(rule, dtype):
    rng = np.random.default_rng(2)
    updates = [{"w": rng.standard_normal(9).astype(dtype), "b": rng.standard_normal(()).astype(dtype)} for _ in range(7)]
    out = aggregate(rule, valid_params(rule, 7), updates, [1] * 7, hashes_of(updates))
    assert out["w"].dtype == dtype and out["b"].dtype == dtype and out["b"].shape == ()


@pytest.mark.parametrize("length", [131_072 * 2 + 17, 1_000_003])
def test_fedavg_of_large_layers_is_bit_identical_whatever_the_thread_count(monkeypatch, length):
    """Large layers are summed in parallel halves; every coordinate must get the same bits."""
    from fedledger.aggregation import mean

    rng = np.random.default_rng(length)
    ups = [{"w": rng.standard_normal(length).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32)}
           for _ in range(5)]
    weights = [3, 1, 4, 1, 5]
    hashes = [hashlib.sha256(bytes([i])).hexdigest() for i in range(5)]
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(mean, "THREADS", threads)
        results.append(fedavg(ups, weights, hashes=hashes))
    order = sorted(range(5), key=lambda i: hashes[i])
    acc = np.float64(weights[order[0]]) * ups[order[0]]["w"].astype(np.float64)
    for i in order[1:]:
        acc = acc + np.float64(weights[i]) * ups[i]["w"].astype(np.float64)
    expected = (acc / np.float64(sum(weights))).astype(np.float32)
    for r in results:
        assert r["w"].tobytes() == expected.tobytes()
        assert r["b"].tobytes() == results[0]["b"].tobytes()
