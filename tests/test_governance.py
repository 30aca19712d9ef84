"""The members' vote on a real Anvil node: bootstrap, every proposal path, and that no single key
admits, removes or creates anything once bootstrap ends."""

from __future__ import annotations

import json

import pytest

from fedledger.node.chain.governance import Governance, Rules, parse_threshold
from fedledger.node.errors import ContractRevert, InputError
from fedledger.node.protocol import Phase

from fedledger.node.chain.devnet import DEV_KEYS
from fedledger.node.chain.keys import create_keystore
from fedledger.node.errors import EXIT_INPUT, EXIT_REFUSED

from .test_contract import GENESIS, admit, close, config, expect_revert, h, index_of, submit_all
from .test_ops import PASSWORD, PW_ENV, as_json, chain, cli  # noqa: F401 (chain and cli are fixtures)

pytestmark = pytest.mark.chain

PERIOD = 3600


def governed(ledger, members=(1, 2, 3), threshold_bps=6666, delay=0) -> Governance:
    """Bootstrap: the deployer admits `members`, then hands the consortium to their vote."""
    admit(ledger, members)
    gov, _ = Governance.start(ledger.admin, Rules(threshold_bps, delay, PERIOD))
    return Governance(ledger.client(members[0]), gov.address)  # executing takes a member


def as_member(ledger, gov: Governance, i: int) -> Governance:
    return Governance(ledger.client(i), gov.address)


def test_bootstrap_ends_with_the_vote_as_admin_and_the_deployer_key_powerless(ledger):
    gov = governed(ledger)
    assert ledger.admin.admin() == gov.address and Governance.of(ledger.admin).address == gov.address
    assert gov.rules() == Rules(6666, 0, PERIOD)
    expect_revert("NotAdmin", ledger.admin.add_member, ledger.accounts[5].address, "org5")
    expect_revert("NotAdmin", ledger.admin.create_task, config(min_participants=3))
    expect_revert("NotAdmin", ledger.admin.transfer_admin, ledger.accounts[0].address)


def test_no_single_member_key_admits_removes_or_creates_once_bootstrap_ends(ledger):
    gov = governed(ledger)
    alone = as_member(ledger, gov, 1)
    for action, args in (("add-member", [ledger.accounts[5].address, "org5"]),
                         ("remove-member", [ledger.accounts[2].address]),
                         ("create-task", [config(min_participants=3).to_tuple()])):
        pid, _ = alone.propose(action, args)
        assert alone.proposal(pid).state == "active" and alone.proposal(pid).yes == 1
        expect_revert("WrongState", alone.execute, pid)
        expect_revert("AlreadyVoted", alone.vote, pid, True)
    # Nor through a call the vote does not govern: handing the admin role to the member's own key.
    err = expect_revert("NotGovernable", alone.client._transact, "propose", ledger.address,
                        ledger.admin.contract.encode_abi("transferOwnership", args=[ledger.accounts[1].address]), "")
    assert err.args_["target"] == ledger.address
    expect_revert("OnlyByVote", alone.client._transact, "setRules", 5001, 0, PERIOD)
    expect_revert("NotAdmin", ledger.client(1).add_member, ledger.accounts[5].address, "org5")
    assert not ledger.admin.is_member(ledger.accounts[5].address) and ledger.admin.member_count() == 3
    assert ledger.admin.task_count() == 0


def test_a_second_vote_passes_an_admission_and_anyone_executes_it(ledger):
    gov = governed(ledger)
    pid, _ = as_member(ledger, gov, 1).propose("add-member", [ledger.accounts[5].address, "org5"], "a new hospital")
    tx = as_member(ledger, gov, 2).vote(pid, True)
    assert tx.event("ProposalPassed")["id"] == pid
    p = gov.proposal(pid)
    assert (p.state, p.yes, p.required, p.electorate, p.action) == ("passed", 2, 2, 3, "add-member")
    assert p.args == {"member": ledger.accounts[5].address, "name": "org5"} and p.description == "a new hospital"
    expect_revert("WrongState", as_member(ledger, gov, 3).vote, pid, True)
    expect_revert("NotMember", Governance(ledger.client(7), gov.address).execute, pid)  # members execute
    as_member(ledger, gov, 3).execute(pid)
    assert ledger.admin.member_info(ledger.accounts[5].address)[:2] == (True, "org5")
    assert gov.proposal(pid).state == "executed"
    expect_revert("WrongState", gov.execute, pid)


