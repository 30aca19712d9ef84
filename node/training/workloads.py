"""Torch workloads, and the built-in ones: a model, its data, and the local training defaults, by name.

A workload is what one organisation trains: its model and its local data (training/api.py). The
built-in ones are `TorchWorkload`s, the same class a user's own torch workload is.
``get_workload(name)`` returns one; `resolve_workload(name_or_object)` also imports a user's
"module:attribute"; `WORKLOADS` is the registry every help string and validator reads:

    digits-mlp      scikit-learn's 8x8 digits (1797 images), pixels / 16, MLP 64-64-10
    digits-wide     the same data, MLP 64-3136-3136-10: 10.07 M parameters, a 40 MB model file, to
                    measure what moving and checking real-sized models costs (bench/big_model.py);
                    one local epoch takes well under a second on one core
    breast-cancer   scikit-learn's Wisconsin breast cancer (569 patients, 30 features), a
                    hospital-style tabular workload: standardized with the TRAINING split's mean and
                    std only, MLP 30-16-2
    cifar10-cnn     CIFAR-10 from the official *binary* files, LeNet-style CNN (conv 3->6 5x5,
                    ReLU, max-pool 2, conv 6->16 5x5, ReLU, max-pool 2, FC 400-120-84-10)

The scikit-learn workloads split 80/20, stratified by label, with seed 0, so every member and the
report see the same split. CIFAR-10 keeps its official split (data_batch_1..5 for training,
test_batch for testing), as the literature reports on it. Its pixels stay uint8 in memory
(150 MB for the training set rather than 600 MB as float32, which matters with one process per
member); the model's first step scales them to [-1, 1].

CIFAR-10 is read from the binary version only (cifar-10-binary.tar.gz: records of 1 label byte
and 3072 pixel bytes); the "python version" is pickle, which fedledger never loads.
"""

from __future__ import annotations

import functools
import os
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, WorkloadDataError
from .api import LocalData, Trainer, Weights, Workload, load_workload
from .config import TrainingConfig

if TYPE_CHECKING:
    from torch import nn

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

SPLIT_SEED = 0
TEST_FRACTION = 0.2

#: digits-wide's hidden width: 64*W + W*W + 10*W + 2*W + 10 = 10,072,842 parameters.
WIDE_HIDDEN = 3136

CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch.bin"
CIFAR_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"


@dataclass(frozen=True)
class TorchWorkload(Workload):
    """A torch model and local data; the optional hooks replace fedledger's training loop and evaluation.

    `train_fn(model, train, config)` trains `model` (loaded with the round's global weights) in
    place for one round and may return a dict of metrics; `evaluate_fn(model, test)` returns at
    least {"loss": ..., "accuracy": ...}. Without them `train` and `test` must be (X, y) arrays.
    """

    name: str
    #: Builds a fresh model; its initial weights depend on torch's RNG (see `initial_weights`).
    model_fn: Callable[[], nn.Module]
    #: ``load_data(data_path) -> LocalData | (X_train, y_train, X_test, y_test)``.
    load_data: Callable[[str | None], Any]
    default_config: TrainingConfig = field(default_factory=TrainingConfig)
    description: str = ""
    num_classes: int | None = None
    needs_data_path: bool = False
    train_fn: Callable[[Any, Any, TrainingConfig], Mapping[str, float] | None] | None = None
    evaluate_fn: Callable[[Any, Any], Mapping[str, float]] | None = None

    def initial_weights(self, seed: int) -> Weights:
        import torch

        from .trainer import weights_of

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return weights_of(self.model_fn())

    genesis_weights = initial_weights

    def local_data(self, data: str | None) -> LocalData:
        return self._load(self.load_data, data)

    def trainer_for(self, local: LocalData, *, num_threads: int | None = 1) -> Trainer:
        from .trainer import TorchTrainer

        return TorchTrainer(self.model_fn, local.train, local.test, num_threads=num_threads, train_fn=self.train_fn,
                            evaluate_fn=self.evaluate_fn, num_samples=local.samples())

    def trainer(self, train: Any, test: Any = None, *, num_threads: int | None = 1) -> Trainer:
        """A trainer over (X, y) training data and optional test data."""
        return self.trainer_for(LocalData(train, test), num_threads=num_threads)



# --------------------------------------------------------------------------- models


