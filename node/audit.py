"""`fedledger audit`: rebuild a task's lineage from contract events alone and verify it byte for byte.

The audit is a pure reader: it sends no transaction and, for a run directory, restarts the run's
chain and IPFS repos from scratch copies, so the record it audits stays byte for byte as it was.
It proceeds in three steps, each of which can name the first broken link:

1. Events. Every lineage fact comes from FedLedger's event log: the task's configuration, every
   round's parent, every update (member, cid, sha256, samples), every election, publication,
   attestation, failed attempt and finalization. The events are checked against each other the
   way the contract should have produced them: each round builds on the previous global model
   (genesis for round 1), the updates reproduce the inputs digest the contract committed to when
   it closed the window, the seed derives from the chain and the elected leader and verifiers
   follow from it, the finalized model is the one the leader of that attempt published, and a
   quorum of its verifiers agreed. A chain node that hides or alters an event fails here.
2. Blobs. The genesis model, every update and every global model is fetched from IPFS and its
   sha256 compared with the chain's; global models are parsed and their metadata (kind, task,
   round, parent, rule) compared with the chain's.
3. Recomputation. Each round's aggregate is rebuilt from its updates by the code the leader and
   the verifiers run (`recompute.build_aggregate`: same exclusions, same rule, same canonical
   order) and compared with the global model: bit for bit, or within the rule's tolerance.

`audit_run(run_dir)` and `audit_live(rpc_url, contract, ipfs_url)` return an `AuditResult`;
`register(app)` adds the `audit` command to a Typer app. docs/audit.md documents the lineage
JSON and the checks.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .ipfs import IntegrityError, IpfsClient, IpfsTimeout, IpfsUnavailable, StorageError, raw_cid

# web3, eth_abi and numpy are imported where they are used: registering the `audit` command must not
# slow every `fedledger` command down (they cost ~1.4 s together).
if TYPE_CHECKING:
    from .chain import ChainClient, Event
    from .modelfile import ModelSpec
    from .recompute import UpdateRecord

SCHEMA = "fedledger-lineage/1"
DEFAULT_FETCH_TIMEOUT = 60.0
FETCH_WORKERS = 4
LEAVE_ONE_OUT_MAX = 16  # diagnose a mismatching aggregate by leaving each update out, up to this many
SPEC_MAX_BYTES = 1 << 20

# chain.FailReason (LeaderTimeout, Rejected, Unverified) as report words.
OUTCOMES = {0: "timed_out", 1: "rejected", 2: "unverified"}

TAIL_KINDS = ("completion", "state_mismatch")  # task-level failures that come after the rounds

# Exit codes of `fedledger audit`.
EXIT_VERIFIED = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2
EXIT_CANNOT_AUDIT = 3


class AuditError(RuntimeError):
    """The audit could not run (no chain, no contract, unusable run directory); the message says
    what to do. A lineage that fails verification is not an error: it is an `AuditResult`."""


# --------------------------------------------------------------------------- results


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
    status: str = "not_checked"  # included | excluded | unavailable | not_checked
    reason: str = ""

    @property
    def record(self) -> UpdateRecord:
        from .recompute import UpdateRecord

        return UpdateRecord(self.member, self.cid, self.sha256, self.num_samples)


@dataclass
class AttemptAudit:
    epoch: int
    attempt: int
    leader: str
    leader_name: str
    verifiers: list[str]
    outcome: str = "pending"  # finalized | timed_out | rejected | unverified | pending
    published_cid: str | None = None
    published_sha256: str | None = None
    attestations: list[dict] = field(default_factory=list)
    note: str = ""


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

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "round": self.round,
            "status": self.status,
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
        from fedledger.aggregation.registry import decode_params, tolerance

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


# --------------------------------------------------------------------------- events -> lineage


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    text = str(value).lower()
    return text[2:] if text.startswith("0x") else text


def _rule(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).rstrip(b"\0").decode("ascii", errors="replace")
    return str(value)


def _param_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def initial_digest(task: int, rnd: int, parent_sha: str) -> bytes:
    """Mirror of FedLedger._openRound: the inputs digest a round starts from."""
    from eth_abi import encode as abi_encode
    from eth_utils import keccak

    return keccak(abi_encode(["uint256", "uint256", "bytes32"], [task, rnd, bytes.fromhex(parent_sha)]))


def next_digest(digest: bytes, member: str, sha: str, num_samples: int) -> bytes:
    """Mirror of FedLedger.submitUpdate: the running commitment to every (member, sha256, samples)."""
    from eth_abi import encode as abi_encode
    from eth_utils import keccak

    return keccak(abi_encode(["bytes32", "address", "bytes32", "uint64"],
                             [digest, member, bytes.fromhex(sha), num_samples]))


class _Rebuild:
    """Folds the event log into TaskAudits, checking each event against what came before."""

    def __init__(self, wanted_task: int | None, blockhash: Callable[[int], str] | None):
        self.wanted = wanted_task
        self.blockhash = blockhash
        self.members: dict[str, str] = {}
        self.tasks: dict[int, TaskAudit] = {}
        self._state: dict[tuple[int, int], dict] = {}  # (task, round) -> running digest etc.

    def name(self, address: str) -> str:
        return self.members.get(address, address[:10])

    def feed(self, events: Iterable[Event]) -> None:
        for ev in events:
            if ev.name == "MemberAdded":
                self.members[ev["member"]] = ev["name"]
                continue
            task = ev.args.get("task")
            if task is None or (self.wanted is not None and task != self.wanted):
                continue
            handler = getattr(self, f"_on_{ev.name}", None)
            if handler is None:
                continue
            if ev.name != "TaskCreated" and task not in self.tasks:
                self._orphan(task, ev)
                continue
            handler(ev)

    # -- helpers

    def _orphan(self, task: int, ev: Event) -> None:
        t = self.tasks.setdefault(task, TaskAudit(task, "", 0, "", "", "", "?", b"", 0, 0, 0, 0, 0))
        t.failures.append(Failure(task, 0, "event_order", f"{ev.name} event",
                                  f"no TaskCreated event for task {task} precedes it (block {ev.block_number}): "
                                  f"the event log is incomplete"))

    def _round(self, ev: Event) -> RoundAudit | None:
        t = self.tasks[ev["task"]]
        r = t.round(ev["round"])
        if r is None:
            t.failures.append(Failure(ev["task"], 0, "event_order", f"{ev.name} event",
                                      f"round {ev['round']} was never opened (block {ev.block_number}): "
                                      f"the event log is incomplete"))
        return r

    def _fail(self, r: RoundAudit, kind: str, subject: str, message: str, cid: str | None = None,
              sha: str | None = None) -> None:
        r.failures.append(Failure(r.task, r.round, kind, subject, message, cid, sha))

    def _attempt(self, r: RoundAudit, epoch: int, attempt: int) -> AttemptAudit | None:
        return next((a for a in r.attempts if a.epoch == epoch and a.attempt == attempt), None)

    # -- handlers

    def _on_TaskCreated(self, ev: Event) -> None:
        cfg = ev["config"]
        get = (lambda k: cfg[k]) if isinstance(cfg, dict) or hasattr(cfg, "keys") else None
        if get is None:  # a plain tuple, in TaskConfig order
            keys = ["modelSpecCid", "genesisCid", "genesisSha256", "ruleId", "ruleParams", "minParticipants",
                    "maxParticipants", "submissionWindow", "aggregationWindow", "verificationWindow",
                    "verifiersPerRound", "quorum", "maxRounds"]
            values = dict(zip(keys, cfg))
            get = values.__getitem__
        self.tasks[ev["task"]] = TaskAudit(
            task=ev["task"], creator=ev["creator"], block=ev.block_number,
            model_spec_cid=get("modelSpecCid"), genesis_cid=get("genesisCid"),
            genesis_sha256=_hex(get("genesisSha256")), rule_id=_rule(get("ruleId")),
            rule_params=_param_bytes(get("ruleParams")), min_participants=get("minParticipants"),
            max_participants=get("maxParticipants"), verifiers_per_round=get("verifiersPerRound"),
            quorum=get("quorum"), max_rounds=get("maxRounds"),
        )

    def _on_RoundOpened(self, ev: Event) -> None:
        t = self.tasks[ev["task"]]
        rnd, parent = ev["round"], ev["parent"]
        r = RoundAudit(ev["task"], rnd, parent)
        prev = t.rounds[-1] if t.rounds else None
        if t.round(rnd) is not None:
            self._fail(r, "event_order", "RoundOpened event", f"round {rnd} was opened twice")
        expected_round = prev.round + 1 if prev else 1
        if rnd != expected_round or (prev is not None and not prev.finalized):
            self._fail(r, "event_order", "RoundOpened event",
                       f"round {rnd} opened after round {prev.round if prev else 0} "
                       f"{'finalized' if prev is None or prev.finalized else 'did not finalize'}; "
                       f"expected round {expected_round}")
        expected_parent = prev.global_sha256 if prev and prev.finalized else t.genesis_sha256
        what = f"the global model of round {prev.round}" if prev else "the genesis model"
        if not r.check("events.parent", parent == expected_parent, f"parent is {what}"):
            self._fail(r, "parent_link", "round parent",
                       f"the chain opened round {rnd} on {parent[:16]}, but {what} is "
                       f"{(expected_parent or '?')[:16]}", sha=parent)
        t.rounds.append(r)
        self._state[(t.task, rnd)] = {"digest": initial_digest(t.task, rnd, parent), "samples": 0,
                                      "participants": [], "order": [], "closed_epochs": set()}

    def _on_UpdateSubmitted(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        st = self._state[(r.task, r.round)]
        u = UpdateAudit(ev["member"], self.name(ev["member"]), ev["cid"], ev["sha256"], ev["numSamples"],
                        ev["epoch"], ev.block_number)
        r.updates.append(u)
        if ev["parent"] != r.parent_sha256:
            self._fail(r, "parent_link", f"update of {u.name}",
                       f"the event says it was trained from {ev['parent'][:16]}, the round's parent is "
                       f"{r.parent_sha256[:16]}", u.cid, u.sha256)
        if r.finalized:
            self._fail(r, "event_order", f"update of {u.name}", "submitted after the round was finalized",
                       u.cid, u.sha256)
        st["digest"] = next_digest(st["digest"], u.member, u.sha256, u.num_samples)
        st["samples"] += u.num_samples
        st["participants"].append(u.member)

    def _on_SubmissionsClosed(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        st = self._state[(r.task, r.round)]
        digest = st["digest"].hex()
        close = {"epoch": ev["epoch"], "block": ev.block_number, "seed": ev["seed"],
                 "participants": ev["participants"], "total_samples": ev["totalSamples"],
                 "inputs_digest": ev["inputsDigest"]}
        r.closes.append(close)
        r.epoch = ev["epoch"]
        ok = (ev["inputsDigest"] == digest and ev["participants"] == len(st["participants"])
              and ev["totalSamples"] == st["samples"])
        if not r.check("events.inputs_digest", ok,
                       f"epoch {ev['epoch']}: {len(st['participants'])} updates, {st['samples']} samples"):
            self._fail(r, "inputs_digest", "submitted updates",
                       f"at close (epoch {ev['epoch']}, block {ev.block_number}) the contract committed to "
                       f"{ev['participants']} updates, {ev['totalSamples']} samples, digest "
                       f"{ev['inputsDigest'][:16]}; the UpdateSubmitted events give {len(st['participants'])} "
                       f"updates, {st['samples']} samples, digest {digest[:16]}: an update event is missing "
                       f"or altered")
        from .chain import derive_seed, election_order

        if self.blockhash is not None:
            seed = derive_seed(self.blockhash(ev.block_number - 1), r.task, r.round, ev["epoch"], ev["inputsDigest"])
            if not r.check("events.seed", seed == ev["seed"], "the election seed derives from the chain"):
                self._fail(r, "election", "election seed",
                           f"the seed {ev['seed'][:16]} of epoch {ev['epoch']} is not keccak(blockhash, task, round, "
                           f"epoch, inputsDigest) = {seed[:16]}")
        st["order"] = election_order(ev["seed"], st["participants"])

    def _on_LeaderElected(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        from .chain import verifiers_for

        t = self.tasks[r.task]
        order = self._state[(r.task, r.round)]["order"]
        a = AttemptAudit(ev["epoch"], ev["attempt"], ev["leader"], self.name(ev["leader"]), list(ev["verifiers"]))
        r.attempts.append(a)
        if not order:
            self._fail(r, "event_order", "LeaderElected event", "a leader was elected before the window closed")
            return
        want_leader = order[ev["attempt"] % len(order)]
        want_verifiers = verifiers_for(order, ev["attempt"], t.verifiers_per_round)
        ok = ev["leader"] == want_leader and list(ev["verifiers"]) == want_verifiers
        if not r.check("events.election", ok, f"epoch {ev['epoch']} attempt {ev['attempt']}: leader {a.leader_name}"):
            self._fail(r, "election", f"election of attempt {ev['attempt']}",
                       f"the seeded candidate order makes {self.name(want_leader)} leader with verifiers "
                       f"{[self.name(v) for v in want_verifiers]}; the event says {a.leader_name} with "
                       f"{[self.name(v) for v in ev['verifiers']]}")

    def _on_AggregatePublished(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        t = self.tasks[r.task]
        a = self._attempt(r, ev["epoch"], ev["attempt"])
        if a is None or a.leader != ev["leader"]:
            self._fail(r, "event_order", "AggregatePublished event",
                       f"{self.name(ev['leader'])} published for epoch {ev['epoch']} attempt {ev['attempt']} "
                       f"without being its elected leader", ev["cid"], ev["sha256"])
            return
        a.published_cid, a.published_sha256 = ev["cid"], ev["sha256"]
        if ev["parent"] != r.parent_sha256:
            self._fail(r, "parent_link", f"aggregate published by {a.leader_name}",
                       f"the event names parent {ev['parent'][:16]}, the round's parent is {r.parent_sha256[:16]}",
                       ev["cid"], ev["sha256"])
        if _rule(ev["ruleId"]) != t.rule_id:
            self._fail(r, "finalization", f"aggregate published by {a.leader_name}",
                       f"the event names rule {_rule(ev['ruleId'])!r}, the task's rule is {t.rule_id!r}")

    def _on_Attested(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        a = self._attempt(r, ev["epoch"], ev["attempt"])
        if a is None or ev["verifier"] not in a.verifiers:
            self._fail(r, "quorum", f"attestation of {self.name(ev['verifier'])}",
                       f"it is not a verifier of epoch {ev['epoch']} attempt {ev['attempt']}")
            return
        a.attestations.append({"verifier": ev["verifier"], "name": self.name(ev["verifier"]), "agree": ev["agree"],
                               "computed_sha256": ev["computedSha256"], "block": ev.block_number})

    def _on_AttemptFailed(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        a = self._attempt(r, ev["epoch"], ev["attempt"])
        if a is None:
            self._fail(r, "event_order", "AttemptFailed event",
                       f"epoch {ev['epoch']} attempt {ev['attempt']} was never started")
            return
        a.outcome = OUTCOMES[int(ev["reason"])]

    def _on_RoundReopened(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        r.epoch = ev["epoch"]
        if ev["parent"] != r.parent_sha256:
            self._fail(r, "parent_link", "reopened round",
                       f"reopened on {ev['parent'][:16]}, the round's parent is {r.parent_sha256[:16]}")

    def _on_RoundFinalized(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        t = self.tasks[r.task]
        a = self._attempt(r, ev["epoch"], ev["attempt"])
        r.finalized = True
        r.global_cid, r.global_sha256 = ev["cid"], ev["sha256"]
        r.leader, r.leader_name = ev["leader"], self.name(ev["leader"])
        r.finalized_block = ev.block_number
        if a is None:
            self._fail(r, "finalization", "global model",
                       f"finalized under epoch {ev['epoch']} attempt {ev['attempt']}, which was never elected",
                       ev["cid"], ev["sha256"])
            return
        a.outcome = "finalized"
        same = (a.leader == ev["leader"] and a.published_cid == ev["cid"] and a.published_sha256 == ev["sha256"]
                and _rule(ev["ruleId"]) == t.rule_id)
        if not r.check("events.finalized", same, f"the aggregate {a.leader_name} published in attempt {a.attempt}"):
            self._fail(r, "finalization", "global model",
                       f"the finalized model ({ev['cid']}, {ev['sha256'][:16]}) is not what the leader "
                       f"{a.leader_name} published in attempt {a.attempt} "
                       f"({a.published_cid}, {(a.published_sha256 or '-')[:16]})", ev["cid"], ev["sha256"])
        if ev["parent"] != r.parent_sha256:
            self._fail(r, "parent_link", "global model",
                       f"the event names parent {ev['parent'][:16]}, the round's parent is {r.parent_sha256[:16]}",
                       ev["cid"], ev["sha256"])
        k = len(a.verifiers)
        agrees = {x["verifier"] for x in a.attestations if x["agree"]}
        need = min(t.quorum, k)
        if k == 0:
            r.check("events.quorum", True, "no verifiers: finalized on publication (the leader was trusted)")
        elif not r.check("events.quorum", len(agrees) >= need, f"{len(agrees)} of {k} verifiers agreed, quorum {need}"):
            self._fail(r, "quorum", "global model",
                       f"finalized with {len(agrees)} agreeing verifiers of {k}; the quorum is {need}",
                       ev["cid"], ev["sha256"])

    def _on_TaskCompleted(self, ev: Event) -> None:
        t = self.tasks[ev["task"]]
        t.completed = True
        t.final_sha256 = ev["finalSha256"]
        done = t.finalized_rounds
        last = done[-1] if done else None
        ok = (last is not None and ev["rounds"] == last.round == t.max_rounds
              and ev["finalSha256"] == last.global_sha256)
        if not ok:
            t.failures.append(Failure(t.task, 0, "completion", "task completion",
                                      f"TaskCompleted says {ev['rounds']} rounds ending in {ev['finalSha256'][:16]}; "
                                      f"the lineage has {last.round if last else 0} finalized rounds ending in "
                                      f"{(last.global_sha256 if last else '-')[:16]} (max {t.max_rounds})"))


def rebuild_lineage(events: Iterable[Event], task: int | None = None,
                    blockhash: Callable[[int], str] | None = None) -> tuple[list[TaskAudit], dict[str, str]]:
    """The lineage of every task (or one) from the event log alone, with every event-level check
    done. `blockhash(n)` (hex) lets the election seeds be recomputed; without it they are trusted.
    Pure: no network, no files."""
    rb = _Rebuild(task, blockhash)
    rb.feed(events)
    return [rb.tasks[k] for k in sorted(rb.tasks)], rb.members


# --------------------------------------------------------------------------- blob access


def cid_multihash(cid: str) -> bytes | None:
    """The multihash inside a CID (v0 base58btc, or v1 base32/base58btc), or None if unparseable."""
    try:
        if cid.startswith("Qm"):
            return _b58decode(cid)
        if cid[0] in "bB":
            raw = base64.b32decode(cid[1:].upper() + "=" * (-len(cid[1:]) % 8))
        elif cid[0] == "z":
            raw = _b58decode(cid[1:])
        else:
            return None
        pos = 0
        for _ in range(2):  # version, codec (unsigned varints)
            while raw[pos] & 0x80:
                pos += 1
            pos += 1
        return raw[pos:]
    except (ValueError, IndexError):
        return None


def _b58decode(text: str) -> bytes:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = 0
    for ch in text:
        n = n * 58 + alphabet.index(ch)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def flatfs_block_path(repo: Path, cid: str) -> Path | None:
    """Where a flatfs blockstore (js-ipfs and Kubo, next-to-last/2 sharding) keeps a CID's block."""
    mh = cid_multihash(cid)
    if not mh:
        return None
    key = base64.b32encode(mh).decode().rstrip("=")
    return repo / "blocks" / key[-3:-1] / f"{key}.data"


