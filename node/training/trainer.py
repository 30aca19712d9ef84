"""The trainer API: what a member runs locally each round, in the shape of Flower's NumPy client.

A `Trainer` speaks numpy only: ``get_weights()``, ``fit(weights, config)`` and
``evaluate(weights)``, with a model as ``dict[str, np.ndarray]`` (tensor name to float32
array). The peer's roles call it and never touch torch. `TorchTrainer` is the PyTorch
implementation: weights go into the module with ``load_state_dict`` from ``torch.from_numpy``
arrays (never ``torch.load``, never pickle) and come back as float32 copies under the names of
``model.state_dict()``.

Determinism: ``fit`` with the same weights, data, config and thread count gives bit-identical
weights. Parameter initialisation and any randomness inside the model draw from
``torch.manual_seed(config.seed)`` inside ``torch.random.fork_rng`` (the caller's global RNG is
left as it was); the shuffling draws from its own ``torch.Generator`` seeded with
``config.seed`` and visits batches exactly as ``DataLoader(shuffle=True, generator=g,
drop_last=False)`` would. The optimizer (SGD with momentum) starts fresh every round, as in
FedAvg. The node should vary the seed per round and member (e.g. derived from both), or every
round shuffles the same way.

Client options from the literature, in `TrainingConfig` (training/config.py):

* FedProx (Li et al. 2020): ``mu > 0`` adds ``mu/2 * ||w - w_global||^2`` to the local loss.
* FedCurv (Shoham et al. 2019): ``fedcurv_lambda > 0`` adds
  ``lambda * sum_{j != me} (w - w_j)^T diag(F_j) (w - w_j)``, where ``w_j`` is member j's update
  of the previous round and ``F_j`` its diagonal (empirical) Fisher information.

How FedCurv travels through a round
-----------------------------------
The penalty expands to ``lambda * (w^2 . U - 2 w . V) + const`` with ``U = sum_j F_j`` and
``V = sum_j F_j * w_j``: two sums, which is what the update carries. With FedCurv on, every
update holds, next to the model tensors, two extra float32 tensors per parameter ``p``:

    fedcurv.fisher.<p>          F_me, the mean over local samples of (d log p(y|x) / dp)^2
    fedcurv.fisher_x_theta.<p>  F_me * w_me (elementwise), w_me the member's trained weights

Aggregation, which the leader and every verifier must apply identically:

    model tensors    the task's rule (FedAvg, median, ...) over the members' model tensors
    fedcurv.* terms  the plain SUM over the same members (no sample weighting, no averaging):
                     `fedledger.aggregation.sum_fedcurv_terms`, float64 accumulation in canonical (hash) order,
                     float32 out, so it reproduces bit for bit like FedAvg

`split_fedcurv` separates the two parts; the global model is ``{**aggregate, **summed_terms}``.
The next round, each member subtracts its own terms from the sums (``U - F_me``,
``V - F_me * w_me``, the sum over the OTHER members) before building the penalty. The trainer
remembers the terms of its last fit for this (`TorchTrainer.own_fedcurv_terms`). If the
member's update is not part of the parent global model (it missed the round, or the leader
excluded it), the node must call ``set_own_fedcurv_terms(None)`` before the next fit; after a
restart it restores them from its own previous update with
``set_own_fedcurv_terms(split_fedcurv(update)[1])``. With the terms absent from the global model
(genesis, or a task without FedCurv) the penalty is zero; `add_fedcurv_zeros` gives a genesis
model the same tensor names as every later model, which keeps one model spec for the task.
The penalty value reported in metrics omits the constant ``sum_j w_j^T F_j w_j`` (not carried);
its gradient is exact.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedledger.aggregation.fedcurv import FEDCURV_PREFIX, FISHER_PREFIX, FISHER_X_THETA_PREFIX

from .api import EvalResult, FitResult, Trainer, Weights, check_weights, eval_result
from .config import TrainingConfig

_EVAL_BATCH = 1024
_FISHER_BATCH = 256


# --------------------------------------------------------------------------- the API


# --------------------------------------------------------------------------- FedCurv helpers


def fedcurv_tensor_names(param_names: Sequence[str]) -> list[str]:
    """The names of the FedCurv tensors an update carries for these parameters."""
    return [p + n for n in param_names for p in (FISHER_PREFIX, FISHER_X_THETA_PREFIX)]


def split_fedcurv(weights: Mapping[str, np.ndarray]) -> tuple[Weights, Weights]:
    """Split an update or global model into (model tensors, FedCurv terms).

    The FedCurv terms keep their full names (``fedcurv.fisher.<p>``,
    ``fedcurv.fisher_x_theta.<p>``), so ``{**model, **terms}`` rebuilds the input. Raises
    ``ValueError`` if a ``fedcurv.*`` name is unknown, lacks its partner, names a tensor the model
    does not have, or has a different shape from it. Aggregate the two parts differently: the
    model by the task's rule, the terms by `sum_fedcurv_terms`.
    """
    model: Weights = {}
    terms: Weights = {}
    for name, value in weights.items():
        (terms if name.startswith(FEDCURV_PREFIX) else model)[name] = value
    bases: dict[str, set[str]] = {}
    for name in terms:
        if name.startswith(FISHER_X_THETA_PREFIX):
            prefix = FISHER_X_THETA_PREFIX
        elif name.startswith(FISHER_PREFIX):
            prefix = FISHER_PREFIX
        else:
            raise ValueError(
                f"unknown FedCurv tensor {name!r}: expected {FISHER_PREFIX}<param> or "
                f"{FISHER_X_THETA_PREFIX}<param>"
            )
        bases.setdefault(name[len(prefix):], set()).add(prefix)
    for base, prefixes in sorted(bases.items()):
        if len(prefixes) != 2:
            missing = ({FISHER_PREFIX, FISHER_X_THETA_PREFIX} - prefixes).pop()
            raise ValueError(f"FedCurv tensor {missing}{base} is missing (both terms travel together)")
        if base not in model:
            raise ValueError(f"FedCurv terms for {base!r}, which is not a tensor of the model")
        for prefix in prefixes:
            if np.shape(terms[prefix + base]) != np.shape(model[base]):
                raise ValueError(
                    f"FedCurv tensor {prefix}{base} has shape {np.shape(terms[prefix + base])}, "
                    f"the model tensor has {np.shape(model[base])}"
                )
    return model, terms


def add_fedcurv_zeros(weights: Mapping[str, np.ndarray], param_names: Sequence[str] | None = None) -> Weights:
    """``weights`` plus all-zero FedCurv terms (float32) for ``param_names`` (default: all tensors).

    For a genesis model of a FedCurv task, so that genesis, updates and global models share one
    set of tensor names. Zero terms mean a zero penalty.
    """
    out: Weights = dict(weights)
    for name in weights if param_names is None else param_names:
        zeros = np.zeros(np.shape(weights[name]), dtype=np.float32)
        out[FISHER_PREFIX + name] = zeros
        out[FISHER_X_THETA_PREFIX + name] = zeros.copy()
    return out


def diagonal_fisher(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = _FISHER_BATCH
) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of ``model`` at its current weights: the mean over samples of
    the squared per-sample gradient of ``log p(y_i | x_i)`` (true labels), per parameter.

    Per-sample gradients come from ``torch.func.vmap``; accumulation is float64.
    """
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def nll(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_sample = vmap(grad(nll), in_dims=(None, 0, 0))
    acc = {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in params.items()}
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(y), batch_size):
            grads = per_sample(params, x[s : s + batch_size], y[s : s + batch_size])
            for k, g in grads.items():
                acc[k] += g.detach().to(torch.float64).square().sum(dim=0)
    finally:
        model.train(was_training)
    n = max(len(y), 1)
    return {k: (v / n).to(torch.float32) for k, v in acc.items()}


