"""Training: what a member runs locally each round. The trainer API (numpy weights in and out),
its PyTorch implementation, the options of local training (`TrainingConfig`), the built-in
workloads (model + data by name) and the partitioning of one data set among simulated members.

Names load on first use: importing `fedledger.node.training.config` alone does not import torch.
"""

import importlib

_EXPORTS = {
    "TrainingConfig": ".config",
    "Trainer": ".trainer", "TorchTrainer": ".trainer", "FitResult": ".trainer", "EvalResult": ".trainer",
    "Workload": ".workloads", "WORKLOADS": ".workloads", "get_workload": ".workloads",
    "partition": ".partition", "parse_scheme": ".partition",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
