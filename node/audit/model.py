"""What an audit finds: one broken link (`Failure`), the audit of each update, attempt, round and
task, and the whole result (`AuditResult`, with its lineage JSON, schema `fedledger-lineage/1`,
documented in docs/audit.md)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from fedledger.aggregation.registry import decode_params, tolerance

from ..protocol.types import FAIL_OUTCOMES
from ..peer.recompute import UpdateRecord
from ..storage.modelfile import ModelSpec

SCHEMA = "fedledger-lineage/1"

#: A failed attempt's reason (the contract's FailReason) as the report words it.
OUTCOMES = {int(reason): word for reason, word in FAIL_OUTCOMES.items()}

TAIL_KINDS = ("completion", "state_mismatch")  # task-level failures that come after the rounds


@dataclass
class Failure:
    """One broken link. `kind` is stable and machine-readable (see docs/audit.md)."""

    task: int
    round: int  # 0: the task itself (genesis, model spec, completion)
    kind: str
    subject: str
    message: str
    cid: str | None = None
    sha256: str | None = None

    def __str__(self) -> str:
        where = f"task {self.task} genesis" if self.round == 0 else f"task {self.task} round {self.round}"
        return f"{where}: {self.subject}: {self.message} [{self.kind}]"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class UpdateAudit:
    member: str
    name: str
    cid: str
    sha256: str
    num_samples: int
    epoch: int
    block: int
    status: str = "not_checked"  # included | excluded | unavailable | left_out | not_checked
    reason: str = ""
    commitment: str = ""
    in_round: bool = True  # False: left out of the round (no reveal) or replaced by a later update

    @property
    def record(self) -> UpdateRecord:
        return UpdateRecord(self.member, self.cid, self.sha256, self.num_samples)


@dataclass
class AttemptAudit:
    epoch: int
    attempt: int
    leader: str
    leader_name: str
    verifiers: list[str]
    outcome: str = "pending"  # finalized | timed_out | rejected | unverified | disputed | pending
    published_cid: str | None = None
    published_sha256: str | None = None
    attestations: list[dict] = field(default_factory=list)
    note: str = ""
    included: list[str] | None = None  # members the leader says its aggregate is built from
    unavailable: list[str] | None = None  # members whose update the leader declared it could not fetch


@dataclass
class RoundAudit:
    task: int
    round: int
    parent_sha256: str
    epoch: int = 0
    updates: list[UpdateAudit] = field(default_factory=list)
    attempts: list[AttemptAudit] = field(default_factory=list)
    closes: list[dict] = field(default_factory=list)
    finalized: bool = False
    global_cid: str | None = None
    global_sha256: str | None = None
    leader: str | None = None
    leader_name: str | None = None
    finalized_block: int | None = None
    opened_block: int | None = None
    opened_at: str | None = None  # UTC, from the blocks' timestamps (`audit` reads them)
    finalized_at: str | None = None
    members_at_open: list[tuple[str, str]] = field(default_factory=list)  # (address, name) of every member then
    recomputed_sha256: str | None = None
    match: str = ""
    checks: list[Check] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.failures:
            return "failed"
        if not self.finalized:
            return "open"
        return "verified" if self.recomputed_sha256 is not None else "not_checked"

    @property
    def contributors(self) -> list[UpdateAudit]:
        return [u for u in self.updates if u.status == "included"]

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    @property
    def attested_by(self) -> list[str]:
        """Names of the peers whose agreement finalized the round (none: no peer checked it)."""
        fin = next((a for a in self.attempts if a.outcome == "finalized"), None)
        return [x["name"] for x in fin.attestations if x["agree"]] if fin else []

    @property
    def assurance(self) -> str:
        """Who checked the global model: `attested` (peers agreed, and the audit recomputed it),
        `recomputed_only` (no peer attested: only this audit recomputed it), or the status."""
        if self.status != "verified":
            return self.status
        return "attested" if self.attested_by else "recomputed_only"

    def missing(self) -> list[dict]:
        """Members of the consortium when the round opened whose update is not in its model, and why."""
        out, seen = [], set()
        for u in self.updates:
            if u.status != "included" and u.in_round:
                why = {"excluded": f"update excluded ({u.reason})" if u.reason else "update excluded",
                       "unavailable": "update unavailable (its blob could not be fetched)"}.get(u.status, u.status)
                out.append({"member": u.member, "name": u.name, "why": why})
            elif u.status == "left_out":
                out.append({"member": u.member, "name": u.name, "why": "left out: did not reveal its secret"})
            seen.add(u.member)
        for member, name in self.members_at_open:
            if member not in seen:
                out.append({"member": member, "name": name, "why": "no update submitted"})
        return out

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "round": self.round,
            "status": self.status,
            "assurance": self.assurance,
            "attested_by": self.attested_by,
            "samples": sum(u.num_samples for u in self.contributors),
            "missing": self.missing() if self.finalized else [],
            "opened_at": self.opened_at,
            "finalized_at": self.finalized_at,
            "parent_sha256": self.parent_sha256,
            "epochs": self.epoch + 1,
            "leader": self.leader,
            "leader_name": self.leader_name,
            "global": None if not self.finalized else {
                "cid": self.global_cid, "sha256": self.global_sha256, "block": self.finalized_block},
            "recomputed_sha256": self.recomputed_sha256,
            "match": self.match,
            "attempts": [asdict(a) for a in self.attempts],
            "closes": self.closes,
            "updates": [asdict(u) for u in self.updates],
            "checks": [asdict(c) for c in self.checks],
            "failures": [asdict(f) for f in self.failures],
            "notes": self.notes,
        }


@dataclass
class TaskAudit:
    task: int
    creator: str
    block: int
    model_spec_cid: str
    genesis_cid: str
    genesis_sha256: str
    rule_id: str
    rule_params: bytes
    min_participants: int
    max_participants: int
    verifiers_per_round: int
    quorum: int
    max_rounds: int
    rounds: list[RoundAudit] = field(default_factory=list)
    completed: bool = False
    final_sha256: str | None = None
    cancelled_in: int | None = None  # the round a vote (or the bootstrap admin) cancelled the task in
    genesis_status: str = "not_checked"  # verified | failed | not_checked
    failures: list[Failure] = field(default_factory=list)  # round 0: genesis, spec, completion
    spec: ModelSpec | None = None

    @property
    def finalized_rounds(self) -> list[RoundAudit]:
        return [r for r in self.rounds if r.finalized]

    def round(self, number: int) -> RoundAudit | None:
        return next((r for r in self.rounds if r.round == number), None)

    def ordered_failures(self) -> list[Failure]:
        """Failures in lineage order: genesis first, then round by round, then task completion."""
        head = [f for f in self.failures if f.kind not in TAIL_KINDS]
        tail = [f for f in self.failures if f.kind in TAIL_KINDS]
        return head + [f for r in self.rounds for f in r.failures] + tail

    def to_json(self) -> dict:
        try:
            params: Any = decode_params(self.rule_id, self.rule_params)
        except Exception:  # an unknown rule is reported as a failure; keep the raw bytes here
            params = self.rule_params.decode("ascii", errors="replace")
        try:
            tol = tolerance(self.rule_id, self.rule_params)
        except Exception:
            tol = None
        return {
            "task": self.task,
            "creator": self.creator,
            "created_block": self.block,
            "rule": self.rule_id,
            "rule_params": params,
            "verification": "bit-exact" if tol is None else {"rtol": tol[0], "atol": tol[1]},
            "model_spec_cid": self.model_spec_cid,
            "min_participants": self.min_participants,
            "max_participants": self.max_participants,
            "verifiers_per_round": self.verifiers_per_round,
            "quorum": self.quorum,
            "max_rounds": self.max_rounds,
            "completed": self.completed,
            "final_sha256": self.final_sha256,
            "cancelled_in": self.cancelled_in,
            "genesis": {"cid": self.genesis_cid, "sha256": self.genesis_sha256, "status": self.genesis_status},
            "status": "failed" if self.ordered_failures() else "verified",
            "failures": [asdict(f) for f in self.failures],
            "rounds": [r.to_json() for r in self.rounds],
        }


@dataclass
class AuditResult:
    """What `audit_run` and `audit_live` return. `ok` is True only when every check passed."""

    tasks: list[TaskAudit]
    members: dict[str, str]
    source: dict[str, Any]
    timing: dict[str, float] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)
    model: dict[str, Any] | None = None  # the --model subject, when the audit was limited to it

    @property
    def failures(self) -> list[Failure]:
        return [f for t in self.tasks for f in t.ordered_failures()]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> Failure | None:
        failures = self.failures
        return failures[0] if failures else None

    @property
    def rounds(self) -> list[RoundAudit]:
        """Every audited round of every task, in (task, round) order."""
        return [r for t in self.tasks for r in t.rounds]

    def task(self, number: int) -> TaskAudit:
        for t in self.tasks:
            if t.task == number:
                return t
        raise KeyError(f"task {number} was not audited")

    def name(self, address: str | None) -> str:
        if not address:
            return "-"
        return self.members.get(address, address[:10])

    def to_json(self) -> dict:
        first = self.first_failure
        return {
            "schema": SCHEMA,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "ok": self.ok,
            "first_failure": asdict(first) if first else None,
            "source": self.source,
            "members": self.members,
            "model": self.model,
            "timing": self.timing,
            "blobs": self.blobs,
            "tasks": [t.to_json() for t in self.tasks],
        }
