"""Assemble a peer from an organisation's node config: its key, the chain, its IPFS node, its
workload and data, its behaviour."""

from __future__ import annotations

import zlib

from ..chain.deployment import Deployment
from ..chain.heads import HeadWatcher
from ..chain.keys import load_account, read_password
from ..errors import ConfigError, InputError
from ..storage.ipfs import IpfsClient
from ..training.api import Trainer, load_workload, tensor_differences
from ..training.partition import partition
from ..training.workloads import get_workload
from .adversary import Adversary
from .behaviour import Behaviour
from .config import NodeConfig
from .loop import Peer


class WorkloadMismatch(InputError):
    """The organisation's workload does not produce the model the task trains."""


def local_training(cfg: NodeConfig) -> tuple[Trainer, int, Behaviour]:
    """(trainer over this organisation's data, its training seed, its behaviour) from [workload]."""
    w = cfg.workload
    behaviour: Behaviour = Behaviour()
    if w.object is not None:
        if w.num_orgs != 1 or w.org_index != 0:
            raise ConfigError(f"[workload] org_index and num_orgs slice a built-in data set (a simulation); your own "
                              f"workload {w.object!r} reads your own data: remove them")
        workload = load_workload(w.object, [w.path] if w.path else [])
        member_seed = cfg.training.seed * 1000 + zlib.crc32(cfg.name.encode()) % 1000
        if cfg.adversary:
            behaviour = Adversary.from_dict({**cfg.adversary, "seed": member_seed})
        return workload.trainer_for(workload.local_data(w.data)), member_seed, behaviour
    workload = get_workload(w.builtin)
    X_train, y_train, X_test, y_test = workload.load_data(w.data)
    mine = partition(y_train, w.num_orgs, w.partition, w.partition_seed)[w.org_index]
    member_seed = cfg.training.seed * 1000 + w.org_index
    if cfg.adversary:
        behaviour = Adversary.from_dict({**cfg.adversary, "seed": member_seed})
    y_mine = behaviour.training_labels(y_train[mine], workload.num_classes)
    return workload.trainer((X_train[mine], y_mine), (X_test, y_test)), member_seed, behaviour


def build_peer(cfg: NodeConfig, trainer: Trainer | None = None) -> Peer:
    """The peer of `cfg`. With `trainer` (the client library's), [workload] is not read and the
    trainer's weights are checked when they are submitted instead of at start."""
    account = load_account(cfg.keystore.path, read_password(cfg.keystore.password))
    dep = Deployment.load(cfg.chain.deployment)
    chain = dep.client(rpc_url=cfg.chain.rpc_url, account=account, poa=cfg.chain.poa)
    if cfg.chain.chain_id is not None and chain.chain_id != cfg.chain.chain_id:
        raise ConfigError(f"{cfg.chain.rpc_url} serves chain id {chain.chain_id}, the config says {cfg.chain.chain_id}")
    if not chain.is_member(account.address):
        raise InputError(
            f"the key in {cfg.keystore.path} ({account.address}) is not a member of the consortium at {dep.address}: "
            f"ask the admin to run `fedledger member add {account.address} --name {cfg.name}`"
        )
    ipfs = IpfsClient(cfg.ipfs.api_url)
    own = trainer is None
    if own:
        trainer, member_seed, behaviour = local_training(cfg)
    else:
        member_seed, behaviour = cfg.training.seed * 1000 + zlib.crc32(cfg.name.encode()) % 1000, Behaviour()
    peer = Peer(cfg.organisation, chain, ipfs, cfg.task.id, trainer, cfg.training, storage=cfg.ipfs,
                from_block=dep.block, member_seed=member_seed, behaviour=behaviour,
                heads=HeadWatcher(cfg.chain.ws_url, name=cfg.name) if cfg.chain.ws_url else None)
    if own:
        problems = tensor_differences(trainer.get_weights(), peer.spec.tensors)
        if problems:
            what = cfg.workload.object or cfg.workload.builtin
            raise WorkloadMismatch(f"workload {what!r} does not build the model task {cfg.task.id} trains: "
                                   f"{'; '.join(problems)}")
    return peer
