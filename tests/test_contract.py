"""FedLedger on a real Anvil node: every revert path, the election, failover, quorum and lineage events."""

from __future__ import annotations

import hashlib
import threading

import pytest
from eth_account import Account

from fedledger.node.chain.abi import plain as _plain
from fedledger.node.errors import ContractRevert
from fedledger.node.protocol import (
    FailReason,
    Phase,
    TaskConfig,
    commitment,
    derive_seed,
    election_order,
    seed_start,
    verifiers_for,
    xor_secrets,
)

pytestmark = pytest.mark.chain

GENESIS = hashlib.sha256(b"genesis model").hexdigest()
WINDOW = 100


def h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def config(**overrides) -> TaskConfig:
    base = dict(
        model_spec_cid="bafkspec",
        genesis_cid="bafkgenesis",
        genesis_sha256=GENESIS,
        rule_id="fedavg",
        rule_params=b"{}",
        min_participants=3,
        max_participants=9,
        submission_window=WINDOW,
        aggregation_window=WINDOW,
        verification_window=WINDOW,
        verifiers_per_round=2,
        quorum=2,
        max_rounds=3,
    )
    base.update(overrides)
    return TaskConfig(**base)


def admit(ledger, members=range(1, 10)):
    for i in members:
        ledger.admin.add_member(ledger.accounts[i].address, f"org{i}")


def setup_task(ledger, members=range(1, 10), **overrides) -> int:
    admit(ledger, members)
    task, _ = ledger.admin.create_task(config(**overrides))
    return task


def submit_all(ledger, task, round_, members, parent=GENESIS):
    for i in members:
        ledger.client(i).submit_update(task, round_, parent, f"bafkupd{round_}x{i}", h(f"u{round_}{i}"), 100 + i)


def close(ledger, task, round_):
    """Close the window past its deadline; in a round with a reveal phase every participant then
    reveals and the last reveal elects (its transaction is returned)."""
    ledger.advance(WINDOW + 1)
    tx = ledger.admin.close_submissions(task, round_)
    if ledger.admin.round_info(task, round_).phase != Phase.REVEAL:  # a reopened round elects at once
        return tx
    return reveal_all(ledger, task, round_) or tx


def reveal_all(ledger, task, round_, skip=()):
    last = None
    for address in ledger.admin.participants(task, round_):
        i = index_of(ledger, address)
        if i not in skip:
            client = ledger.client(i)
            last = client.reveal(task, round_)
    return last


def index_of(ledger, address: str) -> int:
    return [a.address for a in ledger.accounts].index(address)


def expect_revert(error: str, fn, *args, **kwargs) -> ContractRevert:
    with pytest.raises(ContractRevert) as info:
        fn(*args, **kwargs)
    assert info.value.error == error, str(info.value)
    return info.value


def elected_round(ledger, members=(1, 2, 3, 4), **overrides):
    """A task whose round 1 has closed: returns (task, leader index, verifier indices)."""
    task = setup_task(ledger, **overrides)
    submit_all(ledger, task, 1, members)
    close(ledger, task, 1)
    info = ledger.admin.round_info(task, 1)
    verifiers = [index_of(ledger, a) for a in ledger.admin.verifiers_of(task, 1, info.attempt)]
    return task, index_of(ledger, info.leader), verifiers


# ------------------------------------------------------------------ consortium


def test_admin_admits_and_removes_members_with_events(ledger):
    addr = ledger.accounts[1].address
    r = ledger.admin.add_member(addr, "St Mary's Hospital")
    assert r.event("MemberAdded")["name"] == "St Mary's Hospital"
    assert ledger.admin.is_member(addr) and ledger.admin.member_count() == 1
    assert ledger.admin.member_info(addr)[:2] == (True, "St Mary's Hospital")
    r = ledger.admin.remove_member(addr)
    assert r.event("MemberRemoved")["member"] == addr
    assert not ledger.admin.is_member(addr) and ledger.admin.member_count() == 0


def test_non_admin_cannot_admit_members_NotAdmin(ledger):
    err = expect_revert("NotAdmin", ledger.client(1).add_member, ledger.accounts[2].address, "x")
    assert err.args_["who"] == ledger.accounts[1].address


def test_admitting_a_member_twice_reverts_AlreadyMember(ledger):
    admit(ledger, [1])
    expect_revert("AlreadyMember", ledger.admin.add_member, ledger.accounts[1].address, "again")


def test_a_name_names_one_organisation_for_good_NameTaken(ledger):
    a, b = ledger.accounts[1].address, ledger.accounts[2].address
    ledger.admin.add_member(a, "org1")
    err = expect_revert("NameTaken", ledger.admin.add_member, b, "org1")
    assert (err.args_["name"], err.args_["holder"]) == ("org1", a)
    ledger.admin.remove_member(a)  # removed, its name still names it in the lineage
    expect_revert("NameTaken", ledger.admin.add_member, b, "org1")
    ledger.admin.add_member(a, "org1")  # the same organisation comes back under its own name
    assert ledger.admin.member_info(a)[:2] == (True, "org1") and not ledger.admin.is_member(b)


def test_removing_a_non_member_reverts_NotMember(ledger):
    expect_revert("NotMember", ledger.admin.remove_member, ledger.accounts[5].address)


def test_admin_role_moves_in_two_steps_and_cannot_be_renounced(ledger):
    ledger.admin.transfer_admin(ledger.accounts[9].address)  # a typo: nobody can lose the role by it
    ledger.admin.transfer_admin(ledger.accounts[1].address)  # the offer is replaced, not taken
    assert ledger.admin.admin() == ledger.accounts[0].address
    expect_revert("OwnableUnauthorizedAccount", ledger.client(9)._transact, "acceptOwnership")
    ledger.client(1)._transact("acceptOwnership")
    assert ledger.admin.admin() == ledger.accounts[1].address
    expect_revert("NotAdmin", ledger.admin.add_member, ledger.accounts[2].address, "x")
    ledger.client(1).add_member(ledger.accounts[2].address, "org2")
    err = expect_revert("InvalidArgument", ledger.client(1)._transact, "renounceOwnership")
    assert "cannot be renounced" in err.args_["what"]


# ----------------------------------------------------------------------- tasks


