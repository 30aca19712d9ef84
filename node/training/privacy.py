"""Differential privacy of a member's updates: what the task promises, and what each member spends.

Every member can fetch every other member's update, so an update is a release of its owner's data.
A task may ask each member to release only differentially private updates; the promise lives in the
task's parameters on chain (`dp_*`, aggregation/registry.py), so everyone can read what everyone
promised. Two mechanisms, chosen by measurement (docs/privacy.md):

* **example level** (`dp_client` false, the default): local training is DP-SGD (Abadi et al.
  2016) through Opacus: each of the round's `dp_steps` steps takes every example of the member
  with probability `dp_sample_rate` (Poisson sampling), clips each example's gradient to `dp_clip`
  and adds Gaussian noise of standard deviation `dp_noise` x `dp_clip` to their sum. It protects
  each example (a patient, a customer) against everyone who sees the update. The task fixes the
  sampling rate and the steps, so every member spends the same epsilon a round, whatever its data
  size, and the task knows at creation how many rounds its budget affords.
* **client level** (`dp_client` true, DP-FedAvg, McMahan et al. 2018): the member clips its whole
  change `update - parent` to `dp_clip` and adds Gaussian noise of standard deviation `dp_noise` x
  `dp_clip` to every coordinate before the update leaves the machine. It protects the member's
  whole data set, and needs many members to learn anything (ten do not: docs/privacy.md).

The accounting is Opacus's RDP accountant: an analytic upper bound, fast enough for the budget
searches of task creation; its PRV accountant reports 6-9% less at several times the compute
(docs/privacy.md). The noise comes from the
operating system's randomness, never from a seed another member could know: a DP run is not
bit-reproducible, by design.
"""

from __future__ import annotations

import math
import secrets
import warnings
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from typing import Any, Mapping

import numpy as np

from ..errors import InputError

Weights = dict[str, np.ndarray]


class BudgetSpent(RuntimeError):
    """Training once more would spend more than the task's privacy budget."""


