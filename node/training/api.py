"""A workload is user code: what one organisation trains, as an object in its own module.

The node config names it (`[workload] object = "hospital_fl:workload"`, `data = "/data/ours"`)
and the node imports it; the built-in workloads (training/workloads.py) are instances of the same
classes. Two levels:

    TorchWorkload   a torch model (`model_fn`) and local data (`load_data`); fedledger trains it
                    with SGD (FedProx and FedCurv included) unless the workload brings its own
                    loop (`train_fn`) and evaluation (`evaluate_fn`)
    ArrayWorkload   numpy weights in, numpy weights out: `initial_weights`, `fit`, `evaluate`;
                    scikit-learn, JAX or plain numpy take part this way

Either way a model is ``dict[str, np.ndarray]`` of float arrays, and every member of a task must
produce the same tensor names, shapes and dtypes (the task's model spec, checked at node start).

`load_data(path)` returns a `LocalData` (or the tuple ``(X_train, y_train, X_test, y_test)``):
the organisation's own training data and a test set it evaluates on. With the built-in torch loop
the data are arrays (features, integer class labels); with your own hooks they are whatever your
hooks take.

`load_workload("module:attr", search_path)` imports a user's workload: the attribute may be a
workload or a function returning one. It runs the user's code, which is the organisation's own
(the node config is its own file); nothing received from another member is ever imported.
"""

from __future__ import annotations

import importlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, WorkloadDataError
from .config import TrainingConfig

Weights = dict[str, np.ndarray]


# --------------------------------------------------------------------------- the trainer API


@dataclass(frozen=True)
class FitResult:
    """A member's locally trained model for one round."""

    weights: Weights
    #: Training examples the update was fitted on (the FedAvg weight).
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    num_samples: int


class Trainer(ABC):
    """What a peer needs from local training; numpy in, numpy out, like Flower's NumPyClient."""

    @abstractmethod
    def get_weights(self) -> Weights:
        """The current local model, tensor name to array."""

    @abstractmethod
    def fit(self, weights: Mapping[str, np.ndarray], config: TrainingConfig) -> FitResult:
        """Train from ``weights`` (the parent global model) on local data; return the update."""

    @abstractmethod
    def evaluate(self, weights: Mapping[str, np.ndarray]) -> EvalResult:
        """Loss and accuracy of ``weights`` on local test data."""


# --------------------------------------------------------------------------- workloads


@dataclass
class LocalData:
    """One organisation's data: what it trains on and what it tests on."""

    train: Any
    test: Any = None
    #: Training examples (the FedAvg weight); default: the length of the labels or of `train`.
    num_samples: int | None = None

    def samples(self) -> int:
        if self.num_samples is not None:
            return int(self.num_samples)
        train = self.train
        if isinstance(train, tuple) and len(train) == 2:
            return len(train[1])
        return len(train)

    @classmethod
    def of(cls, loaded: Any, source: str) -> "LocalData":
        """What a `load_data` returned, as LocalData: LocalData itself, or (X_train, y_train, X_test, y_test)."""
        if isinstance(loaded, LocalData):
            return loaded
        if isinstance(loaded, tuple) and len(loaded) == 4:
            return cls(train=(loaded[0], loaded[1]), test=(loaded[2], loaded[3]))
        raise WorkloadDataError(f"{source} returned {type(loaded).__name__}; return a fedledger LocalData(train=..., "
                                "test=...) or the tuple (X_train, y_train, X_test, y_test)")


class Workload(ABC):
    """What every workload gives the node: a name, default training settings, the initial model
    of a task (for `fedledger task create`), its data and a trainer on that data."""

    name: str
    description: str
    default_config: TrainingConfig
    #: Whether `load_data` needs a path (some built-ins ship their data).
    needs_data_path: bool
    #: Classes of a classification workload (label-flipping experiments); None when not one.
    num_classes: int | None

    @abstractmethod
    def initial_weights(self, seed: int) -> Weights:
        """The initial model for `seed`: the same arrays in every process."""

    @abstractmethod
    def local_data(self, data: str | None) -> LocalData:
        """This organisation's data, from `data` (the node config's `[workload] data`)."""

    @abstractmethod
    def trainer_for(self, local: LocalData, *, num_threads: int | None = 1) -> Trainer:
        """A trainer over `local` (numpy weights in and out)."""

    def _load(self, fn: Callable[[str | None], Any], data: str | None) -> LocalData:
        if data is None and self.needs_data_path:
            raise WorkloadDataError(f"workload {self.name!r} needs a data path: set [workload] data in the node config")
        return LocalData.of(fn(data), f"workload {self.name!r}: load_data")


@dataclass(frozen=True)
class ArrayWorkload(Workload):
    """Numpy weights in, numpy weights out: any framework, or none.

    `initial_weights(seed)` gives the initial model; `fit(weights, train, config)` returns the
    trained weights (or (weights, metrics)); `evaluate(weights, test)` returns at least
    {"loss": ..., "accuracy": ...}. Weights must keep the names, shapes and float dtypes of the
    initial model.
    """

    name: str
    init_fn: Callable[[int], Mapping[str, np.ndarray]]
    load_data: Callable[[str | None], Any]
    fit_fn: Callable[[Weights, Any, TrainingConfig], Any]
    evaluate_fn: Callable[[Weights, Any], Mapping[str, float]]
    default_config: TrainingConfig = field(default_factory=TrainingConfig)
    description: str = ""
    num_classes: int | None = None
    needs_data_path: bool = False

    def initial_weights(self, seed: int) -> Weights:
        return check_weights(self.init_fn(seed), None, f"workload {self.name!r}: initial weights")

    def local_data(self, data: str | None) -> LocalData:
        return self._load(self.load_data, data)

    def trainer_for(self, local: LocalData, *, num_threads: int | None = 1) -> Trainer:
        return ArrayTrainer(self, local)


