"""The peer: one organisation's node, a loop that reads like the round protocol of DESIGN.md.

Each tick: observe the chain (task, round, phase, leader, verifiers), decide the role, act,
record. Roles call the chain client, the IPFS client, the model format and the trainer through
their modules and never reach around them. Whatever can be derived from the chain is derived
from it on every tick, so a node restarted at any point picks up where the protocol stands.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from fedledger.aggregation.registry import aggregates_match, tolerance

from .adversary import Adversary, malformed_update
from .chain import ChainClient, ChainError, ContractRevert, HeadWatcher, Phase
from .ipfs import GatewayClient, IpfsClient, StorageError
from .modelfile import ModelSpec, read_model, sha256_bytes, write_model_file
from .recompute import AggregateResult, NoValidUpdate, UpdateRecord, build_aggregate

log = logging.getLogger("fedledger.node")

#: Models up to this size are prefetched by every member as soon as each update is announced
#: (n^2 transfers per round, off the critical path); larger ones only by the round's leader and
#: verifiers, from the election on. Off by default: with ten organisations on two cores the n^2
#: js-ipfs transfers cost more CPU than they saved (rounds of 4.6-7.0 s against 2.2-3.1 s without);
#: on separate machines with small models a few MB is worth trying.
PREFETCH_MAX_BYTES = 0

#: Refusals after which retrying the same publish or attestation can never succeed.
FINAL_REFUSALS = {"WrongPhase", "WrongRound", "WrongAttempt", "TooLate", "AlreadyAttested", "NotLeader",
                  "NotVerifier", "NotMember", "UnknownTask", "RoundNotStored", "TaskAlreadyCompleted", "InvalidArgument"}


def _link(src: Path, dst: Path) -> None:
    """Make `dst` hold the bytes of `src` (a hard link, else a copy) unless it exists already."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def round_fit_config(cfg: Any, member_seed: int, rnd: int, lr_decay: float = 1.0) -> Any:
    """The local training settings of round `rnd`: a different, reproducible seed per round and
    organisation, and the learning rate decayed to lr x lr_decay^(rnd-1)."""
    if not hasattr(cfg, "seed"):  # a user's own trainer config: passed through
        return cfg
    cfg = replace(cfg, seed=member_seed * 100_003 + rnd)
    return replace(cfg, lr=cfg.lr * lr_decay ** (rnd - 1)) if lr_decay != 1.0 else cfg


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
        poll_seconds: float = 0.05,
        fetch_timeout: float = 60.0,
        keep_others_updates: bool = False,
        seed: int = 0,
        adversary: Adversary | None = None,
        prefetch_max_bytes: int = PREFETCH_MAX_BYTES,
        fetch_workers: int = 8,
        lr_decay: float = 1.0,
        gateways: Mapping[str, str] | None = None,
        heads: HeadWatcher | None = None,
    ):
        self.name = name
        self.chain = chain
        self.heads = heads
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
        self.prefetch_max_bytes = prefetch_max_bytes
        self.lr_decay = lr_decay
        # Downloads run on a small pool, keyed by destination file, so a prefetch started early
        # and the role that needs the file later share one transfer.
        self._pool = ThreadPoolExecutor(max_workers=fetch_workers, thread_name_prefix=f"{name}-fetch")
        self._fetches: dict[Path, Future] = {}
        self._fetch_lock = threading.Lock()
        self._model_bytes: int | None = None  # size of the last global model: decides eager prefetch
        self._scanned_block = -1  # UpdateSubmitted events seen so far (a prefetch hint, never the truth)
        self._seen_updates: dict[int, dict[str, UpdateRecord]] = {}
        self._pruned_below = 1
        # Other members' IPFS gateways (address -> URL): a blob is fetched first from the gateway of
        # the member who stored it, then through our own node and the swarm.
        self.gateways = {a.lower(): url for a, url in (gateways or {}).items()}
        self._gateway = GatewayClient(timeout=fetch_timeout) if self.gateways else None
        self._source_of: dict[str, str] = {}  # cid -> member who stored it, when the chain says so
        self._not_in_own_node: set[str] = set()  # cids fetched from a gateway: our node lacks them
        self.fetch_counts = {"gateway": 0, "swarm": 0, "own": 0, "gateway_failed": 0}

    # ------------------------------------------------------------------ loop

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Play every role this member has until the task completes.

        The chain is watched cheaply: a full tick runs when a new block appears (every transaction
        makes one on a devnet, this node's own included) and at least once a second for the
        deadlines. With a `HeadWatcher` the chain node pushes each block; without one, or while
        its subscription is down, the loop asks for the block number every `poll_seconds`."""
        log.info("%s joins task %d as %s (rule %s)", self.name, self.task, self.me, self.config.rule_id)
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
                            c = self.fetch_counts
                            log.info("%s: task %d completed; fetched %d blobs from gateways and %d through the swarm "
                                     "(%d gateway failures; %d of its own)", self.name, self.task, c["gateway"],
                                     c["swarm"], c["gateway_failed"], c["own"])
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
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self._gateway is not None:
                self._gateway.close()

    def tick(self) -> bool:
        """One pass of observe, decide, act. Returns True once the task has completed."""
        view = self.chain.member_view(self.task, self.me)  # one call: state, round, this member's roles
        state, info = view.state, view.round
        if state.completed:
            return True
        rnd = state.current_round
        self.prune(rnd)
        if info.phase == Phase.SUBMISSION:
            if not view.submitted:
                self.submit(rnd, state.global_sha256, state.global_cid)
            self.prefetch_updates(rnd, needed=False)
            self.watch_submission(rnd, info)
        elif info.phase == Phase.AGGREGATION:
            # The leader and the verifiers of this attempt all need every update: the verifiers
            # start fetching now, while the leader aggregates.
            self.prefetch_updates(rnd, needed=info.leader == self.me or view.verifier)
            step = ("lead", rnd, info.epoch, info.attempt)
            if info.leader == self.me and step not in self._done_steps:
                self._once(step, lambda: self.lead(rnd, info, state.global_sha256))
            self.watch_deadline(rnd, info)
        elif info.phase == Phase.VERIFICATION:
            step = ("verify", rnd, info.epoch, info.attempt)
            if step not in self._done_steps and view.verifier:
                self._once(step, lambda: self.verify(rnd, info, state.global_sha256))
            # Everyone will train on this aggregate if it finalizes: fetch it while it is verified (a
            # verifier that recomputed it bit for bit has it already).
            self._download(info.aggregate_cid, info.aggregate_sha256, self._model_path(info.aggregate_sha256),
                           source=info.leader)
            self.watch_deadline(rnd, info)
        return False

    # ------------------------------------------------------------- submitter

    def submit(self, rnd: int, parent_sha: str, parent_cid: str) -> None:
        t0 = time.perf_counter()
        path = self._model_path(parent_sha)
        source = None
        if rnd > 1 and not path.exists() and parent_cid not in self._source_of:
            # The round went by too fast to prefetch its aggregate: it is in its leader's node.
            source = self.chain.round_info(self.task, rnd - 1).leader
        parent = self._load_model(parent_cid, parent_sha, path, source=source)
        t_fetch = time.perf_counter()
        if (rnd > 1 and getattr(self.fit_config, "fedcurv_lambda", 0) > 0 and hasattr(self.trainer, "set_own_fedcurv_terms")
                and not self.chain.has_submitted(self.task, rnd - 1, self.me)):
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
            _link(path, self._update_path(rnd, sha))  # where the round's updates are looked for
        cid = self.ipfs.add_file(path)  # stored and pinned by our own node
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
        return round_fit_config(self.fit_config, self.seed, rnd, self.lr_decay)

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
        cid = self.ipfs.add_file(result.path)  # stored and pinned by our own node
        t1 = time.perf_counter()
        try:
            tx = self.chain.publish_aggregate(self.task, rnd, info.attempt, cid, result.sha256)
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
            if agree:  # the same bytes as the leader's: no need to download them
                _link(mine.path, self._model_path(mine.sha256))
                with self._fetch_lock:
                    self._source_of[info.aggregate_cid] = (info.leader or "").lower()
                    self._not_in_own_node.add(info.aggregate_cid)  # pinning it means adding it
        else:
            try:
                theirs = self._load_model(info.aggregate_cid, info.aggregate_sha256,
                                          self._model_path(info.aggregate_sha256), pin=False)
                ours = read_model(mine.path, mine.sha256, self.spec)[0]
                agree, reason = aggregates_match(self.config.rule_id, self.config.rule_params, ours, theirs)
            except StorageError as exc:
                agree, reason = False, f"published aggregate unusable: {exc}"
        t1 = time.perf_counter()
        try:
            tx = self.chain.attest(self.task, rnd, info.attempt, agree, mine.sha256)
        except ContractRevert as exc:
            if exc.error not in FINAL_REFUSALS:
                raise  # e.g. out of gas twice: the next tick attests again while the attempt is open
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
        events = self.chain.events(from_block=self.from_block, names=["UpdateSubmitted"], task=self.task, round_=rnd)
        return [UpdateRecord(e["member"], e["cid"], e["sha256"], e["numSamples"]) for e in events]

    def compute_aggregate(self, rnd: int, parent_sha: str) -> AggregateResult:
        """Fetch, check and aggregate every update of the round exactly as every other leader, verifier
        and auditor does (recompute.build_aggregate): the content decides, via ModelRejected codes.

        The list of updates is read afresh from the chain (never from the prefetch cache); every
        download starts at once on the fetch pool, and one already under way is joined."""
        updates = self.round_updates(rnd)
        pending = {u.sha256: self._download(u.cid, u.sha256, self._update_path(rnd, u.sha256), source=u.member)
                   for u in updates}

        def fetch(upd: UpdateRecord) -> Path:
            return pending[upd.sha256].result()

        result = build_aggregate(task=self.task, rnd=rnd, parent_sha=parent_sha, rule_id=self.config.rule_id,
                                 rule_params=self.config.rule_params, spec=self.spec, updates=updates,
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

    def _load_model(self, cid: str, sha: str, path: Path, pin: bool = True,
                    source: str | None = None) -> dict[str, np.ndarray]:
        """A model the chain vouches for: downloaded once (or joined if a prefetch is under way),
        hash checked before it is parsed, and pinned once it is a parent we build on."""
        self._download(cid, sha, path, source=source).result()
        if pin:
            self._keep(cid, path)
        self._model_bytes = path.stat().st_size
        tensors, _ = read_model(path, sha, self.spec)
        return tensors

    # ------------------------------------------------------------- downloads

    def _model_path(self, sha: str) -> Path:
        return self.work_dir / "models" / f"{sha}.safetensors"

    def _update_path(self, rnd: int, sha: str) -> Path:
        return self.work_dir / "updates" / f"r{rnd}-{sha}.safetensors"

    def _keep(self, cid: str, path: Path) -> None:
        """Pin a model we build on in our own node. One fetched from a gateway is added from the
        verified local file (the same bytes give the same CID, without a network transfer)."""
        if cid in self._not_in_own_node and self.ipfs.add_file(path) == cid:
            self._not_in_own_node.discard(cid)
            return
        self.ipfs.pin_add(cid, timeout=self.fetch_timeout)

    def _download(self, cid: str, sha: str, path: Path, source: str | None = None) -> Future:
        """A future for `path` holding the blob `cid` with sha256 `sha`: done at once if the file
        is there, the transfer under way if one is, else a new one on the fetch pool (a failed
        transfer is tried afresh). `source` is the member who stored the blob, if known: its
        gateway is tried first. Errors (`StorageError`) surface from `.result()`."""
        with self._fetch_lock:
            if source:
                self._source_of[cid] = source.lower()
            fut = self._fetches.get(path)
            if fut is not None and (not fut.done() or fut.exception() is None):
                return fut
            if path.exists():
                fut = Future()
                fut.set_result(path)
                return fut
            fut = self._pool.submit(self._fetch_to, cid, sha, path, self._source_of.get(cid))
            self._fetches[path] = fut
            for done in [p for p, f in self._fetches.items() if f.done() and p != path]:
                del self._fetches[done]
            return fut

    def _fetch_to(self, cid: str, sha: str, path: Path, source: str | None = None) -> Path:
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        gateway = self.gateways.get(source or "") if source != self.me.lower() else None
        if gateway and self._gateway is not None:
            try:
                self._gateway.fetch_to_file(gateway, cid, path, expected_sha256=sha, max_bytes=self.spec.max_bytes,
                                            timeout=min(self.fetch_timeout, 10.0 + self.spec.max_bytes / 1e6))
                self._not_in_own_node.add(cid)
                self._count("gateway")
                return path
            except StorageError as exc:
                self._count("gateway_failed")
                # Down, slow or lying: the swarm has the final word (the size and hash checks are the same).
                log.info("%s: gateway of %s failed for %s (%s); fetching through the swarm", self.name,
                         source, cid, exc)
        self.ipfs.cat_to_file(cid, path, expected_sha256=sha, max_bytes=self.spec.max_bytes,
                              timeout=self.fetch_timeout)
        self._count("own" if source == self.me.lower() else "swarm")
        return path

    def _count(self, how: str) -> None:
        with self._fetch_lock:
            self.fetch_counts[how] += 1

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
                self._download(upd.cid, upd.sha256, self._update_path(rnd, upd.sha256), source=upd.member)

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
        with self._fetch_lock:  # fetch bookkeeping of older rounds: keep the newest entries only
            for cid in list(self._source_of)[:-256]:
                del self._source_of[cid]
            self._not_in_own_node &= set(self._source_of)
        self._pruned_below = rnd - 1

    def _record(self, **fields: Any) -> None:
        fields.setdefault("member", self.me)
        fields.setdefault("org", self.name)
        fields["time"] = time.time()
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(fields) + "\n")
