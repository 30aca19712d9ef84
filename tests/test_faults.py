"""Faults and adversaries on a real chain and real IPFS: nothing lost, nothing let in.

The malformed-update test drives real Peer objects (chain client, IPFS client, model format,
trainer) in one process, ticking them in turn, so that thirteen rounds take seconds; the other
tests run the whole federation as separate node processes through `run_sim`.
"""

from __future__ import annotations

import json

import pytest

from fedledger.aggregation.registry import encode_params
from fedledger.node.audit import audit_run
from fedledger.node.peer.adversary import MALFORMED_KINDS, Adversary
from fedledger.node.protocol import TaskConfig
from fedledger.node.storage.ipfs import IpfsClient
from fedledger.node.storage.modelfile import ModelSpec, write_model_file
from fedledger.node.training.partition import partition
from fedledger.node.peer.loop import Peer
from fedledger.node.sim import SimOptions, run_sim
from fedledger.node.peer.config import Ipfs, Organisation
from fedledger.node.training.workloads import get_workload

KINDS = list(MALFORMED_KINDS)


def _in_process_task(ledger, ipfs_node, tmp_path, rounds: int, adversaries=None, gateways=None) -> list[Peer]:
    """Four members on one task (FedAvg, 2 verifiers), as Peer objects in this process sharing one
    IPFS node."""
    spec_task = get_workload("digits-mlp")
    ipfs = IpfsClient(ipfs_node.api_url)
    genesis = spec_task.genesis_weights(0)
    model_spec = ModelSpec.from_tensors(genesis)
    gpath = tmp_path / "genesis.safetensors"
    gsha = write_model_file(gpath, genesis, {"kind": "genesis", "task": "0", "round": "0", "rule": "fedavg"})
    gcid, spec_cid = ipfs.add_file(gpath), ipfs.add_bytes(model_spec.to_json())
    admin = ledger.admin
    for i in (1, 2, 3, 4):
        if not admin.is_member(ledger.accounts[i].address):
            admin.add_member(ledger.accounts[i].address, f"org{i}")
    task, _ = admin.create_task(TaskConfig(spec_cid, gcid, gsha, "fedavg", encode_params("fedavg", {}), 4, 4,
                                           3600, 3600, 3600, 2, 2, rounds))
    X, y, Xt, yt = spec_task.load_data(None)
    parts = partition(y, 4, "iid", 0)
    return [Peer(Organisation(name=f"org{i + 1}", work_dir=tmp_path / f"org{i + 1}"), ledger.client(i + 1), ipfs,
                 task, spec_task.trainer((X[parts[i]], y[parts[i]]), (Xt, yt)), spec_task.default_config,
                 storage=Ipfs(api_url=ipfs_node.api_url, gateways=gateways or {}), member_seed=i,
                 behaviour=(adversaries or {}).get(i), fetch_timeout=5)
            for i in range(4)]


def _tick_until_complete(peers: list[Peer], ticks: int = 2000) -> None:
    for _ in range(ticks):
        if all([p.tick() for p in peers]):
            return
    pytest.fail("the task did not complete")