class BlobSource:
    """Where the audit fetches blobs: one IPFS node (live), or the run's repos (run directory)."""

    def prepare(self, cids: list[str], say: Callable[[str], None]) -> None:
        pass

    def client_for(self, cid: str) -> IpfsClient:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LiveIpfs(BlobSource):
    def __init__(self, api_url: str, timeout: float = 30.0):
        self.client = IpfsClient(api_url, timeout=timeout)
        self.url = api_url

    def client_for(self, cid: str) -> IpfsClient:
        return self.client

    def close(self) -> None:
        self.client.close()


FLATFS_SHARDING = "/repo/flatfs/shard/v1/next-to-last/2"


def _is_flatfs(repo: Path) -> bool:
    for name in ("SHARDING", "SHARDING.data"):  # Kubo, js-ipfs
        try:
            return (repo / "blocks" / name).read_text().strip() == FLATFS_SHARDING
        except OSError:
            continue
    return False


class RunIpfs(BlobSource):
    """The IPFS repos of a run directory, served by one throwaway IPFS node.

    Blocks are immutable, content-addressed files in each repo's flatfs blockstore, so the node's
    scratch repo is a copy of one repo with every other repo's blocks hard-linked in (copied across
    file systems): every blob of the run is local to it, one node starts instead of one per
    organisation, and the run directory is never written. A blockstore layout this does not
    recognise falls back to one node per repo, swarm-connected."""

    def __init__(self, run_dir: Path, scratch: Path):
        from .ipfs_daemon import IpfsDaemon

        self._daemon_cls = IpfsDaemon
        self.scratch = scratch
        root = run_dir / "ipfs"
        self.repos = {d.name: d for d in sorted(root.iterdir()) if (d / "config").exists()} if root.is_dir() else {}
        if not self.repos:
            raise AuditError(f"{root} holds no IPFS repo: is {run_dir} a fedledger run directory?")
        self.daemons: dict = {}
        self.clients: dict[str, IpfsClient] = {}

    def prepare(self, cids: list[str], say: Callable[[str], None]) -> None:
        from .ipfs_daemon import connect_all, start_all

        if all(_is_flatfs(repo) for repo in self.repos.values()):
            held = {name: sum(1 for c in cids if (p := flatfs_block_path(repo, c)) is not None and p.exists())
                    for name, repo in self.repos.items()}
            base = max(self.repos, key=lambda n: held[n])  # fewest blocks to link in
            union = self.scratch / "ipfs" / "union"
            _copy_repo(self.repos[base], union)
            linked = sum(_link_blocks(repo, union) for name, repo in self.repos.items() if name != base)
            present = sum(1 for c in cids if (p := flatfs_block_path(union, c)) is not None and p.exists())
            say(f"starting one IPFS node over the blocks of {len(self.repos)} repos ({', '.join(self.repos)}; "
                f"{linked} blocks linked in): {present} of {len(cids)} blobs are there")
            daemons = [self._daemon_cls(union, name="union")]
        else:
            say(f"starting {len(self.repos)} IPFS nodes, one per repo (blockstore layout not flatfs)")
            daemons = []
            for name, repo in self.repos.items():
                _copy_repo(repo, self.scratch / "ipfs" / name)
                daemons.append(self._daemon_cls(self.scratch / "ipfs" / name, name=name))
        start_all(daemons)
        self.daemons = {d.name: d for d in daemons}
        self.clients = {d.name: d.client() for d in daemons}
        if len(daemons) > 1:
            connect_all(daemons)

    def client_for(self, cid: str) -> IpfsClient:
        return next(iter(self.clients.values()))

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        for d in self.daemons.values():
            d.stop()


