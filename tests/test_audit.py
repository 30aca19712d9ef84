"""`fedledger audit`: lineage rebuilt from events alone and verified byte for byte, on real chains and IPFS.

Two kinds of federation are audited. A real simulation (`run_sim`, one per module: its run
directory is audited with `--run`, which restarts its chain and IPFS repos by itself). And small
federations built here directly with the chain and IPFS clients on the session's Anvil and IPFS
node, where the leader of a zero-verifier task can cheat in exactly one way per test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedledger.aggregation.registry import encode_params
from fedledger.node.audit import audit_live, audit_run, rebuild_lineage
from fedledger.node.cli.app import app
from fedledger.node.errors import EXIT_BROKEN
from fedledger.node.protocol import TaskConfig
from fedledger.node.storage.ipfs import IpfsTimeout, raw_cid
from fedledger.node.storage.modelfile import ModelSpec, read_model, write_model, write_model_file
from fedledger.node.peer.recompute import UpdateRecord, build_aggregate
from fedledger.node.sim import SimOptions, run_sim

pytestmark = [pytest.mark.chain, pytest.mark.ipfs]


# --------------------------------------------------------------------------- the CLI


def audit_cli(*args: str):
    return CliRunner().invoke(app, ["audit", *map(str, args)])


# --------------------------------------------------------------------------- a hand-built federation

MEMBERS = (1, 2, 3)  # dev keys; names org1..org3
SAMPLES = {1: 120, 2: 250, 3: 380}


@dataclasses.dataclass
class Federation:
    ledger: object
    ipfs_url: str
    task: int
    globals: list[dict]  # per round: cid, sha256, parent
    updates: list[list[dict]]  # per round: member, name, cid, sha256, num_samples

    def cli_args(self) -> list[str]:
        return ["--rpc", self.ledger.rpc_url, "--contract", self.ledger.address, "--ipfs", self.ipfs_url]


def federate(ledger, ipfs_node, tmp: Path, *, rounds: int = 1, rule: str = "fedavg", cheat=None,
             missing_update_of: int | None = None, verifiers: int = 0, verifiers_side_with_leader: bool = False,
             leave_last_round_open: bool = False) -> Federation:
    """Run `rounds` rounds of a task. Without verifiers the leader's publication finalizes at once.
    `cheat(round, honest_tensors, meta, ipfs, ...) -> (cid, sha256)` replaces the publication of the
    first leader of the last round; honest verifiers reject it and the next leader publishes the honest
    aggregate, unless `verifiers_side_with_leader` (they computed the same, e.g. they lacked the same
    update). `missing_update_of` submits that member's update with a CID no node has;
    `leave_last_round_open` only submits the last round's updates."""
    ipfs = ipfs_node.client()
    # Models unique to this test: identical bytes would share a CID with another test's models.
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(str(tmp).encode()).digest()[:8], "big"))
    genesis = {"dense.weight": rng.normal(size=(6, 4)).astype(np.float32),
               "dense.bias": np.zeros(4, dtype=np.float32)}
    spec = ModelSpec.from_tensors(genesis)
    spec_cid = ipfs.add_bytes(spec.to_json())
    task_id = ledger.admin.task_count()
    gpath = tmp / "genesis.safetensors"
    gsha = write_model_file(gpath, genesis, {"kind": "genesis", "task": str(task_id), "round": "0", "rule": rule})
    gcid = ipfs.add_file(gpath)
    for i in MEMBERS:
        ledger.admin.add_member(ledger.accounts[i].address, f"org{i}")
    task, _ = ledger.admin.create_task(TaskConfig(
        model_spec_cid=spec_cid, genesis_cid=gcid, genesis_sha256=gsha, rule_id=rule,
        rule_params=encode_params(rule, {}), min_participants=len(MEMBERS), max_participants=len(MEMBERS),
        submission_window=3600, aggregation_window=3600, verification_window=3600, verifiers_per_round=verifiers,
        quorum=verifiers, max_rounds=rounds))
    parent, parent_tensors, parent_file = gsha, genesis, gpath
    fed = Federation(ledger, ipfs.api_url, task, [], [])
    for rnd in range(1, rounds + 1):
        files, records, ups = {}, [], []
        for i in MEMBERS:
            member = ledger.accounts[i].address
            weights = {k: (v + rng.normal(scale=0.1, size=v.shape)).astype(np.float32) for k, v in parent_tensors.items()}
            data = write_model(weights, {"kind": "update", "task": str(task), "round": str(rnd), "parent": parent,
                                         "rule": rule, "member": member, "num_samples": str(SAMPLES[i])})
            sha = hashlib.sha256(data).hexdigest()
            path = tmp / f"r{rnd}-{i}.safetensors"
            path.write_bytes(data)
            if i == missing_update_of and rnd == rounds:
                cid = raw_cid(data)  # never added: no node has it
            else:
                cid = ipfs.add_bytes(data)
                files[cid] = path
            last = ledger.client(i).submit_update(task, rnd, parent, cid, sha, SAMPLES[i])
            records.append(UpdateRecord(member, cid, sha, SAMPLES[i]))
            ups.append({"member": member, "name": f"org{i}", "cid": cid, "sha256": sha, "num_samples": SAMPLES[i]})
        fed.updates.append(ups)
        if leave_last_round_open and rnd == rounds:
            break
        # The last update filled the round and closed it and, from round 2 on, elected from the
        # secrets the updates opened; in round 1 the last secret revealed elects.
        if rnd == 1:
            for i in MEMBERS:
                last = ledger.client(i).reveal(task, rnd)
        elected = last.event("LeaderElected")

        def fetch(upd: UpdateRecord) -> Path:
            if upd.cid not in files:
                raise IpfsTimeout(f"{upd.cid} was never added")
            return files[upd.cid]

        honest = build_aggregate(task=task, rnd=rnd, parent_sha=parent, rule_id=rule, rule_params=encode_params(rule, {}),
                                 spec=spec, updates=records, fetch=fetch, out=tmp / f"aggregate{rnd}.safetensors",
                                 parent=parent_file)
        tensors, meta = read_model(honest.path, honest.sha256, spec)
        client_of = lambda address: ledger.client([a.address for a in ledger.accounts].index(address))  # noqa: E731
        attempt = 0
        while True:
            if cheat is not None and rnd == rounds and attempt == 0:
                cid, sha = cheat(rnd, {k: np.array(v) for k, v in tensors.items()}, meta, ipfs, records, fetch, spec, tmp,
                                 parent_file)
            else:
                cid, sha = ipfs.add_file(honest.path), honest.sha256
            tx = client_of(elected["leader"]).publish_aggregate(task, rnd, attempt, cid, sha)
            for v in elected["verifiers"]:
                computed = sha if verifiers_side_with_leader else honest.sha256
                tx = client_of(v).attest(task, rnd, attempt, computed == sha, computed)
            if any(e.name == "RoundFinalized" for e in tx.events):
                break
            elected, attempt = tx.event("LeaderElected"), attempt + 1
        fed.globals.append({"cid": cid, "sha256": sha, "parent": parent, "leader": elected["leader"],
                            "attempts": attempt + 1})
        parent, parent_tensors, parent_file = sha, {k: np.array(v) for k, v in tensors.items()}, honest.path
    ipfs.close()
    return fed


