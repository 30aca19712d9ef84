#!/usr/bin/env python3
"""How fedledger grows with the number of organisations on one machine.

For 2, 5, 10, 25 and 50 organisations: `fedledger sim` on digits-mlp (Dirichlet(0.5), seed 0,
FedAvg, 2 verifiers), each organisation with its own node process and its own js-ipfs node, all
on this machine's cores; where one js-ipfs node per organisation would not fit in memory, the
organisations share fewer (`fedledger sim --ipfs-nodes`, at most --shared-ipfs-nodes). Per organisation count: seconds per round (steady state, rounds 2..R,
and including round 1), coordination overhead (round minus the slowest member's training), the
critical-path split (training, blob transfers, transactions, aggregation, waiting), gas per
round, and peak memory per node process and per IPFS daemon (RSS and PSS, sampled with psutil).
Flower's simulation runtime runs the same task at the same sizes as a reference (--no-flower to
skip it).

Before each size the memory it needs is extrapolated from the largest size measured so far
(PSS per organisation); a size that would not fit in the machine's available memory is skipped,
with the reason recorded in scale.json, rather than driving the machine into swap or the OOM
killer. A size whose run fails is recorded with its error and the next size still runs.

Writes bench/results/scale.json and scale.md.

    .venv/bin/python bench/scale.py [--orgs 2,5,10,25,50] [--rounds 5] [--no-flower]
    .venv/bin/python bench/scale.py --quick          # 2 and 3 organisations, 2 rounds: a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from round_overhead import (RESULTS, run_fedledger, run_flower_measured, say, summarize,  # noqa: E402
                            write_results)
from provenance import commit, stamp  # noqa: E402

MB = 1024 * 1024
HEADROOM = 0.85  # use at most this share of the memory available when a size starts


def estimate_mb(row: dict, orgs: int, ipfs_nodes: int | None = None) -> float:
    """Memory a run of ``orgs`` organisations on ``ipfs_nodes`` IPFS nodes (default: one each)
    needs, from a measured row: PSS per node process and per IPFS daemon, plus the chain node and
    the bench itself."""
    roles = row["memory"]["roles"]
    node = roles.get("node", {}).get("peak_pss_mb_mean") or roles.get("node", {}).get("peak_rss_mb_mean", 0)
    ipfs = roles.get("ipfs", {}).get("peak_pss_mb_mean") or roles.get("ipfs", {}).get("peak_rss_mb_mean", 0)
    chain = roles.get("chain", {}).get("peak_rss_mb_max", 0)
    return node * orgs + ipfs * (ipfs_nodes or orgs) + chain + 300


def windows(orgs: int) -> dict:
    """Generous phase windows: a leader or verifier fetches every update one by one, and with many
    node processes on two cores a window must not close on a member that is merely slow."""
    return {"submission_window": max(300, 12 * orgs), "aggregation_window": max(60, 4 * orgs),
            "verification_window": max(60, 4 * orgs)}




def growth(xs: list[int], ys: list[float]) -> dict:
    """Least-squares slope (seconds per extra organisation) and the log-log exponent between the
    smallest and largest size (1 = linear, 2 = quadratic)."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if len(pts) < 2:
        return {}
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    exponent = math.log(y1 / y0) / math.log(x1 / x0) if y0 > 0 and y1 > 0 and x1 != x0 else None
    return {"slope_per_org": round(slope, 4) if slope is not None else None,
            "intercept": round(my - slope * mx, 4) if slope is not None else None,
            "loglog_exponent": round(exponent, 3) if exponent is not None else None,
            "from": x0, "to": x1}


def fedledger_row(run: dict) -> dict:
    s = summarize(run)
    roles = run["memory"]["roles"]
    node, ipfs, chain = roles.get("node", {}), roles.get("ipfs", {}), roles.get("chain", {})
    return {
        "orgs": run["orgs"], "status": "ok",
        "seconds_per_round": s["seconds_per_round"],
        "seconds_per_round_incl_round1": s["seconds_per_round_incl_round1"],
        "first_round_seconds": s["first_round_seconds"],
        "slowest_training_seconds": s["slowest_training_seconds_per_round"],
        "coordination_overhead_seconds": s["overhead_seconds_per_round"],
        "critical_path_seconds": s["critical_path_seconds_per_round"],
        "waiting_seconds": s["waiting_seconds_per_round"],
        "round_vs_floor": s["round_vs_floor"],
        "gas_per_round": s["gas_per_round"],
        "final_accuracy": s["final_accuracy"],
        "attempts_per_round": [r["attempts"] for r in run["rounds"]],
        "participants_per_round": [r["participants"] for r in run["rounds"]],
        "node_peak_rss_mb": {"max": node.get("peak_rss_mb_max"), "mean": node.get("peak_rss_mb_mean")},
        "node_peak_pss_mb_mean": node.get("peak_pss_mb_mean"),
        "ipfs_peak_rss_mb": {"max": ipfs.get("peak_rss_mb_max"), "mean": ipfs.get("peak_rss_mb_mean")},
        "ipfs_peak_pss_mb_mean": ipfs.get("peak_pss_mb_mean"),
        "chain_peak_rss_mb": chain.get("peak_rss_mb_max"),
        "peak_total_pss_mb": run["memory"]["peak_total_pss_mb"],
        "peak_total_rss_mb": run["memory"]["peak_total_rss_mb"],
        "peak_system_used_mb": run["memory"]["peak_system_used_mb"],
        "wall_seconds": run["wall_seconds"],
        "run_dir": run["run_dir"],
        "memory": run["memory"],
        "rounds": run["rounds"],
    }


