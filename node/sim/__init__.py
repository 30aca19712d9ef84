"""`fedledger sim`: N organisations federate on the embedded devnet, each a separate node process
with its own key and IPFS node. `options` declares what a simulation is asked (every option of the
`sim` command); `run` starts the devnet, deploys, admits, creates the task, runs the nodes and
watches the chain; `faults` injects faults and attacks on real processes; `report` writes
report.json and accuracy.png.
"""

import importlib

_EXPORTS = {"SimOptions": ".options", "run_sim": ".run", "SimError": "..errors"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