@functools.cache
def _torch_models() -> SimpleNamespace:
    """The built-in models' classes, defined on first use: importing torch costs about two seconds,
    and listing the workloads (every command's --help) must not pay it."""
    import torch
    from torch import nn

    class MLP(nn.Module):
        """Linear -> ReLU -> Linear; tensors fc1.weight, fc1.bias, fc2.weight, fc2.bias."""

        def __init__(self, n_in: int, n_hidden: int, n_out: int) -> None:
            super().__init__()
            self.fc1 = nn.Linear(n_in, n_hidden)
            self.fc2 = nn.Linear(n_hidden, n_out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x)))


    class WideMLP(nn.Module):
        """Linear -> ReLU -> Linear -> ReLU -> Linear; tensors fc1, fc2, fc3 (weight, bias)."""

        def __init__(self, n_in: int, n_hidden: int, n_out: int) -> None:
            super().__init__()
            self.fc1 = nn.Linear(n_in, n_hidden)
            self.fc2 = nn.Linear(n_hidden, n_hidden)
            self.fc3 = nn.Linear(n_hidden, n_out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))

    class CifarCNN(nn.Module):
        """The LeNet-style CNN of the PyTorch CIFAR-10 tutorial; takes uint8 or float NCHW images."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not x.is_floating_point():
                x = x.to(torch.float32) / 127.5 - 1.0  # bytes 0..255 to [-1, 1]
            x = self.pool(torch.relu(self.conv1(x)))
            x = self.pool(torch.relu(self.conv2(x)))
            x = torch.flatten(x, 1)
            x = torch.relu(self.fc1(x))
            x = torch.relu(self.fc2(x))
            return self.fc3(x)

    return SimpleNamespace(MLP=MLP, WideMLP=WideMLP, CifarCNN=CifarCNN)


def __getattr__(name: str):
    if name in ("MLP", "WideMLP", "CifarCNN"):
        return getattr(_torch_models(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- data


def stratified_split(X: np.ndarray, y: np.ndarray) -> Data:
    """The fixed 80/20 split, stratified by label, seed 0."""
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    return X_train, y_train, X_test, y_test


def standardize(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, X_test) scaled by the TRAINING split's per-feature mean and std; also (mean, std).

    Test statistics never leak into the scaling. A constant feature keeps std 1.
    """
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (
        ((X_train - mean) / std).astype(np.float32),
        ((X_test - mean) / std).astype(np.float32),
        mean,
        std,
    )


def _no_path(name: str, data_path: str | None) -> None:
    if data_path is not None:
        raise WorkloadDataError(f"{name} uses the data bundled with scikit-learn; do not pass a data path")


def load_digits_data(data_path: str | None = None) -> Data:
    from sklearn.datasets import load_digits

    _no_path("digits-mlp", data_path)
    X, y = load_digits(return_X_y=True)
    X_train, y_train, X_test, y_test = stratified_split((X / 16.0).astype(np.float32), y.astype(np.int64))
    return X_train, y_train, X_test, y_test


def load_breast_cancer_data(data_path: str | None = None) -> Data:
    from sklearn.datasets import load_breast_cancer

    _no_path("breast-cancer", data_path)
    X, y = load_breast_cancer(return_X_y=True)
    X_train, y_train, X_test, y_test = stratified_split(X.astype(np.float64), y.astype(np.int64))
    X_train, X_test, _, _ = standardize(X_train, X_test)
    return X_train, y_train, X_test, y_test


