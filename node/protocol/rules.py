"""The contract's checks of a task's configuration (FedLedger._checkConfig), so that a command
refuses an impossible task before it sends anything, with the same limits the chain enforces."""

from __future__ import annotations

from .. import defaults
from ..defaults import MAX_VERIFIERS
from ..errors import InputError

#: FedLedger.MAX_PARTICIPANTS, MAX_SAMPLES_LIMIT and MAX_CID_BYTES; the limit on rule parameter bytes.
MAX_PARTICIPANTS = 1024
MAX_SAMPLES_LIMIT = 2**32
MAX_CID_BYTES = 128
MAX_RULE_PARAMS_BYTES = 1024


def check_task_config(*, min_participants: int, max_participants: int, submission_window: int,
                      aggregation_window: int, verification_window: int, verifiers: int, quorum: int,
                      rounds: int, rule_params: bytes = b"{}", max_samples: int = defaults.MAX_SAMPLES,
                      reveal_window: int = defaults.REVEAL_WINDOW) -> None:
    """Raise `InputError` naming the option (as the CLI spells it) that the contract would refuse."""
    if min_participants < 1:
        raise InputError("--min-participants must be at least 1")
    if max_participants < min_participants:
        raise InputError(f"--max-participants ({max_participants}) is below --min-participants ({min_participants})")
    if max_participants > MAX_PARTICIPANTS:
        raise InputError(f"--max-participants must be at most {MAX_PARTICIPANTS}")
    for name, value in (("submission_window", submission_window), ("aggregation_window", aggregation_window),
                        ("verification_window", verification_window), ("reveal_window", reveal_window),
                        ("rounds", rounds)):
        if value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= verifiers <= MAX_VERIFIERS:
        raise InputError(f"--verifiers must be between 0 and {MAX_VERIFIERS}")
    if verifiers > 0 and not verifiers // 2 < quorum <= verifiers:
        raise InputError(f"--quorum must be a majority of --verifiers ({verifiers}): between {verifiers // 2 + 1} and "
                         f"{verifiers}; got {quorum}")
    if verifiers == 0 and quorum != 0:
        raise InputError(f"--quorum must be 0 without verifiers; got {quorum}")
    if min_participants <= verifiers:
        raise InputError(f"--min-participants ({min_participants}) must exceed --verifiers ({verifiers}): a round "
                         "needs its leader and every verifier")
    if not 1 <= max_samples <= MAX_SAMPLES_LIMIT:
        raise InputError(f"--max-samples must be between 1 and {MAX_SAMPLES_LIMIT}; got {max_samples}")
    if len(rule_params) > MAX_RULE_PARAMS_BYTES:
        raise InputError(f"--rule-params encode to {len(rule_params)} bytes; the contract takes at most "
                         f"{MAX_RULE_PARAMS_BYTES}")
