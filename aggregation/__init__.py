"""Pure numeric aggregation rules: numpy in, numpy out. Knows nothing of chains, files or networks.

A model is ``dict[str, np.ndarray]``. Rules take a sequence of update sources (dicts of arrays,
or objects with ``keys()`` and ``get_tensor(name)`` such as open safetensors handles), the
sample count of each, and the sha256 of each (which fixes the order of every float operation).
``registry.aggregate`` applies a rule by its on-chain id and parameters.
"""

from ._core import LANES, AggregationError, Model, TensorSource, UpdateSource, canonical_order
from .clipping import centered_clipping
from .fedcurv import FEDCURV_PREFIX, sum_fedcurv_terms
from .mean import FedAvgStream, fedavg, merge_aggregates
from .registry import (
    RULES,
    Param,
    Rule,
    aggregate,
    aggregates_match,
    decode_params,
    encode_params,
    get_rule,
    rule_id_bytes32,
    tolerance,
)
from .robust import (
    bulyan,
    coordinate_median,
    geometric_median,
    krum,
    krum_scores,
    multi_krum,
    trim_count,
    trimmed_mean,
)

__all__ = [
    "LANES",
    "RULES",
    "AggregationError",
    "FEDCURV_PREFIX",
    "FedAvgStream",
    "centered_clipping",
    "Model",
    "Param",
    "Rule",
    "TensorSource",
    "UpdateSource",
    "aggregate",
    "aggregates_match",
    "bulyan",
    "canonical_order",
    "coordinate_median",
    "decode_params",
    "encode_params",
    "fedavg",
    "geometric_median",
    "get_rule",
    "krum",
    "krum_scores",
    "merge_aggregates",
    "multi_krum",
    "rule_id_bytes32",
    "sum_fedcurv_terms",
    "tolerance",
    "trim_count",
    "trimmed_mean",
]
