"""How a member acts where the protocol leaves it a choice: the honest behaviour.

The peer asks its `Behaviour` at the few points where a member could act otherwise: which
labels it trains on, which bytes it submits, whether it publishes when elected leader, and what
it publishes. An honest member does what the protocol says; experiments inject another behaviour
(`adversary.Adversary`) through the node config's `[adversary]` section, and the peer's code
stays the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..storage.modelfile import write_model_file


class Behaviour:
    """The honest member."""

    #: A name for logs and reports.
    name = "honest"

    def training_labels(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        """The labels this member trains on."""
        return y

    def write_update(self, path: Path, parent: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray],
                     meta: Mapping[str, str], rnd: int, max_bytes: int) -> str:
        """Write the update to submit to `path`; return the sha256 to submit with it."""
        return write_model_file(path, weights, meta)

    def claimed_samples(self, num_samples: int) -> int:
        """The sample count this member claims for its update (its weight)."""
        return num_samples

    def withholds(self, rnd: int) -> bool:
        """Whether this member keeps its update's bytes to itself (submits a hash nobody can fetch)."""
        return False

    def verdict(self, agree: bool) -> bool:
        """What this member attests, given what its recomputation says."""
        return agree

    def publishes(self, rnd: int, attempt: int, deadline: float) -> bool:
        """Whether this member, elected leader, publishes an aggregate at all."""
        return True

    def attests(self, rnd: int, attempt: int, deadline: float) -> bool:
        """Whether this member, a verifier, attests at all."""
        return True

    def tamper(self, result: Any, rnd: int, attempt: int, spec: Any) -> None:
        """Change the aggregate about to be published (`result.path`, `result.sha256`) in place."""

    def included(self, result: Any, rnd: int, attempt: int) -> list[str]:
        """The members this leader declares its aggregate was built from."""
        return [u.member for u in result.included]