class ArrayTrainer(Trainer):
    """The trainer of an `ArrayWorkload`: its functions, with every weight they return checked."""

    def __init__(self, workload: ArrayWorkload, local: LocalData):
        self.workload, self.local = workload, local
        self.num_train_samples = local.samples()
        if self.num_train_samples <= 0:
            raise WorkloadDataError(f"workload {workload.name!r}: no training data")
        self._weights: Weights = workload.initial_weights(0)

    def get_weights(self) -> Weights:
        return {k: v.copy() for k, v in self._weights.items()}

    def fit(self, weights: Mapping[str, np.ndarray], config: TrainingConfig) -> FitResult:
        parent = check_weights(weights, self._weights, "the global model")
        out = self.workload.fit_fn({k: v.copy() for k, v in parent.items()}, self.local.train, config)
        trained, metrics = out if isinstance(out, tuple) else (out, {})
        self._weights = check_weights(trained, parent, f"workload {self.workload.name!r}: fit")
        return FitResult(weights=self.get_weights(), num_samples=self.num_train_samples,
                         metrics={k: float(v) for k, v in dict(metrics or {}).items()})

    def evaluate(self, weights: Mapping[str, np.ndarray]) -> EvalResult:
        if self.local.test is None:
            raise ValueError(f"workload {self.workload.name!r} has no test data")
        return eval_result(self.workload.evaluate_fn(check_weights(weights, self._weights, "the model"),
                                                     self.local.test), self.workload.name)


def eval_result(metrics: Any, name: str) -> EvalResult:
    """What a user's evaluation returned ({"loss", "accuracy"[, "num_samples"]} or an EvalResult)."""
    if isinstance(metrics, EvalResult):
        return metrics
    try:
        return EvalResult(loss=float(metrics["loss"]), accuracy=float(metrics["accuracy"]),
                          num_samples=int(metrics.get("num_samples", 0)))
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"workload {name!r}: evaluate must return a dict with 'loss' and 'accuracy', got "
                         f"{metrics!r}"[:300]) from None


def check_weights(weights: Any, like: Mapping[str, np.ndarray] | None, what: str) -> Weights:
    """`weights` as float32 arrays, refused (ValueError naming the tensors) unless they are a
    mapping of finite float arrays with the names and shapes of `like` (when given)."""
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"{what}: expected a non-empty dict of tensor name to numpy array, got {type(weights).__name__}")
    out = {}
    for name, w in weights.items():
        arr = np.asarray(w)
        if not isinstance(name, str) or arr.dtype.kind != "f":
            raise ValueError(f"{what}: tensor {name!r} must be a float array named by a string, got {arr.dtype}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{what}: tensor {name!r} holds NaN or Inf")
        out[name] = np.array(arr, dtype=np.float32, order="C", copy=True)
    if like is not None:
        problems = tensor_differences(out, like)
        if problems:
            raise ValueError(f"{what}: the weights do not match the model: {'; '.join(problems)}")
    return out


def tensor_differences(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """What differs between two models' tensors (names, shapes, dtypes), one phrase per tensor."""
    def sig(x: Any) -> tuple:
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            return tuple(x.shape), str(np.dtype(x.dtype)) if not isinstance(x.dtype, str) else x.dtype
        return tuple(x[0]), str(x[1])

    problems = [f"missing {n}" for n in sorted(set(want) - set(have))]
    problems += [f"unexpected {n}" for n in sorted(set(have) - set(want))]
    for n in sorted(set(have) & set(want)):
        (hs, hd), (ws, wd) = sig(have[n]), sig(want[n])
        if (hs, hd) != (ws, wd):
            problems.append(f"{n}: shape {list(hs)} {hd}, expected {list(ws)} {wd}")
    return problems


def load_workload(spec: str, search_path: Sequence[Path | str] = ()) -> Workload:
    """The workload `spec` names, "module:attribute" (a workload, or a function returning one),
    imported with `search_path` searched first. `InputError` saying what is wrong otherwise."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise InputError(f"workload object {spec!r}: expected MODULE:ATTRIBUTE, e.g. hospital_fl:workload")
    added = [str(Path(p).resolve()) for p in search_path if str(Path(p).resolve()) not in sys.path]
    sys.path[:0] = added
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            where = ", ".join(str(p) for p in search_path) or "the Python path"
            raise InputError(f"workload object {spec!r}: no module {module_name!r} in {where}") from None
        raise
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise InputError(f"workload object {spec!r}: module {module_name!r} ({getattr(module, '__file__', '?')}) has "
                         f"no attribute {attr!r}") from None
    if not isinstance(obj, Workload) and callable(obj):
        obj = obj()
    if not isinstance(obj, Workload):
        raise InputError(f"workload object {spec!r} is a {type(obj).__name__}, not a fedledger workload: make it a "
                         "TorchWorkload(...) or ArrayWorkload(...) (fedledger.node.training.api), or a function "
                         "returning one")
    return obj
