"""The contract's rules in Python, once: its data types, the election, the inputs digest, the
task-configuration checks and the metadata every model file must carry.

Pure functions and frozen data: no network, no files. The peer, the operator commands, the
simulation and the audit all derive what the contract derives through this package, so none of
them can drift from another. docs/protocol.md states the same rules for a third party.
"""

from .digest import initial_digest, next_digest
from .election import commitment, coprime_step, derive_seed, election_order, seed_start, verifiers_for, xor_secrets
from .inclusion import bitmap, bitmaps_for, inclusion_hash, indices
from .meta import global_meta, update_meta
from .rules import MAX_CID_BYTES, MAX_PARTICIPANTS, MAX_RULE_PARAMS_BYTES, check_task_config
from .types import (
    FAIL_OUTCOMES,
    FailReason,
    MemberView,
    Phase,
    RoundInfo,
    TaskConfig,
    TaskState,
    rule_from_bytes32,
    rule_to_bytes32,
    to_bytes32,
)

__all__ = [
    "FAIL_OUTCOMES", "FailReason", "bitmap", "bitmaps_for", "commitment", "inclusion_hash", "indices", "xor_secrets", "MAX_CID_BYTES", "MAX_PARTICIPANTS", "MAX_RULE_PARAMS_BYTES", "MemberView",
    "Phase", "RoundInfo", "TaskConfig", "TaskState", "check_task_config", "coprime_step", "derive_seed",
    "seed_start",
    "election_order", "global_meta", "initial_digest", "next_digest", "rule_from_bytes32", "rule_to_bytes32",
    "to_bytes32", "update_meta", "verifiers_for",
]
