"""End to end: organisations as separate node processes on real Anvil + IPFS processes."""

import hashlib
import json
import re

import pytest

from fedledger.node.sim import SimOptions, run_sim

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_three_organisations_federate_two_rounds_with_verified_lineage(tmp_path):
    out = tmp_path / "run"
    report = run_sim(SimOptions(orgs=3, rounds=2, out=str(out), seed=1), say=lambda _: None)
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["attempts"][-1]["outcome"] == "finalized" for r in rounds)
    assert all(sorted(r["participants"]) == ["org1", "org2", "org3"] for r in rounds)
    # The global models chain back to genesis and the files are the bytes the chain recorded.
    genesis = hashlib.sha256((out / "genesis.safetensors").read_bytes()).hexdigest()
    assert rounds[0]["parent_sha256"] == genesis and rounds[1]["parent_sha256"] == rounds[0]["model_sha256"]
    for r in rounds:
        assert hashlib.sha256((out / "models" / f"round{r['round']}.safetensors").read_bytes()).hexdigest() == r["model_sha256"]
    # Both verifiers of each finalizing attempt recomputed the leader's aggregate bit for bit, and no
    # honest verifier ever disagreed (a loaded machine may add attempts, never disagreements).
    attested = [json.loads(line) for org in ("org1", "org2", "org3")
                for line in (out / "orgs" / org / "metrics.jsonl").read_text().splitlines()
                if json.loads(line)["event"] == "attested"]
    assert all(a["agree"] and a["reason"] == "bit-identical" for a in attested)
    for r in rounds:
        final = r["attempts"][-1]
        assert len([a for a in attested if (a["round"], a["epoch"], a["attempt"]) ==
                    (r["round"], final["epoch"], final["attempt"])]) == 2
    # Every member fetched the others' updates of the last round (small models are prefetched as
    # they are announced; the leader and verifiers need them anyway).
    for org in ("org1", "org2", "org3"):
        fetched = {f.name.split("-", 1)[1].split(".")[0] for f in (out / "orgs" / org / "updates").glob("r2-*.safetensors")}
        own = next(json.loads(line)["sha256"] for line in (out / "orgs" / org / "metrics.jsonl").read_text().splitlines()
                   if json.loads(line)["event"] == "submitted" and json.loads(line)["round"] == 2)
        assert len(fetched - {own}) == 2, (org, fetched)
        # ... each straight from the gateway of the member who stored it: no fallback to the swarm.
        log = (out / "orgs" / org / "node.log").read_text()
        assert "fetching through the swarm" not in log
        # The log follows the task: each phase of each round, with this member's role in it.
        assert re.search(rf"{org} round 1/2: submission, \d+ updates; this member: not submitted yet", log)
        assert re.search(rf"{org} round 2/2: (aggregation|verification) \(attempt \d+\), 3 updates; this member: "
                         r"(leader|verifier|participant)", log), log
    assert report["final_accuracy"] > 0.4 and report["centralized_accuracy"] > 0.7
    assert (out / "accuracy.png").stat().st_size > 10_000
    assert (out / "chain" / "state.json").exists() and (out / "ipfs" / "org1").is_dir()
    # Every node process exited by itself with 0 and logged no traceback, as report.json records.
    clean = {org: {"exit_code": 0, "traceback": None} for org in ("org1", "org2", "org3")}
    assert report["nodes"] == clean
    assert json.loads((out / "report.json").read_text())["nodes"] == clean


def test_the_report_finds_the_first_traceback_in_a_node_log(tmp_path):
    from fedledger.node.sim.report import node_outcomes

    log = tmp_path / "orgs" / "org1" / "node.log"
    log.parent.mkdir(parents=True)
    log.write_text("12:00:00.001 INFO org1 joins task 0\n"
                   "Traceback (most recent call last):\n"
                   '  File "loop.py", line 7, in run\n'
                   "    self.tick()\n"
                   "KeyError: 'round'\n"
                   "12:00:01.000 INFO after the crash\n"
                   "Traceback (most recent call last):\n"
                   "ValueError: a second one\n")
    (tmp_path / "orgs" / "org2").mkdir()
    (tmp_path / "orgs" / "org2" / "node.log").write_text("12:00:00.001 INFO org2 joins task 0\n")
    nodes = node_outcomes(tmp_path, ["org1", "org2", "org3"], {"org1": 1, "org2": 0})
    assert nodes["org1"] == {"exit_code": 1, "traceback": "Traceback (most recent call last):\n"
                             '  File "loop.py", line 7, in run\n    self.tick()\nKeyError: \'round\''}
    assert nodes["org2"] == {"exit_code": 0, "traceback": None}
    assert nodes["org3"] == {"exit_code": None, "traceback": None}  # never waited for, no log


def test_a_killed_node_restarts_and_rejoins_the_next_round(tmp_path):
    out = tmp_path / "run"
    # Two IPFS nodes shared by three organisations (org1 and org3 on ipfs1): the large-simulation
    # layout works the same. No gateways: every model moves through the swarm (bitswap).
    report = run_sim(SimOptions(orgs=3, rounds=3, out=str(out), seed=2, restart_org="org2@2",
                                submission_window=20, ipfs_nodes=2, gateways=False), say=lambda _: None)
    assert "[ipfs.gateways]" not in (out / "orgs" / "org1" / "node.toml").read_text()
    assert sorted(p.name for p in (out / "ipfs").iterdir()) == ["ipfs1", "ipfs2"]
    assert report["faults"][0]["org"] == "org2"
    rounds = {r["round"]: r for r in report["rounds"]}
    assert sorted(rounds) == [1, 2, 3]
    assert "org2" in rounds[3]["participants"]
    log = (out / "orgs" / "org2" / "node.log").read_text()
    assert log.count("joins task") == 2  # the restarted process picked up from chain state


@pytest.mark.parametrize("nodes", [0, 4])
def test_sim_refuses_an_ipfs_node_count_outside_1_to_orgs_before_starting_anything(tmp_path, nodes):
    from fedledger.node.errors import InputError

    with pytest.raises(InputError, match="--ipfs-nodes must be between 1 and --orgs"):
        run_sim(SimOptions(orgs=3, rounds=1, out=str(tmp_path / "run"), ipfs_nodes=nodes), say=lambda _: None)
    assert not (tmp_path / "run" / "ipfs").exists()
