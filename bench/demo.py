#!/usr/bin/env python3
"""The demo, measured: what `make demo` prints, and the audit of its run.

Runs `fedledger sim --epochs 5 --out runs/demo-STAMP`, exactly as `make demo` does (the command
line itself, in a child process; DEMO_ARGS is the Makefile's, and a test holds the two equal), then `fedledger audit --run` on the run directory
(its table, and with --export the same audit's lineage.json with its timings). Writes bench/results/demo.json: both
commands' output, the rounds and accuracies of report.json, the wall time of the sim and the
audit's timings, with when and at which commit. bench/report.py renders the README's demo
transcript and docs/audit.md's example and timings from it.

    .venv/bin/python bench/demo.py [--runs runs]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import stamp  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
#: What `make demo` passes to `fedledger sim` besides --out (the Makefile's DEMO_ARGS).
DEMO_ARGS = ["--epochs", "5"]


def fedledger(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    # The output as a user's terminal-less shell gets it: no colour codes, the commands' own widths.
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")} | {"NO_COLOR": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([str(Path(sys.executable).with_name("fedledger")), *args], cwd=REPO, env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"`fedledger {' '.join(args)}` exited {out.returncode}")
    return out, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs", help="where the run directory goes (as `make demo`: runs/demo-STAMP)")
    args = ap.parse_args()
    measured = stamp()
    run_dir = f"{args.runs}/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    command = ["sim", *DEMO_ARGS, "--out", run_dir]
    print(f"== fedledger {' '.join(command)}", file=sys.stderr, flush=True)
    sim, sim_seconds = fedledger(*command)
    print(f"== fedledger audit --run {run_dir}", file=sys.stderr, flush=True)
    audit, _ = fedledger("audit", "--run", run_dir, "--quiet", "--export", f"{run_dir}/audit")
    lineage = json.loads((REPO / run_dir / "audit" / "lineage.json").read_text())
    report = json.loads((REPO / run_dir / "report.json").read_text())
    cfg = report["config"]
    doc = {
        **measured,
        "machine": {"cpus": os.cpu_count()},
        "command": f"fedledger {' '.join(command)}",
        "config": {k: cfg[k] for k in ("orgs", "rounds", "workload", "partition", "rule", "verifiers")},
        "sim_seconds": round(sim_seconds, 1),
        "sim_output": sim.stdout,
        "rounds": [{k: r[k] for k in ("round", "leader", "attempts", "participants", "accuracy", "gas_used",
                                       "seconds", "model_sha256")} for r in report["rounds"]],
        "final_accuracy": report["final_accuracy"],
        "centralized_accuracy": report["centralized_accuracy"],
        "nodes": report.get("nodes"),
        "audit_output": audit.stdout,
        "audit": {"ok": lineage["ok"], "timing": lineage["timing"], "blobs": lineage["blobs"]},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "demo.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(sim.stdout + audit.stdout)
    print(f"wrote {RESULTS / 'demo.json'}", file=sys.stderr)
    return 0 if lineage["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