def parse_cifar_records(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary records to (images uint8 [N, 3, 32, 32], labels int64 [N]).

    Each record is 1 label byte (0..9) then 3072 pixel bytes: 1024 red, 1024 green, 1024 blue,
    each 32x32 row-major, which is NCHW as laid out.
    """
    if len(data) == 0 or len(data) % CIFAR_RECORD:
        raise WorkloadDataError(
            f"{source} is {len(data)} bytes, not a positive multiple of the {CIFAR_RECORD}-byte CIFAR-10 "
            "record (1 label byte + 3072 pixel bytes): a truncated download, CIFAR-100 (2 label bytes) "
            f"or another format; get the binary version from {CIFAR_BINARY_URL}"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise WorkloadDataError(
            f"{source}: record {bad} has label {labels[bad]}, CIFAR-10 labels are 0..9; the file is "
            "malformed or not CIFAR-10"
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def _refuse_pickle(where: str) -> WorkloadDataError:
    return WorkloadDataError(
        f"{where} is the CIFAR-10 python version, which is pickle: fedledger never unpickles data. "
        f"Download the binary version ({CIFAR_BINARY_URL}) and pass its cifar-10-batches-bin directory "
        "or the .tar.gz itself"
    )


def _read_cifar_dir(path: Path) -> dict[str, bytes]:
    if not (path / CIFAR_TEST_FILE).exists() and (path / "cifar-10-batches-bin").is_dir():
        path = path / "cifar-10-batches-bin"
    wanted = (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
    missing = [f for f in wanted if not (path / f).is_file()]
    if missing:
        if (path / "data_batch_1").exists() or (path / "batches.meta").exists() or (path / "cifar-10-batches-py").exists():
            raise _refuse_pickle(str(path))
        raise WorkloadDataError(
            f"{path} lacks the CIFAR-10 binary file(s) {missing}; pass the cifar-10-batches-bin directory "
            f"extracted from {CIFAR_BINARY_URL} (or the .tar.gz itself)"
        )
    return {f: (path / f).read_bytes() for f in wanted}


def _read_cifar_tar(path: Path) -> dict[str, bytes]:
    wanted = (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                base = os.path.basename(m.name)
                if m.isfile() and base in wanted and base not in found:
                    f = tar.extractfile(m)
                    assert f is not None
                    found[base] = f.read()
            if not found and any(os.path.basename(m.name) in ("data_batch_1", "batches.meta") for m in members):
                raise _refuse_pickle(str(path))
    except tarfile.TarError as e:
        raise WorkloadDataError(f"{path} is not a readable tar archive ({e}); pass the CIFAR-10 binary .tar.gz or its extracted directory") from None
    missing = [f for f in wanted if f not in found]
    if missing:
        raise WorkloadDataError(f"{path} lacks the CIFAR-10 binary file(s) {missing}; expected the archive {CIFAR_BINARY_URL}")
    return found


def load_cifar10_data(data_path: str | None) -> Data:
    """CIFAR-10 from the binary files: a cifar-10-batches-bin directory (or its parent), or the
    cifar-10-binary.tar.gz archive. Official split; images uint8 NCHW, labels int64."""
    if data_path is None:
        raise WorkloadDataError(
            f"cifar10-cnn needs a data path: the cifar-10-batches-bin directory extracted from {CIFAR_BINARY_URL}, "
            "or the .tar.gz itself"
        )
    path = Path(data_path).expanduser()
    if not path.exists():
        raise WorkloadDataError(f"CIFAR-10 data path {path} does not exist; download {CIFAR_BINARY_URL}")
    if path.is_dir():
        if path.name == "cifar-10-batches-py":
            raise _refuse_pickle(str(path))
        files = _read_cifar_dir(path)
    else:
        files = _read_cifar_tar(path)
    parts = [parse_cifar_records(files[f], f"{path}:{f}") for f in CIFAR_TRAIN_FILES]
    X_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    X_test, y_test = parse_cifar_records(files[CIFAR_TEST_FILE], f"{path}:{CIFAR_TEST_FILE}")
    return X_train, y_train, X_test, y_test


# --------------------------------------------------------------------------- registry


WORKLOADS: dict[str, TorchWorkload] = {
    t.name: t
    for t in (
        TorchWorkload(
            name="digits-mlp",
            description="scikit-learn 8x8 digits, pixels/16, MLP 64-64-10",
            num_classes=10,
            model_fn=lambda: _torch_models().MLP(64, 64, 10),
            load_data=load_digits_data,
            default_config=TrainingConfig(lr=0.05, momentum=0.9, batch_size=32),
        ),
        TorchWorkload(
            name="digits-wide",
            description="scikit-learn 8x8 digits, pixels/16, MLP 64-3136-3136-10 (10.07 M parameters, 40 MB)",
            num_classes=10,
            model_fn=lambda: _torch_models().WideMLP(64, WIDE_HIDDEN, 10),
            load_data=load_digits_data,
            default_config=TrainingConfig(lr=0.01, momentum=0.9, batch_size=32),
        ),
        TorchWorkload(
            name="breast-cancer",
            description="scikit-learn Wisconsin breast cancer, standardized on the training split, MLP 30-16-2",
            num_classes=2,
            model_fn=lambda: _torch_models().MLP(30, 16, 2),
            load_data=load_breast_cancer_data,
            default_config=TrainingConfig(lr=0.01, momentum=0.9, batch_size=16),
        ),
        TorchWorkload(
            name="cifar10-cnn",
            description="CIFAR-10 (binary files), LeNet-style CNN 3-6-16 conv, FC 400-120-84-10",
            num_classes=10,
            model_fn=lambda: _torch_models().CifarCNN(),
            load_data=load_cifar10_data,
            default_config=TrainingConfig(lr=0.01, momentum=0.9, batch_size=32),
            needs_data_path=True,
        ),
    )
}


def get_workload(name: str) -> TorchWorkload:
    """The built-in workload called ``name``; `InputError` listing the known ones otherwise."""
    try:
        return WORKLOADS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown workload {name!r}; built-in workloads: {', '.join(WORKLOADS)}, or your own as "
                         "MODULE:ATTRIBUTE") from None


def resolve_workload(spec: str, search_path: Sequence[Path | str] = ()) -> Workload:
    """A built-in workload by name, or a user's workload object by "module:attribute"."""
    if ":" in spec:
        return load_workload(spec, search_path)
    return get_workload(spec)


def centralized_baseline(
    workload: Workload | str,
    epochs: int,
    seed: int,
    *,
    data_path: str | None = None,
    config: TrainingConfig | None = None,
    num_threads: int | None = 1,
) -> float:
    """Test accuracy of the workload's model trained on the pooled training data for ``epochs`` epochs.

    The reference a federation is compared with (the report's ``centralized_accuracy``): the
    same genesis model (``genesis_weights(seed)``), the same local optimizer settings (the workload's
    default config unless given) and as many passes over the data as the federation made
    (rounds x local epochs).
    """
    spec = get_workload(workload) if isinstance(workload, str) else workload
    cfg = (config or spec.default_config).replace(epochs=epochs, seed=seed)
    trainer = spec.trainer_for(spec.local_data(data_path), num_threads=num_threads)
    result = trainer.fit(spec.initial_weights(seed), cfg)
    return trainer.evaluate(result.weights).accuracy
