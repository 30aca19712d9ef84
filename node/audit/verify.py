"""The audit's checks of what the events name: the model spec, the genesis model, and each round's
blobs (fetched, hash-checked, parsed, metadata read) and aggregate (recomputed with the task's rule
by the code leaders and verifiers run, `peer.recompute.build_aggregate`, and compared bit for bit
or within the rule's tolerance). A mismatch is diagnosed: an update left out, a correct aggregate
rejected, a verifier that computed something else.

A blob-level check is a few lines in `verify_round`: `r.check(name, ok, detail)` records it, a
`Failure` with a stable `kind` (docs/audit.md) records what broke.
"""

from __future__ import annotations

from pathlib import Path

from fedledger.aggregation import AggregationError
from fedledger.aggregation.registry import aggregates_match, decode_params, get_rule

from .. import defaults
from ..chain.client import ChainClient
from ..peer.recompute import NoValidUpdate, UpdateRecord, build_aggregate
from ..protocol.meta import global_meta
from ..storage.ipfs import IntegrityError, IpfsTimeout, IpfsUnavailable
from ..storage.modelfile import ModelRejected, ModelSpec, read_model
from .blobs import Blob, Fetcher
from .model import Failure, RoundAudit, TaskAudit, UpdateAudit


def _storage_failure(task: int, rnd: int, subject: str, blob: Blob, recorded: str | None) -> Failure:
    exc = blob.error
    if isinstance(exc, IntegrityError):
        return Failure(task, rnd, "hash_mismatch", subject,
                       f"the bytes behind {blob.cid} have sha256 {exc.actual}, the chain recorded {exc.expected}",
                       blob.cid, recorded)
    if isinstance(exc, (IpfsTimeout, IpfsUnavailable)):
        return Failure(task, rnd, "unavailable", subject,
                       f"{blob.cid} could not be fetched: {exc}", blob.cid, recorded)
    return Failure(task, rnd, "invalid_model", subject, f"{blob.cid}: {exc}", blob.cid, recorded)


def load_spec(t: TaskAudit, fetcher: Fetcher) -> None:
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


def verify_genesis(t: TaskAudit, fetcher: Fetcher) -> None:
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


def verify_round(t: TaskAudit, r: RoundAudit, fetcher: Fetcher, scratch: Path) -> None:
    if not r.finalized:
        return
    subject = f"global model (leader {r.leader_name})"
    spec = t.spec
    # The round's inputs: its participants' updates; those its finalizing leader declared it could
    # not fetch in time are left out by everyone, as the chain records.
    inputs = [u for u in r.updates if u.in_round]
    final = next((a for a in r.attempts if a.outcome == "finalized"), None)
    declared = set(final.unavailable or []) if final is not None else set()
    unavailable = {u.sha256 for u in inputs if u.member in declared}
    for u in inputs:
        if u.member in declared:
            u.status, u.reason = "unavailable", "declared unavailable by the leader"
    # Updates: fetched and hash-checked; the deterministic exclusions happen in build_aggregate.
    for u in inputs:
        if u.member in declared:
            continue
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
    models = (parent_path(t, r, fetcher), previous_path(t, r, fetcher))
    seed = epoch_seed(r, final.epoch if final is not None else r.epoch)

    def fetch(upd: UpdateRecord) -> Path:
        blob = blobs[upd.sha256]
        if blob.error is not None:
            raise blob.error
        return blob.path

    try:
        rule = get_rule(t.rule_id)
        result = build_aggregate(task=t.task, rnd=r.round, parent_sha=r.parent_sha256, rule_id=t.rule_id,
                                 rule_params=t.rule_params, spec=spec, updates=[u.record for u in inputs],
                                 fetch=fetch, out=scratch / "recomputed" / f"task{t.task}-round{r.round}.safetensors",
                                 parent=models[0], previous=models[1], unavailable=unavailable, seed=seed)
    except NoValidUpdate as exc:
        for u in inputs:
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
    for u in inputs:
        if u.sha256 in why and u.status != "unavailable":
            u.status, u.reason = "excluded", why[u.sha256]
        elif u.sha256 not in why:
            u.status = "included"
    r.recomputed_sha256 = result.sha256
    if final is not None and final.included is not None:
        ours = sorted(u.member for u in result.included)
        if not r.check("global.included_set", sorted(final.included) == ours,
                       f"{len(ours)} updates in the aggregate, as its leader published"):
            dropped = [x.name for x in inputs if x.member in set(ours) - set(final.included)]
            extra = [x.name for x in inputs if x.member in set(final.included) - set(ours)]
            r.failures.append(Failure(t.task, r.round, "included_set", subject,
                                      f"the leader says its aggregate is built from {len(final.included)} updates; "
                                      f"the valid ones are {len(ours)}" + (f"; left out: {', '.join(dropped)}" if dropped
                                                                           else "") +
                                      (f"; invalid but included: {', '.join(extra)}" if extra else ""),
                                      r.global_cid, r.global_sha256))
    missing = [u for u in inputs if u.status == "unavailable" and u.member not in declared]
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
        left_out = _leave_one_out(t, r, result, fetch, scratch, models) if rule.exact and not agree else None
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
        _review_attempts(t, r, result, fetch, scratch, rule.exact, r.global_sha256 if agree else result.sha256, models)


def _check_global_meta(t: TaskAudit, r: RoundAudit, meta: dict[str, str], subject: str) -> None:
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


