#!/usr/bin/env python3
"""What a real-sized model costs per round: fedledger against Flower simulation with a 40 MB model.

Task: the built-in workload digits-wide (MLP 64-3136-3136-10: 10,072,842 float32 parameters, a
40.3 MB model file), 10 organisations, Dirichlet(0.5) over classes (seed 0), 1 local epoch of SGD
(lr 0.01, momentum 0.9, batch 32), FedAvg, 2 verifiers, 6 rounds; then the same task on Flower's
simulation runtime, same seeds, one after the other in one run (bench/round_overhead.py runs both
sides; this script only changes the workload).

The physical floor of a steady round, for N members and a model of M bytes:

    slowest member's training          (measured in the run, inside the member: TorchTrainer.fit)
  + the critical path's transactions   (submit, publish, attest: measured in the run)
  + (N + 4) * M bytes, each moved once over loopback and hashed once, at this machine's measured
    loopback TCP and SHA-256 bandwidth: a member reads the global model and writes its update
    (2M), the leader reads N updates and writes the global model (N+1)M, the slower verifier
    reads the global model (M; it fetches the updates while the leader aggregates)

so `ratio_vs_floor` says how much of a round is neither training, nor the chain, nor bytes that
must move. Peak memory per node process (RSS) is sampled every 0.5 s.

Writes bench/results/big_model.json; run dirs go under --out and are deleted afterwards unless --keep.

    .venv/bin/python bench/big_model.py [--orgs 10] [--rounds 6] [--only fedledger,flower-simulation]
    .venv/bin/python bench/big_model.py --quick     # 3 organisations, 2 rounds: a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from provenance import commit  # noqa: E402
from round_overhead import (  # noqa: E402
    RESULTS,
    ratio,
    run_fedledger,
    run_flower_measured,
    say,
    summarize,
)

WORKLOAD = "digits-wide"
LR = 0.01
SYSTEMS = ("fedledger", "flower-simulation")
MB = 1e6


def model_bytes() -> tuple[int, int]:
    """(parameters, bytes of the float32 tensors) of the workload's model."""
    from fedledger.node.training.workloads import get_workload

    weights = get_workload(WORKLOAD).initial_weights(0)
    return sum(int(v.size) for v in weights.values()), sum(int(v.nbytes) for v in weights.values())


def hash_bandwidth(size: int, repeats: int = 5) -> float:
    """SHA-256 bytes per second over one buffer of ``size`` bytes (best of ``repeats``)."""
    buf = bytes(size)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        hashlib.sha256(buf).digest()
        best = min(best, time.perf_counter() - t0)
    return size / best


def loopback_bandwidth(size: int, repeats: int = 5) -> float:
    """Bytes per second of one TCP stream over 127.0.0.1 (best of ``repeats``), a receiver
    thread reading into a preallocated buffer."""
    payload = bytes(size)
    best = float("inf")
    for _ in range(repeats):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            port = srv.getsockname()[1]
            sink = bytearray(1 << 20)
            done = threading.Event()

            def receive() -> None:
                conn, _ = srv.accept()
                with conn:
                    view, got = memoryview(sink), 0
                    while got < size:
                        n = conn.recv_into(view)
                        if not n:
                            break
                        got += n
                done.set()

            t = threading.Thread(target=receive, daemon=True)
            t.start()
            with socket.create_connection(("127.0.0.1", port)) as c:
                t0 = time.perf_counter()
                c.sendall(payload)
                done.wait(60)
                best = min(best, time.perf_counter() - t0)
            t.join(5)
    return size / best


