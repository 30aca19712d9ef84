"""The peer: one organisation's node, a loop that reads like the round protocol of DESIGN.md.

Each tick: observe the chain (task, round, phase, leader, verifiers), decide the role, act,
record. Roles call the chain client, the IPFS client, the model format and the trainer through
their modules and never reach around them. Whatever can be derived from the chain is derived
from it on every tick, so a node restarted at any point picks up where the protocol stands.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fedledger.aggregation.registry import aggregates_match, tolerance

from .adversary import Adversary, malformed_update
from .chain import ChainClient, ChainError, ContractRevert, Phase
from .ipfs import IpfsClient, StorageError
from .modelfile import ModelSpec, read_model, sha256_bytes, write_model_file
from .recompute import AggregateResult, NoValidUpdate, UpdateRecord, build_aggregate

log = logging.getLogger("fedledger.node")


class Peer:
    """One organisation's participation in one task."""

    def __init__(
        self,
        name: str,
        chain: ChainClient,
        ipfs: IpfsClient,
        task: int,
        work_dir: Path,
        trainer: Any,
        fit_config: Any,
        from_block: int = 0,
        poll_seconds: float = 0.2,
        fetch_timeout: float = 60.0,
        keep_others_updates: bool = False,
        seed: int = 0,
        adversary: Adversary | None = None,
    ):
        self.name = name
        self.chain = chain
        self.ipfs = ipfs
        self.task = task
        self.work_dir = Path(work_dir)
        self.trainer = trainer
        self.fit_config = fit_config
        self.from_block = from_block
        self.poll_seconds = poll_seconds
        self.fetch_timeout = fetch_timeout
        self.keep_others_updates = keep_others_updates
        self.seed = seed
        self.adversary = adversary or Adversary()
        self.me = chain.sender
        self.config = chain.task_config(task)
        self.spec = ModelSpec.from_json(self._fetch_bytes(self.config.model_spec_cid))
        self.metrics_path = self.work_dir / "metrics.jsonl"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._done_steps: set[tuple] = set()

    # ------------------------------------------------------------------ loop

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Play every role this member has until the task completes."""
        log.info("%s joins task %d as %s (rule %s)", self.name, self.task, self.me, self.config.rule_id)
        while not should_stop():
            try:
                if self.tick():
                    log.info("%s: task %d completed", self.name, self.task)
                    return
            except (ChainError, StorageError, OSError) as exc:
                # The chain node or our IPFS node is down or restarting: nothing is lost, the next
                # tick re-derives where the round stands.
                log.warning("%s: %s; retrying", self.name, exc)
                time.sleep(1.0)
            time.sleep(self.poll_seconds)

    def tick(self) -> bool:
        """One pass of observe, decide, act. Returns True once the task has completed."""
        state = self.chain.task_state(self.task)
        if state.completed:
            return True
        rnd = state.current_round
        info = self.chain.round_info(self.task, rnd)
        if info.phase == Phase.SUBMISSION:
            if not self.chain.has_submitted(self.task, rnd, self.me):
                self.submit(rnd, state.global_sha256, state.global_cid)
            self.watch_submission(rnd, info)
        elif info.phase == Phase.AGGREGATION:
            step = ("lead", rnd, info.epoch, info.attempt)
            if info.leader == self.me and step not in self._done_steps:
                self._once(step, lambda: self.lead(rnd, info, state.global_sha256))
            self.watch_deadline(rnd, info)
        elif info.phase == Phase.VERIFICATION:
            step = ("verify", rnd, info.epoch, info.attempt)
            if step not in self._done_steps and self.me in self.chain.verifiers_of(self.task, rnd, info.attempt):
                self._once(step, lambda: self.verify(rnd, info, state.global_sha256))
            self.watch_deadline(rnd, info)
        return False

    # ------------------------------------------------------------- submitter

    def submit(self, rnd: int, parent_sha: str, parent_cid: str) -> None:
        t0 = time.perf_counter()
        parent = self._load_model(parent_cid, parent_sha, self.work_dir / "models" / f"{parent_sha}.safetensors")
        t_fetch = time.perf_counter()
        if rnd > 1 and hasattr(self.trainer, "set_own_fedcurv_terms") and not self.chain.has_submitted(
                self.task, rnd - 1, self.me):
            # FedCurv subtracts this member's own Fisher terms from the global sums: only valid if
            # its previous update is part of the parent model.
            self.trainer.set_own_fedcurv_terms(None)
        result = self.trainer.fit(parent, self._fit_config(rnd))
        t_train = time.perf_counter()
        meta = {"kind": "update", "task": str(self.task), "round": str(rnd), "parent": parent_sha,
                "rule": self.config.rule_id, "member": self.me, "num_samples": str(result.num_samples)}
        path = self.work_dir / "updates" / f"round{rnd}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        weights = result.weights
        if self.adversary.attack:
            weights = self.adversary.poison(parent, weights, seed=self.seed * 7919 + rnd)
        kind = self.adversary.malformed_kind(rnd)
        if kind:
            data = malformed_update(kind, weights, meta, self.spec.max_bytes) if kind != "hash_mismatch" else b""
            if kind == "hash_mismatch":
                write_model_file(path, weights, meta)
                sha = sha256_bytes(b"not these bytes")
            else:
                path.write_bytes(data)
                sha = sha256_bytes(data)
            log.warning("%s round %d: ADVERSARY submits a malformed update (%s)", self.name, rnd, kind)
        else:
            sha = write_model_file(path, weights, meta)
        cid = self.ipfs.add_file(path)
        self.ipfs.pin_add(cid)
        t_upload = time.perf_counter()
        try:
            tx = self.chain.submit_update(self.task, rnd, parent_sha, cid, sha, result.num_samples)
        except ContractRevert as exc:
            if exc.error in {"DuplicateUpdate", "WrongPhase", "WrongRound", "StaleParent", "RoundFull"}:
                log.info("%s round %d: update not taken (%s)", self.name, rnd, exc)
                return
            raise
        t_chain = time.perf_counter()
        evaluation = self.trainer.evaluate(result.weights)  # the honest local model, whatever was sent
        log.info("%s round %d: submitted update %s (sha %s, %d samples, local accuracy %.3f, train %.2fs)",
                 self.name, rnd, cid, sha[:12], result.num_samples, evaluation.accuracy, t_train - t_fetch)
        self._record(round=rnd, event="submitted", cid=cid, sha256=sha, num_samples=result.num_samples,
                     local_accuracy=evaluation.accuracy, local_loss=evaluation.loss, gas_used=tx.gas_used,
                     seconds={"fetch": t_fetch - t0, "train": t_train - t_fetch, "upload": t_upload - t_train,
                              "chain": t_chain - t_upload})

    def _fit_config(self, rnd: int) -> Any:
        cfg = self.fit_config
        # A different, reproducible seed per round and organisation.
        if hasattr(cfg, "seed"):
            from dataclasses import replace

            cfg = replace(cfg, seed=self.seed * 100_003 + rnd)
        return cfg

    # ---------------------------------------------------------------- leader

    def _once(self, step: tuple, act: Callable[[], None]) -> None:
        """Do a leader or verifier step once per attempt; if it fails (chain or IPFS trouble), the
        next tick tries again while the attempt is still open."""
        self._done_steps.add(step)
        try:
            act()
        except Exception:
            self._done_steps.discard(step)
            raise

    def lead(self, rnd: int, info, parent_sha: str) -> None:
        if rnd in self.adversary.hold_before_publish_rounds and info.attempt == 0:
            log.warning("%s round %d: elected leader, stalling before publishing (fault injection)", self.name, rnd)
            self._record(round=rnd, event="stalled", attempt=info.attempt, epoch=info.epoch)
            time.sleep(max(0.0, info.deadline - time.time()) + 5)
            return
        try:
            result = self.compute_aggregate(rnd, parent_sha)
        except NoValidUpdate as exc:
            # Nothing to publish: the attempt times out and the round eventually reopens, keeping
            # every update; valid ones may still arrive.
            log.warning("%s round %d: leader has nothing to publish (%s)", self.name, rnd, exc)
            self._record(round=rnd, event="nothing_to_publish", attempt=info.attempt, epoch=info.epoch,
                         excluded=[{"member": u.member, "sha256": u.sha256, "reason": why} for u, why in exc.excluded])
            return
        if rnd in self.adversary.byzantine_leader_rounds and info.attempt == 0:
            tensors, meta = read_model(result.path, result.sha256, self.spec)
            cheat = {k: (np.asarray(v) + np.asarray(0.05, dtype=v.dtype)).astype(v.dtype) for k, v in tensors.items()}
            result.sha256 = write_model_file(result.path, cheat, meta)
            log.warning("%s round %d: ADVERSARY leader publishes a wrong aggregate", self.name, rnd)
        t0 = time.perf_counter()
        cid = self.ipfs.add_file(result.path)
        self.ipfs.pin_add(cid)
        t1 = time.perf_counter()
        try:
            tx = self.chain.publish_aggregate(self.task, rnd, info.attempt, cid, result.sha256)
        except ContractRevert as exc:
            log.warning("%s round %d: aggregate not published (%s)", self.name, rnd, exc)
            return
        t2 = time.perf_counter()
        log.info("%s round %d: leader (attempt %d) published aggregate %s of %d updates (%d excluded)",
                 self.name, rnd, info.attempt, cid, len(result.included), len(result.excluded))
        self._record(round=rnd, event="published", attempt=info.attempt, epoch=info.epoch, cid=cid,
                     sha256=result.sha256, included=[u.sha256 for u in result.included],
                     excluded=[{"member": u.member, "sha256": u.sha256, "reason": why} for u, why in result.excluded],
                     gas_used=tx.gas_used,
                     seconds={**result.seconds, "upload": t1 - t0, "chain": t2 - t1})

    # -------------------------------------------------------------- verifier

    def verify(self, rnd: int, info, parent_sha: str) -> None:
        t0 = time.perf_counter()
        try:
            mine = self.compute_aggregate(rnd, parent_sha)
        except NoValidUpdate as exc:
            log.warning("%s round %d: verifier finds no valid update (%s)", self.name, rnd, exc)
            self.chain.attest(self.task, rnd, info.attempt, False, "00" * 32)  # nothing recomputed
            return
        if tolerance(self.config.rule_id, self.config.rule_params) is None:
            agree = mine.sha256 == info.aggregate_sha256
            reason = "bit-identical" if agree else f"recomputed sha {mine.sha256[:12]} != published {info.aggregate_sha256[:12]}"
        else:
            try:
                theirs = self._load_model(info.aggregate_cid, info.aggregate_sha256,
                                          self.work_dir / "models" / f"{info.aggregate_sha256}.safetensors")
                ours = read_model(mine.path, mine.sha256, self.spec)[0]
                agree, reason = aggregates_match(self.config.rule_id, self.config.rule_params, ours, theirs)
            except StorageError as exc:
                agree, reason = False, f"published aggregate unusable: {exc}"
        t1 = time.perf_counter()
        try:
            tx = self.chain.attest(self.task, rnd, info.attempt, agree, mine.sha256)
        except ContractRevert as exc:
            log.info("%s round %d: attestation not taken (%s)", self.name, rnd, exc)
            return
        log.info("%s round %d: verifier of attempt %d %s (%s)", self.name, rnd, info.attempt,
                 "agrees" if agree else "DISAGREES", reason)
        self._record(round=rnd, event="attested", attempt=info.attempt, epoch=info.epoch, agree=agree,
                     reason=reason, gas_used=tx.gas_used, included=[u.sha256 for u in mine.included],
                     excluded=[{"member": u.member, "sha256": u.sha256, "reason": why} for u, why in mine.excluded],
                     seconds={**mine.seconds, "verify": t1 - t0, "chain": time.perf_counter() - t1})

    # ------------------------------------------------------- shared by both

    def round_updates(self, rnd: int) -> list[UpdateRecord]:
        """Every update submitted to this round (all epochs: a reopened round keeps its updates)."""
        events = self.chain.events(from_block=self.from_block, names=["UpdateSubmitted"], task=self.task)
        return [UpdateRecord(e["member"], e["cid"], e["sha256"], e["numSamples"]) for e in events
                if e["round"] == rnd]

    def compute_aggregate(self, rnd: int, parent_sha: str) -> AggregateResult:
        """Fetch, check and aggregate every update of the round exactly as every other leader, verifier
        and auditor does (recompute.build_aggregate): the content decides, via ModelRejected codes."""

        def fetch(upd: UpdateRecord) -> Path:
            path = self.work_dir / "updates" / f"r{rnd}-{upd.sha256}.safetensors"
            if not path.exists():
                self.ipfs.cat_to_file(upd.cid, path, expected_sha256=upd.sha256, max_bytes=self.spec.max_bytes,
                                      timeout=self.fetch_timeout)
            return path

        result = build_aggregate(task=self.task, rnd=rnd, parent_sha=parent_sha, rule_id=self.config.rule_id,
                                 rule_params=self.config.rule_params, spec=self.spec, updates=self.round_updates(rnd),
                                 fetch=fetch, out=self.work_dir / "aggregates" / f"round{rnd}.safetensors")
        for upd, why in result.excluded:
            log.warning("%s round %d: excluding update of %s (%s)", self.name, rnd, upd.member, why)
        return result

    # -------------------------------------------------------------- watchdog

    def watch_submission(self, rnd: int, info) -> None:
        cfg = self.config
        ready = info.count >= cfg.max_participants or (time.time() >= info.deadline and info.count >= cfg.min_participants)
        if ready:
            self._race("closeSubmissions", lambda: self.chain.close_submissions(self.task, rnd), rnd)

    def watch_deadline(self, rnd: int, info) -> None:
        if time.time() > info.deadline + 1:
            self._race("timeout", lambda: self.chain.timeout(self.task, rnd), rnd)

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

    def _fetch_bytes(self, cid: str) -> bytes:
        return self.ipfs.cat(cid, timeout=self.fetch_timeout)

    def _load_model(self, cid: str, sha: str, path: Path) -> dict[str, np.ndarray]:
        """A model the chain vouches for: downloaded once, hash checked before it is parsed."""
        if not path.exists():
            self.ipfs.cat_to_file(cid, path, expected_sha256=sha, max_bytes=self.spec.max_bytes,
                                  timeout=self.fetch_timeout)
            self.ipfs.pin_add(cid)
        tensors, _ = read_model(path, sha, self.spec)
        return tensors

    def _record(self, **fields: Any) -> None:
        fields.setdefault("member", self.me)
        fields.setdefault("org", self.name)
        fields["time"] = time.time()
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(fields) + "\n")