def test_create_task_opens_round_one_on_the_genesis_model(ledger):
    task = setup_task(ledger)
    state = ledger.admin.task_state(task)
    assert (state.current_round, state.global_sha256, state.global_cid) == (1, GENESIS, "bafkgenesis")
    assert ledger.admin.task_config(task) == config()
    assert ledger.admin.round_info(task, 1).phase == Phase.SUBMISSION
    opened = ledger.admin.events(names=["RoundOpened"], task=task)
    assert opened[0]["parent"] == GENESIS and opened[0]["round"] == 1


@pytest.mark.parametrize(
    "overrides, what",
    [
        (dict(quorum=3), "quorum exceeds verifiersPerRound"),
        (dict(quorum=0), "quorum must be a majority of verifiersPerRound"),
        (dict(quorum=1), "quorum must be a majority of verifiersPerRound"),
        (dict(verifiers_per_round=4, quorum=2, min_participants=5), "quorum must be a majority of verifiersPerRound"),
        (dict(min_participants=2), "minParticipants must exceed verifiersPerRound"),
        (dict(min_participants=0), "minParticipants must be at least 1"),
        (dict(max_participants=2, min_participants=3), "maxParticipants < minParticipants"),
        (dict(genesis_sha256="00" * 32), "genesisSha256 is zero"),
        (dict(verifiers_per_round=17, quorum=9), "verifiersPerRound exceeds 16"),
        (dict(max_rounds=0), "maxRounds must be at least 1"),
        (dict(aggregation_window=0), "windows must be at least 1 second"),
        (dict(max_samples=0), "maxSamples must be 1-2^32"),
        (dict(max_samples=2**32 + 1), "maxSamples must be 1-2^32"),
        (dict(reveal_window=0), "revealWindow must be at least 1 second"),
    ],
)
def test_create_task_rejects_inconsistent_config_InvalidArgument(ledger, overrides, what):
    err = expect_revert("InvalidArgument", ledger.admin.create_task, config(**overrides))
    assert err.args_["what"] == what


def test_non_admin_cannot_create_tasks_NotAdmin(ledger):
    admit(ledger, [1])
    expect_revert("NotAdmin", ledger.client(1).create_task, config())


def test_unknown_task_reverts_UnknownTask(ledger):
    admit(ledger, [1])
    expect_revert("UnknownTask", ledger.client(1).submit_update, 7, 1, GENESIS, "bafk", h("x"), 1)
    expect_revert("UnknownTask", ledger.admin.task_state, 7)


# ------------------------------------------------------------------ submission


def test_submit_records_the_update_and_its_lineage_event(ledger):
    task = setup_task(ledger)
    r = ledger.client(1).submit_update(task, 1, GENESIS, "bafkupd", h("u1"), 120)
    ev = r.event("UpdateSubmitted")
    assert (ev["member"], ev["parent"], ev["cid"], ev["sha256"], ev["numSamples"]) == (
        ledger.accounts[1].address, GENESIS, "bafkupd", h("u1"), 120)
    assert ledger.admin.has_submitted(task, 1, ledger.accounts[1].address)
    assert ledger.admin.participants(task, 1) == [ledger.accounts[1].address]
    assert ledger.admin.round_info(task, 1).total_samples == 120


def test_non_member_submit_reverts_NotMember(ledger):
    task = setup_task(ledger, members=[1, 2])
    err = expect_revert("NotMember", ledger.client(5).submit_update, task, 1, GENESIS, "bafk", h("x"), 10)
    assert err.args_["who"] == ledger.accounts[5].address


def test_removed_member_can_no_longer_submit_NotMember(ledger):
    task = setup_task(ledger, members=[1, 2])
    ledger.admin.remove_member(ledger.accounts[2].address)
    expect_revert("NotMember", ledger.client(2).submit_update, task, 1, GENESIS, "bafk", h("x"), 10)


def test_second_update_in_a_round_reverts_DuplicateUpdate(ledger):
    task = setup_task(ledger)
    ledger.client(1).submit_update(task, 1, GENESIS, "bafk1", h("a"), 10)
    err = expect_revert("DuplicateUpdate", ledger.client(1).submit_update, task, 1, GENESIS, "bafk2", h("b"), 10)
    assert err.args_["member"] == ledger.accounts[1].address


def test_update_on_a_stale_parent_reverts_StaleParent(ledger):
    task = setup_task(ledger)
    err = expect_revert("StaleParent", ledger.client(1).submit_update, task, 1, h("old model"), "bafk", h("a"), 10)
    assert err.args_["expected"] == GENESIS and err.args_["given"] == h("old model")


def test_update_for_another_round_reverts_WrongRound(ledger):
    task = setup_task(ledger)
    err = expect_revert("WrongRound", ledger.client(1).submit_update, task, 2, GENESIS, "bafk", h("a"), 10)
    assert (err.args_["expected"], err.args_["given"]) == (1, 2)


def test_update_that_fills_the_round_closes_it_and_the_last_reveal_elects(ledger):
    task = setup_task(ledger, max_participants=2, min_participants=2, verifiers_per_round=1, quorum=1)
    submit_all(ledger, task, 1, [1])
    r = ledger.client(2).submit_update(task, 1, GENESIS, "bafk2", h("b"), 10)  # before the deadline
    assert r.event("SubmissionsClosed")["participants"] == 2 and r.event("SubmissionsClosed")["revealDeadline"] > 0
    assert ledger.admin.round_info(task, 1).phase == Phase.REVEAL
    assert ledger.admin.election_order(task, 1) == []  # nobody knows the order before every secret is out
    expect_revert("WrongPhase", ledger.client(3).submit_update, task, 1, GENESIS, "bafk", h("a"), 10)
    expect_revert("WrongPhase", ledger.admin.close_submissions, task, 1)
    first = ledger.client(1).reveal(task, 1)
    assert not any(e.name == "LeaderElected" for e in first.events)
    r = reveal_all(ledger, task, 1, skip=(1,))
    assert r.event("SeedDrawn")["participants"] == 2
    assert r.event("LeaderElected")["leader"] in (ledger.accounts[1].address, ledger.accounts[2].address)
    assert ledger.admin.round_info(task, 1).phase == Phase.AGGREGATION


