"""What a member does next, decided from what the chain shows it: the protocol of DESIGN.md as a
pure function, so that it can be read (and tested) apart from the doing.

`decide(view, ...)` takes one `memberView` read (task state, current round, whether this member
submitted and whether it verifies the current attempt) and returns the steps to take, in order.
The peer's loop (`loop.py`) carries them out. Nothing here touches the network, a file or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.types import MemberView, Phase, TaskConfig

#: Seconds past a deadline before a member calls `timeout`: the chain's clock may lag ours.
TIMEOUT_GRACE = 1


@dataclass(frozen=True)
class Step:
    """One thing to do. `kind` is one of:

    submit          train on the current global model and submit an update
    reveal          reveal the secret this member's update committed to (the window has closed)
    close_reveals   end the reveal phase past its deadline (anyone may; members race)
    prefetch        start fetching the round's announced updates (`needed`: this member leads or
                    verifies, so it needs them; otherwise only if models are small)
    lead            aggregate and publish (once per attempt: `key`)
    verify          recompute the published aggregate and attest (once per attempt: `key`)
    fetch_aggregate fetch the aggregate under verification: everyone trains on it if it finalizes
    close           call closeSubmissions (anyone may; members race)
    timeout         call timeout (anyone may; members race)
    """

    kind: str
    round: int
    needed: bool = False
    key: tuple = ()


def decide(view: MemberView, me: str, config: TaskConfig, now: float, done: frozenset | set = frozenset()) -> list[Step]:
    """The steps this member takes now. `done` holds the keys of lead/verify steps already taken
    for their attempt (a failed one is removed by the loop, so it is tried again)."""
    state, info = view.state, view.round
    if state.completed:
        return []
    rnd = state.current_round
    steps: list[Step] = []
    if info.phase == Phase.SUBMISSION:
        key = ("submit", rnd, info.epoch)
        if not view.submitted and key not in done:  # a refused update is not sent again this epoch
            steps.append(Step("submit", rnd, key=key))
        steps.append(Step("prefetch", rnd, needed=False))
        full = info.count >= config.max_participants
        if full or (now >= info.deadline and info.count >= config.min_participants):
            steps.append(Step("close", rnd))
    elif info.phase == Phase.REVEAL:
        key = ("reveal", rnd, info.epoch)
        if view.submitted and not view.revealed and key not in done:
            steps.append(Step("reveal", rnd, key=key))
        # The updates are fixed now: whoever leads or verifies will need them.
        steps.append(Step("prefetch", rnd, needed=False))
        if now > info.deadline + TIMEOUT_GRACE:
            steps.append(Step("close_reveals", rnd))
    elif info.phase == Phase.AGGREGATION:
        leads = info.leader is not None and info.leader.lower() == me.lower()
        # The leader and the verifiers of this attempt all need every update: the verifiers start
        # fetching now, while the leader aggregates.
        steps.append(Step("prefetch", rnd, needed=leads or view.verifier))
        key = ("lead", rnd, info.epoch, info.attempt)
        if leads and key not in done:
            steps.append(Step("lead", rnd, key=key))
        if now > info.deadline + TIMEOUT_GRACE:
            steps.append(Step("timeout", rnd))
    elif info.phase == Phase.VERIFICATION:
        key = ("verify", rnd, info.epoch, info.attempt)
        if view.verifier and key not in done:
            steps.append(Step("verify", rnd, key=key))
        steps.append(Step("fetch_aggregate", rnd))
        if now > info.deadline + TIMEOUT_GRACE:
            steps.append(Step("timeout", rnd))
    return steps
