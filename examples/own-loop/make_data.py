#!/usr/bin/env python3
"""Write the example's data: three organisations, each with CSV files of its own, and a held-out test set.

The rows are scikit-learn's 8x8 digits (1797 images, 64 pixel columns 0-16, `label` 0-9). One
fifth is held out (stratified, seed 0) and never given to anyone; the rest is split unevenly:
org1 sees mostly the digits 0-4, org2 mostly 5-9, org3 a few of each.

    python3 make_data.py DIR        # writes DIR/org{1,2,3}/{train,test}.csv and DIR/holdout.csv
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

#: (rows, share of the digits 0-4) per organisation.
ORGS = {"org1": (600, 0.9), "org2": (500, 0.1), "org3": (120, 0.5)}


def write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f"px{i}" for i in range(X.shape[1])] + ["label"])
        w.writerows([*map(int, row), int(label)] for row, label in zip(X, y))


def main(out: Path) -> None:
    X, y = load_digits(return_X_y=True)
    X, X_hold, y, y_hold = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    write_csv(out / "holdout.csv", X_hold, y_hold)
    rng = np.random.default_rng(0)
    low, high = list(rng.permutation(np.flatnonzero(y < 5))), list(rng.permutation(np.flatnonzero(y >= 5)))
    for name, (rows, share) in ORGS.items():
        n_low = int(round(rows * share))
        take = rng.permutation(np.array([low.pop() for _ in range(n_low)] + [high.pop() for _ in range(rows - n_low)]))
        cut = int(len(take) * 0.8)
        write_csv(out / name / "train.csv", X[take[:cut]], y[take[:cut]])
        write_csv(out / name / "test.csv", X[take[cut:]], y[take[cut:]])
    print(f"wrote {', '.join(ORGS)} and holdout.csv under {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