def test_a_proposal_that_fails_its_threshold_is_defeated_or_expires_and_never_executes(ledger):
    gov = governed(ledger)
    defeated, _ = as_member(ledger, gov, 1).propose("remove-member", [ledger.accounts[3].address])
    as_member(ledger, gov, 2).vote(defeated, False)
    tx = as_member(ledger, gov, 3).vote(defeated, False)
    assert tx.event("ProposalDefeated")["id"] == defeated and gov.proposal(defeated).state == "defeated"
    expect_revert("WrongState", gov.execute, defeated)
    stale, _ = as_member(ledger, gov, 1).propose("remove-member", [ledger.accounts[3].address])
    ledger.advance(PERIOD + 1)
    assert gov.proposal(stale).state == "expired"
    expect_revert("WrongState", as_member(ledger, gov, 2).vote, stale, True)
    assert ledger.admin.is_member(ledger.accounts[3].address)


def test_only_members_of_the_electorate_vote_once(ledger):
    gov = governed(ledger, members=(1, 2, 3, 4), threshold_bps=10000)
    expect_revert("NotMember", Governance(ledger.client(6), gov.address).propose, "cancel-task", [0])
    pid, _ = as_member(ledger, gov, 1).propose("add-member", [ledger.accounts[5].address, "org5"])
    for i in (2, 3, 4):
        as_member(ledger, gov, i).vote(pid, True)
    gov.execute(pid)
    later, _ = as_member(ledger, gov, 1).propose("remove-member", [ledger.accounts[2].address])
    assert gov.proposal(later).electorate == 5
    ledger.advance(5)
    newcomer_vote, _ = as_member(ledger, gov, 1).propose("cancel-task", [0])
    expect_revert("NotMember", Governance(ledger.client(6), gov.address).vote, later, True)
    expect_revert("AlreadyVoted", as_member(ledger, gov, 1).vote, later, True)
    assert gov.proposal(newcomer_vote).required == 5


def test_a_member_admitted_after_a_proposal_cannot_vote_on_it(ledger):
    gov = governed(ledger, members=(1, 2))  # 2/3 of 2 members: both
    old, _ = as_member(ledger, gov, 1).propose("remove-member", [ledger.accounts[2].address])
    ledger.advance(5)
    add, _ = as_member(ledger, gov, 1).propose("add-member", [ledger.accounts[5].address, "org5"])
    as_member(ledger, gov, 2).vote(add, True)
    gov.execute(add)
    err = expect_revert("NotInElectorate", as_member(ledger, gov, 5).vote, old, True)
    assert err.args_["who"] == ledger.accounts[5].address


def test_the_threshold_changes_by_vote_and_never_falls_to_half(ledger):
    gov = governed(ledger, members=(1, 2, 3, 4))  # 2/3 of 4: 3 votes
    pid, _ = as_member(ledger, gov, 1).propose("set-rules", [10000, 0, PERIOD])
    assert gov.proposal(pid).required == 3
    for i in (2, 3):
        as_member(ledger, gov, i).vote(pid, True)
    tx = gov.execute(pid)
    assert gov.rules().threshold_bps == 10000 and tx.gas_used > 0
    unanimous, _ = as_member(ledger, gov, 1).propose("remove-member", [ledger.accounts[4].address])
    assert gov.proposal(unanimous).required == 4
    for i in (2, 3):
        as_member(ledger, gov, i).vote(unanimous, True)
    assert gov.proposal(unanimous).state == "active"  # three of four no longer pass anything
    half, _ = as_member(ledger, gov, 1).propose("set-rules", [5000, 0, PERIOD])
    for i in (2, 3, 4):
        as_member(ledger, gov, i).vote(half, True)
    err = expect_revert("InvalidArgument", gov.execute, half)  # the ledger's own reason, bubbled up
    assert "5001-10000" in err.args_["what"]
    assert gov.proposal(half).state == "passed" and gov.rules().threshold_bps == 10000


