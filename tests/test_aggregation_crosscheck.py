"""Every rule against an independent computation (numpy / scipy one-liners, brute force)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.spatial.distance import cdist

from fedledger.aggregation import (
    bulyan,
    coordinate_median,
    fedavg,
    geometric_median,
    krum,
    krum_scores,
    merge_aggregates,
    multi_krum,
    trim_count,
    trimmed_mean,
)
from fedledger.aggregation._sortnet import NETWORK_MAX_N, sorting_network


def stacked(n, p=37, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, p)) * rng.uniform(0.1, 10, (n, 1))).astype(dtype)
    return X, [{"w": x[:10].reshape(2, 5), "v": x[10:]} for x in X]


def flat(model):
    return np.concatenate([model["w"].reshape(-1), model["v"]])


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_fedavg_matches_numpy_weighted_average(n):
    X, updates = stacked(n)
    weights = list(range(3, 3 + 7 * n, 7))
    expected = np.average(X.astype(np.float64), axis=0, weights=weights)
    np.testing.assert_allclose(flat(fedavg(updates, weights)), expected, rtol=2e-7, atol=1e-7)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, NETWORK_MAX_N + 1, 31])
def test_median_equals_numpy_median_in_float64_bit_for_bit(n):
    X, updates = stacked(n, seed=n)
    expected = np.median(X.astype(np.float64), axis=0).astype(np.float32)
    np.testing.assert_array_equal(flat(coordinate_median(updates)), expected)


@pytest.mark.parametrize("n,beta", [(4, 0.25), (5, 0.2), (10, 0.1), (10, 0.3), (9, 0.45), (30, 0.2), (6, 0.0)])
def test_trimmed_mean_matches_scipy_trim_mean(n, beta):
    X, updates = stacked(n, seed=n + 100)
    assert trim_count(beta, n) == int(beta * n)  # the cases where scipy's float floor agrees
    expected = stats.trim_mean(X.astype(np.float64), beta, axis=0)
    np.testing.assert_allclose(flat(trimmed_mean(updates, beta)), expected, rtol=2e-7, atol=1e-7)


def test_trim_count_reads_beta_as_its_decimal():
    assert int(0.29 * 100) == 28  # what a float product gives
    assert trim_count(0.29, 100) == 29
    assert trim_count(0.2, 4) == 0 and trim_count(0.25, 4) == 1 and trim_count(0.499, 1000) == 499


def test_geometric_median_minimises_the_weighted_distance_sum_like_scipy():
    X, updates = stacked(6, p=12, seed=7, dtype=np.float64)
    weights = [1, 2, 3, 1, 5, 2]

    def objective(v):
        return float(np.sum(np.asarray(weights) * np.linalg.norm(X - v, axis=1)))

    ref = optimize.minimize(objective, X.mean(axis=0), method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 200000, "maxfev": 200000})
    ours, info = geometric_median(updates, weights, tol=1e-12, max_iter=10000, eps=1e-12, return_info=True)
    assert info["converged"]
    assert objective(flat(ours)) <= ref.fun * (1 + 1e-9)
    np.testing.assert_allclose(flat(ours), ref.x, rtol=1e-3, atol=1e-3)
    assert info["objective"] == pytest.approx(objective(flat(ours)), rel=1e-9)


def test_geometric_median_satisfies_the_first_order_optimality_condition():
    X, updates = stacked(9, p=20, seed=8, dtype=np.float64)
    ours = flat(geometric_median(updates, tol=1e-13, max_iter=10000, eps=1e-14))
    diff = ours - X
    gradient = np.sum(diff / np.linalg.norm(diff, axis=1, keepdims=True), axis=0)
    assert np.linalg.norm(gradient) < 1e-6


def test_geometric_median_stops_by_its_stated_rule():
    X, updates = stacked(5, p=30, seed=9)
    _, few = geometric_median(updates, max_iter=2, tol=0.0, return_info=True)
    assert few["iterations"] == 2 and not few["converged"]
    _, loose = geometric_median(updates, tol=1e-2, return_info=True)
    _, tight = geometric_median(updates, tol=1e-8, return_info=True)
    assert loose["converged"] and loose["relative_step"] <= 1e-2
    assert tight["converged"] and tight["relative_step"] <= 1e-8
    assert loose["iterations"] < tight["iterations"]


def brute_krum_scores(X, f):
    D = cdist(X.astype(np.float64), X.astype(np.float64), "sqeuclidean")
    k = len(X) - f - 2
    return np.array([np.sort(np.delete(D[i], i))[:k].sum() for i in range(len(X))])


@pytest.mark.parametrize("n,f", [(3, 0), (5, 1), (8, 2), (11, 4)])
def test_krum_scores_and_choice_match_scipy_pairwise_distances(n, f):
    X, updates = stacked(n, seed=20 + n)
    expected = brute_krum_scores(X, f)
    np.testing.assert_allclose(krum_scores(updates, f), expected, rtol=1e-12)
    np.testing.assert_array_equal(flat(krum(updates, f)), X[np.argmin(expected)])


@pytest.mark.parametrize("n,f,m", [(5, 1, None), (8, 2, 3), (9, 1, 1)])
def test_multikrum_averages_the_m_lowest_scores(n, f, m):
    X, updates = stacked(n, seed=30 + n)
    best = np.argsort(brute_krum_scores(X, f), kind="stable")[: (m or n - f)]
    np.testing.assert_allclose(flat(multi_krum(updates, f, m)), X[best].astype(np.float64).mean(axis=0), rtol=2e-7, atol=1e-7)
    weights = list(range(1, n + 1))
    weighted = np.average(X[best].astype(np.float64), axis=0, weights=np.asarray(weights)[best])
    np.testing.assert_allclose(flat(multi_krum(updates, f, m, weights, weighted=True)), weighted, rtol=2e-7, atol=1e-7)


def reference_bulyan(X, f):
    """El Mhamdi et al. 2018 written out: recursive Krum, then the beta values nearest the median."""
    X = X.astype(np.float64)
    D = cdist(X, X, "sqeuclidean")
    remaining, chosen = list(range(len(X))), []
    for _ in range(len(X) - 2 * f):
        k = max(1, len(remaining) - f - 2)
        scores = [np.sort([D[i, j] for j in remaining if j != i])[:k].sum() for i in remaining]
        best = remaining[int(np.argmin(scores))]
        chosen.append(best)
        remaining.remove(best)
    S = X[chosen]
    beta = len(chosen) - 2 * f
    med = np.median(S, axis=0)
    nearest = np.argsort(np.abs(S - med), axis=0, kind="stable")[:beta]
    return np.take_along_axis(S, nearest, axis=0).mean(axis=0)


@pytest.mark.parametrize("n,f", [(3, 0), (7, 1), (12, 2), (15, 3)])
def test_bulyan_matches_a_direct_transcription_of_the_paper(n, f):
    X, updates = stacked(n, seed=40 + n)
    np.testing.assert_allclose(flat(bulyan(updates, f)), reference_bulyan(X, f), rtol=2e-7, atol=1e-7)


def test_merging_cluster_aggregates_equals_fedavg_over_all_their_updates():
    X, updates = stacked(9, seed=50)
    weights = [10, 20, 30, 40, 50, 60, 70, 80, 90]
    clusters = [[0, 1, 2], [3, 4], [5, 6, 7, 8]]
    models = [fedavg([updates[i] for i in c], [weights[i] for i in c]) for c in clusters]
    merged = merge_aggregates(models, [sum(weights[i] for i in c) for c in clusters])
    whole = fedavg(updates, weights)
    for k in whole:
        np.testing.assert_allclose(merged[k], whole[k], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", range(1, 13))
def test_sorting_network_sorts_every_zero_one_input(n):
    net = sorting_network(n)
    for bits in itertools.product((0, 1), repeat=n):
        v = list(bits)
        for a, b in net:
            if v[a] > v[b]:
                v[a], v[b] = v[b], v[a]
        assert v == sorted(v)
