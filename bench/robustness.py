#!/usr/bin/env python3
"""Robustness on heterogeneous data: rules x attacks x partitions.

Every cell runs IN PROCESS: the same trainer, the same attack arithmetic (node/peer/adversary.py),
the same bounds and the same aggregation code (fedledger.aggregation.registry) as the nodes, but
no chain, no IPFS and no node processes. A real `fedledger sim` cell takes about a minute on 2 cores
and the grid has about 60 cells; what the chain adds (election, verification, lineage) does not
change a global model, which is the aggregate of the same updates (tests/test_federations.py and
the sim-based benches cover that part).

Defaults, as the robustness target asks: digits-mlp, 10 organisations of which 3 attack, 1 local
epoch, 20 rounds, iid and dirichlet:0.5. Attacks:
  signflip   parent - 4 x the honest change (the node's signflip)
  scale:10   parent + 10 x the honest change
  labelflip  trained on flipped labels
  alie       A Little Is Enough (Baruch et al. 2019): the colluders' mean change - z x its std,
             z = Phi^-1((n - s) / n), s = floor(n / 2 + 1) - f
  ipm        inner-product manipulation (Xie et al. 2019): -0.1 x the colluders' mean change
The colluders pool what they would honestly have sent, as in both papers. Writes
bench/results/robustness.json: one row per cell (partition, attack, rule, final accuracy, accuracy
kept against the rule's own clean run and against FedAvg's clean run).

    .venv/bin/python bench/robustness.py [--rounds 20] [--rules fedavg,median,...] [--attacks ...]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import replace
from pathlib import Path


from eth_utils import keccak

from fedledger.aggregation.bucketing import bucketed
from fedledger.aggregation.registry import aggregate, bound, encode_params, resolve_rule
from fedledger.node.peer.adversary import Adversary, alie_update, alie_z, flip_labels, ipm_update
from fedledger.node.storage.modelfile import write_model
from fedledger.node.training.partition import partition
from fedledger.node.training.workloads import get_workload

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RULES = "fedavg,median,trimmed_mean,multikrum,cclip,robust"
ATTACKS = "none,signflip,scale:10,labelflip,alie,ipm"
PARAMS = {"trimmed_mean": {"beta": 0.3}, "multikrum": {"f": 3}}  # each rule told the number of attackers


def sha(tensors: dict) -> bytes:
    return hashlib.sha256(write_model(tensors, {"kind": "genesis", "task": "0", "round": "0"})).digest()


def run_cell(work, data, parts, genesis, rule: str, attack: str, attackers: int, rounds: int, epochs: int,
             seed: int) -> dict:
    X, y, Xt, yt = data
    n = len(parts)
    bad = set(range(n - attackers, n)) if attack != "none" else set()
    trainers = []
    for i, idx in enumerate(parts):
        labels = y[idx]
        if attack == "labelflip" and i in bad:
            labels = flip_labels(labels, int(y.max()) + 1)
        trainers.append(work.trainer((X[idx], labels), (Xt, yt)))
    cfg = replace(work.default_config, epochs=epochs)
    # "bucket2:cclip": bucketing in pairs before cclip (aggregation/bucketing.py)
    bucket, inner = (int(rule.split(":")[0][len("bucket"):]), rule.split(":", 1)[1]) if rule.startswith("bucket") \
        else (1, rule)
    inner, params = resolve_rule(inner, PARAMS.get(inner, {}))  # "robust": a preset of fedavg and its bounds
    params = encode_params(inner, params)
    glob, previous = dict(genesis), None
    curve = []
    for rnd in range(1, rounds + 1):
        local = [dict(trainers[i].fit(glob, cfg.for_round(seed * 1000 + i, rnd)).weights) for i in range(n)]
        honest_bad = [local[i] for i in sorted(bad)]
        for i in sorted(bad):
            if attack in ("signflip",) or attack.startswith("scale"):
                local[i] = Adversary(attack=attack).poison(glob, local[i], seed=rnd)
            elif attack == "alie":
                local[i] = alie_update(glob, honest_bad, alie_z(n, attackers))
            elif attack == "ipm":
                local[i] = ipm_update(glob, honest_bad, 0.1)
        hashes = [sha(u) if i not in bad else hashlib.sha256(sha(u) + bytes([i])).digest() for i, u in enumerate(local)]
        counts = [trainers[i].num_train_samples for i in range(n)]
        b = bound(inner, params, local, counts, hashes, parent=glob, previous=previous)
        previous = glob
        if bucket > 1:  # shuffled by a per-round seed, as the round's on-chain seed would
            glob = dict(bucketed(lambda means, hs: aggregate(inner, params, means, [1] * len(means), hs), b.updates,
                                 bucket, keccak(b"round" + rnd.to_bytes(32, "big")), b.hashes))
        else:
            glob = dict(aggregate(inner, params, b.updates, b.weights, b.hashes))
        curve.append(trainers[0].evaluate(glob).accuracy)
    return {"rule": rule, "attack": attack, "accuracy": curve[-1], "curve": curve}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="digits-mlp")
    ap.add_argument("--orgs", type=int, default=10)
    ap.add_argument("--attackers", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--partitions", default="iid,dirichlet:0.5")
    ap.add_argument("--rules", default=RULES)
    ap.add_argument("--attacks", default=ATTACKS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "robustness.json")
    args = ap.parse_args()
    rules, attacks = args.rules.split(","), args.attacks.split(",")
    if "none" not in attacks:
        attacks = ["none", *attacks]  # every rule's clean run is its own baseline
    if "fedavg" not in rules:
        rules = ["fedavg", *rules]
    work = get_workload(args.workload)
    X, y, Xt, yt = work.load_data(None)
    genesis = dict(work.genesis_weights(args.seed))
    rows, started = [], time.time()
    for scheme in args.partitions.split(","):
        parts = partition(y, args.orgs, scheme, args.seed)
        clean: dict[str, float] = {}
        for attack in attacks:
            for rule in rules:
                t0 = time.time()
                cell = run_cell(work, (X, y, Xt, yt), parts, genesis, rule, attack, args.attackers, args.rounds,
                                args.epochs, args.seed)
                if attack == "none":
                    clean[rule] = cell["accuracy"]
                cell.update(partition=scheme, seconds=round(time.time() - t0, 2),
                            kept_of_own_clean=cell["accuracy"] / clean[rule] if clean.get(rule) else None,
                            kept_of_fedavg_clean=cell["accuracy"] / clean["fedavg"] if clean.get("fedavg") else None)
                rows.append(cell)
                print(f"{scheme:15s} {attack:10s} {rule:13s} acc {cell['accuracy']:.3f} "
                      f"kept {cell['kept_of_own_clean'] or 0:.2f} ({cell['seconds']:.0f} s)", file=sys.stderr, flush=True)
    write_results(args.out, args, started,
                  mode="in-process (same trainer, attacks, bounds and aggregation as the nodes; no chain)",
                  params=PARAMS, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
