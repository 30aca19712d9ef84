#!/usr/bin/env python3
"""Write the example's data: three hospitals, each with CSV files of its own, and a held-out test set.

The rows are scikit-learn's Wisconsin breast cancer data (569 patients, 30 features, diagnosis
0 = malignant, 1 = benign). One fifth is held out (stratified, seed 0) for the final comparison
and never given to any hospital. The rest is split unevenly, as hospitals differ: hospital1 sees
mostly benign cases, hospital2 mostly malignant ones, hospital3 few of either.

Also writes consortium.json: the reference mean and scale of each feature, which the consortium
agrees on and every hospital's workload uses to scale its inputs the same way.

    python3 make_data.py DIR        # writes DIR/hospital{1,2,3}/{train,test}.csv, DIR/holdout.csv,
                                    # DIR/consortium.json
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

#: (rows, share of benign cases) per hospital.
HOSPITALS = {"hospital1": (240, 0.95), "hospital2": (150, 0.10), "hospital3": (40, 0.5)}


def write_csv(path: Path, X: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*names, "diagnosis"])
        for row, label in zip(X, y):
            w.writerow([f"{v:.6g}" for v in row] + [int(label)])


def main(out: Path) -> None:
    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    X, X_hold, y, y_hold = train_test_split(data.data, data.target, test_size=0.2, stratify=data.target,
                                            random_state=0)
    write_csv(out / "holdout.csv", X_hold, y_hold, names)
    rng = np.random.default_rng(0)
    benign, malignant = list(rng.permutation(np.flatnonzero(y == 1))), list(rng.permutation(np.flatnonzero(y == 0)))
    for name, (rows, share) in HOSPITALS.items():
        nb = int(round(rows * share))
        take = np.array([benign.pop() for _ in range(nb)] + [malignant.pop() for _ in range(rows - nb)])
        take = rng.permutation(take)
        cut = int(len(take) * 0.8)  # each hospital keeps a fifth of its own rows to test on
        write_csv(out / name / "train.csv", X[take[:cut]], y[take[:cut]], names)
        write_csv(out / name / "test.csv", X[take[cut:]], y[take[cut:]], names)
    reference = {"features": names, "mean": X.mean(axis=0).round(6).tolist(), "scale": X.std(axis=0).round(6).tolist()}
    (out / "consortium.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {', '.join(HOSPITALS)} and holdout.csv under {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
