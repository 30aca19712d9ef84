"""fedledger: decentralized federated learning coordinated by a smart contract.

What an organisation's own code needs, in one place:

    fedledger.join(config)      the federation from a training loop of one's own (docs/library.md)
    fedledger.TorchWorkload     a torch model and local data, trained by the node (docs/workloads.md)
    fedledger.ArrayWorkload     numpy weights in and out: scikit-learn, JAX, plain numpy
    fedledger.LocalData         what a workload's load_data returns
    fedledger.TrainingConfig    local-training settings (epochs, lr, batch size, ...)

The node itself is `fedledger.node` (its layers are listed there), the aggregation rules
`fedledger.aggregation`. Names load on first use: `import fedledger` is cheap.
"""

import importlib

_EXPORTS = {
    "join": "fedledger.node.library", "Federation": "fedledger.node.library", "Round": "fedledger.node.library",
    "TorchWorkload": "fedledger.node.training.workloads", "ArrayWorkload": "fedledger.node.training.api",
    "Workload": "fedledger.node.training.api", "LocalData": "fedledger.node.training.api",
    "TrainingConfig": "fedledger.node.training.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fedledger' has no attribute {name!r}")