def test_a_proposal_keeps_the_rules_it_was_made_under(ledger):
    """A later vote on the rules neither revives an expired proposal nor holds back a passed one."""
    gov = governed(ledger, members=(1, 2, 3))
    one, two = as_member(ledger, gov, 1), as_member(ledger, gov, 2)
    stale, _ = one.propose("remove-member", [ledger.accounts[3].address])
    ready, _ = one.propose("add-member", [ledger.accounts[5].address, "org5"])
    two.vote(ready, True)
    slower, _ = one.propose("set-rules", [6666, 600, 100 * PERIOD])
    two.vote(slower, True)
    gov.execute(slower)
    assert gov.rules() == Rules(6666, 600, 100 * PERIOD)
    gov.execute(ready)  # passed without a delay: the new 600 s delay does not apply to it
    assert ledger.admin.is_member(ledger.accounts[5].address)
    ledger.advance(PERIOD + 1)  # past the stale proposal's own voting period
    assert gov.proposal(stale).state == "expired"  # the new, longer period does not reopen it
    expect_revert("WrongState", two.vote, stale, True)
    fresh, _ = one.propose("cancel-task", [0])
    two.vote(fresh, True), as_member(ledger, gov, 3).vote(fresh, True)  # 3 of the 4 members now
    expect_revert("TooEarly", gov.execute, fresh)  # proposals made now wait the new delay


def test_a_delay_holds_execution_back(ledger):
    gov = governed(ledger, delay=600)
    pid, _ = as_member(ledger, gov, 1).propose("add-member", [ledger.accounts[5].address, "org5"])
    as_member(ledger, gov, 2).vote(pid, True)
    err = expect_revert("TooEarly", gov.execute, pid)
    assert err.args_["executableAt"] == gov.proposal(pid).executable_at
    ledger.advance(601)
    gov.execute(pid)
    assert ledger.admin.is_member(ledger.accounts[5].address)


def test_tasks_are_created_and_cancelled_by_vote(ledger):
    gov = governed(ledger, members=(1, 2, 3, 4))
    members = [as_member(ledger, gov, i) for i in (1, 2, 3, 4)]
    pid, _ = members[0].propose("create-task", [config(min_participants=3).to_tuple()])
    members[1].vote(pid, True), members[2].vote(pid, True)
    tx = gov.execute(pid)
    task = tx.event("TaskCreated")["task"]
    assert tx.event("TaskCreated")["creator"] == gov.address
    submit_all(ledger, task, 1, [1, 2])
    pid, _ = members[0].propose("cancel-task", [task], "the data owners withdrew")
    members[1].vote(pid, True), members[2].vote(pid, True)
    tx = gov.execute(pid)
    cancelled = tx.event("TaskCancelled")
    assert (cancelled["task"], cancelled["round"], cancelled["finalSha256"]) == (task, 1, GENESIS)
    st = ledger.admin.task_state(task)
    assert st.completed and st.global_sha256 == GENESIS and st.global_cid == "bafkgenesis"
    expect_revert("TaskAlreadyCompleted", ledger.client(3).submit_update, task, 1, GENESIS, "bafk", h("x"), 10)