def floor(summary: dict, orgs: int, model: int, loopback: float, hashing: float) -> dict:
    """The steady round's physical floor (see the module docstring) from fedledger's own summary."""
    cp = summary["critical_path_seconds_per_round"]
    moved = (orgs + 4) * model
    bytes_s = moved / loopback + moved / hashing
    total = summary["slowest_training_seconds_per_round"] + cp["transactions"] + bytes_s
    return {"seconds_per_round": round(total, 3), "training": summary["slowest_training_seconds_per_round"],
            "transactions": cp["transactions"], "bytes": moved, "bytes_seconds": round(bytes_s, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orgs", type=int, default=10, help="organisations (Flower: clients) (default: 10)")
    ap.add_argument("--rounds", type=int, default=6, help="rounds; round 1 is start-up, 2..R are measured (default: 6)")
    ap.add_argument("--seed", type=int, default=0, help="genesis, partition and training seed (default: 0)")
    ap.add_argument("--only", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 organisations, 2 rounds; results go to the "
                                                         "run directory, not bench/results")
    ap.add_argument("--out", default="runs/bench-big-model", help="where run directories go (default: %(default)s)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the run directories (about 13 GB for 10 organisations and 6 rounds: every member keeps "
                         "every model it handled); by default they are deleted once the results are written")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SYSTEMS)
    if unknown:
        ap.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    if args.quick:
        args.orgs, args.rounds = 3, 2
    if args.rounds < 2:
        ap.error("--rounds must be at least 2: round 1 includes start-up and is not a steady round")
    params, size = model_bytes()
    loopback, hashing = loopback_bandwidth(size), hash_bandwidth(size)
    say(f"{WORKLOAD}: {params:,} parameters, {size / MB:.1f} MB; loopback {loopback / MB:.0f} MB/s, "
        f"SHA-256 {hashing / MB:.0f} MB/s")
    base = Path(args.out).resolve() / time.strftime("%Y%m%d-%H%M%S")
    runs: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for system in SYSTEMS:
        if system not in only:
            continue
        say(f"== {system}: {args.orgs} organisations, {args.rounds} rounds -> {base / system}")
        try:
            if system == "fedledger":
                runs[system] = run_fedledger(args.orgs, args.rounds, base / system, seed=args.seed, workload=WORKLOAD)
            else:
                runs[system] = run_flower_measured("simulation", args.orgs, args.rounds, base / system,
                                                   seed=args.seed, task=WORKLOAD, lr=LR)
        except Exception as exc:  # record it, and still measure the other system
            traceback.print_exc(file=sys.stderr)
            failed[system] = f"{type(exc).__name__}: {exc}"[:600]
            say(f"{system} failed: {exc}")
    if not runs:
        say("no system completed; nothing written")
        return 2
    summary = {k: summarize(v) for k, v in runs.items()}
    f, fs = summary.get("fedledger"), summary.get("flower-simulation")
    doc: dict = {
        "task": {"workload": WORKLOAD, "model": "MLP 64-3136-3136-10", "partition": "dirichlet:0.5",
                 "seed": args.seed, "organisations": args.orgs, "rounds": args.rounds, "local_epochs": 1,
                 "optimizer": f"SGD lr {LR} momentum 0.9 batch 32", "rule": "FedAvg", "verifiers": 2},
        "parameters": params,
        "model_bytes": size,
        "machine": {"loopback_mb_per_s": round(loopback / MB), "sha256_mb_per_s": round(hashing / MB)},
        "definitions": {
            "seconds_per_round": "mean wall time of rounds 2..R (round 1 includes start-up)",
            "floor_seconds_per_round": "slowest training + critical-path transactions + (N+4) model sizes moved "
                                       "over loopback and hashed once, at the bandwidths measured here",
            "peak_node_rss_mb": "largest peak resident memory of one fedledger node process",
        },
        "quick": bool(args.quick),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "summary": summary,
        "failed": failed,
        "runs": runs,
    }
    if f:
        fl = floor(f, args.orgs, size, loopback, hashing)
        node = runs["fedledger"]["memory"]["roles"].get("node", {})
        doc.update({"fedledger_seconds_per_round": f["seconds_per_round"],
                    "fedledger_seconds_per_round_median": f["seconds_per_round_median"],
                    "critical_path_seconds_per_round": f["critical_path_seconds_per_round"],
                    "waiting_seconds_per_round": f["waiting_seconds_per_round"],
                    "floor": fl, "floor_seconds_per_round": fl["seconds_per_round"],
                    "ratio_vs_floor": ratio(f["seconds_per_round"], fl["seconds_per_round"]),
                    "peak_node_rss_mb": node.get("peak_rss_mb_max"),
                    "peak_ipfs_rss_mb": runs["fedledger"]["memory"]["roles"].get("ipfs", {}).get("peak_rss_mb_max"),
                    "gas_per_round": f["gas_per_round"]})
    if fs:
        doc["flower_simulation_seconds_per_round"] = fs["seconds_per_round"]
        doc["flower_simulation_seconds_per_round_median"] = fs["seconds_per_round_median"]
    if f and fs:
        doc["ratio_vs_flower_simulation"] = ratio(f["seconds_per_round"], fs["seconds_per_round"])
        doc["accuracy_spread"] = round(abs(f["final_accuracy"] - fs["final_accuracy"]), 4)
    for key in ("fedledger_seconds_per_round", "flower_simulation_seconds_per_round", "ratio_vs_flower_simulation",
                "floor_seconds_per_round", "ratio_vs_floor", "peak_node_rss_mb"):
        if key in doc:
            say(f"{key}: {doc[key]}")
    dest = base if args.quick else RESULTS
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "big_model.json").write_text(json.dumps(doc, indent=2) + "\n")
    say(f"wrote {dest / 'big_model.json'}")
    if not args.keep:
        for system in SYSTEMS:
            shutil.rmtree(base / system, ignore_errors=True)
        say(f"deleted the run directories under {base} (--keep keeps them)")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