def _link_blocks(src_repo: Path, dst_repo: Path) -> int:
    """Hard-link (or copy) every block of one flatfs blockstore into another; returns how many were new."""
    added = 0
    for shard in os.scandir(src_repo / "blocks"):
        if not shard.is_dir():
            continue
        target = dst_repo / "blocks" / shard.name
        target.mkdir(exist_ok=True)
        for entry in os.scandir(shard.path):
            dst = target / entry.name
            if not entry.name.endswith(".data") or dst.exists():
                continue
            try:
                os.link(entry.path, dst)
            except OSError:
                shutil.copy2(entry.path, dst)
            added += 1
    return added


_REPO_SKIP = {"repo.lock", "api", "daemon.pid", "daemon.log"}


def _copy_repo(src: Path, dst: Path) -> None:
    """Copy an IPFS repo for a throwaway daemon: blocks are immutable files (hard-linked when the
    file system allows), everything else is copied; fresh ports are picked on start."""

    def copy(s: str, d: str) -> str:
        if f"{os.sep}blocks{os.sep}" in s:
            try:
                os.link(s, d)
                return d
            except OSError:
                pass
        return shutil.copy2(s, d)

    shutil.copytree(src, dst, ignore=lambda _dir, names: [n for n in names if n in _REPO_SKIP], copy_function=copy)
    meta_path = dst / "fedledger-ipfs.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta_path.write_text(json.dumps({"name": meta.get("name", src.name)}) + "\n")


