#!/usr/bin/env python3
"""Accuracy under differential privacy: epsilon 1, 3 and 8 against the non-private run.

Every cell runs IN PROCESS with the nodes' own code: the same trainer (DP-SGD through Opacus for
the example level, node/training/trainer.py), the same client-level clipping and noise
(node/training/privacy.py: privatize_update), the same accountant (Opacus RDP, Privacy.spent) and
FedAvg from fedledger.aggregation; no chain (which does not change a global model).

For a target epsilon the task gets the smallest noise multiplier that keeps `rounds` releases
within it: example level, q = dp_sample_rate (0.2) and round(1/q) DP-SGD steps a round; client
level, q = 1 and one release a round. Every organisation then spends the same epsilon.

Writes bench/results/privacy.json: {"rows": [{task, level, epsilon, delta, accuracy,
nonprivate_accuracy, kept, noise_multiplier, clip, rounds, runs}], ...}; `accuracy` is the median
of `--repeat` runs (the noise differs every run).

    .venv/bin/python bench/privacy.py [--rounds 20] [--epsilons 1,3,8] [--levels example,client]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fedledger.aggregation import fedavg
from fedledger.node.training.partition import partition
from fedledger.node.training.privacy import Privacy, noise_for, privatize_update
from fedledger.node.training.workloads import get_workload

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: (task label, workload, partition, per-example clip, client-level clip). The per-example clip was
#: picked on digits at epsilon 8 from 0.3, 1, 3, 6 and 12 (docs/privacy.md): a larger clip keeps more
#: of each gradient but its noise grows with it; the noise multiplier follows from epsilon.
TASKS = {
    "digits": ("digits-mlp", "dirichlet:0.5", 6.0, 0.5),
    "breast-cancer": ("breast-cancer", "dirichlet:0.5", 6.0, 0.5),
}


def run(work, data, parts, genesis, rounds: int, privacy: Privacy | None, seed: int) -> float:
    X, y, Xt, yt = data
    trainers = [work.trainer((X[idx], y[idx]), (Xt, yt)) for idx in parts]
    glob = dict(genesis)
    hashes = [bytes([i]) * 32 for i in range(len(parts))]
    for rnd in range(1, rounds + 1):
        local = []
        for i, t in enumerate(trainers):
            cfg = work.default_config.for_round(seed * 1000 + i, rnd)
            if privacy is not None and not privacy.client:
                cfg = cfg.replace(dp_clip=privacy.clip, dp_noise=privacy.noise, dp_sample_rate=privacy.sample_rate(),
                                  dp_steps=privacy.steps_per_round())
            w = dict(t.fit(glob, cfg).weights)
            if privacy is not None and privacy.client:
                w, _ = privatize_update(glob, w, privacy.clip, privacy.noise)
            local.append(w)
        glob = dict(fedavg(local, [t.num_train_samples for t in trainers], hashes=hashes))
    return trainers[0].evaluate(glob).accuracy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--orgs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--epsilons", default="1,3,8")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--levels", default="example,client")
    ap.add_argument("--sample-rate", type=float, default=0.2, help="example level: dp_sample_rate")
    ap.add_argument("--repeat", type=int, default=3, help="runs per private cell; the median accuracy is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "privacy.json")
    args = ap.parse_args()
    rows, started = [], time.time()
    for label in args.tasks.split(","):
        name, scheme, example_clip, client_clip = TASKS[label]
        work = get_workload(name)
        X, y, Xt, yt = work.load_data(None)
        parts = partition(y, args.orgs, scheme, args.seed)
        genesis = dict(work.genesis_weights(args.seed))
        base = run(work, (X, y, Xt, yt), parts, genesis, args.rounds, None, args.seed)  # reproducible: one run
        print(f"{label:14s} non-private {base:.3f}", file=sys.stderr, flush=True)
        for level in args.levels.split(","):
            for eps in (float(e) for e in args.epsilons.split(",")):
                t0 = time.time()
                clip = client_clip if level == "client" else example_clip
                probe = Privacy(clip=clip, noise=1.0, delta=args.delta, client=level == "client",
                                sample_rate_=args.sample_rate)
                noise = noise_for(eps, probe.sample_rate(), args.rounds * probe.steps_per_round(), args.delta)
                privacy = Privacy(clip=clip, noise=noise, delta=args.delta, epsilon=eps, client=level == "client",
                                  sample_rate_=args.sample_rate)
                spent = privacy.spent(args.rounds)
                # The noise is fresh randomness each run: the median of several runs.
                accs = [run(work, (X, y, Xt, yt), parts, genesis, args.rounds, privacy, args.seed)
                        for _ in range(args.repeat)]
                acc = float(np.median(accs))
                rows.append({"task": label, "workload": name, "partition": scheme, "level": level, "epsilon": eps,
                             "epsilon_spent": round(spent, 4), "sample_rate": privacy.sample_rate(),
                             "delta": args.delta, "accuracy": round(acc, 4), "runs": [round(a, 4) for a in accs],
                             "nonprivate_accuracy": round(base, 4), "kept": round(acc / base, 4),
                             "noise_multiplier": round(privacy.noise, 4), "clip": clip, "rounds": args.rounds,
                             "seconds": round(time.time() - t0, 1)})
                print(f"{label:14s} {level:8s} eps {eps:4g} acc {acc:.3f} ({acc / base:.0%} of {base:.3f}), "
                      f"z {privacy.noise:.2f}, spent {spent:.2f} ({time.time() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
    write_results(args.out, args, started,
                  mode="in-process (the nodes' trainer, DP mechanisms, accountant and FedAvg; no chain)", rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
