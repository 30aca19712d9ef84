"""The peer: one organisation's node, a loop that reads like the round protocol (README, "The
round, as the contract enforces it").

Each tick: observe the chain (one `memberView` read), decide the steps (`decide.decide`, a pure
function), act, record. Roles call the chain client, the downloads, the model format and the
trainer through their modules and never reach around them; where a member could act otherwise
(attack experiments), the peer asks its injected `Behaviour`. Whatever can be derived from the
chain is derived from it on every tick, so a node restarted at any point picks up where the
protocol stands.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fedledger.aggregation.fedcurv import FEDCURV_PREFIX
from fedledger.aggregation.registry import aggregates_match, decode_params, tolerance

from .. import defaults
from ..chain.client import ChainClient
from ..chain.heads import HeadWatcher
from ..errors import ChainError, ContractRevert, StorageError
from ..protocol.inclusion import bitmaps_for
from ..protocol.types import MemberView, Phase, RoundInfo
from ..storage.ipfs import IpfsClient, IpfsTimeout, raw_cid
from ..storage.modelfile import ModelSpec, read_model
from ..training.config import TrainingConfig
from ..training.privacy import BudgetSpent, Privacy
from .behaviour import Behaviour
from .config import Ipfs, Organisation
from .decide import Step, decide
from .downloads import Downloads, link
from .history import RoundRecord, previous_model, published_inclusion, released_updates, round_record
from .recompute import AggregateResult, NoValidUpdate, UpdateRecord, build_aggregate

log = logging.getLogger("fedledger.node")

#: Refusals after which retrying the same publish or attestation can never succeed.
FINAL_REFUSALS = {"WrongPhase", "WrongRound", "WrongAttempt", "TooLate", "AlreadyAttested", "NotLeader",
                  "NotVerifier", "NotMember", "UnknownTask", "RoundNotStored", "TaskAlreadyCompleted", "InvalidArgument",
                  "AgreementMismatch", "BadInclusion"}
#: Refusals of a submission that mean the update is simply not taken this round.
#: Log lines that say where the task stands: `node run --log FILE` still shows them on the terminal.
PROGRESS = {"progress": True}
SUBMIT_NOT_TAKEN = {"DuplicateUpdate", "WrongPhase", "WrongRound", "StaleParent", "RoundFull"}


class Peer:
    """One organisation's participation in one task.

    `organisation` and `storage` are the node config's [organisation] and [ipfs] sections;
    `training` its [training]; `member_seed` varies local training per member; `behaviour` is
    honest unless an experiment injects another."""

    def __init__(
        self,
        organisation: Organisation,
        chain: ChainClient,
        ipfs: IpfsClient,
        task: int,
        trainer: Any,
        training: TrainingConfig,
        *,
        storage: Ipfs | None = None,
        from_block: int = 0,
        member_seed: int = 0,
        behaviour: Behaviour | None = None,
        heads: HeadWatcher | None = None,
        fetch_timeout: float | None = None,
    ):
        storage = storage or Ipfs(api_url=getattr(ipfs, "api_url", ""))
        self.name = organisation.name
        self.work_dir = Path(organisation.work_dir)
        self.poll_seconds = organisation.poll_seconds
        self.chain = chain
        self.heads = heads
        self.ipfs = ipfs
        self.task = task
        self.trainer = trainer
        self.training = training
        self.from_block = from_block
        self.member_seed = member_seed
        self.behaviour = behaviour or Behaviour()
        self.keep_others_updates = storage.keep_others_updates
        self.prefetch_max_bytes = int(storage.prefetch_max_mb * 2**20)
        self.me = chain.sender
        chain.require_task(task)
        self.config = chain.task_config(task)
        self.privacy = Privacy.from_params(decode_params(self.config.rule_id, self.config.rule_params))
        self._budget_spent = False
        self.fetch_timeout = fetch_timeout if fetch_timeout is not None else defaults.FETCH_TIMEOUT
        self.spec = ModelSpec.from_json(self.ipfs.cat(self.config.model_spec_cid, timeout=self.fetch_timeout))
        self.metrics_path = self.work_dir / "metrics.jsonl"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.downloads = Downloads(self.name, self.me, ipfs, self.spec.max_bytes, fetch_timeout=self.fetch_timeout,
                                   gateways=storage.gateways)
        self._done_steps: set[tuple] = set()
        self._prepared: dict[tuple[int, str], dict[str, Any]] = {}  # (round, parent) -> trained, uploaded update
        self._model_bytes: int | None = None  # size of the last global model: decides eager prefetch
        self._scanned_block = -1  # UpdateSubmitted events seen so far (a prefetch hint, never the truth)
        self._seen_updates: dict[int, dict[str, UpdateRecord]] = {}
        self._pruned_below = 1
        self.training_round = 0
        if heads is not None:
            # Another member's submission changes nothing this member acts on (the one that fills
            # the round also closes it, with events of its own), unless it prefetches updates.
            heads.watch([t for name, t in chain.event_topics.items()
                         if name != "UpdateSubmitted" or self.prefetch_max_bytes > 0])
        self._where: tuple = ()  # (round, phase, epoch, attempt) last logged

    # ------------------------------------------------------------------ loop

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Play every role this member has until the task completes.

        The chain is watched cheaply: a full tick runs when a new block appears (every transaction
        makes one on a devnet, this node's own included) and at least once a second for the
        deadlines. With a `HeadWatcher` the chain node pushes each block; without one, or while
        its subscription is down, the loop asks for the block number every `poll_seconds`."""
        log.info("%s joins task %d as %s (rule %s)", self.name, self.task, self.me, self.config.rule_id, extra=PROGRESS)
        last_block, last_tick = -1, 0.0
        try:
            while not should_stop():
                pushed = self.heads is not None and self.heads.connected
                try:
                    if pushed:
                        self.heads.wait(max(0.0, 1.0 - (time.monotonic() - last_tick)))
                        due = True  # a new block, or a second without one
                    else:
                        block = self.chain.block_number()
                        due = block != last_block or time.monotonic() - last_tick >= 1.0
                        last_block = block
                    if due:
                        last_tick = time.monotonic()
                        if self.tick():
                            c = self.downloads.counts
                            log.info("%s: task %d completed; fetched %d blobs from gateways and %d through the swarm "
                                     "(%d gateway failures; %d of its own)", self.name, self.task, c["gateway"],
                                     c["swarm"], c["gateway_failed"], c["own"], extra=PROGRESS)
                            return
                except (ChainError, StorageError, OSError) as exc:
                    # The chain node or our IPFS node is down or restarting: nothing is lost, the next
                    # tick re-derives where the round stands.
                    log.warning("%s: %s; retrying", self.name, exc)
                    last_block = -1
                    time.sleep(1.0)
                if not pushed:
                    time.sleep(self.poll_seconds)
        finally:
            if self.heads is not None:
                self.heads.close()
            self.downloads.close()

    def tick(self) -> bool:
        """One pass of observe, decide, act. Returns True once the task has completed."""
        view = self.chain.member_view(self.task, self.me)  # one call: state, round, this member's roles
        if view.state.completed:
            return True
        self._progress(view)
        info = view.round
        if info.phase == Phase.SUBMISSION and time.time() >= info.deadline and info.count < self.config.min_participants:
            self.config = self.chain.task_config(self.task)  # a vote may have lowered the minimum (updateTask)
        self.prune(view.state.current_round)
        for step in decide(view, self.me, self.config, time.time(), self._done_steps):
            self.act(step, view.round, view.state.global_sha256, view.state.global_cid)
        return False

    def _progress(self, view: MemberView) -> None:
        """One log line each time the round, its phase or its attempt changes: where the task
        stands and this member's role in it."""
        info = view.round
        where = (view.state.current_round, info.phase, info.epoch, info.attempt)
        if where == self._where:
            return
        self._where = where
        if info.leader and info.leader.lower() == self.me.lower():
            role = "leader"
        elif view.verifier:
            role = "verifier"
        elif view.submitted:
            role = "participant"
        elif info.phase == Phase.SUBMISSION:
            role = "not submitted yet"
        else:
            role = f"not in this round (its submissions have closed); it joins from round {view.state.current_round + 1}"
        attempt = f" (attempt {info.attempt}{f', epoch {info.epoch}' if info.epoch else ''})" if info.leader else ""
        log.info("%s round %d/%d: %s%s, %d updates; this member: %s", self.name, view.state.current_round,
                 self.config.max_rounds, info.phase.name.lower(), attempt, info.count, role, extra=PROGRESS)

    def act(self, step: Step, info: RoundInfo, parent_sha: str, parent_cid: str) -> None:
        """Carry out one step `decide` chose."""
        rnd = step.round
        if step.kind == "submit":
            self.submit(rnd, parent_sha, parent_cid, info.epoch, step.key)
        elif step.kind == "reveal":
            self._once(step.key, lambda: self.reveal(rnd))
        elif step.kind == "close_reveals":
            self._race("closeReveals", lambda: self.chain.close_reveals(self.task, rnd), rnd)
        elif step.kind == "prefetch":
            self.prefetch_updates(rnd, needed=step.needed)
        elif step.kind == "lead":
            self._once(step.key, lambda: self.lead(rnd, info, parent_sha, parent_cid))
        elif step.kind == "verify":
            self._once(step.key, lambda: self.verify(rnd, info, parent_sha, parent_cid))
        elif step.kind == "fetch_aggregate":
            self.downloads.get(info.aggregate_cid, info.aggregate_sha256, self._model_path(info.aggregate_sha256),
                               source=info.leader)
        elif step.kind == "close":
            self._race("closeSubmissions", lambda: self.chain.close_submissions(self.task, rnd), rnd)
        elif step.kind == "timeout":
            self._race("timeout", lambda: self.chain.timeout(self.task, rnd), rnd)
        else:  # pragma: no cover - decide() names no other step
            raise ValueError(f"unknown step {step.kind!r}")

    # ------------------------------------------------------------- submitter

    def submit(self, rnd: int, parent_sha: str, parent_cid: str, epoch: int = 0, key: tuple = ()) -> None:
        """Train on the parent, upload the update and submit it. The trained update is kept until
        the chain takes it, so a chain node that does not answer costs a resend, not a retraining;
        a refusal (any revert but a transient out-of-gas) is final for this epoch."""
        prepared = self._prepared.get((rnd, parent_sha))
        if prepared is None:
            try:
                prepared = self._train_update(rnd, parent_sha, parent_cid)
            except BudgetSpent as exc:
                if not self._budget_spent:
                    log.warning("%s round %d: %s; this member trains no more in this task", self.name, rnd, exc,
                                extra=PROGRESS)
                    self._record(round=rnd, event="budget_spent", reason=str(exc))
                self._budget_spent = True
                self._done_steps.add(key)
                return
            self._prepared[(rnd, parent_sha)] = prepared
            for old in [k for k in self._prepared if k[0] < rnd]:
                del self._prepared[old]
        cid, sha, result, seconds = prepared["cid"], prepared["sha"], prepared["result"], prepared["seconds"]
        claimed = self.behaviour.claimed_samples(result.num_samples)
        t0 = time.perf_counter()
        try:
            tx = self.chain.submit_update(self.task, rnd, parent_sha, cid, sha, claimed, epoch=epoch)
        except ContractRevert as exc:
            if exc.error in ("WrongPhase", "WrongRound", "RoundFull"):
                log.info("%s round %d: closed before this member's update arrived (%s); it joins from round %d",
                         self.name, rnd, "every place was taken" if exc.error == "RoundFull" else
                         "its submission window ended", rnd + 1, extra=PROGRESS)
                return
            if exc.error in SUBMIT_NOT_TAKEN:
                log.info("%s round %d: update not taken (%s)", self.name, rnd, exc)
                return
            if exc.error == "OutOfGas":
                raise
            log.warning("%s round %d: update refused (%s); not sent again this epoch", self.name, rnd, exc)
            self._done_steps.add(key)
            self._record(round=rnd, event="refused", error=exc.error, epoch=epoch)
            return
        seconds["chain"] = time.perf_counter() - t0
        evaluation = self.trainer.evaluate(result.weights)  # the honest local model, whatever was sent
        log.info("%s round %d: submitted update %s (sha %s, %d samples, local accuracy %.3f, train %.2fs)",
                 self.name, rnd, cid, sha[:12], result.num_samples, evaluation.accuracy, seconds["train"])
        privacy = prepared.get("privacy")
        if privacy:
            log.info("%s round %d: %s", self.name, rnd, self.privacy.describe(privacy), extra=PROGRESS)
        self._record(round=rnd, event="submitted", cid=cid, sha256=sha, num_samples=claimed,
                     local_accuracy=evaluation.accuracy, local_loss=evaluation.loss, gas_used=tx.gas_used,
                     seconds=seconds, train_metrics=result.metrics, **({"privacy": privacy} if privacy else {}))

    def _train_update(self, rnd: int, parent_sha: str, parent_cid: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        path = self._model_path(parent_sha)
        source = None
        if rnd > 1 and not path.exists() and not self.downloads.knows_source(parent_cid):
            # The round went by too fast to prefetch its aggregate: it is in its leader's node.
            source = self.chain.round_info(self.task, rnd - 1).leader
        parent = self._load_model(parent_cid, parent_sha, path, source=source)
        t_fetch = time.perf_counter()
        if (rnd > 1 and self.training.fedcurv_lambda > 0 and hasattr(self.trainer, "set_own_fedcurv_terms")
                and not self.chain.has_submitted(self.task, rnd - 1, self.me)):
            # FedCurv subtracts this member's own Fisher terms from the global sums: only valid if
            # its previous update is part of the parent model.
            self.trainer.set_own_fedcurv_terms(None)
        self.training_round = rnd  # what a trainer driven from outside (library/) tells its loop
        cfg = self.training.for_round(self.member_seed, rnd)
        privacy = (self.privacy.next_release(released_updates(self.chain, self.task, self.from_block, self.me))
                   if self.privacy.active else None)
        result = self.trainer.fit(parent, self.privacy.training_config(cfg) if privacy else cfg)
        if privacy:  # client level: the update is clipped and noised as a whole before it leaves
            result = self.privacy.release(parent, result, [k for k in parent if not k.startswith(FEDCURV_PREFIX)])
        t_train = time.perf_counter()
        meta = {"kind": "update", "task": str(self.task), "round": str(rnd), "parent": parent_sha,
                "rule": self.config.rule_id, "member": self.me,
                "num_samples": str(self.behaviour.claimed_samples(result.num_samples))}
        path = self.work_dir / "updates" / f"round{rnd}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        sha = self.behaviour.write_update(path, parent, result.weights, meta, rnd, self.spec.max_bytes)
        link(path, self._update_path(rnd, sha))  # where the round's updates are looked for
        if self.behaviour.withholds(rnd):  # the CID of the bytes, never handed to any IPFS node
            cid = raw_cid(path.read_bytes())
        else:
            cid = self.ipfs.add_file(path)  # stored and pinned by our own node
        t_upload = time.perf_counter()
        return {"cid": cid, "sha": sha, "result": result, "privacy": privacy,
                "seconds": {"fetch": t_fetch - t0, "train": t_train - t_fetch, "upload": t_upload - t_train}}

    def reveal(self, rnd: int) -> None:
        """Reveal the secret this member's update committed to, in a round where nobody had one to
        open at submission: the election needs every participant's (a member that does not
        reveal is left out of the round)."""
        try:
            tx = self.chain.reveal(self.task, rnd)
        except ContractRevert as exc:
            log.info("%s round %d: reveal not taken (%s)", self.name, rnd, exc)
            return
        self._record(round=rnd, event="revealed", gas_used=tx.gas_used)
        for ev in tx.events:
            if ev.name == "LeaderElected":
                log.info("%s round %d: elected leader %s (attempt %d), verifiers %s", self.name, rnd,
                         ev["leader"], ev["attempt"], ", ".join(ev["verifiers"]) or "none")

    # ---------------------------------------------------------------- leader

    def _once(self, step: tuple, act: Callable[[], None]) -> None:
        """Do a leader, verifier or reveal step once per attempt. If the chain or IPFS node is in
        trouble the next tick tries again while the attempt is open; any other error (a bug, or
        input nobody foresaw) is logged with its traceback and the step is not retried: it never
        takes the node down or makes it spin."""
        self._done_steps.add(step)
        try:
            act()
        except (ChainError, StorageError, OSError):
            self._done_steps.discard(step)
            raise
        except Exception as exc:
            log.exception("%s: %s failed (%s); the attempt goes on without this member", self.name, step[0], exc)
            self._record(round=step[1], event="step_failed", step=step[0], error=f"{type(exc).__name__}: {exc}")

    def lead(self, rnd: int, info: RoundInfo, parent_sha: str, parent_cid: str) -> None:
        if not self.behaviour.publishes(rnd, info.attempt, info.deadline):
            self._record(round=rnd, event="stalled", attempt=info.attempt, epoch=info.epoch)
            return
        # Updates not fetched by half the window are declared unavailable: a member that withholds
        # its bytes cannot push this leader past its deadline.
        fetch_deadline = time.time() + max(0.0, info.deadline - time.time()) / 2
        record = self.round_record(rnd)
        try:
            result = self.compute_aggregate(rnd, parent_sha, parent_cid, fetch_deadline=fetch_deadline,
                                            updates=record.updates, seed=info.seed)
        except NoValidUpdate as exc:
            # Nothing to publish: the attempt times out and the round eventually reopens, keeping
            # every update; valid ones may still arrive.
            log.warning("%s round %d: leader has nothing to publish (%s)", self.name, rnd, exc)
            self._record(round=rnd, event="nothing_to_publish", attempt=info.attempt, epoch=info.epoch,
                         excluded=_excluded(exc.excluded))
            return
        self.behaviour.tamper(result, rnd, info.attempt, self.spec)
        unavailable = [u.member for u, why in result.excluded if why == "unavailable"]
        included, withheld = bitmaps_for(record.participants, self.behaviour.included(result, rnd, info.attempt),
                                         unavailable)
        t0 = time.perf_counter()
        cid = self.ipfs.add_file(result.path)  # stored and pinned by our own node
        t1 = time.perf_counter()
        try:
            tx = self.chain.publish_aggregate(self.task, rnd, info.attempt, cid, result.sha256, included, withheld)
        except ContractRevert as exc:
            if exc.error not in FINAL_REFUSALS:
                raise
            log.warning("%s round %d: aggregate not published (%s)", self.name, rnd, exc)
            return
        t2 = time.perf_counter()
        log.info("%s round %d: leader (attempt %d) published aggregate %s of %d updates (%d excluded)",
                 self.name, rnd, info.attempt, cid, len(result.included), len(result.excluded))
        self._record(round=rnd, event="published", attempt=info.attempt, epoch=info.epoch, cid=cid,
                     sha256=result.sha256, included=[u.sha256 for u in result.included],
                     excluded=_excluded(result.excluded), clipped=[u.member for u in result.clipped],
                     gas_used=tx.gas_used,
                     seconds={**result.seconds, "upload": t1 - t0, "chain": t2 - t1})

    # -------------------------------------------------------------- verifier

    def verify(self, rnd: int, info: RoundInfo, parent_sha: str, parent_cid: str) -> None:
        t0 = time.perf_counter()
        record = self.round_record(rnd)
        published = published_inclusion(record, info)
        if published == "missing":
            raise ChainError(f"the UpdatesIncluded event of round {rnd} attempt {info.attempt} is not visible yet")
        if published is None:
            log.warning("%s round %d: the leader's inclusion bitmaps do not match the chain's hash; disagreeing",
                        self.name, rnd)
            self.chain.attest(self.task, rnd, info.attempt, False, "00" * 32)
            return
        participants, theirs_included, declared_unavailable = published
        by_member = {u.member.lower(): u for u in record.updates}
        unavailable = {by_member[m.lower()].sha256 for m in declared_unavailable if m.lower() in by_member}
        fetch_deadline = time.time() + max(0.0, info.deadline - time.time()) / 2
        try:
            mine = self.compute_aggregate(rnd, parent_sha, parent_cid, unavailable=unavailable,
                                          fetch_deadline=fetch_deadline, updates=record.updates, seed=info.seed)
        except NoValidUpdate as exc:
            log.warning("%s round %d: verifier finds no valid update (%s)", self.name, rnd, exc)
            self.chain.attest(self.task, rnd, info.attempt, False, "00" * 32)  # nothing recomputed
            return
        missing = [u.member for u, why in mine.excluded if why == "unavailable" and u.sha256 not in unavailable]
        if missing:
            # An update the leader used is out of this verifier's reach: it cannot judge the aggregate,
            # and says nothing (silence is not held against the leader).
            log.warning("%s round %d: cannot verify attempt %d: the update of %s is unavailable to it", self.name, rnd,
                        info.attempt, ", ".join(missing))
            self._record(round=rnd, event="abstained", attempt=info.attempt, epoch=info.epoch, unavailable=missing)
            return
        same_set = sorted(m.lower() for m in theirs_included) == sorted(u.member.lower() for u in mine.included)
        if not same_set:
            agree, reason = False, (f"the leader's aggregate includes {len(theirs_included)} updates, the valid ones "
                                    f"are {len(mine.included)}: the included set differs")
        elif tolerance(self.config.rule_id, self.config.rule_params) is None:
            agree = mine.sha256 == info.aggregate_sha256
            reason = "bit-identical" if agree else f"recomputed sha {mine.sha256[:12]} != published {info.aggregate_sha256[:12]}"
            if agree:  # the same bytes as the leader's: no need to download them
                link(mine.path, self._model_path(mine.sha256))
                self.downloads.have_locally(info.aggregate_cid, info.leader)
        else:
            try:
                theirs = self._load_model(info.aggregate_cid, info.aggregate_sha256,
                                          self._model_path(info.aggregate_sha256), pin=False)
                ours = read_model(mine.path, mine.sha256, self.spec)[0]
                agree, reason = aggregates_match(self.config.rule_id, self.config.rule_params, ours, theirs)
            except StorageError as exc:
                agree, reason = False, f"published aggregate unusable: {exc}"
        t1 = time.perf_counter()
        if not self.behaviour.attests(rnd, info.attempt, info.deadline):
            self._record(round=rnd, event="stalled", attempt=info.attempt, epoch=info.epoch)
            return
        try:
            # An agreement names the aggregate it agrees with; a disagreement, what this verifier computed.
            agree = self.behaviour.verdict(agree)
            tx = self.chain.attest(self.task, rnd, info.attempt, agree, info.aggregate_sha256 if agree else mine.sha256)
        except ContractRevert as exc:
            if exc.error not in FINAL_REFUSALS:
                raise  # e.g. out of gas twice: the next tick attests again while the attempt is open
            log.info("%s round %d: attestation not taken (%s)", self.name, rnd, exc)
            return
        log.info("%s round %d: verifier of attempt %d %s (%s)", self.name, rnd, info.attempt,
                 "agrees" if agree else "DISAGREES", reason)
        self._record(round=rnd, event="attested", attempt=info.attempt, epoch=info.epoch, agree=agree,
                     reason=reason, gas_used=tx.gas_used, included=[u.sha256 for u in mine.included],
                     excluded=_excluded(mine.excluded),
                     seconds={**mine.seconds, "verify": t1 - t0, "chain": time.perf_counter() - t1})

    # ------------------------------------------------------- shared by both

    def round_record(self, rnd: int) -> RoundRecord:
        """The round as the chain holds it now (history.round_record)."""
        return round_record(self.chain, self.task, self.from_block, rnd)

    def round_updates(self, rnd: int) -> list[UpdateRecord]:
        """The updates of this round's participants as the chain holds them now (`round_record`)."""
        return self.round_record(rnd).updates

    def compute_aggregate(self, rnd: int, parent_sha: str, parent_cid: str, *, unavailable: frozenset | set = frozenset(),
                          fetch_deadline: float | None = None,
                          updates: list[UpdateRecord] | None = None, seed: str | None = None) -> AggregateResult:
        """Fetch, check and aggregate every update of the round exactly as every other leader, verifier
        and auditor does (recompute.build_aggregate): the content decides, via ModelRejected codes.

        The list of updates is read afresh from the chain (never from the prefetch cache); every
        download starts at once on the fetch pool, and one already under way is joined."""
        if updates is None:
            updates = self.round_updates(rnd)
        parent = self.downloads.get(parent_cid, parent_sha, self._model_path(parent_sha))
        pending = {u.sha256: self.downloads.get(u.cid, u.sha256, self._update_path(rnd, u.sha256), source=u.member)
                   for u in updates if u.sha256 not in unavailable}

        def fetch(upd: UpdateRecord) -> Path:
            wait = None if fetch_deadline is None else max(0.0, fetch_deadline - time.time())
            try:
                return pending[upd.sha256].result(timeout=wait)
            except FutureTimeout:
                raise IpfsTimeout(f"{upd.cid} of {upd.member} did not arrive in time") from None

        previous = self.previous_model(rnd, parent_sha)
        result = build_aggregate(task=self.task, rnd=rnd, parent_sha=parent_sha, rule_id=self.config.rule_id,
                                 rule_params=self.config.rule_params, spec=self.spec, updates=updates,
                                 fetch=fetch, out=self.work_dir / "aggregates" / f"round{rnd}.safetensors",
                                 parent=parent.result(), unavailable=unavailable, previous=previous, seed=seed)
        for upd, why in result.excluded:
            log.warning("%s round %d: excluding update of %s (%s)", self.name, rnd, upd.member, why)
        return result

    def previous_model(self, rnd: int, parent_sha: str) -> tuple[Path, str] | None:
        """The parent's own parent (file, sha256) when the task's rule checks directions (None
        otherwise, and in round 1), hash checked like every model (history.previous_model)."""
        if not decode_params(self.config.rule_id, self.config.rule_params)["direction"]:
            return None
        found = previous_model(self.chain, self.task, self.from_block, self.config, rnd, parent_sha)
        if found is None:
            return None
        cid, sha = found
        return self.downloads.get(cid, sha, self._model_path(sha)).result(), sha

    # -------------------------------------------------------------- watchdog

    def _race(self, what: str, call: Callable[[], Any], rnd: int) -> None:
        """Anyone may call close and timeout; many nodes race, and losing the race is normal."""
        try:
            tx = call()
        except ContractRevert as exc:
            log.debug("%s round %d: %s lost the race (%s)", self.name, rnd, what, exc.error)
            return
        for ev in tx.events:
            if ev.name == "AttemptFailed":
                log.warning("%s round %d: attempt %d of leader %s failed (%s)", self.name, rnd, ev["attempt"],
                            ev["leader"], ["leader timeout", "rejected", "unverified"][ev["reason"]])
            elif ev.name == "LeaderElected":
                log.info("%s round %d: elected leader %s (attempt %d), verifiers %s", self.name, rnd,
                         ev["leader"], ev["attempt"], ", ".join(ev["verifiers"]) or "none")

    # ---------------------------------------------------------------- helpers

    def _load_model(self, cid: str, sha: str, path: Path, pin: bool = True,
                    source: str | None = None) -> dict[str, np.ndarray]:
        """A model the chain vouches for: downloaded once (or joined if a prefetch is under way),
        hash checked before it is parsed, and pinned (in the background) once it is a parent we build on."""
        self.downloads.get(cid, sha, path, source=source).result()
        if pin:
            self.downloads.keep_later(cid, path)
        self._model_bytes = path.stat().st_size
        tensors, _ = read_model(path, sha, self.spec)
        return tensors

    def _model_path(self, sha: str) -> Path:
        return self.work_dir / "models" / f"{sha}.safetensors"

    def _update_path(self, rnd: int, sha: str) -> Path:
        return self.work_dir / "updates" / f"r{rnd}-{sha}.safetensors"

    def prefetch_updates(self, rnd: int, needed: bool) -> None:
        """Start downloading the round's updates as their UpdateSubmitted events appear: always when
        this member leads or verifies (`needed`), and from the submission phase on when models are
        small enough (`prefetch_max_bytes`) that every member holding every update costs little;
        then the round's leader and verifiers find them local when the round closes."""
        if not needed and (self._model_bytes is None or self._model_bytes > self.prefetch_max_bytes):
            return
        latest = self.chain.block_number()
        if latest < self._scanned_block:  # the chain node came back with fewer blocks: rescan
            self._scanned_block, self._seen_updates = -1, {}
        if latest > self._scanned_block:
            start = max(self.from_block, self._scanned_block + 1)
            for e in self.chain.events(from_block=start, to_block=latest, names=["UpdateSubmitted"], task=self.task):
                upd = UpdateRecord(e["member"], e["cid"], e["sha256"], e["numSamples"])
                self._seen_updates.setdefault(e["round"], {})[upd.sha256] = upd
            self._scanned_block = latest
        for upd in self._seen_updates.get(rnd, {}).values():
            if upd.member != self.me:
                self.downloads.get(upd.cid, upd.sha256, self._update_path(rnd, upd.sha256), source=upd.member)

    def prune(self, rnd: int) -> None:
        """Forget other members' update files of rounds before the previous one (the chain and IPFS
        keep them; `keep_others_updates` keeps the local copies too)."""
        if rnd - 1 <= self._pruned_below:
            return
        for r in range(self._pruned_below, rnd - 1):
            self._seen_updates.pop(r, None)
            if not self.keep_others_updates:
                for f in (self.work_dir / "updates").glob(f"r{r}-*.safetensors"):
                    f.unlink(missing_ok=True)
        self.downloads.forget_old()
        self._pruned_below = rnd - 1

    def _record(self, **fields: Any) -> None:
        fields.setdefault("member", self.me)
        fields.setdefault("org", self.name)
        fields["time"] = time.time()
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(fields) + "\n")


def _excluded(excluded: list[tuple[UpdateRecord, str]]) -> list[dict[str, str]]:
    return [{"member": u.member, "sha256": u.sha256, "reason": why} for u, why in excluded]
