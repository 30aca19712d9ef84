"""The Flower ServerApp: Flower's own FedAvg strategy over N clients, timed round by round.

Every round samples all N clients (``fraction-train`` 1), trains, aggregates with Flower's FedAvg
(weighted by ``num-examples``), then runs Flower's federated evaluation on every client
(``fraction-evaluate``) and a centralized evaluation of the global model on the test split (the
same evaluation fedledger's report makes). Writes ``results-path`` (JSON):

    rounds[].seconds      wall time from the end of the previous round (round 1: from the moment
                          round 1 was configured) to the end of this one
    rounds[].train_max    the slowest client's TorchTrainer.fit time in the round
    rounds[].accuracy     the global model's accuracy on the test split
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedbench.task import genesis, global_evaluator

app = ServerApp()


class TimedFedAvg(FedAvg):
    """Flower's FedAvg, unchanged, with timestamps at the round boundaries."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.marks: dict[int, dict] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        self.marks.setdefault(server_round, {})["configured"] = time.time()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        m = self.marks.setdefault(server_round, {})
        m["trained"] = time.time()
        ok = [r for r in replies if r.has_content()]
        m["train_seconds"] = [float(r.content["metrics"]["train-seconds"]) for r in ok]
        m["setup_seconds"] = [float(r.content["metrics"]["setup-seconds"]) for r in ok]
        m["replies"] = len(ok)
        m["errors"] = len(replies) - len(ok)
        out = super().aggregate_train(server_round, replies)
        m["aggregated"] = time.time()
        return out

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        out = super().aggregate_evaluate(server_round, replies)
        self.marks.setdefault(server_round, {})["client_evaluated"] = time.time()
        return out


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    rounds, n = int(rc["num-server-rounds"]), int(rc["num-clients"])
    task, seed = str(rc["task"]), int(rc["seed"])
    results_path = Path(str(rc["results-path"]))
    strategy = TimedFedAvg(fraction_train=1.0, fraction_evaluate=float(rc["fraction-evaluate"]),
                           min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
    evaluator = global_evaluator(task)
    history: dict[int, dict] = {}

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        t0 = time.time()
        ev = evaluator.evaluate({k: v.numpy() for k, v in arrays.items()})
        history[server_round] = {"accuracy": ev.accuracy, "loss": ev.loss, "end": time.time(),
                                 "eval_seconds": time.time() - t0}
        return MetricRecord({"accuracy": ev.accuracy, "loss": ev.loss})

    initial = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in genesis(task, seed).items()})
    train_config = ConfigRecord({"lr": float(rc["lr"]), "momentum": float(rc["momentum"]),
                                 "batch-size": int(rc["batch-size"]), "local-epochs": int(rc["local-epochs"])})
    t_start = time.time()
    strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds, train_config=train_config,
                   evaluate_fn=evaluate_fn)
    t_done = time.time()

    rows = []
    prev_end = strategy.marks[1]["configured"]
    for r in range(1, rounds + 1):
        m, h = strategy.marks[r], history[r]
        rows.append({
            "round": r,
            "seconds": round(h["end"] - prev_end, 4),
            "train_max": round(max(m["train_seconds"]), 4) if m["train_seconds"] else None,
            "train_sum": round(sum(m["train_seconds"]), 4),
            "setup_max": round(max(m["setup_seconds"]), 4) if m["setup_seconds"] else None,
            "train_phase_seconds": round(m["trained"] - m["configured"], 4),
            "aggregate_seconds": round(m["aggregated"] - m["trained"], 4),
            "evaluate_phase_seconds": round(m.get("client_evaluated", m["aggregated"]) - m["aggregated"], 4),
            "replies": m["replies"], "errors": m["errors"],
            "accuracy": round(h["accuracy"], 4), "loss": round(h["loss"], 4),
        })
        prev_end = h["end"]
    doc = {"mode": str(rc["mode"]), "clients": n, "rounds": rows, "final_accuracy": rows[-1]["accuracy"],
           "serverapp_seconds": round(t_done - t_start, 3), "initial_accuracy": round(history[0]["accuracy"], 4)}
    results_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = results_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(results_path)
