#!/usr/bin/env python3
"""Learning quality: does the federation reach the centrally trained model's accuracy?

Runs `fedledger sim` (separate node processes, Anvil, one IPFS node per organisation) for:
  digits-mlp, 10 organisations, dirichlet:0.5, FedAvg, 20 rounds of 5 local epochs
  digits-mlp, 10 organisations, shards:2, FedAvg + FedProx (mu 0.01), 20 rounds of 5 local epochs,
  lr 0.1 decaying by 0.9 per round
and reports the final global accuracy against the centralized baseline (the same model trained
for as many epochs on the pooled data), and the first round reaching 95% of it. Writes
bench/results/learning.json and learning.md.

    .venv/bin/python bench/learning.py [--rounds 20] [--orgs 10] [--mu 0.1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fedledger.node.sim import SimOptions, run_sim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import stamp as provenance  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--orgs", type=int, default=10)
    ap.add_argument("--mu", type=float, default=0.01, help="FedProx mu of the shards:2 case")
    ap.add_argument("--lr", type=float, default=0.1, help="local learning rate of the shards:2 case (dirichlet uses the task's)")
    ap.add_argument("--lr-decay", type=float, default=0.9, help="per-round lr decay of the shards:2 case")
    ap.add_argument("--epochs", type=int, default=5, help="local epochs per round (the baseline trains rounds x epochs)")
    ap.add_argument("--out", default="runs/bench-learning")
    ap.add_argument("--only", choices=["dirichlet", "shards"], help="run one case; keep the other's stored result")
    args = ap.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # (partition, method, mu, lr (None: the task's), lr_decay)
    cases = [
        ("dirichlet:0.5", "fedavg", 0.0, None, 1.0),
        ("shards:2", "fedavg+fedprox", args.mu, args.lr, args.lr_decay),
    ]
    rows = []
    path = RESULTS / "learning.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    doc = stored if isinstance(stored, dict) else {}  # other sections (earlier settings) are kept as they are
    if args.only:
        keep = [c for c in cases if not c[0].startswith(args.only)]
        cases = [c for c in cases if c[0].startswith(args.only)]
        stored = stored.get("rows", []) if isinstance(stored, dict) else stored
        rows = [r for r in stored if any(r["partition"] == k[0] for k in keep)]
    for partition, label, mu, lr, lr_decay in cases:
        out = Path(args.out) / f"{stamp}-{partition.replace(':', '')}-{label}"
        print(f"== {partition} {label} (mu={mu}) -> {out}", file=sys.stderr, flush=True)
        measured = provenance()  # per case: `--only` keeps the other case's row and its stamp
        report = run_sim(SimOptions(orgs=args.orgs, rounds=args.rounds, partition=partition, rule="fedavg",
                                    training={"mu": mu, "lr": lr, "lr_decay": lr_decay, "epochs": args.epochs},
                                    verifiers=2, seed=0, out=str(out)),
                         say=lambda line: print("   ", line, file=sys.stderr, flush=True))
        central = report["centralized_accuracy"]
        accs = [r["accuracy"] for r in report["rounds"]]
        reach = next((r["round"] for r in report["rounds"] if r["accuracy"] >= 0.95 * central), None)
        rows.append({"task": "digits-mlp", "orgs": args.orgs, "partition": partition, "method": label, "mu": mu,
                     "local_epochs": args.epochs, "lr": report["config"]["training"]["lr"], "lr_decay": lr_decay,
                     "rounds": args.rounds, "final_accuracy": accs[-1], "best_accuracy": max(accs),
                     "centralized_accuracy": central, "ratio_final_vs_centralized": round(accs[-1] / central, 4),
                     "first_round_at_95pct": reach, "accuracy_per_round": accs, "run_dir": str(out),
                     "wall_seconds": report["wall_seconds"], **measured})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    md = ("| partition | method | final accuracy | centralized | final / centralized | first round at 95% |\n"
          "|---|---|---:|---:|---:|---:|\n")
    rows.sort(key=lambda r: r["partition"])
    md += "".join(f"| {r['partition']} | {r['method']} (mu {r['mu']}, {r.get('local_epochs', 1)} local epochs"
                  f"{', lr %s x %s^(r-1)' % (r['lr'], r['lr_decay']) if r.get('lr_decay', 1.0) != 1.0 else ''}) | {r['final_accuracy']:.4f} | {r['centralized_accuracy']:.4f} | "
                  f"{r['ratio_final_vs_centralized']:.3f} | {r['first_round_at_95pct']} |\n" for r in rows)
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**doc, "rows": rows}, indent=2) + "\n")
    (RESULTS / "learning.md").write_text(md)
    return 0 if all(r["first_round_at_95pct"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
