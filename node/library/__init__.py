"""The federation from a training loop of one's own: `join(config)` runs the member's node in the
background (it leads and verifies when elected) and hands the loop each round's global model.

    with fedledger.join("node.toml") as fl:
        for rnd in fl.rounds():
            weights = rnd.global_weights()
            ...train...
            rnd.submit(weights, num_samples=n, metrics={"accuracy": acc})
"""

from .federation import Federation, Round, join

__all__ = ["Federation", "Round", "join"]
