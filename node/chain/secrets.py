"""A member's election secrets: derived from its key, committed one step ahead, opened again after
a restart.

Every update (or, in a round with a reveal phase, every reveal) opens the secret the member
committed to before and commits to a fresh one (protocol/election.py). The secrets are
HMAC-SHA256 under the member's own key of the chain, contract, task, round, epoch and what
committed them, so nobody else can predict them, none is used twice, and a node that restarts
(or runs on a new machine with the same keystore) finds the secret its pending commitment needs
by hashing alone. They are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from eth_abi import encode as abi_encode

from ..errors import ChainError
from ..protocol.election import commitment
from ..protocol.types import to_bytes32

log = logging.getLogger("fedledger.chain")

#: What an election secret is committed with: an update, or a reveal.
KINDS = ("update", "reveal")
#: How many epochs of a past round `opening` tries (a round reopens only when every candidate failed).
OPENING_EPOCHS = 64


class ElectionSecrets:
    """The secrets of the member that signs for `client`, and the one its pending commitment needs."""

    def __init__(self, client: Any):  # a ChainClient (chain/client.py, which imports this module)
        self.client = client
        self._pending: dict[int, tuple[bytes, bytes | None]] = {}  # task -> (pending commitment, its secret)

    def secret(self, task: int, round_: int, kind: str, epoch: int = 0) -> bytes:
        """The secret committed in epoch `epoch` of `round_` of `task` with an update (`kind`
        "update") or a reveal ("reveal")."""
        c = self.client
        if c.account is None:
            raise ChainError("this client has no account: load a keystore to commit to a secret")
        message = b"fedledger-election|" + abi_encode(
            ["uint256", "address", "uint256", "uint256", "uint256", "uint256"],
            [c.chain_id, c.address, task, round_, epoch, KINDS.index(kind)])
        return hmac.new(bytes(c.account.key), message, hashlib.sha256).digest()

    def next_commitment(self, task: int, round_: int, kind: str, epoch: int = 0) -> tuple[bytes, bytes]:
        """(secret, commitment) this member commits to now."""
        secret = self.secret(task, round_, kind, epoch)
        return secret, to_bytes32(commitment(secret, self.client.sender))

    def opening(self, task: int, round_: int) -> bytes:
        """The secret that opens this member's pending commitment of `task` (zeros when it has
        none, or when no secret of its key opens it: the contract then refuses with BadReveal):
        its own secret of the latest round up to `round_` whose commitment matches. Local hashing
        only, beyond reads of the chain when nothing is cached."""
        cached = self._pending.get(task)
        if cached and cached[1] is not None:
            return cached[1]
        c = self.client
        pending = cached[0] if cached else to_bytes32(c.pending_commitment(task))
        if pending == bytes(32):
            return bytes(32)
        # Secrets are only ever committed in rounds the task has reached.
        for r in range(min(round_, c.task_state(task).current_round), 0, -1):
            for epoch in range(OPENING_EPOCHS):
                for kind in KINDS:
                    secret = self.secret(task, r, kind, epoch)
                    if to_bytes32(commitment(secret, c.sender)) == pending:
                        self._pending[task] = (pending, secret)
                        return secret
        # The contract will refuse the update (BadReveal) and say so; this says why.
        log.warning("no secret this key derives up to round %d opens %s's pending commitment of task %d (0x%s): "
                    "was it made with another key or another contract?", round_, c.sender, task, pending.hex())
        return bytes(32)

    def committed(self, task: int, pending: bytes, secret: bytes | None) -> None:
        """The chain took a commitment of ours (its secret, when we know it): the next opening."""
        self._pending[task] = (pending, secret)

    def forget(self, task: int) -> None:
        """Read the pending commitment from the chain next time (a transaction failed, or a restart)."""
        self._pending.pop(task, None)