def test_update_to_a_reopened_full_round_reverts_RoundFull_and_anyone_closes_it_at_once(ledger):
    task = setup_task(ledger, max_participants=2, min_participants=2, verifiers_per_round=1, quorum=1)
    submit_all(ledger, task, 1, [1, 2])
    reveal_all(ledger, task, 1)
    for _ in range(2):  # both candidates time out: the round reopens, full
        ledger.advance(WINDOW + 1)
        r = ledger.admin.timeout(task, 1)
    assert r.event("RoundReopened")["epoch"] == 1
    expect_revert("RoundFull", ledger.client(3).submit_update, task, 1, GENESIS, "bafk", h("a"), 10)
    r = ledger.client(9).close_submissions(task, 1)  # before the new deadline, by anyone
    # A reopened round reveals nothing new: its order derives from the secrets already out.
    assert r.event("SubmissionsClosed")["participants"] == 2 and r.event("SubmissionsClosed")["revealDeadline"] == 0
    assert r.event("LeaderElected")["epoch"] == 1


@pytest.mark.parametrize("cid, sha, n, commitment, what", [
    ("", h("a"), 10, None, "cid must be 1-128 bytes"),
    ("b" * 129, h("a"), 10, None, "cid must be 1-128 bytes"),
    ("bafk", "00" * 32, 10, None, "sha256 is zero"),
    ("bafk", h("a"), 0, None, "numSamples is zero"),
    ("bafk", h("a"), 10, "00" * 32, "commitment is zero"),
])
def test_malformed_submission_reverts_InvalidArgument(ledger, cid, sha, n, commitment, what):
    task = setup_task(ledger)
    err = expect_revert("InvalidArgument", ledger.client(1).submit_update, task, 1, GENESIS, cid, sha, n, commitment)
    assert err.args_["what"] == what


@pytest.mark.parametrize("claim", [2**32 + 1, 2**53, 2**64 - 1])
def test_a_sample_claim_above_the_tasks_cap_reverts_TooManySamples_and_freezes_nothing(ledger, claim):
    task = setup_task(ledger, max_samples=10_000)
    err = expect_revert("TooManySamples", ledger.client(1).submit_update, task, 1, GENESIS, "bafk", h("a"), claim)
    assert (err.args_["given"], err.args_["max"]) == (claim, 10_000)
    ledger.client(1).submit_update(task, 1, GENESIS, "bafk", h("a"), 10_000)  # at the cap: taken
    submit_all(ledger, task, 1, [2, 3])
    assert ledger.admin.round_info(task, 1).total_samples == 10_000 + 102 + 103


def test_update_after_close_reverts_WrongPhase(ledger):
    task = setup_task(ledger)
    submit_all(ledger, task, 1, [1, 2, 3])
    close(ledger, task, 1)
    err = expect_revert("WrongPhase", ledger.client(4).submit_update, task, 1, GENESIS, "bafk", h("a"), 10)
    assert (err.args_["expected"], err.args_["actual"]) == (Phase.SUBMISSION, Phase.AGGREGATION)


# ----------------------------------------------------------------------- close


def test_close_before_the_deadline_reverts_TooEarly(ledger):
    task = setup_task(ledger)
    submit_all(ledger, task, 1, [1, 2, 3])
    err = expect_revert("TooEarly", ledger.admin.close_submissions, task, 1)
    assert err.args_["deadline"] > err.args_["nowTs"]


def test_close_below_min_participants_reverts_NotEnoughParticipants(ledger):
    task = setup_task(ledger, min_participants=3)
    submit_all(ledger, task, 1, [1, 2])
    ledger.advance(WINDOW + 1)
    err = expect_revert("NotEnoughParticipants", ledger.admin.close_submissions, task, 1)
    assert (err.args_["have"], err.args_["need"]) == (2, 3)
    # The window stays open: a late third update makes the round closable.
    ledger.client(3).submit_update(task, 1, GENESIS, "bafk3", h("c"), 10)
    ledger.admin.close_submissions(task, 1)


# -------------------------------------------------------------------- election


def test_election_order_is_a_permutation_every_member_can_recompute(ledger):
    task = setup_task(ledger)
    members = [1, 2, 3, 4, 5, 6, 7]
    submit_all(ledger, task, 1, members)
    r = close(ledger, task, 1)
    closed = ledger.admin.events(names=["SubmissionsClosed"], task=task)[-1]
    participants = ledger.admin.participants(task, 1)
    order = ledger.admin.election_order(task, 1)
    assert sorted(order) == sorted(participants) and len(set(order)) == len(order)
    # Recompute the seed from the revealed secrets alone, then the order from the seed.
    secrets = [e["secret"] for e in ledger.admin.events(names=["SecretRevealed"], task=task, round_=1)]
    assert len(secrets) == len(members)
    seed = derive_seed(xor_secrets([seed_start(task, 1, GENESIS), *secrets]), task, 1, closed["epoch"])
    assert seed == r.event("SeedDrawn")["seed"] == ledger.admin.round_info(task, 1).seed
    assert election_order(seed, participants) == order
    elected = r.event("LeaderElected")
    assert elected["leader"] == order[0]
    assert elected["verifiers"] == verifiers_for(order, 0, 2) == ledger.admin.verifiers_of(task, 1, 0)


def test_same_seed_gives_the_same_order_and_orders_vary_with_the_seed():
    people = [Account.create().address for _ in range(10)]
    orders = {tuple(election_order(h(f"s{i}"), people)) for i in range(20)}
    assert len(orders) > 10
    firsts = {election_order(h(f"s{i}"), people)[0] for i in range(40)}
    assert len(firsts) >= 5  # leadership rotates among members


def test_coprime_step_matches_the_contract(ledger):
    from fedledger.node.protocol import coprime_step

    for n in [1, 2, 3, 4, 6, 10, 12, 30, 49, 50, 210]:
        for r in [0, 1, 7, 2**200 + 3, 12345678901234567890]:
            assert coprime_step(r, n) == ledger.admin.contract.functions.coprimeStep(r, n).call()


# ------------------------------------------------------------ publish / attest


def test_publish_by_anyone_but_the_leader_reverts_NotLeader(ledger):
    task, leader, verifiers = elected_round(ledger)
    other = next(i for i in (1, 2, 3, 4) if i != leader)
    err = expect_revert("NotLeader", ledger.client(other).publish_aggregate, task, 1, 0, "bafkagg", h("agg"))
    assert err.args_["leader"] == ledger.accounts[leader].address


def test_publish_before_close_reverts_WrongPhase(ledger):
    task = setup_task(ledger)
    submit_all(ledger, task, 1, [1, 2])
    expect_revert("WrongPhase", ledger.client(1).publish_aggregate, task, 1, 0, "bafkagg", h("agg"))


