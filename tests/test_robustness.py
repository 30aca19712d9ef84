"""Robust aggregation on heterogeneous data: centered clipping (aggregation/clipping.py), property by
property, and the colluding attacks of the literature it must withstand (ALIE, IPM)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.aggregation import AggregationError, centered_clipping, coordinate_median, fedavg
from fedledger.aggregation.registry import aggregate, aggregates_match, decode_params, encode_params


def hashes(n: int) -> list[bytes]:
    return [bytes([i + 1]) * 32 for i in range(n)]


def honest_and_attackers(seed: int, n_honest: int = 7, attack: float = -10.0, n_bad: int = 3):
    rng = np.random.default_rng(seed)
    honest = [{"w": rng.normal(1.0, 0.1, (20, 30)).astype(np.float32), "b": rng.normal(0, 0.1, 30).astype(np.float32)}
              for _ in range(n_honest)]
    bad = [{"w": np.full((20, 30), attack, np.float32), "b": np.full(30, attack, np.float32)} for _ in range(n_bad)]
    return honest, bad


def test_identical_updates_come_back_bit_for_bit():
    x = {"w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)}
    out = centered_clipping([x] * 5, hashes=hashes(5))
    assert out["w"].dtype == np.float32 and np.array_equal(out["w"], x["w"])


def test_a_minority_cannot_drag_the_centre_where_fedavg_follows_it():
    honest, bad = honest_and_attackers(1, attack=-1e6)
    ours = centered_clipping(honest + bad, hashes=hashes(10))
    mean = fedavg(honest, [1] * 7, hashes=hashes(7))
    poisoned = fedavg(honest + bad, [1] * 10, hashes=hashes(10))
    err = max(float(np.abs(ours[k] - mean[k]).max()) for k in ours)
    assert err < 0.25 and float(np.abs(poisoned["w"] - mean["w"]).max()) > 1e5


def test_on_clean_heterogeneous_updates_it_stays_closer_to_the_mean_than_the_median_does():
    rng = np.random.default_rng(3)
    ups = [{"w": rng.normal(i * 0.3, 0.05, 200).astype(np.float32)} for i in range(8)]  # spread, like non-iid data
    mean = fedavg(ups, [1] * 8, hashes=hashes(8))["w"]
    ours = centered_clipping(ups, hashes=hashes(8), iters=10)["w"]
    med = coordinate_median(ups, hashes=hashes(8))["w"]
    assert np.linalg.norm(ours - mean) < 0.5 * np.linalg.norm(med - mean)


def test_a_radius_no_update_exceeds_makes_it_the_mean():
    honest, _ = honest_and_attackers(2)
    ours = centered_clipping(honest, tau=1e30, iters=1, hashes=hashes(7))
    mean = fedavg(honest, [1] * 7, hashes=hashes(7))
    assert all(np.allclose(ours[k], mean[k], rtol=0, atol=1e-6) for k in ours)


@settings(max_examples=20, deadline=None)
@given(st.permutations(list(range(6))), st.integers(0, 2**32 - 1))
def test_input_order_never_changes_a_bit(perm, seed):
    honest, bad = honest_and_attackers(seed % 1000, n_honest=4, n_bad=2, attack=5.0)
    ups, hs = honest + bad, hashes(6)
    a = centered_clipping(ups, hashes=hs)
    b = centered_clipping([ups[i] for i in perm], hashes=[hs[i] for i in perm])
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_parameters_are_checked_and_registered_with_a_verification_tolerance():
    assert encode_params("cclip", {}) == (b'{"bucket":1,"direction":false,"direction_ratio":0.25,"dp_client":false,"dp_clip":0.0,"dp_delta":1e-05,"dp_epsilon":0.0,"dp_noise":0.0,"dp_sample_rate":0.2,"dp_steps":0,"iters":3,"max_norm":0.0,'
                                          b'"norm_cap":10.0,"norm_clip":true,"norm_drop":0.0,"tau":0.0,'
                                          b'"weight_cap":3.0}')
    with pytest.raises(ValueError, match="iters"):
        decode_params("cclip", b'{"iters": 0}')
    with pytest.raises(AggregationError, match="tau"):
        centered_clipping([{"w": np.ones(3, np.float32)}], tau=-1.0)
    honest, bad = honest_and_attackers(4)
    params = encode_params("cclip", {"iters": 5})
    out = aggregate("cclip", params, honest + bad, [1] * 10, hashes(10))
    drifted = {k: v * np.float32(1 + 1e-7) for k, v in out.items()}
    assert aggregates_match("cclip", params, out, drifted)[0]
    assert not aggregates_match("cclip", params, out, {k: v + np.float32(0.01) for k, v in out.items()})[0]


# --------------------------------------------------------------------------- the colluding attacks


def test_alie_stays_inside_the_honest_spread_with_the_papers_z():
    from fedledger.node.peer.adversary import alie_update, alie_z

    assert abs(alie_z(10, 3) - 0.5244) < 1e-4  # s = 3 supporters: Phi^-1(0.7)
    assert abs(alie_z(50, 12) - 0.5828) < 1e-4  # s = 14: Phi^-1(0.72)
    rng = np.random.default_rng(5)
    parent = {"w": np.zeros(400, np.float32)}
    honest = [{"w": rng.normal(1.0, 0.2, 400).astype(np.float32)} for _ in range(3)]
    bad = alie_update(parent, honest, alie_z(10, 3))["w"]
    d = np.stack([h["w"] for h in honest]).astype(np.float64)
    expected = d.mean(0) - alie_z(10, 3) * d.std(0)
    assert np.allclose(bad, expected, atol=1e-6) and bad.dtype == np.float32
    assert np.all(bad >= d.min(0) - 3 * d.std(0))  # no outlier coordinate: a small shift, everywhere


def test_ipm_turns_the_mean_direction_around():
    from fedledger.node.peer.adversary import ipm_update

    rng = np.random.default_rng(6)
    parent = {"w": rng.normal(0, 1, 300).astype(np.float32)}
    honest = [{"w": parent["w"] + rng.normal(0.5, 0.1, 300).astype(np.float32)} for _ in range(3)]
    bad = ipm_update(parent, honest, 0.1)["w"].astype(np.float64) - parent["w"]
    true = np.mean([h["w"] - parent["w"] for h in honest], axis=0)
    assert float(bad @ true) < 0 and np.allclose(bad, -0.1 * true, atol=1e-6)


# --------------------------------------------------------------------------- bucketing


def test_the_bucketing_shuffle_is_a_seeded_permutation_every_verifier_recomputes():
    from fedledger.aggregation.bucketing import shuffle

    a, b = shuffle(10, b"\x01" * 32), shuffle(10, b"\x02" * 32)
    assert sorted(a) == list(range(10)) and a == shuffle(10, b"\x01" * 32) and a != b
    with pytest.raises(AggregationError, match="32-byte seed"):
        shuffle(3, b"short")


def test_a_task_with_buckets_shuffles_by_the_rounds_seed_and_every_order_gives_the_same_bits():
    honest, bad = honest_and_attackers(7, n_honest=8, n_bad=2, attack=-1e3)
    ups, hs = honest + bad, hashes(10)
    params = encode_params("median", {"bucket": 2})
    seed = bytes.fromhex("ab" * 32)
    out = aggregate("median", params, ups, [10] * 10, hs, seed=seed)
    again = aggregate("median", params, ups[::-1], [10] * 10, hs[::-1], seed=seed)
    assert all(np.array_equal(out[k], again[k]) for k in out)  # bit for bit: leader, verifiers, audit
    # The same round with another seed puts other updates together: another (still robust) result.
    other = aggregate("median", params, ups, [10] * 10, hs, seed=bytes.fromhex("cd" * 32))
    assert any(not np.array_equal(out[k], other[k]) for k in out)
    mean = fedavg(honest, [1] * 8, hashes=hashes(8))
    assert max(float(np.abs(out[k] - mean[k]).max()) for k in out) < 1.0
    with pytest.raises(AggregationError, match="needs the round's seed"):
        aggregate("median", params, ups, [10] * 10, hs)
    plain = encode_params("median", {})
    assert all(np.array_equal(aggregate("median", plain, ups, [10] * 10, hs, seed=seed)[k],
                              aggregate("median", plain, ups, [10] * 10, hs)[k]) for k in out)  # bucket 1: no seed needed


def test_bucket_means_keep_an_attacker_minority_a_minority_and_input_order_does_not_matter():
    """Two attackers of ten in buckets of two spoil at most two of five means (the paper's condition
    fraction x bucket size < 1/2); three could spoil three of five, which no robust rule survives."""
    from fedledger.aggregation.bucketing import bucketed

    honest, bad = honest_and_attackers(7, n_honest=8, n_bad=2, attack=-1e3)
    ups, hs = honest + bad, hashes(10)
    inner = lambda means, mh: centered_clipping(means, hashes=mh)  # noqa: E731
    seed = b"\x07" * 32
    out = bucketed(inner, ups, 2, seed, hs)
    again = bucketed(inner, ups[::-1], 2, seed, hs[::-1])
    assert all(np.array_equal(out[k], again[k]) for k in out)
    mean = fedavg(honest, [1] * 8, hashes=hashes(8))
    assert max(float(np.abs(out[k] - mean[k]).max()) for k in out) < 1.0


def test_colluders_pool_their_honest_updates_through_files_and_send_the_same_alie_update(tmp_path):
    """Two attacker nodes of a round (threads here, processes in a sim) each write their honest model
    as safetensors and read the other's: both send exactly the update ALIE computes from the pair."""
    from concurrent.futures import ThreadPoolExecutor

    from fedledger.node.errors import InputError
    from fedledger.node.peer.adversary import Adversary, alie_update, alie_z

    rng = np.random.default_rng(9)
    parent = {"w": rng.normal(0, 1, (4, 5)).astype(np.float32)}
    honest = [{"w": parent["w"] + rng.normal(0.2, 0.05, (4, 5)).astype(np.float32)} for _ in range(2)]
    advs = [Adversary.from_dict({"attack": "alie", "collude_dir": str(tmp_path), "colluders": 2, "participants": 10,
                                 "seed": s}) for s in (11, 22)]
    with ThreadPoolExecutor(2) as pool:
        sent = list(pool.map(lambda i: advs[i].poison(parent, honest[i], seed=0, rnd=3), range(2)))
    expected = alie_update(parent, honest, alie_z(10, 2))
    assert all(np.array_equal(s["w"], expected["w"]) for s in sent)
    assert sorted(f.name for f in (tmp_path / "round3").iterdir()) == ["member11.safetensors", "member22.safetensors"]
    with pytest.raises(InputError, match="collude_dir"):
        Adversary.from_dict({"attack": "ipm:0.1"})
