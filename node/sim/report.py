"""The simulation report: `report.json`, `accuracy.png` and the closing table.

Everything in it is rebuilt from the chain's events and the models on IPFS (each checked
against its on-chain sha256); the organisations' own metrics files add timings and their local
accuracy.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path


from ..protocol.types import FAIL_OUTCOMES, FailReason
from ..storage.modelfile import read_model
from ..training.workloads import centralized_baseline


def read_metrics(out: Path, names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        path = out / "orgs" / name / "metrics.jsonl"
        if path.exists():
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


TRACEBACK_START = "Traceback (most recent call last):"


def first_traceback(log: Path, limit: int = 8000) -> str | None:
    """The first Python traceback in a node's log, through its exception line, or None."""
    if not log.exists():
        return None
    lines = log.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if line.startswith(TRACEBACK_START):
            block = [line]
            for rest in lines[i + 1:]:
                block.append(rest)
                if rest and not rest[0].isspace():  # the exception line ends the traceback
                    break
            return "\n".join(block)[:limit]
    return None


def node_outcomes(out: Path, names: list[str], exit_codes: dict[str, int | None]) -> dict[str, dict]:
    """How each organisation's node process ended: its exit code (None: it had to be stopped)
    and the first traceback in its node.log. A clean run has 0 and None for every one."""
    return {name: {"exit_code": exit_codes.get(name), "traceback": first_traceback(out / "orgs" / name / "node.log")}
            for name in names}


def build_report(out: Path, admin, dep, task_id: int, opts, training, workload, ipfs, spec,
                 finalized_at: dict[int, float], t_start: float, names: list[str], members: list[str],
                 faults: list[dict] | None = None, exit_codes: dict[str, int | None] | None = None) -> dict:
    name_of = dict(zip(members, names))
    events = admin.events(from_block=dep.block, task=task_id)
    metrics = read_metrics(out, names)
    X_train, y_train, X_test, y_test = workload.load_data(opts.data)
    evaluator = workload.trainer((X_train, y_train), (X_test, y_test))

    by_round: dict[int, list] = defaultdict(list)
    for ev in events:
        if "round" in ev.args and ev.name != "RoundOpened":
            by_round[ev["round"]].append(ev)

    rounds = []
    models_dir = out / "models"
    models_dir.mkdir(exist_ok=True)
    for fin in (e for e in events if e.name == "RoundFinalized"):
        r = fin["round"]
        evs = by_round[r]
        attempts = [{"leader": name_of.get(e["leader"], e["leader"]), "epoch": e["epoch"], "attempt": e["attempt"],
                     "outcome": FAIL_OUTCOMES[FailReason(e["reason"])]} for e in evs if e.name == "AttemptFailed"]
        attempts.append({"leader": name_of.get(fin["leader"], fin["leader"]), "epoch": fin["epoch"],
                         "attempt": fin["attempt"], "outcome": "finalized"})
        path = models_dir / f"round{r}.safetensors"
        if not path.exists():
            ipfs.cat_to_file(fin["cid"], path, expected_sha256=fin["sha256"], max_bytes=spec.max_bytes)
        tensors, _ = read_model(path, fin["sha256"], spec)
        evaluation = evaluator.evaluate(tensors)
        tx_hashes = {e.tx_hash for e in evs}
        gas = sum(admin.gas_used(h) for h in tx_hashes)
        m = [x for x in metrics if x.get("round") == r]

        def longest(event: str, key: str) -> float:
            vals = [x["seconds"].get(key, 0.0) for x in m if x["event"] == event]
            return round(max(vals), 3) if vals else 0.0

        excluded = [x for pub in m if pub["event"] == "published" for x in pub.get("excluded", [])]
        rounds.append({
            "round": r,
            "leader": name_of.get(fin["leader"], fin["leader"]),
            "attempts": attempts,
            "participants": [name_of.get(e["member"], e["member"]) for e in evs if e.name == "UpdateSubmitted"],
            "excluded": excluded,
            **({"epsilon": max(x["privacy"]["epsilon"] for x in m if x["event"] == "submitted" and x.get("privacy"))}
               if any(x["event"] == "submitted" and x.get("privacy") for x in m) else {}),
            "model_sha256": fin["sha256"],
            "model_cid": fin["cid"],
            "parent_sha256": fin["parent"],
            "accuracy": round(evaluation.accuracy, 4),
            "loss": round(evaluation.loss, 4),
            "local_accuracy": {x["org"]: round(x["local_accuracy"], 4) for x in m if x["event"] == "submitted"},
            "gas_used": gas,
            "seconds": {
                "train": longest("submitted", "train"),
                "upload": longest("submitted", "upload"),
                "chain": longest("submitted", "chain"),
                "aggregate": longest("published", "aggregate"),
                "verify": longest("attested", "verify"),
                "total": round(finalized_at.get(r, 0) - finalized_at.get(r - 1, t_start), 3),
            },
        })

    t0 = time.perf_counter()
    centralized = centralized_baseline(workload, epochs=opts.rounds * training.epochs, seed=opts.seed,
                                       data_path=opts.data)
    report = {
        "config": {**asdict(opts), "training": training.to_dict()},
        "deployment": {"chain_id": dep.chain_id, "address": dep.address, "block": dep.block},
        "task": task_id,
        "members": [{"name": n, "address": a} for n, a in zip(names, members)],
        "rounds": rounds,
        "faults": faults or [],
        "nodes": node_outcomes(out, names, exit_codes or {}),
        "final_accuracy": rounds[-1]["accuracy"] if rounds else None,
        "centralized_accuracy": round(float(centralized), 4),
        "centralized_seconds": round(time.perf_counter() - t0, 2),
        "wall_seconds": round(time.time() - t_start, 2),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_accuracy(report, out / "accuracy.png")
    return report


def plot_accuracy(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r["round"] for r in report["rounds"]]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    orgs = sorted({o for r in report["rounds"] for o in r["local_accuracy"]})
    for org in orgs:
        xs = [r["round"] for r in report["rounds"] if org in r["local_accuracy"]]
        ys = [r["local_accuracy"][org] for r in report["rounds"] if org in r["local_accuracy"]]
        ax.plot(xs, ys, marker=".", linewidth=1, alpha=0.55, label=f"{org} local model")
    ax.plot(rounds, [r["accuracy"] for r in report["rounds"]], marker="o", linewidth=2.5, color="black",
            label="global model")
    ax.axhline(report["centralized_accuracy"], color="tab:red", linestyle="--", linewidth=1.5,
               label="centralized baseline")
    cfg = report["config"]
    ax.set_title(f"{cfg['workload']}: {cfg['orgs']} organisations, {cfg['partition']}, {cfg['rule']}")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_xticks(rounds)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
