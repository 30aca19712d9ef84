"""`join`: one member's node, driven by the user's own training loop.

The node (`peer.Peer`) runs in a background thread exactly as `fedledger node run` runs it: it
watches the chain, submits, reveals, leads and verifies. Where `node run` would train, it hands
the round to the user's loop instead (`Federation.rounds`) and waits for `Round.submit`; the
update then goes out like any other (written in the model format, hashed, added to IPFS,
submitted on chain). What the loop submits is checked against the round's global model first:
the same tensor names, shapes and float dtypes, finite values.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FedledgerError
from ..peer.build import build_peer
from ..peer.config import NodeConfig
from ..training.api import EvalResult, FitResult, Trainer, Weights, check_weights
from ..training.config import TrainingConfig

log = logging.getLogger("fedledger.library")

#: Seconds between checks that the federation has not been left while a round waits.
_WAKE = 0.5


class LeftFederation(FedledgerError):
    """The loop left the federation (the `with` block ended) while the node waited for an update."""


class Round:
    """One round handed to the loop: its global model, its training settings, and `submit`."""

    def __init__(self, number: int, weights: Weights, config: TrainingConfig):
        self.number = number
        #: The member's local-training settings for this round (its seed varies per round).
        self.config = config
        self._weights = weights
        self._done = threading.Event()
        self._result: FitResult | None = None
        self._metrics: dict[str, float] = {}

    def global_weights(self) -> Weights:
        """The round's global model (the parent of this round's updates): a fresh copy to train."""
        return {k: v.copy() for k, v in self._weights.items()}

    def submit(self, weights: Mapping[str, np.ndarray], *, num_samples: int,
               metrics: Mapping[str, float] | None = None) -> None:
        """Hand the trained model to the node, which submits it. `num_samples` is the number of
        training examples it saw (its weight in FedAvg, capped by the task); `metrics` are what the
        loop measured, e.g. {"loss": ..., "accuracy": ...} on local test data (logged and recorded
        in metrics.jsonl). `ValueError` when the model does not match the global one."""
        if self._done.is_set():
            raise ValueError(f"round {self.number} was already submitted")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples <= 0:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        checked = check_weights(weights, self._weights, f"round {self.number}: the submitted model")
        self._metrics = {k: float(v) for k, v in dict(metrics or {}).items()}
        self._result = FitResult(weights=checked, num_samples=int(num_samples), metrics=self._metrics)
        self._done.set()


class _LoopTrainer(Trainer):
    """The trainer the node sees: `fit` is the user's loop, on the other side of a queue."""

    def __init__(self, federation: "Federation"):
        self.federation = federation
        self.last_metrics: dict[str, float] = {}
        self._weights: Weights | None = None

    def get_weights(self) -> Weights:
        if self._weights is None:
            raise ValueError("no round handed to the loop yet")
        return self._weights

    def fit(self, weights: Mapping[str, np.ndarray], config: TrainingConfig) -> FitResult:
        fed = self.federation
        self._weights = {k: np.array(v, dtype=np.float32, copy=True) for k, v in weights.items()}
        rnd = Round(fed.peer.training_round, self._weights, config)
        fed._rounds.put(rnd)
        while not rnd._done.wait(_WAKE):
            if fed._leaving.is_set():
                raise LeftFederation(f"round {rnd.number} was not submitted: the loop left the federation")
        assert rnd._result is not None
        self.last_metrics = rnd._metrics
        return rnd._result

    def evaluate(self, weights: Mapping[str, np.ndarray]) -> EvalResult:
        m = self.last_metrics
        return EvalResult(loss=m.get("loss", math.nan), accuracy=m.get("accuracy", math.nan),
                          num_samples=int(m.get("num_samples", 0)))


class Federation:
    """A member's node running in the background for a loop of the user's (`join`)."""

    def __init__(self, config: NodeConfig):
        self.config = config
        self._rounds: queue.Queue[Round | None] = queue.Queue()
        self._leaving = threading.Event()
        self._error: BaseException | None = None
        self.completed = False
        self.peer = build_peer(config, trainer=_LoopTrainer(self))
        self._thread = threading.Thread(target=self._run, name=f"fedledger-{config.name}", daemon=True)

    @property
    def task(self) -> int:
        return self.peer.task

    @property
    def member(self) -> str:
        return self.peer.me

    def _run(self) -> None:
        try:
            self.peer.run(should_stop=self._leaving.is_set)
            self.completed = not self._leaving.is_set()
        except LeftFederation:
            pass
        except BaseException as exc:  # handed to the loop by rounds()
            self._error = exc
        finally:
            self._rounds.put(None)

    def __enter__(self) -> "Federation":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.leave()

    def leave(self, timeout: float = 30.0) -> None:
        """Stop the node (it is safe to join again later: the chain holds where the task stands)."""
        self._leaving.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def rounds(self) -> Iterator[Round]:
        """Each round this member is to train, as the task reaches it, until the task completes.
        Leading and verifying go on in the background meanwhile. Re-raises what stopped the node."""
        if not self._thread.is_alive() and self._rounds.empty():
            raise RuntimeError("use the federation inside `with fedledger.join(...) as fl:`")
        while True:
            rnd = self._rounds.get()
            if rnd is None:
                if self._error is not None:
                    raise self._error
                return
            log.info("%s round %d: the global model is handed to the training loop", self.config.name, rnd.number)
            yield rnd


def join(config: str | Path | NodeConfig) -> Federation:
    """Join the task the node config names as its member, for a training loop of one's own: use it
    as `with fedledger.join("node.toml") as fl: for rnd in fl.rounds(): ...`. The config is the
    one `fedledger init` writes (its [workload] section is not used). Nothing starts before the
    `with`, except the checks: keystore and password, chain, membership, IPFS."""
    cfg = config if isinstance(config, NodeConfig) else NodeConfig.load(Path(config))
    return Federation(cfg)