def test_a_removal_executed_during_a_round_lets_the_removed_leader_and_verifier_finish_it(ledger):
    gov = governed(ledger, members=(1, 2, 3, 4, 5, 6))
    members = {i: as_member(ledger, gov, i) for i in range(1, 7)}
    pid, _ = members[1].propose("create-task", [config(min_participants=3).to_tuple()])
    for i in (2, 3, 4):
        members[i].vote(pid, True)
    task = gov.execute(pid).event("TaskCreated")["task"]
    submit_all(ledger, task, 1, [1, 2, 3, 4])
    close(ledger, task, 1)
    info = ledger.admin.round_info(task, 1)
    leader = index_of(ledger, info.leader)
    verifier = index_of(ledger, ledger.admin.verifiers_of(task, 1, info.attempt)[0])
    for gone in (leader, verifier):
        voters = [i for i in members if i not in (leader, verifier)]
        pid, _ = members[voters[0]].propose("remove-member", [ledger.accounts[gone].address])
        for i in voters[1:]:
            if members[i].proposal(pid).state == "active":
                members[i].vote(pid, True)
        members[voters[0]].execute(pid)
        assert not ledger.admin.is_member(ledger.accounts[gone].address)
    ledger.client(leader).publish_aggregate(task, 1, info.attempt, "bafkagg", h("agg"))
    for v in ledger.admin.verifiers_of(task, 1, info.attempt):
        ledger.client(index_of(ledger, v)).attest(task, 1, info.attempt, True, h("agg"))
    assert ledger.admin.round_info(task, 1).phase == Phase.FINALIZED
    assert ledger.admin.task_state(task).global_sha256 == h("agg")
    assert ledger.admin.failed_leaderships(ledger.accounts[leader].address) == 0
    # From the next round on the removed members are out.
    ledger.advance(1)
    expect_revert("NotMember", ledger.client(leader).submit_update, task, 2, h("agg"), "bafk", h("x"), 10)


def _update(gov_members, gov, task, **changes):
    """Propose updateTask with `changes` over the task's current settings, pass it, execute it."""
    cfg = gov.ledger.task_config(task)
    values = dict(min_participants=cfg.min_participants, max_participants=cfg.max_participants,
                  submission_window=cfg.submission_window, aggregation_window=cfg.aggregation_window,
                  verification_window=cfg.verification_window, reveal_window=cfg.reveal_window,
                  max_rounds=cfg.max_rounds) | changes
    pid, _ = gov_members[0].propose("update-task", [task, *values.values()])
    for m in gov_members[1:]:
        if gov.proposal(pid).state == "active":
            m.vote(pid, True)
    return gov.execute(pid)


def test_a_round_too_few_members_are_left_for_closes_once_a_vote_lowers_its_minimum(ledger):
    gov = governed(ledger, members=(1, 2, 3, 4))
    members = [as_member(ledger, gov, i) for i in (1, 2, 3, 4)]
    pid, _ = members[0].propose("create-task", [config(min_participants=4, verifiers_per_round=1, quorum=1).to_tuple()])
    members[1].vote(pid, True), members[2].vote(pid, True)
    task = gov.execute(pid).event("TaskCreated")["task"]
    submit_all(ledger, task, 1, [1, 2, 3])  # the fourth organisation has left for good
    ledger.advance(101)
    err = expect_revert("NotEnoughParticipants", ledger.admin.close_submissions, task, 1)
    assert (err.args_["have"], err.args_["need"]) == (3, 4)
    tx = _update(members, gov, task, min_participants=3, submission_window=30)
    updated = tx.event("TaskUpdated")
    assert (updated["round"], updated["minParticipants"], updated["submissionWindow"]) == (1, 3, 30)
    ledger.admin.close_submissions(task, 1)  # the stalled round closes and goes on
    assert ledger.admin.round_info(task, 1).phase == Phase.REVEAL
    expect_revert("WrongPhase", _update, members, gov, task, min_participants=2)  # not mid-round
    cfg = ledger.admin.task_config(task)
    assert (cfg.min_participants, cfg.submission_window, cfg.rule_id, cfg.verifiers_per_round) == (3, 30, "fedavg", 1)


