"""The lineage from the event log alone: every FedLedger event folded into task and round audits,
each checked against what came before it the way the contract should have produced it (parent
links, the inputs digest, the election seed and order, who published, who attested, the quorum,
completion). Pure: no network, no files.

An event-level check is one handler below: `r.check(name, ok, detail)` records it, a `Failure`
with a stable `kind` (docs/audit.md) records what broke.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..chain.client import Event
from ..protocol.digest import initial_digest, next_digest
from ..protocol.election import commitment, derive_seed, election_order, seed_start, verifiers_for, xor_secrets
from ..protocol.inclusion import indices
from .model import OUTCOMES, AttemptAudit, Failure, RoundAudit, TaskAudit, UpdateAudit


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


class _Rebuild:
    """Folds the event log into TaskAudits, checking each event against what came before."""

    def __init__(self, wanted_task: int | None):
        self.wanted = wanted_task
        self.members: dict[str, str] = {}
        self.active: set[str] = set()
        self.tasks: dict[int, TaskAudit] = {}
        self._state: dict[tuple[int, int], dict] = {}  # (task, round) -> running digest etc.
        self._pending: dict[tuple[int, str], str] = {}  # (task, member) -> the commitment it must open next

    def name(self, address: str) -> str:
        return self.members.get(address, address[:10])

    def feed(self, events: Iterable[Event]) -> None:
        for ev in events:
            if ev.name == "MemberAdded":
                self.members[ev["member"]] = ev["name"]
                self.active.add(ev["member"])
                continue
            if ev.name == "MemberRemoved":
                self.active.discard(ev["member"])
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
        r.opened_block = ev.block_number
        r.members_at_open = [(m, self.name(m)) for m in sorted(self.active, key=self.name)]
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
                                      "participants": [], "order": [], "closed_epochs": set(), "secrets": [],
                                      "start": seed_start(t.task, rnd, parent)}

    def _on_UpdateSubmitted(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        st = self._state[(r.task, r.round)]
        u = UpdateAudit(ev["member"], self.name(ev["member"]), ev["cid"], ev["sha256"], ev["numSamples"],
                        ev["epoch"], ev.block_number, commitment=ev.args.get("commitment", ""))
        for earlier in r.updates:  # a member left out for not revealing may submit again later
            if earlier.member == u.member and earlier.in_round:
                earlier.in_round = False
        r.updates.append(u)
        if ev["parent"] != r.parent_sha256:
            self._fail(r, "parent_link", f"update of {u.name}",
                       f"the event says it was trained from {ev['parent'][:16]}, the round's parent is "
                       f"{r.parent_sha256[:16]}", u.cid, u.sha256)
        if r.finalized:
            self._fail(r, "event_order", f"update of {u.name}", "submitted after the round was finalized",
                       u.cid, u.sha256)
        self._open(r, u.member, ev.args.get("secret", "00" * 32), ev.args.get("commitment", ""), f"update of {u.name}")
        st["digest"] = next_digest(st["digest"], u.member, u.sha256, u.num_samples)
        st["samples"] += u.num_samples
        if u.member in st["participants"]:
            st["participants"].remove(u.member)
        st["participants"].append(u.member)

    def _on_SubmissionsClosed(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        st = self._state[(r.task, r.round)]
        digest = st["digest"].hex()
        close = {"epoch": ev["epoch"], "block": ev.block_number, "participants": ev["participants"],
                 "total_samples": ev["totalSamples"], "inputs_digest": ev["inputsDigest"],
                 "reveal_deadline": ev["revealDeadline"], "seed": None}
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

    def _on_SecretRevealed(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        u = next((x for x in reversed(r.updates) if x.member == ev["member"] and x.in_round), None)
        if u is None:
            self._fail(r, "election", f"reveal of {self.name(ev['member'])}", "the member has no update in the round")
            return
        self._open(r, u.member, ev["secret"], ev["nextCommitment"], f"reveal of {u.name}")

    def _open(self, r: RoundAudit, member: str, secret: str, next_commitment: str, what: str) -> None:
        """A secret opened with an update or a reveal: it must open the member's pending commitment
        (or be zero when it has none) and goes into the round's seed; `next_commitment` is pending now."""
        key = (r.task, member)
        pending = self._pending.get(key)
        if pending is None:
            if int(secret or "0", 16) != 0:
                self._fail(r, "election", what, "opens a secret, but the member has no commitment to open")
        elif commitment(secret, member) != pending:
            self._fail(r, "election", what, "the secret does not open the member's pending commitment")
        elif int(secret, 16) != 0:
            self._state[(r.task, r.round)]["secrets"].append(secret)
        if next_commitment:
            self._pending[key] = next_commitment

    def _on_RevealMissed(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        st = self._state[(r.task, r.round)]
        if ev["member"] in st["participants"]:
            st["participants"].remove(ev["member"])
        for u in r.updates:
            if u.member == ev["member"] and u.in_round:
                u.in_round, u.status, u.reason = False, "left_out", "no_reveal"
        r.notes.append(f"{self.name(ev['member'])} did not reveal its secret in time: its update is left out")

    def _on_SeedDrawn(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        st = self._state[(r.task, r.round)]
        acc = xor_secrets([st["start"], *st["secrets"]])
        seed = derive_seed(acc, r.task, r.round, ev["epoch"])
        if r.closes:
            r.closes[-1]["seed"] = ev["seed"]
        ok = seed == ev["seed"] and ev["participants"] == len(st["participants"])
        if not r.check("events.seed", ok, f"epoch {ev['epoch']}: the seed derives from {len(st['secrets'])} opened "
                                          f"secrets"):
            self._fail(r, "election", "election seed",
                       f"the seed {ev['seed'][:16]} of epoch {ev['epoch']} is not the one the opened secrets give "
                       f"({seed[:16]}), or it was drawn over {ev['participants']} participants, not "
                       f"{len(st['participants'])}")
        st["order"] = election_order(ev["seed"], st["participants"])

    def _on_UpdatesIncluded(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
        a = self._attempt(r, ev["epoch"], ev["attempt"])
        if a is None:
            return
        members = self._state[(r.task, r.round)]["participants"]
        n = len(members)
        a.included = [members[i] for i in indices(bytes.fromhex(ev["included"]), n)]
        a.unavailable = [members[i] for i in indices(bytes.fromhex(ev["unavailable"]), n)]

    def _on_LeaderElected(self, ev: Event) -> None:
        r = self._round(ev)
        if r is None:
            return
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


    def _on_TaskUpdated(self, ev: Event) -> None:
        # A vote changed the participant bounds, windows or round count; the rule and its checks stay.
        self.tasks[ev["task"]].max_rounds = ev["maxRounds"]

    def _on_TaskCancelled(self, ev: Event) -> None:
        t = self.tasks[ev["task"]]
        t.completed, t.cancelled_in, t.final_sha256 = True, ev["round"], ev["finalSha256"]
        done = t.finalized_rounds
        tip = done[-1].global_sha256 if done else t.genesis_sha256
        if ev["finalSha256"] != tip:
            t.failures.append(Failure(t.task, 0, "completion", "task cancellation",
                                      f"TaskCancelled says the last global model is {ev['finalSha256'][:16]}; "
                                      f"the lineage ends in {tip[:16]}"))


def rebuild_lineage(events: Iterable[Event], task: int | None = None) -> tuple[list[TaskAudit], dict[str, str]]:
    """The lineage of every task (or one) from the event log alone, with every event-level check
    done (the election seeds from the revealed secrets included). Pure: no network, no files."""
    rb = _Rebuild(task)
    rb.feed(events)
    return [rb.tasks[k] for k in sorted(rb.tasks)], rb.members