# --------------------------------------------------------------------------- honest lineage


def test_honest_federation_verifies_every_round_back_to_genesis(ledger, ipfs_node, tmp_path):
    fed = federate(ledger, ipfs_node, tmp_path, rounds=2)
    result = audit_live(ledger.rpc_url, ledger.address, fed.ipfs_url)
    assert result.ok and result.first_failure is None, result.first_failure
    assert [(r.round, r.status, r.match) for r in result.rounds] == [(1, "verified", "bit-identical"),
                                                                     (2, "verified", "bit-identical")]
    assert [r.global_sha256 for r in result.rounds] == [g["sha256"] for g in fed.globals]
    assert result.rounds[1].parent_sha256 == result.rounds[0].global_sha256
    assert result.task(fed.task).genesis_status == "verified"
    assert {u.name for u in result.rounds[0].contributors} == {"org1", "org2", "org3"}


def test_audit_sends_no_transaction(ledger, ipfs_node, tmp_path):
    fed = federate(ledger, ipfs_node, tmp_path)
    nonces = [ledger.w3.eth.get_transaction_count(a.address) for a in ledger.accounts]
    block = ledger.w3.eth.block_number
    assert audit_cli(*fed.cli_args()).exit_code == 0
    assert ledger.w3.eth.block_number == block
    assert [ledger.w3.eth.get_transaction_count(a.address) for a in ledger.accounts] == nonces