def test_update_task_keeps_a_round_closable_and_lowering_its_maximum_closes_a_full_round(ledger):
    gov = governed(ledger, members=(1, 2, 3, 4))
    members = [as_member(ledger, gov, i) for i in (1, 2, 3, 4)]
    pid, _ = members[0].propose("create-task", [config(min_participants=3).to_tuple()])
    members[1].vote(pid, True), members[2].vote(pid, True)
    task = gov.execute(pid).event("TaskCreated")["task"]
    submit_all(ledger, task, 1, [1, 2, 3])
    for bad, what in ((dict(min_participants=2), "exceed verifiersPerRound"),  # 2 verifiers need 3 participants
                      (dict(max_participants=2), "maxParticipants"),  # fewer than the 3 updates it holds
                      (dict(max_rounds=0), "maxRounds"), (dict(submission_window=0), "windows")):
        err = expect_revert("InvalidArgument", _update, members, gov, task, **bad)
        assert what in err.args_["what"], (bad, err.args_)
    tx = _update(members, gov, task, max_participants=3)
    assert tx.event("SubmissionsClosed")["participants"] == 3  # full now: closed in the same transaction


def test_the_audit_follows_a_round_count_changed_by_vote(ledger):
    from fedledger.node.audit.replay import rebuild_lineage

    gov = governed(ledger, members=(1, 2, 3))
    members = [as_member(ledger, gov, i) for i in (1, 2, 3)]
    pid, _ = members[0].propose("create-task", [config(min_participants=2, verifiers_per_round=1, quorum=1,
                                                       max_rounds=5).to_tuple()])
    members[1].vote(pid, True)
    task = gov.execute(pid).event("TaskCreated")["task"]
    _update(members, gov, task, max_rounds=1)
    submit_all(ledger, task, 1, [1, 2, 3])
    elected = close(ledger, task, 1).event("LeaderElected")
    ledger.client(index_of(ledger, elected["leader"])).publish_aggregate(task, 1, 0, "bafkg1", h("g1"))
    done = ledger.client(index_of(ledger, elected["verifiers"][0])).attest(task, 1, 0, True, h("g1"))
    assert done.event("TaskCompleted")["rounds"] == 1
    tasks, _ = rebuild_lineage(ledger.admin.events(), task)
    assert tasks[0].max_rounds == 1 and tasks[0].completed
    assert not [f for f in tasks[0].failures if f.kind == "completion"]


def test_bootstrap_refuses_a_consortium_one_key_would_still_rule(ledger):
    admit(ledger, [1])
    with pytest.raises(InputError, match="at least two"):
        Governance.start(ledger.admin, Rules(6666, 0, PERIOD))
    admit(ledger, [2])
    with pytest.raises(InputError, match="more than half"):
        Governance.start(ledger.admin, Rules(5000, 0, PERIOD))
    with pytest.raises(InputError, match="only the admin"):
        Governance.start(ledger.client(1), Rules(6666, 0, PERIOD))
    assert ledger.admin.admin() == ledger.accounts[0].address and Governance.of(ledger.admin) is None


@pytest.mark.parametrize("text, bps", [("2/3", 6666), ("67%", 6700), ("0.75", 7500), ("1/1", 10000)])
def test_thresholds_read_as_fractions_percentages_or_decimals(text, bps):
    assert parse_threshold(text) == bps


def test_a_threshold_that_is_not_a_number_is_refused():
    with pytest.raises(InputError, match="2/3"):
        parse_threshold("most")


def test_contract_revert_is_raised_not_swallowed_by_a_bad_execute(ledger):
    gov = governed(ledger)
    pid, _ = as_member(ledger, gov, 1).propose("add-member", [ledger.accounts[2].address, "again"])
    as_member(ledger, gov, 2).vote(pid, True)
    with pytest.raises(ContractRevert) as info:
        gov.execute(pid)
    assert info.value.error == "AlreadyMember"


# ============================================================================ command line


