"""The shipped contract artifact is exactly what both toolchains compile from contracts/."""

import json
import shutil
import subprocess

from fedledger.node.chain.abi import abi_type
from fedledger.node.chain.contracts import (
    ARTIFACT_PATH,
    CONTRACTS,
    Artifact,
    compile_all,
    compile_sources,
    repo_root,
    solidity_interface,
)


def test_shipped_artifact_matches_a_fresh_compile_of_contracts():
    shipped = Artifact.from_json(ARTIFACT_PATH.read_text())
    fresh = compile_sources(repo_root())
    assert shipped.source_sha256 == fresh.source_sha256, "contracts/ changed: run `make compile`"
    assert shipped.bytecode == fresh.bytecode and shipped.abi == fresh.abi


def test_the_solidity_interfaces_declare_every_function_event_and_error_of_the_contracts():
    """contracts/IFedLedger.sol and IMemberVote.sol let any client call and decode the contracts;
    compiled, each has exactly its contract's selectors, topics and error signatures."""
    built = compile_all(repo_root())

    def signatures(abi):
        return {(i["type"], i["name"], tuple((abi_type(x), bool(x.get("indexed"))) for x in i["inputs"]),
                 tuple(abi_type(x) for x in i.get("outputs", [])), i.get("stateMutability"))
                for i in abi if i["type"] in ("function", "event", "error")}

    for name in CONTRACTS:
        text = (repo_root() / "contracts" / f"I{name}.sol").read_text()
        assert text == solidity_interface(built[name]), f"contracts/I{name}.sol is stale: run `make compile`"
        assert signatures(built[f"I{name}"].abi) == signatures(built[name].abi)
    assert "function members() external view returns (address[] memory)" in solidity_interface(built["FedLedger"])


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


def _bench_report():
    """bench/report.py as a module (it imports figures.py and docs_figures.py from beside it)."""
    import importlib.util
    import sys

    bench = repo_root() / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    spec = importlib.util.spec_from_file_location("bench_report", bench / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


def test_every_generated_benchmark_figure_in_the_readme_and_docs_matches_bench_results():
    """bench/report.py renders every benchmark block of README.md and docs/ (and SUMMARY.md) from
    bench/results/*.json; a block edited by hand, or a JSON rerun without the report, fails here."""
    problems = _bench_report().stale()
    assert problems == [], "run `.venv/bin/python bench/report.py`:\n" + "\n".join(problems)


def test_changing_any_number_of_a_generated_block_by_hand_is_caught():
    report = _bench_report()
    for rel in report.FILES:
        text = (repo_root() / rel).read_text()
        blocks = list(report.MARKER.finditer(text))
        assert blocks, rel
        for m in blocks:
            body = m.group(0)
            digits = [i for i, c in enumerate(body) if c.isdigit() and "-->" in body[:i]]
            assert digits, f"{rel}: the `{m['name']}` block shows no number"
            for i in (digits[0], digits[len(digits) // 2], digits[-1]):
                edited = body[:i] + str((int(body[i]) + 1) % 10) + body[i + 1:]
                problems = report.stale(texts={rel: text.replace(body, edited)})
                assert f"{rel}: the `{m['name']}` block differs from bench/results" in problems, (rel, m["name"], i)


def test_deleting_a_generated_block_is_caught():
    report = _bench_report()
    text = (repo_root() / "README.md").read_text()
    gas = next(m for m in report.MARKER.finditer(text) if m["name"] == "gas")
    assert "README.md: no generated `gas` block" in report.stale(texts={"README.md": text.replace(gas.group(0), "")})


#: The README sections that report measurements: every number in them comes from a generated block.
BENCHMARK_SECTIONS = ("Models and storage", "Aggregation", "Failure modes", "Learning quality",
                      "System benchmarks against Flower", "Gas")


def test_the_readmes_benchmark_sections_hold_no_number_outside_a_generated_block():
    """A number typed by hand next to the generated blocks would escape the check above: there is none.
    (Digits inside names, such as sha256, float64 or CIDv1, are not numbers.)"""
    import re

    report = _bench_report()
    readme = (repo_root() / "README.md").read_text()
    sections = re.split(r"^## ", readme, flags=re.M)
    found = {}
    for section in sections:
        title = section.split("\n", 1)[0].strip()
        if title not in BENCHMARK_SECTIONS:
            continue
        rest = report.MARKER.sub("", section.split("\n", 1)[1])
        numbers = [rest[max(0, m.start() - 30):m.end() + 10] for m in re.finditer(r"(?<![\w.\-/])\d", rest)]
        if title == "Models and storage":  # design prose, then the storage block: no measured figure
            numbers = [n for n in numbers if "since 2021" not in n and "newer than 0.8" not in n]
        if numbers:
            found[title] = numbers
    assert sorted(t for t in BENCHMARK_SECTIONS if f"## {t}\n" in readme) == sorted(BENCHMARK_SECTIONS)
    assert found == {}, "move these into a generated block (bench/figures.py) or drop them"


def test_the_measured_demo_runs_what_make_demo_runs():
    import re
    import sys

    root = repo_root()
    makefile = (root / "Makefile").read_text()
    args = re.search(r"^DEMO_ARGS := (.*)$", makefile, re.M).group(1).split()
    assert "$(BIN)/fedledger sim $(DEMO_ARGS) --out $(DEMO_OUT)" in makefile
    sys.path.insert(0, str(root / "bench"))
    import demo

    assert demo.DEMO_ARGS == args
