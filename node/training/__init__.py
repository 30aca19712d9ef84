"""Training: what a member runs locally each round. The workload and trainer API (numpy weights
in and out; a workload is user code), its PyTorch implementation, the options of local training (`TrainingConfig`), the built-in
workloads (model + data by name) and the partitioning of one data set among simulated members.

Names load on first use: importing `fedledger.node.training.config` alone does not import torch.
"""

import importlib

_EXPORTS = {
    "TrainingConfig": ".config",
    "Trainer": ".api", "FitResult": ".api", "EvalResult": ".api", "TorchTrainer": ".trainer",
    "Workload": ".api", "ArrayWorkload": ".api", "LocalData": ".api", "load_workload": ".api",
    "TorchWorkload": ".workloads", "WORKLOADS": ".workloads", "get_workload": ".workloads",
    "resolve_workload": ".workloads",
    "partition": ".partition", "parse_scheme": ".partition",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