# --------------------------------------------------------------------------- PyTorch


class TorchTrainer(Trainer):
    """Local training of a ``torch.nn.Module`` with SGD, on in-memory numpy data.

    ``model_fn()`` builds the module (a fresh one; its initial weights do not matter, the
    weights passed to ``fit``/``evaluate`` replace them). Every entry of its ``state_dict`` must
    be a floating-point tensor: parameters and float buffers travel in updates as float32;
    integer buffers (BatchNorm's ``num_batches_tracked``) are refused, since an aggregate of
    them has no meaning. Features go to the model as given, float arrays as float32 and integer
    arrays (image bytes) unchanged, for the model to scale; labels are class indices.

    ``num_threads`` sets ``torch.set_num_threads`` for the duration of each call and restores
    the previous value afterwards (default 1: many node processes share a few cores); ``None``
    leaves torch's setting alone.

    A workload's own loop replaces the built-in one: ``train_fn(model, train_data, config)``
    trains the module (holding the round's global weights) in place and may return metrics;
    ``evaluate_fn(model, test_data)`` returns {"loss", "accuracy"}. The data they get is whatever
    the workload loaded (not necessarily arrays); ``num_samples`` is the update's weight. Under a
    ``train_fn``, FedProx and FedCurv are the workload's business.
    """

    def __init__(
        self,
        model_fn: Callable[[], nn.Module],
        train_data: Any,
        test_data: Any = None,
        *,
        num_threads: int | None = 1,
        train_fn: Callable[[nn.Module, Any, TrainingConfig], Mapping[str, float] | None] | None = None,
        evaluate_fn: Callable[[nn.Module, Any], Any] | None = None,
        num_samples: int | None = None,
    ) -> None:
        if num_threads is not None:
            _check_int("num_threads", num_threads, lo=1)
        self.num_threads = num_threads
        with self._threads():
            self.model = model_fn()
        if not isinstance(self.model, nn.Module):
            raise TypeError(f"model_fn must return a torch.nn.Module, got {type(self.model).__name__}")
        state = self.model.state_dict()
        for name, tensor in state.items():
            if not tensor.is_floating_point():
                raise ValueError(
                    f"model state entry {name!r} is {tensor.dtype}; fedledger models carry float tensors "
                    "only (use BatchNorm(track_running_stats=False), GroupNorm or LayerNorm instead)"
                )
            if name.startswith(FEDCURV_PREFIX):
                raise ValueError(f"model state entry {name!r} uses the reserved prefix {FEDCURV_PREFIX!r}")
        self._names = list(state)
        self._shapes = {k: tuple(v.shape) for k, v in state.items()}
        self._param_names = [k for k, p in self.model.named_parameters() if p.requires_grad]
        self.train_fn, self.evaluate_fn = train_fn, evaluate_fn
        self.train_data, self.test_data = train_data, test_data
        self.x_train, self.y_train = (None, None) if train_fn else _data_tensors(train_data, "train_data")
        self.x_test, self.y_test = (None, None) if test_data is None or evaluate_fn else _data_tensors(test_data,
                                                                                                      "test_data")
        self._num_samples = num_samples
        self._own_terms: Weights | None = None

    # -- state

    @property
    def num_train_samples(self) -> int:
        if self.y_train is None:
            return int(self._num_samples or 0)
        return int(self.y_train.shape[0])

    @property
    def own_fedcurv_terms(self) -> Weights | None:
        """The FedCurv terms of this member's last update (subtracted from the global sums)."""
        return self._own_terms

    def set_own_fedcurv_terms(self, terms: Mapping[str, np.ndarray] | None) -> None:
        """Set (or, with None, forget) the terms this member contributed to the parent model.

        Forget them when the member's update is not part of the parent global model; restore
        them from the member's own previous update after a restart.
        """
        if terms is None:
            self._own_terms = None
            return
        model = {n: np.zeros(self._shapes[n], np.float32) for n in self._param_names}
        _, checked = split_fedcurv({**model, **terms})
        expected = set(fedcurv_tensor_names(self._param_names))
        if set(checked) != expected:
            raise ValueError(
                f"own FedCurv terms must cover exactly the parameters {self._param_names}; "
                f"got {sorted(checked)}"
            )
        self._own_terms = {k: np.array(v, dtype=np.float32, copy=True) for k, v in checked.items()}

    def get_weights(self) -> Weights:
        """The module's current weights: as built by ``model_fn``, or as last loaded/trained."""
        return weights_of(self.model)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load model tensors (any ``fedcurv.*`` terms are ignored) into the module, strictly."""
        model_weights, _ = split_fedcurv(weights)
        missing = [n for n in self._names if n not in model_weights]
        unexpected = [n for n in model_weights if n not in self._shapes]
        if missing or unexpected:
            raise ValueError(
                f"weights do not match the model: missing {missing}, unexpected {unexpected}; "
                f"the model's tensors are {self._names}"
            )
        state: dict[str, torch.Tensor] = {}
        for name in self._names:
            arr = np.asarray(model_weights[name])
            if arr.shape != self._shapes[name]:
                raise ValueError(f"tensor {name!r} has shape {arr.shape}, the model expects {self._shapes[name]}")
            if arr.dtype.kind != "f":
                raise ValueError(f"tensor {name!r} has dtype {arr.dtype}; expected a float dtype")
            # A copy: inputs may be read-only (mmapped safetensors) and must never alias the model.
            arr = np.array(arr, dtype=np.float32, order="C", copy=True)
            if not np.isfinite(arr).all():
                raise ValueError(f"tensor {name!r} holds NaN or Inf")
            state[name] = torch.from_numpy(arr)
        self.model.load_state_dict(state, strict=True)

    # -- the API

    def fit(self, weights: Mapping[str, np.ndarray], config: TrainingConfig) -> FitResult:
        if not isinstance(config, TrainingConfig):
            raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
        n = self.num_train_samples
        if n == 0:
            raise ValueError("this member has no training data; it cannot submit an update")
        model_weights, global_terms = split_fedcurv(weights)
        if self.train_fn is not None:
            return self._fit_with_hook(model_weights, config, n)
        if config.dp_clip > 0:
            return self._fit_dp_sgd(model_weights, config, n)
        with self._threads(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.set_weights(model_weights)
            params = dict(self.model.named_parameters())
            anchor = {k: params[k].detach().clone() for k in self._param_names} if config.mu > 0 else {}
            curv = self._fedcurv_others(global_terms) if config.fedcurv_lambda > 0 else {}

            optimizer = torch.optim.SGD(
                [params[k] for k in self._param_names], lr=config.lr, momentum=config.momentum
            )
            shuffle = torch.Generator().manual_seed(config.seed)
            self.model.train()
            steps = 0
            for _ in range(config.epochs):
                loss_sum = prox_sum = curv_sum = 0.0
                correct = 0
                # What DataLoader(shuffle=True, generator=shuffle) visits, without per-sample collation.
                order = torch.randperm(n, generator=shuffle)
                for s in range(0, n, config.batch_size):
                    idx = order[s : s + config.batch_size]
                    xb, yb = self.x_train[idx], self.y_train[idx]
                    optimizer.zero_grad(set_to_none=True)
                    out = self.model(xb)
                    loss = F.cross_entropy(out, yb)
                    total = loss
                    if anchor:
                        prox = sum(((params[k] - a) ** 2).sum() for k, a in anchor.items())
                        total = total + (config.mu / 2.0) * prox
                        prox_sum += float(prox.detach()) * len(idx)
                    if curv:
                        # lambda * sum(U' w^2 - 2 V' w): the FedCurv penalty up to a constant.
                        pen = sum((u * params[k] ** 2 - 2.0 * v * params[k]).sum() for k, (u, v) in curv.items())
                        total = total + config.fedcurv_lambda * pen
                        curv_sum += float(pen.detach()) * config.fedcurv_lambda * len(idx)
                    total.backward()
                    optimizer.step()
                    steps += 1
                    loss_sum += float(loss.detach()) * len(idx)
                    correct += int((out.argmax(dim=1) == yb).sum())

            result = weights_of(self.model)
            metrics = {
                "train_loss": loss_sum / n,
                "train_accuracy": correct / n,
                "epochs": float(config.epochs),
                "steps": float(steps),
            }
            if anchor:
                metrics["fedprox_distance_sq"] = prox_sum / n
            if config.fedcurv_lambda > 0:
                metrics["fedcurv_penalty"] = curv_sum / n
                fisher = diagonal_fisher(self.model, self.x_train, self.y_train)
                terms: Weights = {}
                for k in self._param_names:
                    f = fisher[k].numpy().astype(np.float32)
                    terms[FISHER_PREFIX + k] = f
                    terms[FISHER_X_THETA_PREFIX + k] = f * result[k]
                self._own_terms = {k: v.copy() for k, v in terms.items()}
                result.update(terms)
        return FitResult(weights=result, num_samples=n, metrics=metrics)

    def _fit_dp_sgd(self, weights: Mapping[str, np.ndarray], config: TrainingConfig, n: int) -> FitResult:
        """DP-SGD (Abadi et al. 2016) with Opacus: per-example gradients (GradSampleModule), each
        clipped to `dp_clip`, their sum noised with N(0, (dp_noise x dp_clip)^2) (DPOptimizer), and
        Poisson sampling with q = `dp_sample_rate` over `dp_steps` steps (0: round(1/q)): what the
        RDP accountant of node/training/privacy.py counts. `epochs` and `batch_size` play no part. Sampling and noise draw from the operating system's
        randomness, so no other member can predict them (a DP run is not bit-reproducible).
        FedProx and FedCurv are not combined with it."""
        import secrets

        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        if config.mu > 0 or config.fedcurv_lambda > 0:
            raise ValueError("DP-SGD does not combine with FedProx (mu) or FedCurv in this trainer")
        with self._threads(), torch.random.fork_rng(devices=[]):
            self.set_weights(weights)
            module = GradSampleModule(self.model)
            rng = torch.Generator().manual_seed(secrets.randbits(63))
            q = config.dp_sample_rate
            steps = config.dp_steps or max(1, round(1.0 / q))
            optimizer = DPOptimizer(torch.optim.SGD(module.parameters(), lr=config.lr, momentum=config.momentum),
                                    noise_multiplier=config.dp_noise, max_grad_norm=config.dp_clip,
                                    expected_batch_size=max(1, round(q * n)), generator=rng)
            module.train()
            try:
                with warnings.catch_warnings():  # Opacus's hooks on the input layer: expected, every step
                    warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
                    taken, loss_sum, seen, correct = self._dp_steps(module, optimizer, rng, q, steps, n)
            finally:
                module._close()  # the hooks and per-example gradients go; the model is plain again
            result = weights_of(self.model)
        metrics = {"train_loss": loss_sum / max(1, seen), "train_accuracy": correct / max(1, seen),
                   "epochs": float(config.epochs), "steps": float(taken), "dp_steps": float(steps),
                   "dp_sample_rate": q}
        return FitResult(weights=result, num_samples=n, metrics=metrics)

    def _dp_steps(self, module: nn.Module, optimizer: Any, rng: torch.Generator, q: float, steps: int,
                  n: int) -> tuple[int, float, int, int]:
        """`steps` Poisson-sampled DP-SGD steps: (steps taken, loss sum, examples seen, correct)."""
        loss_sum, seen, correct, taken = 0.0, 0, 0, 0
        for _ in range(steps):
            mask = torch.rand(n, generator=rng) < q
            if not bool(mask.any()):  # an empty Poisson sample: nothing about the data is used
                continue
            xb, yb = self.x_train[mask], self.y_train[mask]
            optimizer.zero_grad(set_to_none=True)
            out = module(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            optimizer.step()
            taken += 1
            loss_sum += float(loss.detach()) * len(yb)
            seen += len(yb)
            correct += int((out.argmax(dim=1) == yb).sum())
        return taken, loss_sum, seen, correct

    def _fit_with_hook(self, weights: Mapping[str, np.ndarray], config: TrainingConfig, n: int) -> FitResult:
        with self._threads(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.set_weights(weights)
            self.model.train()
            metrics = self.train_fn(self.model, self.train_data, config) or {}
            result = check_weights(weights_of(self.model), weights, "the workload's train_fn")
        return FitResult(weights=result, num_samples=n, metrics={k: float(v) for k, v in dict(metrics).items()})

    def evaluate(self, weights: Mapping[str, np.ndarray]) -> EvalResult:
        if self.evaluate_fn is not None:
            if self.test_data is None:
                raise ValueError("this trainer has no test data")
            with self._threads():
                self.set_weights(weights)
                self.model.eval()
                with torch.no_grad():
                    return eval_result(self.evaluate_fn(self.model, self.test_data), "this")
        if self.x_test is None or self.y_test is None:
            raise ValueError("this trainer has no test data; pass test_data=(X, y) to TorchTrainer")
        n = int(self.y_test.shape[0])
        if n == 0:
            raise ValueError("the test data is empty")
        with self._threads():
            self.set_weights(weights)
            self.model.eval()
            loss_sum = 0.0
            correct = 0
            with torch.no_grad():
                for s in range(0, n, _EVAL_BATCH):
                    xb, yb = self.x_test[s : s + _EVAL_BATCH], self.y_test[s : s + _EVAL_BATCH]
                    out = self.model(xb)
                    loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
                    correct += int((out.argmax(dim=1) == yb).sum())
        return EvalResult(loss=loss_sum / n, accuracy=correct / n, num_samples=n)

    # -- internals

    def _fedcurv_others(self, global_terms: Mapping[str, np.ndarray]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(U - F_me, V - F_me * w_me) per parameter: the other members' sums."""
        if not global_terms:
            return {}
        own = self._own_terms or {}
        out = {}
        for k in self._param_names:
            try:
                u = np.asarray(global_terms[FISHER_PREFIX + k], dtype=np.float32)
                v = np.asarray(global_terms[FISHER_X_THETA_PREFIX + k], dtype=np.float32)
            except KeyError:
                raise ValueError(f"the global model carries FedCurv terms, but none for parameter {k!r}") from None
            if own:
                u = u - own[FISHER_PREFIX + k]
                v = v - own[FISHER_X_THETA_PREFIX + k]
            # The difference of float32 sums can dip below zero by rounding; a Fisher never does.
            u = np.maximum(u, 0.0)
            if not (np.isfinite(u).all() and np.isfinite(v).all()):
                raise ValueError(f"the FedCurv terms for {k!r} hold NaN or Inf")
            out[k] = (torch.from_numpy(np.array(u, np.float32)), torch.from_numpy(np.array(v, np.float32)))
        return out

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        if self.num_threads is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def weights_of(model: nn.Module) -> Weights:
    """A module's state as float32 numpy copies, named as in ``state_dict()``."""
    return {k: v.detach().cpu().numpy().astype(np.float32, copy=True) for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- validation


def _data_tensors(data: tuple[np.ndarray, np.ndarray], what: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair (X, y) of numpy arrays") from None
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{what}: labels must be 1-D class indices, got shape {y.shape}")
    if x.shape[:1] != y.shape:
        raise ValueError(f"{what}: {x.shape[0] if x.ndim else 0} feature rows but {y.shape[0]} labels")
    if y.size and (y.dtype.kind not in "iu" or y.min() < 0):
        raise ValueError(f"{what}: labels must be non-negative integers, got dtype {y.dtype}")
    if x.dtype.kind == "f":
        x = x.astype(np.float32, copy=False)
        if x.size and not np.isfinite(x).all():
            raise ValueError(f"{what}: features hold NaN or Inf")
    elif x.dtype.kind not in "iu":
        raise ValueError(f"{what}: features must be numeric, got dtype {x.dtype}")
    if not x.flags.c_contiguous or not x.flags.writeable:
        x = np.array(x, order="C", copy=True)
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "") + f", got {value}")


def _check_number(
    name: str, value: Any, lo: float, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    bad = not math.isfinite(v) or v < lo or (lo_open and v == lo)
    if hi is not None:
        bad = bad or v > hi or (hi_open and v == hi)
    if bad:
        rng = f"{'(' if lo_open else '['}{lo:g}, {'inf)' if hi is None else f'{hi:g}' + (')' if hi_open else ']')}"
        raise ValueError(f"{name} must be a finite number in {rng}, got {value!r}")
