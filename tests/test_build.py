"""The shipped contract artifact is exactly what both toolchains compile from contracts/."""

import json
import shutil
import subprocess

from fedledger.node.chain.contracts import ARTIFACT_PATH, Artifact, compile_sources, repo_root


def test_shipped_artifact_matches_a_fresh_compile_of_contracts():
    shipped = Artifact.from_json(ARTIFACT_PATH.read_text())
    fresh = compile_sources(repo_root())
    assert shipped.source_sha256 == fresh.source_sha256, "contracts/ changed: run `make compile`"
    assert shipped.bytecode == fresh.bytecode and shipped.abi == fresh.abi


def test_hardhat_compiles_the_same_bytecode_offline(tmp_path):
    root = repo_root()
    npx = shutil.which("npx")
    assert npx, "npx is needed (Node.js 20)"
    out = subprocess.run(
        [npx, "hardhat", "compile", "--quiet"], cwd=root, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-2000:]
    built = json.loads((root / "artifacts/hardhat/contracts/FedLedger.sol/FedLedger.json").read_text())
    shipped = Artifact.from_json(ARTIFACT_PATH.read_text())
    assert built["bytecode"] == shipped.bytecode
    assert built["deployedBytecode"] == shipped.deployed_bytecode


def test_readme_carries_the_consortium_guide_that_the_tests_run():
    root = repo_root()
    guide = (root / "docs" / "consortium.md").read_text().strip()
    assert guide in (root / "README.md").read_text(), "paste docs/consortium.md into the README again"


def test_readme_embeds_the_current_benchmark_summary():
    """bench/report.py regenerates the block from bench/results; a stale README fails here."""
    import importlib.util

    path = repo_root() / "bench" / "report.py"
    spec = importlib.util.spec_from_file_location("bench_report", path)
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    summary = report.build(repo_root() / "bench" / "results")
    readme = (repo_root() / "README.md").read_text()
    assert report.readme_block(summary) in readme, "run `.venv/bin/python bench/report.py` to refresh README.md"
    assert (repo_root() / "bench" / "results" / "SUMMARY.md").read_text() == summary
