"""The peer's decisions as a pure function of what the chain shows it (peer/decide.py)."""

from __future__ import annotations

from fedledger.node.peer.decide import TIMEOUT_GRACE, Step, decide
from fedledger.node.protocol import MemberView, Phase, RoundInfo, TaskConfig, TaskState

ME = "0x" + "aa" * 20
OTHER = "0x" + "bb" * 20
CONFIG = TaskConfig("bafkspec", "bafkgenesis", "11" * 32, "fedavg", min_participants=2, max_participants=4)
DEADLINE = 1_000


def view(phase: Phase, *, count: int = 0, leader: str | None = None, submitted: bool = False,
         verifier: bool = False, attempt: int = 0, completed: bool = False, rnd: int = 3,
         revealed: bool = False) -> MemberView:
    info = RoundInfo(phase=phase, epoch=0, attempt=attempt, count=count, agrees=0, disagrees=0, deadline=DEADLINE,
                     total_samples=0, seed="00" * 32, inputs_digest="00" * 32, aggregate_sha256="22" * 32,
                     aggregate_cid="bafkagg", leader=leader)
    return MemberView(TaskState(completed, rnd, "33" * 32, "bafkglobal"), info, submitted, revealed, verifier)


def kinds(steps: list[Step]) -> list[str]:
    return [s.kind for s in steps]


def test_a_completed_task_asks_for_nothing():
    assert decide(view(Phase.SUBMISSION, completed=True), ME, CONFIG, now=0) == []


def test_a_member_that_has_not_submitted_submits_then_watches_the_window():
    steps = decide(view(Phase.SUBMISSION, count=1), ME, CONFIG, now=DEADLINE - 10)
    assert kinds(steps) == ["submit", "prefetch"] and steps[0].round == 3 and not steps[1].needed
    # A refused update is not sent again in the same epoch.
    assert "submit" not in kinds(decide(view(Phase.SUBMISSION, count=1), ME, CONFIG, now=0, done={steps[0].key}))


def test_a_member_that_submitted_does_not_submit_again():
    assert "submit" not in kinds(decide(view(Phase.SUBMISSION, count=2, submitted=True), ME, CONFIG, now=0))


def test_the_window_is_closed_when_full_or_past_its_deadline_with_the_minimum():
    assert "close" in kinds(decide(view(Phase.SUBMISSION, count=4, submitted=True), ME, CONFIG, now=0))
    assert "close" in kinds(decide(view(Phase.SUBMISSION, count=2, submitted=True), ME, CONFIG, now=DEADLINE))
    # Past the deadline but below the minimum: the window stays open for late members.
    assert "close" not in kinds(decide(view(Phase.SUBMISSION, count=1, submitted=True), ME, CONFIG, now=DEADLINE + 99))
    assert "close" not in kinds(decide(view(Phase.SUBMISSION, count=3, submitted=True), ME, CONFIG, now=DEADLINE - 1))


def test_a_participant_reveals_once_the_window_closed_and_anyone_ends_a_late_reveal():
    steps = decide(view(Phase.REVEAL, count=4, submitted=True), ME, CONFIG, now=DEADLINE - 1)
    assert kinds(steps) == ["reveal", "prefetch"]
    assert kinds(decide(view(Phase.REVEAL, count=4, submitted=True), ME, CONFIG, now=0, done={steps[0].key})) == ["prefetch"]
    assert kinds(decide(view(Phase.REVEAL, count=4, submitted=True, revealed=True), ME, CONFIG, now=0)) == ["prefetch"]
    assert "reveal" not in kinds(decide(view(Phase.REVEAL, count=4), ME, CONFIG, now=0))  # not a participant
    assert kinds(decide(view(Phase.REVEAL, count=4), ME, CONFIG, now=DEADLINE + TIMEOUT_GRACE + 1))[-1] == "close_reveals"


def test_the_elected_leader_leads_once_per_attempt_and_fetches_what_it_needs():
    steps = decide(view(Phase.AGGREGATION, count=4, leader=ME.upper().replace("0X", "0x")), ME, CONFIG, now=0)
    assert kinds(steps) == ["prefetch", "lead"] and steps[0].needed
    key = steps[1].key
    assert key == ("lead", 3, 0, 0)
    assert kinds(decide(view(Phase.AGGREGATION, leader=ME), ME, CONFIG, now=0, done={key})) == ["prefetch"]
    # A new attempt is a new step.
    assert "lead" in kinds(decide(view(Phase.AGGREGATION, leader=ME, attempt=1), ME, CONFIG, now=0, done={key}))


def test_a_verifier_prefetches_while_the_leader_aggregates_and_others_do_not_need_to():
    assert decide(view(Phase.AGGREGATION, leader=OTHER, verifier=True), ME, CONFIG, now=0)[0].needed
    assert not decide(view(Phase.AGGREGATION, leader=OTHER), ME, CONFIG, now=0)[0].needed


def test_a_verifier_verifies_once_and_everyone_fetches_the_aggregate_under_verification():
    steps = decide(view(Phase.VERIFICATION, leader=OTHER, verifier=True), ME, CONFIG, now=0)
    assert kinds(steps) == ["verify", "fetch_aggregate"]
    assert kinds(decide(view(Phase.VERIFICATION, leader=OTHER, verifier=True), ME, CONFIG, now=0,
                        done={steps[0].key})) == ["fetch_aggregate"]
    assert kinds(decide(view(Phase.VERIFICATION, leader=OTHER), ME, CONFIG, now=0)) == ["fetch_aggregate"]


def test_anyone_times_out_a_leader_or_a_verification_past_its_deadline_and_grace():
    for phase in (Phase.AGGREGATION, Phase.VERIFICATION):
        assert "timeout" not in kinds(decide(view(phase, leader=OTHER), ME, CONFIG, now=DEADLINE + TIMEOUT_GRACE))
        assert kinds(decide(view(phase, leader=OTHER), ME, CONFIG, now=DEADLINE + TIMEOUT_GRACE + 0.5))[-1] == "timeout"
