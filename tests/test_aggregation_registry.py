"""The registry (rule ids and parameters on chain), verification, update sources and memory."""

from __future__ import annotations

import json
import tracemalloc
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.aggregation import (
    RULES,
    FedAvgStream,
    aggregate,
    aggregates_match,
    coordinate_median,
    decode_params,
    encode_params,
    fedavg,
    get_rule,
    rule_id_bytes32,
    tolerance,
    trimmed_mean,
)

ON_CHAIN_IDS = ["fedavg", "median", "trimmed_mean", "geomedian", "cclip", "krum", "multikrum", "bulyan"]


def models(n, sizes=(("a", (30, 20)), ("b", (20,))), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(dtype) for name, shape in sizes} for _ in range(n)]


def hashes(n):
    return [bytes([200 - i]) * 32 for i in range(n)]


# --------------------------------------------------------------------------------------------
# registry and parameters


def test_registry_holds_exactly_the_on_chain_rule_ids():
    assert sorted(RULES) == sorted(ON_CHAIN_IDS)
    for rule_id in ON_CHAIN_IDS:
        assert get_rule(rule_id).id == rule_id
        raw = rule_id_bytes32(rule_id)
        assert len(raw) == 32 and raw.rstrip(b"\0") == rule_id.encode("ascii")
        assert get_rule(raw).id == rule_id


def test_unknown_rule_id_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown aggregation rule 'fedprox'; known rules: fedavg, median"):
        get_rule("fedprox")


BOUNDS = {"bucket": 1, "direction": False, "direction_ratio": 0.25, "dp_client": False, "dp_clip": 0.0,
          "dp_delta": 1e-5, "dp_epsilon": 0.0, "dp_noise": 0.0, "dp_sample_rate": 0.2, "dp_steps": 0, "max_norm": 0.0, "norm_cap": 10.0, "norm_clip": True,
          "norm_drop": 0.0, "weight_cap": 3.0}
BOUNDS_DEFAULT = ('"bucket":1,"direction":false,"direction_ratio":0.25,"dp_client":false,"dp_clip":0.0,"dp_delta":1e-05,"dp_epsilon":0.0,"dp_noise":0.0,"dp_sample_rate":0.2,"dp_steps":0,"max_norm":0.0,"norm_cap":10.0,"norm_clip":true,'
                  '"norm_drop":0.0,"weight_cap":3.0')


def test_encoded_params_are_compact_sorted_ascii_json_with_defaults():
    assert encode_params("fedavg", {}) == ("{" + BOUNDS_DEFAULT + "}").encode()
    assert encode_params("trimmed_mean") == ('{"beta":0.2,' + BOUNDS_DEFAULT + "}").encode()
    assert encode_params("geomedian", {"tol": 1e-5}) == (
        b'{"bucket":1,"direction":false,"direction_ratio":0.25,"dp_client":false,"dp_clip":0.0,"dp_delta":1e-05,"dp_epsilon":0.0,"dp_noise":0.0,"dp_sample_rate":0.2,"dp_steps":0,"eps":1e-06,"max_iter":100,"max_norm":0.0,"norm_cap":10.0,'
        b'"norm_clip":true,"norm_drop":0.0,"tol":1e-05,"weight_cap":3.0}')
    assert encode_params("multikrum", {"f": 2}) == (
        b'{"bucket":1,"direction":false,"direction_ratio":0.25,"dp_client":false,"dp_clip":0.0,"dp_delta":1e-05,"dp_epsilon":0.0,"dp_noise":0.0,"dp_sample_rate":0.2,"dp_steps":0,"f":2,"m":null,"max_norm":0.0,"norm_cap":10.0,"norm_clip":true,'
        b'"norm_drop":0.0,"weight_cap":3.0,"weighted":false}')
    assert encode_params(rule_id_bytes32("krum"), {"f": 0, "norm_cap": 0}) == (
        '{"bucket":1,"direction":false,"direction_ratio":0.25,"dp_client":false,"dp_clip":0.0,"dp_delta":1e-05,"dp_epsilon":0.0,"dp_noise":0.0,"dp_sample_rate":0.2,"dp_steps":0,"f":0,"max_norm":0.0,"norm_cap":0.0,"norm_clip":true,'
        '"norm_drop":0.0,"weight_cap":3.0}').encode()


