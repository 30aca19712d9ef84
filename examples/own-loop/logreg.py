"""A workload without torch: multinomial logistic regression in plain numpy (`fedledger.ArrayWorkload`).

The model is two arrays, `coef` (10 x 64) and `intercept` (10), the layout of scikit-learn's
linear classifiers, so a member training with scikit-learn (my_loop.py) and members running this
workload take part in the same task. `load_data` reads DATA/train.csv and DATA/test.csv (64 pixel
columns 0-16 and `label`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

import fedledger

CLASSES, FEATURES = 10, 64


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with Path(path).open(newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    if len(header) != FEATURES + 1 or header[-1] != "label" or not body:
        raise ValueError(f"{path}: expected {FEATURES} pixel columns and `label`, and at least one row")
    data = np.array(body, dtype=np.float64)
    return data[:, :-1] / 16.0, data[:, -1].astype(np.int64)


def load_data(data: str | None) -> fedledger.LocalData:
    base = Path(data or ".")
    return fedledger.LocalData(train=read_csv(base / "train.csv"), test=read_csv(base / "test.csv"))


def initial_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"coef": rng.normal(0.0, 0.01, (CLASSES, FEATURES)).astype(np.float32),
            "intercept": np.zeros(CLASSES, np.float32)}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit(weights, train, config: fedledger.TrainingConfig):
    """Mini-batch SGD on the cross-entropy, `config.epochs` passes, shuffled by `config.seed`."""
    X, y = train
    W, b = weights["coef"].astype(np.float64), weights["intercept"].astype(np.float64)
    rng = np.random.default_rng(config.seed)
    onehot = np.eye(CLASSES)[y]
    for _ in range(config.epochs):
        order = rng.permutation(len(y))
        for s in range(0, len(y), config.batch_size):
            idx = order[s:s + config.batch_size]
            grad = _softmax(X[idx] @ W.T + b) - onehot[idx]
            W -= config.lr * grad.T @ X[idx] / len(idx)
            b -= config.lr * grad.mean(axis=0)
    return {"coef": W.astype(np.float32), "intercept": b.astype(np.float32)}, {"epochs": config.epochs}


def evaluate(weights, test) -> dict[str, float]:
    X, y = test
    p = _softmax(X @ weights["coef"].T.astype(np.float64) + weights["intercept"])
    return {"loss": float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()),
            "accuracy": float((p.argmax(axis=1) == y).mean()), "num_samples": len(y)}


workload = fedledger.ArrayWorkload(
    name="digits-logreg",
    description="8x8 digits, multinomial logistic regression in numpy",
    init_fn=initial_weights,
    load_data=load_data,
    fit_fn=fit,
    evaluate_fn=evaluate,
    default_config=fedledger.TrainingConfig(epochs=5, lr=0.5, batch_size=32),
    num_classes=CLASSES,
    needs_data_path=True,
)
