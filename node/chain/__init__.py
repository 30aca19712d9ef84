"""The chain: the FedLedger client (one typed method per contract call, signed locally), new-block
push, the contract artifact, the deployment file, member keystores and the local devnet (Anvil).

Everything that talks JSON-RPC lives here; the contract's rules themselves are in `protocol/`.
Names load on first use (web3 costs about a second to import).
"""

import importlib

_EXPORTS = {
    "ChainClient": ".client", "Event": ".client", "TxResult": ".client",
    "HeadWatcher": ".heads", "Deployment": ".deployment", "deploy": ".deployment",
    "AnvilNode": ".devnet", "Devnet": ".devnet",
    "load_account": ".keys", "create_keystore": ".keys", "read_password": ".keys",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