def test_cli_exits_0_with_a_verified_table_for_an_honest_federation(ledger, ipfs_node, tmp_path):
    fed = federate(ledger, ipfs_node, tmp_path)
    res = audit_cli(*fed.cli_args(), "--task", fed.task)
    assert res.exit_code == 0, res.output
    assert "✓ bit-identical" in res.stdout
    assert f"lineage verified: task {fed.task}, 1 round" in res.stdout
    assert "audit time" in res.stdout


# --------------------------------------------------------------------------- tampering, one kind per test


def test_global_model_cid_whose_bytes_differ_from_the_recorded_sha256_exits_5_with_hash_mismatch(
        ledger, ipfs_node, tmp_path):
    def publish_other_bytes(rnd, tensors, meta, ipfs, *_):
        other = dict(tensors, **{"dense.bias": tensors["dense.bias"] + 1})
        honest_sha = hashlib.sha256(write_model(tensors, {k: v for k, v in meta.items()})).hexdigest()
        return ipfs.add_bytes(write_model(other, meta)), honest_sha

    fed = federate(ledger, ipfs_node, tmp_path, cheat=publish_other_bytes)
    res = audit_cli(*fed.cli_args())
    assert res.exit_code == EXIT_BROKEN, res.output
    line = next(l for l in res.stdout.splitlines() if "first broken link" in l)
    assert f"task {fed.task} round 1: global model (leader " in line and "[hash_mismatch]" in line
    assert fed.globals[0]["cid"] in line and f"the chain recorded {fed.globals[0]['sha256']}" in line
    # The aggregate is right; only the CID points elsewhere, and the audit says so.
    assert "published the right hash with the CID of other bytes" in res.stdout


def drop_org3(rnd, tensors, meta, ipfs, records, fetch, spec, tmp, parent_file):
    """A leader's publication: the aggregate of every update but org3's."""
    wrong = build_aggregate(task=int(meta["task"]), rnd=rnd, parent_sha=meta["parent"], rule_id="fedavg",
                            rule_params=b"{}", spec=spec, updates=[r for r in records if r.num_samples != SAMPLES[3]],
                            fetch=fetch, out=tmp / "wrong.safetensors", parent=parent_file)
    return ipfs.add_file(wrong.path), wrong.sha256


def test_leader_that_left_out_an_update_exits_5_with_aggregate_mismatch_naming_it(ledger, ipfs_node, tmp_path):
    fed = federate(ledger, ipfs_node, tmp_path, cheat=drop_org3)
    res = audit_cli(*fed.cli_args())
    assert res.exit_code == EXIT_BROKEN, res.output
    line = next(l for l in res.stdout.splitlines() if "first broken link" in l)
    assert "round 1: global model" in line and "[aggregate_mismatch]" in line
    assert "recomputing fedavg over the 3 valid updates" in line
    assert "equals the aggregate without the update of org3" in line


