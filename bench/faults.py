#!/usr/bin/env python3
"""Failure modes, measured on real processes with `fedledger sim`:

1. sign-flipping: 10 organisations, 3 attackers, each rule clean and attacked (FedAvg, median,
   trimmed mean beta=0.3, Multi-Krum f=3), 10 rounds of 5 local epochs: final accuracy, and the
   attacked run against the clean one;
2. byzantine leaders: 4 organisations, 2 verifiers, every round's first leader publishes a wrong
   aggregate, for N rounds (N seeded trials: each round has its own election seed);
3. killed leader: the elected leader's process is SIGKILLed before it publishes; failover time.

Writes bench/results/faults.json and faults.md.

    .venv/bin/python bench/faults.py [--only signflip,byzantine,kill] [--rounds 10] [--trials 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fedledger.node.sim import SimOptions, run_sim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import stamp  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RULES = [("fedavg", "{}"), ("median", "{}"), ("trimmed_mean", '{"beta": 0.3}'), ("multikrum", '{"f": 3}')]


def sim(out: Path, **kw) -> dict:
    print(f"== {out.name}", file=sys.stderr, flush=True)
    return run_sim(SimOptions(out=str(out), **kw), say=lambda line: print("   ", line, file=sys.stderr, flush=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="signflip,byzantine,kill")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=5, help="local epochs per round in the sign-flipping runs")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--out", default="runs/bench-faults")
    args = ap.parse_args()
    base = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    only = set(args.only.split(","))
    results: dict = {}
    path = RESULTS / "faults.json"
    if path.exists():
        results = json.loads(path.read_text())

    if "signflip" in only:
        measured = stamp()  # per section: `--only` keeps the other sections and their stamps
        rows = []
        for rule, params in RULES:
            row = {"rule": rule, "params": json.loads(params)}
            for label, attackers in (("clean", 0), ("attacked", 3)):
                rep = sim(base / f"signflip-{rule}-{label}", orgs=10, rounds=args.rounds, partition="iid", rule=rule,
                          rule_params=params, verifiers=2, seed=0, attackers=attackers, attack="signflip",
                          training={"epochs": args.epochs})
                row[f"{label}_accuracy"] = rep["final_accuracy"]
            row["attacked_vs_clean"] = round(row["attacked_accuracy"] / row["clean_accuracy"], 4)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        clean_fedavg = rows[0]["clean_accuracy"]
        for row in rows:
            row["attacked_vs_clean_fedavg"] = round(row["attacked_accuracy"] / clean_fedavg, 4)
        # The default (5 local epochs) is "signflip"; other settings keep their own section.
        key = "signflip" if args.epochs == 5 else f"signflip_epochs_{args.epochs}"
        results[key] = {"orgs": 10, "attackers": 3, "rounds": args.rounds, "local_epochs": args.epochs,
                               "partition": "iid", "rows": rows, **measured}

    if "byzantine" in only:
        measured = stamp()
        rep = sim(base / "byzantine", orgs=4, rounds=args.trials, verifiers=2, seed=5, byzantine_leader_at="all")
        outcomes = [[a["outcome"] for a in r["attempts"]] for r in rep["rounds"]]
        results["byzantine"] = {
            "trials": len(outcomes), "verifiers": 2,
            # Caught: a quorum of disagreement rejects the attempt; with a unanimous quorum (2 of 2)
            # one disagreement already makes agreement unreachable and disputes it. Either way the
            # next candidate leads.
            "caught_then_finalized": sum(len(o) == 2 and o[0] in ("rejected", "disputed") and o[1] == "finalized"
                                         for o in outcomes),
            "caught_as": {k: sum(o[0] == k for o in outcomes) for k in ("rejected", "disputed")},
            "outcomes": outcomes, "final_accuracy": rep["final_accuracy"], **measured,
        }

    if "kill" in only:
        measured = stamp()
        rep = sim(base / "kill-leader", orgs=4, rounds=3, verifiers=2, seed=6, kill_leader_at=2, aggregation_window=10)
        kill = next(f for f in rep["faults"] if f["fault"] == "kill_leader")
        r2 = rep["rounds"][1]
        results["kill_leader"] = {
            "aggregation_window": 10, "failover_seconds": kill["failover_seconds"],
            "finalized_after_deadline_seconds": kill["finalized_after_deadline_seconds"],
            "attempts": [a["outcome"] for a in r2["attempts"]], "updates_in_round": len(r2["participants"]),
            "orgs": 4, **measured,
        }

    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    md = []
    if "signflip" in results:
        sf = results["signflip"]
        md.append(f"{sf['attackers']} of {sf['orgs']} organisations sign-flipping, {sf['partition']}, {sf['rounds']} rounds "
                  f"of {sf.get('local_epochs', 1)} local epochs:\n")
        md.append("| rule | clean accuracy | 3 of 10 sign-flipping | attacked / clean | attacked / clean FedAvg |\n"
                  "|---|---:|---:|---:|---:|")
        md += [f"| {r['rule']} | {r['clean_accuracy']:.4f} | {r['attacked_accuracy']:.4f} | {r['attacked_vs_clean']:.3f} "
               f"| {r['attacked_vs_clean_fedavg']:.3f} |" for r in results["signflip"]["rows"]]
    if "byzantine" in results:
        b = results["byzantine"]
        md.append(f"\nByzantine leader, 2 verifiers: caught and replaced in {b['caught_then_finalized']} of "
                  f"{b['trials']} seeded rounds ({b['caught_as']['rejected']} rejected, {b['caught_as']['disputed']} "
                  "disputed).")
    if "kill_leader" in results:
        k = results["kill_leader"]
        md.append(f"\nKilled leader (aggregation window {k['aggregation_window']} s): round finalized under the next "
                  f"candidate {k['failover_seconds']} s after the kill, {k['finalized_after_deadline_seconds']} s after "
                  f"the dead leader's deadline, with all {k['updates_in_round']} updates.")
    text = "\n".join(md) + "\n"
    print(text)
    (RESULTS / "faults.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
