"""The peer: one organisation's node. `config` reads and writes its node config; `decide` is the
round protocol as a pure function of what the chain shows; `loop` observes, decides, acts and
records; `downloads` fetches what the chain vouches for; `recompute` is the one aggregate function
of leader, verifiers and auditor; `behaviour` is what a member could do otherwise (honest unless an
experiment injects `adversary`); `build` assembles a peer from a config.
"""

import importlib

_EXPORTS = {
    "NodeConfig": ".config", "Peer": ".loop", "build_peer": ".build", "decide": ".decide", "Step": ".decide",
    "build_aggregate": ".recompute", "UpdateRecord": ".recompute", "Behaviour": ".behaviour",
    "Adversary": ".adversary",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