def test_update_no_node_has_times_out_and_exits_5_naming_the_update(ledger, ipfs_node, tmp_path):
    fed = federate(ledger, ipfs_node, tmp_path, missing_update_of=2)
    missing = next(u for u in fed.updates[0] if u["name"] == "org2")
    res = audit_cli(*fed.cli_args(), "--fetch-timeout", "1.5")
    assert res.exit_code == EXIT_BROKEN, res.output
    line = next(l for l in res.stdout.splitlines() if "first broken link" in l)
    assert "round 1: update of org2" in line and missing["cid"] in line and "[unavailable]" in line
    # The leader could not fetch it either: the rest of the round still checks out.
    assert "the global model equals the aggregate of the other 2 updates" in res.stdout


def test_global_model_whose_metadata_names_another_parent_exits_5_with_parent_link(ledger, ipfs_node, tmp_path):
    def wrong_parent(rnd, tensors, meta, ipfs, *_):
        data = write_model(tensors, dict(meta, parent=hashlib.sha256(b"another model").hexdigest()))
        return ipfs.add_bytes(data), hashlib.sha256(data).hexdigest()

    fed = federate(ledger, ipfs_node, tmp_path, rounds=2, cheat=wrong_parent)
    res = audit_cli(*fed.cli_args())
    assert res.exit_code == EXIT_BROKEN, res.output
    line = next(l for l in res.stdout.splitlines() if "first broken link" in l)
    assert "round 2: global model" in line and "[parent_link]" in line
    assert f"the chain says {fed.globals[0]['sha256'][:16]}" in line
    result = audit_live(ledger.rpc_url, ledger.address, fed.ipfs_url)
    assert [f.kind for f in result.failures] == ["parent_link"]  # the tensors themselves are right
    assert result.rounds[0].status == "verified"


def test_failover_after_a_rejected_aggregate_verifies_and_shows_both_attempts(ledger, ipfs_node, tmp_path):
    fed = federate(ledger, ipfs_node, tmp_path, cheat=drop_org3, verifiers=1)
    assert fed.globals[0]["attempts"] == 2
    result = audit_live(ledger.rpc_url, ledger.address, fed.ipfs_url)
    assert result.ok, result.first_failure
    r = result.rounds[0]
    assert [a.outcome for a in r.attempts] == ["rejected", "finalized"]
    assert "the rejection was justified" in r.attempts[0].note
    assert r.leader == fed.globals[0]["leader"] != r.attempts[0].leader
    assert [c.name for c in r.checks if c.name == "events.election"] == ["events.election"] * 2
    res = audit_cli(*fed.cli_args())
    assert res.exit_code == 0 and f"2 ({r.attempts[0].leader_name} rejected)" in res.stdout


def test_update_the_leader_and_its_verifiers_all_left_out_verifies_as_a_visible_exclusion(ledger, ipfs_node, tmp_path):
    # Peers exclude updates they cannot fetch in time; here the leader and its verifier computed the
    # same model without org3's update (which is available again by the time of the audit).
    fed = federate(ledger, ipfs_node, tmp_path, cheat=drop_org3, verifiers=1, verifiers_side_with_leader=True)
    result = audit_live(ledger.rpc_url, ledger.address, fed.ipfs_url)
    assert result.ok, result.first_failure
    r = result.rounds[0]
    assert {u.name: (u.status, u.reason) for u in r.updates}["org3"] == ("excluded", "unavailable_at_aggregation")
    assert sorted(u.name for u in r.contributors) == ["org1", "org2"]
    assert r.match.startswith("bit-identical without org3's update")


def test_round_in_progress_is_shown_open_and_does_not_fail_the_audit(ledger, ipfs_node, tmp_path):
    fed = federate(ledger, ipfs_node, tmp_path, rounds=2, leave_last_round_open=True)
    res = audit_cli(*fed.cli_args())
    assert res.exit_code == 0, res.output
    assert "open (in progress)" in res.stdout and "3 submitted" in res.stdout
    result = audit_live(ledger.rpc_url, ledger.address, fed.ipfs_url)
    assert [r.status for r in result.rounds] == ["verified", "open"]