@settings(max_examples=40, deadline=None)
@given(
    beta=st.floats(0, 0.5, exclude_max=True),
    as_int=st.booleans(),
    tol=st.sampled_from([0, 0.0, 1e-6, 0.5]),
    max_iter=st.integers(1, 10000),
)
def test_equal_parameter_sets_encode_to_identical_bytes(beta, as_int, tol, max_iter):
    a = encode_params("trimmed_mean", {"beta": beta})
    b = encode_params("trimmed_mean", {"beta": float(beta)})
    assert a == b
    assert decode_params("trimmed_mean", a) == {"beta": float(beta), **BOUNDS}
    p = {"max_iter": max_iter, "tol": tol, "eps": 1e-6}
    reordered = {"tol": float(tol), "eps": 1e-6, "max_iter": max_iter}
    assert encode_params("geomedian", p) == encode_params("geomedian", reordered)
    assert decode_params("geomedian", encode_params("geomedian", p)) == get_rule("geomedian").validate(reordered)
    if tol == 0:
        assert encode_params("geomedian", {"tol": 0, "max_iter": max_iter}) == encode_params(
            "geomedian", {"tol": 0.0, "max_iter": max_iter}
        )


def test_decode_accepts_empty_bytes_and_any_whitespace_or_key_order():
    assert decode_params("median", b"") == BOUNDS
    assert decode_params("bulyan", b"") == {"f": 1, **BOUNDS}
    assert decode_params("multikrum", b' { "weighted" : true, "f" : 3 } ') == {"f": 3, "m": None, "weighted": True,
                                                                                 **BOUNDS}


@pytest.mark.parametrize(
    "rule,data,message",
    [
        ("trimmed_mean", b'{"beta":0.5}', r"trimmed_mean parameter 'beta' must be a number in \[0, 0.5\); got 0.5"),
        ("trimmed_mean", b'{"beta":"0.1"}', r"'beta' must be a number in \[0, 0.5\)"),
        ("trimmed_mean", b'{"beta":NaN}', r"may not contain NaN"),
        ("geomedian", b'{"max_iter":0}', r"'max_iter' must be an integer in \[1, 10000\]; got 0"),
        ("geomedian", b'{"max_iter":10.0}', r"'max_iter' must be an integer in \[1, 10000\]; got 10.0"),
        ("geomedian", b'{"eps":0}', r"'eps' must be a number in \(0, 1\]; got 0"),
        ("geomedian", b'{"tol":-1e-9}', r"'tol' must be a number in \[0, 1\)"),
        ("krum", b'{"f":-1}', r"krum parameter 'f' must be an integer in \[0, 65536\]; got -1"),
        ("krum", b'{"f":true}', r"'f' must be an integer in \[0, 65536\]; got True"),
        ("multikrum", b'{"m":0}', r"multikrum parameter 'm' must be an integer in \[1, 65536\]; got 0"),
        ("multikrum", b'{"weighted":1}', r"'weighted' must be true or false; got 1"),
        ("bulyan", b'{"f":1,"f":2}', r"name 'f' twice"),
        ("bulyan", b'{"g":1}', r"bulyan has no parameter 'g'; its parameters are: bucket, direction, direction_ratio, dp_client, dp_clip, "
         r"dp_delta, dp_epsilon, dp_noise, dp_sample_rate, dp_steps, f"),
        ("fedavg", b'{"beta":0.1}', r"fedavg has no parameter 'beta'; its parameters are: bucket, direction, "
         r"direction_ratio, dp_client, dp_clip, dp_delta, dp_epsilon, dp_noise, dp_sample_rate, dp_steps, max_norm, "
         r"norm_cap, norm_clip, "
         r"norm_drop, weight_cap"),
        ("median", b"[1]", r"must be a JSON object"),
        ("median", b"{", r"not valid JSON"),
        ("median", "{\"é\":1}".encode(), r"not ASCII JSON"),
    ],
)
def test_decode_params_refuses_bad_values_naming_parameter_and_range(rule, data, message):
    with pytest.raises(ValueError, match=message):
        decode_params(rule, data)


def test_encode_params_refuses_what_decode_refuses():
    with pytest.raises(ValueError, match=r"'beta' must be a number in \[0, 0.5\); got inf"):
        encode_params("trimmed_mean", {"beta": float("inf")})
    with pytest.raises(ValueError, match="has no parameter 'alpha'"):
        encode_params("median", {"alpha": 1})