@pytest.mark.ipfs
def test_members_govern_through_the_command_line(cli, chain, ipfs_node, tmp_path):
    ks = {}
    for i in (1, 2, 3):
        ks[i] = tmp_path / f"org{i}.json"
        address = create_keystore(ks[i], PASSWORD, private_key=DEV_KEYS[i], scrypt_n=1024)
        assert cli("member", "add", address, "--name", f"org{i}", *chain.admin_args()).exit_code == 0

    def signed(i):
        return ["--deployment", chain.deployment, "--keystore", ks[i], "--password", f"env:{PW_ENV}", "--json"]

    early = cli("proposals", "--deployment", chain.deployment)
    assert early.exit_code == EXIT_INPUT and "fedledger govern" in early.stderr
    bad = cli("govern", "--threshold", "1/2", *chain.admin_args())
    assert bad.exit_code == EXIT_INPUT and "more than half" in bad.stderr
    started = cli("govern", "--threshold", "2/3", "--voting-period", "3600", *chain.admin_args(), "--json")
    assert started.exit_code == 0, started.output
    assert chain.client().admin() == as_json(started)["governance"] and as_json(started)["threshold_bps"] == 6666
    newcomer = "0x" + "5e" * 20
    refused = cli("member", "add", newcomer, "--name", "org5", *chain.admin_args(), "--json")
    assert refused.exit_code == EXIT_REFUSED and as_json(refused)["error"] == "NotAdmin"

    proposed = cli("propose", "add-member", newcomer, "--name", "org5", "--description", "new lab", *signed(1))
    assert proposed.exit_code == 0, proposed.output
    p = as_json(proposed)["proposal"]
    assert (p["id"], p["state"], p["yes"], p["required"], p["args"]["name"]) == (0, "active", 1, 2, "org5")
    listed = as_json(cli("proposals", "--deployment", chain.deployment, "--json"))
    assert [q["id"] for q in listed["proposals"]] == [0] and listed["threshold_bps"] == 6666
    assert cli("vote", "0", "maybe", *signed(2)).exit_code == EXIT_INPUT
    voted = cli("vote", "0", "yes", *signed(2))
    assert voted.exit_code == 0 and as_json(voted)["executed"] and as_json(voted)["proposal"]["state"] == "executed"
    assert chain.client().member_info(newcomer)[:2] == (True, "org5")
    late = cli("vote", "0", "yes", *signed(3))
    assert late.exit_code == EXIT_REFUSED and as_json(late)["error"] == "WrongState"
    assert as_json(cli("proposals", "--deployment", chain.deployment, "--json"))["proposals"] == []
    every = as_json(cli("proposals", "--all", "--deployment", chain.deployment, "--json"))["proposals"]
    assert [q["state"] for q in every] == ["executed"]

    # A task, once governed, is proposed by any member and created by the vote.
    task = cli("task", "create", "--workload", "digits-mlp", "--verifiers", "1", "--ipfs-api", ipfs_node.api_url,
               "--out", tmp_path / "tasks", *signed(1))
    assert task.exit_code == 0, task.output
    assert as_json(task)["proposal"]["action"] == "create-task" and chain.client().task_count() == 0
    assert as_json(cli("vote", "1", "yes", *signed(2)))["proposal"]["state"] == "active"  # 2 of 3 needed of 4
    created = cli("vote", "1", "yes", *signed(3))
    assert as_json(created)["executed"] and chain.client().task_count() == 1
    record = json.loads((tmp_path / "tasks" / "proposal1" / "task.json").read_text())
    assert chain.client().task_config(0).genesis_sha256 == record["config"]["genesis_sha256"]


# ============================================================================ attacks on the vote


def frozen_clock(ledger):
    """Every block from now on carries the same timestamp, as blocks mined within one second can."""
    ledger.w3.provider.make_request("anvil_setBlockTimestampInterval", [0])
    return lambda: ledger.w3.provider.make_request("anvil_removeBlockTimestampInterval", [])


def test_a_member_admitted_in_the_same_second_as_a_proposal_cannot_vote_on_it(ledger):
    gov = governed(ledger, members=(1, 2, 3))
    one = as_member(ledger, gov, 1)
    add, _ = one.propose("add-member", [ledger.accounts[5].address, "org5"])
    as_member(ledger, gov, 2).vote(add, True)
    thaw = frozen_clock(ledger)
    try:
        target, _ = one.propose("remove-member", [ledger.accounts[3].address])  # electorate 3: needs 2 votes
        gov.execute(add)  # org5 joins in the same second
        err = expect_revert("NotInElectorate", as_member(ledger, gov, 5).vote, target, True)
        assert err.args_["who"] == ledger.accounts[5].address
    finally:
        thaw()
    assert ledger.admin.is_member(ledger.accounts[3].address)