def test_deployment_file_can_stand_in_for_rpc_and_contract(ledger, ipfs_node, tmp_path):
    from fedledger.node.chain.deployment import Deployment

    fed = federate(ledger, ipfs_node, tmp_path)
    dep = Deployment(chain_id=ledger.admin.chain_id, address=ledger.address, abi_sha256=ledger.admin.artifact.abi_sha256,
                     block=0, admin=ledger.accounts[0].address, tx_hash="0x", solc_version="", rpc_url=ledger.rpc_url)
    dep.save(tmp_path / "deployment.json")
    res = audit_cli("--deployment", tmp_path / "deployment.json", "--ipfs", fed.ipfs_url)
    assert res.exit_code == 0, res.output
    assert f"lineage verified: task {fed.task}" in res.stdout


@pytest.mark.parametrize("tamper,kind,round_", [
    ("drop an UpdateSubmitted", "inputs_digest", 2),
    ("alter an update's sha256", "inputs_digest", 2),
    ("alter an update's sample count", "inputs_digest", 1),
    ("alter the parent of round 2", "parent_link", 2),
    ("alter the elected leader", "election", 1),
    ("alter a revealed secret", "election", 1),
    ("alter a secret an update opened", "election", 2),
    ("alter the drawn seed", "election", 2),
    ("alter the finalized sha256", "finalization", 1),
])
def test_event_log_altered_by_a_lying_chain_node_is_caught(ledger, ipfs_node, tmp_path, tamper, kind, round_):
    fed = federate(ledger, ipfs_node, tmp_path, rounds=2)
    events = ledger.admin.events(from_block=0)
    tasks, _ = rebuild_lineage(events, fed.task)
    assert not [f for t in tasks for f in t.ordered_failures()]  # the real log is consistent

    def edit(name: str, rnd: int, **changes):
        i = next(i for i, e in enumerate(events) if e.name == name and e.args.get("round") == rnd)
        events[i] = dataclasses.replace(events[i], args={**events[i].args, **changes})

    fake = hashlib.sha256(tamper.encode()).hexdigest()
    if tamper == "drop an UpdateSubmitted":
        events.remove(next(e for e in events if e.name == "UpdateSubmitted" and e["round"] == 2))
    elif tamper == "alter an update's sha256":
        edit("UpdateSubmitted", 2, sha256=fake)
    elif tamper == "alter an update's sample count":
        edit("UpdateSubmitted", 1, numSamples=10_000)
    elif tamper == "alter the parent of round 2":
        edit("RoundOpened", 2, parent=fake)
    elif tamper == "alter the elected leader":
        ev = next(e for e in events if e.name == "LeaderElected")
        other = next(a.address for a in ledger.accounts[1:4] if a.address != ev["leader"])
        edit("LeaderElected", 1, leader=other)
    elif tamper == "alter a revealed secret":
        edit("SecretRevealed", 1, secret=fake)
    elif tamper == "alter a secret an update opened":
        edit("UpdateSubmitted", 2, secret=fake)
    elif tamper == "alter the drawn seed":
        edit("SeedDrawn", 2, seed=fake)
    elif tamper == "alter the finalized sha256":
        edit("RoundFinalized", 1, sha256=fake)
    tasks, _ = rebuild_lineage(events, fed.task)
    failures = [f for t in tasks for f in t.ordered_failures()]
    assert failures, tamper
    assert (failures[0].kind, failures[0].round) == (kind, round_), str(failures[0])


def test_event_log_truncated_by_the_chain_node_is_caught_against_contract_state(ledger, ipfs_node, tmp_path):
    from fedledger.node.audit import LiveIpfs, run_audit
    from fedledger.node.chain.client import ChainClient

    fed = federate(ledger, ipfs_node, tmp_path, rounds=2)

    class TruncatingNode(ChainClient):  # an RPC provider that silently caps eth_getLogs
        def events(self, *args, **kwargs):
            evs = super().events(*args, **kwargs)
            return evs[:next(i for i, e in enumerate(evs) if e.name == "RoundFinalized" and e["round"] == 2)]

    source = LiveIpfs(fed.ipfs_url)
    try:
        result = run_audit(TruncatingNode(ledger.rpc_url, ledger.address), source)
    finally:
        source.close()
    assert [r.status for r in result.rounds] == ["verified", "open"]  # the log alone looks fine
    assert not result.ok and result.first_failure.kind == "state_mismatch"
    assert "the event log ends at round 2 on" in result.first_failure.message


