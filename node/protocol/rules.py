"""The contract's checks of a task's configuration (FedLedger._checkConfig), so that a command
refuses an impossible task before it sends anything, with the same limits the chain enforces."""

from __future__ import annotations

from ..defaults import MAX_VERIFIERS
from ..errors import InputError

#: FedLedger.MAX_PARTICIPANTS and MAX_CID_BYTES; the limit on rule parameter bytes.
MAX_PARTICIPANTS = 1024
MAX_CID_BYTES = 128
MAX_RULE_PARAMS_BYTES = 1024


def check_task_config(*, min_participants: int, max_participants: int, submission_window: int,
                      aggregation_window: int, verification_window: int, verifiers: int, quorum: int,
                      rounds: int, rule_params: bytes = b"{}") -> None:
    """Raise `InputError` naming the option (as the CLI spells it) that the contract would refuse."""
    if min_participants < 1:
        raise InputError("--min-participants must be at least 1")
    if max_participants < min_participants:
        raise InputError(f"--max-participants ({max_participants}) is below --min-participants ({min_participants})")
    if max_participants > MAX_PARTICIPANTS:
        raise InputError(f"--max-participants must be at most {MAX_PARTICIPANTS}")
    for name, value in (("submission_window", submission_window), ("aggregation_window", aggregation_window),
                        ("verification_window", verification_window), ("rounds", rounds)):
        if value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= verifiers <= MAX_VERIFIERS:
        raise InputError(f"--verifiers must be between 0 and {MAX_VERIFIERS}")
    if quorum > verifiers or (verifiers > 0 and quorum < 1):
        raise InputError(f"--quorum must be between 1 and --verifiers ({verifiers}); got {quorum}")
    if len(rule_params) > MAX_RULE_PARAMS_BYTES:
        raise InputError(f"--rule-params encode to {len(rule_params)} bytes; the contract takes at most "
                         f"{MAX_RULE_PARAMS_BYTES}")