def test_a_removed_member_cannot_execute_a_passed_duplicate_of_its_admission_and_a_vote_cancels_it(ledger):
    gov = governed(ledger, members=(1, 2, 3))
    one, two = as_member(ledger, gov, 1), as_member(ledger, gov, 2)
    first, _ = one.propose("add-member", [ledger.accounts[5].address, "org5"])
    second, _ = one.propose("add-member", [ledger.accounts[5].address, "org5"])
    two.vote(first, True), two.vote(second, True)
    gov.execute(first)
    out, _ = one.propose("remove-member", [ledger.accounts[5].address])
    two.vote(out, True), as_member(ledger, gov, 3).vote(out, True)  # 3 of the 4 members
    gov.execute(out)
    expect_revert("NotMember", Governance(ledger.client(5), gov.address).execute, second)
    cancel, _ = one.propose("cancel-proposal", [second], "a stale admission")
    two.vote(cancel, True)
    gov.execute(cancel)
    assert gov.proposal(second).state == "cancelled"
    expect_revert("WrongState", gov.execute, second)
    assert not ledger.admin.is_member(ledger.accounts[5].address)


def test_a_governed_consortium_never_shrinks_below_two_members(ledger):
    gov = governed(ledger, members=(1, 2, 3))
    one, two, three = (as_member(ledger, gov, i) for i in (1, 2, 3))
    b, _ = one.propose("remove-member", [ledger.accounts[2].address])
    c, _ = one.propose("remove-member", [ledger.accounts[3].address])
    three.vote(b, True)
    gov.execute(b)
    assert ledger.admin.member_count() == 2
    two_left_vote = as_member(ledger, gov, 3)  # only org1 and org3 remain; c needed 2 of the 3 then
    two_left_vote.vote(c, True)  # org3 votes for its own removal: it would leave org1 alone
    err = expect_revert("InvalidArgument", gov.execute, c)
    assert "at least two members" in err.args_["what"]
    assert ledger.admin.member_count() == 2


def test_rules_that_would_freeze_the_vote_for_good_are_refused(ledger):
    gov = governed(ledger, members=(1, 2, 3))
    with pytest.raises(InputError, match="delay"):
        Governance.start(ledger.admin, Rules(6666, 10**9, PERIOD))
    pid, _ = as_member(ledger, gov, 1).propose("set-rules", [6666, 2**32 - 1, PERIOD])
    as_member(ledger, gov, 2).vote(pid, True)
    err = expect_revert("InvalidArgument", gov.execute, pid)
    assert "delay" in err.args_["what"]


def test_a_malformed_proposal_does_not_break_the_listing_of_the_others(ledger):
    gov = governed(ledger, members=(1, 2, 3))
    one = as_member(ledger, gov, 1)
    good, _ = one.propose("cancel-task", [0])
    selector_only = ledger.admin.contract.encode_abi("cancelTask", args=[0])[:10]
    one.client._transact("propose", ledger.address, bytes.fromhex(selector_only[2:]), "")
    one.client._transact("propose", ledger.address, bytes.fromhex(ledger.admin.contract.encode_abi(
        "cancelTask", args=[0])[2:]), "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"))
    listed = gov.proposals()
    assert [p.id for p in listed] == [0, 1, 2] and listed[0].action == "cancel-task"
    assert listed[1].action == "cancel-task" and "raw" in listed[1].args


def test_a_look_alike_admin_contract_is_not_taken_for_the_members_vote(ledger):
    from fedledger.node.chain.client import ChainClient
    from fedledger.node.chain.contracts import load_artifact

    admit(ledger, (1, 2))
    fake = ChainClient(ledger.rpc_url, None, ledger.accounts[0], artifact=load_artifact())
    fake.deploy()  # any contract with other code: here a second FedLedger
    assert Governance.of(ledger.admin) is None
    real, _ = Governance.start(ledger.admin, Rules(6666, 0, PERIOD))
    assert Governance.of(ledger.admin).address == real.address