@pytest.mark.parametrize("scale,verified", [(1 + 1e-7, True), (1 + 1e-3, False)])
def test_tolerance_rule_accepts_drift_within_its_stated_tolerance_only(ledger, ipfs_node, tmp_path, scale, verified):
    def drift(rnd, tensors, meta, ipfs, *_):
        data = write_model({k: (v * scale).astype(v.dtype) for k, v in tensors.items()}, meta)
        return ipfs.add_bytes(data), hashlib.sha256(data).hexdigest()

    fed = federate(ledger, ipfs_node, tmp_path, rule="geomedian", cheat=drift)
    result = audit_live(ledger.rpc_url, ledger.address, fed.ipfs_url)
    assert result.ok is verified, result.first_failure
    r = result.rounds[0]
    if verified:
        assert r.match.startswith("within tolerance") and r.recomputed_sha256 != r.global_sha256
    else:
        assert result.first_failure.kind == "aggregate_mismatch"
        assert "exceeds the geomedian tolerance" in result.first_failure.message


# --------------------------------------------------------------------------- ancestry


def test_model_option_shows_which_organisations_contributed_how_many_samples_in_which_rounds(
        ledger, ipfs_node, tmp_path):
    fed = federate(ledger, ipfs_node, tmp_path, rounds=2)
    res = audit_cli(*fed.cli_args(), "--model", fed.globals[1]["sha256"][:12], "--json")
    assert res.exit_code == 0, res.output
    model = json.loads(res.stdout)["model"]
    assert (model["kind"], model["round"], model["sha256"]) == ("global", 2, fed.globals[1]["sha256"])
    assert [r["round"] for r in model["rounds"]] == [1, 2]
    assert {(o["name"], tuple(o["rounds"]), o["samples"]) for o in model["organisations"]} == {
        (f"org{i}", (1, 2), 2 * SAMPLES[i]) for i in MEMBERS}
    # The table says the same to a human, and an update's ancestry is its parent's.
    text = audit_cli(*fed.cli_args(), "--model", fed.updates[1][0]["cid"]).stdout
    assert "update of org1 in round 2" in text and f"included in the global model {fed.globals[1]['sha256'][:16]}" in text
    assert "contributions to this model" in text


def test_model_option_with_an_unknown_hash_exits_3(ledger, ipfs_node, tmp_path):
    fed = federate(ledger, ipfs_node, tmp_path)
    res = audit_cli(*fed.cli_args(), "--model", "deadbeefdeadbeef")
    assert res.exit_code == 3 and "no model with sha256 or CID 'deadbeefdeadbeef'" in res.stderr


def test_audit_without_a_source_exits_2_saying_what_to_give():
    res = audit_cli()
    assert res.exit_code == 2 and "give --run DIR, or --rpc URL --contract ADDR --ipfs URL" in res.stderr


# --------------------------------------------------------------------------- a real run directory


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("audit-sim") / "run"
    run_sim(SimOptions(orgs=3, rounds=2, out=str(out), seed=3), say=lambda _: None)
    return out