def test_publish_after_the_aggregation_deadline_reverts_TooLate(ledger):
    task, leader, _ = elected_round(ledger)
    ledger.advance(WINDOW + 1)
    expect_revert("TooLate", ledger.client(leader).publish_aggregate, task, 1, 0, "bafkagg", h("agg"))


def test_publish_for_another_attempt_reverts_WrongAttempt(ledger):
    task, leader, _ = elected_round(ledger)
    err = expect_revert("WrongAttempt", ledger.client(leader).publish_aggregate, task, 1, 1, "bafkagg", h("agg"))
    assert (err.args_["expected"], err.args_["given"]) == (0, 1)


def test_attest_by_a_non_verifier_reverts_NotVerifier(ledger):
    task, leader, verifiers = elected_round(ledger)
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    outsider = next(i for i in (1, 2, 3, 4) if i != leader and i not in verifiers)
    expect_revert("NotVerifier", ledger.client(outsider).attest, task, 1, 0, True, h("agg"))
    expect_revert("NotVerifier", ledger.client(leader).attest, task, 1, 0, True, h("agg"))


def test_attesting_twice_reverts_AlreadyAttested(ledger):
    task, leader, verifiers = elected_round(ledger, quorum=2)
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    ledger.client(verifiers[0]).attest(task, 1, 0, True, h("agg"))
    expect_revert("AlreadyAttested", ledger.client(verifiers[0]).attest, task, 1, 0, True, h("agg"))


def test_attest_before_publish_reverts_WrongPhase(ledger):
    task, leader, verifiers = elected_round(ledger)
    expect_revert("WrongPhase", ledger.client(verifiers[0]).attest, task, 1, 0, True, h("agg"))


def test_attest_after_the_verification_deadline_reverts_TooLate(ledger):
    task, leader, verifiers = elected_round(ledger)
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    ledger.advance(WINDOW + 1)
    expect_revert("TooLate", ledger.client(verifiers[0]).attest, task, 1, 0, True, h("agg"))


def test_quorum_of_agreement_finalizes_and_opens_the_next_round(ledger):
    task, leader, verifiers = elected_round(ledger)
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    assert ledger.admin.round_info(task, 1).phase == Phase.VERIFICATION
    ledger.client(verifiers[0]).attest(task, 1, 0, True, h("agg"))
    assert ledger.admin.round_info(task, 1).phase == Phase.VERIFICATION
    r = ledger.client(verifiers[1]).attest(task, 1, 0, True, h("agg"))
    fin = r.event("RoundFinalized")
    assert (fin["parent"], fin["sha256"], fin["cid"], fin["leader"], fin["ruleId"]) == (
        GENESIS, h("agg"), "bafkagg", ledger.accounts[leader].address, "fedavg")
    assert r.event("RoundOpened")["parent"] == h("agg")
    state = ledger.admin.task_state(task)
    assert (state.current_round, state.global_sha256, state.global_cid) == (2, h("agg"), "bafkagg")
    # Round 2 builds on the new global model; the genesis is now stale.
    expect_revert("StaleParent", ledger.client(1).submit_update, task, 2, GENESIS, "bafk", h("x"), 1)
    ledger.client(1).submit_update(task, 2, h("agg"), "bafk", h("x"), 1)


def _stale_attest_estimate(ledger, monkeypatch, task, verifiers):
    """Verifier 0 estimates its attestation as the non-final one, then verifier 1's lands first:
    verifier 0's transaction now takes the costlier path that finalizes the round."""
    from web3.contract.contract import ContractFunction

    from fedledger.node.protocol import to_bytes32

    a = ledger.client(verifiers[0])
    stale = a.contract.functions.attest(task, 1, 0, True, to_bytes32(h("agg"))).estimate_gas(
        {"from": a.sender}, block_identifier="pending")
    ledger.client(verifiers[1]).attest(task, 1, 0, True, h("agg"))
    monkeypatch.setattr(ContractFunction, "estimate_gas", lambda self, *args, **kw: stale)
    return a, stale


def test_attestation_estimated_before_another_lands_still_finalizes(ledger, monkeypatch):
    task, leader, verifiers = elected_round(ledger)
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    a, stale = _stale_attest_estimate(ledger, monkeypatch, task, verifiers)
    nonce = ledger.w3.eth.get_transaction_count(a.sender)
    r = a.attest(task, 1, 0, True, h("agg"))
    assert r.event("RoundFinalized")["sha256"] == h("agg")
    assert r.gas_used > int(stale * 1.25) + 20_000  # the stale estimate alone would have run out
    assert ledger.w3.eth.get_transaction_count(a.sender) == nonce + 1  # the gas floor covered it


def test_transaction_that_runs_out_of_gas_is_resent_once_with_more(ledger, monkeypatch):
    from fedledger.node.chain import client as chain

    task, leader, verifiers = elected_round(ledger)
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    monkeypatch.setattr(chain, "GAS_FLOOR", {})
    a, _ = _stale_attest_estimate(ledger, monkeypatch, task, verifiers)
    nonce = ledger.w3.eth.get_transaction_count(a.sender)
    r = a.attest(task, 1, 0, True, h("agg"))
    assert r.event("RoundFinalized")["sha256"] == h("agg")
    assert ledger.w3.eth.get_transaction_count(a.sender) == nonce + 2  # one out of gas, one resent
    assert ledger.admin.task_state(task).current_round == 2


def test_a_quorum_of_disagreement_rejects_the_aggregate_and_elects_the_next_candidate(ledger):
    task, leader, verifiers = elected_round(ledger, members=(1, 2, 3, 4, 5), verifiers_per_round=3, quorum=2,
                                            min_participants=4)
    order = ledger.admin.election_order(task, 1)
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkbad", h("wrong"))
    ledger.client(verifiers[0]).attest(task, 1, 0, False, h("right"))
    assert ledger.admin.round_info(task, 1).phase == Phase.VERIFICATION  # one dissent does not decide
    r = ledger.client(verifiers[1]).attest(task, 1, 0, False, h("right"))
    failed = r.event("AttemptFailed")
    assert (failed["leader"], FailReason(failed["reason"])) == (ledger.accounts[leader].address, FailReason.REJECTED)
    elected = r.event("LeaderElected")
    assert elected["attempt"] == 1 and elected["leader"] == order[1]
    assert ledger.admin.failed_leaderships(ledger.accounts[leader].address) == 1
    info = ledger.admin.round_info(task, 1)
    assert (info.phase, info.attempt, info.leader, info.aggregate_sha256) == (
        Phase.AGGREGATION, 1, order[1], "00" * 32)
    # The rejected leader's stale attempt is closed for good.
    expect_revert("WrongPhase", ledger.client(verifiers[2]).attest, task, 1, 0, True, h("wrong"))


