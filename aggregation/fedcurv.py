"""FedCurv's aggregation (Shoham et al. 2019): the members' Fisher terms are summed, not averaged.

An update of a FedCurv task carries, beside its model tensors, two float32 tensors per parameter
``p``: ``fedcurv.fisher.<p>`` (the member's diagonal Fisher F) and ``fedcurv.fisher_x_theta.<p>``
(F times its weights). The model tensors go through the task's rule; these terms are summed over
the same members, in the same canonical (hash) order, float64 accumulation, float32 out: the same
IEEE operations on any machine, so verifiers reproduce the sum bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Every FedCurv tensor's name starts with this.
FEDCURV_PREFIX = "fedcurv."
FISHER_PREFIX = "fedcurv.fisher."
FISHER_X_THETA_PREFIX = "fedcurv.fisher_x_theta."


def sum_fedcurv_terms(terms: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The FedCurv aggregation: elementwise sum of the members' terms, bit-exact.

    ``terms`` must already be in canonical order (by update hash, as the task's rule uses).
    Each coordinate is ``float64(t_0) + float64(t_1) + ...`` in list order, then float32.
    """
    if not terms:
        raise ValueError("sum_fedcurv_terms needs at least one member's terms")
    names = sorted(terms[0])
    for i, t in enumerate(terms[1:], start=1):
        if sorted(t) != names:
            raise ValueError(f"member {i} carries FedCurv tensors {sorted(t)}, member 0 carries {names}")
    out: dict[str, np.ndarray] = {}
    for name in names:
        acc = np.array(terms[0][name], dtype=np.float64, copy=True)
        for i, t in enumerate(terms[1:], start=1):
            if np.shape(t[name]) != acc.shape:
                raise ValueError(f"member {i}: {name} has shape {np.shape(t[name])}, expected {acc.shape}")
            acc += np.asarray(t[name], dtype=np.float64)
        out[name] = acc.astype(np.float32)
    return out