@pytest.fixture(scope="module")
def run_audited(sim_run, tmp_path_factory):
    """`fedledger audit --run DIR --export X` on the sim run, once for the tests below."""
    before = _tree_digest(sim_run)
    export_dir = tmp_path_factory.mktemp("audit-export")
    res = audit_cli("--run", sim_run, "--export", export_dir)
    return res, export_dir, before


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_audit_of_a_sim_run_directory_verifies_every_round_and_exits_0(run_audited, sim_run):
    res, export_dir, _ = run_audited
    assert res.exit_code == 0, res.output
    lineage = json.loads((export_dir / "lineage.json").read_text())
    report = json.loads((sim_run / "report.json").read_text())
    rounds = lineage["tasks"][0]["rounds"]
    assert [(r["round"], r["status"], r["match"]) for r in rounds] == [(1, "verified", "bit-identical"),
                                                                       (2, "verified", "bit-identical")]
    assert [r["global"]["sha256"] for r in rounds] == [r["model_sha256"] for r in report["rounds"]]
    assert all(c["ok"] for r in rounds for c in r["checks"])
    assert {c["name"] for c in rounds[0]["checks"]} >= {"events.parent", "events.inputs_digest", "events.seed",
                                                       "events.election", "events.finalized", "events.quorum",
                                                       "global.sha256", "global.metadata", "global.recomputed"}
    assert "lineage verified: task 0, 2 rounds" in res.stdout
    timing = next(l for l in res.stdout.splitlines() if l.startswith("audit time"))
    assert "fetch" in timing and "blobs" in timing


@pytest.mark.e2e
def test_audit_of_a_run_directory_leaves_it_byte_for_byte_unchanged(run_audited, sim_run):
    res, _, before = run_audited
    assert res.exit_code == 0, res.output
    assert _tree_digest(sim_run) == before


@pytest.mark.e2e
def test_a_run_whose_ipfs_repos_lost_a_global_model_fails_naming_it(sim_run, tmp_path):
    from fedledger.node.storage.blocks import flatfs_block_path

    run = tmp_path / "run"
    shutil.copytree(sim_run, run)
    report = json.loads((run / "report.json").read_text())
    cid = report["rounds"][1]["model_cid"]
    removed = [p for p in (flatfs_block_path(repo, cid) for repo in (run / "ipfs").iterdir()) if p.exists()]
    assert removed
    for p in removed:
        p.unlink()
    result = audit_run(run, fetch_timeout=1.5)
    assert not result.ok
    f = result.first_failure
    assert (f.kind, f.round, f.cid) == ("unavailable", 2, cid)
    assert result.rounds[0].status == "verified"


@pytest.mark.e2e
def test_export_writes_lineage_json_and_a_self_contained_html_graph(run_audited):
    _, export_dir, _ = run_audited
    lineage = json.loads((export_dir / "lineage.json").read_text())
    assert lineage["schema"] == "fedledger-lineage/1" and lineage["ok"] is True
    page = (export_dir / "lineage.html").read_text()
    assert "<svg" in page and "default-src 'none'" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    for r in lineage["tasks"][0]["rounds"]:
        assert r["global"]["sha256"][:16] in page
    dom = _chromium(export_dir / "profile", "--dump-dom", f"file://{export_dir / 'lineage.html'}#select=t0-r2").stdout
    assert "global model · round 2" in dom and 'class="open"' in dom  # the details panel opened


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Debian's Chromium, headless, offline (`make test` installs it; a missing one fails, never skips)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: `make test` installs it (make browser), or apt-get install chromium")
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                           "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def _pixels(png: Path, rgb: tuple[int, int, int]) -> int:
    from PIL import Image  # matplotlib's dependency

    image = Image.open(png).convert("RGB")
    return sum(count for count, colour in image.getcolors(maxcolors=1 << 20) if colour == rgb)


ATTESTED_GREEN, RECOMPUTED_BLUE = (0x1A, 0x7F, 0x37), (0x09, 0x69, 0xDA)


