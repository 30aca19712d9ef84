"""What a peer reads of its task from the chain: a round's participants, updates and published
inclusion; the parent's own parent (the direction check of the bounds measures the federation's
last step against it); how many updates this member has released (what its privacy budget
counts). All of it comes from state and the event log, so a restarted node knows it as well as one
that never stopped."""

from __future__ import annotations

from dataclasses import dataclass

from ..chain.client import ChainClient
from ..errors import ChainError
from ..protocol.inclusion import inclusion_hash, indices
from ..protocol.types import RoundInfo, TaskConfig
from .recompute import UpdateRecord


def previous_model(chain: ChainClient, task: int, from_block: int, config: TaskConfig, rnd: int,
                   parent_sha: str) -> tuple[str, str] | None:
    """(cid, sha256) of the parent's parent of round `rnd`: genesis, or the global model the
    RoundFinalized event of round rnd - 2 names; None in round 1."""
    if rnd <= 1:
        return None

    def finalized(r: int) -> dict[str, dict]:
        evs = chain.events(from_block=from_block, names=["RoundFinalized"], task=task, round_=r)
        return {e["sha256"].lower(): e for e in evs}

    last = finalized(rnd - 1).get(parent_sha.lower())
    if last is None:
        raise ChainError(f"round {rnd}: no RoundFinalized event names the parent {parent_sha[:12]}")
    sha = last["parent"].lower()
    if sha == config.genesis_sha256.lower():
        return config.genesis_cid, sha
    before = finalized(rnd - 2).get(sha)
    if before is None:
        raise ChainError(f"round {rnd}: no RoundFinalized event names the parent's parent {sha[:12]}")
    return before["cid"], sha


def released_updates(chain: ChainClient, task: int, from_block: int, member: str) -> int:
    """Updates `member` has submitted in the task, every epoch of every round: each one is out."""
    return sum(1 for e in chain.events(from_block=from_block, names=["UpdateSubmitted"], task=task)
               if e["member"].lower() == member.lower())


@dataclass(frozen=True)
class RoundRecord:
    """What the chain holds of a round: read once per leader or verifier step."""

    participants: list[str]  # in submission order
    updates: list[UpdateRecord]  # the participants' latest updates, in the same order
    inclusions: list  # the UpdatesIncluded events of every attempt


def round_record(chain: ChainClient, task: int, from_block: int, rnd: int) -> RoundRecord:
    """The round as the chain holds it now, in one read of the participants and one of the log:
    its participants in submission order, their updates (all epochs: a reopened round keeps its
    updates; a member left out for not revealing is not a participant; a member's latest update
    counts) and the inclusion bitmaps its leaders published."""
    participants = chain.participants(task, rnd)
    events = chain.events(from_block=from_block, names=["UpdateSubmitted", "UpdatesIncluded"], task=task, round_=rnd)
    latest = {e["member"].lower(): UpdateRecord(e["member"], e["cid"], e["sha256"], e["numSamples"])
              for e in events if e.name == "UpdateSubmitted"}
    return RoundRecord(participants, [latest[p.lower()] for p in participants if p.lower() in latest],
                       [e for e in events if e.name == "UpdatesIncluded"])


def published_inclusion(record: RoundRecord, info: RoundInfo) -> tuple[list[str], list[str], list[str]] | str | None:
    """(participants, members in the aggregate, members declared unavailable) as the leader of
    the current attempt published them; None when the bitmaps do not hash to the chain's value,
    "missing" when the event is not visible (yet)."""
    participants = record.participants
    for ev in reversed(record.inclusions):
        if ev["epoch"] != info.epoch or ev["attempt"] != info.attempt:
            continue
        included, unavailable = bytes.fromhex(ev["included"]), bytes.fromhex(ev["unavailable"])
        if inclusion_hash(included, unavailable) != info.included_hash:
            return None
        n = len(participants)
        return (participants, [participants[i] for i in indices(included, n)],
                [participants[i] for i in indices(unavailable, n)])
    return "missing"
