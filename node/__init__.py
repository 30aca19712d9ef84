"""The fedledger peer, installed as `fedledger.node`: the public Python API, and nothing else.

The map of the package, top to bottom (each layer imports only the layers below it; a test
checks it):

    cli/        the `fedledger` command line: one module per command group
    sim/        `fedledger sim`: N organisations on the embedded devnet
    audit/      `fedledger audit`: lineage from contract events, verified byte for byte
    ops/        operator work as a library: keys, members, tasks, node configs, network files
    library/    `fedledger.join`: the federation driven from a training loop of one's own
    peer/       one organisation's node: config, the protocol as decisions, the loop, downloads,
                the shared aggregate function, behaviours
    chain/      the contract client, new-block push, artifact, deployment file, keystores, devnet
    storage/    the IPFS client and dev daemon, repos on disk, the model file format
    training/   workloads as user code, the trainer API, local-training options, built-in
                workloads, partitioning
    protocol/   the contract's rules in Python: types, election, inputs digest, config checks,
                model metadata
    errors.py   one exception tree and the exit codes; defaults.py: every default once;
    procs.py    local processes (ports, PIDs, waiting)

The names below load on first use, so `import fedledger.node` is cheap.
"""

import importlib

_EXPORTS = {
    # errors
    "FedledgerError": ".errors", "InputError": ".errors", "UnreachableError": ".errors", "RefusedError": ".errors",
    "ChainError": ".errors", "ContractRevert": ".errors", "StorageError": ".errors", "ConfigError": ".errors",
    # the protocol
    "TaskConfig": ".protocol", "Phase": ".protocol", "election_order": ".protocol",
    # chain and storage
    "ChainClient": ".chain.client", "Deployment": ".chain.deployment", "IpfsClient": ".storage.ipfs",
    "ModelSpec": ".storage.modelfile", "read_model": ".storage.modelfile", "write_model_file": ".storage.modelfile",
    # training
    "TrainingConfig": ".training.config", "Trainer": ".training.api", "TorchTrainer": ".training.trainer",
    "Workload": ".training.api", "ArrayWorkload": ".training.api", "LocalData": ".training.api",
    "TorchWorkload": ".training.workloads", "WORKLOADS": ".training.workloads", "get_workload": ".training.workloads",
    # the peer
    "NodeConfig": ".peer.config", "Peer": ".peer.loop", "build_peer": ".peer.build",
    "build_aggregate": ".peer.recompute",
    # simulation and audit
    "SimOptions": ".sim.options", "run_sim": ".sim.run", "audit_run": ".audit.run", "audit_live": ".audit.run",
    # the client library for a training loop of one's own
    "join": ".library", "Federation": ".library",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