def test_quorum_two_of_three_finalizes_despite_one_dissent(ledger):
    task, leader, verifiers = elected_round(ledger, members=(1, 2, 3, 4, 5), verifiers_per_round=3, quorum=2,
                                            min_participants=4)
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    ledger.client(verifiers[0]).attest(task, 1, 0, False, h("other"))  # one dissent: the quorum is still reachable
    ledger.client(verifiers[1]).attest(task, 1, 0, True, h("agg"))
    assert ledger.admin.round_info(task, 1).phase == Phase.VERIFICATION
    r = ledger.client(verifiers[2]).attest(task, 1, 0, True, h("agg"))
    assert r.event("RoundFinalized")["sha256"] == h("agg")


def test_a_lone_dissent_under_unanimity_disputes_the_attempt_without_blaming_the_leader(ledger):
    task, leader, verifiers = elected_round(ledger, quorum=2)  # 2 verifiers, quorum 2: the task asks for unanimity
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    r = ledger.client(verifiers[0]).attest(task, 1, 0, False, h("other"))
    assert FailReason(r.event("AttemptFailed")["reason"]) == FailReason.DISPUTED
    assert ledger.admin.failed_leaderships(ledger.accounts[leader].address) == 0
    assert r.event("LeaderElected")["attempt"] == 1


def test_an_agreement_must_name_the_published_aggregate_AgreementMismatch(ledger):
    task, leader, verifiers = elected_round(ledger)
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    err = expect_revert("AgreementMismatch", ledger.client(verifiers[0]).attest, task, 1, 0, True, h("something else"))
    assert (err.args_["published"], err.args_["given"]) == (h("agg"), h("something else"))


@pytest.mark.parametrize("included, unavailable", [
    (b"", b"\x00"),  # wrong length
    (b"\x00", b"\x00"),  # nobody included
    (b"\x03", b"\x02"),  # a participant both included and unavailable
    (b"\x1f", b"\x00"),  # a bit beyond the 4 participants
])
def test_a_publication_whose_bitmaps_do_not_describe_the_participants_reverts_BadInclusion(ledger, included, unavailable):
    task, leader, _ = elected_round(ledger)
    err = expect_revert("BadInclusion", ledger.client(leader).publish_aggregate, task, 1, 0, "bafkagg", h("agg"),
                        included, unavailable)
    assert err.args_["participants"] == 4


def test_the_included_set_is_on_chain_and_unavailable_updates_are_held_against_their_members(ledger):
    task, leader, verifiers = elected_round(ledger)
    participants = ledger.admin.participants(task, 1)
    r = ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"), b"\x0b", b"\x04")
    inc = r.event("UpdatesIncluded")
    assert (inc["included"], inc["unavailable"]) == ("0b", "04")
    withheld = r.event("UpdateWithheld")
    assert withheld["member"] == participants[2] and withheld["leader"] == ledger.accounts[leader].address
    assert ledger.admin.withheld_updates(participants[2]) == 1
    from fedledger.node.protocol import inclusion_hash

    assert ledger.admin.round_info(task, 1).included_hash == inclusion_hash(b"\x0b", b"\x04")


def test_reveals_open_only_their_own_commitment_and_a_member_that_does_not_reveal_is_left_out(ledger):
    task = setup_task(ledger)
    submit_all(ledger, task, 1, [1, 2, 3, 4])
    ledger.advance(WINDOW + 1)
    ledger.admin.close_submissions(task, 1)
    c1 = ledger.client(1)
    expect_revert("BadReveal", c1.reveal, task, 1, h("not my secret"))
    # Member 2's secret revealed by member 1: the commitment binds the member too.
    expect_revert("BadReveal", c1.reveal, task, 1, ledger.client(2).secrets.secret(task, 1, "update"))
    expect_revert("NotRevealing", ledger.client(5).reveal, task, 1, h("x"))  # not a participant
    c1.reveal(task, 1)
    expect_revert("NotRevealing", c1.reveal, task, 1, c1.secrets.secret(task, 1, "update"))  # only once
    reveal_all(ledger, task, 1, skip=(1, 4))
    expect_revert("TooEarly", ledger.admin.close_reveals, task, 1)
    ledger.advance(WINDOW + 1)
    expect_revert("TooLate", ledger.client(4).reveal, task, 1)
    r = ledger.client(9).close_reveals(task, 1)  # anyone
    assert r.event("RevealMissed")["member"] == ledger.accounts[4].address
    assert r.event("SeedDrawn")["participants"] == 3
    assert ledger.admin.participants(task, 1) == [ledger.accounts[i].address for i in (1, 2, 3)]
    assert not ledger.admin.has_submitted(task, 1, ledger.accounts[4].address)
    assert ledger.admin.missed_reveals(ledger.accounts[4].address) == 1
    assert ledger.accounts[4].address not in ledger.admin.election_order(task, 1)


def test_too_few_reveals_reopen_the_round_keeping_the_revealed_updates(ledger):
    task = setup_task(ledger)  # 3 participants at least
    submit_all(ledger, task, 1, [1, 2, 3])
    ledger.advance(WINDOW + 1)
    ledger.admin.close_submissions(task, 1)
    reveal_all(ledger, task, 1, skip=(3,))
    ledger.advance(WINDOW + 1)
    r = ledger.admin.close_reveals(task, 1)
    assert r.event("RoundReopened")["epoch"] == 1
    assert ledger.admin.round_info(task, 1).count == 2
    ledger.client(3).submit_update(task, 1, GENESIS, "bafk3b", h("again"), 10)  # may come back in the new epoch
    r = close(ledger, task, 1)
    assert r.event("LeaderElected")["epoch"] == 1


def test_commitments_bind_the_secret_to_the_member(ledger):
    a, b = ledger.accounts[1].address, ledger.accounts[2].address
    assert commitment(h("s"), a) != commitment(h("s"), b)
    assert xor_secrets([h("x"), h("y")]) == xor_secrets([h("y"), h("x")])