def test_aggregate_takes_params_as_dict_or_on_chain_bytes():
    updates = models(7)
    a = aggregate("multikrum", {"f": 2, "m": 3}, updates, [1] * 7, hashes(7))
    b = aggregate(rule_id_bytes32("multikrum"), encode_params("multikrum", {"m": 3, "f": 2}), updates, [1] * 7, hashes(7))
    for k in a:
        assert a[k].tobytes() == b[k].tobytes()


def test_aggregate_requires_hashes_and_checks_preconditions_with_n():
    with pytest.raises(ValueError, match="give the sha256 of every update"):
        aggregate("fedavg", {}, models(2), [1, 1], None)
    with pytest.raises(ValueError, match=r"krum needs n > 2f \+ 2 updates: got n=4, f=1"):
        aggregate("krum", b"", models(4), [1] * 4, hashes(4))


# --------------------------------------------------------------------------------------------
# verification


def test_exact_rules_have_no_tolerance_and_the_others_state_one():
    for rule_id in ("fedavg", "median", "trimmed_mean"):
        assert tolerance(rule_id, {}) is None
    assert tolerance("geomedian", {"tol": 1e-4}) == pytest.approx((1e-3, 0.0))
    assert tolerance("geomedian", encode_params("geomedian")) == pytest.approx((1e-5, 0.0))
    for rule_id in ("krum", "multikrum", "bulyan"):
        rtol, atol = tolerance(rule_id, {})
        assert 0 < rtol <= 1e-5 and atol == 0.0


def one_ulp_changed(model):
    out = {k: v.copy() for k, v in model.items()}
    out["a"].reshape(-1)[7] = np.nextafter(out["a"].reshape(-1)[7], np.float32(np.inf))
    return out


def test_exact_rule_match_refuses_a_single_ulp_and_names_the_tensor():
    agg = fedavg(models(4), [1, 2, 3, 4])
    ok, reason = aggregates_match("fedavg", {}, agg, {k: v.copy() for k, v in agg.items()})
    assert ok and "bit-identical" in reason
    ok, reason = aggregates_match("fedavg", {}, agg, one_ulp_changed(agg))
    assert not ok and "'a': 1 of 600 values differ" in reason


def test_negative_zero_is_a_different_bit_pattern_for_exact_rules():
    a = {"a": np.zeros(3, np.float32)}
    b = {"a": np.array([0.0, -0.0, 0.0], np.float32)}
    assert not aggregates_match("median", {}, a, b)[0]


def test_tolerance_rule_match_accepts_rounding_and_refuses_a_real_difference():
    agg = fedavg(models(4), [1, 2, 3, 4])
    assert aggregates_match("geomedian", {}, agg, one_ulp_changed(agg))[0]
    tampered = {k: v.copy() for k, v in agg.items()}
    tampered["b"][0] += np.float32(0.01)
    ok, reason = aggregates_match("geomedian", {}, agg, tampered)
    assert not ok and "exceeds the geomedian tolerance" in reason
    assert aggregates_match("geomedian", {"tol": 0.5}, agg, tampered)[0]


def test_match_refuses_schema_differences_and_non_finite_values():
    agg = fedavg(models(2), [1, 1])
    ok, reason = aggregates_match("krum", {}, agg, {"a": agg["a"]})
    assert not ok and "only in the first ['b']" in reason
    ok, reason = aggregates_match("krum", {}, agg, {"a": agg["a"], "b": agg["b"].astype(np.float64)})
    assert not ok and "'b' is float32[20] in the first, float64[20]" in reason
    bad = {"a": agg["a"], "b": np.full(20, np.nan, np.float32)}
    ok, reason = aggregates_match("fedavg", {}, bad, bad)
    assert not ok and "non-finite" in reason


# --------------------------------------------------------------------------------------------
# update sources and memory


class FileLike:
    """An update read lazily, like safetensors.safe_open: keys() and get_tensor() returning copies."""

    def __init__(self, model, tracker):
        self._model = model
        self._tracker = tracker

    def keys(self):
        return list(self._model)

    def get_tensor(self, name):
        tracker = self._tracker
        tracker["max_live"] = max(tracker["max_live"], tracker["live"])
        t = self._model[name].copy()
        tracker["live"] += 1
        weakref.finalize(t, _release, tracker)
        return t


def _release(tracker):
    tracker["live"] -= 1


def file_likes(updates):
    tracker = {"live": 0, "max_live": 0}
    return [FileLike(u, tracker) for u in updates], tracker


