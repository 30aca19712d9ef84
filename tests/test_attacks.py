"""Attacks by one member or a small coalition, each run to the end on a real Anvil chain and a real
IPFS node, with real peers where the attack goes through them (tests/attacks.py): the honest
outcome holds. bench/attacks.py runs the same scenarios and records them.
"""

from __future__ import annotations

import pytest

from tests import attacks

pytestmark = [pytest.mark.chain, pytest.mark.timeout(600)]


@pytest.mark.ipfs
@pytest.mark.parametrize("claim", [2**53, 2**64 - 1])
def test_a_sample_claim_beyond_the_cap_is_refused_and_the_task_completes_without_it(ledger, ipfs_node, tmp_path, claim):
    out = attacks.sample_claim_over_cap(ledger, ipfs_node.api_url, tmp_path, claim)
    assert out.figures["refused"] and out.figures["task_completed"] and not out.figures["attacker_in_round"]
    assert not out.attacker_succeeded


@pytest.mark.ipfs
def test_the_largest_allowed_claim_buys_at_most_its_capped_share(ledger, ipfs_node, tmp_path):
    out = attacks.largest_claim_share(ledger, ipfs_node.api_url, tmp_path)
    assert out.figures["share"] <= out.figures["bound"] + 1e-9 and not out.attacker_succeeded


@pytest.mark.ipfs
def test_an_update_of_huge_finite_values_is_scaled_back_and_the_global_model_stays_sane(ledger, ipfs_node, tmp_path):
    out = attacks.huge_values(ledger, ipfs_node.api_url, tmp_path)
    assert out.figures["finite"] and out.figures["clipped_in_publication"]
    assert out.figures["global_change_norm"] < 100 and not out.attacker_succeeded


@pytest.mark.ipfs
@pytest.mark.parametrize("serve_verifiers", [False, True])
def test_a_withheld_blob_is_declared_unavailable_and_never_costs_an_honest_leader(ledger, ipfs_node, tmp_path,
                                                                                  serve_verifiers):
    out = attacks.withheld_blob(ledger, ipfs_node.api_url, tmp_path, serve_verifiers=serve_verifiers)
    assert out.figures["honest_leaders_blamed"] == 0
    # Unless the attacker itself led the finalized attempt (it has its own bytes), a leader declared them.
    assert out.figures["withheld_recorded"] >= 1 or out.figures["attacker_led_the_finalized_attempt"]
    assert not out.attacker_succeeded


@pytest.mark.ipfs
def test_a_leader_that_silently_drops_an_available_update_is_rejected(ledger, ipfs_node, tmp_path):
    out = attacks.silent_drop(ledger, ipfs_node.api_url, tmp_path)
    assert out.figures["rejected_attempts"] >= 1 and out.figures["finalized_attempt"] >= 1
    assert out.figures["included"] == 5 and not out.attacker_succeeded


def test_a_colluding_pair_under_the_defaults_can_neither_close_a_round_alone_nor_pass_a_bogus_model(ledger):
    out = attacks.colluding_pair(ledger)
    assert not out.figures["closed_alone"] and not out.figures["bogus_finalized"]
    assert out.figures["outcome"] == ["AttemptFailed"] and not out.attacker_succeeded


@pytest.mark.timeout(900)
def test_a_grinding_last_submitter_leads_no_more_than_its_fair_share_over_500_elections(ledger):
    out = attacks.grinding(ledger, elections=500, tries=64)
    lo, hi = out.figures["interval_99"]
    assert lo <= out.figures["led"] <= hi, out.detail
    # It knows each seed before it submits (every other secret is out by then) but cannot change
    # it: each time it tried to open another secret than the one it committed to, it was refused.
    assert out.figures["predicted"] == 499
    assert out.figures["refused_other_secret"] >= 499 - out.figures["led"]
