"""Data partitioners: which examples each organisation holds, for each non-IID scheme."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fedledger.node.training.partition import label_counts, parse_scheme, partition

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def labels_and_orgs(draw, min_per_org: int = 1):
    num_classes = draw(st.integers(1, 12))
    num_orgs = draw(st.integers(1, 9))
    n = draw(st.integers(num_orgs * min_per_org, 400))
    y = np.array(draw(st.lists(st.integers(0, num_classes - 1), min_size=n, max_size=n)), dtype=np.int64)
    seed = draw(st.integers(0, 2**32 - 1))
    return y, num_orgs, seed


def assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    everything = np.concatenate(parts)
    assert len(everything) == n, "some example is missing or held twice"
    assert np.array_equal(np.sort(everything), np.arange(n))


# ------------------------------------------------------------------ properties


@SETTINGS
@given(labels_and_orgs())
def test_iid_covers_every_index_once_with_sizes_within_one(case):
    y, num_orgs, seed = case
    parts = partition(y, num_orgs, "iid", seed)
    assert len(parts) == num_orgs
    assert_exact_cover(parts, len(y))
    sizes = [len(p) for p in parts]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


@SETTINGS
@given(labels_and_orgs(), st.sampled_from(["0.01", "0.1", "0.5", "1", "100"]))
def test_dirichlet_covers_every_index_once_and_meets_the_minimum(case, alpha):
    y, num_orgs, seed = case
    parts = partition(y, num_orgs, f"dirichlet:{alpha}", seed)
    assert len(parts) == num_orgs
    assert_exact_cover(parts, len(y))
    assert min(len(p) for p in parts) >= min(10, len(y) // num_orgs)


@SETTINGS
@given(labels_and_orgs(), st.integers(1, 4))
def test_shards_cover_every_index_once_and_give_each_org_at_most_K_classes(case, k):
    y, num_orgs, seed = case
    assume(num_orgs * k >= len(np.unique(y)) and num_orgs * k <= len(y))
    parts = partition(y, num_orgs, f"shards:{k}", seed)
    assert_exact_cover(parts, len(y))
    for p in parts:
        assert len(p) >= 1
        assert len(np.unique(y[p])) <= k


@SETTINGS
@given(labels_and_orgs(), st.sampled_from([0.0, 0.2, 0.5, 1.0]))
def test_skew_keeps_all_of_own_classes_and_DEF_of_the_others(case, fraction):
    y, num_orgs, seed = case
    classes = np.unique(y)
    assume(len(classes) >= num_orgs)
    parts = partition(y, num_orgs, f"skew:{fraction}", seed)
    counts = label_counts(y, parts, num_classes=int(y.max()) + 1)
    totals = np.bincount(y, minlength=int(y.max()) + 1)
    owners = np.zeros(len(totals), dtype=np.int64)
    for i, p in enumerate(parts):
        assert len(p) == len(np.unique(p)), "an organisation holds an example twice"
        for c in classes:
            if counts[i, c] == totals[c]:
                owners[c] += 1
            else:
                assert counts[i, c] == int(np.floor(fraction * totals[c] + 0.5))
    # Every class is wholly held by at least one organisation, and every organisation owns one.
    assert (owners[classes] >= 1).all()
    assert all((counts[i] == totals)[classes].any() for i in range(num_orgs))
    assert np.array_equal(np.unique(np.concatenate(parts)), np.arange(len(y)))


def test_skew_with_zero_fraction_is_disjoint_and_each_org_holds_only_its_group():
    y = np.repeat(np.arange(10), 30)
    parts = partition(y, 5, "skew:0", seed=3)
    assert_exact_cover(parts, len(y))
    for p in parts:
        assert len(np.unique(y[p])) == 2


@SETTINGS
@given(labels_and_orgs(), st.sampled_from(["iid", "dirichlet:0.3", "shards:2", "skew:0.2"]))
def test_partition_is_deterministic_given_the_seed(case, scheme):
    y, num_orgs, seed = case
    try:
        first = partition(y, num_orgs, scheme, seed)
    except ValueError:
        assume(False)
    second = partition(y, num_orgs, scheme, seed)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    for p in first:
        assert p.dtype == np.int64 and np.all(np.diff(p) > 0)


def test_different_seeds_give_different_partitions():
    y = np.repeat(np.arange(10), 50)
    for scheme in ("iid", "dirichlet:0.5", "shards:2", "skew:0.2"):
        a = partition(y, 5, scheme, seed=1)
        b = partition(y, 5, scheme, seed=2)
        assert any(not np.array_equal(p, q) for p, q in zip(a, b)), scheme


# ------------------------------------------------------------------ skew strength


def test_small_dirichlet_alpha_is_more_label_skewed_than_large_alpha():
    y = np.repeat(np.arange(10), 200)

    def mean_classes_held(alpha: str) -> float:
        counts = label_counts(y, partition(y, 10, f"dirichlet:{alpha}", seed=0))
        # Classes making up at least 5% of an organisation's data.
        share = counts / counts.sum(axis=1, keepdims=True)
        return float((share >= 0.05).sum(axis=1).mean())

    assert mean_classes_held("0.1") < 4 < mean_classes_held("100")


def test_dirichlet_tops_up_organisations_to_min_samples_when_draws_fall_short():
    # Alpha this small puts each class almost wholly in one organisation: with 2 classes and 8
    # organisations, redrawing alone cannot give everyone 5 examples.
    y = np.repeat([0, 1], 40)
    parts = partition(y, 8, "dirichlet:0.001", seed=0, min_samples=5)
    assert_exact_cover(parts, len(y))
    assert min(len(p) for p in parts) >= 5


def test_dirichlet_refuses_a_minimum_the_data_cannot_meet():
    with pytest.raises(ValueError, match="cannot give 4 organisations 30 examples"):
        partition(np.zeros(100, dtype=np.int64), 4, "dirichlet:1", seed=0, min_samples=30)


def test_shards_refuse_fewer_shards_than_classes():
    with pytest.raises(ValueError, match="at least one shard"):
        partition(np.repeat(np.arange(10), 5), 2, "shards:2", seed=0)


def test_skew_refuses_more_organisations_than_classes():
    with pytest.raises(ValueError, match="at least one class per organisation"):
        partition(np.repeat(np.arange(3), 5), 4, "skew:0.2", seed=0)


def test_more_organisations_than_examples_is_refused():
    with pytest.raises(ValueError, match="at least one example each"):
        partition(np.arange(3), 4, "iid", seed=0)


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    "scheme",
    ["", "noniid", "dirichlet", "dirichlet:", "dirichlet:0", "dirichlet:-1", "dirichlet:nan", "dirichlet:inf",
     "shards:0", "shards:1.5", "shards:x", "skew:1.5", "skew:-0.1", "skew:", "iid:2"],
)
def test_bad_scheme_raises_ValueError_listing_the_valid_schemes(scheme):
    with pytest.raises(ValueError) as err:
        partition(np.arange(20) % 2, 2, scheme, seed=0)
    message = str(err.value)
    assert repr(scheme) in message
    for form in ("iid", "dirichlet:ALPHA", "shards:K", "skew:DEF"):
        assert form in message


def test_scheme_strings_parse_to_their_parameters():
    assert parse_scheme("iid") == ("iid", None)
    assert parse_scheme("dirichlet:0.5") == ("dirichlet", 0.5)
    assert parse_scheme("shards:3") == ("shards", 3)
    assert parse_scheme("skew:0.2") == ("skew", 0.2)


def test_non_integer_labels_are_refused():
    with pytest.raises(ValueError, match="integer class ids"):
        partition(np.linspace(0, 1, 10), 2, "iid", seed=0)