@dataclass(frozen=True)
class Privacy:
    """The task's DP promise, from its on-chain parameters. `clip` 0 means no DP."""

    clip: float = 0.0
    noise: float = 0.0
    delta: float = 1e-5
    epsilon: float = 0.0  # the budget; 0: none (epsilon is still reported)
    client: bool = False
    sample_rate_: float = 0.2  # example level: each step takes each example with this probability
    steps: int = 0  # example level: DP-SGD steps a round (0: round(1 / sample rate), one epoch expected)

    @property
    def active(self) -> bool:
        return self.clip > 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Privacy":
        """From a task's decoded rule parameters (registry.decode_params)."""
        return cls(clip=float(params.get("dp_clip", 0.0)), noise=float(params.get("dp_noise", 0.0)),
                   delta=float(params.get("dp_delta", 1e-5)), epsilon=float(params.get("dp_epsilon", 0.0)),
                   client=bool(params.get("dp_client", False)),
                   sample_rate_=float(params.get("dp_sample_rate", 0.2)), steps=int(params.get("dp_steps", 0)))

    def check(self, rounds: int | None = None) -> None:
        """`InputError` for a promise that protects nothing, or a task longer than its budget."""
        if not self.active:
            return
        if self.noise <= 0:
            raise InputError("dp_clip is set but dp_noise is 0: clipping without noise protects nothing; "
                             "give dp_noise (the noise multiplier), e.g. 1.0")
        if rounds is not None and self.epsilon > 0:
            afford = self.rounds_within(self.epsilon)
            if afford < rounds:
                raise InputError(f"the privacy budget epsilon {self.epsilon:g} (delta {self.delta:g}) affords "
                                 f"{afford} rounds at noise {self.noise:g}, not {rounds}: give --rounds {afford} or "
                                 f"less, more noise, or a larger budget")

    def sample_rate(self) -> float:
        """q of one noisy release: 1 at the client level (the whole update, every round)."""
        return 1.0 if self.client else self.sample_rate_

    def steps_per_round(self) -> int:
        """Noisy releases a round: 1 at the client level; the DP-SGD steps at the example level."""
        if self.client:
            return 1
        return self.steps or max(1, round(1.0 / self.sample_rate_))

    def spent(self, rounds: int) -> float:
        """Epsilon (at this task's delta) after `rounds` released updates: the same for every member."""
        if not self.active or rounds <= 0:
            return 0.0
        return epsilon(self.noise, self.sample_rate(), rounds * self.steps_per_round(), self.delta)

    def next_release(self, released: int) -> dict[str, Any]:
        """What one more update spends, after `released` ones: epsilon and the budget, for the log
        and metrics. Raises `BudgetSpent` when that would pass the task's budget."""
        eps = self.spent(released + 1)
        if self.epsilon and eps > self.epsilon:
            raise BudgetSpent(f"privacy budget spent: epsilon {self.spent(released):.3f} after {released} updates, "
                              f"one more would reach {eps:.3f} > the task's {self.epsilon:g} (delta {self.delta:g})")
        return {"epsilon": eps, "delta": self.delta, "released": released + 1,
                "level": "client" if self.client else "example", "budget": self.epsilon}

    def describe(self, release: dict[str, Any]) -> str:
        """The log line of one release (`next_release`)."""
        budget = f"{self.epsilon:g}" if self.epsilon else "no budget"
        return (f"privacy spent epsilon {release['epsilon']:.3f} of {budget} (delta {self.delta:g}, "
                f"{release['released']} updates released)")

    def training_config(self, cfg: Any) -> Any:
        """The round's TrainingConfig: DP-SGD with the task's clip, noise, rate and steps at the
        example level; unchanged at the client level."""
        if self.client:
            return cfg
        return cfg.replace(dp_clip=self.clip, dp_noise=self.noise, dp_sample_rate=self.sample_rate(),
                           dp_steps=self.steps_per_round())

    def release(self, parent: Mapping[str, np.ndarray], result: Any, names: list[str]) -> Any:
        """The FitResult as it may leave the machine: clipped and noised at the client level
        (`privatize_update` over the model tensors `names`); as trained (by DP-SGD) otherwise."""
        if not self.client:
            return result
        weights, stats = privatize_update(parent, result.weights, self.clip, self.noise, names=names)
        return dataclass_replace(result, weights=weights, metrics={**result.metrics, **stats})

    def rounds_within(self, budget: float, limit: int = 100_000) -> int:
        """The most rounds whose epsilon stays within `budget` (binary search on the accountant)."""
        lo, hi = 0, 1
        while hi <= limit and self.spent(hi) <= budget:
            lo, hi = hi, hi * 2
        hi = min(hi, limit + 1)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.spent(mid) <= budget else (lo, mid)
        return lo


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon of `steps` subsampled Gaussian mechanisms (Opacus RDP accountant)."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():
        # "Optimal order is the smallest alpha": only for epsilons far beyond any budget (the budget
        # search probes them); the value is still an upper bound, just a loose one.
        warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha", category=UserWarning)
        return float(acc.get_epsilon(delta=delta))


def noise_for(target_epsilon: float, sample_rate: float, steps: int, delta: float) -> float:
    """The smallest noise multiplier that keeps `steps` releases within `target_epsilon` (Opacus)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
                                      steps=steps, accountant="rdp"))


def os_rng() -> np.random.Generator:
    """A generator seeded from the operating system: noise nobody else can predict."""
    return np.random.default_rng(secrets.randbits(128))


def privatize_update(parent: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray], clip: float,
                     noise: float, rng: np.random.Generator | None = None,
                     names: list[str] | None = None) -> tuple[Weights, dict[str, float]]:
    """Client-level DP of one update: the change from the parent clipped to L2 norm `clip` (over
    the tensors `names`, default all of the parent's), plus N(0, (noise x clip)^2) per coordinate,
    in float64, cast back to each tensor's dtype. Tensors outside `names` pass unchanged."""
    rng = rng or os_rng()
    names = sorted(names if names is not None else parent)
    diffs = {k: np.asarray(weights[k], dtype=np.float64) - np.asarray(parent[k], dtype=np.float64) for k in names}
    norm = math.sqrt(math.fsum(float(np.sum(d * d)) for d in diffs.values()))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    sigma = noise * clip
    out: Weights = {k: np.asarray(v) for k, v in weights.items()}
    for k in names:
        w = np.asarray(weights[k])
        noised = np.asarray(parent[k], dtype=np.float64) + diffs[k] * scale + rng.normal(0.0, sigma, size=w.shape)
        out[k] = noised.astype(w.dtype)
    return out, {"update_norm": norm, "clipped": float(scale < 1.0), "sigma": sigma}
