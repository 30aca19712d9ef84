"""The Flower ClientApp: one fedledger member's local training and evaluation, over the Message API.

The member's index is the SuperNode's ``partition-id`` (``--node-config`` in deployment; set by
Flower in simulation). Training time is measured around `TorchTrainer.fit` alone and sent back
as ``train-seconds``, so the ServerApp can tell a round's training from its overhead.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedbench.task import fit_config, fit_seed, member_trainer

app = ClientApp()


def _trainer(context: Context):
    rc = context.run_config
    return member_trainer(str(rc["task"]), str(rc["partition"]), int(rc["seed"]),
                          int(context.node_config["partition-id"]), int(context.node_config["num-partitions"]))


def _weights(msg: Message) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in msg.content["arrays"].items()}


@app.train()
def train(msg: Message, context: Context) -> Message:
    t0 = time.perf_counter()
    trainer = _trainer(context)
    cfg = msg.content["config"]
    rc = context.run_config
    org = int(context.node_config["partition-id"])
    config = fit_config(lr=float(cfg["lr"]), momentum=float(cfg["momentum"]), batch_size=int(cfg["batch-size"]),
                        local_epochs=int(cfg["local-epochs"]), seed=fit_seed(int(rc["seed"]), org, int(cfg["server-round"])))
    weights = _weights(msg)
    t1 = time.perf_counter()
    result = trainer.fit(weights, config)
    t2 = time.perf_counter()
    arrays = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in result.weights.items()})
    metrics = MetricRecord({"num-examples": result.num_samples, "train-seconds": t2 - t1,
                            "setup-seconds": t1 - t0, "partition-id": org})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    trainer = _trainer(context)
    t0 = time.perf_counter()
    ev = trainer.evaluate(_weights(msg))
    metrics = MetricRecord({"num-examples": ev.num_samples, "eval-accuracy": ev.accuracy, "eval-loss": ev.loss,
                            "eval-seconds": time.perf_counter() - t0})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