@dataclass
class _Blob:
    cid: str
    sha256: str | None  # None: the model spec, whose only handle on chain is its CID
    path: Path | None = None
    error: StorageError | None = None
    size: int = 0


class _Fetcher:
    def __init__(self, source: BlobSource, scratch: Path, timeout: float, say: Callable[[str], None]):
        self.source = source
        self.dir = scratch / "blobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.say = say
        self.blobs: dict[tuple[str, str | None], _Blob] = {}

    def want(self, cid: str, sha: str | None) -> None:
        self.blobs.setdefault((cid, sha), _Blob(cid, sha))

    def get(self, cid: str, sha: str | None) -> _Blob:
        return self.blobs[(cid, sha)]

    def run(self, max_bytes: Callable[[_Blob], int | None], only: Callable[[_Blob], bool] = lambda b: True) -> None:
        pending = [b for b in self.blobs.values() if b.path is None and b.error is None and only(b)]
        with ThreadPoolExecutor(max_workers=FETCH_WORKERS) as pool:
            list(pool.map(lambda b: self._one(b, max_bytes(b)), pending))

    def _one(self, blob: _Blob, max_bytes: int | None) -> None:
        client = self.source.client_for(blob.cid)
        try:
            if blob.sha256 is None:
                data = client.cat(blob.cid, timeout=self.timeout, max_bytes=max_bytes)
                if blob.cid.startswith("bafkrei") and raw_cid(data) != blob.cid:
                    raise IntegrityError(f"content of {blob.cid} does not hash to its CID")
                path = self.dir / f"cid-{blob.cid}"
                path.write_bytes(data)
                blob.size = len(data)
            else:
                path = self.dir / f"{blob.sha256}-{blob.cid}"
                client.cat_to_file(blob.cid, path, expected_sha256=blob.sha256, max_bytes=max_bytes,
                                   timeout=self.timeout)
                blob.size = path.stat().st_size
            blob.path = path
        except StorageError as exc:
            blob.error = exc

    @property
    def fetched_bytes(self) -> int:
        return sum(b.size for b in self.blobs.values())


# --------------------------------------------------------------------------- verification


def _storage_failure(task: int, rnd: int, subject: str, blob: _Blob, recorded: str | None) -> Failure:
    exc = blob.error
    if isinstance(exc, IntegrityError):
        return Failure(task, rnd, "hash_mismatch", subject,
                       f"the bytes behind {blob.cid} have sha256 {exc.actual}, the chain recorded {exc.expected}",
                       blob.cid, recorded)
    if isinstance(exc, (IpfsTimeout, IpfsUnavailable)):
        return Failure(task, rnd, "unavailable", subject,
                       f"{blob.cid} could not be fetched: {exc}", blob.cid, recorded)
    return Failure(task, rnd, "invalid_model", subject, f"{blob.cid}: {exc}", blob.cid, recorded)


def _load_spec(t: TaskAudit, fetcher: _Fetcher) -> None:
    from .modelfile import ModelSpec

    blob = fetcher.get(t.model_spec_cid, None)
    if blob.error is not None:
        f = _storage_failure(t.task, 0, "model spec", blob, None)
        t.failures.append(f)
        return
    try:
        t.spec = ModelSpec.from_json(blob.path.read_bytes())
    except ValueError as exc:
        t.failures.append(Failure(t.task, 0, "invalid_model", "model spec", f"{t.model_spec_cid}: {exc}",
                                  t.model_spec_cid))


def _verify_genesis(t: TaskAudit, fetcher: _Fetcher) -> None:
    from .modelfile import ModelRejected, read_model

    blob = fetcher.get(t.genesis_cid, t.genesis_sha256)
    if blob.error is not None:
        t.failures.append(_storage_failure(t.task, 0, "genesis model", blob, t.genesis_sha256))
        t.genesis_status = "failed"
        return
    if t.spec is None:
        return
    try:
        _, meta = read_model(blob.path, t.genesis_sha256, t.spec)
    except ModelRejected as exc:
        t.failures.append(Failure(t.task, 0, "invalid_model", "genesis model", str(exc), t.genesis_cid,
                                  t.genesis_sha256))
        t.genesis_status = "failed"
        return
    if meta.get("kind") != "genesis":
        t.failures.append(Failure(t.task, 0, "metadata", "genesis model",
                                  f"its metadata says kind {meta.get('kind')!r}, not 'genesis'", t.genesis_cid,
                                  t.genesis_sha256))
        t.genesis_status = "failed"
        return
    t.genesis_status = "verified"


