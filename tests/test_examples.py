"""The examples, run as their READMEs say: every ```sh block in order, in a fresh directory, with
real Anvil, one IPFS node per organisation and one node process (or training loop) each.

Each example ends by scoring the federation's final global model and every organisation's model
trained alone on rows none of them saw (examples/evaluate.py), and fails unless the global model
beats every local one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .guides import run_guide

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def scores(out: str) -> dict[str, float]:
    lines = out.split("held-out")[1].splitlines()[1:]
    found = {}
    for line in lines:
        name, _, value = line.strip().rpartition("  ")
        try:
            found[name.strip()] = float(value)
        except ValueError:
            break
    return found


def test_hospital_example_three_hospitals_with_their_own_csv_files_and_model_code(tmp_path, request):
    run_dir = tmp_path / "hospitals"
    out = run_guide(ROOT / "examples" / "hospital-csv" / "README.md", run_dir, tmp_path, request)
    assert "completed after 3 rounds" in out
    assert "the global model beats every organisation's own model" in out
    s = scores(out)
    assert set(s) == {"global (federated)", "hospital1 alone", "hospital2 alone", "hospital3 alone"}, s
    assert s["global (federated)"] > max(v for k, v in s.items() if k.endswith("alone"))
    for h in ("hospital1", "hospital2", "hospital3"):
        config = (run_dir / h / "node.toml").read_text()
        # A real member's config names its own code and its own data, nothing about the others'.
        assert 'object = "hospital_fl:workload"' in config and "\nbuiltin =" not in config
        assert f'data = "{(run_dir / h).resolve()}"' in config
        assert "org_index" not in config and "num_orgs" not in config
        submitted = [json.loads(line) for line in (run_dir / h / "metrics.jsonl").read_text().splitlines()
                     if json.loads(line)["event"] == "submitted"]
        assert [m["round"] for m in submitted] == [1, 2, 3]


def test_own_loop_example_a_scikit_learn_loop_through_join_and_a_numpy_workload(tmp_path, request):
    run_dir = tmp_path / "own-loop"
    out = run_guide(ROOT / "examples" / "own-loop" / "README.md", run_dir, tmp_path, request)
    assert "task 0 completed" in out  # printed by org1's own loop once fl.rounds() ended
    assert [f"round {r}: submitted" in out for r in (1, 2, 3)] == [True] * 3
    assert "the global model beats every organisation's own model" in out
    # org1's updates came from its scikit-learn loop, with the metrics it measured.
    m = [json.loads(line) for line in (run_dir / "org1" / "metrics.jsonl").read_text().splitlines()]
    submitted = [x for x in m if x["event"] == "submitted"]
    assert [x["round"] for x in submitted] == [1, 2, 3]
    assert all(0.0 < x["local_accuracy"] <= 1.0 for x in submitted)
    # The federation chose leaders and verifiers among all three, org1 included.
    roles = {x["event"] for x in m}
    assert "revealed" in roles
