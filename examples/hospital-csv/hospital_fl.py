"""A hospital's workload: its own model and its own CSV files, in its own module.

The node config names it (`[workload] object = "hospital_fl:workload"`, `data = "hospital1"`);
`load_data` reads DATA/train.csv and DATA/test.csv (30 feature columns and `diagnosis`), scales
the features with the reference values the consortium agreed on (consortium.json beside this
file), and fedledger trains the model with its own SGD loop.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

import fedledger

HERE = Path(__file__).resolve().parent


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    reference = json.loads((HERE / "consortium.json").read_text())
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} holds no rows")
    missing = [c for c in [*reference["features"], "diagnosis"] if c not in rows[0]]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}")
    X = np.array([[float(r[c]) for c in reference["features"]] for r in rows])
    y = np.array([int(r["diagnosis"]) for r in rows], dtype=np.int64)
    X = (X - np.array(reference["mean"])) / np.array(reference["scale"])
    return X.astype(np.float32), y


def load_data(data: str | None) -> fedledger.LocalData:
    base = Path(data or ".")
    return fedledger.LocalData(train=read_csv(base / "train.csv"), test=read_csv(base / "test.csv"))


def model():
    from torch import nn

    return nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))


workload = fedledger.TorchWorkload(
    name="hospital-mlp",
    description="breast cancer diagnosis from 30 features, MLP 30-16-2",
    model_fn=model,
    load_data=load_data,
    default_config=fedledger.TrainingConfig(epochs=5, lr=0.01, momentum=0.9, batch_size=16),
    num_classes=2,
    needs_data_path=True,
)