def model_path(t: TaskAudit, sha256: str, fetcher: Fetcher) -> Path | None:
    """The fetched, hash-checked file of genesis or of the finalized global model with this sha256."""
    if sha256 == t.genesis_sha256:
        blob = fetcher.get(t.genesis_cid, t.genesis_sha256)
    else:
        prev = next((x for x in t.rounds if x.finalized and x.global_sha256 == sha256), None)
        if prev is None:
            return None
        blob = fetcher.get(prev.global_cid, prev.global_sha256)
    return blob.path if blob.error is None else None


def parent_path(t: TaskAudit, r: RoundAudit, fetcher: Fetcher) -> Path | None:
    """The fetched, hash-checked file of the round's parent (genesis or the previous global model)."""
    return model_path(t, r.parent_sha256, fetcher)


def previous_path(t: TaskAudit, r: RoundAudit, fetcher: Fetcher) -> tuple[Path, str] | None:
    """The parent's own parent (file, sha256) when the task's rule checks directions (the bounds
    measure the parent's step against it); None in round 1, for other rules, or when unavailable."""
    try:
        if not decode_params(t.rule_id, t.rule_params)["direction"] or r.parent_sha256 == t.genesis_sha256:
            return None
    except AggregationError:
        return None
    prev = next((x for x in t.rounds if x.finalized and x.global_sha256 == r.parent_sha256), None)
    path = None if prev is None else model_path(t, prev.parent_sha256, fetcher)
    return None if path is None else (path, prev.parent_sha256)


def epoch_seed(r: RoundAudit, epoch: int) -> str | None:
    """The on-chain seed of one epoch of the round (what bucketing shuffles with), if it was drawn."""
    return next((c["seed"] for c in r.closes if c["epoch"] == epoch and c["seed"]), None)


def _aggregate_of(t: TaskAudit, r: RoundAudit, updates: list[UpdateRecord], fetch, scratch: Path, tag: str,
                  models: tuple, epoch: int | None = None):
    """The aggregate of some of the round's updates; `models` = (parent file, previous model);
    `epoch` the epoch whose seed shuffles buckets (default: the finalizing attempt's)."""
    if epoch is None:
        final = next((a for a in r.attempts if a.outcome == "finalized"), None)
        epoch = final.epoch if final is not None else r.epoch
    return build_aggregate(task=t.task, rnd=r.round, parent_sha=r.parent_sha256, rule_id=t.rule_id,
                           rule_params=t.rule_params, spec=t.spec, updates=updates, fetch=fetch,
                           out=scratch / "recomputed" / f"task{t.task}-round{r.round}-{tag}.safetensors",
                           parent=models[0], previous=models[1], seed=epoch_seed(r, epoch))


def _leave_one_out(t: TaskAudit, r: RoundAudit, result, fetch, scratch: Path, models: tuple) -> UpdateAudit | None:
    """The single update whose absence makes the recomputation match the global model, if any."""
    if not 1 < len(result.included) <= defaults.LEAVE_ONE_OUT_MAX:
        return None
    for i, u in enumerate(result.included):
        rest = result.included[:i] + result.included[i + 1:]
        try:
            if _aggregate_of(t, r, rest, fetch, scratch, f"without-{i}", models).sha256 == r.global_sha256:
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


def _review_attempts(t: TaskAudit, r: RoundAudit, result, fetch, scratch: Path, exact: bool, final: str,
                     models: tuple) -> None:
    """Notes (not failures): were failed attempts rightly rejected, did each verifier compute what we did."""
    for a in r.attempts:
        if exact:
            for x in a.attestations:
                if a.outcome == "finalized" and x["computed_sha256"] != final:
                    r.notes.append(f"verifier {x['name']} attested {'agree' if x['agree'] else 'disagree'} with its "
                                   f"recomputation {x['computed_sha256'][:12]}, the audit expected {final[:12]}")
        if a.outcome in ("rejected", "unverified", "disputed") and a.published_sha256 and exact:
            updates = [u.record for u in r.updates if u.epoch <= a.epoch]
            if len(updates) == len(r.updates):
                expected = result.sha256
            else:
                try:
                    expected = _aggregate_of(t, r, updates, fetch, scratch, f"e{a.epoch}a{a.attempt}", models,
                                             a.epoch).sha256
                except Exception:
                    continue
            if expected == a.published_sha256:
                a.note = "the published aggregate equals the audit's recomputation: a correct aggregate was not accepted"
            else:
                a.note = "the published aggregate differs from the audit's recomputation: the rejection was justified"


def check_against_state(chain: ChainClient, t: TaskAudit, block: int) -> None:
    """The event log must end where the contract's own state stands at the same block: a chain node or
    RPC provider that truncates or filters eth_getLogs would otherwise leave the last rounds 'open'."""
    try:
        st = chain.task_state(t.task, block=block)
        completed, current, global_sha = st.completed, st.current_round, st.global_sha256
    except Exception as exc:  # the contract must answer for a task its events created
        t.failures.append(Failure(t.task, 0, "state_mismatch", "contract state",
                                  f"taskState({t.task}) failed at block {block}: {exc}"))
        return
    done = t.finalized_rounds
    tip = done[-1].global_sha256 if done else t.genesis_sha256
    last = t.rounds[-1].round if t.rounds else 0
    if (completed, current, global_sha) != (t.completed, last, tip):
        t.failures.append(Failure(
            t.task, 0, "state_mismatch", "contract state",
            f"at block {block} the contract says round {current}{' (completed)' if completed else ''} on global model "
            f"{global_sha[:16]}; the event log ends at round {last}{' (completed)' if t.completed else ''} on "
            f"{tip[:16]}: the event log is incomplete (does the chain node truncate eth_getLogs?)"))