def finalize(ledger, task, round_) -> str:
    """The elected leader publishes and every verifier agrees: the round finalizes."""
    info = ledger.admin.round_info(task, round_)
    agg = h(f"agg{round_}")
    ledger.client(index_of(ledger, info.leader)).publish_aggregate(task, round_, info.attempt, f"bafkagg{round_}", agg)
    for v in ledger.admin.verifiers_of(task, round_, info.attempt):
        ledger.client(index_of(ledger, v)).attest(task, round_, info.attempt, True, agg)
    return agg


def test_after_round_one_updates_open_the_secrets_committed_before_and_the_filling_update_elects(ledger):
    members = [1, 2, 3, 4]
    task = setup_task(ledger, max_participants=4)
    submit_all(ledger, task, 1, members)
    assert ledger.admin.round_info(task, 1).phase == Phase.REVEAL  # nobody had a secret to open
    reveal_all(ledger, task, 1)
    parent = finalize(ledger, task, 1)
    # Round 2: every update opens the secret its member committed to with its reveal; the one that
    # fills the round elects in the same transaction, with no reveal phase.
    for i in members[:-1]:
        ledger.client(i).submit_update(task, 2, parent, f"bafk2x{i}", h(f"u2{i}"), 10)
    last = ledger.client(4).submit_update(task, 2, parent, "bafk2x4", h("u24"), 10)
    assert last.event("SubmissionsClosed")["revealDeadline"] == 0
    assert last.event("LeaderElected")["epoch"] == 0
    assert ledger.admin.round_info(task, 2).phase == Phase.AGGREGATION
    assert ledger.admin.events(names=["SecretRevealed"], task=task, round_=2) == []
    # Anyone recomputes the seed from the secrets the updates opened, and checks each against the
    # commitment its member made before (with its reveal in round 1).
    updates = ledger.admin.events(names=["UpdateSubmitted"], task=task, round_=2)
    reveals = {e["member"]: e["nextCommitment"] for e in ledger.admin.events(names=["SecretRevealed"], task=task, round_=1)}
    for e in updates:
        assert commitment(e["secret"], e["member"]) == reveals[e["member"]]
    seed = derive_seed(xor_secrets([seed_start(task, 2, parent), *[e["secret"] for e in updates]]), task, 2, 0)
    assert seed == last.event("SeedDrawn")["seed"]
    assert ledger.admin.pending_commitment(task, ledger.accounts[1].address) == updates[0]["commitment"]


def test_an_update_must_open_its_own_pending_commitment_and_a_first_update_opens_nothing(ledger):
    task = setup_task(ledger, max_participants=4)
    c1, c2 = ledger.client(1), ledger.client(2)
    # A first update has nothing to open: a non-zero secret is refused.
    expect_revert("BadReveal", c1.submit_update, task, 1, GENESIS, "bafk", h("a"), 10, secret=h("anything"))
    submit_all(ledger, task, 1, [1, 2, 3, 4])
    reveal_all(ledger, task, 1)
    parent = finalize(ledger, task, 1)
    expect_revert("BadReveal", c1.submit_update, task, 2, parent, "bafk", h("a"), 10, secret=h("guess"))
    expect_revert("BadReveal", c1.submit_update, task, 2, parent, "bafk", h("a"), 10, secret="00" * 32)
    # Member 2's secret, once public, opens nothing of member 1's: commitments bind the member.
    c2.submit_update(task, 2, parent, "bafk2", h("b"), 10)
    opened = ledger.admin.events(names=["UpdateSubmitted"], task=task, round_=2)[-1]["secret"]
    expect_revert("BadReveal", c1.submit_update, task, 2, parent, "bafk", h("a"), 10, secret=opened)
    c1.submit_update(task, 2, parent, "bafk1", h("a"), 10)  # its own secret, derived again from its key
    assert ledger.admin.round_info(task, 2).reveals == 2


def test_a_newcomer_adds_no_secret_and_a_member_back_after_a_pause_opens_its_old_commitment(ledger):
    task = setup_task(ledger, max_participants=9)
    submit_all(ledger, task, 1, [1, 2, 3])
    close(ledger, task, 1)
    parent = finalize(ledger, task, 1)
    submit_all(ledger, task, 2, [1, 2, 5], parent=parent)  # 5 is new: it commits, opens nothing
    assert ledger.admin.round_info(task, 2).reveals == 2
    r = close(ledger, task, 2)
    assert r.event("SubmissionsClosed")["revealDeadline"] == 0 and r.event("LeaderElected")
    parent = finalize(ledger, task, 2)
    # 3 sat out round 2: its update of round 3 opens what it committed to in round 1.
    fresh = ledger.client(3)
    fresh.secrets.forget(task)  # as after a restart: the secret is found again from the key alone
    fresh.submit_update(task, 3, parent, "bafk3", h("c"), 10)
    assert ledger.admin.round_info(task, 3).reveals == 1


def test_zero_verifiers_finalizes_on_publish(ledger):
    task, leader, verifiers = elected_round(ledger, verifiers_per_round=0, quorum=0)
    assert verifiers == []
    r = ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    assert r.event("RoundFinalized")["sha256"] == h("agg")
    assert ledger.admin.task_state(task).current_round == 2


def test_silent_leader_times_out_and_the_next_candidate_leads(ledger):
    task, leader, _ = elected_round(ledger)
    order = ledger.admin.election_order(task, 1)
    err = expect_revert("TooEarly", ledger.client(9).timeout, task, 1)
    assert err.args_["deadline"] >= err.args_["nowTs"]
    ledger.advance(WINDOW + 1)
    r = ledger.client(9).timeout(task, 1)  # anyone may call it, even a member outside the round
    assert FailReason(r.event("AttemptFailed")["reason"]) == FailReason.LEADER_TIMEOUT
    assert r.event("LeaderElected")["leader"] == order[1]
    assert ledger.admin.failed_leaderships(order[0]) == 1
    new_leader = index_of(ledger, order[1])
    verifiers = [index_of(ledger, a) for a in ledger.admin.verifiers_of(task, 1, 1)]
    ledger.client(new_leader).publish_aggregate(task, 1, 1, "bafkagg", h("agg"))
    for v in verifiers:
        ledger.client(v).attest(task, 1, 1, True, h("agg"))
    assert ledger.admin.task_state(task).global_sha256 == h("agg")