def _verify_round(t: TaskAudit, r: RoundAudit, fetcher: _Fetcher, scratch: Path) -> None:
    from fedledger.aggregation.registry import aggregates_match, get_rule

    from .modelfile import ModelRejected, read_model
    from .recompute import NoValidUpdate, build_aggregate

    if not r.finalized:
        return
    subject = f"global model (leader {r.leader_name})"
    spec = t.spec
    # Updates: fetched and hash-checked; the deterministic exclusions happen in build_aggregate.
    for u in r.updates:
        blob = fetcher.get(u.cid, u.sha256)
        if blob.error is not None and isinstance(blob.error, (IpfsTimeout, IpfsUnavailable)):
            u.status, u.reason = "unavailable", str(blob.error)
            r.failures.append(Failure(t.task, r.round, "unavailable", f"update of {u.name}",
                                      f"{u.cid} (sha256 {u.sha256[:16]}, {u.num_samples} samples) could not be "
                                      f"fetched within {fetcher.timeout:g} s: no reachable node has it, so not every "
                                      f"input the chain lists for this round can be checked", u.cid, u.sha256))
    # The global model: hash, then parse, then metadata, then recomputation.
    gblob = fetcher.get(r.global_cid, r.global_sha256)
    theirs = None
    if gblob.error is not None:
        r.failures.append(_storage_failure(t.task, r.round, subject, gblob, r.global_sha256))
    elif spec is not None:
        try:
            theirs, meta = read_model(gblob.path, r.global_sha256, spec)
        except ModelRejected as exc:
            r.failures.append(Failure(t.task, r.round, "invalid_model", subject, str(exc), r.global_cid,
                                      r.global_sha256))
        else:
            r.check("global.sha256", True, "the bytes are the ones the chain recorded")
            _check_global_meta(t, r, meta, subject)
    if spec is None:
        r.notes.append("not recomputed: the task's model spec is unusable")
        return

    blobs = {u.sha256: fetcher.get(u.cid, u.sha256) for u in r.updates}

    def fetch(upd: UpdateRecord) -> Path:
        blob = blobs[upd.sha256]
        if blob.error is not None:
            raise blob.error
        return blob.path

    try:
        rule = get_rule(t.rule_id)
        result = build_aggregate(task=t.task, rnd=r.round, parent_sha=r.parent_sha256, rule_id=t.rule_id,
                                 rule_params=t.rule_params, spec=spec, updates=[u.record for u in r.updates],
                                 fetch=fetch, out=scratch / "recomputed" / f"task{t.task}-round{r.round}.safetensors")
    except NoValidUpdate as exc:
        for u in r.updates:
            why = dict((x.sha256, w) for x, w in exc.excluded).get(u.sha256)
            if u.status != "unavailable":
                u.status, u.reason = "excluded", why or ""
        r.failures.append(Failure(t.task, r.round, "aggregate_mismatch", subject,
                                  f"no update of the round is valid, so no aggregate can be its child: {exc}",
                                  r.global_cid, r.global_sha256))
        return
    except Exception as exc:  # an AggregationError (e.g. too few updates for krum's f), an unknown rule
        r.failures.append(Failure(t.task, r.round, "aggregate_mismatch", subject,
                                  f"the task's rule {t.rule_id!r} cannot aggregate the round's valid updates: {exc}",
                                  r.global_cid, r.global_sha256))
        return
    why = {u.sha256: reason for u, reason in result.excluded}
    for u in r.updates:
        if u.sha256 in why and u.status != "unavailable":
            u.status, u.reason = "excluded", why[u.sha256]
        elif u.sha256 not in why:
            u.status = "included"
    r.recomputed_sha256 = result.sha256
    missing = [u for u in r.updates if u.status == "unavailable"]
    if theirs is None and result.sha256 == r.global_sha256:
        r.notes.append("the recomputed aggregate has the sha256 the chain recorded: the leader published the right "
                       "hash with the CID of other bytes")
    if theirs is not None:
        if result.sha256 == r.global_sha256:
            agree, reason = True, "bit-identical"
        else:
            ours, _ = read_model(result.path, result.sha256, spec)
            agree, reason = aggregates_match(t.rule_id, t.rule_params, ours, theirs)
            if rule.exact and agree:  # same tensors, other bytes: the file's metadata or layout differs
                if any(f.kind in ("parent_link", "metadata") for f in r.failures):
                    reason = "tensors bit-identical; only the metadata differs (reported above)"
                else:
                    agree, reason = False, "same tensors and metadata, but not the canonical bytes of the model format"
        r.match = reason
        if missing and agree:
            r.notes.append(f"the global model equals the aggregate of the other {len(result.included)} updates: "
                           f"the leader did not have the unavailable one{'s' if len(missing) > 1 else ''} either")
        left_out = _leave_one_out(t, r, result, fetch, scratch) if rule.exact and not agree else None
        witnesses = _witnessed_by_verifiers(t, r) if left_out is not None else []
        if witnesses:
            # Peers exclude an update they cannot fetch in time ("unavailable"); the chain does not record
            # exclusions. The leader and a quorum of verifiers all computed this model without it: that is
            # the protocol's exclusion, witnessed on chain, not a leader's choice. Shown, not failed.
            left_out.status, left_out.reason = "excluded", "unavailable_at_aggregation"
            r.recomputed_sha256 = r.global_sha256
            agree = True
            reason = (f"bit-identical without {left_out.name}'s update, which the leader and verifier"
                      f"{'s' if len(witnesses) > 1 else ''} {', '.join(witnesses)} all left out (unavailable to "
                      f"them at aggregation time)")
            r.match = reason
            r.notes.append(f"{left_out.name}'s update {left_out.cid} is available now but was not aggregated: " + reason)
        if not r.check("global.recomputed", agree, reason):
            hint = (f"; the published model equals the aggregate without the update of {left_out.name} (left out "
                    f"by the leader)") if left_out is not None else ""
            r.failures.append(Failure(t.task, r.round, "aggregate_mismatch", subject,
                                      f"recomputing {t.rule_id} over the {len(result.included)} valid updates gives "
                                      f"{result.sha256[:16]}, not the published {r.global_sha256[:16]}: {reason}{hint}",
                                      r.global_cid, r.global_sha256))
        _review_attempts(t, r, result, fetch, scratch, rule.exact, r.global_sha256 if agree else result.sha256)


def _check_global_meta(t: TaskAudit, r: RoundAudit, meta: dict[str, str], subject: str) -> None:
    from .recompute import global_meta

    want = global_meta(t.task, r.round, r.parent_sha256, t.rule_id)
    if meta.get("parent") != want["parent"]:
        r.failures.append(Failure(t.task, r.round, "parent_link", subject,
                                  f"the model file says its parent is {meta.get('parent', '-')[:16]}, the chain says "
                                  f"{want['parent'][:16]} "
                                  f"({'genesis' if r.round == 1 else f'the global model of round {r.round - 1}'})",
                                  r.global_cid, r.global_sha256))
    wrong = [f"{k} {meta.get(k)!r} (chain: {v!r})" for k, v in want.items() if k != "parent" and meta.get(k) != v]
    if wrong:
        r.failures.append(Failure(t.task, r.round, "metadata", subject,
                                  "the model file's metadata says " + ", ".join(wrong), r.global_cid, r.global_sha256))
    r.check("global.metadata", meta.get("parent") == want["parent"] and not wrong,
            f"kind global, round {r.round}, parent {r.parent_sha256[:12]}, rule {t.rule_id}")


def _aggregate_of(t: TaskAudit, r: RoundAudit, updates: list[UpdateRecord], fetch, scratch: Path, tag: str):
    from .recompute import build_aggregate

    return build_aggregate(task=t.task, rnd=r.round, parent_sha=r.parent_sha256, rule_id=t.rule_id,
                           rule_params=t.rule_params, spec=t.spec, updates=updates, fetch=fetch,
                           out=scratch / "recomputed" / f"task{t.task}-round{r.round}-{tag}.safetensors")


def _leave_one_out(t: TaskAudit, r: RoundAudit, result, fetch, scratch: Path) -> UpdateAudit | None:
    """The single update whose absence makes the recomputation match the global model, if any."""
    if not 1 < len(result.included) <= LEAVE_ONE_OUT_MAX:
        return None
    for i, u in enumerate(result.included):
        rest = result.included[:i] + result.included[i + 1:]
        try:
            if _aggregate_of(t, r, rest, fetch, scratch, f"without-{i}").sha256 == r.global_sha256:
                return next(x for x in r.updates if x.sha256 == u.sha256)
        except Exception:
            continue
    return None


def _witnessed_by_verifiers(t: TaskAudit, r: RoundAudit) -> list[str]:
    """The verifiers of the finalizing attempt that computed exactly the published model themselves
    (a quorum of them, or none are returned)."""
    fin = next((a for a in r.attempts if a.outcome == "finalized"), None)
    if fin is None or not fin.verifiers:
        return []
    same = [x["name"] for x in fin.attestations if x["agree"] and x["computed_sha256"] == r.global_sha256]
    return same if len(same) >= min(t.quorum, len(fin.verifiers)) else []


def _review_attempts(t: TaskAudit, r: RoundAudit, result, fetch, scratch: Path, exact: bool, final: str) -> None:
    """Notes (not failures): were failed attempts rightly rejected, did each verifier compute what we did."""
    for a in r.attempts:
        if exact:
            for x in a.attestations:
                if a.outcome == "finalized" and x["computed_sha256"] != final:
                    r.notes.append(f"verifier {x['name']} attested {'agree' if x['agree'] else 'disagree'} with its "
                                   f"recomputation {x['computed_sha256'][:12]}, the audit expected {final[:12]}")
        if a.outcome in ("rejected", "unverified") and a.published_sha256 and exact:
            updates = [u.record for u in r.updates if u.epoch <= a.epoch]
            if len(updates) == len(r.updates):
                expected = result.sha256
            else:
                try:
                    expected = _aggregate_of(t, r, updates, fetch, scratch, f"e{a.epoch}a{a.attempt}").sha256
                except Exception:
                    continue
            if expected == a.published_sha256:
                a.note = "the published aggregate equals the audit's recomputation: a correct aggregate was not accepted"
            else:
                a.note = "the published aggregate differs from the audit's recomputation: the rejection was justified"


