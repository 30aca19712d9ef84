#!/usr/bin/env python3
"""An organisation that keeps its own training loop: scikit-learn's SGDClassifier, driven round by
round through `fedledger.join` (the node leads and verifies in the background).

    python3 my_loop.py NODE_CONFIG DATA_DIR

The five steps of joining a federation from an existing loop, as they appear below:
1. create a client: `fedledger.join(config)` (the node config `fedledger init` wrote);
2. the initial model: the task's genesis, which the admin created (`fedledger task create`);
3. start: entering the `with` block starts the node;
4. wait for the global model: each `rnd` of `fl.rounds()` holds it (`rnd.global_weights()`);
5. train, then send the trained model with its sample count and a performance figure:
   `rnd.submit(weights, num_samples=..., metrics={...})`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from logreg import CLASSES, read_csv  # noqa: E402  (this organisation's CSV reader)

import fedledger  # noqa: E402


def main(config: str, data: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    X, y = read_csv(data / "train.csv")
    X_test, y_test = read_csv(data / "test.csv")
    clf = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=0.05, alpha=1e-5, random_state=0)
    clf.partial_fit(X[:1], y[:1], classes=np.arange(CLASSES))  # allocates coef_ and intercept_
    warnings.simplefilter("ignore", ConvergenceWarning)
    with fedledger.join(config) as fl:  # steps 1 and 3
        for rnd in fl.rounds():  # step 4
            w = rnd.global_weights()
            clf.coef_, clf.intercept_ = w["coef"].astype(np.float64), w["intercept"].astype(np.float64)
            for _ in range(rnd.config.epochs):
                clf.partial_fit(X, y)
            acc = clf.score(X_test, y_test)
            loss = log_loss(y_test, clf.predict_proba(X_test), labels=np.arange(CLASSES))
            rnd.submit({"coef": clf.coef_.astype(np.float32), "intercept": clf.intercept_.astype(np.float32)},
                       num_samples=len(y), metrics={"accuracy": acc, "loss": loss})  # step 5
            print(f"round {rnd.number}: submitted (local test accuracy {acc:.3f})", flush=True)
    print(f"task {fl.task} completed" if fl.completed else "left the federation", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
