"""The aggregate of a round as the leader, every verifier and the auditor compute it.

One function, so the three can never drift apart: take the round's updates as the chain lists
them (UpdateSubmitted events, every epoch), obtain each one's bytes, exclude the unusable ones by
the same deterministic rule (the content decides, through the stable `reason_code` of
`StorageError`/`ModelRejected`), aggregate the rest with the task's rule in canonical hash order,
and write the global model with its fixed metadata. How the bytes are obtained is the caller's
business (`fetch`): a peer downloads into its work directory, the auditor hands over files it
already fetched and checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedledger.aggregation.fedcurv import FEDCURV_PREFIX, sum_fedcurv_terms
from fedledger.aggregation import AggregationError
from fedledger.aggregation.registry import aggregate, bound

from ..errors import StorageError
from ..protocol.meta import global_meta, update_meta
from ..storage.ipfs import IpfsTimeout
from ..storage.modelfile import ModelSpec, open_model, write_model_file


@dataclass(frozen=True)
class UpdateRecord:
    """An update as the chain records it (one UpdateSubmitted event)."""

    member: str
    cid: str
    sha256: str
    num_samples: int


@dataclass
class AggregateResult:
    path: Path
    sha256: str
    included: list[UpdateRecord]
    excluded: list[tuple[UpdateRecord, str]]  # (update, reason code)
    seconds: dict[str, float] = field(default_factory=dict)
    clipped: list[UpdateRecord] = field(default_factory=list)  # scaled back onto the task's norm bound


class NoValidUpdate(RuntimeError):
    """Every update of the round was excluded: there is nothing to aggregate."""

    def __init__(self, rnd: int, excluded: list[tuple[UpdateRecord, str]], why: str | None = None):
        self.round = rnd
        self.excluded = excluded
        reasons = ", ".join(f"{u.member[:10]}: {why}" for u, why in excluded) or "no update was submitted"
        super().__init__(f"round {rnd}: {why}" if why else f"round {rnd}: no valid update to aggregate ({reasons})")


class _Part:
    """A layer-by-layer view of an update restricted to some of its tensors."""

    def __init__(self, source, names: list[str]):
        self._source, self._names = source, names

    def keys(self) -> list[str]:
        return list(self._names)

    def get_tensor(self, name: str):
        return self._source.get_tensor(name)


def aggregate_with_fedcurv(rule_id: str, rule_params: bytes, sources: Sequence, readers: Sequence,
                           hashes: Sequence[str], weights: Sequence[float], seed: bytes | None = None) -> dict:
    """The task's rule over the model tensors of `sources` (the bounded updates); for FedCurv tasks,
    whose updates also carry `fedcurv.*` Fisher terms, those terms are summed over the members
    (Shoham et al. 2019) from the `readers` as submitted, in the same canonical hash order, so
    verifiers reproduce them bit for bit."""
    names = list(readers[0].keys())
    model_names = [n for n in names if not n.startswith(FEDCURV_PREFIX)]
    curv_names = [n for n in names if n.startswith(FEDCURV_PREFIX)]
    tensors = aggregate(rule_id, rule_params, [_Part(r, model_names) for r in sources], weights, hashes, seed=seed)
    if curv_names:
        order = sorted(range(len(readers)), key=lambda i: hashes[i])
        tensors.update(sum_fedcurv_terms([{n: readers[i].get_tensor(n) for n in curv_names} for i in order]))
    return tensors


def _seed_bytes(seed: str | bytes | None) -> bytes | None:
    if seed is None or isinstance(seed, (bytes, bytearray)):
        return None if seed is None else bytes(seed)
    return bytes.fromhex(seed[2:] if seed[:2].lower() == "0x" else seed)


def build_aggregate(
    *,
    task: int,
    rnd: int,
    parent_sha: str,
    rule_id: str,
    rule_params: bytes,
    spec: ModelSpec,
    updates: Sequence[UpdateRecord],
    fetch: Callable[[UpdateRecord], Path],
    out: Path,
    parent: Path | None = None,
    unavailable: Collection[str] = (),
    previous: tuple[Path, str] | None = None,
    seed: str | bytes | None = None,
) -> AggregateResult:
    """Validate, exclude, bound and aggregate `updates`, write the global model to `out`.

    `fetch(update)` returns a local file holding the update's bytes; it may raise `IpfsTimeout`
    (the update is excluded as `unavailable`) or any other `StorageError` (excluded with its
    `reason_code`). The file is then checked against the chain's sha256, the task's model spec and
    the metadata the chain implies. Updates whose sha256 is in `unavailable` (the leader declared
    it could not fetch them in time) are excluded as `unavailable` without being fetched. The
    task's bounds (`fedledger.aggregation.bound`) then cap the weights and bound each update's
    change from the `parent` model file (its sha256 is `parent_sha`): an update beyond the bound is
    clipped onto it or excluded (`norm_exceeded`); with the direction check, an update that points
    away from the round's consensus is excluded (`opposed`), measured against the parent's own step
    from `previous` (the parent's parent model file and its sha256; None in round 1). `seed` is the
    on-chain seed of the epoch being aggregated (hex or 32 bytes), which shuffles the buckets of a
    task with `bucket` > 1. Raises `NoValidUpdate` when nothing is left to
    aggregate, or when the rule cannot aggregate what is left (too few updates for its `f`).
    """
    t0 = time.perf_counter()
    valid: list[UpdateRecord] = []
    excluded: list[tuple[UpdateRecord, str]] = []
    readers = []
    parent_reader = previous_reader = None
    try:
        for upd in updates:
            if upd.sha256 in unavailable:
                excluded.append((upd, "unavailable"))
                continue
            try:
                path = fetch(upd)
                readers.append(open_model(path, upd.sha256, spec,
                                          expected_meta=update_meta(task, rnd, parent_sha, upd.member)))
                valid.append(upd)
            except IpfsTimeout:
                excluded.append((upd, "unavailable"))
            except StorageError as exc:  # IntegrityError, ModelRejected, size limits: a stable code
                excluded.append((upd, exc.reason_code))
        if not valid:
            raise NoValidUpdate(rnd, excluded)
        t1 = time.perf_counter()
        if parent is not None:
            parent_reader = open_model(parent, parent_sha, spec)
        if previous is not None:
            previous_reader = open_model(previous[0], previous[1], spec)
        model_names = [n for n in readers[0].keys() if not n.startswith(FEDCURV_PREFIX)]
        try:
            b = bound(rule_id, rule_params, readers, [u.num_samples for u in valid], [u.sha256 for u in valid],
                      parent=parent_reader, names=model_names, previous=previous_reader)
        except AggregationError as exc:
            raise NoValidUpdate(rnd, excluded, f"the bounds cannot be applied: {exc}") from exc
        out_of_bounds = set(b.excluded) | set(b.opposed)
        excluded += [(valid[i], "opposed" if i in b.opposed else "norm_exceeded") for i in sorted(out_of_bounds)]
        clipped = [valid[i] for i in b.clipped]
        keep = [i for i in range(len(valid)) if i not in out_of_bounds]
        included = [valid[i] for i in keep]
        if not included:
            raise NoValidUpdate(rnd, excluded)
        try:
            tensors = aggregate_with_fedcurv(rule_id, rule_params, b.updates, [readers[i] for i in keep],
                                             b.hashes, b.weights, seed=_seed_bytes(seed))
        except AggregationError as exc:  # e.g. fewer valid updates than krum's f needs: wait for more
            raise NoValidUpdate(rnd, excluded, f"{rule_id} cannot aggregate {len(included)} updates: {exc}") from exc
    finally:
        for r in readers:
            r.close()
        for r in (parent_reader, previous_reader):
            if r is not None:
                r.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sha = write_model_file(out, tensors, global_meta(task, rnd, parent_sha, rule_id))
    t2 = time.perf_counter()
    return AggregateResult(out, sha, included, excluded, {"fetch": t1 - t0, "aggregate": t2 - t1}, clipped)
