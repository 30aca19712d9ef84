"""The contract's data in Python: phases, failure reasons, a task's configuration, a round's state,
and the encodings of hashes and rule ids (bytes32)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Sequence

from .. import defaults


class Phase(enum.IntEnum):
    NONE = 0
    SUBMISSION = 1
    REVEAL = 2
    AGGREGATION = 3
    VERIFICATION = 4
    FINALIZED = 5


class FailReason(enum.IntEnum):
    LEADER_TIMEOUT = 0  # held against the leader
    REJECTED = 1  # a quorum of verifiers disagreed: held against the leader
    UNVERIFIED = 2  # the verifiers were silent
    DISPUTED = 3  # neither agreement nor disagreement reached the quorum


#: A failed attempt's reason as the reports and the audit name it.
FAIL_OUTCOMES = {FailReason.LEADER_TIMEOUT: "timed_out", FailReason.REJECTED: "rejected",
                 FailReason.UNVERIFIED: "unverified", FailReason.DISPUTED: "disputed"}


def to_bytes32(value: str | bytes) -> bytes:
    """A sha256 as 32 bytes, from bytes or a hex string (with or without 0x)."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 32:
            raise ValueError(f"expected 32 bytes, got {len(value)}")
        return bytes(value)
    text = value[2:] if value.startswith("0x") else value
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError(f"expected a 64-hex-digit hash, got {len(text)} digits")
    return raw


def rule_to_bytes32(rule: str) -> bytes:
    """A rule id on chain: its ASCII name, right-padded with zero bytes."""
    raw = rule.encode("ascii")
    if not raw or len(raw) > 32:
        raise ValueError(f"rule id {rule!r} must be 1-32 ASCII characters")
    return raw.ljust(32, b"\0")


def rule_from_bytes32(raw: bytes) -> str:
    return bytes(raw).rstrip(b"\0").decode("ascii", errors="replace")


@dataclass(frozen=True)
class TaskConfig:
    """What a task fixes at creation. Hashes are lowercase hex; windows are seconds."""

    model_spec_cid: str
    genesis_cid: str
    genesis_sha256: str
    rule_id: str
    rule_params: bytes = b"{}"
    min_participants: int = defaults.VERIFIERS + 1
    max_participants: int = 10
    submission_window: int = defaults.SUBMISSION_WINDOW
    aggregation_window: int = defaults.AGGREGATION_WINDOW
    verification_window: int = defaults.VERIFICATION_WINDOW
    verifiers_per_round: int = defaults.VERIFIERS
    quorum: int = defaults.majority(defaults.VERIFIERS)
    max_rounds: int = defaults.ROUNDS
    max_samples: int = defaults.MAX_SAMPLES
    reveal_window: int = defaults.REVEAL_WINDOW

    def to_tuple(self) -> tuple:
        return (
            self.model_spec_cid,
            self.genesis_cid,
            to_bytes32(self.genesis_sha256),
            rule_to_bytes32(self.rule_id),
            bytes(self.rule_params),
            self.min_participants,
            self.max_participants,
            self.submission_window,
            self.aggregation_window,
            self.verification_window,
            self.verifiers_per_round,
            self.quorum,
            self.max_rounds,
            self.max_samples,
            self.reveal_window,
        )

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> "TaskConfig":
        return cls(
            model_spec_cid=t[0],
            genesis_cid=t[1],
            genesis_sha256=bytes(t[2]).hex(),
            rule_id=rule_from_bytes32(t[3]),
            rule_params=bytes(t[4]),
            min_participants=t[5],
            max_participants=t[6],
            submission_window=t[7],
            aggregation_window=t[8],
            verification_window=t[9],
            verifiers_per_round=t[10],
            quorum=t[11],
            max_rounds=t[12],
            max_samples=t[13],
            reveal_window=t[14],
        )


@dataclass(frozen=True)
class TaskState:
    completed: bool
    current_round: int
    global_sha256: str
    global_cid: str


@dataclass(frozen=True)
class RoundInfo:
    phase: Phase
    epoch: int
    attempt: int
    count: int
    agrees: int
    disagrees: int
    deadline: int
    total_samples: int
    seed: str
    inputs_digest: str
    aggregate_sha256: str
    aggregate_cid: str
    leader: str | None
    reveals: int = 0  # participants that revealed their secret in this epoch
    included_hash: str = "00" * 32  # keccak256 of the publication's included/unavailable bitmaps


@dataclass(frozen=True)
class MemberView:
    """What a node reads on every new block (`memberView`)."""

    state: TaskState
    round: RoundInfo
    submitted: bool  # the member submitted to the current round
    revealed: bool  # the member revealed its secret in the current epoch
    verifier: bool  # the member verifies the current attempt
