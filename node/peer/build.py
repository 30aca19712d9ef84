"""Assemble a peer from an organisation's node config: its key, the chain, its IPFS node, its
workload and data, its behaviour."""

from __future__ import annotations

from ..chain.deployment import Deployment
from ..chain.heads import HeadWatcher
from ..chain.keys import load_account, read_password
from ..errors import ConfigError, InputError
from ..storage.ipfs import IpfsClient
from ..training.partition import partition
from ..training.workloads import get_workload
from .adversary import Adversary
from .behaviour import Behaviour
from .config import NodeConfig
from .loop import Peer


def build_peer(cfg: NodeConfig) -> Peer:
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

    w = cfg.workload
    workload = get_workload(w.builtin)
    X_train, y_train, X_test, y_test = workload.load_data(w.data)
    mine = partition(y_train, w.num_orgs, w.partition, w.partition_seed)[w.org_index]
    member_seed = cfg.training.seed * 1000 + w.org_index
    behaviour: Behaviour = Adversary.from_dict({**cfg.adversary, "seed": member_seed}) if cfg.adversary else Behaviour()
    y_mine = behaviour.training_labels(y_train[mine], workload.num_classes)
    trainer = workload.trainer((X_train[mine], y_mine), (X_test, y_test))
    return Peer(cfg.organisation, chain, ipfs, cfg.task.id, trainer, cfg.training, storage=cfg.ipfs,
                from_block=dep.block, member_seed=member_seed, behaviour=behaviour,
                heads=HeadWatcher(cfg.chain.ws_url, name=cfg.name) if cfg.chain.ws_url else None)
