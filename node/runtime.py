"""Assemble a peer from an organisation's config: its key, the chain, its IPFS node, its data."""

from __future__ import annotations

from .adversary import Adversary, flip_labels
from .chain import HeadWatcher
from .config import NodeConfig
from .deploy import Deployment
from .ipfs import IpfsClient
from .keys import load_account, read_password
from .peer import Peer


def build_peer(cfg: NodeConfig) -> Peer:
    from .partition import partition
    from .tasks import get_task
    from .trainer import FitConfig

    account = load_account(cfg.keystore, read_password(cfg.password))
    dep = Deployment.load(cfg.deployment)
    chain = dep.client(rpc_url=cfg.rpc_url, account=account, poa=cfg.poa)
    if cfg.chain_id is not None and chain.chain_id != cfg.chain_id:
        raise ValueError(f"{cfg.rpc_url} serves chain id {chain.chain_id}, the config says {cfg.chain_id}")
    if not chain.is_member(account.address):
        raise ValueError(
            f"the key in {cfg.keystore} ({account.address}) is not a member of the consortium at {dep.address}: "
            f"ask the admin to run `fedledger member add {account.address} {cfg.name}`"
        )
    ipfs = IpfsClient(cfg.ipfs_api)

    spec = get_task(cfg.builtin)
    X_train, y_train, X_test, y_test = spec.load_data(cfg.data)
    parts = partition(y_train, cfg.num_orgs, cfg.partition, cfg.partition_seed)
    mine = parts[cfg.org_index]
    adversary = Adversary.from_dict(cfg.adversary)
    y_mine = y_train[mine]
    if adversary.attack == "labelflip":
        y_mine = flip_labels(y_mine, spec.num_classes)
    trainer = spec.trainer((X_train[mine], y_mine), (X_test, y_test))
    t = cfg.training
    fit = FitConfig(local_epochs=t.epochs, lr=t.lr, momentum=t.momentum, batch_size=t.batch_size, mu=t.mu,
                    seed=t.seed, fedcurv_lambda=t.fedcurv_lambda)
    return Peer(cfg.name, chain, ipfs, cfg.task, cfg.work_dir, trainer, fit, from_block=dep.block,
                poll_seconds=cfg.poll_seconds, keep_others_updates=cfg.keep_others_updates,
                seed=t.seed * 1000 + cfg.org_index, adversary=adversary, lr_decay=t.lr_decay,
                prefetch_max_bytes=int(cfg.prefetch_max_mb * 2**20), gateways=cfg.gateways,
                heads=HeadWatcher(cfg.ws_url, name=cfg.name) if cfg.ws_url else None)