def test_timeout_outside_aggregation_or_verification_reverts_WrongPhase(ledger):
    task = setup_task(ledger)
    expect_revert("WrongPhase", ledger.admin.timeout, task, 1)


def test_silent_verifiers_fail_the_attempt_as_unverified_without_blaming_the_leader(ledger):
    task, leader, verifiers = elected_round(ledger)
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    ledger.advance(WINDOW + 1)
    r = ledger.admin.timeout(task, 1)
    assert FailReason(r.event("AttemptFailed")["reason"]) == FailReason.UNVERIFIED
    assert ledger.admin.failed_leaderships(ledger.accounts[leader].address) == 0


def test_every_candidate_failing_reopens_the_round_keeping_every_update(ledger):
    members = [1, 2, 3]
    task, _, _ = elected_round(ledger, members=members)
    for attempt in range(3):
        ledger.advance(WINDOW + 1)
        r = ledger.admin.timeout(task, 1)
    reopened = r.event("RoundReopened")
    assert (reopened["epoch"], reopened["parent"]) == (1, GENESIS)
    info = ledger.admin.round_info(task, 1)
    assert (info.phase, info.epoch, info.count) == (Phase.SUBMISSION, 1, 3)
    assert ledger.admin.task_state(task).current_round == 1
    # Nothing lost: the same updates stand, a newcomer may still join, and a new election runs.
    ledger.client(4).submit_update(task, 1, GENESIS, "bafk4", h("late"), 10)
    expect_revert("DuplicateUpdate", ledger.client(1).submit_update, task, 1, GENESIS, "bafk", h("x"), 1)
    r = close(ledger, task, 1)
    assert r.event("SubmissionsClosed")["participants"] == 4 and r.event("LeaderElected")["epoch"] == 1
    leader = index_of(ledger, r.event("LeaderElected")["leader"])
    ledger.client(leader).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    for v in r.event("LeaderElected")["verifiers"]:
        ledger.client(index_of(ledger, v)).attest(task, 1, 0, True, h("agg"))
    assert ledger.admin.task_state(task).current_round == 2


def test_task_completes_after_max_rounds_and_refuses_more_work(ledger):
    task = setup_task(ledger, max_rounds=1, verifiers_per_round=0, quorum=0, min_participants=2)
    submit_all(ledger, task, 1, [1, 2])
    r = close(ledger, task, 1)
    leader = index_of(ledger, r.event("LeaderElected")["leader"])
    r = ledger.client(leader).publish_aggregate(task, 1, 0, "bafkfinal", h("final"))
    assert r.event("TaskCompleted")["finalSha256"] == h("final")
    state = ledger.admin.task_state(task)
    assert state.completed and state.global_sha256 == h("final")
    expect_revert("TaskAlreadyCompleted", ledger.client(1).submit_update, task, 1, h("final"), "bafk", h("x"), 1)


def test_lineage_events_link_every_global_model_back_to_genesis(ledger):
    task = setup_task(ledger, max_rounds=3, verifiers_per_round=1, quorum=1)
    parent = GENESIS
    for rnd in (1, 2, 3):
        submit_all(ledger, task, rnd, [1, 2, 3], parent=parent)
        r = close(ledger, task, rnd)
        elected = r.event("LeaderElected")
        ledger.client(index_of(ledger, elected["leader"])).publish_aggregate(task, rnd, 0, f"bafkg{rnd}", h(f"g{rnd}"))
        ledger.client(index_of(ledger, elected["verifiers"][0])).attest(task, rnd, 0, True, h(f"g{rnd}"))
        parent = h(f"g{rnd}")
    finals = ledger.admin.events(names=["RoundFinalized"], task=task)
    assert [f["round"] for f in finals] == [1, 2, 3]
    chain = GENESIS
    for f in finals:
        assert f["parent"] == chain
        chain = f["sha256"]
    updates = ledger.admin.events(names=["UpdateSubmitted"], task=task)
    assert len(updates) == 9
    assert all(u["parent"] == (GENESIS if u["round"] == 1 else h(f"g{u['round'] - 1}")) for u in updates)


# ----------------------------------------------------------------- the client


def test_concurrent_senders_sharing_one_key_do_not_collide_on_nonces(ledger):
    errors = []

    def admit_one(i):
        try:
            ledger.admin.add_member(Account.create().address, f"org-{i}")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=admit_one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and ledger.admin.member_count() == 12


def test_a_second_client_with_the_same_key_resyncs_its_nonce(ledger):
    from fedledger.node.chain.client import ChainClient

    twin = ChainClient(ledger.rpc_url, ledger.address, ledger.accounts[0], artifact=ledger.admin.artifact)
    ledger.admin.add_member(ledger.accounts[1].address, "a")
    twin.add_member(ledger.accounts[2].address, "b")
    ledger.admin.add_member(ledger.accounts[3].address, "c")  # its cached nonce is stale now
    assert ledger.admin.member_count() == 3


def test_storage_keeps_two_rounds_and_older_ones_live_in_the_event_log(ledger):
    task = setup_task(ledger, max_rounds=4, verifiers_per_round=0, quorum=0, min_participants=2)
    parent = GENESIS
    for rnd in (1, 2, 3):
        submit_all(ledger, task, rnd, [1, 2], parent=parent)
        r = close(ledger, task, rnd)
        leader = index_of(ledger, r.event("LeaderElected")["leader"])
        ledger.client(leader).publish_aggregate(task, rnd, 0, f"bafkg{rnd}", h(f"g{rnd}"))
        parent = h(f"g{rnd}")
    # Round 4 is open and reuses round 2's record; round 3 (its parent) is still readable, rounds 1
    # and 2 live on only in the event log.
    expect_revert("RoundNotStored", ledger.admin.round_info, task, 1)
    expect_revert("RoundNotStored", ledger.admin.round_info, task, 2)
    assert ledger.admin.round_info(task, 3).aggregate_sha256 == h("g3")
    assert ledger.admin.round_info(task, 4).phase == Phase.SUBMISSION
    assert ledger.admin.task_state(task).global_cid == "bafkg3"
    assert ledger.admin.has_submitted(task, 4, ledger.accounts[1].address) is False
    expect_revert("RoundNotStored", ledger.admin.participants, task, 5)
    assert [e["sha256"] for e in ledger.admin.events(names=["RoundFinalized"], task=task)] == [
        h("g1"), h("g2"), h("g3")]