@pytest.mark.e2e
def test_the_lineage_page_tells_rounds_peers_attested_from_rounds_only_the_audit_recomputed(run_audited, tmp_path):
    """Screenshots of lineage.html in headless Chromium: the sim's rounds, attested by their verifiers,
    are drawn green; the same lineage as a task without verifiers records it (no attestation: the
    audit's recomputation is the only check) is drawn blue and says so, with its quorum honestly
    reported, each round's samples, who is missing and why, and when each round ran."""
    from fedledger.node.audit.html import render

    _, export_dir, _ = run_audited
    lineage = json.loads((export_dir / "lineage.json").read_text())
    task = lineage["tasks"][0]
    names = set(lineage["members"].values())
    for r in task["rounds"]:  # what the chain recorded: every round attested by its verifiers
        assert r["assurance"] == "attested" and len(r["attested_by"]) >= task["quorum"] and set(r["attested_by"]) <= names
        assert r["samples"] == sum(u["num_samples"] for u in r["updates"] if u["status"] == "included") > 0
        assert r["missing"] == [] and r["opened_at"].endswith("UTC") and r["finalized_at"] >= r["opened_at"]
    unattested = json.loads(json.dumps(lineage))
    t = unattested["tasks"][0]
    t["verifiers_per_round"], t["quorum"] = 0, 0
    for r in t["rounds"]:
        for a in r["attempts"]:
            a["attestations"], a["verifiers"] = [], []
        r["attested_by"], r["assurance"] = [], "recomputed_only"
    shots = {}
    for label, doc in (("attested", lineage), ("recomputed", unattested)):
        page = tmp_path / f"{label}.html"
        page.write_text(render(doc))
        shot = tmp_path / f"{label}.png"
        done = _chromium(tmp_path / f"profile-{label}", f"--screenshot={shot}", "--window-size=1400,1100",
                         f"file://{page}")
        assert shot.exists(), done.stderr[-2000:]
        shots[label] = (_pixels(shot, ATTESTED_GREEN), _pixels(shot, RECOMPUTED_BLUE))
        text = page.read_text()
        if label == "attested":
            assert "✓ attested · recomputed" in text and f"quorum {task['quorum']} of {task['verifiers_per_round']} met" in text
            assert "✓ recomputed by the audit only" not in text
        else:
            assert "✓ recomputed by the audit only" in text and "no peer attested it" in text
            assert "none asked (the task trusts its leader)" in text and "quorum" not in text.split("<h2>Rounds")[1].split("<h2>Contributions")[0]
        assert "samples in this round" in text and "opened / finalized" in text and "missing, and why" in text
    (green_a, blue_a), (green_r, blue_r) = shots["attested"], shots["recomputed"]
    # The same page but for who checked the rounds: their boxes turn from green to blue (the legend's
    # swatches and the genesis and update boxes stay as they are).
    assert green_a - green_r > 1000 and blue_r - blue_a > 1000, shots


def test_a_round_without_attestations_is_recomputed_only_and_names_who_is_missing_and_why():
    from fedledger.node.audit.model import AttemptAudit, RoundAudit, UpdateAudit

    r = RoundAudit(0, 1, "ab" * 32, finalized=True, recomputed_sha256="cd" * 32, global_sha256="cd" * 32)
    r.members_at_open = [("0xA", "org1"), ("0xB", "org2"), ("0xC", "org3"), ("0xD", "org4")]
    r.updates = [UpdateAudit("0xA", "org1", "cid1", "11" * 32, 400, 0, 1, status="included"),
                 UpdateAudit("0xB", "org2", "cid2", "22" * 32, 300, 0, 1, status="excluded", reason="norm_bound"),
                 UpdateAudit("0xC", "org3", "cid3", "33" * 32, 200, 0, 1, status="left_out", reason="no_reveal",
                             in_round=False)]
    r.attempts = [AttemptAudit(0, 0, "0xA", "org1", [], outcome="finalized")]
    assert (r.assurance, r.attested_by) == ("recomputed_only", [])
    assert r.to_json()["samples"] == 400
    assert r.missing() == [{"member": "0xB", "name": "org2", "why": "update excluded (norm_bound)"},
                           {"member": "0xC", "name": "org3", "why": "left out: did not reveal its secret"},
                           {"member": "0xD", "name": "org4", "why": "no update submitted"}]
    r.attempts[0].attestations = [{"verifier": "0xB", "name": "org2", "agree": True}]
    assert (r.assurance, r.attested_by) == ("attested", ["org2"])
