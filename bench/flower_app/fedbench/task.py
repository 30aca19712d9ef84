"""The task, shared with fedledger: every piece comes from `fedledger.node`, so both sides train
the same model on the same split with the same optimizer and seeds.

The per-round seed of a member is fedledger's: the peer seed is ``seed * 1000 + org_index``
(`fedledger.node.peer.build.build_peer`) and a round's fit seed is ``peer_seed * 100_003 + round``
(`fedledger.node.peer.Peer._fit_config`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fedledger.node.training.partition import partition
from fedledger.node.training.config import TrainingConfig
from fedledger.node.training.trainer import TorchTrainer
from fedledger.node.training.workloads import get_workload


def fit_seed(seed: int, org_index: int, server_round: int) -> int:
    return (seed * 1000 + org_index) * 100_003 + server_round


@lru_cache(maxsize=4)
def data(task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return get_workload(task).load_data(None)


@lru_cache(maxsize=64)
def member_trainer(task: str, scheme: str, seed: int, org_index: int, num_orgs: int) -> TorchTrainer:
    """The trainer a fedledger member with this index would build: its part of the training split,
    the whole test split. Cached, so a Ray actor in simulation builds it once."""
    X_train, y_train, X_test, y_test = data(task)
    mine = partition(y_train, num_orgs, scheme, seed)[org_index]
    return get_workload(task).trainer((X_train[mine], y_train[mine]), (X_test, y_test))


@lru_cache(maxsize=4)
def global_evaluator(task: str) -> TorchTrainer:
    X_train, y_train, X_test, y_test = data(task)
    return get_workload(task).trainer((X_train, y_train), (X_test, y_test))


def genesis(task: str, seed: int) -> dict[str, np.ndarray]:
    return get_workload(task).genesis_weights(seed)


def fit_config(lr: float, momentum: float, batch_size: int, local_epochs: int, seed: int) -> TrainingConfig:
    return TrainingConfig(lr=lr, momentum=momentum, batch_size=batch_size, epochs=local_epochs, seed=seed)
