"""How a member trains locally: one options object, declared once.

`TrainingConfig` is what the CLI (`fedledger sim`, `fedledger init`: one option per field, built
from this declaration), the node config's `[training]` section, the report and the trainer all
use, under the same names. A new local-training setting is a new field here (with its help line
and bounds) plus the code in the trainer that uses it; every command, config and report follows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

import numpy as np

from ..errors import InputError


def _setting(default: Any, help: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
             hi_open: bool = False, workload_default: bool = False, per_run: bool = False, cli: bool = True) -> Any:
    """A field with its help line and bounds. `workload_default`: left unset on the command line,
    the workload's own value is used. `per_run`: the simulation sets it from its own option."""
    return field(default=default, metadata={"help": help, "lo": lo, "hi": hi, "lo_open": lo_open,
                                            "hi_open": hi_open, "workload_default": workload_default,
                                            "per_run": per_run, "cli": cli})


@dataclass(frozen=True)
class TrainingConfig:
    """Local training settings of a member, validated at construction (`InputError` naming the field)."""

    epochs: int = _setting(1, "Local epochs per round.", lo=1)
    lr: float = _setting(0.05, "Local learning rate (default: the workload's).", lo=0.0, lo_open=True,
                         workload_default=True)
    momentum: float = _setting(0.9, "SGD momentum (default: the workload's).", lo=0.0, hi=1.0, hi_open=True,
                               workload_default=True)
    batch_size: int = _setting(32, "Local batch size (default: the workload's).", lo=1, workload_default=True)
    mu: float = _setting(0.0, "FedProx proximal term (0: plain local training).", lo=0.0)
    fedcurv_lambda: float = _setting(0.0, "FedCurv penalty (0: off); updates then carry Fisher terms, summed at "
                                          "aggregation.", lo=0.0)
    lr_decay: float = _setting(1.0, "Round r trains with lr x LR_DECAY^(r-1) (1: constant); helps label-skewed "
                                    "data settle.", lo=0.0, hi=1.0, lo_open=True)
    seed: int = _setting(0, "Seed of local training (varied per round and member by the node).", lo=0,
                         hi=2**63 - 1, per_run=True)
    # Set by the node from the task's on-chain DP parameters (node/training/privacy.py), never by a member.
    dp_clip: float = _setting(0.0, "DP-SGD: clip each example's gradient to this L2 norm (0: plain SGD).", lo=0.0,
                              cli=False)
    dp_noise: float = _setting(0.0, "DP-SGD: Gaussian noise of dp_noise x dp_clip on each step's gradient sum.",
                               lo=0.0, cli=False)
    dp_sample_rate: float = _setting(0.2, "DP-SGD: each step takes each example with this probability.", lo=0.0,
                                     hi=1.0, lo_open=True, cli=False)
    dp_steps: int = _setting(0, "DP-SGD steps a round (0: round(1 / dp_sample_rate)).", lo=0, cli=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            check(f.name, getattr(self, f.name), f.type, **{k: f.metadata[k] for k in ("lo", "hi", "lo_open", "hi_open")})

    def replace(self, **changes: Any) -> "TrainingConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "TrainingConfig") -> "TrainingConfig":
        """Build from a mapping (a `[training]` section, a JSON config); unknown keys are an error."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InputError(f"{where}: unknown training setting(s) {unknown}; known: {known}")
        return cls(**dict(data))

    def overridden(self, overrides: Mapping[str, Any]) -> "TrainingConfig":
        """This config (a workload's defaults, say) with the settings a user gave; None means not given."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return self.from_dict({**self.to_dict(), **given})

    def for_round(self, member_seed: int, rnd: int) -> "TrainingConfig":
        """The settings of round `rnd`: a different, reproducible seed per round and member, and
        the learning rate decayed to lr x lr_decay^(rnd-1)."""
        cfg = self.replace(seed=member_seed * 100_003 + rnd)
        return cfg.replace(lr=cfg.lr * cfg.lr_decay ** (rnd - 1)) if cfg.lr_decay != 1.0 else cfg


def check(name: str, value: Any, type_: Any, lo: float | None = None, hi: float | None = None, *,
          lo_open: bool = False, hi_open: bool = False) -> None:
    """`InputError` unless `value` is a finite number (an integer where the field is one) within bounds."""
    integral = type_ in (int, "int")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integral and not _is_int(value)):
        raise InputError(f"{name} must be {'an integer' if integral else 'a number'}, got {value!r}")
    v = float(value)
    bad = not math.isfinite(v) or (lo is not None and (v < lo or (lo_open and v == lo)))
    if hi is not None:
        bad = bad or v > hi or (hi_open and v == hi)
    if bad:
        left = "(" if lo_open else "["
        right = "inf)" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        raise InputError(f"{name} must be {'an integer' if integral else 'a finite number'} in "
                         f"{left}{lo if lo is not None else '-inf'}, {right}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer))