# --------------------------------------------------------------------------- the audit


def _check_against_state(chain: ChainClient, t: TaskAudit, block: int) -> None:
    """The event log must end where the contract's own state stands at the same block: a chain node or
    RPC provider that truncates or filters eth_getLogs would otherwise leave the last rounds 'open'."""
    try:
        completed, current, global_sha, _ = chain._rpc(
            lambda: chain._need_contract().functions.taskState(t.task).call(block_identifier=block))
    except Exception as exc:  # the contract must answer for a task its events created
        t.failures.append(Failure(t.task, 0, "state_mismatch", "contract state",
                                  f"taskState({t.task}) failed at block {block}: {exc}"))
        return
    global_sha = bytes(global_sha).hex()
    done = t.finalized_rounds
    tip = done[-1].global_sha256 if done else t.genesis_sha256
    last = t.rounds[-1].round if t.rounds else 0
    if (completed, current, global_sha) != (t.completed, last, tip):
        t.failures.append(Failure(
            t.task, 0, "state_mismatch", "contract state",
            f"at block {block} the contract says round {current}{' (completed)' if completed else ''} on global model "
            f"{global_sha[:16]}; the event log ends at round {last}{' (completed)' if t.completed else ''} on "
            f"{tip[:16]}: the event log is incomplete (does the chain node truncate eth_getLogs?)"))


def _resolve_model(tasks: list[TaskAudit], ref: str, members: dict[str, str]) -> dict:
    """Find a model (global, genesis or update) by sha256 (or a unique prefix of 8+ hex digits) or CID."""
    ref_l = ref.lower().removeprefix("0x")
    hits: list[dict] = []

    def match(cid: str | None, sha: str | None) -> bool:
        if cid and ref == cid:
            return True
        return bool(sha) and len(ref_l) >= 8 and sha.startswith(ref_l)

    for t in tasks:
        if match(t.genesis_cid, t.genesis_sha256):
            hits.append({"kind": "genesis", "task": t.task, "round": 0, "cid": t.genesis_cid, "sha256": t.genesis_sha256})
        for r in t.rounds:
            if r.finalized and match(r.global_cid, r.global_sha256):
                hits.append({"kind": "global", "task": t.task, "round": r.round, "cid": r.global_cid,
                             "sha256": r.global_sha256})
            for u in r.updates:
                if match(u.cid, u.sha256):
                    hits.append({"kind": "update", "task": t.task, "round": r.round,
                                 "cid": u.cid, "sha256": u.sha256, "member": u.member,
                                 "name": members.get(u.member, u.member[:10])})
    if not hits:
        raise AuditError(f"no model with sha256 or CID {ref!r} in the lineage of "
                         f"{'any task' if len(tasks) != 1 else f'task {tasks[0].task}'}")
    if len({h["sha256"] for h in hits}) > 1:
        raise AuditError(f"{ref!r} is ambiguous: it matches " + ", ".join(h["sha256"][:16] for h in hits)
                         + "; give more digits or the CID")
    hit = hits[0]
    if len(hits) > 1:
        hit["also"] = [{k: h[k] for k in ("kind", "task", "round")} for h in hits[1:]]
    return hit


def run_audit(chain: ChainClient, source: BlobSource, *, from_block: int = 0, task: int | None = None,
              model: str | None = None, fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
              scratch: Path | None = None, say: Callable[[str], None] | None = None,
              timing: dict[str, float] | None = None) -> AuditResult:
    """Audit the lineage of `task` (default: every task) on `chain`, fetching blobs from `source`.
    With `model`, only that model's task up to its round is audited (its ancestry)."""
    say = say or (lambda _line: None)
    timing = dict(timing or {})
    own_scratch = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="fedledger-audit-")) if own_scratch else Path(scratch)
    try:
        t0 = time.perf_counter()
        # One block fixes what is audited: a live federation may move on while the audit runs.
        head = chain.block_number()
        events = chain.events(from_block=from_block, to_block=head)
        hashes: dict[int, str] = {}

        def blockhash(n: int) -> str:
            if n not in hashes:
                hashes[n] = bytes(chain._rpc(lambda: chain.w3.eth.get_block(n)["hash"])).hex()
            return hashes[n]

        tasks, members = rebuild_lineage(events, task, blockhash)
        if task is not None and not tasks:
            raise AuditError(f"no task {task} on FedLedger {chain.address} (from block {from_block}): "
                             f"see `fedledger status` for the tasks there are")
        for t in tasks:
            _check_against_state(chain, t, head)
        subject = None
        if model is not None:
            subject = _resolve_model(tasks, model, members)
            tasks = [t for t in tasks if t.task == subject["task"]]
            tasks[0].rounds = [r for r in tasks[0].rounds if r.round <= subject["round"]]
            if subject["kind"] == "genesis":
                tasks[0].rounds = []
        timing["events"] = time.perf_counter() - t0
        say(f"{len(events)} events: {len(tasks)} task{'s' if len(tasks) != 1 else ''}, "
            f"{sum(len(t.rounds) for t in tasks)} rounds, {len(members)} members")

        t1 = time.perf_counter()
        fetcher = _Fetcher(source, scratch, fetch_timeout, say)
        for t in tasks:
            fetcher.want(t.model_spec_cid, None)
            fetcher.want(t.genesis_cid, t.genesis_sha256)
            for r in t.finalized_rounds:
                for u in r.updates:
                    fetcher.want(u.cid, u.sha256)
                fetcher.want(r.global_cid, r.global_sha256)
        source.prepare(sorted({b.cid for b in fetcher.blobs.values()}), say)
        if isinstance(source, RunIpfs):
            timing["start_ipfs"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        say(f"fetching {len(fetcher.blobs)} blobs")
        # The model spec first: its size cap bounds every model download after it.
        fetcher.run(lambda b: SPEC_MAX_BYTES, only=lambda b: b.sha256 is None)
        cap: dict[tuple[str, str | None], int | None] = {}
        for t in tasks:
            _load_spec(t, fetcher)
            limit = t.spec.max_bytes if t.spec is not None else None
            keys = ([(t.genesis_cid, t.genesis_sha256)]
                    + [(u.cid, u.sha256) for r in t.finalized_rounds for u in r.updates]
                    + [(r.global_cid, r.global_sha256) for r in t.finalized_rounds])
            for k in keys:
                prev = cap.get(k, 0)
                cap[k] = None if prev is None or limit is None else max(prev, limit)
        fetcher.run(lambda b: cap.get((b.cid, b.sha256)))
        timing["fetch"] = time.perf_counter() - t2

        t3 = time.perf_counter()
        for t in tasks:
            _verify_genesis(t, fetcher)
            for r in t.rounds:
                _verify_round(t, r, fetcher, scratch)
        timing["verify"] = time.perf_counter() - t3
        result = AuditResult(tasks, members, {"rpc_url": chain.rpc_url, "chain_id": chain.chain_id,
                                              "contract": chain.address, "from_block": from_block},
                             {k: round(v, 3) for k, v in timing.items()},
                             {"count": len(fetcher.blobs), "bytes": fetcher.fetched_bytes}, subject)
        if subject is not None:
            result.model = ancestry(result, subject)
        return result
    finally:
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def audit_live(rpc_url: str | None, contract: str | os.PathLike[str] | None, ipfs_url: str, task: int | None = None,
               *, deployment: str | os.PathLike[str] | None = None, from_block: int | None = None, poa: bool = False,
               model: str | None = None, fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
               say: Callable[[str], None] | None = None) -> AuditResult:
    """Audit a live federation: `contract` is the FedLedger address, or a deployment file (also
    accepted as `deployment=`; it gives the chain id, the first block and, if recorded, the RPC URL)."""
    from .chain import ChainClient, ChainError
    from .deploy import Deployment, DeploymentError

    t0 = time.perf_counter()
    if contract is not None and not str(contract).startswith("0x"):
        deployment, contract = contract, None
    try:
        if deployment is not None:
            dep = Deployment.load(Path(deployment))
            chain = dep.client(rpc_url=rpc_url, poa=poa)
            start = dep.block if from_block is None else from_block
        else:
            if not rpc_url or not contract:
                raise AuditError("give --rpc and --contract, or --deployment FILE")
            chain = ChainClient(rpc_url, str(contract), poa=poa)
            start = from_block or 0
        code = chain._rpc(lambda: chain.w3.eth.get_code(chain.address))
        if not code:
            raise AuditError(f"no contract at {chain.address} on {chain.rpc_url}: check --contract / --deployment")
    except (DeploymentError, ChainError, ValueError) as exc:
        raise AuditError(str(exc)) from exc
    source = LiveIpfs(ipfs_url)
    try:
        result = run_audit(chain, source, from_block=start, task=task, model=model, fetch_timeout=fetch_timeout,
                           say=say, timing={"start_chain": time.perf_counter() - t0})
    finally:
        source.close()
    result.source.update(kind="live", ipfs_url=ipfs_url)
    result.timing["total"] = round(time.perf_counter() - t0, 3)
    return result


def audit_run(run_dir: str | os.PathLike[str], task: int | None = None, *, model: str | None = None,
              fetch_timeout: float = DEFAULT_FETCH_TIMEOUT, scratch: str | os.PathLike[str] | None = None,
              say: Callable[[str], None] | None = None) -> AuditResult:
    """Audit a finished run directory: restart its chain (Anvil from OUT/chain/state.json, with the
    recorded chain id, on a fresh port) and the IPFS repos that hold its blobs, audit, stop them.
    Everything runs on scratch copies, so the run directory is left exactly as it was."""
    from .chain import ChainError
    from .deploy import Deployment, DeploymentError
    from .devnet import CHAIN_ID, AnvilNode, DevnetError

    say = say or (lambda _line: None)
    run = Path(run_dir).resolve()
    state = run / "chain" / "state.json"
    if not state.exists():
        raise AuditError(f"{state} not found: --run takes the directory of a finished `fedledger sim` run")
    if not (run / "deployment.json").exists():
        raise AuditError(f"{run / 'deployment.json'} not found: --run takes the directory of a `fedledger sim` run")
    chain_id = CHAIN_ID
    try:
        recorded = json.loads((run / "devnet.json").read_text()).get("anvil") or {}
        chain_id = int(recorded.get("chain_id", chain_id))
    except (OSError, ValueError):
        pass
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="fedledger-audit-", dir=scratch))
    anvil = None
    source = None
    try:
        (work / "chain").mkdir()
        shutil.copy2(state, work / "chain" / "state.json")
        anvil = AnvilNode(run_dir=work, chain_id=chain_id)
        say(f"restarting the chain of {run} (Anvil, chain id {chain_id}, from a copy of its state)")
        anvil.start()
        try:
            dep = Deployment.load(run / "deployment.json")
            chain = dep.client(rpc_url=anvil.rpc_url)
        except (DeploymentError, ChainError) as exc:
            raise AuditError(str(exc)) from exc
        source = RunIpfs(run, work)
        timing = {"start_chain": time.perf_counter() - t0}
        result = run_audit(chain, source, from_block=dep.block, task=task, model=model, fetch_timeout=fetch_timeout,
                           scratch=work, say=say, timing=timing)
        result.source.update(kind="run", run_dir=str(run), rpc_url=None, ipfs_repos=sorted(source.repos),
                             ipfs_nodes_started=len(source.daemons))
    except (DevnetError, StorageError) as exc:  # StorageError: an IPFS repo of the run would not start
        raise AuditError(f"could not restart the run's devnet: {exc}") from exc
    finally:
        t_stop = time.perf_counter()
        if source is not None:
            source.close()
        if anvil is not None:
            anvil.stop()
        shutil.rmtree(work, ignore_errors=True)
    result.timing["stop"] = round(time.perf_counter() - t_stop, 3)
    result.timing["total"] = round(time.perf_counter() - t0, 3)
    return result


