#!/usr/bin/env python3
"""Compare a federation's global model with what each organisation could train alone.

Each organisation's local model is trained with the same workload, the same settings and as
many passes over its own data as the federation made (rounds x local epochs); every model is
scored on the held-out rows no organisation ever saw (DATA/holdout.csv, read by the workload
module's `read_csv`). Exits 1 unless the global model beats every local one.

    python3 evaluate.py MODULE:ATTRIBUTE GLOBAL.safetensors DATA_DIR --rounds R [--module-dir DIR]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from safetensors.numpy import load_file

import fedledger


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workload", help="the workload object, e.g. hospital_fl:workload")
    ap.add_argument("model", type=Path, help="the global model (fedledger task pull TASK --out FILE)")
    ap.add_argument("data", type=Path, help="the directory the example's make_data.py wrote")
    ap.add_argument("--rounds", type=int, required=True, help="rounds the task ran")
    ap.add_argument("--module-dir", type=Path, default=Path("."), help="where the workload's module is")
    args = ap.parse_args()
    sys.path.insert(0, str(args.module_dir.resolve()))
    module_name, _, attr = args.workload.partition(":")
    module = importlib.import_module(module_name)
    w = getattr(module, attr)
    holdout = module.read_csv(args.data / "holdout.csv")
    scores = {}
    trainer = w.trainer_for(fedledger.LocalData(train=holdout, test=holdout))
    scores["global (federated)"] = trainer.evaluate(load_file(args.model)).accuracy
    config = w.default_config.replace(epochs=args.rounds * w.default_config.epochs, seed=1)
    for org in sorted(p.parent.name for p in args.data.glob("*/train.csv")):
        t = w.trainer_for(fedledger.LocalData(train=module.read_csv(args.data / org / "train.csv"), test=holdout))
        scores[f"{org} alone"] = t.evaluate(t.fit(w.initial_weights(0), config).weights).accuracy
    width = max(map(len, scores))
    print(f"accuracy on {len(holdout[1])} held-out rows:")
    for name, acc in scores.items():
        print(f"  {name:<{width}}  {acc:.3f}")
    if scores["global (federated)"] > max(v for k, v in scores.items() if k.endswith("alone")):
        print("the global model beats every organisation's own model")
        return 0
    print("the global model does NOT beat every organisation's own model", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