def markdown(doc: dict) -> str:
    lines = ["| organisations | s/round (steady) | s/round (incl. round 1) | slowest training | overhead/round | "
             "transfers | transactions | waiting | gas/round | node peak RSS (MB) | IPFS peak RSS (MB) | "
             "total PSS (MB) | Flower sim s/round | accuracy |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['orgs']} | {r['status']}: {r.get('reason', '')} |" + " |" * 12)
            continue
        cp = r["critical_path_seconds"]
        fl = r.get("flower_simulation_seconds_per_round")
        lines.append(
            f"| {r['orgs']} | {r['seconds_per_round']:.2f} | {r['seconds_per_round_incl_round1']:.2f} | "
            f"{r['slowest_training_seconds']:.3f} | {r['coordination_overhead_seconds']:.2f} | {cp['transfers']:.2f} | "
            f"{cp['transactions']:.2f} | {r['waiting_seconds']:.2f} | {r['gas_per_round']:,} | "
            f"{r['node_peak_rss_mb']['max']:.0f} | {r['ipfs_peak_rss_mb']['max']:.0f} | {r['peak_total_pss_mb']:,.0f} | "
            f"{'–' if fl is None else f'{fl:.2f}'} | {r['final_accuracy']:.4f} |")
    g = doc.get("growth", {})
    if g:
        lines.append("")
        for key, label in (("seconds_per_round", "seconds per round"),
                           ("coordination_overhead_seconds", "coordination overhead"),
                           ("peak_total_pss_mb", "total memory (PSS)")):
            x = g.get(key)
            if x:
                lines.append(f"- {label}: +{x['slope_per_org']} per extra organisation (least squares), "
                             f"log-log exponent {x['loglog_exponent']} from {x['from']} to {x['to']} organisations")
    for r in doc["rows"]:
        if r["status"] != "ok":
            lines.append(f"- {r['orgs']} organisations {r['status']}: {r.get('reason', '')}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orgs", default="2,5,10,25,50")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-flower", action="store_true", help="skip the Flower simulation reference")
    ap.add_argument("--force", action="store_true", help="run every size even if the estimate says it will not fit")
    ap.add_argument("--shared-ipfs-nodes", type=int, default=10,
                    help="at most this many IPFS nodes when one per organisation does not fit in memory")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of bench/results/scale.json for sizes not run now (e.g. --orgs 25 --merge)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 and 3 organisations, 2 rounds; results go "
                                                         "to the run directory, not bench/results")
    ap.add_argument("--out", default="runs/bench-scale")
    args = ap.parse_args()
    if args.quick:
        args.orgs, args.rounds = "2,3", 2
    sizes = [int(x) for x in args.orgs.split(",")]
    load_at_start = [round(x, 2) for x in psutil.getloadavg()]
    base = Path(args.out).resolve() / time.strftime("%Y%m%d-%H%M%S")
    rows: list[dict] = []
    measured: dict | None = None
    for n in sizes:
        avail = psutil.virtual_memory().available / MB
        ipfs_nodes = None
        if measured is not None and not args.force and estimate_mb(measured, n) > HEADROOM * avail:
            # One js-ipfs node per organisation does not fit: share fewer nodes (as many as fit).
            fits = [k for k in range(n - 1, 0, -1) if estimate_mb(measured, n, k) <= HEADROOM * avail]
            if not fits:
                need = estimate_mb(measured, n, 1)
                reason = (f"needs about {need:,.0f} MB even on one shared IPFS node (PSS per node process "
                          f"measured at {measured['orgs']} organisations x {n}), {avail:,.0f} MB available")
                say(f"skipping {n} organisations: {reason}")
                rows.append({"orgs": n, "status": "skipped", "reason": reason, "estimated_mb": round(need),
                             "available_mb": round(avail)})
                continue
            ipfs_nodes = min(fits[0], max(args.shared_ipfs_nodes, 1))
            say(f"{n} organisations with one IPFS node each would need about {estimate_mb(measured, n):,.0f} MB of "
                f"{avail:,.0f} MB available: sharing {ipfs_nodes} IPFS nodes")
        say(f"== fedledger, {n} organisations, {args.rounds} rounds ({avail:,.0f} MB available)")
        out = base / f"fedledger-{n}"
        row = None
        try:
            # A round needs a leader besides its verifiers: 2 organisations get one verifier.
            verifiers = min(2, n - 1)
            run = run_fedledger(n, args.rounds, out, seed=args.seed, sample_interval=1.0 if n > 10 else 0.5,
                                ipfs_nodes=ipfs_nodes, verifiers=verifiers, **windows(n))
            row = fedledger_row(run)
            row["verifiers"] = verifiers
            row["ipfs_nodes"] = ipfs_nodes or n
            if n <= 10:
                measured = row  # the one-node-per-organisation layout the estimate extrapolates
        except Exception as exc:  # a size that fails is a result too; the next size still runs
            traceback.print_exc(file=sys.stderr)
            say(f"fedledger with {n} organisations failed: {exc}")
            rows.append({"orgs": n, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:600],
                         "run_dir": str(out), "ipfs_nodes": ipfs_nodes or n})
        if row is None:
            continue
        if not args.no_flower:
            try:
                fl = run_flower_measured("simulation", n, args.rounds, base / f"flower-simulation-{n}", seed=args.seed)
                fs = summarize(fl)
                row["flower_simulation_seconds_per_round"] = fs["seconds_per_round"]
                row["flower_simulation_seconds_per_round_incl_round1"] = fs["seconds_per_round_incl_round1"]
                row["flower_simulation_final_accuracy"] = fs["final_accuracy"]
                row["flower_simulation_peak_total_pss_mb"] = fl["memory"]["peak_total_pss_mb"]
            except Exception as exc:
                say(f"Flower simulation with {n} clients failed: {exc}")
                row["flower_simulation_error"] = str(exc)[:300]
        row.update(stamp())  # per row: `--merge` keeps rows of earlier runs with their own stamps
        rows.append(row)
        say(f"{n} organisations: {row['seconds_per_round']} s/round steady, overhead "
            f"{row['coordination_overhead_seconds']} s, node peak RSS {row['node_peak_rss_mb']['max']} MB, "
            f"IPFS peak RSS {row['ipfs_peak_rss_mb']['max']} MB, total PSS {row['peak_total_pss_mb']} MB")
    if args.merge and (RESULTS / "scale.json").exists():
        done = {r["orgs"] for r in rows}
        kept = [r for r in json.loads((RESULTS / "scale.json").read_text())["rows"] if r["orgs"] not in done]
        rows = sorted(kept + rows, key=lambda r: r["orgs"])
        say(f"merged with the rows of bench/results/scale.json for {sorted(r['orgs'] for r in kept)} organisations")
    ok = [r for r in rows if r["status"] == "ok"]
    xs = [r["orgs"] for r in ok]
    doc = {
        "task": {"name": "digits-mlp", "partition": "dirichlet:0.5", "seed": args.seed, "rule": "FedAvg",
                 "verifiers": "2 (1 for 2 organisations: a round needs a leader besides them)", "rounds": args.rounds,
                 "ipfs": "one js-ipfs node per organisation, or shared nodes where that does not fit (row's ipfs_nodes)"},
        "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "load_average_at_start": load_at_start,
                    "load_average_at_end": [round(x, 2) for x in psutil.getloadavg()]},
        "definitions": {
            "seconds_per_round": "mean wall time of rounds 2..R (steady state)",
            "seconds_per_round_incl_round1": "mean of rounds 1..R; round 1 includes node process start-up",
            "coordination_overhead_seconds": "round wall time minus the slowest member's training time",
            "node_peak_rss_mb": "peak RSS of one organisation's node process (max and mean over organisations)",
            "ipfs_peak_rss_mb": "peak RSS of one organisation's js-ipfs daemon",
            "peak_total_pss_mb": "peak of the summed PSS of every process of the run (nodes, IPFS, Anvil)",
            "ipfs_nodes": "js-ipfs daemons of the run: one per organisation, or fewer shared ones",
        },
        "quick": bool(args.quick),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "rows": rows,
        "skipped": [{"orgs": r["orgs"], "status": r["status"], "reason": r["reason"]} for r in rows if r["status"] != "ok"],
        "growth": {key: growth(xs, [r[key] for r in ok]) for key in
                   ("seconds_per_round", "coordination_overhead_seconds", "peak_total_pss_mb")} if len(ok) > 1 else {},
    }
    md = markdown(doc)
    print(md)
    write_results("scale", doc, md, base if args.quick else RESULTS)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