MANY_LAYERS = tuple((f"layer{i}", (50, 40)) for i in range(6))


@pytest.mark.parametrize("rule", ON_CHAIN_IDS)
def test_rules_read_lazy_sources_one_layer_at_a_time_with_the_same_result(rule):
    n = 7
    updates = models(n, MANY_LAYERS, seed=4)
    params = {"krum": {"f": 2}, "multikrum": {"f": 2}, "bulyan": {"f": 1}}.get(rule, {})
    expected = aggregate(rule, params, updates, list(range(1, n + 1)), hashes(n))
    sources, tracker = file_likes(updates)
    got = aggregate(rule, params, sources, list(range(1, n + 1)), hashes(n))
    for k in expected:
        assert got[k].tobytes() == expected[k].tobytes()
    # a new layer is only read once the previous layer of every update was released
    assert tracker["max_live"] <= n - 1


def test_rules_read_real_safetensors_files(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    updates = models(5, MANY_LAYERS, seed=5)
    paths = []
    for i, u in enumerate(updates):
        paths.append(tmp_path / f"u{i}.safetensors")
        safetensors_numpy.save_file(u, str(paths[i]))
    handles = [safe_open(str(p), framework="numpy") for p in paths]
    for rule in ("fedavg", "median", "geomedian", "krum"):
        params = {"krum": {"f": 1}}.get(rule, {})
        a = aggregate(rule, params, handles, [1, 2, 3, 4, 5], hashes(5))
        b = aggregate(rule, params, updates, [1, 2, 3, 4, 5], hashes(5))
        assert all(a[k].tobytes() == b[k].tobytes() for k in b)


@pytest.mark.parametrize("lazy", [False, True])
def test_median_and_trimmed_mean_peak_memory_stays_within_n_plus_2_largest_layers(lazy):
    # Working set: one layer of every update (only when sources are read lazily), one chunk of
    # every update, and the output. Layers are larger than a chunk, as in real models.
    n = 6
    updates = models(n, (("big", (2000, 600)), ("small", (50,))), seed=6)
    largest = 2000 * 600 * 4
    sources = file_likes(updates)[0] if lazy else updates
    for rule in (coordinate_median, lambda u: trimmed_mean(u, 0.2)):
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            out = rule(sources)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        assert out["big"].shape == (2000, 600)
        assert peak <= (n + 2) * largest
        if not lazy:
            assert peak <= 2 * largest  # dict inputs are never copied whole


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fedavg_stream_is_bit_identical_to_fedavg(dtype):
    updates = models(6, seed=7, dtype=dtype)
    weights = [5, 1, 9, 2, 6, 5]
    hs = [bytes([i * 37 % 256]) * 32 for i in range(6)]
    stream = FedAvgStream()
    for i in sorted(range(6), key=lambda i: hs[i]):
        stream.add(updates[i], weights[i], hs[i].hex())
    expected = fedavg(updates, weights, hashes=hs)
    got = stream.result()
    assert stream.count == 6
    assert all(got[k].tobytes() == expected[k].tobytes() for k in expected)


def test_fedavg_stream_refuses_updates_out_of_hash_order_or_schema():
    stream = FedAvgStream()
    u = models(2, seed=8)
    stream.add(u[0], 3, b"\x05" * 32)
    with pytest.raises(ValueError, match="ascending hash order"):
        stream.add(u[1], 3, b"\x04" * 32)
    with pytest.raises(ValueError, match="different tensor names"):
        stream.add({"a": u[1]["a"]}, 3, b"\x06" * 32)
    with pytest.raises(ValueError, match="no update was added"):
        FedAvgStream().result()


def test_rules_refuse_sources_that_are_not_models():
    with pytest.raises(ValueError, match="give a dict of arrays or an object with keys\\(\\) and get_tensor"):
        fedavg([np.zeros(3)], [1])


def test_rules_never_modify_their_inputs():
    updates = models(7, seed=9)
    before = [json.dumps({k: v.tobytes().hex() for k, v in u.items()}) for u in updates]
    for rule in ON_CHAIN_IDS:
        params = {"krum": {"f": 2}, "multikrum": {"f": 2}, "bulyan": {"f": 1}}.get(rule, {})
        out = aggregate(rule, params, updates, [1] * 7, hashes(7))
        out["a"][...] = 0  # the output is not a view of an input
    after = [json.dumps({k: v.tobytes().hex() for k, v in u.items()}) for u in updates]
    assert before == after