# --------------------------------------------------------------------------- ancestry


def ancestry(result: AuditResult, subject: dict) -> dict:
    """Which organisations, with how many samples, in which rounds, contributed to a model."""
    t = result.task(subject["task"])
    last = subject["round"] if subject["kind"] == "global" else subject["round"] - 1
    if subject["kind"] == "genesis":
        last = 0
    chain_rounds = [r for r in t.rounds if r.finalized and r.round <= last]
    rounds = []
    per_org: dict[str, dict] = {}
    for r in chain_rounds:
        contributors = [{"member": u.member, "name": u.name, "num_samples": u.num_samples, "sha256": u.sha256,
                         "cid": u.cid} for u in sorted(r.contributors, key=lambda u: u.name)]
        for c in contributors:
            o = per_org.setdefault(c["member"], {"member": c["member"], "name": c["name"], "rounds": [], "samples": 0})
            o["rounds"].append(r.round)
            o["samples"] += c["num_samples"]
        rounds.append({"round": r.round, "global_sha256": r.global_sha256, "global_cid": r.global_cid,
                       "parent_sha256": r.parent_sha256, "leader": r.leader, "leader_name": r.leader_name,
                       "status": r.status, "contributors": contributors,
                       "excluded": [{"name": u.name, "reason": u.reason, "status": u.status}
                                    for u in r.updates if u.status in ("excluded", "unavailable")]})
    out = dict(subject)
    out.update(genesis_sha256=t.genesis_sha256, genesis_cid=t.genesis_cid, genesis_status=t.genesis_status,
               rounds=rounds, organisations=sorted(per_org.values(), key=lambda o: o["name"]),
               verified=result.ok)
    if subject["kind"] == "update":
        r = t.round(subject["round"])
        u = next(u for u in r.updates if u.sha256 == subject["sha256"])
        out.update(num_samples=u.num_samples, status=u.status, reason=u.reason,
                   included_in=r.global_sha256 if u.status == "included" else None)
    return out


# --------------------------------------------------------------------------- export