def test_events_decoded_with_eth_abi_equal_web3s_decoding_and_member_view_equals_the_views(ledger):
    task = setup_task(ledger, min_participants=3, max_participants=3)
    submit_all(ledger, task, 1, (1, 2, 3))  # fills the round: closes it
    reveal_all(ledger, task, 1)  # the last reveal elects
    info = ledger.admin.round_info(task, 1)
    ledger.client(index_of(ledger, info.leader)).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
    verifiers = ledger.admin.verifiers_of(task, 1, 0)
    for v in ledger.admin.verifiers_of(task, 1, 0):
        view = ledger.admin.member_view(task, v)
        assert view.verifier and view.submitted and view.round == ledger.admin.round_info(task, 1)
        assert view.state == ledger.admin.task_state(task)
    outsider = ledger.admin.member_view(task, ledger.accounts[9].address)
    assert not outsider.submitted and not outsider.verifier
    ledger.client(index_of(ledger, verifiers[0])).attest(task, 1, 0, True, h("agg"))
    events = ledger.admin.events()
    assert {"TaskCreated", "RoundOpened", "UpdateSubmitted", "SubmissionsClosed", "SecretRevealed", "SeedDrawn",
            "LeaderElected", "AggregatePublished", "UpdatesIncluded", "Attested"} <= {e.name for e in events}
    for ev in events:
        raw = ledger.admin.w3.eth.get_logs({"address": ledger.admin.address, "fromBlock": ev.block_number,
                                            "toBlock": ev.block_number})
        log = next(entry for entry in raw if entry["logIndex"] == ev.log_index)
        slow = ledger.admin.contract.events[ev.name]().process_log(log)
        assert ev.args == {k: _plain(k, v) for k, v in slow["args"].items()}, ev.name
        assert list(ev.args) == list(slow["args"]), ev.name  # in the same order


def test_events_filter_by_name_task_and_round_on_the_chain_node(ledger):
    task = setup_task(ledger, min_participants=2, max_participants=2, verifiers_per_round=1, quorum=1)
    other = ledger.admin.create_task(config(min_participants=2, max_participants=2, verifiers_per_round=1, quorum=1))[0]
    for t in (task, other):
        submit_all(ledger, t, 1, (1, 2))  # max participants submitted: the round closed itself
    reveal_all(ledger, task, 1)
    info = ledger.admin.round_info(task, 1)
    for i in [index_of(ledger, info.leader)] + [index_of(ledger, a) for a in ledger.admin.verifiers_of(task, 1, 0)]:
        if i == index_of(ledger, info.leader):
            ledger.client(i).publish_aggregate(task, 1, 0, "bafkagg", h("agg"))
        else:
            ledger.client(i).attest(task, 1, 0, True, h("agg"))
    submit_all(ledger, task, 2, (1, 2), parent=h("agg"))
    every = ledger.admin.events(names=["UpdateSubmitted"])
    assert sorted((e["task"], e["round"]) for e in every) == [(task, 1), (task, 1), (task, 2), (task, 2), (other, 1), (other, 1)]
    r2 = ledger.admin.events(names=["UpdateSubmitted"], task=task, round_=2)
    assert [(e["task"], e["round"]) for e in r2] == [(task, 2), (task, 2)]
    assert {e["member"] for e in r2} == {ledger.accounts[1].address, ledger.accounts[2].address}
    # Events that do not index the round are still filtered in Python, never dropped or mixed.
    mixed = ledger.admin.events(names=["TaskCreated", "UpdateSubmitted"], task=task, round_=1)
    assert [e.name for e in mixed] == ["UpdateSubmitted", "UpdateSubmitted"]


def test_a_head_watcher_told_its_events_wakes_only_for_blocks_that_may_hold_them(ledger):
    """A member that acts on TaskCreated is not woken by an empty block, nor by a block whose
    bloom cannot hold that event; the block creating a task wakes it, and its bloom holds the
    event's topic and the contract's address."""
    from eth_utils import to_bytes

    from fedledger.node.chain.heads import HeadWatcher, bloom_bits, may_hold
    from fedledger.node.procs import wait_until

    topic = ledger.admin.event_topics["TaskCreated"]
    watcher = HeadWatcher(ledger.rpc_url.replace("http://", "ws://"))
    try:
        wait_until(lambda: watcher.connected, 10, what="the newHeads subscription")
        watcher.watch([topic])
        watcher.wait(0)
        ledger.advance(1)  # an empty block: its bloom is zero
        assert not watcher.wait(1.0)
        ledger.admin.add_member(ledger.accounts[1].address, "org1")  # events, but not TaskCreated's
        bloom = int(ledger.w3.eth.get_block("latest")["logsBloom"].hex(), 16)
        assert bloom and not may_hold(bloom, bloom_bits(topic))
        assert not watcher.wait(1.0)
        ledger.admin.create_task(config())
        assert watcher.wait(5), "no wake-up for the block that created a task"
        bloom = int(ledger.w3.eth.get_block("latest")["logsBloom"].hex(), 16)
        assert may_hold(bloom, bloom_bits(topic)) and may_hold(bloom, bloom_bits(to_bytes(hexstr=ledger.address)))
        watcher.watch(None)
        ledger.advance(1)
        assert watcher.wait(5), "told nothing, it wakes for every block again"
    finally:
        watcher.close()


def test_head_watcher_wakes_on_every_new_block_and_a_dead_endpoint_leaves_polling_in_charge(ledger):
    from fedledger.node.chain.heads import HeadWatcher
    from fedledger.node.errors import ChainError
    from fedledger.node.procs import wait_until
    from fedledger.node.storage.daemon import free_port

    watcher = HeadWatcher(ledger.rpc_url.replace("http://", "ws://"))
    try:
        wait_until(lambda: watcher.connected, 10, what="the newHeads subscription")
        watcher.wait(0)  # forget the wake-up of the connection itself
        for _ in range(3):
            ledger.advance(1)  # one block
            assert watcher.wait(5), "no wake-up for a new block"
            assert watcher.latest == ledger.admin.block_number()
        assert not watcher.wait(0.2)  # nothing new: no wake-up
    finally:
        watcher.close()
    dead = HeadWatcher(f"ws://127.0.0.1:{free_port()}")
    try:
        assert not dead.connected and dead.latest == -1
    finally:
        dead.close()
    with pytest.raises(ChainError, match="not a ws://"):
        HeadWatcher(ledger.rpc_url)
