"""Running an audit: `audit_run(run_dir)` restarts a finished run's chain and IPFS repos from
scratch copies; `audit_live(rpc, contract, ipfs)` reads a live federation; both go through
`run_audit`: events (replay), blobs (blobs), checks and recomputation (verify), the result (model).
The audit is a pure reader: it sends no transaction, and the record it audits stays byte for byte
as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from datetime import datetime, timezone
from collections.abc import Callable
from pathlib import Path

from typing import Any

from eth_account import Account
from eth_utils import keccak

from .. import defaults
from ..chain.client import ChainClient
from ..chain.deployment import Deployment
from ..chain.devnet import CHAIN_ID, DEV_KEYS, AnvilNode
from ..errors import AnchorMismatch, AuditError, InputError, ChainError, DeploymentError, DevnetError, StorageError
from .blobs import BlobSource, Fetcher, LiveIpfs, RunIpfs
from .model import AuditResult, TaskAudit
from .render import ancestry
from .replay import rebuild_lineage
from .verify import check_against_state, load_spec, verify_genesis, verify_round

#: The model spec's size cap: fetched before any model, it bounds every model download after it.
SPEC_MAX_BYTES = 1 << 20


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


def parse_anchor(text: str) -> tuple[int, str]:
    """`BLOCK:HASH` (a block number and its 0x-prefixed 32-byte hash), or `AuditError`."""
    block, sep, block_hash = text.partition(":")
    if not sep or not block.isdigit() or not re.fullmatch(r"0x[0-9a-fA-F]{64}", block_hash):
        raise InputError(f"--anchor {text!r} must be BLOCK:HASH, e.g. 1234:0x{'ab' * 32}")
    return int(block), block_hash.lower()


def trust_anchor(chain: ChainClient, head: int) -> dict[str, Any]:
    """What this audit trusted: the chain (its id and genesis block), the contract (address and
    code hash) and the head block it read up to. Another auditor with the same anchor audited the
    same record."""
    w3 = chain.w3
    try:
        genesis, top = w3.eth.get_block(0), w3.eth.get_block(head)
        code = bytes(w3.eth.get_code(chain.address))
    except Exception as exc:  # web3 raises many kinds for a chain node that fails
        raise AuditError(f"the chain node at {chain.rpc_url} did not give its blocks: {exc}") from exc
    return {"chain_id": chain.chain_id, "genesis_block_hash": "0x" + bytes(genesis["hash"]).hex(),
            "contract": chain.address, "code_keccak": "0x" + keccak(code).hex(), "head_block": head,
            "head_block_hash": "0x" + bytes(top["hash"]).hex()}


def check_anchor(chain: ChainClient, anchor: tuple[int, str], head: int) -> None:
    """`AnchorMismatch` (exit 5) unless block `anchor[0]` of the chain under audit has hash `anchor[1]`."""
    block, want = anchor
    if block > head:
        raise AnchorMismatch(f"the chain under audit does not contain the anchor {block}:{want}: it ends at block "
                             f"{head} (another chain, or a rebuilt one)")
    try:
        got = "0x" + bytes(chain.w3.eth.get_block(block)["hash"]).hex()
    except Exception as exc:
        raise AuditError(f"the chain node at {chain.rpc_url} did not give block {block}: {exc}") from exc
    if got != want:
        raise AnchorMismatch(f"the chain under audit does not contain the anchor {block}:{want}: its block {block} "
                             f"is {got} (another chain, or a rebuilt one)")


def devnet_key_warning(chain: ChainClient, members: dict[str, str]) -> str | None:
    """A warning when the contract's admin or a member is a public devnet account: anyone holds those
    keys, so anyone can rebuild a chain that tells the same story under other names."""
    public = {Account.from_key(k).address: i for i, k in enumerate(DEV_KEYS)}
    admin = chain.admin()
    named = [f"the admin {admin} (dev account {public[admin]})"] if admin in public else []
    named += [f"{name} {addr} (dev account {public[addr]})" for addr, name in members.items() if addr in public]
    if not named:
        return None
    return (f"this chain uses the public devnet keys ({', '.join(named[:3])}{', ...' if len(named) > 3 else ''}): "
            "anyone can rebuild a chain with the same contract address, genesis and models; audit it against a "
            "block hash from a member's own chain node (--anchor BLOCK:HASH)")


def run_audit(chain: ChainClient, source: BlobSource, *, from_block: int = 0, task: int | None = None,
              model: str | None = None, fetch_timeout: float = defaults.FETCH_TIMEOUT,
              scratch: Path | None = None, say: Callable[[str], None] | None = None,
              timing: dict[str, float] | None = None, anchor: tuple[int, str] | None = None) -> AuditResult:
    """Audit the lineage of `task` (default: every task) on `chain`, fetching blobs from `source`.
    With `model`, only that model's task up to its round is audited (its ancestry). With `anchor`
    (block, hash), the chain must contain that block (`AnchorMismatch` otherwise)."""
    say = say or (lambda _line: None)
    timing = dict(timing or {})
    own_scratch = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="fedledger-audit-")) if own_scratch else Path(scratch)
    try:
        t0 = time.perf_counter()
        # One block fixes what is audited: a live federation may move on while the audit runs.
        head = chain.block_number()
        if from_block > head:
            raise ChainError(f"the events start at block {from_block} (the deployment file's, or --from-block) but "
                             f"the chain at {chain.rpc_url} ends at block {head}: the file does not belong to this "
                             "chain, or was altered")
        if anchor is not None:
            check_anchor(chain, anchor, head)
        trusted = trust_anchor(chain, head)
        events = chain.events(from_block=from_block, to_block=head)
        tasks, members = rebuild_lineage(events, task)
        warnings = [w for w in (devnet_key_warning(chain, members),) if w]
        for w in warnings:
            say(f"warning: {w}")
        if task is not None and not tasks:
            raise AuditError(f"no task {task} on FedLedger {chain.address} (from block {from_block}): "
                             f"see `fedledger status` for the tasks there are")
        for t in tasks:
            check_against_state(chain, t, head)
        _stamp_rounds(chain, tasks)
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
        fetcher = Fetcher(source, scratch, fetch_timeout, say)
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
            load_spec(t, fetcher)
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
            verify_genesis(t, fetcher)
            for r in t.rounds:
                verify_round(t, r, fetcher, scratch)
        timing["verify"] = time.perf_counter() - t3
        result = AuditResult(tasks, members, {"rpc_url": chain.rpc_url, "chain_id": chain.chain_id,
                                              "contract": chain.address, "from_block": from_block,
                                              "anchor": trusted, "anchored_to": list(anchor) if anchor else None,
                                              "warnings": warnings},
                             {k: round(v, 3) for k, v in timing.items()},
                             {"count": len(fetcher.blobs), "bytes": fetcher.fetched_bytes}, subject)
        if subject is not None:
            result.model = ancestry(result, subject)
        return result
    finally:
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _stamp_rounds(chain: ChainClient, tasks: list) -> None:
    """When each round opened and finalized (UTC), from its blocks' timestamps."""
    stamps: dict[int, str] = {}

    def at(block: int | None) -> str | None:
        if block is None:
            return None
        if block not in stamps:
            t = chain.block_timestamp(block)
            stamps[block] = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return stamps[block]

    for t in tasks:
        for r in t.rounds:
            r.opened_at, r.finalized_at = at(r.opened_block), at(r.finalized_block)