def export(result: AuditResult, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write `lineage.json` and a self-contained `lineage.html` (no network) into `out_dir`."""
    from .lineage_html import render

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    json_path = out / "lineage.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    html_path = out / "lineage.html"
    html_path.write_text(render(data))
    return json_path, html_path


# --------------------------------------------------------------------------- printing


def _short(sha: str | None, n: int = 12) -> str:
    return sha[:n] if sha else "-"


def _contributors(r: RoundAudit, names: Callable[[str], str]) -> str:
    inc = r.contributors
    samples = sum(u.num_samples for u in inc)
    listed = " ".join(sorted(u.name for u in inc)) if len(inc) <= 5 else f"{len(inc)} members"
    text = f"{listed} ({samples:,} samples)" if inc else "-"
    others = [u for u in r.updates if u.status in ("excluded", "unavailable")]
    if others:
        text += " + " + ", ".join(f"{u.name} {u.status if u.status == 'unavailable' else u.reason}" for u in others)
    if not r.finalized:
        text = f"{len(r.updates)} submitted"
    return text


def _attempts(r: RoundAudit) -> str:
    failed = [f"{a.leader_name} {a.outcome.replace('_', ' ')}" for a in r.attempts if a.outcome not in ("finalized", "pending")]
    n = len(r.attempts)
    return f"{n}" + (f" ({', '.join(failed)})" if failed else "")


def print_report(result: AuditResult, console=None) -> None:
    """The per-round table, the verdict and the audit time."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 170, highlight=False)
    multi = len(result.tasks) > 1
    table = Table(title_justify="left", title="lineage audit")
    for col in (["task"] if multi else []) + ["round", "leader", "attempts", "contributors", "global model", "verified"]:
        table.add_column(col, overflow="fold")
    for t in result.tasks:
        status = "[green]✓ sha256 matches the chain[/green]" if t.genesis_status == "verified" else (
            "[red]✗ " + escape("; ".join(f.message for f in t.failures if f.kind != "completion")[:160]) + "[/red]"
            if any(f.kind != "completion" for f in t.failures) else "not checked")
        table.add_row(*([str(t.task)] if multi else []), "genesis", "-", "-", f"rule {t.rule_id}",
                      _short(t.genesis_sha256), status)
        for r in t.rounds:
            if r.status == "verified":
                verdict = f"[green]✓ {escape(r.match)}[/green]"
            elif r.status == "open":
                verdict = "[yellow]open (in progress)[/yellow]"
            elif r.status == "failed":
                f = r.failures[0]
                more = f" (+{len(r.failures) - 1} more)" if len(r.failures) > 1 else ""
                verdict = f"[red]✗ {escape(f'{f.kind}: {f.subject}: {f.message}')}{more}[/red]"
            else:
                verdict = "not checked"
            table.add_row(*([str(t.task)] if multi else []), str(r.round), escape(r.leader_name or "-"),
                          escape(_attempts(r)), escape(_contributors(r, result.name)), _short(r.global_sha256), verdict)
    console.print(table)
    for r in result.rounds:
        for note in r.notes:
            console.print(f"[dim]note: task {r.task} round {r.round}: {escape(note)}[/dim]", soft_wrap=True)
    if result.model:
        print_ancestry(result.model, console)
    first = result.first_failure
    if first is None:
        for t in result.tasks:
            done = t.finalized_rounds
            tip = f"{done[-1].global_sha256[:16]}" if done else t.genesis_sha256[:16]
            console.print(f"[green]lineage verified[/green]: task {t.task}, {len(done)} round"
                          f"{'s' if len(done) != 1 else ''}, from {tip} back to genesis {t.genesis_sha256[:16]}"
                          + (" (task completed)" if t.completed else ""), soft_wrap=True)
    else:
        console.print(f"[red]lineage broken[/red]: {len(result.failures)} failed check"
                      f"{'s' if len(result.failures) != 1 else ''}; first broken link: {escape(str(first))}", soft_wrap=True)
    tm = result.timing
    parts = [f"{k.replace('_', ' ')} {tm[k]:.2f} s" for k in ("start_chain", "start_ipfs", "events", "fetch", "verify",
                                                               "stop") if k in tm]
    console.print(f"audit time {tm.get('total', 0):.2f} s ({', '.join(parts)}; "
                  f"{result.blobs.get('count', 0)} blobs, {result.blobs.get('bytes', 0) / 1e6:.2f} MB)", soft_wrap=True)


def print_ancestry(model: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    kind = {"global": f"global model of round {model['round']}", "genesis": "genesis model",
            "update": f"update of {model.get('name')} in round {model['round']}"}[model["kind"]]
    console.print(f"\nmodel {model['sha256']} ({escape(kind)} of task {model['task']}, cid {model['cid']})", soft_wrap=True)
    if model["kind"] == "update":
        state = (f"included in the global model {model['included_in'][:16]}" if model.get("included_in")
                 else f"{model.get('status')} {model.get('reason') or ''}".strip())
        console.print(f"  trained on {model['num_samples']} samples from its parent; {escape(state)}", soft_wrap=True)
    console.print(f"  descends from genesis {model['genesis_sha256'][:16]} through {len(model['rounds'])} round"
                  f"{'s' if len(model['rounds']) != 1 else ''}" + ("" if model["verified"] else " (NOT verified: see below)"),
                  soft_wrap=True)
    if model["rounds"]:
        table = Table(title_justify="left")
        for col in ("round", "global model", "leader", "contributors (samples)", "status"):
            table.add_column(col, overflow="fold")
        for r in model["rounds"]:
            table.add_row(str(r["round"]), r["global_sha256"][:12], escape(r["leader_name"] or "-"),
                          escape(", ".join(f"{c['name']} {c['num_samples']}" for c in r["contributors"])), r["status"])
        console.print(table)
        table = Table(title="contributions to this model", title_justify="left")
        for col in ("organisation", "address", "rounds", "samples"):
            table.add_column(col)
        for o in model["organisations"]:
            table.add_row(escape(o["name"]), o["member"], ",".join(map(str, o["rounds"])), f"{o['samples']:,}")
        console.print(table)


# --------------------------------------------------------------------------- CLI


def register(app) -> None:
    """Add the `audit` command to a Typer app."""

    import typer

    @app.command("audit")
    def audit_command(
        run: Optional[Path] = typer.Option(None, "--run", help="A finished run directory: restarts its chain and IPFS repos (from scratch copies) by itself."),
        rpc: Optional[str] = typer.Option(None, "--rpc", help="JSON-RPC URL of a live federation's chain node."),
        contract: Optional[str] = typer.Option(None, "--contract", help="FedLedger address (with --rpc)."),
        deployment: Optional[Path] = typer.Option(None, "--deployment", help="The deployment file instead of --contract (gives the chain id, first block and maybe the RPC URL)."),
        ipfs: Optional[str] = typer.Option(None, "--ipfs", help="IPFS RPC API URL to fetch models through, e.g. http://127.0.0.1:5001."),
        task: Optional[int] = typer.Option(None, "--task", help="Audit only this task (default: every task)."),
        model: Optional[str] = typer.Option(None, "--model", help="Show the ancestry of one model (sha256, 8+ digit prefix, or CID) and audit only it."),
        export_dir: Optional[Path] = typer.Option(None, "--export", help="Write lineage.json and a self-contained lineage.html into this directory."),
        fetch_timeout: float = typer.Option(DEFAULT_FETCH_TIMEOUT, "--fetch-timeout", min=0.1, help="Seconds allowed to fetch each blob before it counts as unavailable."),
        from_block: Optional[int] = typer.Option(None, "--from-block", help="First block to read events from (default: the deployment block, or 0)."),
        poa: bool = typer.Option(False, "--poa", help="The chain is proof-of-authority (Besu QBFT, Clique)."),
        as_json: bool = typer.Option(False, "--json", help="Print the lineage JSON instead of the table."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
    ) -> None:
        """Verify model lineage from contract events alone: every update and global model fetched and
        checked against its on-chain sha256, every parent link back to genesis, every aggregate
        recomputed with the task's rule. Exit 0 when everything verifies, 1 naming the first broken
        link, 3 when the audit could not run."""
        from rich.console import Console
        from rich.markup import escape

        err = Console(stderr=True, highlight=False)
        started = time.perf_counter()

        def say(line: str) -> None:
            if not quiet:
                err.print(f"[dim]{time.perf_counter() - started:6.1f}s[/dim] {escape(line)}", soft_wrap=True)

        live = any(x is not None for x in (rpc, contract, deployment, ipfs))
        if run is not None and live:
            err.print("[red]error:[/red] give either --run DIR or --rpc/--contract/--deployment/--ipfs, not both")
            raise typer.Exit(EXIT_USAGE)
        if run is None and (ipfs is None or (contract is None and deployment is None)):
            err.print("[red]error:[/red] give --run DIR, or --rpc URL --contract ADDR --ipfs URL "
                      "(or --deployment FILE instead of --contract)")
            raise typer.Exit(EXIT_USAGE)
        try:
            if run is not None:
                result = audit_run(run, task, model=model, fetch_timeout=fetch_timeout, say=say)
            else:
                result = audit_live(rpc, contract, ipfs, task, deployment=deployment, from_block=from_block, poa=poa,
                                    model=model, fetch_timeout=fetch_timeout, say=say)
        except AuditError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_CANNOT_AUDIT)
        if export_dir is not None:
            json_path, html_path = export(result, export_dir)
            say(f"wrote {json_path} and {html_path}")
        if as_json:
            print(json.dumps(result.to_json(), indent=2))
        else:
            print_report(result)
        raise typer.Exit(EXIT_VERIFIED if result.ok else EXIT_BROKEN)