@pytest.mark.chain
@pytest.mark.ipfs
@pytest.mark.timeout(600)
def test_every_kind_of_malformed_update_is_excluded_by_leader_and_verifiers_alike(ledger, ipfs_node, tmp_path):
    peers = _in_process_task(ledger, ipfs_node, tmp_path, rounds=len(KINDS),
                             adversaries={3: Adversary(malformed="cycle")})
    _tick_until_complete(peers)

    attacker = ledger.accounts[4].address
    # The attacker submits garbage but leads and verifies honestly (it wants its own rounds to finalize).
    records = [json.loads(line) for p in peers for line in p.metrics_path.read_text().splitlines()]
    for rnd, kind in enumerate(KINDS, start=1):
        expected = MALFORMED_KINDS[kind]
        published = [r for r in records if r["round"] == rnd and r["event"] == "published"]
        attested = [r for r in records if r["round"] == rnd and r["event"] == "attested"]
        assert len(published) == 1 and len(attested) == 2, (kind, published, attested)
        for r in published + attested:
            assert [(x["member"], x["reason"]) for x in r["excluded"]] == [(attacker, expected)], (kind, r)
            assert len(r["included"]) == 3
        assert all(r["agree"] for r in attested), kind
    state = ledger.admin.task_state(peers[0].task)
    assert state.completed and state.current_round == len(KINDS)


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_killed_and_byzantine_leaders_are_replaced_and_no_update_is_lost(tmp_path):
    out = tmp_path / "run"
    # Generous windows: they only bound how long a dead or slow member is waited for, and a loaded
    # machine must not turn a slow verifier into a failed attempt.
    report = run_sim(SimOptions(orgs=4, rounds=3, out=str(out), seed=3, kill_leader_at=2, aggregation_window=20,
                                verification_window=90, byzantine_leader_at="3"), say=lambda _: None)
    rounds = {r["round"]: r for r in report["rounds"]}
    # Round 2: the killed leader timed out; the next candidate finalized in its own attempt (within its
    # aggregation and verification windows after the dead leader's deadline), from all four updates.
    assert [a["outcome"] for a in rounds[2]["attempts"]] == ["timed_out", "finalized"]
    kill = next(f for f in report["faults"] if f["fault"] == "kill_leader")
    assert kill["org"] == rounds[2]["attempts"][0]["leader"]
    assert 0 < kill["finalized_after_deadline_seconds"] <= 20 + 90
    assert len(rounds[2]["participants"]) == 4
    # Round 3: the cheating leader was rejected by the verifiers; the next candidate's aggregate stands.
    assert [a["outcome"] for a in rounds[3]["attempts"]] == ["rejected", "finalized"]
    attests = [json.loads(line) for org in ("org1", "org2", "org3", "org4")
               for line in (out / "orgs" / org / "metrics.jsonl").read_text().splitlines()]
    rejected = [a for a in attests if a["event"] == "attested" and a["round"] == 3 and a["attempt"] == 0]
    assert rejected and not any(a["agree"] for a in rejected)
    assert rounds[3]["accuracy"] >= rounds[1]["accuracy"]
    # The lineage of the whole run verifies from chain events and IPFS alone, failed attempts included.
    audit = audit_run(out)
    assert audit.ok, audit.first_failure


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_federation_survives_chain_node_and_ipfs_node_restarts(tmp_path):
    out = tmp_path / "run"
    report = run_sim(SimOptions(orgs=3, rounds=3, out=str(out), seed=4, restart_chain_at=2, restart_ipfs="org2@3"),
                     say=lambda _: None)
    kinds = [f["fault"] for f in report["faults"]]
    assert kinds == ["restart_chain", "restart_ipfs"]
    assert [r["round"] for r in report["rounds"]] == [1, 2, 3]
    assert all(len(r["participants"]) == 3 for r in report["rounds"])
    assert report["rounds"][1]["parent_sha256"] == report["rounds"][0]["model_sha256"]
    audit = audit_run(out)
    assert audit.ok, audit.first_failure


@pytest.mark.chain
@pytest.mark.ipfs
@pytest.mark.timeout(600)
def test_lying_and_dead_gateways_cost_a_fallback_to_the_swarm_and_nothing_else(ledger, ipfs_node, tmp_path, caplog):
    import http.server
    import logging
    import os
    import threading

    from fedledger.node.storage.daemon import free_port

    class Liar(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # any CID: 200 and bytes that are not it
            body = os.urandom(4096)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    liar = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    threading.Thread(target=liar.serve_forever, daemon=True).start()
    honest, lying, dead = (ledger.accounts[i].address for i in (1, 2, 3))
    gateways = {honest: ipfs_node.gateway_url, lying: f"http://127.0.0.1:{liar.server_address[1]}",
                dead: f"http://127.0.0.1:{free_port()}"}
    try:
        with caplog.at_level(logging.INFO, logger="fedledger.node"):
            peers = _in_process_task(ledger, ipfs_node, tmp_path, rounds=2, gateways=gateways)
            _tick_until_complete(peers)
    finally:
        liar.shutdown()
    records = [json.loads(line) for p in peers for line in p.metrics_path.read_text().splitlines()]
    for rnd in (1, 2):
        published = [r for r in records if r["round"] == rnd and r["event"] == "published"]
        attested = [r for r in records if r["round"] == rnd and r["event"] == "attested"]
        assert len(published) == 1 and len(published[0]["included"]) == 4 and not published[0]["excluded"]
        assert len(attested) == 2 and all(r["agree"] for r in attested)
    fallbacks = [r.getMessage() for r in caplog.records if "fetching through the swarm" in r.getMessage()]
    assert any(lying.lower() in m and "refusing it" in m for m in fallbacks), fallbacks
    assert any(dead.lower() in m for m in fallbacks), fallbacks
    assert not any(honest.lower() in m for m in fallbacks), fallbacks
