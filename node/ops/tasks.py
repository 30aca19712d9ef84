"""Tasks as an operator creates and reads them: the genesis model (a workload's initial weights,
or a user's safetensors file, validated), the plan of what the task fixes on chain, creating it
(genesis and model spec to IPFS, then createTask), a task's state and lineage as the chain's
events give them, and any of its global models, hash-checked (`pull_model`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load

from fedledger.aggregation.registry import decode_params, encode_params, get_rule, resolve_rule

from .. import defaults
from ..chain.client import ChainClient
from ..errors import InputError, VerificationFailed
from ..protocol.rules import check_task_config
from ..protocol.types import FailReason, TaskConfig
from ..storage.ipfs import IpfsClient
from ..storage.modelfile import DTYPES, ModelSpec, write_model_file
from ..training.api import tensor_differences
from ..training.privacy import Privacy
from ..training.workloads import resolve_workload
from .access import name_of


def load_genesis_file(path: Path, workload: str | None = None, workload_path: Path | None = None) -> dict[str, Any]:
    """The tensors of a user's safetensors file, validated as a genesis model: readable without
    executing anything, every dtype one the model format supports, every value finite, tensor
    names valid, and (given `workload`, built-in or MODULE:ATTRIBUTE) exactly the names, shapes and
    dtypes that workload's model has, so every member's trainer can load it."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read genesis file {path}: {exc.strerror}") from exc
    try:
        raw = st_load(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise InputError(f"{path} is not a safetensors file numpy can read ({exc}); write it with "
                       "safetensors.torch.save_file / safetensors.numpy.save_file, dtypes float/int (no bfloat16)") from exc
    if not raw:
        raise InputError(f"{path} holds no tensors")
    allowed = {dt.name for dt in DTYPES.values()}
    tensors: dict[str, Any] = {}
    for name in sorted(raw):
        a = raw[name]
        dt = np.dtype(a.dtype).newbyteorder("=")
        if dt.name not in allowed:
            raise InputError(f"{path}: tensor {name!r} has dtype {a.dtype}; the model format takes {', '.join(sorted(allowed))}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(a.size - np.isfinite(a).sum())
            raise InputError(f"{path}: tensor {name!r} holds {bad} NaN/Inf values; a genesis model must be finite")
        tensors[name] = np.ascontiguousarray(a.astype(dt.newbyteorder("<"), copy=False))
    try:
        spec = ModelSpec.from_tensors(tensors)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc
    if workload is not None:
        want = resolve_workload(workload, [workload_path or Path.cwd()]).initial_weights(0)
        problems = tensor_differences(spec.tensors, ModelSpec.from_tensors(want).tensors)
        if problems:
            raise InputError(f"{path} does not fit the {workload} model the members train: " + "; ".join(problems))
    return tensors


def genesis_weights(workload: str | None, seed: int, genesis_file: Path | None,
                    workload_path: Path | None = None) -> dict[str, Any]:
    """The genesis model: a workload's initial weights for `seed` (built-in, or the user's
    MODULE:ATTRIBUTE imported from `workload_path`, default the working directory), or a file."""
    if genesis_file is not None:
        return load_genesis_file(genesis_file, workload, workload_path)
    if workload is None:
        raise InputError("give --workload NAME or MODULE:ATTRIBUTE (its initial model for --seed) or --genesis "
                         "FILE.safetensors")
    tensors = dict(resolve_workload(workload, [workload_path or Path.cwd()]).initial_weights(seed))
    try:
        ModelSpec.from_tensors(tensors)
    except ValueError as exc:
        raise InputError(f"workload {workload!r}: its initial model is not one the model format takes: {exc}") from exc
    return tensors


@dataclass
class TaskPlan:
    """What a task fixes on chain besides its genesis model. `quorum` defaults to `verifiers`."""

    rule: str = defaults.RULE
    rule_params: Mapping[str, Any] | None = None
    min_participants: int = 2
    max_participants: int = 10
    submission_window: int = defaults.SUBMISSION_WINDOW
    aggregation_window: int = defaults.AGGREGATION_WINDOW
    verification_window: int = defaults.VERIFICATION_WINDOW
    verifiers: int = defaults.VERIFIERS
    quorum: int | None = None
    rounds: int = defaults.ROUNDS
    max_samples: int = defaults.MAX_SAMPLES
    reveal_window: int = defaults.REVEAL_WINDOW

    @property
    def effective_quorum(self) -> int:
        """The quorum given, else a majority of the verifiers: no single verifier vetoes or passes."""
        return defaults.majority(self.verifiers) if self.quorum is None else self.quorum

    def check(self) -> None:
        """`InputError` for anything the contract would refuse (protocol.rules mirrors its checks)."""
        check_task_config(min_participants=self.min_participants, max_participants=self.max_participants,
                          submission_window=self.submission_window, aggregation_window=self.aggregation_window,
                          verification_window=self.verification_window, verifiers=self.verifiers,
                          quorum=self.effective_quorum, rounds=self.rounds, max_samples=self.max_samples,
                          reveal_window=self.reveal_window)
        # A differential-privacy promise must protect something, and its budget cover every round.
        Privacy.from_params(get_rule(self.rule).validate(self.rule_params)).check(rounds=self.rounds)


@dataclass
class CreatedTask:
    task: int
    config: TaskConfig
    genesis_path: Path
    spec_path: Path | None
    tx_hash: str
    block: int
    gas_used: int

    def to_dict(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["rule_params"] = self.config.rule_params.decode("ascii", errors="replace")
        return {"task": self.task, "config": cfg, "genesis_file": str(self.genesis_path),
                "model_spec_file": str(self.spec_path) if self.spec_path else None,
                "tx_hash": self.tx_hash, "block": self.block, "gas_used": self.gas_used}


def create_task(admin: ChainClient, ipfs: IpfsClient, genesis: Mapping[str, Any], genesis_path: Path,
                plan: TaskPlan, spec_path: Path | None = None,
                submit: Callable[[TaskConfig], tuple[int, Any]] | None = None) -> CreatedTask:
    """Create a task: write the genesis model file, add it and the ModelSpec JSON to `ipfs`
    (pinned there: the operator's node serves them to every member), then createTask on chain.

    `admin` signs. The genesis file records the task id it is created for (the next free id);
    both files stay on disk as the operator's record of what the task started from. `submit`
    replaces createTask (a consortium governed by vote proposes it: the id is then the proposal's)."""
    plan.check()
    get_rule(plan.rule)  # ValueError naming the known rules
    params = encode_params(plan.rule, dict(plan.rule_params or {}))
    spec = ModelSpec.from_tensors(genesis)
    spec_json = spec.to_json()
    task_guess = admin.task_count()
    genesis_path = Path(genesis_path)
    genesis_path.parent.mkdir(parents=True, exist_ok=True)
    gsha = write_model_file(genesis_path, genesis, {"kind": "genesis", "task": str(task_guess), "round": "0",
                                                    "rule": plan.rule})
    if spec_path is not None:
        Path(spec_path).write_bytes(spec_json)
    spec_cid = ipfs.add_bytes(spec_json)
    gcid = ipfs.add_file(genesis_path)
    for cid in (spec_cid, gcid):
        ipfs.pin_add(cid)
    config = TaskConfig(
        model_spec_cid=spec_cid, genesis_cid=gcid, genesis_sha256=gsha, rule_id=plan.rule, rule_params=params,
        min_participants=plan.min_participants, max_participants=plan.max_participants,
        submission_window=plan.submission_window, aggregation_window=plan.aggregation_window,
        verification_window=plan.verification_window, verifiers_per_round=plan.verifiers,
        quorum=plan.effective_quorum, max_rounds=plan.rounds, max_samples=plan.max_samples,
        reveal_window=plan.reveal_window,
    )
    task_id, tx = (submit or admin.create_task)(config)
    return CreatedTask(task_id, config, genesis_path, Path(spec_path) if spec_path else None, tx.tx_hash,
                       tx.block_number, tx.gas_used)


def task_summary(client: ChainClient, task: int, members: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    cfg, st = client.task_config(task), client.task_state(task)
    out: dict[str, Any] = {"task": task, "rule": cfg.rule_id, "rounds": cfg.max_rounds, "completed": st.completed,
                           "round": st.current_round, "global_sha256": st.global_sha256, "global_cid": st.global_cid}
    if not st.completed:
        info = client.round_info(task, st.current_round)
        out.update(phase=info.phase.name.lower(), updates=info.count, attempt=info.attempt,
                   leader=name_of(members, info.leader) if info.leader else None, deadline=info.deadline)
    return out


def task_lineage(client: ChainClient, task: int, from_block: int,
                 members: Mapping[str, Mapping[str, Any]]) -> tuple[dict | None, list[dict[str, Any]]]:
    """(who created the task, every finalized round with its leader, parent, model and updates),
    read from the chain's event log."""
    events = client.events(from_block=from_block, task=task,
                           names=["TaskCreated", "UpdateSubmitted", "RoundFinalized", "AttemptFailed"])
    updates: dict[int, list[dict[str, Any]]] = {}
    failures: dict[int, list[dict[str, Any]]] = {}
    rounds = []
    created = None
    for ev in events:
        if ev.name == "TaskCreated":
            created = {"creator": ev["creator"], "block": ev.block_number, "tx_hash": ev.tx_hash}
        elif ev.name == "UpdateSubmitted":
            updates.setdefault(ev["round"], []).append(
                {"member": name_of(members, ev["member"]), "address": ev["member"], "cid": ev["cid"],
                 "sha256": ev["sha256"], "num_samples": ev["numSamples"], "parent": ev["parent"]})
        elif ev.name == "AttemptFailed":
            failures.setdefault(ev["round"], []).append(
                {"leader": name_of(members, ev["leader"]), "attempt": ev["attempt"],
                 "reason": _FAILURE_WORDS[FailReason(ev["reason"])]})
        else:
            rounds.append({"round": ev["round"], "leader": name_of(members, ev["leader"]), "attempt": ev["attempt"],
                           "parent": ev["parent"], "cid": ev["cid"], "sha256": ev["sha256"],
                           "block": ev.block_number, "updates": updates.get(ev["round"], []),
                           "failed_attempts": failures.get(ev["round"], [])})
    return created, rounds


#: `task show` names a failed attempt's reason as the contract's enum does.
_FAILURE_WORDS = {FailReason.LEADER_TIMEOUT: "leader_timeout", FailReason.REJECTED: "rejected",
                  FailReason.UNVERIFIED: "unverified", FailReason.DISPUTED: "disputed"}


def pull_model(client: ChainClient, ipfs: IpfsClient, task: int, out: Path, round_: int | None = None,
               from_block: int = 0, timeout: float = 60.0) -> dict[str, Any]:
    """Write the global model of `round_` (default: the latest finalized; 0: the genesis) of `task`
    to `out`, fetched through `ipfs` and checked against the sha256 the chain recorded; nothing is
    written unless it matches."""
    client.require_task(task)
    cfg, st = client.task_config(task), client.task_state(task)
    last = st.current_round if st.completed else st.current_round - 1
    r = last if round_ is None else round_
    if not 0 <= r <= last:
        raise InputError(f"task {task} has finalized rounds 1..{last}; round {r} has no global model (0: genesis)")
    if r == 0:
        cid, sha = cfg.genesis_cid, cfg.genesis_sha256
    else:
        ev = next(e for e in client.events(from_block=from_block, names=["RoundFinalized"], task=task, round_=r))
        cid, sha = ev["cid"], ev["sha256"]
    data = ipfs.cat(cid, timeout=timeout)
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise VerificationFailed(f"{cid} holds bytes with sha256 {got}, the chain recorded {sha} for round {r}; "
                                 "nothing written")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(out)
    return {"task": task, "round": r, "cid": cid, "sha256": sha, "bytes": len(data), "file": str(out)}


def task_config_dict(cfg: TaskConfig) -> dict[str, Any]:
    """A task's configuration as JSON-ready values, its rule parameters decoded."""
    out = asdict(cfg)
    out["rule_params"] = decode_params(cfg.rule_id, cfg.rule_params)
    return out


def parse_rule_params(text: str, option: str = "--rule-params", rule: str | None = None) -> dict[str, Any]:
    """Rule parameters given as JSON on the command line: an object (that `rule` takes, if given),
    or `InputError`."""
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{option} is not valid JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise InputError(f"{option} must be a JSON object, e.g. '{{\"beta\": 0.1}}'")
    if rule is not None:
        try:
            encode_params(rule, params)
        except ValueError as exc:
            raise InputError(f"{option}: {exc}") from exc
    return params


def resolve_rule_option(rule: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """--rule and --rule-params as the task will store them: a preset (`robust`) expanded, the
    explicit parameters over its values, every value checked; `InputError` otherwise."""
    try:
        rule_id, values = resolve_rule(rule, params)
        encode_params(rule_id, values)
    except ValueError as exc:
        raise InputError(f"--rule {rule} --rule-params: {exc}") from exc
    return rule_id, values


def privacy_summary(client: ChainClient, task: int, cfg: TaskConfig, from_block: int,
                    members: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The task's DP promise and what each member has spent: epsilon after every update it released
    (its UpdateSubmitted events), the same accountant the nodes run. None for a task without DP."""
    p = Privacy.from_params(decode_params(cfg.rule_id, cfg.rule_params))
    if not p.active:
        return None
    released: dict[str, int] = {}
    for ev in client.events(from_block=from_block, names=["UpdateSubmitted"], task=task):
        released[ev["member"]] = released.get(ev["member"], 0) + 1
    return {"level": "client" if p.client else "example", "clip": p.clip, "noise_multiplier": p.noise,
            "delta": p.delta, "budget": p.epsilon or None, "sample_rate": p.sample_rate(),
            "steps_per_round": p.steps_per_round(),
            "rounds_within_budget": p.rounds_within(p.epsilon) if p.epsilon else None,
            "members": {name_of(members or {}, m): {"updates": k, "epsilon": round(p.spent(k), 4)}
                        for m, k in released.items()}}


def default_participants(members: int, min_participants: int | None, max_participants: int | None,
                         verifiers: int = defaults.VERIFIERS) -> tuple[int, int]:
    """A task's participant bounds when the operator gives none: every member at most; before a
    round may close at its deadline, half of them (rounded up), and never fewer than the leader and
    its verifiers."""
    max_p = max_participants or max(members, verifiers + 1)
    min_p = min_participants or min(max_p, max(verifiers + 1, (members + 1) // 2))
    return min_p, max_p