def audit_live(rpc_url: str | None, contract: str | os.PathLike[str] | None, ipfs_url: str, task: int | None = None,
               *, deployment: str | os.PathLike[str] | None = None, from_block: int | None = None, poa: bool = False,
               model: str | None = None, fetch_timeout: float = defaults.FETCH_TIMEOUT,
               say: Callable[[str], None] | None = None, anchor: tuple[int, str] | None = None) -> AuditResult:
    """Audit a live federation: `contract` is the FedLedger address, or a deployment file (also
    accepted as `deployment=`; it gives the chain id, the first block and, if recorded, the RPC URL)."""
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
        if not chain.has_code():
            raise AuditError(f"no contract at {chain.address} on {chain.rpc_url}: check --contract / --deployment")
    except (DeploymentError, ChainError, ValueError) as exc:
        raise AuditError(str(exc)) from exc
    source = LiveIpfs(ipfs_url)
    try:
        # Unreachable: exit 3 with one line, before any model is marked as missing for it.
        source.client.id()
    except StorageError:
        source.close()
        raise
    try:
        result = run_audit(chain, source, from_block=start, task=task, model=model, fetch_timeout=fetch_timeout,
                           say=say, timing={"start_chain": time.perf_counter() - t0}, anchor=anchor)
    finally:
        source.close()
    result.source.update(kind="live", ipfs_url=ipfs_url)
    result.timing["total"] = round(time.perf_counter() - t0, 3)
    return result


def audit_run(run_dir: str | os.PathLike[str], task: int | None = None, *, model: str | None = None,
              fetch_timeout: float = defaults.FETCH_TIMEOUT, scratch: str | os.PathLike[str] | None = None,
              say: Callable[[str], None] | None = None, anchor: tuple[int, str] | None = None) -> AuditResult:
    """Audit a finished run directory: restart its chain (Anvil from OUT/chain/state.json, with the
    recorded chain id, on a fresh port) and the IPFS repos that hold its blobs, audit, stop them.
    Everything runs on scratch copies, so the run directory is left exactly as it was."""
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
                           scratch=work, say=say, timing=timing, anchor=anchor)
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
